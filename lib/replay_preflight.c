/* SPDX-License-Identifier: MIT */
/*
 * replay_preflight.c - everything about a loaded segment that can be
 * checked before its first record is applied, so that a segment is applied
 * whole or not at all.
 *
 * mfs_replay_seg_load() already checked each record alone (CRCs, decoding,
 * path syntax, field ranges). The preflight checks the segment as a whole,
 * against the data folder as it is before the segment:
 *
 *  - Symlinks. A primary journals real paths, never one through a symlink.
 *    A record whose path goes through a symlink an earlier record of the
 *    same segment made (or moved, or linked) is refused; so is one whose
 *    parent, not touched by an earlier record, resolves now through a
 *    symlink that leaves the root or reaches the reserved folder (path.c).
 *  - Sizes past the file system's limits. The largest file size and the
 *    largest xattr value of the data folder's file system are probed once
 *    (lseek and setxattr on an O_TMPFILE: nothing is left behind). A write,
 *    truncate or fallocate past the largest file size fails with EFBIG on
 *    the primary too (same file system type): mirrorfs then journals a
 *    compensating truncate of the same file (fs/data.c) as the next record
 *    of that path, so such a record is the primary's failure: it is
 *    skipped, and the compensation states the contents. One not followed
 *    by it (a write at 2^62 alone) is refused (EFBIG). Likewise an xattr
 *    value larger than the file system takes: skipped if the next record
 *    of the path sets or removes that name again (the primary's ENOSPC or
 *    E2BIG, compensated), else refused (E2BIG). See lrec_is_compensated.
 *  - Allocation. What the segment's fallocate records may allocate is
 *    summed: more than the allowed share (mfs_replay_set_alloc_share,
 *    default 50%) of the whole file system is the segment's fault (EFBIG);
 *    more than that share of the free space is the machine's (ENOSPC: the
 *    caller retries later, nothing applied).
 *  - Data changes of non-files. A write, truncate or fallocate of a name an
 *    earlier record of the segment made a folder, symlink, FIFO, device or
 *    socket is refused (a primary journals data changes of regular files
 *    only); applying it would fail halfway (or block, on a FIFO).
 *  - Device nodes need CAP_MKNOD: without it, the machine's condition
 *    (EPERM), nothing applied.
 *
 * What cannot be checked before (the data folder changed by someone else
 * meanwhile, an I/O error, a full disk halfway) fails while applying: the
 * engine stops at the failing record. We chose "stop before" over "undo":
 * undoing would need the old contents of everything a segment overwrites
 * or removes (a second journal on the mirror); every refusal a segment can
 * earn by its contents alone is found here, before anything is applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirrorfs/format.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/path.h"
#include "mirrorfs/replay.h"
#include "replay_i.h"

#define PROBE_XATTR "user.mirrorfs-probe"
#define SET_SLOTS 4096u /* hash slots of a name set */

/* ================================================================ probes */

/* The largest offset lseek accepts on @fd: the file system's largest file size. */
static uint64_t probe_max_file(int fd)
{
	uint64_t lo = 0, hi = (uint64_t)INT64_MAX;

	if (lseek(fd, (off_t)hi, SEEK_SET) >= 0)
		return hi;
	while (lo + 1 < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (lseek(fd, (off_t)mid, SEEK_SET) >= 0)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The largest xattr value @fd takes (0: none, or user xattrs unsupported). */
static uint32_t probe_xattr_max(int fd)
{
	_cleanup_free_ char *buf = calloc(1, MFS_XATTR_VALUE_MAX);
	uint32_t lo = 0, hi = MFS_XATTR_VALUE_MAX + 1;

	if (!buf || fsetxattr(fd, PROBE_XATTR, buf, 1, 0) < 0)
		return 0;
	while (lo + 1 < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (fsetxattr(fd, PROBE_XATTR, buf, mid, 0) == 0)
			lo = mid;
		else
			hi = mid;
	}
	(void)fremovexattr(fd, PROBE_XATTR);
	return lo;
}

static void probe(struct mfs_replay *r, struct replay_limits *lim)
{
	_cleanup_close_ int fd = -EBADF;

	lim->probed = true;
	fd = openat(replay_rootfd(r), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return; /* no O_TMPFILE here: limits unknown, found while applying */
	lim->max_file = probe_max_file(fd);
	lim->xattr_max = probe_xattr_max(fd);
}

bool mfs_replay_is_past_limits(struct mfs_replay *r, const struct mfs_rec *rec)
{
	struct replay_limits *lim = replay_limits(r);
	uint64_t end;

	if (!lim->probed)
		probe(r, lim);
	if (rec->type == MFS_REC_SETXATTR)
		return lim->xattr_max && rec->data_len > lim->xattr_max;
	if (!mfs_rec_type_is_data(rec->type))
		return false;
	end = mfs_rec_end(&rec->fields);
	return lim->max_file && (end > lim->max_file || end < rec->offset);
}

static bool has_cap_mknod(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { 0 };

	if (syscall(SYS_capget, &h, d) < 0)
		return geteuid() == 0;
	return d[CAP_TO_INDEX(CAP_MKNOD)].effective & CAP_TO_MASK(CAP_MKNOD);
}

/* ================================================================ name sets */

/* A set of paths, each with a value (the LSN that made a symlink there). */
struct nset {
	struct nent {
		struct nent *next;
		uint64_t val;
		char path[];
	} *slot[SET_SLOTS];
	size_t n;
};

static uint32_t nhash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h % SET_SLOTS;
}

static struct nent *nset_find(struct nset *set, const char *p, size_t n)
{
	if (!set->n)
		return NULL;
	for (struct nent *e = set->slot[nhash(p, n)]; e; e = e->next)
		if (strlen(e->path) == n && !memcmp(e->path, p, n))
			return e;
	return NULL;
}

static int nset_add(struct nset *set, const char *p, uint64_t val)
{
	size_t n = strlen(p);
	struct nent *e = nset_find(set, p, n);
	uint32_t h;

	if (e) {
		e->val = val;
		return 0;
	}
	e = malloc(sizeof(*e) + n + 1);
	if (!e)
		return -ENOMEM;
	memcpy(e->path, p, n + 1);
	e->val = val;
	h = nhash(p, n);
	e->next = set->slot[h];
	set->slot[h] = e;
	set->n++;
	return 0;
}

/* Remove @p and, with @below, every path under @p/ (moved to under @to/ when @to). */
static int nset_move(struct nset *set, const char *p, const char *to)
{
	size_t n = strlen(p);
	struct nent *moved = NULL;
	int e = 0;

	if (!set->n)
		return 0;
	for (unsigned i = 0; i < SET_SLOTS; i++) {
		for (struct nent **pp = &set->slot[i]; *pp;) {
			struct nent *x = *pp;

			if (strncmp(x->path, p, n) || (x->path[n] != '\0' && x->path[n] != '/')) {
				pp = &x->next;
				continue;
			}
			*pp = x->next;
			set->n--;
			x->next = moved;
			moved = x;
		}
	}
	while (moved) {
		struct nent *x = moved;
		char np[MFS_PATH_MAX * 2 + 2];

		moved = x->next;
		if (to && e == 0 && snprintf(np, sizeof(np), "%s%s", to, x->path + n) <= (int)MFS_PATH_MAX)
			e = nset_add(set, np, x->val);
		free(x);
	}
	return e;
}

static void nset_clear(struct nset *set)
{
	for (unsigned i = 0; i < SET_SLOTS; i++)
		while (set->slot[i]) {
			struct nent *x = set->slot[i];

			set->slot[i] = x->next;
			free(x);
		}
	set->n = 0;
}

/* ================================================================ the pass */

struct pf {
	struct mfs_replay *r;
	struct mfs_replay_seg *s;
	struct nset links;   /* paths that are symlinks, made (or moved) by this segment */
	struct nset touched; /* paths this segment made, removed or renamed (so far) */
	struct nset checked; /* parents already resolved in the data folder */
	struct nset special; /* names this segment made not regular files: LSN << 4 | kind */
	uint64_t alloc;      /* bytes fallocate records may allocate */
	size_t alloc_max;    /* the record that allocates most */
	bool devices;        /* device nodes to make */
	size_t device;       /* the first record that makes one */
};

static const char *str(const struct pf *c, uint32_t off)
{
	return c->s->strs + off;
}

/* Refuse: one line naming LSN, type and path, then @fmt. Returns @e. */
static int refuse(struct pf *c, const struct lrec *l, int e, bool local, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int refuse(struct pf *c, const struct lrec *l, int e, bool local, const char *fmt, ...)
{
	struct mfs_replay_seg *s = c->s;
	va_list ap;
	int n = 0;

	if (l)
		n = snprintf(s->why, sizeof(s->why), "LSN %" PRIu64 " %s '%.200s': ", l->lsn,
			     mfs_rec_type_name(l->type) ?: "?", str(c, l->path));
	va_start(ap, fmt);
	vsnprintf(s->why + n, sizeof(s->why) - (size_t)n, fmt, ap);
	va_end(ap);
	s->pf_error = e;
	s->pf_local = local;
	return e;
}

/*
 * The folder part of @p (up to its last '/') goes through a symlink this
 * segment made? Returns that symlink's entry, or NULL. *ret_touched says
 * whether a folder on the way was made, removed or renamed by the segment.
 */
static struct nent *through_link(struct pf *c, const char *p, bool *ret_touched)
{
	*ret_touched = false;
	for (const char *q = strchr(p, '/'); q; q = strchr(q + 1, '/')) {
		struct nent *e = nset_find(&c->links, p, (size_t)(q - p));

		if (e)
			return e;
		if (nset_find(&c->touched, p, (size_t)(q - p)))
			*ret_touched = true;
	}
	return NULL;
}

/* Check path @p of record @l: not through a symlink of the segment, nor an escaping one now. */
static int check_path(struct pf *c, const struct lrec *l, const char *p, const char *what)
{
	const char *slash = strrchr(p, '/'), *base;
	struct nent *link;
	bool touched;
	int fd;

	if (!slash)
		return 0;
	link = through_link(c, p, &touched);
	if (link)
		return refuse(c, l, -EXDEV, false, "%sgoes through the symlink made at LSN %" PRIu64
			      " (a primary journals real paths only)", what, link->val);
	if (touched || nset_find(&c->checked, p, (size_t)(slash - p)))
		return 0;
	fd = mfs_path_open_parent(replay_rootfd(c->r), p, &base);
	if (fd >= 0)
		close(fd);
	if (fd == -EXDEV || fd == -ELOOP)
		return refuse(c, l, -EXDEV, false, "%sleads out of the data folder or into the "
			      "reserved '" MFS_PATH_RESERVED "' through a symlink", what);
	if (fd < 0 && fd != -ENOENT && fd != -ENOTDIR)
		return refuse(c, l, fd, true, "%sresolving its folder: %s", what, strerror(-fd));
	if (fd >= 0) {
		char dir[MFS_PATH_MAX + 1];

		memcpy(dir, p, (size_t)(slash - p));
		dir[slash - p] = '\0';
		return nset_add(&c->checked, dir, 0);
	}
	return 0;
}

/* Whether @p (not changed by the segment so far) is a symlink in the data folder now. */
static bool is_link_now(struct pf *c, const char *p)
{
	struct stat st;
	bool touched;
	int fd;

	if (nset_find(&c->touched, p, strlen(p)) || through_link(c, p, &touched) || touched)
		return false;
	fd = mfs_path_open(replay_rootfd(c->r), p, O_PATH, 0);
	if (fd < 0)
		return false;
	touched = fstat(fd, &st) == 0 && S_ISLNK(st.st_mode);
	close(fd);
	return touched;
}

/* Follow the namespace change of @l in the sets. */
static int track(struct pf *c, const struct lrec *l)
{
	const char *p = str(c, l->path), *p2 = str(c, l->path2);
	bool link1;
	int e;

	switch (l->type) {
	case MFS_REC_SYMLINK:
	case MFS_REC_MKNOD:
	case MFS_REC_MKDIR:
	case MFS_REC_UNLINK:
	case MFS_REC_RMDIR:
		e = nset_move(&c->links, p, NULL);
		if (e == 0 && l->type == MFS_REC_SYMLINK)
			e = nset_add(&c->links, p, l->lsn);
		return e < 0 ? e : nset_add(&c->touched, p, 0);
	case MFS_REC_LINK:
		link1 = nset_find(&c->links, p, strlen(p)) || is_link_now(c, p);
		e = nset_move(&c->links, p2, NULL);
		if (e == 0 && link1)
			e = nset_add(&c->links, p2, l->lsn);
		return e < 0 ? e : nset_add(&c->touched, p2, 0);
	case MFS_REC_RENAME:
		if (l->flags & RENAME_EXCHANGE) {
			bool link2 = nset_find(&c->links, p2, strlen(p2)) || is_link_now(c, p2);

			link1 = nset_find(&c->links, p, strlen(p)) || is_link_now(c, p);
			e = nset_move(&c->links, p, NULL);
			if (e == 0)
				e = nset_move(&c->links, p2, NULL);
			if (e == 0 && link1)
				e = nset_add(&c->links, p2, l->lsn);
			if (e == 0 && link2)
				e = nset_add(&c->links, p, l->lsn);
		} else {
			link1 = !nset_find(&c->links, p, strlen(p)) && is_link_now(c, p);
			e = nset_move(&c->links, p2, NULL);
			if (e == 0)
				e = nset_move(&c->links, p, p2);
			if (e == 0 && link1)
				e = nset_add(&c->links, p2, l->lsn);
		}
		if (e == 0)
			e = nset_add(&c->touched, p, 0);
		return e < 0 ? e : nset_add(&c->touched, p2, 0);
	default:
		return 0;
	}
}

/* ================================================================ non-regular names */

static const char *const kind_names[] = { "?", "folder", "symlink", "FIFO", "character device",
					  "block device", "socket" };

/* What record @l makes at its path, as a kind_names index (0: a regular file). */
static unsigned made_kind(const struct lrec *l)
{
	switch (l->type) {
	case MFS_REC_MKDIR:
		return 1;
	case MFS_REC_SYMLINK:
		return 2;
	case MFS_REC_MKNOD:
		switch (l->mode & S_IFMT) {
		case S_IFIFO: return 3;
		case S_IFCHR: return 4;
		case S_IFBLK: return 5;
		case S_IFSOCK: return 6;
		default: return 0;
		}
	default:
		return 0;
	}
}

/* A name @p on whose node @path's kind moves to @to (NULL: removed). */
static int special_move(struct pf *c, const char *p, const char *to)
{
	return nset_move(&c->special, p, to);
}

/*
 * Follow which names the segment made into something other than a regular
 * file (mkdir, symlink, mknod of a FIFO, device or socket), through links,
 * renames and removals: a write, truncate or fallocate of such a name
 * cannot come from a primary (it journals data changes of regular files
 * only) and would fail halfway through the segment (check_data_target).
 */
static int track_special(struct pf *c, const struct lrec *l)
{
	const char *p = str(c, l->path), *p2 = str(c, l->path2);
	struct nent *x;
	uint64_t v;
	int e;

	switch (l->type) {
	case MFS_REC_SYMLINK:
	case MFS_REC_MKNOD:
	case MFS_REC_MKDIR:
		e = special_move(c, p, NULL);
		return e < 0 || !made_kind(l) ? e : nset_add(&c->special, p, l->lsn << 4 | made_kind(l));
	case MFS_REC_UNLINK:
	case MFS_REC_RMDIR:
		return special_move(c, p, NULL);
	case MFS_REC_LINK:
		x = nset_find(&c->special, p, strlen(p));
		v = x ? x->val : 0;
		e = special_move(c, p2, NULL);
		return e < 0 || !v ? e : nset_add(&c->special, p2, v);
	case MFS_REC_RENAME:
		if (!(l->flags & RENAME_EXCHANGE)) {
			e = special_move(c, p2, NULL);
			return e < 0 ? e : special_move(c, p, p2);
		}
		/* exchange: through a name no record path has ('\1' is not in any) */
		e = special_move(c, p, "\1");
		if (e == 0)
			e = special_move(c, p2, p);
		return e < 0 ? e : special_move(c, "\1", p2);
	default:
		return 0;
	}
}

/* A write, truncate or fallocate of a name the segment made a non-regular file. */
static int check_data_target(struct pf *c, const struct lrec *l)
{
	const char *p = str(c, l->path);
	struct nent *x;

	if (!mfs_rec_type_is_data(l->type))
		return 0;
	x = nset_find(&c->special, p, strlen(p));
	if (!x)
		return 0;
	return refuse(c, l, -EINVAL, false, "path: not a regular file (LSN %" PRIu64 " made a %s "
		      "there)", x->val >> 4, kind_names[x->val & 15]);
}

/*
 * Record @i of the segment goes past the largest file size: the primary's
 * failure if a compensating truncate of the same file follows (skipped
 * then), else refused.
 */
static int check_size(struct pf *c, size_t i, uint64_t max_file)
{
	struct lrec *l = &c->s->recs[i];
	uint64_t end = mfs_rec_end(&l->fields);

	if (!max_file || end <= max_file)
		return 0;
	if (lrec_is_compensated(c->s, i)) {
		l->skip = true; /* the primary got EFBIG, and journaled what it holds */
		return 0;
	}
	return refuse(c, l, -EFBIG, false, "%s %" PRIu64 " is past the largest file size of the "
		      "data folder's file system (%" PRIu64 " bytes), and no compensating truncate "
		      "follows", l->type == MFS_REC_TRUNCATE ? "size" : "offset + length", end,
		      max_file);
}

/* The checks of one record, before its namespace change is tracked. */
static int check_one(struct pf *c, size_t i, const struct replay_limits *lim)
{
	struct lrec *l = &c->s->recs[i];
	uint32_t type = l->mode & S_IFMT;
	int e;

	if (mfs_rec_type_is_marker(l->type))
		return 0;
	e = check_path(c, l, str(c, l->path), "");
	if (e == 0 && mfs_rec_type_has_path2(l->type))
		e = check_path(c, l, str(c, l->path2), "new path: ");
	if (e == 0)
		e = check_data_target(c, l);
	if (e == 0)
		e = check_size(c, i, lim->max_file);
	if (e < 0)
		return e;
	if (l->type == MFS_REC_SETXATTR && lim->xattr_max && l->data_len > lim->xattr_max) {
		if (lrec_is_compensated(c->s, i)) {
			l->skip = true; /* the primary got ENOSPC or E2BIG, and journaled the old value */
			return 0;
		}
		return refuse(c, l, -E2BIG, false, "value: %" PRIu32 " bytes, more than the data "
			      "folder's file system takes (%" PRIu32 "), and no compensating xattr "
			      "change follows", l->data_len, lim->xattr_max);
	}
	if (l->type == MFS_REC_FALLOCATE && !(l->mode & FALLOC_FL_PUNCH_HOLE) && !l->skip) {
		if (!c->alloc || l->length > c->s->recs[c->alloc_max].length)
			c->alloc_max = i;
		c->alloc += l->length;
	}
	if (l->type == MFS_REC_MKNOD && (type == S_IFCHR || type == S_IFBLK) && !c->devices) {
		c->devices = true;
		c->device = i;
	}
	return 0;
}

/* The segment's fallocate total against the allowed share of the file system. */
static int check_alloc(struct pf *c, const struct replay_limits *lim)
{
	const struct lrec *big;
	struct statvfs v;
	uint64_t total, avail;

	if (!c->alloc || fstatvfs(replay_rootfd(c->r), &v) < 0)
		return 0;
	big = &c->s->recs[c->alloc_max];
	total = (uint64_t)v.f_blocks * v.f_frsize / 100 * lim->alloc_pct;
	avail = (uint64_t)v.f_bavail * v.f_frsize / 100 * lim->alloc_pct;
	if (c->alloc > total)
		return refuse(c, big, -EFBIG, false, "length: %" PRIu64 " bytes, and the segment's "
			      "fallocate records allocate up to %" PRIu64 " bytes, more than %u%% of "
			      "the data folder's file system (%" PRIu64 " bytes)", big->length,
			      c->alloc, lim->alloc_pct, total);
	if (c->alloc > avail)
		return refuse(c, big, -ENOSPC, true, "length: %" PRIu64 " bytes, and the segment's "
			      "fallocate records allocate up to %" PRIu64 " bytes, more than %u%% of "
			      "the free space (%" PRIu64 " bytes)", big->length, c->alloc,
			      lim->alloc_pct, avail);
	return 0;
}

int mfs_replay_seg_preflight(struct mfs_replay *r, struct mfs_replay_seg *s, uint64_t after_lsn)
{
	struct replay_limits *lim = replay_limits(r);
	struct pf *c;
	int e = 0;

	s->pf_error = 0;
	s->pf_local = false;
	s->why[0] = '\0';
	if (s->refused && s->refused_lsn > after_lsn && s->refused_lsn <= s->until_lsn)
		return s->refused; /* s->why says it */
	if (!lim->probed)
		probe(r, lim);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->r = r;
	c->s = s;
	for (size_t i = 0; i < s->n_recs && e == 0; i++) {
		if (s->recs[i].lsn <= after_lsn)
			continue;
		if (s->recs[i].lsn > s->until_lsn || s->recs[i].time_ns > s->until_ns)
			break;
		s->recs[i].skip = false;
		e = check_one(c, i, lim);
		if (e == 0)
			e = track(c, &s->recs[i]);
		if (e == 0)
			e = track_special(c, &s->recs[i]);
	}
	if (e == 0)
		e = check_alloc(c, lim);
	if (e == 0 && c->devices && !has_cap_mknod())
		e = refuse(c, &s->recs[c->device], -EPERM, true, "mode: 0%" PRIo32 ", a device node, "
			   "which needs CAP_MKNOD: replay as root", s->recs[c->device].mode);
	if (e == -ENOMEM && !s->pf_error)
		e = refuse(c, NULL, e, true, "out of memory");
	nset_clear(&c->links);
	nset_clear(&c->touched);
	nset_clear(&c->checked);
	nset_clear(&c->special);
	free(c);
	s->pf_done = e == 0;
	return e;
}

const char *mfs_replay_seg_why(const struct mfs_replay_seg *s, bool *ret_local)
{
	if (ret_local)
		*ret_local = s->pf_error && s->pf_local;
	return s->why[0] ? s->why : NULL;
}
