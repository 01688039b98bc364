/* SPDX-License-Identifier: MIT */
/*
 * replay.c - the replay engine: what applying a journal record means.
 *
 * Safety. Every record is checked (mfs_replay_check) before it is applied,
 * and every path is resolved beneath the root with lib/path.c (openat2
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS); the last component is never
 * followed. The reserved top-level name ".mirrorfs" is refused. Device
 * nodes are refused (-EPERM): a hostile segment could otherwise create a
 * block device and write to it. A file is opened for writing only after an
 * O_PATH open proved it is a regular file. A hostile record can fail, never
 * change anything outside the root.
 *
 * Writes. Data writes are not issued one by one. Each regular file (keyed
 * by device and inode, so hard links and renames share it) keeps a sorted
 * map of disjoint pending extents; a write is copied into it, merging with
 * adjacent extents (coalescing) and overwriting pending bytes it covers (a
 * hot page written ten times is written once). When the batch holds
 * BATCH_BYTES or BATCH_EXTENTS, it is submitted to io_uring as one batch,
 * many writes in flight; the next batch is built meanwhile and submitted
 * only when the previous one has completed, so two writes to the same
 * bytes are never in flight together. Extents of one batch are disjoint,
 * hence order-free. A large write (>= DIRECT_MIN) to a file with nothing
 * pending or in flight is written at once from the record's buffer: copying
 * it would cost more than batching saves.
 *
 * Ordering. A data write goes to an inode through an fd resolved when the
 * record is applied, so namespace operations (create, unlink, rename, link,
 * ...) that come later cannot change where it lands, and they need not wait
 * for it: the final state is the same. What does depend on pending writes
 * is drained first (all pending writes submitted and completed): truncate
 * and fallocate of that file (data), utimens of that file (a later write
 * completion would move mtime). The path -> file cache is invalidated for a
 * path and everything below it by every namespace operation on it.
 *
 * Flush. mfs_replay_finish() completes everything, then fsyncs every file
 * written and every directory whose entries changed since the last finish,
 * in parallel through io_uring; when that is many objects, or when a
 * touched file had to be closed early (fd cache full), one syncfs() of the
 * root's file system replaces them.
 *
 * Idempotency. The daemon never applies an LSN twice in normal operation
 * (it records the applied LSN after each segment's flush), but after a
 * crash in the middle of a segment, or in crash recovery on mount, records
 * are applied again to a tree that is at or after their LSN. Each record is
 * therefore applied as "make its post-condition true":
 *  - WRITE, TRUNCATE, FALLOCATE, CHMOD, CHOWN, UTIMENS, SETXATTR,
 *    REMOVEXATTR on a path that no longer exists (ENOENT, ENOTDIR on the
 *    way): skipped, counted in stats.skipped. A later record removed it.
 *  - MKNOD of a regular file, FIFO or socket: if the name exists, the old
 *    object is removed (recursively for a directory) and a fresh one made:
 *    at this LSN the name was new, and later records rebuild its contents.
 *  - MKDIR: an existing directory is kept (mode and owner re-set), anything
 *    else there is removed first.
 *  - SYMLINK: an identical symlink is kept, anything else replaced.
 *  - LINK: if the new name already is the same inode, done; another object
 *    there is replaced (link to a temporary name, rename over it); source
 *    missing: skipped.
 *  - UNLINK, RMDIR: a missing name is done; a non-empty directory (entries
 *    made by later records) is removed recursively, as is a directory found
 *    where a file was unlinked.
 *  - RENAME: missing source: skipped (done); RENAME_NOREPLACE finding the
 *    target: replaced (it appeared later); a non-empty directory or an
 *    object of the other kind at the target: removed, then renamed.
 *    RENAME_EXCHANGE is applied as is: exchanging twice is not idempotent,
 *    a documented limit (the primary never needs to re-apply it: its
 *    checkpoint LSN precedes it only if the backing tree is before it).
 *  - SETXATTR ignores XATTR_CREATE/XATTR_REPLACE (the result is the same
 *    value); REMOVEXATTR of a missing attribute is done.
 *  - fallocate COLLAPSE_RANGE / INSERT_RANGE are refused (not idempotent).
 *  - Ownership: EPERM from chown is ignored when not running as root.
 */
#include "mirrorfs/replay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>

#include <liburing.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/path.h"
#include "mirrorfs/segment.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

#define QUEUE_DEPTH 256u
#define BATCH_BYTES (32u << 20)
#define BATCH_EXTENTS 8192u
#define MAX_FILES 512u     /* open regular files kept (fd cache) */
#define MAX_PATHS 1024u    /* path -> file entries */
#define MAX_DIRS 64u       /* touched directories fsynced one by one */
#define SYNCFS_MIN 64u     /* this many objects to flush: one syncfs instead */
#define PTAB_SIZE 2048u
#define ITAB_SIZE 1024u
#define DIRECT_MIN (256u << 10) /* writes this large skip the batch when the file is idle */
#define RESERVED_NAME ".mirrorfs"

struct extent {
	uint64_t off;
	size_t len, cap;
	char *buf;
};

struct rfile {
	dev_t dev;
	ino_t ino;
	int fd; /* O_WRONLY, owned */
	struct extent *ext; /* pending, sorted by off, disjoint and not adjacent */
	size_t n_ext, cap_ext;
	unsigned inflight; /* writes submitted, not completed */
	unsigned refs;     /* path cache entries naming this file */
	bool touched;      /* written since the last finish */
	bool queued;       /* on the engine's pending list */
	struct rfile *inext;   /* inode hash chain */
	struct rfile *qnext;   /* pending list */
};

struct pent {
	struct pent *next;
	struct rfile *f;
	uint32_t hash;
	char path[]; /* NUL-terminated */
};

struct wreq {
	struct rfile *f;
	char *buf;
	uint64_t off;
	size_t len;
};

struct mfs_replay {
	int rootfd;
	unsigned flags;
	bool uring, naive, need_syncfs;
	struct io_uring ring;
	unsigned sq_unsubmitted; /* SQEs prepared, not yet submitted */
	unsigned inflight;       /* submitted, not reaped */
	int error;               /* first error of an asynchronous write */
	struct rfile *itab[ITAB_SIZE];
	unsigned n_files;
	struct pent *ptab[PTAB_SIZE];
	unsigned n_paths;
	struct rfile *queue; /* files with pending extents */
	size_t pending_bytes, pending_ext;
	char *dirs[MAX_DIRS]; /* touched directories ("" = root) */
	unsigned n_dirs;
	struct mfs_replay_stats st;
};

/* ================================================================ tables */

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static unsigned inode_slot(dev_t dev, ino_t ino)
{
	uint64_t k = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (unsigned)(k >> 32) % ITAB_SIZE;
}

static struct rfile *inode_find(struct mfs_replay *r, dev_t dev, ino_t ino)
{
	struct rfile *f = r->itab[inode_slot(dev, ino)];

	while (f && !(f->dev == dev && f->ino == ino))
		f = f->inext;
	return f;
}

static void pent_remove(struct mfs_replay *r, struct pent **pp)
{
	struct pent *e = *pp;

	*pp = e->next;
	e->f->refs--;
	r->n_paths--;
	free(e);
}

static struct rfile *path_find(struct mfs_replay *r, const char *path)
{
	uint32_t h = hash_str(path);

	for (struct pent *e = r->ptab[h % PTAB_SIZE]; e; e = e->next)
		if (e->hash == h && strcmp(e->path, path) == 0)
			return e->f;
	return NULL;
}

static void path_clear(struct mfs_replay *r)
{
	for (unsigned i = 0; i < PTAB_SIZE; i++)
		while (r->ptab[i])
			pent_remove(r, &r->ptab[i]);
}

static int path_add(struct mfs_replay *r, const char *path, struct rfile *f)
{
	size_t len = strlen(path);
	struct pent *e;

	if (r->n_paths >= MAX_PATHS)
		path_clear(r);
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	memcpy(e->path, path, len + 1);
	e->hash = hash_str(path);
	e->f = f;
	e->next = r->ptab[e->hash % PTAB_SIZE];
	r->ptab[e->hash % PTAB_SIZE] = e;
	f->refs++;
	r->n_paths++;
	return 0;
}

/* Forget @path and every path below it (a namespace operation changed them). */
static void path_invalidate(struct mfs_replay *r, const char *path)
{
	size_t n = strlen(path);

	if (r->n_paths == 0)
		return;
	for (unsigned i = 0; i < PTAB_SIZE; i++) {
		struct pent **pp = &r->ptab[i];

		while (*pp) {
			const char *p = (*pp)->path;

			if (strncmp(p, path, n) == 0 && (p[n] == '\0' || p[n] == '/'))
				pent_remove(r, pp);
			else
				pp = &(*pp)->next;
		}
	}
}

static void rfile_free(struct mfs_replay *r, struct rfile *f)
{
	struct rfile **pp = &r->itab[inode_slot(f->dev, f->ino)];

	while (*pp != f)
		pp = &(*pp)->inext;
	*pp = f->inext;
	for (size_t i = 0; i < f->n_ext; i++)
		free(f->ext[i].buf);
	free(f->ext);
	if (f->touched)
		r->need_syncfs = true; /* closed before its flush */
	(void)close(f->fd);
	r->n_files--;
	free(f);
}

/* Close every file that no path names and that has nothing pending. */
static void files_gc(struct mfs_replay *r, bool all)
{
	for (unsigned i = 0; i < ITAB_SIZE; i++) {
		struct rfile *f = r->itab[i], *next;

		for (; f; f = next) {
			next = f->inext;
			if ((all || f->refs == 0) && f->n_ext == 0 && f->inflight == 0 && !f->queued)
				rfile_free(r, f);
		}
	}
}

static void dir_touch(struct mfs_replay *r, const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	char *d;

	if (r->need_syncfs)
		return;
	for (unsigned i = 0; i < r->n_dirs; i++)
		if (strlen(r->dirs[i]) == n && strncmp(r->dirs[i], path, n) == 0)
			return;
	if (r->n_dirs >= MAX_DIRS || !(d = strndup(path, n))) {
		r->need_syncfs = true;
		return;
	}
	r->dirs[r->n_dirs++] = d;
}

/* ================================================================ batch I/O */

static void note_error(struct mfs_replay *r, int e)
{
	if (e < 0 && r->error == 0)
		r->error = e;
}

static void complete_write(struct mfs_replay *r, struct wreq *q, int res)
{
	if (res >= 0 && (size_t)res < q->len) /* short write: finish it here */
		res = mfs_pwrite_all(q->f->fd, q->buf + res, q->len - (size_t)res,
				     q->off + (uint64_t)res);
	else if (res == -EAGAIN || res == -EINTR)
		res = mfs_pwrite_all(q->f->fd, q->buf, q->len, q->off);
	else if (res > 0)
		res = 0;
	note_error(r, res);
	q->f->inflight--;
	free(q->buf);
	free(q);
}

/* Reap completions until at most @keep requests are in flight. */
static int reap(struct mfs_replay *r, unsigned keep)
{
	struct io_uring_cqe *cqe;
	int e;

	if (r->sq_unsubmitted) {
		e = io_uring_submit(&r->ring);
		if (e < 0)
			return e;
		r->sq_unsubmitted = 0;
	}
	while (r->inflight > keep) {
		e = io_uring_wait_cqe(&r->ring, &cqe);
		if (e == -EINTR)
			continue;
		if (e < 0)
			return e;
		if (cqe->user_data)
			complete_write(r, io_uring_cqe_get_data(cqe), cqe->res);
		else
			note_error(r, cqe->res); /* fsync */
		io_uring_cqe_seen(&r->ring, cqe);
		r->inflight--;
	}
	return 0;
}

/* Get an SQE, making room first when the ring is full. */
static struct io_uring_sqe *get_sqe(struct mfs_replay *r)
{
	struct io_uring_sqe *sqe;

	if (r->inflight >= QUEUE_DEPTH && reap(r, QUEUE_DEPTH / 2) < 0)
		return NULL;
	sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		if (io_uring_submit(&r->ring) < 0)
			return NULL;
		r->sq_unsubmitted = 0;
		sqe = io_uring_get_sqe(&r->ring);
	}
	if (sqe) {
		r->sq_unsubmitted++;
		r->inflight++;
	}
	return sqe;
}

/* Issue one extent (its buffer is handed over). */
static int issue_extent(struct mfs_replay *r, struct rfile *f, struct extent *x)
{
	struct io_uring_sqe *sqe;
	struct wreq *q;
	int e;

	r->st.io_writes++;
	r->st.io_bytes += x->len;
	if (!r->uring) {
		e = mfs_pwrite_all(f->fd, x->buf, x->len, x->off);
		free(x->buf);
		return e;
	}
	q = malloc(sizeof(*q));
	sqe = q ? get_sqe(r) : NULL;
	if (!sqe) {
		free(q);
		e = mfs_pwrite_all(f->fd, x->buf, x->len, x->off);
		free(x->buf);
		return e;
	}
	*q = (struct wreq){ .f = f, .buf = x->buf, .off = x->off, .len = x->len };
	f->inflight++;
	io_uring_prep_write(sqe, f->fd, q->buf, (unsigned)q->len, q->off);
	io_uring_sqe_set_data(sqe, q);
	return 0;
}

/*
 * Submit every pending extent. The previous batch must have completed
 * first: extents of two batches may overlap.
 */
static int batch_submit(struct mfs_replay *r)
{
	int e = 0;

	if (!r->queue)
		return 0;
	if (r->uring) {
		e = reap(r, 0);
		if (e < 0)
			return e;
	}
	while (r->queue) {
		struct rfile *f = r->queue;

		r->queue = f->qnext;
		f->queued = false;
		for (size_t i = 0; i < f->n_ext; i++)
			note_error(r, issue_extent(r, f, &f->ext[i]));
		f->n_ext = 0;
	}
	r->pending_bytes = r->pending_ext = 0;
	if (r->uring && r->sq_unsubmitted) {
		e = io_uring_submit(&r->ring);
		if (e >= 0)
			r->sq_unsubmitted = 0, e = 0;
	}
	return e < 0 ? e : r->error;
}

/* Submit everything and wait for it. Returns 0 or the first error. */
static int drain(struct mfs_replay *r)
{
	int e = batch_submit(r);

	if (r->uring && e >= 0)
		e = reap(r, 0);
	return e < 0 ? e : r->error;
}

static bool file_busy(const struct rfile *f)
{
	return f->n_ext || f->inflight;
}

/* ================================================================ extents */

static int ext_reserve(struct rfile *f)
{
	struct extent *n;
	size_t cap;

	if (f->n_ext < f->cap_ext)
		return 0;
	cap = f->cap_ext ? f->cap_ext * 2 : 16;
	n = realloc(f->ext, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	f->ext = n;
	f->cap_ext = cap;
	return 0;
}

static int buf_grow(struct extent *x, size_t need)
{
	size_t cap = x->cap ? x->cap : 4096;
	char *b;

	if (need <= x->cap)
		return 0;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b = realloc(x->buf, cap);
	if (!b)
		return -ENOMEM;
	x->buf = b;
	x->cap = cap;
	return 0;
}

/* Index of the first extent ending at or after @off. */
static size_t ext_lower(const struct rfile *f, uint64_t off)
{
	size_t lo = 0, hi = f->n_ext;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->ext[mid].off + f->ext[mid].len < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A new extent, not touching any other, at index @at. */
static int ext_insert_new(struct mfs_replay *r, struct rfile *f, size_t at, uint64_t off,
			  const void *data, size_t len)
{
	struct extent x = { .off = off, .len = len };

	if (ext_reserve(f) < 0 || buf_grow(&x, len) < 0)
		return -ENOMEM;
	memcpy(x.buf, data, len);
	memmove(&f->ext[at + 1], &f->ext[at], (f->n_ext - at) * sizeof(x));
	f->ext[at] = x;
	f->n_ext++;
	r->pending_ext++;
	r->pending_bytes += len;
	return 0;
}

/*
 * Put a write into the file's pending map: it merges with every extent it
 * overlaps or touches, its bytes winning.
 */
static int ext_add(struct mfs_replay *r, struct rfile *f, uint64_t a, const void *data, size_t len)
{
	uint64_t b = a + len;
	size_t lo = ext_lower(f, a), hi = lo, old = 0;
	struct extent *first, *last, m;

	while (hi < f->n_ext && f->ext[hi].off <= b)
		hi++;
	if (lo == hi)
		return ext_insert_new(r, f, lo, a, data, len);
	first = &f->ext[lo];
	last = &f->ext[hi - 1];
	for (size_t i = lo; i < hi; i++) {
		uint64_t s = MFS_MAX(a, f->ext[i].off), t = MFS_MIN(b, f->ext[i].off + f->ext[i].len);

		old += f->ext[i].len;
		if (t > s)
			r->st.dropped_bytes += t - s;
	}
	m.off = MFS_MIN(a, first->off);
	m.len = (size_t)(MFS_MAX(b, last->off + last->len) - m.off);
	if (first->off <= a) { /* grow the first extent's buffer in place */
		m.buf = first->buf;
		m.cap = first->cap;
		first->buf = NULL;
	} else {
		m.buf = NULL;
		m.cap = 0;
	}
	if (buf_grow(&m, m.len) < 0) {
		if (!first->buf)
			first->buf = m.buf;
		return -ENOMEM;
	}
	if (last->off + last->len > b && (last != first || first->buf))
		memcpy(m.buf + (b - m.off), last->buf + (b - last->off),
		       (size_t)(last->off + last->len - b));
	memcpy(m.buf + (a - m.off), data, len);
	for (size_t i = lo; i < hi; i++)
		free(f->ext[i].buf);
	f->ext[lo] = m;
	memmove(&f->ext[lo + 1], &f->ext[hi], (f->n_ext - hi) * sizeof(m));
	f->n_ext -= hi - lo - 1;
	r->pending_ext -= hi - lo - 1;
	r->pending_bytes = r->pending_bytes - old + m.len;
	return 0;
}

/* ================================================================ files */

/*
 * The cached writable file for @path. Returns 0, -ENOENT/-ENOTDIR when it
 * does not exist, -EINVAL if it is not a regular file, or -errno.
 */
static int file_get(struct mfs_replay *r, const char *path, struct rfile **ret)
{
	_cleanup_close_ int pfd = -EBADF, fd = -EBADF;
	struct stat st, st2;
	struct rfile *f;
	int e;

	f = path_find(r, path);
	if (f) {
		*ret = f;
		return 0;
	}
	pfd = mfs_path_open(r->rootfd, path, O_PATH, 0);
	if (pfd < 0)
		return pfd;
	if (fstat(pfd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	f = inode_find(r, st.st_dev, st.st_ino);
	if (!f) {
		if (r->n_files >= MAX_FILES) {
			path_clear(r);
			files_gc(r, false);
			if (r->n_files >= MAX_FILES && (e = drain(r)) < 0)
				return e;
			files_gc(r, false);
		}
		fd = mfs_path_open(r->rootfd, path, O_WRONLY | O_NOCTTY, 0);
		if (fd < 0)
			return fd;
		if (fstat(fd, &st2) < 0)
			return -errno;
		if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)
			return -ESTALE; /* swapped under us */
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->fd = TAKE_FD(fd);
		f->inext = r->itab[inode_slot(f->dev, f->ino)];
		r->itab[inode_slot(f->dev, f->ino)] = f;
		r->n_files++;
	}
	e = path_add(r, path, f);
	if (e < 0)
		return e;
	*ret = f;
	return 0;
}

static bool is_gone(int e)
{
	return e == -ENOENT || e == -ENOTDIR;
}

static int skipped(struct mfs_replay *r, const struct mfs_rec *rec, int e)
{
	r->st.skipped++;
	log_debug("replay: LSN %" PRIu64 " %s '%s': %s, taken as already done", rec->lsn,
		  mfs_rec_type_name(rec->type), rec->path, strerror(-e));
	return 0;
}

/* ================================================================ namespace helpers */

/* Remove whatever @name in @dfd is, recursively for a directory. */
static int remove_any(int dfd, const char *name, int depth)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	struct stat st;
	int fd, e;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth > 256)
		return -ELOOP;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		(void)close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		e = remove_any(dirfd(d), de->d_name, depth + 1);
		if (e < 0)
			return e;
	}
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}

/* chmod without following a symlink (a symlink's mode means nothing: done). */
static int chmod_nofollow(int dirfd, const char *name, mode_t mode)
{
	struct stat st;

	if (syscall(SYS_fchmodat2, dirfd, name, mode, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno == EOPNOTSUPP)
		return 0; /* a symlink */
	if (errno != ENOSYS)
		return -errno;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode))
		return 0;
	return fchmodat(dirfd, name, mode, 0) < 0 ? -errno : 0;
}

static int chown_nofollow(int dirfd, const char *name, uint32_t uid, uint32_t gid)
{
	if (uid == UINT32_MAX && gid == UINT32_MAX)
		return 0;
	if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno == EPERM && geteuid() != 0)
		return 0;
	return -errno;
}

/* Owner, then mode (chown clears set-id bits). */
static int set_attrs(int dirfd, const char *name, uint32_t uid, uint32_t gid, uint32_t mode)
{
	int e = chown_nofollow(dirfd, name, uid, gid);

	return e < 0 ? e : chmod_nofollow(dirfd, name, mode & 07777);
}

/* ================================================================ operations */

static int op_write(struct mfs_replay *r, const struct mfs_rec *rec)
{
	struct rfile *f;
	int e;

	r->st.writes++;
	r->st.write_bytes += rec->data_len;
	e = file_get(r, rec->path, &f);
	if (is_gone(e))
		return skipped(r, rec, e);
	if (e < 0)
		return e;
	f->touched = true;
	if (rec->data_len == 0)
		return 0;
	if (r->naive || (rec->data_len >= DIRECT_MIN && !file_busy(f))) {
		/* large and nothing pending on the file: write it from the record, no copy */
		r->st.io_writes++;
		r->st.io_bytes += rec->data_len;
		return mfs_pwrite_all(f->fd, rec->data, rec->data_len, rec->offset);
	}
	e = ext_add(r, f, rec->offset, rec->data, rec->data_len);
	if (e < 0)
		return e;
	if (!f->queued) {
		f->queued = true;
		f->qnext = r->queue;
		r->queue = f;
	}
	if (r->pending_bytes >= BATCH_BYTES || r->pending_ext >= BATCH_EXTENTS)
		return batch_submit(r);
	return 0;
}

/* Truncate and fallocate: the file's pending writes land first. */
static int op_resize(struct mfs_replay *r, const struct mfs_rec *rec)
{
	struct rfile *f;
	int e;

	e = file_get(r, rec->path, &f);
	if (is_gone(e))
		return skipped(r, rec, e);
	if (e < 0)
		return e;
	if (file_busy(f) && (e = drain(r)) < 0)
		return e;
	f->touched = true;
	if (rec->type == MFS_REC_TRUNCATE)
		e = ftruncate(f->fd, (off_t)rec->length);
	else
		e = fallocate(f->fd, (int)rec->mode, (off_t)rec->offset, (off_t)rec->length);
	return e < 0 ? -errno : 0;
}

/* Drain if the object at @dirfd/@name is a file with writes pending. */
static int order_after_writes(struct mfs_replay *r, int dirfd, const char *name)
{
	struct stat st;
	struct rfile *f;

	if (!r->queue && !r->inflight)
		return 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	f = inode_find(r, st.st_dev, st.st_ino);
	return f && file_busy(f) ? drain(r) : 0;
}

static int xattr_apply(int fd, const struct mfs_rec *rec)
{
	int e;

	if (rec->type == MFS_REC_SETXATTR)
		e = fsetxattr(fd, rec->path2, rec->data, rec->data_len, 0);
	else
		e = fremovexattr(fd, rec->path2);
	return e < 0 ? -errno : 0;
}

/* xattrs on an O_PATH fd go through its /proc magic link. */
static int xattr_apply_path(int pfd, const struct mfs_rec *rec)
{
	char proc[64];
	int e;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	if (rec->type == MFS_REC_SETXATTR)
		e = setxattr(proc, rec->path2, rec->data, rec->data_len, 0);
	else
		e = removexattr(proc, rec->path2);
	return e < 0 ? -errno : 0;
}

static int op_xattr(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int pfd = -EBADF, fd = -EBADF;
	struct stat st, st2;
	int e;

	pfd = mfs_path_open(r->rootfd, rec->path, O_PATH, 0);
	if (is_gone(pfd))
		return skipped(r, rec, pfd);
	if (pfd < 0)
		return pfd;
	if (fstat(pfd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		fd = mfs_path_open(r->rootfd, rec->path, O_RDONLY | O_NOCTTY, 0);
		if (fd >= 0 && (fstat(fd, &st2) < 0 || st2.st_ino != st.st_ino))
			return -ESTALE;
	}
	e = fd >= 0 ? xattr_apply(fd, rec) : xattr_apply_path(pfd, rec);
	if (e == -ENODATA && rec->type == MFS_REC_REMOVEXATTR)
		return skipped(r, rec, e);
	if (!e && S_ISREG(st.st_mode)) {
		struct rfile *f = inode_find(r, st.st_dev, st.st_ino);

		if (f)
			f->touched = true;
	}
	return e;
}

/* CHMOD, CHOWN, UTIMENS: by name, never following the last component. */
static int op_attr(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int dfd = -EBADF;
	struct timespec ts[2];
	const char *base;
	int e;

	dfd = mfs_path_open_parent(r->rootfd, rec->path, &base);
	if (is_gone(dfd))
		return skipped(r, rec, dfd);
	if (dfd < 0)
		return dfd;
	switch (rec->type) {
	case MFS_REC_CHMOD:
		e = chmod_nofollow(dfd, base, rec->mode & 07777);
		break;
	case MFS_REC_CHOWN:
		e = chown_nofollow(dfd, base, rec->uid, rec->gid);
		break;
	default:
		e = order_after_writes(r, dfd, base);
		if (e < 0)
			break;
		ts[0] = (struct timespec){ .tv_sec = rec->atime_sec, .tv_nsec = rec->atime_nsec };
		ts[1] = (struct timespec){ .tv_sec = rec->mtime_sec, .tv_nsec = rec->mtime_nsec };
		e = utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
		break;
	}
	if (is_gone(e))
		return skipped(r, rec, e);
	return e;
}

/* A fresh regular file: goes straight into the file cache. */
static int create_regular(struct mfs_replay *r, int dfd, const char *base, const struct mfs_rec *rec)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	struct rfile *f;

	fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    rec->mode & 07777);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (r->n_files >= MAX_FILES || inode_find(r, st.st_dev, st.st_ino))
		return 0; /* (a stale inode entry cannot exist while its fd is open) */
	f = calloc(1, sizeof(*f));
	if (!f)
		return 0;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->fd = TAKE_FD(fd);
	f->touched = true;
	f->inext = r->itab[inode_slot(f->dev, f->ino)];
	r->itab[inode_slot(f->dev, f->ino)] = f;
	r->n_files++;
	return path_add(r, rec->path, f);
}

/* Make the object of MKNOD / MKDIR / SYMLINK once, @retry after removing what is there. */
static int make_object(struct mfs_replay *r, int dfd, const char *base, const struct mfs_rec *rec)
{
	uint32_t type = rec->mode & S_IFMT;
	struct stat st;
	char buf[MFS_PATH_MAX + 1];
	ssize_t n;

	switch (rec->type) {
	case MFS_REC_MKDIR:
		if (mkdirat(dfd, base, rec->mode & 07777) == 0)
			return 0;
		if (errno == EEXIST && fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode))
			return 0;
		return -errno;
	case MFS_REC_SYMLINK:
		if (symlinkat(rec->path2, dfd, base) == 0)
			return 0;
		if (errno != EEXIST)
			return -errno;
		n = readlinkat(dfd, base, buf, sizeof(buf) - 1);
		if (n >= 0 && (size_t)n == strlen(rec->path2) && !memcmp(buf, rec->path2, (size_t)n))
			return 0;
		return -EEXIST;
	default:
		if (type == 0 || type == S_IFREG)
			return create_regular(r, dfd, base, rec);
		return mknodat(dfd, base, type | (rec->mode & 07777), 0) < 0 ? -errno : 0;
	}
}

static int op_create(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int dfd = -EBADF;
	const char *base;
	int e;

	dfd = mfs_path_open_parent(r->rootfd, rec->path, &base);
	if (is_gone(dfd))
		return skipped(r, rec, dfd);
	if (dfd < 0)
		return dfd;
	path_invalidate(r, rec->path);
	e = make_object(r, dfd, base, rec);
	if (e == -EEXIST) { /* re-applied: the name holds a later object */
		r->st.skipped++;
		e = remove_any(dfd, base, 0);
		if (e == 0)
			e = make_object(r, dfd, base, rec);
	}
	if (e < 0)
		return e;
	dir_touch(r, rec->path);
	if (rec->type == MFS_REC_SYMLINK)
		return chown_nofollow(dfd, base, rec->uid, rec->gid);
	return set_attrs(dfd, base, rec->uid, rec->gid, rec->mode);
}

static int op_remove(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int dfd = -EBADF;
	const char *base;
	int e;

	dfd = mfs_path_open_parent(r->rootfd, rec->path, &base);
	if (is_gone(dfd))
		return skipped(r, rec, dfd);
	if (dfd < 0)
		return dfd;
	path_invalidate(r, rec->path);
	e = unlinkat(dfd, base, rec->type == MFS_REC_RMDIR ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
	if (e == -ENOENT)
		return skipped(r, rec, e);
	if (e == -EISDIR || e == -ENOTEMPTY || e == -EEXIST || e == -ENOTDIR) {
		r->st.skipped++;
		e = remove_any(dfd, base, 0);
	}
	if (e == 0)
		dir_touch(r, rec->path);
	return e;
}

/* RENAME and LINK: two names, each beneath the root. */
static int op_two(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int d1 = -EBADF, d2 = -EBADF;
	const char *b1, *b2;
	struct stat s1, s2;
	char tmp[64];
	int e;

	d1 = mfs_path_open_parent(r->rootfd, rec->path, &b1);
	if (d1 >= 0)
		d2 = mfs_path_open_parent(r->rootfd, rec->path2, &b2);
	e = d1 < 0 ? d1 : d2 < 0 ? d2 : 0;
	if (is_gone(e))
		return skipped(r, rec, e);
	if (e < 0)
		return e;
	path_invalidate(r, rec->path);
	path_invalidate(r, rec->path2);
	dir_touch(r, rec->path);
	dir_touch(r, rec->path2);
	if (rec->type == MFS_REC_LINK) {
		if (linkat(d1, b1, d2, b2, 0) == 0)
			return 0;
		e = -errno;
		if (e != -EEXIST)
			return is_gone(e) ? skipped(r, rec, e) : e;
		if (fstatat(d1, b1, &s1, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fstatat(d2, b2, &s2, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		r->st.skipped++;
		if (s1.st_dev == s2.st_dev && s1.st_ino == s2.st_ino)
			return 0;
		snprintf(tmp, sizeof(tmp), ".mfs-link.%d.%" PRIu64, getpid(), rec->lsn);
		if (linkat(d1, b1, d2, tmp, 0) < 0)
			return -errno;
		if (S_ISDIR(s2.st_mode))
			(void)remove_any(d2, b2, 0);
		if (renameat(d2, tmp, d2, b2) < 0) {
			e = -errno;
			(void)unlinkat(d2, tmp, 0);
			return e;
		}
		return 0;
	}
	if (renameat2(d1, b1, d2, b2, rec->flags) == 0)
		return 0;
	e = -errno;
	if (is_gone(e) && fstatat(d1, b1, &s1, AT_SYMLINK_NOFOLLOW) < 0)
		return skipped(r, rec, e); /* the source is gone: done */
	if (e == -EEXIST || e == -ENOTEMPTY || e == -EISDIR || e == -ENOTDIR) {
		r->st.skipped++;
		e = remove_any(d2, b2, 0);
		if (e == 0 && renameat2(d1, b1, d2, b2, rec->flags & ~RENAME_NOREPLACE) < 0)
			e = -errno;
	}
	return e;
}

/* ================================================================ checks */

static bool path_ok(const char *path)
{
	size_t n = strlen(RESERVED_NAME);

	if (!mfs_path_is_valid(path))
		return false;
	return !(strncmp(path, RESERVED_NAME, n) == 0 && (path[n] == '\0' || path[n] == '/'));
}

static bool nsec_ok(uint32_t ns)
{
	return ns < 1000000000u || ns == UTIME_OMIT || ns == UTIME_NOW;
}

static bool range_ok(uint64_t off, uint64_t len)
{
	return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

static int check_fields(const struct mfs_rec *rec)
{
	const uint32_t fl_ok = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
	uint32_t type = rec->mode & S_IFMT;

	switch (rec->type) {
	case MFS_REC_WRITE:
		return rec->data_len <= MFS_WRITE_MAX && (rec->data || !rec->data_len) &&
		       range_ok(rec->offset, rec->data_len);
	case MFS_REC_TRUNCATE:
		return rec->length <= (uint64_t)INT64_MAX;
	case MFS_REC_FALLOCATE:
		return !(rec->mode & ~fl_ok) && rec->length > 0 &&
		       range_ok(rec->offset, rec->length) &&
		       (!(rec->mode & FALLOC_FL_PUNCH_HOLE) || (rec->mode & FALLOC_FL_KEEP_SIZE));
	case MFS_REC_MKNOD:
		return !(rec->mode & ~(S_IFMT | 07777u)) &&
		       (type == 0 || type == S_IFREG || type == S_IFIFO || type == S_IFSOCK);
	case MFS_REC_MKDIR:
		return !(rec->mode & ~(S_IFMT | 07777u)) && (type == 0 || type == S_IFDIR);
	case MFS_REC_CHMOD:
		return true; /* only the permission bits are applied */
	case MFS_REC_RENAME:
		return path_ok(rec->path2) && !(rec->flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) &&
		       rec->flags != (RENAME_NOREPLACE | RENAME_EXCHANGE);
	case MFS_REC_LINK:
		return path_ok(rec->path2);
	case MFS_REC_SYMLINK:
		return rec->path2[0] != '\0' && strlen(rec->path2) <= MFS_PATH_MAX;
	case MFS_REC_UTIMENS:
		return nsec_ok(rec->atime_nsec) && nsec_ok(rec->mtime_nsec);
	case MFS_REC_SETXATTR:
		return rec->data_len <= MFS_XATTR_VALUE_MAX && (rec->data || !rec->data_len);
	default:
		return true;
	}
}

int mfs_replay_check(const struct mfs_rec *rec)
{
	if (!rec || !mfs_rec_type_is_valid((uint32_t)rec->type) || rec->type == MFS_REC_SEG_CLOSED)
		return -EINVAL;
	if (mfs_rec_type_is_marker(rec->type))
		return 0;
	if (!path_ok(rec->path))
		return -EINVAL;
	if ((rec->type == MFS_REC_SETXATTR || rec->type == MFS_REC_REMOVEXATTR) &&
	    (rec->path2[0] == '\0' || strlen(rec->path2) > MFS_XATTR_NAME_MAX))
		return -EINVAL;
	return check_fields(rec) ? 0 : -EINVAL;
}

/* ================================================================ engine */

int mfs_replay_apply(struct mfs_replay *r, const struct mfs_rec *rec)
{
	int e;

	if (r->error)
		return r->error;
	e = mfs_replay_check(rec);
	if (e < 0)
		return e;
	r->st.records++;
	switch (rec->type) {
	case MFS_REC_WRITE:
		return op_write(r, rec);
	case MFS_REC_TRUNCATE:
	case MFS_REC_FALLOCATE:
		return op_resize(r, rec);
	case MFS_REC_MKNOD:
	case MFS_REC_MKDIR:
	case MFS_REC_SYMLINK:
		return op_create(r, rec);
	case MFS_REC_UNLINK:
	case MFS_REC_RMDIR:
		return op_remove(r, rec);
	case MFS_REC_RENAME:
	case MFS_REC_LINK:
		return op_two(r, rec);
	case MFS_REC_CHMOD:
	case MFS_REC_CHOWN:
	case MFS_REC_UTIMENS:
		return op_attr(r, rec);
	case MFS_REC_SETXATTR:
	case MFS_REC_REMOVEXATTR:
		return op_xattr(r, rec);
	default:
		return 0; /* markers */
	}
}

static int sync_one(struct mfs_replay *r, int fd)
{
	struct io_uring_sqe *sqe;

	r->st.syncs++;
	if (r->uring && !r->naive && (sqe = get_sqe(r))) {
		io_uring_prep_fsync(sqe, fd, 0);
		io_uring_sqe_set_data64(sqe, 0);
		return 0;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

static int sync_dirs(struct mfs_replay *r)
{
	int e = 0;

	for (unsigned i = 0; i < r->n_dirs; i++) {
		_cleanup_close_ int fd = -EBADF;

		if (r->dirs[i][0])
			fd = mfs_path_open(r->rootfd, r->dirs[i], O_RDONLY | O_DIRECTORY, 0);
		else
			fd = openat(r->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			r->st.syncs++;
			if (fsync(fd) < 0 && e == 0)
				e = -errno;
		} else if (!is_gone(fd) && e == 0) {
			e = fd;
		}
	}
	return e;
}

static unsigned count_touched(struct mfs_replay *r)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ITAB_SIZE; i++)
		for (struct rfile *f = r->itab[i]; f; f = f->inext)
			n += f->touched;
	return n;
}

static int flush_all(struct mfs_replay *r)
{
	_cleanup_close_ int fd = -EBADF;
	int e = 0;

	if (!r->naive && (r->need_syncfs || count_touched(r) + r->n_dirs > SYNCFS_MIN)) {
		fd = openat(r->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		r->st.syncs++;
		return syncfs(fd) < 0 ? -errno : 0;
	}
	for (unsigned i = 0; i < ITAB_SIZE; i++)
		for (struct rfile *f = r->itab[i]; f; f = f->inext)
			if (f->touched && (e = sync_one(r, f->fd)) < 0)
				return e;
	if (r->uring && (e = reap(r, 0)) < 0)
		return e;
	if (r->error)
		return r->error;
	e = sync_dirs(r);
	if (e == 0 && r->need_syncfs) { /* naive mode only: files closed early */
		fd = openat(r->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		r->st.syncs++;
		e = syncfs(fd) < 0 ? -errno : 0;
	}
	return e;
}

int mfs_replay_finish(struct mfs_replay *r)
{
	int e = drain(r);

	if (e == 0 && !(r->flags & MFS_REPLAY_F_NO_SYNC))
		e = flush_all(r);
	for (unsigned i = 0; i < ITAB_SIZE; i++)
		for (struct rfile *f = r->itab[i]; f; f = f->inext)
			f->touched = false;
	for (unsigned i = 0; i < r->n_dirs; i++)
		free(r->dirs[i]);
	r->n_dirs = 0;
	r->need_syncfs = false;
	files_gc(r, false); /* files no path names any more */
	if (e == 0)
		e = r->error;
	r->error = 0;
	return e;
}

int mfs_replay_new(int rootfd, unsigned flags, struct mfs_replay **ret)
{
	struct mfs_replay *r;
	struct stat st;
	int e;

	if (fstat(rootfd, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->rootfd = rootfd;
	r->flags = flags;
	r->naive = flags & MFS_REPLAY_F_NO_URING;
	if (!r->naive) {
		e = io_uring_queue_init(QUEUE_DEPTH, &r->ring, 0);
		if (e == 0)
			r->uring = true;
		else
			log_debug_errno(e, "replay: io_uring unavailable (kernel.io_uring_disabled?), "
					"using plain syscalls: %m");
	}
	r->st.uring = r->uring;
	*ret = r;
	return 0;
}

struct mfs_replay *mfs_replay_free(struct mfs_replay *r)
{
	if (!r)
		return NULL;
	(void)drain(r);
	path_clear(r);
	r->need_syncfs = false;
	for (unsigned i = 0; i < ITAB_SIZE; i++)
		while (r->itab[i]) {
			r->itab[i]->touched = false;
			rfile_free(r, r->itab[i]);
		}
	for (unsigned i = 0; i < r->n_dirs; i++)
		free(r->dirs[i]);
	if (r->uring)
		io_uring_queue_exit(&r->ring);
	free(r);
	return NULL;
}

void mfs_replay_get_stats(struct mfs_replay *r, struct mfs_replay_stats *ret)
{
	*ret = r->st;
}

/* ================================================================ segments */

struct seg_arg {
	struct mfs_replay *r;
	uint64_t after, last;
	int error;
};

static int seg_check_cb(const struct mfs_rec *rec, void *arg)
{
	struct seg_arg *a = arg;

	a->error = mfs_replay_check(rec);
	return a->error < 0 ? 1 : 0;
}

static int seg_apply_cb(const struct mfs_rec *rec, void *arg)
{
	struct seg_arg *a = arg;

	if (rec->lsn <= a->after)
		return 0;
	a->error = mfs_replay_apply(a->r, rec);
	if (a->error < 0)
		return 1;
	a->last = rec->lsn;
	return 0;
}

int mfs_replay_segment(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
		       uint64_t after_lsn, bool strict, uint64_t *ret_last)
{
	struct seg_arg a = { .r = r, .after = after_lsn, .last = after_lsn };
	struct mfs_seg_info info;
	int e;

	if (strict) {
		e = mfs_seg_scan_fd(segfd, expect_uuid, seg_check_cb, &a, &info);
		if (e < 0 && !a.error)
			return e;
		if (a.error)
			return a.error;
		if (info.verdict != MFS_SEG_OK)
			return -EBADMSG;
	}
	e = mfs_seg_scan_fd(segfd, expect_uuid, seg_apply_cb, &a, &info);
	if (a.error)
		return a.error;
	if (e < 0)
		return e;
	if (info.verdict != MFS_SEG_OK && info.verdict != MFS_SEG_TORN)
		return -EBADMSG;
	if (info.verdict == MFS_SEG_TORN && !info.header_valid)
		return -EBADMSG;
	*ret_last = a.last;
	return 0;
}
