#!/bin/bash
# SPDX-License-Identifier: MIT
# fs-ops.sh - every operation through a mirrorfs mount gives the same
# results as on a plain directory (a table of operations run on both, the
# outputs and final trees compared), and replaying the journal into an
# empty folder gives the same tree as the backing folder.
set -eu
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "no python3"

cat >"$T/ops.py" <<'PY'
import ctypes, errno, fcntl, mmap, os, stat, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2

def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))

def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))

def st(p):
    s = os.lstat(p)
    return "mode=%o nlink=%d size=%d uid=%d gid=%d" % (s.st_mode, s.st_nlink, s.st_size, s.st_uid, s.st_gid)

def wr(p, data, flags=os.O_WRONLY | os.O_CREAT, mode=0o644, off=None):
    fd = os.open(p, flags, mode)
    try:
        return os.pwrite(fd, data, off) if off is not None else os.write(fd, data)
    finally:
        os.close(fd)

def rd(p):
    with open(p, "rb") as f:
        d = f.read()
    return "%d bytes crc %08x" % (len(d), __import__("zlib").crc32(d))

def open_unlink_write():
    fd = os.open("ou", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"before")
    os.unlink("ou")
    os.pwrite(fd, b"after-unlink", 100)
    r = os.pread(fd, 200, 0)
    os.close(fd)
    return "%d %s" % (len(r), os.path.exists("ou"))

def rename_over_open():
    wr("rb", b"old-b-content")
    wr("ra", b"new-a")
    fd = os.open("rb", os.O_RDWR)
    os.rename("ra", "rb")
    os.pwrite(fd, b"X", 0)  # goes to the unlinked old rb
    os.close(fd)
    return rd("rb")

def hardlinks():
    wr("h1", b"hard")
    os.link("h1", "h2")
    os.unlink("h1")
    wr("h2", b"W", os.O_WRONLY, off=10)  # must be journaled under the remaining name
    return st("h2") + " " + rd("h2")

def odirect():
    fd = os.open("od", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    m = mmap.mmap(-1, 8192)
    m.write(b"d" * 8192)
    os.pwritev(fd, [m], 0)
    os.close(fd)
    return rd("od")

def punch():
    wr("fa", b"z" * 65536)
    fd = os.open("fa", os.O_RDWR)
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192)
    fallocate(fd, FALLOC_FL_KEEP_SIZE, 65536, 65536)
    fallocate(fd, 0, 65536, 4096)
    os.close(fd)
    return st("fa") + " " + rd("fa")

def cfr():
    wr("cs", bytes(range(256)) * 1024)
    fi = os.open("cs", os.O_RDONLY)
    fo = os.open("cd", os.O_WRONLY | os.O_CREAT, 0o644)
    n = os.copy_file_range(fi, fo, 100000, 5, 7)
    os.close(fi); os.close(fo)
    return "%d %s" % (n, rd("cd"))

def locks():
    fd = os.open("lk", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return "ok"

def caps():
    # the kernel asks for security.capability before each write and removes
    # it on a write: the mount's cache of its absence must follow setxattr
    cap = struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0)
    wr("capf", b"first")
    wr("capf", b"again")
    os.setxattr("capf", "security.capability", cap)
    got = os.getxattr("capf", "security.capability") == cap
    wr("capf", b"third", os.O_WRONLY)
    try:
        os.getxattr("capf", "security.capability")
        after = "still there"
    except OSError as e:
        after = errno.errorcode[e.errno]
    return "set-seen=%s after-write=%s %s" % (got, after, rd("capf"))

def long_path():
    # a path of exactly 4095 bytes below the mount (PATH_MAX - 1): every
    # operation on it works on ext4, so it must through the mount
    names = ["L%03d" % k + "x" * 250 for k in range(16)]  # 16 x 254 + 15 "/", then 16 more
    d = "/".join(names)
    os.makedirs(d)
    p = d + "/" + "y" * (4095 - len(d) - 1)
    assert len(p) == 4095, len(p)
    out = []
    for what, fn in (("create", lambda: wr(p, b"long")), ("write", lambda: wr(p, b"longer", os.O_WRONLY)),
                     ("chmod", lambda: os.chmod(p, 0o600)), ("truncate", lambda: os.truncate(p, 3)),
                     ("utime", lambda: os.utime(p, (1, 2))), ("xattr", lambda: os.setxattr(p, "user.k", b"v")),
                     ("link", lambda: os.link(p, "longlink"))):
        try:
            fn(); out.append(what + "=ok")
        except OSError as e:
            out.append(what + "=" + errno.errorcode[e.errno])
    return " ".join(out) + " " + st(p) + " " + rd(p)

KS = [("ks-w", 0o4777), ("ks-wg", 0o2777), ("ks-wgx", 0o2767), ("ks-w6", 0o6777), ("ks-t", 0o6777),
      ("ks-o", 0o4777), ("ks-f", 0o4777), ("ks-c", 0o6777), ("ks-root", 0o6777), ("ks-chown", 0o6755),
      ("ks-chown-none", 0o6755), ("ks-chown-g", 0o2745)]
KS_USER = """
import os
def ap(n):
    fd = os.open(n, os.O_WRONLY | os.O_APPEND); os.write(fd, b"x"); os.close(fd)
for n in ("ks-w", "ks-wg", "ks-wgx", "ks-w6"):
    ap(n)
os.truncate("ks-t", 1)
os.close(os.open("ks-o", os.O_WRONLY | os.O_TRUNC))
fd = os.open("ks-f", os.O_WRONLY); os.posix_fallocate(fd, 0, 8192); os.close(fd)
i = os.open("ks-w", os.O_RDONLY); o = os.open("ks-c", os.O_WRONLY)
os.copy_file_range(i, o, 4); os.close(i); os.close(o)
"""

def kill_setid():
    # a write, truncate, O_TRUNC open, fallocate or copy_file_range by a user
    # without CAP_FSETID clears suid, and sgid when group-executable; root's
    # write keeps them; a chown clears them (the mount does it itself when
    # the kernel hands it over: fs/killpriv.c)
    for n, m in KS:
        wr(n, b"data")
        os.chmod(n, m)
    r = os.system("setpriv --reuid=4242 --regid=4343 --clear-groups -- python3 -c '%s'" % KS_USER)
    wr("ks-root", b"x", os.O_WRONLY | os.O_APPEND)
    os.chown("ks-chown", 4242, -1)
    os.chown("ks-chown-none", -1, -1)
    os.chown("ks-chown-g", -1, 4343)
    return "rc=%d " % r + " ".join("%s:%o" % (n, os.lstat(n).st_mode) for n, _ in KS)

def as_user(cmd):
    r = os.system("setpriv --reuid=4242 --regid=4343 --clear-groups -- sh -c '%s'" % cmd)
    return "rc=%d" % r

OPS = [
    ("write", lambda: wr("f", b"hello world\n")),
    ("read", lambda: rd("f")),
    ("append", lambda: [wr("f", b"more\n", os.O_WRONLY | os.O_APPEND) for _ in range(3)] and rd("f")),
    ("sparse", lambda: wr("sp", b"end", off=1 << 20) and st("sp") + " " + rd("sp")),
    ("big", lambda: wr("big", bytes((i * 7 + (i >> 9)) & 255 for i in range(3 << 20))) and st("big")),
    ("truncate-shrink", lambda: os.truncate("big", 12345) or st("big")),
    ("truncate-grow", lambda: os.truncate("big", 5 << 20) or rd("big")),
    ("ftruncate", lambda: (lambda fd: (os.ftruncate(fd, 7), os.close(fd)))(os.open("f", os.O_RDWR)) and rd("f")),
    ("o-trunc", lambda: wr("sp", b"x", os.O_WRONLY | os.O_TRUNC) and st("sp")),
    ("excl", lambda: wr("f", b"x", os.O_WRONLY | os.O_CREAT | os.O_EXCL)),
    ("create-setid", lambda: [wr("su%o" % m, b"x", mode=m) for m in (0o4755, 0o2755, 0o6711)] and
     " ".join(st("su%o" % m) for m in (0o4755, 0o2755, 0o6711))),
    ("mknod-setid", lambda: os.mknod("fifo-setid", 0o012644) or st("fifo-setid")),
    ("chmod", lambda: os.chmod("f", 0o4751) or st("f")),
    ("chown", lambda: os.chown("f", 1234, 5678) or st("f")),
    ("utime", lambda: os.utime("f", (1000000000, 1234567890)) or os.stat("f").st_mtime),
    ("utime-now", lambda: os.utime("f") or "ok"),
    ("path-4095", long_path),
    ("mkdir", lambda: os.mkdir("d", 0o750) or st("d")),
    ("mkdir-exists", lambda: os.mkdir("d")),
    ("mkdir-p", lambda: os.makedirs("d/e/f/g") or st("d/e/f/g")),
    ("rmdir-notempty", lambda: os.rmdir("d/e")),
    ("rmdir-notdir", lambda: os.rmdir("f")),
    ("rmdir", lambda: os.rmdir("d/e/f/g") or os.listdir("d/e/f")),
    ("unlink-missing", lambda: os.unlink("nope")),
    ("unlink-dir", lambda: os.unlink("d")),
    ("create-in-sub", lambda: wr("d/e/x", b"sub") and rd("d/e/x")),
    ("rename", lambda: os.rename("d/e/x", "d/y") or sorted(os.listdir("d"))),
    ("rename-over", lambda: wr("ro", b"over") and os.rename("ro", "d/y") or rd("d/y")),
    ("rename-dir", lambda: os.rename("d/e", "e2") or sorted(os.listdir("e2"))),
    ("rename-dir-notempty", lambda: os.mkdir("e3") or wr("e3/z", b"z") and os.rename("e2", "e3")),
    ("rename-file-over-dir", lambda: os.rename("f", "e3")),
    ("rename-dir-over-file", lambda: os.rename("e2", "f")),
    ("rename-noreplace", lambda: renameat2("d/y", "f", RENAME_NOREPLACE)),
    ("rename-noreplace-ok", lambda: renameat2("d/y", "d/y2", RENAME_NOREPLACE) or os.listdir("d")),
    ("rename-exchange", lambda: renameat2("d/y2", "e3", RENAME_EXCHANGE) or (st("d/y2"), st("e3"))),
    ("rename-exchange-missing", lambda: renameat2("nope", "f", RENAME_EXCHANGE)),
    ("rename-missing", lambda: os.rename("nope", "nope2")),
    ("link", lambda: os.link("f", "f-link") or st("f")),
    ("link-exists", lambda: os.link("f", "f-link")),
    ("symlink", lambda: os.symlink("f", "sl") or os.readlink("sl") + " " + st("sl")),
    ("symlink-dangling", lambda: os.symlink("../../nowhere", "d/dl") or os.readlink("d/dl")),
    ("symlink-exists", lambda: os.symlink("x", "sl")),
    ("xattr-set", lambda: os.setxattr("f", "user.a", b"value-a") or os.getxattr("f", "user.a")),
    ("xattr-create-exists", lambda: os.setxattr("f", "user.a", b"v", os.XATTR_CREATE)),
    ("xattr-replace", lambda: os.setxattr("f", "user.a", b"v2", os.XATTR_REPLACE) or os.getxattr("f", "user.a")),
    ("xattr-list", lambda: os.setxattr("f", "user.b", b"") or sorted(os.listxattr("f"))),
    ("xattr-remove", lambda: os.removexattr("f", "user.b") or os.listxattr("f")),
    ("xattr-remove-missing", lambda: os.removexattr("f", "user.zz")),
    ("caps-after-write", caps),
    ("xattr-dir", lambda: os.setxattr("d", "user.dir", b"1") or os.listxattr("d")),
    ("mkfifo", lambda: os.mkfifo("fifo", 0o640) or st("fifo")),
    ("mkfifo-exists", lambda: os.mkfifo("fifo")),
    ("open-unlink-write", open_unlink_write),
    ("rename-over-open", rename_over_open),
    ("hardlinks", hardlinks),
    ("o-direct", odirect),
    ("fallocate", punch),
    ("copy-file-range", cfr),
    ("locks", locks),
    ("statfs", lambda: os.statvfs(".").f_bsize > 0),
    ("long-name", lambda: wr("n" * 256, b"")),
    ("readdir", lambda: sorted(n for n in os.listdir(".") if n != ".mirrorfs")),
    ("other-user", lambda: os.chmod("d", 0o777) or as_user("echo u > d/mine; mkdir d/mydir; ln -s x d/mysl") + " " + st("d/mine") + " " + st("d/mydir") + " " + st("d/mysl")),
    ("other-user-denied", lambda: as_user("(echo u > f) 2>/dev/null")),
    ("kill-setid", kill_setid),
    ("setgid-dir", lambda: os.mkdir("sg") or os.chown("sg", 0, 777) or os.chmod("sg", 0o2777) or as_user("mkdir sg/in; echo x > sg/in/f") + " " + st("sg/in") + " " + st("sg/in/f")),
]

os.chdir(sys.argv[1])
for name, fn in OPS:
    try:
        r = fn()
    except OSError as e:
        r = "error " + errno.errorcode.get(e.errno, str(e.errno))
    print("%-24s %s" % (name, r), flush=True)
PY

mkdir -p "$T/plain" "$T/data"
step "operations on a plain directory"
python3 "$T/ops.py" "$T/plain" >"$T/plain.out"
step "operations through mirrorfs"
mfs_mount "$T/data" "$T/mnt"
python3 "$T/ops.py" "$T/mnt" >"$T/mnt.out"
diff -u "$T/plain.out" "$T/mnt.out" || fail "results differ between a plain directory and the mount"
verify_equal "$T/plain" "$T/mnt" || fail "trees differ (plain vs mount)"

step "reserved name and virtual tree"
for bad in "mkdir $T/mnt/.mirrorfs/x" "touch $T/mnt/.mirrorfs/x" "rm -rf $T/mnt/.mirrorfs" \
	"mv $T/mnt/.mirrorfs $T/mnt/zz" "mv $T/mnt/f $T/mnt/.mirrorfs"; do
	if $bad 2>/dev/null; then fail "'$bad' succeeded"; fi
done
[ -d "$T/mnt/.mirrorfs/journal" ] || fail "virtual tree is gone"
ls -a "$T/mnt" | grep -qx .mirrorfs || fail ".mirrorfs not listed"
[ "$(ls "$T/mnt/.mirrorfs" | tr "\n" " ")" = "ctl current journal snapshots status " ] || fail "virtual entries"
python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$T/mnt/.mirrorfs/status" || fail "status is not JSON"
out=$(setpriv --reuid=4242 --regid=4242 --clear-groups -- sh -c "echo rotate > $T/mnt/.mirrorfs/ctl" 2>&1) &&
	fail "ctl writable by another user"
echo "$out" | grep -q "not permitted" || fail "ctl by another user: expected EPERM, got '$out'"

step "journal equivalence"
mfs_umount "$T/mnt"
replay_journal "$T/data/.mirrorfs" "$T/replayed" || fail "replay failed"
verify_equal "$T/data" "$T/replayed" || fail "replayed journal differs from the backing folder"
verify_equal "$T/plain" "$T/replayed" || fail "replayed journal differs from the plain run"

step "a size asked while pending writes are applied never goes backwards"
# (a getattr that stat'ed the backing file just before an apply emptied the
# pending list answered the old size: PostgreSQL then fails with
# "unexpected data beyond EOF")
mfs_mount "$T/data" "$T/mnt"
mkdir "$T/mnt/statrace"
"$MFS_BUILD/tests/integration/statrace" "$T/mnt/statrace" 15 || fail "a stale size was reported"
rm -r "$T/mnt/statrace"
mfs_umount "$T/mnt"

step "a capability the backing file had before the mount is seen, and removed by a write"
# (the mount answers the kernel's per-write security.capability question
# from memory once it saw a file without one: a file never asked must be)
printf 'x' >"$T/data/capsold"
python3 -c 'import os, struct, sys; os.setxattr(sys.argv[1], "security.capability", struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0))' "$T/data/capsold"
mfs_mount "$T/data" "$T/mnt"
python3 - "$T/mnt/capsold" <<'PY' || fail "a capability set before the mount was not seen, or not removed by a write"
import os, struct, sys
p = sys.argv[1]
assert os.getxattr(p, "security.capability") == struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0)
fd = os.open(p, os.O_WRONLY)
os.pwrite(fd, b"y", 1)
os.close(fd)
try:
    os.getxattr(p, "security.capability")
    sys.exit("still there after a write")
except OSError as e:
    assert e.errno == 61, e  # ENODATA
PY
mfs_umount "$T/mnt"
python3 -c 'import os, sys; os.getxattr(sys.argv[1], "security.capability")' "$T/data/capsold" 2>/dev/null &&
	fail "the backing file keeps its capability after a write through the mount"
rm "$T/data/capsold"

step "the kernel asks for security.capability once per file, not before every write"
# (FUSE_HANDLE_KILLPRIV_V2, negotiated by fs/killpriv.c: without it every
# write is preceded by a GETXATTR round trip)
mfs_mount "$T/data" "$T/mnt" -d
L0=$(wc -l <"$T/fs.log")
python3 - "$T/mnt/fewcaps" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for k in range(50):
    os.pwrite(fd, b"x" * 4096, k * 4096)
    os.fdatasync(fd)
os.close(fd)
PY
mfs_umount "$T/mnt"
if grep -q "FUSE_HANDLE_KILLPRIV_V2 on" "$T/fs.log"; then
	n=$(tail -n +"$L0" "$T/fs.log" | grep -c "opcode: GETXATTR" || true)
	w=$(tail -n +"$L0" "$T/fs.log" | grep -c "opcode: WRITE" || true)
	echo "$w WRITE requests, $n GETXATTR"
	[ "$w" -ge 50 ] || fail "expected 50 WRITE requests in the debug log, found $w"
	[ "$n" -le 2 ] || fail "the kernel asked for security.capability $n times for 50 writes"
elif [ "$(printf '%s\n' 5.11 "$(uname -r)" | sort -V | head -n 1)" = 5.11 ]; then
	fail "Linux $(uname -r) has FUSE_HANDLE_KILLPRIV_V2 (5.11 and later), but it was not negotiated"
else
	echo "(Linux $(uname -r) has no FUSE_HANDLE_KILLPRIV_V2: a GETXATTR per write)"
fi
rm "$T/data/fewcaps"

step "large writes are read back from the journal until applied, across rotations"
# (a write over FS_PENDING_COPY_MAX is kept as a place in its segment, not
# a copy: O_DIRECT reads, which the kernel's cache cannot answer, must see
# the newest bytes laid over older large and small writes; segments of
# 1 MiB close under the pending writes)
mfs_mount "$T/data" "$T/mnt" -o rotate_size=1M
python3 - "$T/mnt/pendbig" "$T/big.model" <<'PY' || fail "a read missed a large pending write"
import mmap, os, sys
p, model_path = sys.argv[1], sys.argv[2]
size = 4 << 20
model = bytearray(size)
end = 0
fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
dfd = os.open(p, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, size)
for k in range(40):
    for off, n in (((k * 77 << 10) % (3 << 20), 300 << 10), ((k * 131 << 10) % (3 << 20), 1 << 20),
                   ((k * 53 << 10) % (3 << 20) + 4096, 4096)):
        data = bytes([(k * 3 + n) & 0xff]) * n
        assert os.pwrite(fd, data, off) == n
        model[off:off + n] = data
        end = max(end, off + n)
    got = os.preadv(dfd, [buf], 0)
    if got != end:
        sys.exit("round %d: read %d bytes, not %d" % (k, got, end))
    if buf[:got] != bytes(model[:got]):
        i = next(i for i in range(got) if buf[i] != model[i])
        sys.exit("round %d: byte %d is %d, not %d" % (k, i, buf[i], model[i]))
os.close(dfd)
os.fsync(fd)
os.close(fd)
open(model_path, "wb").write(bytes(model[:end]))
PY
mfs_umount "$T/mnt"
cmp "$T/data/pendbig" "$T/big.model" || fail "the backing file differs from the writes made"
rm "$T/data/pendbig" "$T/big.model"

step "remount keeps LSNs going"
mfs_mount "$T/data" "$T/mnt"
last=$(status_field "$T/mnt" last_lsn)
echo again >"$T/mnt/again"
now=$(status_field "$T/mnt" last_lsn)
[ "$now" -gt "$last" ] && [ "$last" -gt 50 ] || fail "LSN did not advance across remount ($last -> $now)"
mfs_umount "$T/mnt"
echo "PASS"
