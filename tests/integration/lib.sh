# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034 # sourced: the variables are for the scripts
# lib.sh - shared helpers for the integration tests (sourced, not run).
#
# Every script in tests/integration/ sources it first. It provides:
#  - $T (a fresh temp dir /tmp/mfs-NAME.XXXXXX, removed on exit), $FS
#    (mirrorfs), $CTL (mirrorctl), $MIRRORD, $MKSEG, $SHIP (mirrorfs-ship),
#    $MFS_SRC; skip, fail, step, wait_for;
#  - mounts: mfs_mount, mfs_try_mount, mfs_umount, mfs_kill9;
#  - processes: track_pid PID (stopped on exit), stop_pid PID...;
#  - reading state: json_field, status_field (a mount's .mirrorfs/status),
#    applied_lsn and applied_ge (a mirror's STATE/applied);
#  - segments: seg_first, seg_last, journal_segments, segs_upto,
#    replay_journal; trees: verify_equal; SQLite: sqlite_workload, sqlite_ok;
#  - PostgreSQL on a private socket and port: pg_available, pg_need, pg,
#    pg_initdb, pg_start, pg_stop.
# Everything mounted is unmounted (fusermount3 -u -z), every tracked process
# and PostgreSQL server started is stopped by PID when the script exits,
# whatever happens; then $EXTRA_CLEANUP has run first.
#
# A script that needs no FUSE mount (mirrord, the CLI, packaging) sets
# MFS_NO_FUSE=1 before sourcing: then a missing /dev/fuse or mirrorfs is not
# a reason to skip. KEEP_TMP=1 keeps $T; MFS_TEST_KEEP=1 (or the older
# SHIP_TEST_KEEP=1) leaves everything running and in place when a test fails.

: "${MFS_BUILD:?MFS_BUILD not set (the meson build dir)}"
MFS_SRC=${MFS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FS=${MFS_FS:-$MFS_BUILD/fs/mirrorfs}
CTL=${MFS_CLI:-$MFS_BUILD/tools/mirrorctl}
MIRRORD=${MFS_MIRRORD:-$MFS_BUILD/daemon/mirrord}
MKSEG=$MFS_BUILD/tests/integration/mkseg
SHIP=$MFS_SRC/tools/mirrorfs-ship

skip() { echo "SKIP: $*"; exit 77; }
step() { echo "== $*"; }
# fail MSG: the message, then the last lines of every log in $T; exit 1.
fail() {
	local f
	echo "FAIL: $*" >&2
	if [ -n "${MFS_TEST_KEEP:-${SHIP_TEST_KEEP:-}}" ]; then
		echo "kept: $T (everything left running)" >&2
		trap - EXIT
	fi
	for f in "$T"/*.log; do
		[ -s "$f" ] && { echo "--- ${f##*/}" >&2; tail -n 20 "$f" >&2; }
	done
	exit 1
}

if [ -z "${MFS_NO_FUSE:-}" ]; then
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	command -v fusermount3 >/dev/null || skip "no fusermount3"
	[ -x "$FS" ] || skip "mirrorfs not built ($FS)"
fi

T=$(mktemp -d "/tmp/mfs-$(basename "$0" .sh).XXXXXX")
chmod 755 "$T" # tests run commands as other users too
declare -A MFS_PID=() MFS_BG=() PG_RUNNING=()
EXTRA_CLEANUP=:

mfs_cleanup() {
	set +e
	eval "$EXTRA_CLEANUP"
	pg_stop_all
	# shellcheck disable=SC2086 # pids
	stop_pid ${!MFS_BG[*]}
	for m in "${!MFS_PID[@]}"; do
		fusermount3 -u -z "$m" 2>/dev/null
		kill "${MFS_PID[$m]}" 2>/dev/null
		wait "${MFS_PID[$m]}" 2>/dev/null
	done
	if [ -n "${KEEP_TMP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap mfs_cleanup EXIT

# wait_for [-t SECONDS] CMD...: poll CMD every 0.1 s until it succeeds; up
# to 300 times (at least 30 s), or for SECONDS of wall-clock time with -t.
wait_for() {
	local i end
	if [ "$1" = -t ]; then
		end=$((SECONDS + $2))
		shift 2
		until "$@"; do
			[ "$SECONDS" -lt "$end" ] || return 1
			sleep 0.1
		done
		return 0
	fi
	for i in $(seq 300); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	return 1
}

# ---- processes -------------------------------------------------------------

# track_pid PID...: stop these background processes (stop_pid) on exit.
track_pid() {
	local p
	for p in "$@"; do MFS_BG[$p]=1; done
}

# stop_pid PID...: SIGTERM, then SIGKILL to any still there after
# MFS_STOP_SECONDS (10) s; reaps them and forgets them. Never blocks for
# ever on one process.
stop_pid() {
	local p i
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do
		for i in $(seq $((${MFS_STOP_SECONDS:-10} * 10))); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$p" 2>/dev/null; then
			echo "stop_pid: pid $p ignored SIGTERM, killed" >&2
			kill -9 "$p" 2>/dev/null || true
		fi
		wait "$p" 2>/dev/null || true
		unset "MFS_BG[$p]"
	done
	return 0
}

# ---- mounts ----------------------------------------------------------------

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

# ---- reading state ---------------------------------------------------------

# json_field FILE KEY: one top-level member of a JSON file; strings as they
# are, everything else as JSON (true, false, null, 12). Exits 1 (a Python
# error on stderr) if the file or the member is missing.
json_field() {
	python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}

# status_field MNT KEY: a member of a mount's status, MNT/.mirrorfs/status.
status_field() { json_field "$1/.mirrorfs/status" "$2"; }

# applied_lsn STATEDIR: the LSN a mirror durably recorded as applied, from
# STATEDIR/applied (lib/applied.c); 0 if none yet.
applied_lsn() {
	local n
	n=$(sed -n 's/^applied_lsn \([0-9][0-9]*\)$/\1/p' "$1/applied" 2>/dev/null)
	echo "${n:-0}"
}

# applied_ge STATEDIR LSN: the mirror applied at least LSN.
applied_ge() { [ "$(applied_lsn "$1")" -ge "$2" ]; }

# ---- segments --------------------------------------------------------------

# seg_first NAME, seg_last NAME: the first and last LSN in a segment's file
# name (FIRST-LAST.mfsj, 20 digits each; a path is fine).
seg_first() { local n=${1##*/}; n=${n%.mfsj}; echo $((10#${n%-*})); }
seg_last() { local n=${1##*/}; n=${n%.mfsj}; echo $((10#${n#*-})); }

# Segments of a journal folder, in apply order (closed ones, then the open one).
journal_segments() {
	local j=$1
	ls "$j"/journal/*.mfsj 2>/dev/null | sort
	ls "$j"/open/open-*.mfsj 2>/dev/null | sort
}

# segs_upto DIR [LSN]: the segments in DIR (sorted) whose first LSN is <= LSN
# (all of them without LSN): what `mirrorctl replay --until LSN` needs.
segs_upto() {
	local f
	for f in $(ls "$1"/*.mfsj 2>/dev/null | sort); do
		[ -z "${2:-}" ] || [ "$(seg_first "$f")" -le "$2" ] && echo "$f"
	done
	return 0
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

# verify_equal A B [mirrorctl verify options]: the trees are equal
# (mirrorctl verify, ignoring the hidden journal folder); the differences on
# stderr otherwise.
verify_equal() {
	local a=$1 b=$2
	shift 2
	"$CTL" verify "$@" "$a" "$b" >"$T/verify.out" 2>&1 || { cat "$T/verify.out" >&2; return 1; }
}

# ---- SQLite ----------------------------------------------------------------

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

# ---- PostgreSQL --------------------------------------------------------------
# Debian's server programs (the newest /usr/lib/postgresql/*/bin, or
# $MFS_PGBIN), run as $PG_USER (postgres), each server on a private socket
# folder and port with no TCP listener.

PGBIN=${MFS_PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
PG_USER=${PG_USER:-postgres}

# pg_available: PostgreSQL can run here (installed, its user exists, we are
# root); otherwise 1 with the reason in PG_WHY.
pg_available() {
	PG_WHY=
	if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
		PG_WHY="PostgreSQL is not installed"
	elif ! id "$PG_USER" >/dev/null 2>&1; then
		PG_WHY="no $PG_USER user"
	elif [ "$(id -u)" != 0 ]; then
		PG_WHY="needs root (runs PostgreSQL as the $PG_USER user)"
	fi
	[ -z "$PG_WHY" ]
}

# pg_need: skip the test (77) unless pg_available.
pg_need() { pg_available || skip "$PG_WHY"; }

# pg CMD...: a shell command line run as $PG_USER.
pg() { su "$PG_USER" -s /bin/sh -c "$*"; }

# pg_initdb DATADIR: a new cluster (trust, superuser postgres) in DATADIR,
# made and owned by $PG_USER, mode 700; its output in $T/initdb.log.
pg_initdb() {
	mkdir -p "$1" && chown "$PG_USER" "$1" && chmod 700 "$1" || return 1
	pg "$PGBIN/initdb -D $1 -A trust -U postgres" >"$T/initdb.log" 2>&1 ||
		{ cat "$T/initdb.log" >&2; return 1; }
}

# pg_start DATADIR PORT SOCKDIR: start a server (waits up to 120 s), its
# socket in SOCKDIR (made, owned by $PG_USER), log SOCKDIR/pg.log; the
# postmaster's PID in PG_PID. 1 (the log's tail on stderr) if it does not
# start. Stopped (immediate) on exit unless pg_stop'ped.
pg_start() {
	local d=$1 port=$2 sock=$3 rc=0
	mkdir -p "$sock" && chown "$PG_USER" "$sock" || return 1
	PG_RUNNING[$d]=1
	pg "$PGBIN/pg_ctl -D $d -w -t 120 -l $sock/pg.log -o \"-p $port -k $sock -c listen_addresses=''\" start" \
		>/dev/null 2>&1 || rc=1
	PG_PID=$(head -n 1 "$d/postmaster.pid" 2>/dev/null || true)
	[ "$rc" = 0 ] || tail -n 20 "$sock/pg.log" >&2
	return $rc
}

# pg_stop DATADIR [MODE]: pg_ctl stop -m MODE (fast), waits up to 300 s: a
# fast stop's shutdown checkpoint on a loaded 2-core machine can outlast
# pg_ctl's default 60 s (snap-db failed so, and passed alone in 54 s).
pg_stop() {
	unset "PG_RUNNING[$1]"
	pg "$PGBIN/pg_ctl -D $1 -w -t 300 -m ${2:-fast} stop" >/dev/null
}

# pg_stop_all: every server pg_start left running, stopped immediately.
pg_stop_all() {
	local d
	for d in "${!PG_RUNNING[@]}"; do pg_stop "$d" immediate 2>/dev/null; done
	return 0
}
