/* SPDX-License-Identifier: MIT */
/*
 * restore.c - `mirrorctl restore --snapshot PATH [--lsn N] [--until LSN|TIME]
 * --segments DIR --to DIR`: point-in-time restore from a snapshot plus the
 * segments after it.
 *
 * 1. The snapshot's LSN N comes from the attribute user.mirrorfs.lsn of
 *    PATH (or --lsn), its data set from user.mirrorfs.dataset when present.
 *    The segments of DIR after N are listed and checked for gaps by name
 *    before anything is written.
 * 2. The tree under PATH is copied into the --to folder, which must be
 *    missing or empty: regular files, directories, symlinks (the link, never
 *    followed), fifos and sockets, with permissions, owners (as root),
 *    access and modification times, extended attributes and hard links.
 *    Everything is opened relative to directory fds (no path length limit,
 *    two fds per level) with O_NOFOLLOW.
 * 3. The records after N are applied with the replay engine (segset.c) up
 *    to --until; then the engine's flush, and one syncfs for the copy, make
 *    the restored tree durable.
 *
 * A target the segments do not reach is an error (exit 1, naming the
 * target and the last point reached), as PostgreSQL's recovery target: an
 * LSN past the last segment is refused before anything is written; a time
 * is reached only once a record after it is seen, so a time past the last
 * record fails after the replay (the --to folder then holds that last
 * point). `--until latest` (or no --until) asks for whatever is there.
 * The --to folder must not be inside a data folder in use (its lock).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/xattr.h"
#include "segset.h"

#define SNAP_XATTR_PREFIX "user.mirrorfs."
#define SNAP_XATTR_LSN SNAP_XATTR_PREFIX "lsn"
#define SNAP_XATTR_DATASET SNAP_XATTR_PREFIX "dataset"
#define COPY_CHUNK (1u << 20) /* pread/pwrite buffer; also holds xattr values */
#define CFR_CHUNK (8u << 20) /* copy_file_range step (progress granularity) */
#define PROGRESS_NS (250000000ull) /* at most 4 updates a second */

static const char usage_text[] = "usage: mirrorctl restore [--dry-run] --snapshot PATH [--lsn N] "
				 "[--until LSN|TIME|latest] [--auth-key FILE]... --segments DIR --to DIR\n";

struct restore {
	const char *snapshot, *segments, *to;
	bool dry_run; /* the plan on stdout, nothing written */
	bool have_lsn;
	uint64_t lsn; /* the snapshot's */
	bool have_uuid;
	uint8_t uuid[16];
	uint64_t until_lsn, until_ns; /* UINT64_MAX: no limit */
	struct mfs_keyring keys;      /* --auth-key: segments must be authenticated */
};

/* ================================================================ parsing */

/* All digits, no overflow. */
static bool parse_lsn(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = v;
	return true;
}

static bool is_digit(char c)
{
	return isdigit((unsigned char)c);
}

/* An optional ".digits" at *p: nanoseconds (digits past the 9th are dropped). */
static bool parse_frac(const char **p, uint64_t *ret_ns)
{
	const char *s = *p;
	uint64_t ns = 0, scale = 100000000;

	*ret_ns = 0;
	if (*s != '.')
		return true;
	if (!is_digit(*++s))
		return false;
	for (; is_digit(*s); s++, scale /= 10)
		ns += (uint64_t)(*s - '0') * scale;
	*p = s;
	*ret_ns = ns;
	return true;
}

/* "Z", "+HH:MM", "-HHMM", "+HH": seconds east of UTC. */
static bool parse_zone(const char *z, int64_t *ret_off)
{
	int sign, h, m = 0;

	if (z[0] == 'Z' && !z[1]) {
		*ret_off = 0;
		return true;
	}
	if ((*z != '+' && *z != '-') || !is_digit(z[1]) || !is_digit(z[2]))
		return false;
	sign = *z == '-' ? -1 : 1;
	h = (z[1] - '0') * 10 + (z[2] - '0');
	z += 3;
	if (*z == ':')
		z++;
	if (*z) {
		if (!is_digit(z[0]) || !is_digit(z[1]) || z[2])
			return false;
		m = (z[0] - '0') * 10 + (z[1] - '0');
	}
	if (h > 23 || m > 59)
		return false;
	*ret_off = sign * (h * 3600 + m * 60);
	return true;
}

/* "YYYY-MM-DDTHH:MM:SS[.frac][Z|±HH:MM]" (local time without a zone): seconds, ns. */
static int parse_iso(const char *s, int64_t *ret_sec, uint64_t *ret_ns)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd";
	struct tm tm = {0};
	const char *p = s + sizeof(pattern) - 1;
	int64_t off;
	time_t t;
	int mday, mon;

	for (size_t i = 0; i < sizeof(pattern) - 1; i++)
		if (pattern[i] == 'd' ? !is_digit(s[i]) : s[i] != pattern[i])
			return -EINVAL;
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = mon = atoi(s + 5) - 1;
	tm.tm_mday = mday = atoi(s + 8);
	tm.tm_hour = atoi(s + 11);
	tm.tm_min = atoi(s + 14);
	tm.tm_sec = atoi(s + 17);
	if (mon > 11 || mday < 1 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 ||
	    !parse_frac(&p, ret_ns))
		return -EINVAL;
	if (!*p) {
		tm.tm_isdst = -1;
		t = mktime(&tm);
		off = 0;
	} else {
		if (!parse_zone(p, &off))
			return -EINVAL;
		t = timegm(&tm);
	}
	if (t == (time_t)-1 || tm.tm_mday != mday || tm.tm_mon != mon) /* e.g. February 30 */
		return -EINVAL;
	*ret_sec = (int64_t)t - off;
	return 0;
}

/* An ISO 8601 time or "@SECONDS[.frac]": ns since the epoch. Returns 0 or -EINVAL. */
static int parse_time(const char *s, uint64_t *ret)
{
	uint64_t ns = 0;
	int64_t sec;

	if (*s == '@') {
		const char *p = s + 1;
		char *end;

		if (!is_digit(*p))
			return -EINVAL;
		errno = 0;
		sec = (int64_t)strtoll(p, &end, 10);
		p = end;
		if (errno || !parse_frac(&p, &ns) || *p)
			return -EINVAL;
	} else if (parse_iso(s, &sec, &ns) < 0) {
		return -EINVAL;
	}
	if (sec < 0 || (uint64_t)sec >= UINT64_MAX / 1000000000u - 1)
		return -EINVAL;
	*ret = (uint64_t)sec * 1000000000u + ns;
	return 0;
}

/* Returns 0, 1 after a message, 2 after the usage. */
static int parse_args(int argc, char **argv, struct restore *o)
{
	const char *lsn = NULL, *until = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dry-run")) {
			o->dry_run = true;
			continue;
		}
		if (!strcmp(argv[i], "--auth-key") && i + 1 < argc) {
			if (cli_auth_key_add(&o->keys, argv[++i]))
				return 1;
			continue;
		}
		const char **slot = !strcmp(argv[i], "--snapshot")   ? &o->snapshot
				    : !strcmp(argv[i], "--segments") ? &o->segments
				    : !strcmp(argv[i], "--to")	     ? &o->to
				    : !strcmp(argv[i], "--lsn")	     ? &lsn
				    : !strcmp(argv[i], "--until")    ? &until
								     : NULL;
		if (!slot || i + 1 >= argc) {
			fputs(usage_text, stderr);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!o->snapshot || !o->segments || !o->to) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (lsn && !parse_lsn(lsn, &o->lsn))
		return cli_fail("--lsn '%s' is not an LSN", lsn);
	o->have_lsn = lsn != NULL;
	if (until && !strcmp(until, "latest"))
		return 0; /* whatever the segments hold: no target to miss */
	if (until && !parse_lsn(until, &o->until_lsn) && parse_time(until, &o->until_ns) < 0)
		return cli_fail("--until '%s' is neither an LSN nor a time "
				"(YYYY-MM-DDTHH:MM:SS[.frac][Z|+HH:MM] or @SECONDS[.frac])",
				until);
	return 0;
}

/* ================================================================ progress */

/* One line on a terminal, rewritten in place at most 4 times a second. */
struct progress {
	bool on; /* stderr is a terminal */
	bool shown;
	const char *phase;
	uint64_t total; /* 0: unknown */
	uint64_t t0, last_ns;
};

static void progress_phase(struct progress *p, const char *phase, uint64_t total)
{
	p->phase = phase;
	p->total = total;
	p->t0 = mfs_mono_ns();
}

/* "512 B", "3.1 kB", "12.0 MB", "1.5 GB" */
static void human(uint64_t bytes, char *out, size_t cap)
{
	static const char *const unit[] = {"kB", "MB", "GB", "TB"};
	double v = (double)bytes / 1000;
	size_t u = 0;

	if (bytes < 1000) {
		snprintf(out, cap, "%" PRIu64 " B", bytes);
		return;
	}
	for (; v >= 1000 && u + 1 < ARRAY_SIZE(unit); u++)
		v /= 1000;
	snprintf(out, cap, "%.1f %s", v, unit[u]);
}

static void progress_set(struct progress *p, uint64_t done)
{
	char sdone[32], stotal[32], eta[80] = "";
	uint64_t now, left;
	double secs, rate;

	if (!p->on)
		return;
	now = mfs_mono_ns();
	if (p->shown && now - p->last_ns < PROGRESS_NS)
		return;
	p->last_ns = now;
	p->shown = true;
	secs = (double)(now - p->t0) / 1e9;
	rate = secs > 0 ? (double)done / secs : 0;
	human(done, sdone, sizeof(sdone));
	if (p->total && done <= p->total && rate > 0) {
		left = (uint64_t)((double)(p->total - done) / rate);
		human(p->total, stotal, sizeof(stotal));
		snprintf(eta, sizeof(eta), " of %s, ETA %" PRIu64 ":%02" PRIu64, stotal, left / 60,
			 left % 60);
	}
	fprintf(stderr, "\r%s: %s%s, %.1f MB/s\033[K", p->phase, sdone, eta, rate / 1e6);
}

static void progress_cb(void *arg, uint64_t bytes)
{
	progress_set(arg, bytes);
}

static void progress_end(struct progress *p)
{
	if (p->shown)
		fputs("\r\033[K", stderr);
}

/* ================================================================ snapshot and target */

/*
 * Read attribute @name of @fd into @buf (trailing newline dropped).
 * Returns 1, 0 if absent, or -errno.
 */
static int get_attr(int fd, const char *name, char *buf, size_t cap)
{
	ssize_t n = fgetxattr(fd, name, buf, cap - 1);

	if (n < 0)
		return errno == ENODATA || errno == ENOTSUP ? 0 : -errno;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 1;
}

/* The snapshot's LSN (--lsn wins) and data set. Returns 0, or 1 after a message. */
static int snapshot_identity(int fd, struct restore *o)
{
	char buf[64];
	uint64_t lsn = 0;
	int r;

	r = get_attr(fd, SNAP_XATTR_LSN, buf, sizeof(buf));
	if (r < 0 && r != -ERANGE) {
		errno = -r;
		return cli_fail("cannot read %s of '%s': %m", SNAP_XATTR_LSN, o->snapshot);
	}
	if (r != 0 && (r < 0 || !parse_lsn(buf, &lsn)))
		return cli_fail("'%s': %s is not an LSN", o->snapshot, SNAP_XATTR_LSN);
	if (r > 0 && o->have_lsn && lsn != o->lsn)
		cli_warn("'%s' says LSN %" PRIu64 "; using --lsn %" PRIu64, o->snapshot, lsn,
			 o->lsn);
	if (r > 0 && !o->have_lsn) {
		o->lsn = lsn;
		o->have_lsn = true;
	}
	if (!o->have_lsn)
		return cli_fail("no LSN for the snapshot '%s': it has no %s attribute (a copy that "
				"lost it?); give it with --lsn N",
				o->snapshot, SNAP_XATTR_LSN);
	r = get_attr(fd, SNAP_XATTR_DATASET, buf, sizeof(buf));
	if (r != 0 && (r < 0 || mfs_uuid_parse(buf, o->uuid) < 0))
		return cli_fail("'%s': %s is not a data-set UUID", o->snapshot, SNAP_XATTR_DATASET);
	o->have_uuid = r > 0;
	return 0;
}

/*
 * Open @name of @dirfd in the snapshot for reading, without changing its
 * access time (O_NOATIME needs ownership or CAP_FOWNER; else without).
 */
static int open_src(int dirfd, const char *name, int flags)
{
	int fd = openat(dirfd, name, flags | O_RDONLY | O_NOATIME | O_CLOEXEC);

	if (fd < 0 && errno == EPERM)
		fd = openat(dirfd, name, flags | O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/*
 * Entry names of directory @fd without "." and ".." (at the @top of a
 * snapshot also without mirrorfs's own .mirrorfs folder, which a copy of a
 * data folder may hold). Returns 0 or -errno.
 */
static int list_names(int fd, bool top, char ***ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = NULL;
	char **names = NULL, **nv;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int dfd = dup(fd);

	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (!d) {
		(void)close(dfd);
		return -errno;
	}
	rewinddir(d); /* the offset is shared with @fd */
	while ((errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    (top && !strcmp(de->d_name, MFS_CTL_DIR)))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			nv = realloc(names, cap * sizeof(*names));
			if (!nv)
				goto out_nomem;
			names = nv;
		}
		names[n] = strdup(de->d_name);
		if (!names[n++])
			goto out_nomem;
	}
	if (errno) {
		int r = -errno;

		free_names(names, n);
		return r;
	}
	*ret = names;
	*ret_n = n;
	return 0;
out_nomem:
	free_names(names, n);
	return -ENOMEM;
}

/*
 * Open (creating it) the --to folder; it must be missing or empty.
 * Returns the fd, or -1 after a message.
 */
static int open_target(const char *to)
{
	_cleanup_close_ int fd = -EBADF;
	char **names;
	size_t n;
	int r;

	if (mkdir(to, 0700) < 0 && errno != EEXIST)
		return -cli_fail("cannot create '%s': %m", to);
	fd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOTDIR)
		return -cli_fail("refusing to restore into '%s': it is not a directory", to);
	if (fd < 0)
		return -cli_fail("cannot open '%s': %m", to);
	r = list_names(fd, false, &names, &n);
	if (r < 0) {
		errno = -r;
		return -cli_fail("cannot list '%s': %m", to);
	}
	free_names(names, n);
	if (n)
		return -cli_fail("refusing to restore into '%s': it is not empty", to);
	return TAKE_FD(fd);
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
	struct progress *prog;
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
		progress_set(c->prog, c->bytes);
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
	in = open_src(sdir, name, O_NOFOLLOW);
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
	s = open_src(sdir, name, O_DIRECTORY | O_NOFOLLOW);
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

	r = list_names(sdir, top, &names, &n);
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
	free_names(names, n);
	return ret;
}

/* Bytes in the regular files under @fd, for the progress line (errors: what was counted). */
static uint64_t count_bytes(int fd, bool top)
{
	uint64_t bytes = 0;
	struct stat st;
	char **names;
	size_t n;

	if (list_names(fd, top, &names, &n) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			bytes += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode)) {
			_cleanup_close_ int sub = open_src(fd, names[i], O_DIRECTORY | O_NOFOLLOW);

			if (sub >= 0)
				bytes += count_bytes(sub, false);
		}
	}
	free_names(names, n);
	return bytes;
}

/* Copy the snapshot @snapfd (@snap_st) into @rootfd. Returns 0, or 1 after a message. */
static int copy_snapshot(const struct restore *o, int snapfd, const struct stat *snap_st,
			 int rootfd, struct progress *prog, uint64_t *ret_bytes)
{
	struct copy c = {
		.src = o->snapshot,
		.rootfd = rootfd,
		.owners = geteuid() == 0,
		.prog = prog,
	};
	struct stat root_st;
	int r, ret = 1;

	if (fstat(rootfd, &root_st) < 0)
		return cli_fail("cannot stat '%s': %m", o->to);
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
	progress_phase(prog, "copy", prog->on ? count_bytes(snapfd, true) : 0);
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

/* ================================================================ replay */

/*
 * The segments of --segments that can hold LSNs after the snapshot's, gap
 * checked by name (before anything is written). Returns 0, or 1 after a message.
 */
static int list_segments(const struct restore *o, struct cli_segfile **ret, size_t *ret_n)
{
	struct cli_segfile *v;
	uint64_t from, to, end;
	size_t n;
	int r;

	r = cli_segdir_list(o->segments, &v, &n);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot list the segments in '%s': %m", o->segments);
	}
	end = 0;
	for (size_t i = 0; i < n; i++)
		end = MFS_MAX(end, v[i].last);
	if (!cli_segfiles_contiguous(v, n, o->lsn, o->until_lsn, &from, &to)) {
		cli_segfiles_free(v, n);
		return cli_fail("gap in the segments in '%s': LSN %" PRIu64 "..%" PRIu64 " missing",
				o->segments, from, to);
	}
	if (o->until_lsn != UINT64_MAX && o->until_lsn > MFS_MAX(end, o->lsn)) {
		cli_segfiles_free(v, n);
		return cli_fail("--until %" PRIu64 " is past the last segment in '%s' (LSN %" PRIu64
				")",
				o->until_lsn, o->segments, MFS_MAX(end, o->lsn));
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* "2026-03-01T09:59:00.123456789Z" */
static void iso_time(uint64_t ns, char *out, size_t cap)
{
	time_t sec = (time_t)(ns / 1000000000u);
	struct tm tm;

	gmtime_r(&sec, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + strlen(out), cap - strlen(out), ".%09uZ", (unsigned)(ns % 1000000000u));
}

/*
 * A time target is reached only when a record after it was seen: records
 * that all end before it may be followed by others the segments folder
 * lacks (not shipped, not kept), as PostgreSQL's recovery target. Returns
 * 1 after a message naming the target and the last point reached.
 */
static int time_not_reached(const struct restore *o, const struct mfs_segrun *run)
{
	char want[64], got[64];

	iso_time(o->until_ns, want, sizeof(want));
	if (!run->last_ns)
		return cli_fail("--until %s not reached: no record after the snapshot's LSN %" PRIu64
				" in '%s' ('%s' holds the snapshot only); give the segments "
				"that reach it, or --until latest",
				want, o->lsn, o->segments, o->to);
	iso_time(run->last_ns, got, sizeof(got));
	return cli_fail("--until %s not reached: the segments in '%s' end at LSN %" PRIu64 " (%s); "
			"'%s' holds that point, not the target; give the segments that reach it, "
			"or --until latest",
			want, o->segments, run->last, got, o->to);
}

/* Apply @segs after the snapshot's LSN into @rootfd and flush. Returns 0, or 1 after a message. */
static int replay_segments(const struct restore *o, const struct cli_segfile *segs, size_t n,
			   int rootfd, struct progress *prog, struct mfs_segrun *run)
{
	struct mfs_replay *engine;
	uint64_t total = 0;
	int r, ret = 0;

	for (size_t i = 0; i < n; i++)
		if (segs[i].last > o->lsn && segs[i].first <= o->until_lsn)
			total += segs[i].size;
	r = mfs_replay_new(rootfd, 0, &engine);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot start the replay engine on '%s': %m", o->to);
	}
	mfs_replay_set_keys(engine, &o->keys);
	cli_segrun_init(run, engine, o->lsn);
	run->auth = o->keys.n > 0;
	run->check_start = true;
	run->until_lsn = o->until_lsn;
	run->until_ns = o->until_ns;
	run->have_uuid = o->have_uuid;
	memcpy(run->uuid, o->uuid, 16);
	run->progress = progress_cb;
	run->progress_arg = prog;
	progress_phase(prog, "replay", total);
	for (size_t i = 0; i < n && !ret && !run->done; i++)
		if (segs[i].last > o->lsn) /* one ending before N + 1 is not needed */
			ret = cli_segrun_file(run, segs[i].path, i == n - 1);
	r = mfs_replay_finish(engine);
	mfs_replay_free(engine);
	if (!ret && r < 0) {
		errno = -r;
		ret = cli_fail("flushing '%s' failed: %m", o->to);
	}
	if (!ret && o->until_lsn != UINT64_MAX && run->last < o->until_lsn)
		ret = cli_fail("the segments in '%s' end at LSN %" PRIu64
			       ", before --until %" PRIu64 " ('%s' holds LSN %" PRIu64 ")",
			       o->segments, run->last, o->until_lsn, o->to, run->last);
	if (!ret && o->until_ns != UINT64_MAX && !run->done)
		ret = time_not_reached(o, run);
	return ret;
}

/*
 * The copy is not fsynced file by file: one syncfs of the target's file
 * system, after the engine's own flush, then the folder holding --to.
 */
static int make_durable(const struct restore *o, int rootfd)
{
	_cleanup_free_ char *parent = strdup(o->to);
	char *slash;
	int r;

	if (!parent)
		return cli_fail("out of memory");
	if (syncfs(rootfd) < 0)
		return cli_fail("syncing '%s' failed: %m", o->to);
	while ((slash = strrchr(parent, '/')) && !slash[1] && slash != parent)
		*slash = 0; /* trailing slashes */
	slash = strrchr(parent, '/');
	if (slash == parent)
		parent[1] = 0; /* "/x" */
	else if (slash)
		*slash = 0;
	r = mfs_fsync_dir(AT_FDCWD, slash ? parent : ".");
	if (r < 0) {
		errno = -r;
		return cli_fail("syncing the folder of '%s' failed: %m", o->to);
	}
	return 0;
}

/* So that deep trees (two fds per level) do not run out of descriptors. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* --dry-run: what restore would copy and replay, once every check passed. */
static int restore_plan(const struct restore *o, int snapfd, const struct cli_segfile *segs,
			size_t n)
{
	uint64_t lo = 0, hi = 0, bytes = 0;
	size_t k = 0;
	char until[64] = "the end of the segments";

	for (size_t i = 0; i < n; i++) {
		if (segs[i].last <= o->lsn || segs[i].first > o->until_lsn)
			continue;
		lo = k++ ? lo : segs[i].first;
		hi = segs[i].last;
		bytes += segs[i].size;
	}
	if (o->until_lsn != UINT64_MAX)
		snprintf(until, sizeof(until), "LSN %" PRIu64, o->until_lsn);
	else if (o->until_ns != UINT64_MAX)
		iso_time(o->until_ns, until, sizeof(until));
	printf("dry run: nothing is written\n"
	       "would copy the snapshot '%s' (LSN %" PRIu64 ", %" PRIu64 " bytes) to '%s'\n",
	       o->snapshot, o->lsn, count_bytes(snapfd, true), o->to);
	if (k)
		printf("would replay %zu segments of '%s' (LSN %" PRIu64 "..%" PRIu64 ", %" PRIu64
		       " bytes) after LSN %" PRIu64 ", up to %s\n",
		       k, o->segments, lo, hi, bytes, o->lsn, until);
	else
		printf("would replay nothing: no segment of '%s' goes past LSN %" PRIu64 "\n",
		       o->segments, o->lsn);
	return 0;
}

int cli_restore(int argc, char **argv)
{
	struct restore o = {.until_lsn = UINT64_MAX, .until_ns = UINT64_MAX};
	struct progress prog = {.on = isatty(STDERR_FILENO)};
	_cleanup_close_ int snapfd = -EBADF, rootfd = -EBADF;
	struct cli_segfile *segs = NULL;
	struct mfs_segrun run = {0};
	struct stat snap_st;
	uint64_t copied = 0, t0 = mfs_mono_ns();
	size_t nsegs = 0;
	int r;

	/* on a terminal, a message first erases the progress line */
	cli_set_prefix(prog.on ? "\r\033[Kmirrorctl restore" : "mirrorctl restore");
	r = parse_args(argc, argv, &o);
	if (r)
		return r;
	snapfd = open_src(AT_FDCWD, o.snapshot, O_DIRECTORY);
	if (snapfd < 0) {
		errno = -snapfd;
		return cli_fail("cannot open the snapshot '%s': %m", o.snapshot);
	}
	if (fstat(snapfd, &snap_st) < 0)
		return cli_fail("cannot stat '%s': %m", o.snapshot);
	if (snapshot_identity(snapfd, &o))
		return 1;
	if (o.until_lsn < o.lsn)
		return cli_fail("--until %" PRIu64 " is before the snapshot's LSN %" PRIu64
				": restore from an older snapshot",
				o.until_lsn, o.lsn);
	if (list_segments(&o, &segs, &nsegs))
		return 1;
	if (cli_probe_data_tree(o.to)) /* inside a data folder some program writes */
		goto out_segs;
	if (o.dry_run) {
		r = restore_plan(&o, snapfd, segs, nsegs);
		cli_segfiles_free(segs, nsegs);
		return r;
	}
	rootfd = open_target(o.to);
	if (rootfd < 0)
		goto out_segs;
	raise_fd_limit();
	r = copy_snapshot(&o, snapfd, &snap_st, rootfd, &prog, &copied);
	if (r == 0)
		r = replay_segments(&o, segs, nsegs, rootfd, &prog, &run);
	if (r == 0)
		r = make_durable(&o, rootfd);
	progress_end(&prog);
	if (r)
		goto out_segs;
	cli_segfiles_free(segs, nsegs);
	printf("restored to LSN %" PRIu64 " (snapshot %" PRIu64 ", %" PRIu64
	       " records replayed, %" PRIu64 " bytes copied) in %.3f s\n",
	       run.last, o.lsn, run.records, copied, (double)(mfs_mono_ns() - t0) / 1e9);
	return 0;
out_segs:
	cli_segfiles_free(segs, nsegs);
	return 1;
}
