#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-differential.sh - the replication property, randomized: a seeded
# sequence of operations (diffgen.py: hard links, renames of files and
# folders, 255-byte names and 4095-byte paths, xattrs, owners, modes,
# times, truncate, sparse writes, fallocate, symlinks, FIFOs, sockets and
# devices, and the failing cases EFBIG, ENOSPC, E2BIG, ENAMETOOLONG,
# ENOTEMPTY, EXDEV, EEXIST, ENOENT...) runs on a plain folder and through a
# mirrorfs mount (rotating every few hundred operations). Then:
#   1. every operation gave the same result on both (the printed logs);
#   2. the mount's backing folder equals the plain folder (mirrorctl verify);
#   3. mirrord --once applies every segment into an empty folder on the
#      same file system, up to the last LSN, and that mirror equals the
#      backing folder.
# The seed is printed; MFS_SEED=N reproduces a run. MFS_DIFF_WORKERS
# (default 2) writers at once, each in a folder of its own, MFS_DIFF_OPS
# (default 1500) operations each per round, MFS_DIFF_ROUNDS (default 4)
# rounds with seeds SEED, SEED+1...; e.g. MFS_DIFF_ROUNDS=50
# MFS_DIFF_OPS=20000 for a long run. Root only (devices, owners): skipped otherwise.
set -eu
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"
[ "$(id -u)" -eq 0 ] || skip "needs root (mknod of devices, chown)"
[ -x "$MIRRORD" ] || skip "mirrord not built"
GEN=$(cd "$(dirname "$0")" && pwd)/diffgen.py

SEED=${MFS_SEED:-$(( $(date +%s) % 100000 * 100 + RANDOM % 100 ))}
OPS=${MFS_DIFF_OPS:-1500}
WORKERS=${MFS_DIFF_WORKERS:-2}
ROUNDS=${MFS_DIFF_ROUNDS:-4}
OUT=$(mktemp -d /dev/shm/mfs-diff.XXXXXX) # another file system: EXDEV
remove_out() { rm -rf "$OUT"; }
EXTRA_CLEANUP=remove_out

# round SEED: one differential run; returns non-zero (after a message) on
# the first divergence.
round() {
	local seed=$1 r=$T/r$1
	mkdir -p "$r/native" "$r/data" "$r/in" "$r/mirror" "$r/state"
	echo "== seed $seed ($OPS operations x $WORKERS writers): MFS_SEED=$seed to reproduce"
	# the writers work in folders w0, w1... of their own: each one's results
	# are its own, whatever the interleaving through the mount
	for w in $(seq 0 $((WORKERS - 1))); do
		mkdir "$r/native/w$w"
		(cd "$r" && GEN_OUTSIDE=$OUT GEN_ROOT_PREFIX=3 python3 "$GEN" "$r/native/w$w" \
			$((seed * 10 + w)) "$OPS" >"$r/native-w$w.log") ||
			{ echo "FAIL: the generator failed on the plain folder" >&2; return 1; }
	done
	mfs_mount "$r/data" "$r/mnt" -o dev # devices open as on the plain folder (not nodev)
	local pids=()
	for w in $(seq 0 $((WORKERS - 1))); do
		mkdir "$r/mnt/w$w"
		(cd "$r" && GEN_OUTSIDE=$OUT GEN_ROOT_PREFIX=3 GEN_CTL=$CTL GEN_MOUNT=$r/mnt python3 "$GEN" \
			"$r/mnt/w$w" $((seed * 10 + w)) "$OPS" >"$r/mount-w$w.log") &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		wait "$p" || { echo "FAIL: the generator failed on the mount" >&2; return 1; }
	done
	"$CTL" rotate "$r/mnt" >/dev/null || { echo "FAIL: mirrorctl rotate" >&2; return 1; }
	mfs_umount "$r/mnt"
	for w in $(seq 0 $((WORKERS - 1))); do
		if ! diff "$r/native-w$w.log" "$r/mount-w$w.log" >"$r/ops.diff"; then
			echo "FAIL: seed $seed: an operation of writer $w behaved differently" \
				"through the mount" >&2
			head -n 20 "$r/ops.diff" >&2
			return 1
		fi
	done
	verify_equal "$r/native" "$r/data" ||
		{ echo "FAIL: seed $seed: backing folder differs from the plain folder" >&2; return 1; }
	cp "$r/data/.mirrorfs/journal/"*.mfsj "$r/in/"
	if ! "$MIRRORD" --incoming "$r/in" --data "$r/mirror" --state "$r/state" --once \
		2>"$r/mirrord.log"; then
		echo "FAIL: seed $seed: mirrord --once failed:" >&2
		tail -n 5 "$r/mirrord.log" >&2
		return 1
	fi
	if ls "$r/in/"*.mfsj >/dev/null 2>&1 || [ -n "$(ls "$r/state/quarantine" 2>/dev/null)" ]; then
		echo "FAIL: seed $seed: segments left unapplied or quarantined" >&2
		ls -la "$r/in" "$r/state" >&2
		return 1
	fi
	verify_equal "$r/data" "$r/mirror" ||
		{ echo "FAIL: seed $seed: the mirror differs from the primary" >&2; return 1; }
	echo "   $(cat "$r"/native-w*.log | grep -c ' -> ok\| -> wrote\| -> len') succeeded," \
		"$(cat "$r"/native-w*.log | grep -c ' -> E[A-Z0-9]*$') failed as expected;" \
		"$(ls "$r/data/.mirrorfs/journal" | wc -l) segments replayed"
	rm -rf "$r"
}

# mirrorctl verify itself on what renames make: paths past PATH_MAX, deep
# trees, an xattr that differs at the bottom only
step "mirrorctl verify: a tree 40 levels and 10 KB of path deep"
python3 - "$T/va" "$T/vb" <<'PY'
import os, sys
for k, top in enumerate(sys.argv[1:]):
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(40):
        n = chr(97 + i % 26) * 250
        os.mkdir(n, dir_fd=fd)
        nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    f = os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, b"same")
    os.setxattr(f, "user.k", b"%d" % k)
    os.close(f)
    os.close(fd)
PY
rc=0
"$CTL" verify "$T/va" "$T/vb" >"$T/verify-deep.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "verify of deep trees exited $rc: $(tail -c 300 "$T/verify-deep.log")"
grep -q "/bottom': extended attribute 'user.k'" "$T/verify-deep.log" ||
	fail "verify did not see the xattr that differs: $(tail -c 300 "$T/verify-deep.log")"
"$CTL" verify "$T/va" "$T/va" >/dev/null || fail "verify of a deep tree with itself"
rm -rf "$T/va" "$T/vb"

for k in $(seq 0 $((ROUNDS - 1))); do
	round $((SEED + k)) || fail "differential run (MFS_SEED=$((SEED + k)) MFS_DIFF_OPS=$OPS)"
done
echo "PASS"
