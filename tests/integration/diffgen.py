# SPDX-License-Identifier: MIT
"""diffgen.py - seeded generator of filesystem operations (fs-differential).

    python3 diffgen.py ROOT SEED NOPS

Runs NOPS operations drawn from Random(SEED) below the folder ROOT and
prints one line per operation: its arguments and its result (the errno
name if it failed, what it read if it reads). The sequence depends on the
seed alone, never on results, so two runs on two folders print the same
lines if and only if both folders behaved the same. Environment:
GEN_CTL (mirrorctl; then every ~GEN_ROTATE operations the segment of the
mount GEN_MOUNT (default ROOT) is rotated), GEN_OUTSIDE (a folder on another file system, for
EXDEV), GEN_ROOT_PREFIX (how far below the data root ROOT is, bytes of
"w0/": long paths are made to the limit of the data root's). Names come from a small pool so that operations collide: EEXIST,
ENOENT, ENOTDIR, EISDIR, ENOTEMPTY, ENAMETOOLONG, EFBIG, ENOSPC (a 64 KiB
xattr value on ext4), E2BIG and EXDEV all occur. Symlink targets are
relative and never contain '..': nothing resolves outside ROOT.
"""
import ctypes
import errno
import os
import subprocess
import sys
import random
import zlib
import stat

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FL_KEEP_SIZE, FL_PUNCH_HOLE, FL_ZERO = 0x1, 0x2, 0x10
NAMES = ["f1", "f2", "f3", "d1", "d2", "g"]
LONG = "n" * 255
TOO_LONG = "m" * 256
XNAMES = ["user.a", "user.b", "user.long" + "x" * 200, "trusted.t", "security.s"]
IDS = [0, 1000, 65534, 12345]
BIG = [1 << 44, (1 << 44) + 12345, 999999999999999, (1 << 62)]

root, seed, nops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctl = os.environ.get("GEN_CTL")
rotate_every = int(os.environ.get("GEN_ROTATE", "400"))
outside = os.environ.get("GEN_OUTSIDE")
path_max = 4095 - int(os.environ.get("GEN_ROOT_PREFIX", "0"))
rng = random.Random(seed)
R = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
os.chdir(root)
deep = []  # long paths made by op_deep (chosen from the seed alone)


def cerr(r):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def comp(folder=False):
    r = rng.random()
    if r < 0.03:
        return LONG
    if r < 0.04:
        return TOO_LONG
    if r < (0.8 if folder else 0.1):  # collisions of files and folders, but not too many
        return rng.choice(["d1", "d2"])
    return rng.choice(["f1", "f2", "f3", "g"])


def path(folder=False):
    if deep and rng.random() < 0.06:
        return rng.choice(deep)
    depth = rng.choice([0, 0, 0, 1, 1, 2, 3])
    dirs = ["d1", "d1", "d2", "d2", "f1"]  # mostly folders, sometimes a file: ENOTDIR
    return "/".join([rng.choice(dirs) for _ in range(depth)] + [comp(folder)])


def data(n):
    return rng.randbytes(n)


def offset():
    r = rng.random()
    if r < 0.03:
        return rng.choice(BIG)
    if r < 0.15:
        return rng.randrange(1 << 20, 8 << 20)  # sparse
    return rng.randrange(0, 256 << 10)


def length():
    return rng.choice([0, 1, 17, 512, 4096, 4096, 8192, 65536, rng.randrange(1, 200000)])


def wopen(p, flags, mode=0o644):
    """Open for I/O a regular file only: a FIFO must not block, a device
    made by op_mknod is never read or written (ENODEV stands for it)."""
    fd = os.open(p, flags | os.O_NONBLOCK, mode, dir_fd=R)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.ENODEV, "not a regular file")
    return fd


# ---------------------------------------------------------------- operations

def op_mkdir():
    p, m = path(True), rng.choice([0o755, 0o700, 0o2775, 0o1777])
    return "mkdir %s %o" % (p, m), lambda: os.mkdir(p, m, dir_fd=R)


def op_rmdir():
    p = path(True)
    return "rmdir %s" % p, lambda: os.rmdir(p, dir_fd=R)


def op_unlink():
    p = path()
    return "unlink %s" % p, lambda: os.unlink(p, dir_fd=R)


def op_write():
    p, off, buf = path(), offset(), data(length())
    fl = rng.choice([os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_CREAT, os.O_WRONLY,
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_WRONLY | os.O_APPEND,
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL])
    mode = rng.choice([0o644, 0o600, 0o4755, 0o2755])

    def run():
        fd = wopen(p, fl, mode)
        try:
            n = os.write(fd, buf) if fl & os.O_APPEND else os.pwrite(fd, buf, off)
        finally:
            os.close(fd)
        return "wrote %d" % n
    return "write %s flags %o off %d len %d" % (p, fl, off, len(buf)), run


def op_truncate():
    p = path()
    size = rng.choice(BIG) if rng.random() < 0.1 else rng.randrange(0, 300000)
    return "truncate %s %d" % (p, size), lambda: trunc(p, size)


def trunc(p, size):
    fd = wopen(p, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def op_fallocate():
    p = path()
    # not COLLAPSE/INSERT_RANGE: the kernel's FUSE refuses them (EOPNOTSUPP)
    mode = rng.choice([0, FL_KEEP_SIZE, FL_PUNCH_HOLE | FL_KEEP_SIZE, FL_ZERO,
                       FL_ZERO | FL_KEEP_SIZE, FL_PUNCH_HOLE])
    if rng.random() < 0.05:
        off, ln = rng.choice(BIG), 4096
    else:
        off, ln = rng.randrange(0, 64) * 4096, rng.randrange(1, 64) * 4096
        if rng.random() < 0.3:
            off, ln = off + rng.randrange(1, 4096), ln - rng.randrange(0, 4000)

    def run():
        fd = wopen(p, os.O_RDWR)
        try:
            cerr(libc.fallocate(fd, mode, off, ln))
        finally:
            os.close(fd)
    return "fallocate %s mode %x off %d len %d" % (p, mode, off, ln), run


def op_link():
    a, b = path(), path()
    return "link %s %s" % (a, b), lambda: os.link(a, b, src_dir_fd=R, dst_dir_fd=R,
                                                   follow_symlinks=False)


def op_symlink():
    r = rng.random()
    if r < 0.03:
        t = "t" * 4095
    elif r < 0.05:
        t = "t" * 4096
    else:
        t = "/".join(rng.choice(NAMES) for _ in range(rng.randrange(1, 3)))
    p = path()
    return "symlink %s -> %s" % (p, t[:40]), lambda: os.symlink(t, p, dir_fd=R)


def op_rename():
    a, b = path(), path()
    flags = rng.choice([0, 0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])
    return "rename %s %s flags %d" % (a, b, flags), lambda: cerr(
        libc.renameat2(R, a.encode(), R, b.encode(), flags))


def op_mknod():
    p = path()
    kind = rng.choice(["fifo", "chr", "blk", "sock", "reg"])
    m = {"fifo": 0o010644, "chr": 0o020640, "blk": 0o060660, "sock": 0o140755,
         "reg": 0o100600}[kind]
    # harmless numbers only: 1:3/5/7 null, zero, full; 7:200+ absent loops
    dev = os.makedev(1, rng.choice([3, 5, 7])) if kind != "blk" else \
        os.makedev(7, rng.randrange(200, 250))
    return "mknod %s %o %d" % (p, m, dev), lambda: os.mknod(p, m, dev, dir_fd=R)


def op_chmod():
    p, m = path(), rng.randrange(0, 0o10000)
    return "chmod %s %o" % (p, m), lambda: os.chmod(p, m, dir_fd=R)


def op_chown():
    p, u, g = path(), rng.choice(IDS + [-1]), rng.choice(IDS + [-1])
    nofollow = rng.random() < 0.5
    return "chown %s %d %d nofollow %d" % (p, u, g, nofollow), lambda: os.chown(
        p, u, g, dir_fd=R, follow_symlinks=not nofollow)


def op_utime():
    p = path()
    t = (rng.randrange(0, 1 << 33) * 10**9 + rng.randrange(10**9),
         rng.randrange(0, 1 << 33) * 10**9 + rng.randrange(10**9))
    return "utime %s %d %d" % (p, t[0], t[1]), lambda: os.utime(p, ns=t, dir_fd=R,
                                                                follow_symlinks=False)


def op_setxattr():
    p, n = path(), rng.choice(XNAMES)
    size = rng.choice([0, 1, 10, 200, 3000, 65536, 65537]) if rng.random() < 0.15 \
        else rng.randrange(0, 300)
    v, fl = data(size), rng.choice([0, 0, os.XATTR_CREATE, os.XATTR_REPLACE])
    nofollow = rng.random() < 0.3
    return "setxattr %s %s len %d flags %d nofollow %d" % (p, n[:12], size, fl, nofollow), \
        lambda: os.setxattr(rooted(p), n, v, fl, follow_symlinks=not nofollow)


def op_removexattr():
    p, n = path(), rng.choice(XNAMES)
    return "removexattr %s %s" % (p, n[:12]), lambda: os.removexattr(rooted(p), n)


def rooted(p):
    return p  # relative to the working folder, ROOT (a 4095-byte path fits)


def op_open_rename_write():
    a, b, off, buf = path(), path(), offset(), data(length())

    def run():
        fd = wopen(a, os.O_RDWR)
        try:
            os.rename(a, b, src_dir_fd=R, dst_dir_fd=R)
            os.pwrite(fd, buf, off)
            return "ok"
        finally:
            os.close(fd)
    return "open-rename-write %s %s off %d len %d" % (a, b, off, len(buf)), run


def op_open_unlink_write():
    a, off, buf = path(), offset(), data(length())

    def run():
        fd = wopen(a, os.O_RDWR)
        try:
            os.unlink(a, dir_fd=R)
            os.pwrite(fd, buf, off)
            return "read back %08x" % zlib.crc32(os.pread(fd, 1 << 20, 0))
        finally:
            os.close(fd)
    return "open-unlink-write %s off %d len %d" % (a, off, len(buf)), run


def op_exdev():
    p = path()
    if not outside:
        return "exdev (none)", lambda: None
    return "exdev %s" % p, lambda: os.rename(p, outside + "/x", src_dir_fd=R)


def op_deep():
    """A chain of 254-byte folder names to a path of PATH_MAX - 1 (or PATH_MAX) bytes
    below the data root (ROOT may be a folder GEN_ROOT_PREFIX bytes below it)."""
    base = rng.choice(["deep", "d1/deep"])
    # one byte more: ENAMETOOLONG, but only where ROOT is the data root (below
    # it the path is too long for the journal's 4095 bytes, not for ROOT's)
    extra = rng.choice([0, 0, 1]) if path_max == 4095 else 0 * rng.choice([0, 0, 1])
    comps, total = [], len(base)
    while total + 1 + 254 < path_max:
        comps.append(chr(ord("a") + len(comps) % 26) * 254)
        total += 255
    last = "z" * (path_max - total - 1 + extra)
    full = "/".join([base] + comps + [last])
    deep.append(full)

    def run():
        cur = base
        for c in [None] + comps:
            if c:
                cur += "/" + c
            try:
                os.mkdir(cur, 0o755, dir_fd=R)
            except FileExistsError:
                pass
        fd = wopen(full, os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"deep")
        os.close(fd)
        return "len %d" % len(full)
    return "deep %s len %d" % (base, len(full)), run


# ---------------------------------------------------------------- reads (differential)

def op_stat():
    p = path()

    def run():
        s = os.stat(p, dir_fd=R, follow_symlinks=False)
        return "mode %o nlink %d uid %d gid %d size %s rdev %d" % (
            s.st_mode, s.st_nlink, s.st_uid, s.st_gid,
            s.st_size if not stat.S_ISDIR(s.st_mode) else "-", s.st_rdev)
    return "stat %s" % p, run


def op_read():
    p = path()

    def run():
        fd = wopen(p, os.O_RDONLY)
        try:
            d = b""
            while True:
                c = os.read(fd, 1 << 20)
                if not c:
                    break
                d += c
            return "%d bytes %08x" % (len(d), zlib.crc32(d))
        finally:
            os.close(fd)
    return "read %s" % p, run


def op_list():
    p = rng.choice(["", "d1", "d2", "d1/d2", "f1"])

    def run():
        fd = os.open(p or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=R)
        try:
            return " ".join(sorted(n[:20] for n in os.listdir(fd) if p or n != ".mirrorfs"))
        finally:
            os.close(fd)
    return "list %s" % p, run


def op_getxattr():
    p = path()

    def run():
        names = sorted(os.listxattr(rooted(p), follow_symlinks=False))
        return " ".join("%s=%08x" % (n[:12], zlib.crc32(os.getxattr(rooted(p), n,
                                                               follow_symlinks=False)))
                        for n in names)
    return "xattrs %s" % p, run


OPS = [(op_mkdir, 8), (op_rmdir, 4), (op_unlink, 5), (op_write, 20), (op_truncate, 5),
       (op_fallocate, 4), (op_link, 5), (op_symlink, 4), (op_rename, 8), (op_mknod, 3),
       (op_chmod, 3), (op_chown, 3), (op_utime, 2), (op_setxattr, 4), (op_removexattr, 2),
       (op_open_rename_write, 2), (op_open_unlink_write, 1), (op_exdev, 1), (op_deep, 0.3),
       (op_stat, 6), (op_read, 6), (op_list, 2), (op_getxattr, 2)]
FNS, WEIGHTS = [o[0] for o in OPS], [o[1] for o in OPS]


def main():
    out = sys.stdout
    for k in range(nops):
        desc, run = rng.choices(FNS, WEIGHTS)[0]()
        try:
            r = run()
            res = "ok" if r is None else str(r)
        except OSError as e:
            res = errno.errorcode.get(e.errno, str(e.errno))
        out.write("%d %s -> %s\n" % (k, desc, res))
        if ctl and k % rotate_every == rotate_every - 1:
            subprocess.run([ctl, "rotate", os.environ.get("GEN_MOUNT", root)], check=True,
                           stdout=subprocess.DEVNULL)
    out.flush()


main()
