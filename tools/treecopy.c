/* SPDX-License-Identifier: MIT */
/*
 * treecopy.c - the copy of a snapshot's tree into an empty folder, for
 * `mirrorctl restore`: everything opened relative to directory fds (no path
 * length limit, two fds per level) with O_NOFOLLOW; hard links kept (an
 * inode with several links is copied once, then linked); data by
 * copy_file_range where it works, else pread/pwrite leaving holes.
 */
#include "restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/xattr.h"

#define COPY_CHUNK (1u << 20) /* pread/pwrite buffer */
#define CFR_CHUNK (8u << 20) /* copy_file_range step (progress granularity) */

/*
 * Open @name of @dirfd in the snapshot for reading, without changing its
 * access time (O_NOATIME needs ownership or CAP_FOWNER; else without).
 */
int cli_open_src(int dirfd, const char *name, int flags)
{
	int fd = openat(dirfd, name, flags | O_RDONLY | O_NOATIME | O_CLOEXEC);

	if (fd < 0 && errno == EPERM)
		fd = openat(dirfd, name, flags | O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

void cli_free_names(char **names, size_t n)
{
	mfs_dir_names_free(names, n);
}

/* At the top of a snapshot, mirrorfs's own folder is not copied. */
static bool not_ctl_dir(const char *name, void *arg)
{
	return strcmp(name, MFS_CTL_DIR) != 0;
}

int cli_list_names(int fd, bool top, char ***ret, size_t *ret_n)
{
	return mfs_dir_list(fd, ".", top ? not_ctl_dir : NULL, NULL, ret, ret_n);
}

/* ================================================================ copy */


struct link_ent {
	dev_t dev;
	ino_t ino;
	char *path; /* of its first copy, relative to the target root */
};

struct copy {
	const char *src; /* the snapshot, for messages (srclen: without trailing slashes) */
	int srclen;
	int rootfd; /* the target */
	dev_t root_dev; /* the target's identity: never copied into itself */
	ino_t root_ino;
	bool owners; /* running as root: copy owners */
	bool no_cfr; /* copy_file_range does not work here: pread/pwrite */
	char *path; /* the entry being copied, relative to the snapshot */
	size_t len, cap;
	struct link_ent *links; /* inodes with several links, sorted by (dev, ino) */
	size_t nlinks, caplinks;
	char *buf; /* COPY_CHUNK bytes */
	uint64_t bytes;
	struct cli_progress *prog;
};

/* Print "cannot WHAT 'SNAPSHOT/ENTRY': ERROR" for @r (-errno) and return 1. */
static int copy_fail(struct copy *c, int r, const char *what)
{
	errno = -r;
	return cli_fail("cannot %s '%.*s%s%s': %m", what, c->srclen, c->src, c->len ? "/" : "",
			c->path);
}

static int path_push(struct copy *c, const char *name, size_t *ret_old)
{
	size_t n = strlen(name), need = c->len + n + 2;

	if (need > c->cap) {
		size_t cap = MFS_MAX(need, 2 * c->cap);
		char *p = realloc(c->path, cap);

		if (!p)
			return -ENOMEM;
		c->path = p;
		c->cap = cap;
	}
	*ret_old = c->len;
	if (c->len)
		c->path[c->len++] = '/';
	memcpy(c->path + c->len, name, n + 1);
	c->len += n;
	return 0;
}

static void path_pop(struct copy *c, size_t old)
{
	c->len = old;
	c->path[old] = 0;
}

/* Where inode (@dev, @ino) is or would go in c->links. */
static size_t link_find(const struct copy *c, dev_t dev, ino_t ino, bool *ret_found)
{
	size_t lo = 0, hi = c->nlinks;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct link_ent *e = &c->links[mid];

		if (e->dev == dev && e->ino == ino) {
			*ret_found = true;
			return mid;
		}
		if (e->dev < dev || (e->dev == dev && e->ino < ino))
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret_found = false;
	return lo;
}

/* Remember the current entry as the first copy of inode @st, at index @at. */
static int link_add(struct copy *c, size_t at, const struct stat *st)
{
	struct link_ent e = {st->st_dev, st->st_ino, strdup(c->path)};

	if (!e.path)
		return -ENOMEM;
	if (c->nlinks == c->caplinks) {
		size_t cap = c->caplinks ? 2 * c->caplinks : 64;
		struct link_ent *v = realloc(c->links, cap * sizeof(*v));

		if (!v) {
			free(e.path);
			return -ENOMEM;
		}
		c->links = v;
		c->caplinks = cap;
	}
	memmove(c->links + at + 1, c->links + at, (c->nlinks - at) * sizeof(*c->links));
	c->links[at] = e;
	c->nlinks++;
	return 0;
}

static bool is_zero(const char *b, size_t n)
{
	return n == 0 || (b[0] == 0 && !memcmp(b, b + 1, n - 1));
}

/*
 * Copy bytes of @in at @off to @out: copy_file_range (a reflink or an
 * in-kernel copy), else pread/pwrite leaving zero blocks as holes.
 * Returns the bytes copied (0 at the end of the file) or -errno.
 */
static ssize_t copy_step(struct copy *c, int in, int out, uint64_t off)
{
	ssize_t n;
	int r;

	if (!c->no_cfr) {
		loff_t oin = (loff_t)off, oout = (loff_t)off;

		n = copy_file_range(in, &oin, out, &oout, CFR_CHUNK, 0);
		if (n > 0)
			return n;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP))
			c->no_cfr = true; /* e.g. from a FUSE snapshot to another file system */
		else if (n < 0 && errno != EINVAL)
			return -errno;
		/* 0: the end, or a file system that cannot tell (procfs-like): read */
	}
	n = mfs_pread_all(in, c->buf, COPY_CHUNK, off);
	if (n <= 0 || is_zero(c->buf, (size_t)n))
		return n;
	r = mfs_pwrite_all(out, c->buf, (size_t)n, off);
	return r < 0 ? r : n;
}

static int copy_data(struct copy *c, int in, int out)
{
	uint64_t off = 0;
	ssize_t n;

	while ((n = copy_step(c, in, out, off)) > 0) {
		off += (uint64_t)n;
		c->bytes += (uint64_t)n;
		cli_progress_set(c->prog, c->bytes);
	}
	if (n < 0)
		return (int)n;
	if (ftruncate(out, (off_t)off) < 0) /* a hole at the end */
		return -errno;
	return 0;
}

/*
 * Owner, extended attributes, permissions and times of @out (a file or
 * directory) from @in and its @st, in that order: chown clears set-id bits
 * and file capabilities, which the later steps put back.
 */
static int set_attrs_fd(struct copy *c, int in, int out, const struct stat *st, bool top)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	int r;

	if (c->owners && fchown(out, st->st_uid, st->st_gid) < 0)
		return -errno;
	r = mfs_xattr_copy(in, out, top ? SNAP_XATTR_PREFIX : NULL); /* not the snapshot's own */
	if (r < 0)
		return r;
	if (fchmod(out, st->st_mode & 07777) < 0 || futimens(out, ts) < 0)
		return -errno;
	return 0;
}

/*
 * The same for a symlink, fifo or socket @name of @ddir (no xattrs: user.*
 * ones are not allowed there).
 */
static int set_attrs_at(struct copy *c, int ddir, const char *name, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};

	if (c->owners && fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISLNK(st->st_mode) &&
	    fchmodat(ddir, name, st->st_mode & 07777, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

/*
 * A regular file. A second name of an inode already copied becomes a hard
 * link to the copy; only if that copy cannot be named from the target root
 * (ENAMETOOLONG) is it copied as a separate file, same content and
 * attributes.
 */
static int copy_reg(struct copy *c, int sdir, int ddir, const char *name, const struct stat *st)
{
	_cleanup_close_ int in = -EBADF, out = -EBADF;
	bool known = false;
	size_t at = 0;
	int r;

	if (st->st_nlink > 1) {
		at = link_find(c, st->st_dev, st->st_ino, &known);
		if (known && linkat(c->rootfd, c->links[at].path, ddir, name, 0) == 0)
			return 0;
		if (known && errno != ENAMETOOLONG)
			return copy_fail(c, -errno, "link");
	}
	in = cli_open_src(sdir, name, O_NOFOLLOW);
	if (in < 0)
		return copy_fail(c, in, "open");
	out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return copy_fail(c, -errno, "create the copy of");
	r = copy_data(c, in, out);
	if (r < 0)
		return copy_fail(c, r, "copy");
	r = set_attrs_fd(c, in, out, st, false);
	if (r < 0)
		return copy_fail(c, r, "set the attributes of the copy of");
	if (st->st_nlink > 1 && !known) {
		r = link_add(c, at, st);
		if (r < 0)
			return copy_fail(c, r, "copy");
	}
	return 0;
}

static int copy_symlink(struct copy *c, int sdir, int ddir, const char *name, const struct stat *st)
{
	char target[PATH_MAX + 1];
	ssize_t n;
	int r;

	n = readlinkat(sdir, name, target, sizeof(target));
	if (n < 0)
		return copy_fail(c, -errno, "read the symlink");
	if ((size_t)n >= sizeof(target))
		return copy_fail(c, -ENAMETOOLONG, "read the symlink");
	target[n] = 0;
	if (symlinkat(target, ddir, name) < 0)
		return copy_fail(c, -errno, "create the copy of");
	r = set_attrs_at(c, ddir, name, st);
	return r < 0 ? copy_fail(c, r, "set the attributes of the copy of") : 0;
}

/* A fifo or a socket (an inode only: nobody listens). */
static int copy_node(struct copy *c, int ddir, const char *name, const struct stat *st)
{
	int r;

	if (mknodat(ddir, name, (st->st_mode & S_IFMT) | 0600, 0) < 0)
		return copy_fail(c, -errno, "create the copy of");
	r = set_attrs_at(c, ddir, name, st);
	return r < 0 ? copy_fail(c, r, "set the attributes of the copy of") : 0;
}

static int copy_children(struct copy *c, int sdir, int ddir, bool top);

static int copy_dir(struct copy *c, int sdir, int ddir, const char *name, const struct stat *st)
{
	_cleanup_close_ int s = -EBADF, d = -EBADF;
	int r;

	if (st->st_dev == c->root_dev && st->st_ino == c->root_ino)
		return cli_fail(
			"'%.*s/%s' is the --to folder: restore to a folder outside the snapshot",
			c->srclen, c->src, c->path);
	s = cli_open_src(sdir, name, O_DIRECTORY | O_NOFOLLOW);
	if (s < 0)
		return copy_fail(c, s, "open");
	if (mkdirat(ddir, name, 0700) < 0) /* writable until its contents are in */
		return copy_fail(c, -errno, "create the copy of");
	d = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d < 0)
		return copy_fail(c, -errno, "open the copy of");
	if (copy_children(c, s, d, false))
		return 1;
	r = set_attrs_fd(c, s, d, st, false); /* after the contents: their times stay */
	return r < 0 ? copy_fail(c, r, "set the attributes of the copy of") : 0;
}

static int copy_entry(struct copy *c, int sdir, int ddir, const char *name)
{
	struct stat st;

	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return copy_fail(c, -errno, "stat");
	switch (st.st_mode & S_IFMT) {
	case S_IFDIR:
		return copy_dir(c, sdir, ddir, name, &st);
	case S_IFREG:
		return copy_reg(c, sdir, ddir, name, &st);
	case S_IFLNK:
		return copy_symlink(c, sdir, ddir, name, &st);
	case S_IFIFO:
	case S_IFSOCK:
		return copy_node(c, ddir, name, &st);
	default: /* devices: mirrorfs never journals them, the engine refuses them */
		return copy_fail(c, -EOPNOTSUPP, "copy the device node");
	}
}

/* Every entry of @sdir into @ddir. Returns 0, or 1 after a message. */
static int copy_children(struct copy *c, int sdir, int ddir, bool top)
{
	char **names;
	size_t n, old = 0;
	int r, ret = 0;

	r = cli_list_names(sdir, top, &names, &n);
	if (r < 0)
		return copy_fail(c, r, "list");
	/* the names are read first: only two fds stay open per level */
	for (size_t i = 0; i < n && !ret; i++) {
		r = path_push(c, names[i], &old);
		if (r < 0)
			ret = copy_fail(c, r, "copy");
		else
			ret = copy_entry(c, sdir, ddir, names[i]);
		if (!ret)
			path_pop(c, old);
	}
	cli_free_names(names, n);
	return ret;
}

/* Bytes in the regular files under @fd, for the progress line (errors: what was counted). */
uint64_t cli_count_bytes(int fd, bool top)
{
	uint64_t bytes = 0;
	struct stat st;
	char **names;
	size_t n;

	if (cli_list_names(fd, top, &names, &n) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			bytes += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode)) {
			_cleanup_close_ int sub = cli_open_src(fd, names[i], O_DIRECTORY | O_NOFOLLOW);

			if (sub >= 0)
				bytes += cli_count_bytes(sub, false);
		}
	}
	cli_free_names(names, n);
	return bytes;
}

int cli_copy_tree(const char *src, int snapfd, const struct stat *snap_st, const char *to,
		  int rootfd, struct cli_progress *prog, uint64_t *ret_bytes)
{
	struct copy c = {
		.src = src,
		.rootfd = rootfd,
		.owners = geteuid() == 0,
		.prog = prog,
	};
	struct stat root_st;
	int r, ret = 1;

	if (fstat(rootfd, &root_st) < 0)
		return cli_fail("cannot stat '%s': %m", to);
	c.srclen = (int)strlen(c.src);
	while (c.srclen > 1 && c.src[c.srclen - 1] == '/')
		c.srclen--;
	c.root_dev = root_st.st_dev;
	c.root_ino = root_st.st_ino;
	c.buf = malloc(COPY_CHUNK);
	c.path = calloc(1, 256);
	c.cap = 256;
	if (!c.buf || !c.path) {
		cli_fail("out of memory");
		goto out_free;
	}
	cli_progress_phase(prog, "copy", prog->on ? cli_count_bytes(snapfd, true) : 0);
	if (copy_children(&c, snapfd, rootfd, true))
		goto out_free;
	r = set_attrs_fd(&c, snapfd, rootfd, snap_st, true);
	if (r < 0) {
		copy_fail(&c, r, "set the attributes of the copy of");
		goto out_free;
	}
	*ret_bytes = c.bytes;
	ret = 0;
out_free:
	for (size_t i = 0; i < c.nlinks; i++)
		free(c.links[i].path);
	free(c.links);
	free(c.path);
	free(c.buf);
	return ret;
}
