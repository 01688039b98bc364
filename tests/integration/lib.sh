# SPDX-License-Identifier: MIT
# lib.sh - shared helpers for the integration tests (sourced, not run).
#
# Provides: $T (temp dir, removed on exit), $FS (mirrorfs), $CTL (mirrorctl),
# mfs_mount DATA MNT [-o opts] (background -f mount, waits for readiness),
# mfs_try_mount (the same, returns 1 if mirrorfs refuses),
# mfs_umount MNT, mfs_kill9 MNT, fail, step, wait_for, tree_equal A B.
# Everything mounted is unmounted (fusermount3 -u -z) and every process
# started is killed by PID when the script exits, whatever happens.

: "${MFS_BUILD:?MFS_BUILD not set (the meson build dir)}"
FS=${MFS_FS:-$MFS_BUILD/fs/mirrorfs}
CTL=${MFS_CLI:-$MFS_BUILD/tools/mirrorctl}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; [ -f "$T/fs.log" ] && tail -n 20 "$T/fs.log" >&2; exit 1; }
step() { echo "== $*"; }

[ -c /dev/fuse ] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "no fusermount3"
[ -x "$FS" ] || skip "mirrorfs not built ($FS)"

T=$(mktemp -d /tmp/mfs-fs.XXXXXX)
chmod 755 "$T" # tests run commands as other users too
declare -A MFS_PID=()
EXTRA_CLEANUP=:

mfs_cleanup() {
	set +e
	$EXTRA_CLEANUP
	for m in "${!MFS_PID[@]}"; do
		fusermount3 -u -z "$m" 2>/dev/null
		kill "${MFS_PID[$m]}" 2>/dev/null
		wait "${MFS_PID[$m]}" 2>/dev/null
	done
	if [ -n "${KEEP_TMP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap mfs_cleanup EXIT

# wait_for CMD...: poll up to 30 s.
wait_for() {
	local i
	for i in $(seq 300); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	return 1
}

# mfs_try_mount DATA MNT [mirrorfs args...]: mount in the background and
# wait; returns 1 if mirrorfs exits (refuses) or is not ready after 30 s
# (then it is killed).
mfs_try_mount() {
	local data=$1 mnt=$2 pid i
	shift 2
	mkdir -p "$mnt"
	"$FS" -f "$@" "$data" "$mnt" 2>>"$T/fs.log" &
	pid=$!
	MFS_PID[$mnt]=$pid
	for i in $(seq 300); do
		mountpoint -q "$mnt" && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			unset "MFS_PID[$mnt]"
			wait "$pid" 2>/dev/null || true
			return 1
		fi
		sleep 0.1
	done
	mfs_kill9 "$mnt"
	return 1
}

# mfs_mount DATA MNT [mirrorfs args...]: mount in the background, wait.
mfs_mount() {
	mfs_try_mount "$@" || fail "mirrorfs did not mount '$2' (or not within 30 s)"
}

# mfs_umount MNT: clean unmount, wait for the daemon to finish.
mfs_umount() {
	local mnt=$1 pid=${MFS_PID[$1]:-}
	fusermount3 -u "$mnt" || fusermount3 -u -z "$mnt"
	if [ -n "$pid" ]; then
		wait "$pid" || fail "mirrorfs on '$mnt' exited with $?"
		unset "MFS_PID[$mnt]"
	fi
}

# mfs_kill9 MNT: crash the daemon, drop the dead mount.
mfs_kill9() {
	local mnt=$1 pid=${MFS_PID[$1]:-}
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	[ -n "$pid" ] && { wait "$pid" 2>/dev/null || true; }
	fusermount3 -u -z "$mnt" 2>/dev/null || true
	unset "MFS_PID[$mnt]"
}

# Segments of a journal folder, in apply order (closed ones, then the open one).
journal_segments() {
	local j=$1
	ls "$j"/journal/*.mfsj 2>/dev/null | sort
	ls "$j"/open/open-*.mfsj 2>/dev/null | sort
}

# replay_journal JOURNALDIR DEST: apply every segment into DEST (created).
replay_journal() {
	local j=$1 dest=$2
	rm -rf "$dest"
	mkdir -p "$dest"
	# shellcheck disable=SC2046
	"$CTL" replay --to "$dest" $(journal_segments "$j") >"$T/replay.log" 2>&1 ||
		{ cat "$T/replay.log" >&2; return 1; }
}

# verify_equal A B: mirrorctl verify, ignoring the hidden journal folder.
verify_equal() {
	local a=$1 b=$2
	"$CTL" verify "$a" "$b" >"$T/verify.log" 2>&1 || { cat "$T/verify.log" >&2; return 1; }
}

# sqlite_workload DB MODE N: N transactions (inserts, updates, deletes) in
# journal MODE (wal or delete) through the sqlite3 shell. Exit status of sqlite3.
sqlite_workload() {
	local db=$1 mode=$2 n=$3
	python3 - "$mode" "$n" <<'PY' | sqlite3 -bail "$db" >/dev/null
import sys
mode, n = sys.argv[1], int(sys.argv[2])
print("PRAGMA journal_mode=%s;" % mode)
print("PRAGMA synchronous=FULL;")
print("CREATE TABLE IF NOT EXISTS t(a INTEGER PRIMARY KEY, b TEXT, c BLOB);")
print("CREATE INDEX IF NOT EXISTS tb ON t(b);")
for i in range(n):
    print("BEGIN;")
    print("INSERT INTO t(b, c) VALUES(hex(randomblob(16)), randomblob(%d));" % (50 + i % 700))
    if i % 3 == 0:
        print("UPDATE t SET c = randomblob(300) WHERE a = (SELECT abs(random()) % (max(a) + 1) FROM t);")
    if i % 7 == 0:
        print("DELETE FROM t WHERE a = (SELECT abs(random()) % (max(a) + 1) FROM t);")
    print("COMMIT;")
PY
}

# sqlite_ok DB: PRAGMA integrity_check says ok.
sqlite_ok() {
	local r
	r=$(sqlite3 "$1" "PRAGMA integrity_check;" 2>&1) || { echo "$r" >&2; return 1; }
	[ "$r" = ok ] || { echo "$1: $r" >&2; return 1; }
}
