#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-compensate.sh - a change the primary journals and then sees fail
# (EFBIG of a truncate, a write or a fallocate past the largest file, ENOSPC
# of a 64 KiB xattr value) is followed by its compensating record; a
# rotation never falls between the two, and recovery at mount skips the
# failed change as the mirror does:
#  1. with rotate_size=1 (a rotation requested after every record), 150
#     rounds of such failures between ordinary writes, two writers at once;
#     then every segment applies with mirrord --once (none quarantined: a
#     forward record alone at the end of a segment would be) and the mirror
#     equals the primary;
#  2. the same failures, then mirrorfs killed (-9) before any checkpoint:
#     the next mount replays them from the journal and mounts.
set -eu
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"
[ -x "$MIRRORD" ] || skip "mirrord not built"

cat >"$T/fail.py" <<'PY'
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
d, rounds = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
def expect(what, e, fn):
    try:
        fn()
    except OSError as x:
        if x.errno in e:
            return
        raise
    raise SystemExit("%s: no error" % what)
for k in range(rounds):
    f = "%s/f%d" % (d, k % 5)
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"r%06d" % k, k * 7)
    expect("truncate", (errno.EFBIG,), lambda: os.ftruncate(fd, 999999999999999))
    expect("pwrite", (errno.EFBIG,), lambda: os.pwrite(fd, b"x", 1 << 44))
    r = libc.fallocate(fd, 0, 1 << 44, 4096)
    if r == 0 or ctypes.get_errno() != errno.EFBIG:
        raise SystemExit("fallocate: %d %d" % (r, ctypes.get_errno()))
    expect("setxattr", (errno.ENOSPC, errno.E2BIG), lambda: os.setxattr(f, "user.big", b"v" * 65536))
    os.setxattr(f, "user.k", b"%d" % k)
    os.close(fd)
PY

step "rotations requested after every record; failures from two writers"
mkdir -p "$T/data"
mfs_mount "$T/data" "$T/mnt" -o rotate_size=1
python3 "$T/fail.py" "$T/mnt/a" 150 & W1=$!
python3 "$T/fail.py" "$T/mnt/b" 150 || fail "writer b"
wait $W1 || fail "writer a"
"$CTL" rotate "$T/mnt" >/dev/null || true
mfs_umount "$T/mnt"
n=$(ls "$T/data/.mirrorfs/journal" | wc -l)
echo "   $n segments"
[ "$n" -ge 20 ] || fail "only $n segments: the rotations did not happen"
mkdir -p "$T/in" "$T/mirror" "$T/state"
cp "$T/data/.mirrorfs/journal/"*.mfsj "$T/in/"
"$MIRRORD" --incoming "$T/in" --data "$T/mirror" --state "$T/state" --once 2>"$T/mirrord.log" ||
	fail "mirrord --once: $(grep -m3 quarantined "$T/mirrord.log")"
verify_equal "$T/data" "$T/mirror" || fail "the mirror differs from the primary"

step "recovery at mount skips the failed changes"
mkdir -p "$T/data2"
mfs_mount "$T/data2" "$T/mnt2"
python3 "$T/fail.py" "$T/mnt2/c" 20 || fail "writer c"
mfs_kill9 "$T/mnt2"
cp -a "$T/data2" "$T/expect"
mfs_mount "$T/data2" "$T/mnt2"
for k in 0 1 2 3 4; do
	cmp "$T/expect/c/f$k" "$T/mnt2/c/f$k" || fail "c/f$k differs after recovery"
done
mfs_umount "$T/mnt2"
echo "PASS"
