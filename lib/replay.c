/* SPDX-License-Identifier: MIT */
/*
 * replay.c - the replay engine: what applying a journal record means.
 *
 * Safety. Every record is checked (mfs_replay_check) before it is applied,
 * and every path is resolved beneath the root with lib/path.c (openat2
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS); the last component is never
 * followed. The reserved top-level name ".mirrorfs" is refused. Device
 * nodes are made as the primary made them (mknod with rdev; without
 * CAP_MKNOD that fails with -EPERM, the machine's condition): a hostile
 * segment can make a device node but not write to it, since a file is
 * opened for writing only after an O_PATH open proved it is a regular
 * file. A hostile record can fail, never change anything outside the root.
 *
 * Segments. mfs_replay_seg_load() maps a segment file into memory once
 * (faulted in by the validation pass, 16 pages a fault; a pooled buffer
 * read with pread when it cannot be mapped)
 * and validates all of it from there (the reader checks every record's CRC,
 * the trailer and the whole-segment CRC in the same pass; every record goes
 * through mfs_replay_check()); the decoded records are kept in compact form
 * (fields, paths in one string table, data pointing into the buffer).
 * mfs_replay_seg_apply() then applies them from that memory: no second
 * read, no second checksum pass. Mapping rather than reading measured
 * faster: no copy, and no fresh anonymous memory to zero (which cost more
 * than the read itself). The price: a page that cannot be read (an I/O
 * error of the disk under the incoming folder, or the file truncated in
 * place) raises SIGBUS. The validation pass runs under a guard (sigbus.c)
 * that reads such a page as zeros and turns the load into -EIO; after
 * validation, a truncation kills the reader (nothing is recorded as
 * applied then, and the restart re-applies: idempotent), and one that
 * rewrites it in place changes write data after their CRC was checked
 * (paths, offsets and every other field were decoded and checked at load
 * and are not read from the mapping again, so this cannot reach outside
 * the root; CRC32C authenticates nothing anyway). Only the shipper may
 * write the incoming folder.
 *
 * Writes. Data writes are not issued one by one, and not copied. Each
 * regular file (keyed by device and inode, so hard links and renames share
 * it) keeps a log of the writes not yet issued, pointing at their bytes
 * where they already are: in a loaded segment, which the engine holds until
 * the log is issued, or (mfs_replay_apply(), whose record data are the
 * caller's) in a copy arena. The logs are issued together (drain) at the
 * flush, or when BATCH_WRITES writes or hold_max held bytes are pending
 * (a sixteenth of the RAM, between HOLD_MIN and HOLD_MAX: the more a drain
 * covers, the more superseded bytes it drops and the fewer pages it
 * dirties; 1 GiB of 4 KiB random writes replays 1.3-1.5x faster with
 * 1 GiB held than with 256 MiB; a held segment counts its pages, record
 * index and strings, and at most HOLD_SEGS segments are held, so a backlog
 * of 100,000 one-record segments is applied within 60 MiB and far below the
 * kernel's limit on mappings):
 * a write that starts where a logged one of the same file starts and
 * reaches at least as far replaces it in place (an offset index per file),
 * so a rewritten page costs one log entry; at issue time
 * each file's log is sorted by offset and swept with a heap on arrival
 * order, so each byte is written once, from the last write of it (a hot
 * page written ten times is written once, and superseded bytes are never
 * copied), and adjacent pieces go out in one pwritev. Buffered writes use
 * plain pwritev, not io_uring: on ext4 io_uring has no async buffered
 * writes, it punts each one to a worker (serialised per inode), which
 * measured slower than the syscall (more system CPU, no gain in overlap);
 * io_uring is kept for the flush, where the fsyncs of all touched files run
 * in parallel, except on ext4, where the io_uring workers' parallel fsyncs
 * measured slower (more system time, longer wall time) than fsyncing the
 * files one after the other. Long sequential stretches get write-behind:
 * every WB_CHUNK of them, an io_uring sync_file_range(WRITE) starts their
 * writeback on a worker, so the disk works while the drain goes on (1 GiB
 * of 1 MiB writes: 1.1-1.2x faster, median of two 3-round A/Bs); scattered
 * writes get none. A large copied write (>= DIRECT_MIN) to an idle file is
 * written at once from the caller's buffer: copying it would cost more
 * than logging saves. The naive mode (MFS_REPLAY_F_NO_URING, the
 * benchmark's baseline) does one pwrite per write record and fsyncs each
 * touched file at the end.
 *
 * Ordering. A data write goes to an inode through an fd resolved when the
 * record is applied, so namespace operations (create, unlink, rename, link,
 * ...) that come later cannot change where it lands, and they need not wait
 * for it: the final state is the same. What does depend on pending writes
 * is drained first (all logged writes issued): truncate
 * and fallocate of that file (data), utimens of that file (a later write
 * completion would move mtime). The path -> file cache is invalidated for a
 * path and everything below it by every namespace operation on it.
 *
 * Flush. mfs_replay_finish() issues every logged write, then fsyncs every
 * file written and every directory whose entries changed since the last
 * finish, in parallel through io_uring; when that is many objects, or when
 * a touched file had to be closed early (fd cache full), one syncfs() of
 * the root's file system replaces them (never in naive mode, which keeps up
 * to MAX_FILES_NAIVE files open to fsync each).
 *
 * Idempotency. The daemon never applies an LSN twice in normal operation
 * (it records the applied LSN after each batch's flush), but after a
 * crash in the middle of a segment, or in crash recovery on mount, records
 * are applied again to a tree that is at or after their LSN. Each record is
 * therefore applied as "make its post-condition true":
 *  - WRITE, TRUNCATE, FALLOCATE, CHMOD, CHOWN, UTIMENS, SETXATTR,
 *    REMOVEXATTR on a path that no longer exists (ENOENT, ENOTDIR on the
 *    way): skipped, counted in stats.skipped. A later record removed it.
 *  - MKNOD (any file type): if the name exists, the old
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
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>

#include <liburing.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/path.h"
#include "mirrorfs/segment.h"
#include "mirrorfs/sigbus.h"
#include "replay_i.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

#define QUEUE_DEPTH 256u
#define BATCH_WRITES 1048576u /* writes logged before they are issued (32 MiB of log) */
#define HOLD_MIN (64u << 20)  /* held segment / copied bytes before they are issued: */
#define HOLD_MAX (1u << 30)   /* RAM / 16, within these bounds */
#define HOLD_SEGS 4096u       /* held segments before they are issued: a backlog of tiny
				 segments stays within bounded memory and mappings */
#define ARENA_CHUNK (4u << 20)
#define POOL_SLOTS 8          /* segment buffers kept for reuse */
#define BUF_ALIGN (1u << 20)  /* segment buffer sizes are rounded up to this */
#define IOV_BATCH 512          /* iovecs per pwritev */
#define MAX_FILES 512u         /* open regular files kept (fd cache) */
#define MAX_FILES_NAIVE 8192u  /* naive mode keeps every touched file to fsync it */
#define MAX_PATHS 1024u        /* path -> file entries */
#define MAX_DIRS 64u           /* touched directories fsynced one by one */
#define SYNCFS_MIN 64u         /* this many objects to flush: one syncfs instead */
#define PTAB_SIZE 2048u
#define PFX_SIZE 4096u         /* slots counting cached paths below a folder, by hash */
#define ITAB_SIZE 1024u
#define DIRECT_MIN (256u << 10) /* copied writes this large skip the log when the file is idle */
#define WB_RUN (1u << 20)      /* a pwritev this long is part of a sequential stretch */
#define WB_CHUNK (8u << 20)    /* sequential bytes issued to a file between write-behind kicks */
#define WB_INFLIGHT 2u         /* write-behind kicks in flight at most */
#define UD_FSYNC 0u            /* io_uring user data: a flush's fsync */
#define UD_WB 1u               /* io_uring user data: a write-behind (a hint, errors ignored) */
#define RESERVED_NAME ".mirrorfs"

/*
 * A write waiting in its file's log. Its bytes stay where they are (a
 * loaded segment, or the copy arena) until the log is issued; @seq orders
 * writes to the same bytes: the later one wins.
 */
struct pw {
	uint64_t off, end;
	const char *src;
	uint64_t seq;
};

struct rfile {
	dev_t dev;
	ino_t ino;
	int fd;          /* O_WRONLY, owned */
	struct pw *log;  /* writes not yet issued, in arrival order */
	size_t n_log, cap_log;
	uint32_t *oidx;  /* open addressing, offset -> 1 + index of its latest log entry */
	size_t cap_oidx; /* a power of two > 2 * n_log, or 0 */
	unsigned refs;   /* path cache entries naming this file */
	bool touched;    /* written since the last finish */
	bool queued;     /* on the engine's pending list */
	struct rfile *inext; /* inode hash chain */
	struct rfile *qnext; /* pending list */
};

struct pent {
	struct pent *next;
	struct rfile *f;
	uint32_t hash;
	char path[]; /* NUL-terminated */
};

/* Copies of write data given to mfs_replay_apply(), held until issued. */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

struct mfs_replay {
	int rootfd;
	unsigned flags;
	bool uring, naive, need_syncfs;
	bool ref; /* applying a held segment: write data need not be copied */
	bool par_fsync; /* fsyncs in parallel through io_uring (not on ext4: slower) */
	struct io_uring ring;
	unsigned sq_unsubmitted; /* SQEs prepared, not yet submitted */
	unsigned inflight;       /* submitted, not reaped */
	unsigned wb_inflight;    /* of which write-behind kicks */
	int error;               /* first error of an issued write */
	struct rfile *itab[ITAB_SIZE];
	unsigned n_files, max_files;
	struct pent *ptab[PTAB_SIZE];
	uint32_t pfx[PFX_SIZE]; /* cached paths below each folder, counted at hash_str(folder) */
	unsigned n_paths;
	struct rfile *queue; /* files with logged writes */
	uint64_t pending_writes, seq;
	struct chunk *arena;
	struct mfs_replay_seg *held, *applying;
	size_t held_bytes, hold_max, n_held;
	struct mfs_rec *scratch; /* a loaded record being applied */
	pthread_mutex_t pool_lock; /* mfs_replay_seg_load() may run on another thread */
	const struct mfs_keyring *keys; /* mfs_replay_set_keys(): tags required */
	struct { void *p; size_t cap; } pool[POOL_SLOTS]; /* segment buffers for reuse */
	char *dirs[MAX_DIRS];    /* touched directories ("" = root) */
	unsigned n_dirs;
	struct replay_limits lim; /* preflight's knowledge of the data folder (replay_preflight.c) */
	char why[640];            /* the last failure, one line (mfs_replay_why) */
	struct mfs_replay_stats st;
};

/* ================================================================ tables */

#define HASH_INIT 2166136261u /* FNV-1a */

static inline uint32_t hash_step(uint32_t h, char c)
{
	return (h ^ (uint8_t)c) * 16777619u;
}

static uint32_t hash_str(const char *s)
{
	uint32_t h = HASH_INIT;

	for (; *s; s++)
		h = hash_step(h, *s);
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

/*
 * Count @path (@d = 1 or -1) in the pfx slot of each folder above it.
 * Returns hash_str(@path), computed on the way.
 */
static uint32_t pfx_count(struct mfs_replay *r, const char *path, int d)
{
	uint32_t h = HASH_INIT; /* hash_str() of the prefix read so far */

	for (const char *s = path; *s; s++) {
		if (*s == '/')
			r->pfx[h % PFX_SIZE] += d > 0 ? 1u : UINT32_MAX; /* +1 or -1 */
		h = hash_step(h, *s);
	}
	return h;
}

static void pent_remove(struct mfs_replay *r, struct pent **pp)
{
	struct pent *e = *pp;

	pfx_count(r, e->path, -1);
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
	e->hash = pfx_count(r, e->path, 1);
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
	uint32_t h = hash_str(path);

	if (r->n_paths == 0)
		return;
	if (n == 0) {
		path_clear(r);
		return;
	}
	for (struct pent **pp = &r->ptab[h % PTAB_SIZE]; *pp;) {
		if ((*pp)->hash == h && strcmp((*pp)->path, path) == 0)
			pent_remove(r, pp);
		else
			pp = &(*pp)->next;
	}
	/*
	 * Below it: the whole table is scanned only when a cached path has
	 * @path as a folder (or a hash collision says it might); creating,
	 * removing or renaming a file name costs a lookup, not a scan.
	 */
	if (r->pfx[h % PFX_SIZE] == 0)
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
	free(f->log);
	free(f->oidx);
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
			if ((all || f->refs == 0) && f->n_log == 0 && !f->queued)
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

/* ================================================================ pending writes */

static void note_error(struct mfs_replay *r, int e)
{
	if (e < 0 && r->error == 0)
		r->error = e;
}

static bool file_busy(const struct rfile *f)
{
	return f->n_log != 0;
}

/* A copy of @data that lives until the next drain. NULL when out of memory. */
static const char *arena_copy(struct mfs_replay *r, const void *data, size_t len)
{
	struct chunk *c = r->arena;

	if (!c || c->cap - c->used < len) {
		size_t cap = MFS_MAX(len, (size_t)ARENA_CHUNK);

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = r->arena;
		c->used = 0;
		c->cap = cap;
		r->arena = c;
		r->held_bytes += cap;
	}
	memcpy(c->data + c->used, data, len);
	c->used += len;
	return c->data + c->used - len;
}

/* What holding loaded segment @s costs: its pages, its record index and its strings. */
static size_t seg_cost(const struct mfs_replay_seg *s)
{
	return (s->len + 4095) / 4096 * 4096 + s->cap_recs * sizeof(*s->recs) + s->cap_strs +
	       sizeof(*s);
}

/* Whether the held segments and copies are to be issued now. */
static bool hold_full(const struct mfs_replay *r)
{
	return r->held_bytes >= r->hold_max || r->n_held >= HOLD_SEGS;
}

/* Free held memory no logged write refers to any more (all but the segment being applied). */
static void held_release(struct mfs_replay *r)
{
	struct mfs_replay_seg **pp = &r->held;

	while (r->arena) {
		struct chunk *c = r->arena;

		r->arena = c->next;
		free(c);
	}
	r->held_bytes = 0;
	r->n_held = 0;
	while (*pp) {
		struct mfs_replay_seg *s = *pp;

		if (s == r->applying) {
			r->held_bytes += seg_cost(s);
			r->n_held++;
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		s->next = NULL;
		mfs_replay_seg_free(s);
	}
}

static uint32_t *oidx_slot(const struct rfile *f, uint64_t off)
{
	size_t mask = f->cap_oidx - 1, i = (size_t)((off * 0x9e3779b97f4a7c15ull) >> 32) & mask;

	while (f->oidx[i] && f->log[f->oidx[i] - 1].off != off)
		i = (i + 1) & mask;
	return &f->oidx[i];
}

/* Room in the offset index for one more entry; false when there is no memory for it. */
static bool oidx_reserve(struct rfile *f)
{
	size_t cap = f->cap_oidx ? f->cap_oidx : 128;
	uint32_t *n;

	if (f->n_log + 1 < f->cap_oidx / 2)
		return true;
	if (f->n_log >= UINT32_MAX / 2)
		return false;
	while (f->n_log + 1 >= cap / 2)
		cap *= 2;
	n = calloc(cap, sizeof(*n));
	if (!n)
		return false;
	free(f->oidx);
	f->oidx = n;
	f->cap_oidx = cap;
	for (size_t i = 0; i < f->n_log; i++) /* later entries win a shared slot */
		*oidx_slot(f, f->log[i].off) = (uint32_t)i + 1;
	return true;
}

static void oidx_clear(struct rfile *f)
{
	if (f->oidx)
		memset(f->oidx, 0, f->cap_oidx * sizeof(*f->oidx));
}

/*
 * Log a write of @len bytes at @off from @src. A write that starts where
 * a logged one starts and reaches at least as far replaces it in place
 * (the database rewriting a page): the log, and the sort at issue time,
 * grow with the distinct pages, not with the writes (800 MiB of a hot
 * table: 100,000 writes, 2,048 pages).
 */
static int log_add(struct mfs_replay *r, struct rfile *f, uint64_t off, const char *src, size_t len)
{
	uint32_t *slot = NULL;

	if (oidx_reserve(f)) {
		slot = oidx_slot(f, off);
		if (*slot && f->log[*slot - 1].end <= off + len) {
			struct pw *w = &f->log[*slot - 1];

			r->st.dropped_bytes += w->end - w->off;
			*w = (struct pw){ .off = off, .end = off + len, .src = src, .seq = r->seq++ };
			return 0;
		}
	}
	if (f->n_log == f->cap_log) {
		size_t cap = f->cap_log ? f->cap_log * 2 : 64;
		struct pw *n = realloc(f->log, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		f->log = n;
		f->cap_log = cap;
	}
	f->log[f->n_log++] = (struct pw){ .off = off, .end = off + len, .src = src, .seq = r->seq++ };
	if (slot)
		*slot = (uint32_t)f->n_log;
	r->pending_writes++;
	if (!f->queued) {
		f->queued = true;
		f->qnext = r->queue;
		r->queue = f;
	}
	return 0;
}

static int pw_cmp(const void *a, const void *b)
{
	const struct pw *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Max-heap of writes by seq: the write whose bytes win is on top. */
static void heap_push(struct pw **h, size_t *n, struct pw *w)
{
	size_t i = (*n)++;

	while (i && h[(i - 1) / 2]->seq < w->seq) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = w;
}

static void heap_pop(struct pw **h, size_t *n)
{
	struct pw *last = h[--(*n)];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1]->seq > h[c]->seq)
			c++;
		if (h[c]->seq <= last->seq)
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
}

/* Contiguous file bytes from held memory, written with one pwritev. */
struct iobatch {
	struct rfile *f;
	uint64_t off, end;
	uint64_t wb_from; /* start of the sequential bytes issued since the last kick */
	uint64_t wb_bytes; /* how many */
	struct iovec iov[IOV_BATCH];
	int n;
};

static void reap_one(struct mfs_replay *r, struct io_uring_cqe *cqe)
{
	if (io_uring_cqe_get_data64(cqe) == UD_WB) {
		r->wb_inflight--;
		if (cqe->res < 0) /* a hint: the flush's fsync still writes and reports */
			log_debug_errno(cqe->res, "replay: write-behind: %m");
	} else {
		note_error(r, cqe->res);
	}
	io_uring_cqe_seen(&r->ring, cqe);
	r->inflight--;
}

/*
 * Start writeback of [from, to) of @f without waiting (write-behind), so
 * that the disk writes a long sequential stretch while the drain goes on,
 * instead of all of it in the flush's fsync. An io_uring worker runs the
 * sync_file_range() on the other CPU. At most WB_INFLIGHT are in flight;
 * returns false when the kick was skipped (the caller keeps the range).
 * Scattered writes get none: early writeback of a sparse pattern made
 * ext4 allocate in pieces and cost more system time than it saved
 * (measured on 4 KiB random writes: 2.3 -> 3.0 s).
 */
static bool writebehind(struct mfs_replay *r, struct rfile *f, uint64_t from, uint64_t to)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;

	if (!r->uring || to <= from)
		return false;
	while (r->wb_inflight >= WB_INFLIGHT && io_uring_peek_cqe(&r->ring, &cqe) == 0)
		reap_one(r, cqe);
	if (r->wb_inflight >= WB_INFLIGHT || r->inflight >= QUEUE_DEPTH)
		return false;
	sqe = io_uring_get_sqe(&r->ring);
	if (!sqe)
		return false;
	/* the length is 32 bits; 0 means "to the end of the file" */
	io_uring_prep_sync_file_range(sqe, f->fd, to - from > UINT32_MAX ? 0 : (unsigned)(to - from),
				      from, SYNC_FILE_RANGE_WRITE);
	io_uring_sqe_set_data64(sqe, UD_WB);
	r->inflight++;
	r->wb_inflight++;
	r->st.writebehinds++;
	if (io_uring_submit(&r->ring) >= 0) /* takes the file now: a later close is safe */
		r->sq_unsubmitted = 0;
	return true;
}

static int iob_flush(struct mfs_replay *r, struct iobatch *b)
{
	int e;

	if (b->n == 0)
		return 0;
	r->st.io_writes++;
	r->st.io_bytes += b->end - b->off;
	e = mfs_pwritev_all(b->f->fd, b->iov, b->n, b->off);
	b->n = 0;
	if (e < 0 || b->end - b->off < WB_RUN)
		return e;
	if (!b->wb_bytes)
		b->wb_from = b->off;
	b->wb_bytes += b->end - b->off;
	if (b->wb_bytes >= WB_CHUNK && writebehind(r, b->f, b->wb_from, b->end))
		b->wb_bytes = 0;
	return e;
}

static int iob_add(struct mfs_replay *r, struct iobatch *b, uint64_t off, const char *src,
		   size_t len)
{
	struct iovec *last = b->n ? &b->iov[b->n - 1] : NULL;
	int e;

	if (last && b->end == off && (const char *)last->iov_base + last->iov_len == src) {
		last->iov_len += len;
		b->end += len;
		return 0;
	}
	if (!b->n || b->end != off || b->n == IOV_BATCH) {
		e = iob_flush(r, b);
		if (e < 0)
			return e;
		b->off = b->end = off;
	}
	b->iov[b->n++] = (struct iovec){ .iov_base = (void *)src, .iov_len = len };
	b->end += len;
	return b->end - b->off >= WB_CHUNK ? iob_flush(r, b) : 0; /* write-behind granularity */
}

/*
 * Issue a file's log: sorted by offset, then swept with a heap so that
 * every byte is written once, from the last write of it (superseded bytes
 * are never copied or written); adjacent pieces go out in one pwritev.
 */
static int file_issue(struct mfs_replay *r, struct rfile *f)
{
	_cleanup_free_ struct pw **heap = NULL;
	_cleanup_free_ struct iobatch *b = NULL;
	struct pw *w = f->log;
	size_t n = f->n_log, i = 0, nh = 0;
	uint64_t pos = 0, written = 0;
	int e = 0;

	if (n == 1) {
		r->st.io_writes++;
		r->st.io_bytes += w->end - w->off;
		return mfs_pwrite_all(f->fd, w->src, (size_t)(w->end - w->off), w->off);
	}
	heap = malloc(n * sizeof(*heap));
	b = malloc(sizeof(*b));
	if (!heap || !b)
		return -ENOMEM;
	b->f = f;
	b->n = 0;
	b->wb_bytes = 0;
	qsort(w, n, sizeof(*w), pw_cmp);
	while (e == 0 && (i < n || nh)) {
		struct pw *top;
		uint64_t next;

		if (nh == 0 && pos < w[i].off)
			pos = w[i].off;
		while (i < n && w[i].off <= pos)
			heap_push(heap, &nh, &w[i++]);
		while (nh && heap[0]->end <= pos)
			heap_pop(heap, &nh);
		if (nh == 0)
			continue;
		top = heap[0];
		next = i < n && w[i].off < top->end ? w[i].off : top->end;
		e = iob_add(r, b, pos, top->src + (pos - top->off), (size_t)(next - pos));
		written += next - pos;
		pos = next;
	}
	if (e == 0)
		e = iob_flush(r, b);
	for (i = 0; i < n; i++)
		r->st.dropped_bytes += w[i].end - w[i].off;
	r->st.dropped_bytes -= written;
	return e;
}

/* Issue every logged write and release the memory they came from. Returns 0 or the first error. */
static int drain(struct mfs_replay *r)
{
	while (r->queue) {
		struct rfile *f = r->queue;

		r->queue = f->qnext;
		f->queued = false;
		if (!r->error)
			note_error(r, file_issue(r, f));
		f->n_log = 0;
		oidx_clear(f);
	}
	r->pending_writes = 0;
	held_release(r);
	return r->error;
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
		if (r->n_files >= r->max_files) {
			path_clear(r);
			files_gc(r, false);
			if (r->n_files >= r->max_files && (e = drain(r)) < 0)
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

/*
 * One folder on the way down of remove_any(): its identity (to check ".."
 * on the way up), its name in its parent, and up to RM_NAMES of its
 * subfolders still to remove (read again when they run out).
 */
#define RM_NAMES 1024u
struct rm_frame {
	dev_t dev;
	ino_t ino;
	char *name;
	char **subs;
	size_t n_subs, i_sub;
	bool more; /* subfolders beyond RM_NAMES: read the folder again */
};

static void rm_frame_done(struct rm_frame *f)
{
	for (size_t i = f->i_sub; i < f->n_subs; i++)
		free(f->subs[i]);
	free(f->subs);
	free(f->name);
	*f = (struct rm_frame){ 0 };
}

/*
 * Unlink everything in folder @fd that is not a folder, and list up to
 * RM_NAMES of its subfolders in @f. Returns 0 or -errno.
 */
static int rm_scan(int fd, struct rm_frame *f)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dup_fd < 0)
		return -errno;
	d = fdopendir(dup_fd);
	if (!d) {
		(void)close(dup_fd);
		return -errno;
	}
	f->more = false;
	while ((de = readdir(d))) {
		struct stat st;
		bool dir = de->d_type == DT_DIR;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type == DT_UNKNOWN) {
			if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT)
					continue;
				return -errno;
			}
			dir = S_ISDIR(st.st_mode);
		}
		if (!dir) {
			if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
				return -errno;
			continue;
		}
		if (f->n_subs >= RM_NAMES) {
			f->more = true;
			continue;
		}
		if (!f->subs && !(f->subs = calloc(RM_NAMES, sizeof(*f->subs))))
			return -ENOMEM;
		if (!(f->subs[f->n_subs] = strdup(de->d_name)))
			return -ENOMEM;
		f->n_subs++;
	}
	return 0;
}

/* Open folder @name of @dfd as the next frame. Returns the fd or -errno. */
static int rm_enter(int dfd, const char *name, struct rm_frame *f)
{
	struct stat st;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !(f->name = strdup(name))) {
		(void)close(fd);
		return -ENOMEM;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	return fd;
}

/*
 * Remove whatever @name in @dfd is; a folder with everything below it, at
 * any depth: iterative, with two folders open at a time and a stack of
 * names (not of fds), so that a tree deeper than the fd limit (or than
 * PATH_MAX, which renames can build) goes too. Going up is ".." of the
 * folder just emptied, checked against the folder that was entered.
 */
static int remove_any(int dfd, const char *name)
{
	_cleanup_free_ struct rm_frame *stk = NULL;
	size_t n = 0, cap = 0;
	struct stat st;
	int cur = -EBADF, e = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	for (const char *next = name; e == 0;) {
		struct rm_frame *f;

		if (next) { /* go down into @next */
			if (n == cap) {
				struct rm_frame *ns = realloc(stk, (cap ? cap * 2 : 16) * sizeof(*ns));

				if (!ns) {
					e = -ENOMEM;
					break;
				}
				stk = ns;
				cap = cap ? cap * 2 : 16;
			}
			stk[n] = (struct rm_frame){ 0 };
			e = rm_enter(n ? cur : dfd, next, &stk[n]);
			if (e < 0)
				break;
			if (cur >= 0)
				(void)close(cur);
			cur = e;
			e = rm_scan(cur, &stk[n++]);
			next = NULL;
			continue;
		}
		f = &stk[n - 1];
		if (f->i_sub < f->n_subs) {
			next = f->subs[f->i_sub]; /* freed once it is removed */
			continue;
		}
		if (f->more) {
			for (size_t i = 0; i < f->n_subs; i++)
				free(f->subs[i]);
			f->n_subs = f->i_sub = 0;
			e = rm_scan(cur, f);
			continue;
		}
		/* @f is empty: go up and remove it */
		if (n == 1) {
			e = unlinkat(dfd, f->name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
			rm_frame_done(f);
			n = 0;
			break;
		}
		{
			int up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			struct rm_frame *p = &stk[n - 2];

			if (up < 0 || fstat(up, &st) < 0 || st.st_dev != p->dev || st.st_ino != p->ino) {
				e = up < 0 ? -errno : -ESTALE; /* moved under us */
				if (up >= 0)
					(void)close(up);
				break;
			}
			(void)close(cur);
			cur = up;
			if (unlinkat(cur, f->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				e = -errno;
			rm_frame_done(f);
			n--;
			free(p->subs[p->i_sub]);
			p->subs[p->i_sub++] = NULL;
		}
	}
	while (n)
		rm_frame_done(&stk[--n]);
	if (cur >= 0)
		(void)close(cur);
	return e;
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
	const char *src;
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
	if (r->naive || (!r->ref && rec->data_len >= DIRECT_MIN && !file_busy(f))) {
		/* one pwrite per record (naive), or large and the file idle: no copy */
		r->st.io_writes++;
		r->st.io_bytes += rec->data_len;
		return mfs_pwrite_all(f->fd, rec->data, rec->data_len, rec->offset);
	}
	src = r->ref ? rec->data : arena_copy(r, rec->data, rec->data_len);
	if (!src)
		return -ENOMEM;
	e = log_add(r, f, rec->offset, src, rec->data_len);
	if (e < 0)
		return e;
	if (r->pending_writes >= BATCH_WRITES || (!r->applying && hold_full(r)))
		return drain(r);
	return 0;
}

/*
 * fallocate @rec on @fd. An allocation that fails (ENOSPC halfway) is
 * removed: the size is set back, which frees what was allocated past it
 * (what a failed call allocated inside the old size reads as zeros, as
 * before, only its space stays taken).
 */
static int falloc(int fd, const struct mfs_rec *rec)
{
	struct stat st;
	int e;

	if ((rec->mode & FALLOC_FL_PUNCH_HOLE) || fstat(fd, &st) < 0)
		return fallocate(fd, (int)rec->mode, (off_t)rec->offset, (off_t)rec->length) < 0 ?
			       -errno : 0;
	if (fallocate(fd, (int)rec->mode, (off_t)rec->offset, (off_t)rec->length) == 0)
		return 0;
	e = -errno;
	if (ftruncate(fd, st.st_size) < 0)
		log_debug_errno(-errno, "replay: removing a failed allocation: %m");
	return e;
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
		return ftruncate(f->fd, (off_t)rec->length) < 0 ? -errno : 0;
	return falloc(f->fd, rec);
}

/* Drain if the object at @dirfd/@name is a file with writes pending. */
static int order_after_writes(struct mfs_replay *r, int dirfd, const char *name)
{
	struct stat st;
	struct rfile *f;

	if (!r->queue)
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
	if (r->n_files >= r->max_files || inode_find(r, st.st_dev, st.st_ino))
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
	dev_t dev;

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
		dev = type == S_IFCHR || type == S_IFBLK ? (dev_t)rec->rdev : 0;
		return mknodat(dfd, base, type | (rec->mode & 07777), dev) < 0 ? -errno : 0;
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
		e = remove_any(dfd, base);
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
		e = remove_any(dfd, base);
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
			(void)remove_any(d2, b2);
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
		e = remove_any(d2, b2);
		if (e == 0 && renameat2(d1, b1, d2, b2, rec->flags & ~RENAME_NOREPLACE) < 0)
			e = -errno;
	}
	return e;
}

/* ================================================================ checks */

/* Why @path is refused (NULL: it is not). */
static const char *path_why(const char *path)
{
	size_t n = strlen(RESERVED_NAME);

	if (!mfs_path_is_valid(path))
		return path[0] == '/' ? "absolute" : "not a clean relative path (empty, '.', '..', "
						     "'//' or a name over 255 bytes)";
	if (strncmp(path, RESERVED_NAME, n) == 0 && (path[n] == '\0' || path[n] == '/'))
		return "the reserved name '" RESERVED_NAME "'";
	return NULL;
}

static bool nsec_ok(uint32_t ns)
{
	return ns < 1000000000u || ns == UTIME_OMIT || ns == UTIME_NOW;
}

static bool range_ok(uint64_t off, uint64_t len)
{
	return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

/*
 * The file types a MKNOD record may make: what mknod(2) makes, as the
 * primary accepted it. Device nodes are replicated (with their rdev): the
 * engine never opens anything but a regular file for writing (file_get),
 * so a device node cannot be used to write to a device.
 */
static bool mknod_type_ok(uint32_t type)
{
	return type == 0 || type == S_IFREG || type == S_IFIFO || type == S_IFSOCK ||
	       type == S_IFCHR || type == S_IFBLK;
}

static const char *mknod_why(const struct mfs_rec *rec)
{
	uint32_t type = rec->mode & S_IFMT;

	if (rec->mode & ~(S_IFMT | 07777u))
		return "mode: bits outside the file type and permissions";
	if (!mknod_type_ok(type))
		return "mode: not a file type mknod makes";
	if ((type == S_IFCHR || type == S_IFBLK) && rec->rdev != (uint64_t)(dev_t)rec->rdev)
		return "rdev: out of range";
	return NULL;
}

static const char *fallocate_why(const struct mfs_rec *rec)
{
	const uint32_t fl_ok = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;

	if (rec->mode & ~fl_ok)
		return "mode: unknown or not idempotent (collapse/insert range)";
	if (rec->length == 0 || !range_ok(rec->offset, rec->length))
		return "offset/length: out of range";
	if ((rec->mode & FALLOC_FL_PUNCH_HOLE) && !(rec->mode & FALLOC_FL_KEEP_SIZE))
		return "mode: punch-hole without keep-size";
	return NULL;
}

/* Why the fields of @rec (after the path) are refused, as "field: problem" (NULL: they are not). */
static const char *fields_why(const struct mfs_rec *rec)
{
	switch (rec->type) {
	case MFS_REC_WRITE:
		if (rec->data_len > MFS_WRITE_MAX || (!rec->data && rec->data_len))
			return "data: longer than the format allows";
		return range_ok(rec->offset, rec->data_len) ? NULL : "offset: out of range";
	case MFS_REC_TRUNCATE:
		return rec->length <= (uint64_t)INT64_MAX ? NULL : "size: out of range";
	case MFS_REC_FALLOCATE:
		return fallocate_why(rec);
	case MFS_REC_MKNOD:
		return mknod_why(rec);
	case MFS_REC_MKDIR:
		return !(rec->mode & ~(S_IFMT | 07777u)) &&
				       ((rec->mode & S_IFMT) == 0 || (rec->mode & S_IFMT) == S_IFDIR) ?
			       NULL :
			       "mode: not a directory mode";
	case MFS_REC_RENAME:
		if (path_why(rec->path2))
			return "new path: refused";
		return !(rec->flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) &&
				       rec->flags != (RENAME_NOREPLACE | RENAME_EXCHANGE) ?
			       NULL :
			       "flags: unknown or contradictory";
	case MFS_REC_LINK:
		return path_why(rec->path2) ? "new path: refused" : NULL;
	case MFS_REC_SYMLINK:
		return rec->path2[0] != '\0' && strlen(rec->path2) <= MFS_PATH_MAX ?
			       NULL :
			       "target: empty or too long";
	case MFS_REC_UTIMENS:
		return nsec_ok(rec->atime_nsec) && nsec_ok(rec->mtime_nsec) ?
			       NULL :
			       "nanoseconds: out of range";
	case MFS_REC_SETXATTR:
		if (rec->data_len > MFS_XATTR_VALUE_MAX || (!rec->data && rec->data_len))
			return "value: longer than the format allows";
		return NULL;
	default:
		return NULL; /* CHMOD: only the permission bits are applied */
	}
}

/*
 * Why @rec is refused (NULL: it is not); @ret_path2 says the reason is
 * about path2, *ret_field names the field when the reason does not ("path").
 */
static const char *check_why(const struct mfs_rec *rec, bool *ret_path2, const char **ret_field)
{
	const char *why;

	*ret_path2 = false;
	*ret_field = NULL;
	if (!rec || !mfs_rec_type_is_valid((uint32_t)rec->type) || rec->type == MFS_REC_SEG_CLOSED)
		return "type: not a record type to apply";
	if (mfs_rec_type_is_marker(rec->type))
		return NULL;
	why = path_why(rec->path);
	if (why) {
		*ret_field = "path: ";
		return why;
	}
	if ((rec->type == MFS_REC_SETXATTR || rec->type == MFS_REC_REMOVEXATTR) &&
	    (rec->path2[0] == '\0' || strlen(rec->path2) > MFS_XATTR_NAME_MAX))
		return "xattr name: empty or too long";
	why = fields_why(rec);
	*ret_path2 = why && (rec->type == MFS_REC_RENAME || rec->type == MFS_REC_LINK) &&
		     !strncmp(why, "new path", 8);
	if (*ret_path2) {
		why = path_why(rec->path2);
		*ret_field = "new path: ";
	}
	return why;
}

int mfs_replay_check(const struct mfs_rec *rec)
{
	const char *field;
	bool p2;

	return check_why(rec, &p2, &field) ? -EINVAL : 0;
}

/* "LSN 7 mknod 'dev/x'" into @buf. */
static void rec_name(const struct mfs_rec *rec, bool path2, char *buf, size_t size)
{
	snprintf(buf, size, "LSN %" PRIu64 " %s '%.200s'%s%.200s%s", rec->lsn,
		 mfs_rec_type_name(rec->type) ?: "?", rec->path, path2 ? " -> '" : "",
		 path2 ? rec->path2 : "", path2 ? "'" : "");
}

int mfs_replay_check_why(const struct mfs_rec *rec, char *buf, size_t size)
{
	char name[512];
	const char *why, *field;
	bool p2;

	why = check_why(rec, &p2, &field);
	if (!why)
		return 0;
	if (!rec) {
		snprintf(buf, size, "%s", why);
		return -EINVAL;
	}
	rec_name(rec, p2, name, sizeof(name));
	snprintf(buf, size, "%s: %s%s", name, field ?: "", why);
	return -EINVAL;
}

/* The fields of @rec besides its path, "(offset 0, length 6)", into @buf ("" if none). */
static void rec_fields(const struct mfs_rec *rec, char *buf, size_t size)
{
	switch (rec->type) {
	case MFS_REC_WRITE:
		snprintf(buf, size, " (offset %" PRIu64 ", length %" PRIu32 ")", rec->offset,
			 rec->data_len);
		break;
	case MFS_REC_TRUNCATE:
		snprintf(buf, size, " (size %" PRIu64 ")", rec->length);
		break;
	case MFS_REC_FALLOCATE:
		snprintf(buf, size, " (mode 0x%" PRIx32 ", offset %" PRIu64 ", length %" PRIu64 ")",
			 rec->mode, rec->offset, rec->length);
		break;
	case MFS_REC_MKNOD:
	case MFS_REC_MKDIR:
	case MFS_REC_CHMOD:
		snprintf(buf, size, " (mode 0%" PRIo32 ")", rec->mode);
		break;
	case MFS_REC_CHOWN:
		snprintf(buf, size, " (uid %" PRIu32 ", gid %" PRIu32 ")", rec->uid, rec->gid);
		break;
	case MFS_REC_RENAME:
	case MFS_REC_LINK:
		snprintf(buf, size, " (new path '%.200s')", rec->path2);
		break;
	case MFS_REC_SYMLINK:
		snprintf(buf, size, " (target '%.200s')", rec->path2);
		break;
	case MFS_REC_SETXATTR:
		snprintf(buf, size, " (name '%.200s', value %" PRIu32 " bytes)", rec->path2,
			 rec->data_len);
		break;
	case MFS_REC_REMOVEXATTR:
		snprintf(buf, size, " (name '%.200s')", rec->path2);
		break;
	default:
		buf[0] = '\0';
	}
}

/* ================================================================ engine */

/* Remember why applying @rec failed with @e, one line (mfs_replay_why). Returns @e. */
static int note_why(struct mfs_replay *r, const struct mfs_rec *rec, int e)
{
	char fields[300];

	if (e < 0) {
		rec_fields(rec, fields, sizeof(fields));
		snprintf(r->why, sizeof(r->why), "LSN %" PRIu64 " %s '%.200s'%s: %s", rec->lsn,
			 mfs_rec_type_name(rec->type) ?: "?", rec->path, fields, strerror(-e));
	}
	return e;
}

/* Apply a checked record. */
static int apply_rec(struct mfs_replay *r, const struct mfs_rec *rec)
{
	if (r->error)
		return r->error;
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

int mfs_replay_apply(struct mfs_replay *r, const struct mfs_rec *rec)
{
	int e = mfs_replay_check_why(rec, r->why, sizeof(r->why));

	return e < 0 ? e : note_why(r, rec, apply_rec(r, rec));
}

/* Reap fsync and write-behind completions until at most @keep are in flight. */
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
		reap_one(r, cqe);
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

static int sync_one(struct mfs_replay *r, int fd)
{
	struct io_uring_sqe *sqe;

	r->st.syncs++;
	if (r->par_fsync && (sqe = get_sqe(r))) {
		io_uring_prep_fsync(sqe, fd, 0);
		io_uring_sqe_set_data64(sqe, UD_FSYNC);
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

int mfs_replay_drain(struct mfs_replay *r)
{
	return drain(r);
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

/* Held bytes before a drain: RAM / 16, at least HOLD_MIN, at most HOLD_MAX. */
static size_t hold_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	uint64_t ram = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;

	return (size_t)MFS_MIN(MFS_MAX(ram / 16, (uint64_t)HOLD_MIN), (uint64_t)HOLD_MAX);
}

void mfs_replay_set_keys(struct mfs_replay *r, const struct mfs_keyring *keys)
{
	r->keys = keys;
}

int mfs_replay_new(int rootfd, unsigned flags, struct mfs_replay **ret)
{
	struct mfs_replay *r;
	struct statfs sfs;
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
	pthread_mutex_init(&r->pool_lock, NULL);
	r->naive = flags & MFS_REPLAY_F_NO_URING;
	r->hold_max = hold_limit();
	r->max_files = r->naive ? MAX_FILES_NAIVE : MAX_FILES;
	r->lim.alloc_pct = MFS_REPLAY_ALLOC_PCT;

	r->scratch = malloc(sizeof(*r->scratch));
	if (!r->scratch) {
		free(r);
		return -ENOMEM;
	}
	if (!r->naive) {
		e = io_uring_queue_init(QUEUE_DEPTH, &r->ring, 0);
		if (e == 0)
			r->uring = true;
		else
			log_debug_errno(e, "replay: io_uring unavailable (kernel.io_uring_disabled?), "
					"using plain syscalls: %m");
	}
	r->st.uring = r->uring;
	r->par_fsync = r->uring && fstatfs(rootfd, &sfs) == 0 && sfs.f_type != EXT4_SUPER_MAGIC;
	*ret = r;
	return 0;
}

struct mfs_replay *mfs_replay_free(struct mfs_replay *r)
{
	if (!r)
		return NULL;
	r->applying = NULL;
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
	for (unsigned i = 0; i < POOL_SLOTS; i++)
		if (r->pool[i].p)
			(void)munmap(r->pool[i].p, r->pool[i].cap);
	pthread_mutex_destroy(&r->pool_lock);
	free(r->scratch);
	free(r);
	return NULL;
}

void mfs_replay_get_stats(struct mfs_replay *r, struct mfs_replay_stats *ret)
{
	*ret = r->st;
}

int replay_rootfd(const struct mfs_replay *r)
{
	return r->rootfd;
}

struct replay_limits *replay_limits(struct mfs_replay *r)
{
	return &r->lim;
}

void mfs_replay_set_alloc_share(struct mfs_replay *r, unsigned pct)
{
	r->lim.alloc_pct = pct < 1 ? 1 : pct > 100 ? 100 : pct;
}

const char *mfs_replay_why(const struct mfs_replay *r)
{
	return r->why[0] ? r->why : NULL;
}

bool mfs_replay_error_is_local(int e)
{
	switch (-e) {
	case EIO: case ENOSPC: case EDQUOT: case ENOMEM: case EROFS: case EMFILE:
	case ENFILE: case EAGAIN: case EINTR: case EBUSY: case ETXTBSY: case ESTALE:
	case EPERM: case EACCES:
		return true;
	default:
		return false;
	}
}



/* ================================================================ segments */

static int seg_str(struct mfs_replay_seg *s, const char *str, uint32_t *ret)
{
	size_t n = strlen(str) + 1;

	if (s->n_strs + n > s->cap_strs) {
		size_t cap = MFS_MAX(s->cap_strs * 2, s->n_strs + n + 256);
		char *p = realloc(s->strs, cap);

		if (!p)
			return -ENOMEM;
		s->strs = p;
		s->cap_strs = cap;
	}
	if (s->n_strs > UINT32_MAX - n)
		return -EOVERFLOW;
	memcpy(s->strs + s->n_strs, str, n);
	*ret = (uint32_t)s->n_strs;
	s->n_strs += n;
	return 0;
}

/* Keep the decoded record @rec (data pointing into s->buf) in compact form. */
/* Copy @len bytes at *@data into memory of @s, and point *@data there. */
static int seg_keep_data(struct mfs_replay_seg *s, const void **data, size_t len)
{
	void *copy;

	if (s->n_zdata == s->cap_zdata) {
		size_t cap = s->cap_zdata ? s->cap_zdata * 2 : 64;
		void **n = realloc(s->zdata, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->zdata = n;
		s->cap_zdata = cap;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, *data, len);
	s->zdata[s->n_zdata++] = copy;
	*data = copy;
	return 0;
}

static int seg_keep(struct mfs_replay_seg *s, const struct mfs_rec *rec)
{
	const void *data = rec->data;
	struct lrec *l;
	int e;

	if (s->n_recs == s->cap_recs) {
		size_t cap = s->cap_recs ? s->cap_recs * 2 : 8;
		struct lrec *n = realloc(s->recs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->recs = n;
		s->cap_recs = cap;
	}
	if (rec->was_zstd_len) { /* expanded into the reader's buffer: keep a copy */
		e = seg_keep_data(s, &data, rec->data_len);
		if (e < 0)
			return e;
	}
	l = &s->recs[s->n_recs];
	*l = (struct lrec){ .fields = rec->fields, .data = data };
	e = seg_str(s, rec->path, &l->path);
	if (e == 0)
		e = seg_str(s, rec->path2, &l->path2);
	if (e == 0)
		s->n_recs++;
	return e;
}

static void seg_get(const struct mfs_replay_seg *s, size_t i, struct mfs_rec *rec)
{
	const struct lrec *l = &s->recs[i];

	rec->fields = l->fields;
	strcpy(rec->path, s->strs + l->path);
	strcpy(rec->path2, s->strs + l->path2);
	rec->data = l->data;
	rec->zstd_len = rec->was_zstd_len = 0; /* expanded when loaded */
}

/* Decode and check every record of s->buf once; the verdict goes to s->info. */
static int seg_scan(struct mfs_replay_seg *s, const uint8_t *expect_uuid)
{
	_cleanup_free_ struct mfs_rec *rec = malloc(sizeof(*rec));
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid, .keys = s->r->keys };
	struct mfs_segr *rd;
	int e;

	if (!rec)
		return -ENOMEM;
	e = mfs_segr_open_buf_opts(s->buf, s->len, &o, &rd);
	if (e < 0)
		return e;
	while ((e = mfs_segr_next(rd, rec)) > 0) {
		e = mfs_replay_check_why(rec, s->why, sizeof(s->why));
		if (e < 0) {
			s->refused = e;
			s->refused_lsn = rec->lsn;
			s->refused_type = rec->type;
			e = 0;
			break;
		}
		e = seg_keep(s, rec);
		if (e < 0)
			break;
	}
	s->info = *mfs_segr_info(rd);
	mfs_segr_free(rd);
	return e;
}

/*
 * A buffer of at least @size bytes, from the pool or freshly mapped and
 * populated at once: filling fresh memory page fault by page fault costs
 * more than reading the segment (measured: 3-6x in a VM).
 */
static void *buf_get(struct mfs_replay *r, size_t size, size_t *ret_cap)
{
	size_t cap = (size + BUF_ALIGN) & ~((size_t)BUF_ALIGN - 1);
	void *p = NULL;

	pthread_mutex_lock(&r->pool_lock);
	for (unsigned i = 0; i < POOL_SLOTS && !p; i++)
		if (r->pool[i].p && r->pool[i].cap >= size) {
			p = r->pool[i].p;
			*ret_cap = r->pool[i].cap;
			r->pool[i].p = NULL;
		}
	pthread_mutex_unlock(&r->pool_lock);
	if (p)
		return p;
	p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, cap, MADV_POPULATE_WRITE); /* best effort: faults later otherwise */
	*ret_cap = cap;
	return p;
}

static void buf_put_locked(struct mfs_replay *r, void *p, size_t cap)
{
	unsigned k = 0;

	for (unsigned i = 0; i < POOL_SLOTS; i++) {
		if (!r->pool[i].p) {
			r->pool[i].p = p;
			r->pool[i].cap = cap;
			return;
		}
		if (r->pool[i].cap < r->pool[k].cap)
			k = i;
	}
	if (r->pool[k].cap < cap) { /* keep the larger buffers */
		(void)munmap(r->pool[k].p, r->pool[k].cap);
		r->pool[k].p = p;
		r->pool[k].cap = cap;
		return;
	}
	(void)munmap(p, cap);
}

static void buf_put(struct mfs_replay *r, void *p, size_t cap)
{
	pthread_mutex_lock(&r->pool_lock);
	buf_put_locked(r, p, cap);
	pthread_mutex_unlock(&r->pool_lock);
}

int mfs_replay_seg_load(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
			uint64_t max_size, struct mfs_replay_seg **ret)
{
	struct mfs_replay_seg *s;
	struct mfs_bus_guard g;
	struct stat st;
	ssize_t got;
	int e;

	if (fstat(segfd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size > max_size || (uint64_t)st.st_size > SIZE_MAX / 2)
		return -EFBIG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->r = r;
	s->until_lsn = s->until_ns = UINT64_MAX;
	if (st.st_size > 0 && !(r->keys && r->keys->n)) {
		/*
		 * Not when authenticating: a mapping shows later changes to
		 * the file, and what is applied must be what was checked.
		 * No MAP_POPULATE: its page-by-page walk cost more than the
		 * validation pass's faults, which map the page cache 16 pages
		 * at a time (800 MiB of segments, 10 interleaved rounds:
		 * 0.88x the time).
		 */
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, segfd, 0);

		if (p != MAP_FAILED) {
			s->buf = p;
			s->mapped = true;
			s->len = (size_t)st.st_size;
			goto scan;
		}
	}
	s->buf = buf_get(r, (size_t)st.st_size, &s->cap);
	if (!s->buf) {
		mfs_replay_seg_free(s);
		return -ENOMEM;
	}
	got = mfs_pread_all(segfd, s->buf, (size_t)st.st_size, 0);
	if (got < 0) {
		mfs_replay_seg_free(s);
		return (int)got;
	}
	s->len = (size_t)got; /* a file that shrank meanwhile reads as torn */
scan:
	/* a mapped page that cannot be read is an I/O error, not SIGBUS (a buffer never faults) */
	mfs_bus_guard_arm(&g, s->buf, s->len);
	e = seg_scan(s, expect_uuid);
	if (mfs_bus_guard_disarm(&g) < 0)
		e = -EIO;
	if (e < 0) {
		mfs_replay_seg_free(s);
		return e;
	}
	*ret = s;
	return 0;
}

const struct mfs_seg_info *mfs_replay_seg_info(const struct mfs_replay_seg *s)
{
	return &s->info;
}

int mfs_replay_seg_refused(const struct mfs_replay_seg *s, uint64_t *ret_lsn,
			   enum mfs_rec_type *ret_type)
{
	if (!s->refused)
		return 0;
	if (ret_lsn)
		*ret_lsn = s->refused_lsn;
	if (ret_type)
		*ret_type = s->refused_type;
	return s->refused;
}

struct mfs_replay_seg *mfs_replay_seg_free(struct mfs_replay_seg *s)
{
	if (!s)
		return NULL;
	if (s->mapped)
		(void)munmap(s->buf, s->len);
	else if (s->buf)
		buf_put(s->r, s->buf, s->cap);
	free(s->recs);
	free(s->strs);
	for (size_t i = 0; i < s->n_zdata; i++)
		free(s->zdata[i]);
	free(s->zdata);
	free(s);
	return NULL;
}

void mfs_replay_seg_limit(struct mfs_replay_seg *s, uint64_t until_lsn, uint64_t until_ns)
{
	s->until_lsn = until_lsn;
	s->until_ns = until_ns;
	s->pf_done = false;
}

/* The index of the first record after @i of @s with the same path, or n_recs. */
static size_t next_same_path(const struct mfs_replay_seg *s, size_t i)
{
	const char *p = s->strs + s->recs[i].path;
	size_t k;

	for (k = i + 1; k < s->n_recs; k++)
		if (!mfs_rec_type_is_marker(s->recs[k].type) && !strcmp(s->strs + s->recs[k].path, p))
			break;
	return k;
}

bool lrec_is_compensated(const struct mfs_replay_seg *s, size_t i)
{
	const struct lrec *l = &s->recs[i], *n;
	size_t k = next_same_path(s, i);

	if (k == s->n_recs)
		return false;
	n = &s->recs[k];
	switch (l->type) {
	case MFS_REC_WRITE:
	case MFS_REC_TRUNCATE:
	case MFS_REC_FALLOCATE:
		if (n->type == MFS_REC_WRITE && (k = next_same_path(s, k)) < s->n_recs)
			n = &s->recs[k];
		return n->type == MFS_REC_TRUNCATE;
	case MFS_REC_SETXATTR:
		return (n->type == MFS_REC_SETXATTR || n->type == MFS_REC_REMOVEXATTR) &&
		       !strcmp(s->strs + l->path2, s->strs + n->path2);
	default:
		return false;
	}
}

/*
 * Whether record @i of @s, failing with @e while applied, is the primary's
 * own failure: EFBIG of a write, truncate or fallocate, ENOSPC or E2BIG of
 * a setxattr (the attributes already there leave less room), compensated
 * (see replay_preflight.c; for sizes this is the fallback where the file
 * size limit could not be probed).
 */
static bool compensated(const struct mfs_replay_seg *s, size_t i, int e)
{
	const struct lrec *l = &s->recs[i];

	if (l->type == MFS_REC_SETXATTR)
		return (e == -ENOSPC || e == -E2BIG) && lrec_is_compensated(s, i);
	return e == -EFBIG && l->type != MFS_REC_WRITE && lrec_is_compensated(s, i);
}

int mfs_replay_seg_apply(struct mfs_replay *r, struct mfs_replay_seg *s, uint64_t after_lsn,
			 int (*cb)(const struct mfs_rec *rec, void *arg), void *arg)
{
	int e = 0;

	r->why[0] = '\0';
	if (!s->pf_done && (e = mfs_replay_seg_preflight(r, s, after_lsn)) < 0) {
		snprintf(r->why, sizeof(r->why), "%s", s->why);
		mfs_replay_seg_free(s);
		return e;
	}
	s->next = r->held;
	r->held = s;
	r->held_bytes += seg_cost(s);
	r->n_held++;
	r->applying = s;
	r->ref = true;
	for (size_t i = 0; i < s->n_recs && e == 0; i++) {
		const struct lrec *l = &s->recs[i];

		if (l->lsn <= after_lsn)
			continue;
		if (l->lsn > s->until_lsn || l->time_ns > s->until_ns)
			break;
		seg_get(s, i, r->scratch);
		if (l->skip) {
			r->st.skipped++;
			log_debug("replay: LSN %" PRIu64 " %s '%s': the primary's failure, "
				  "compensated by a later record", l->lsn, mfs_rec_type_name(l->type),
				  r->scratch->path);
		} else {
			e = apply_rec(r, r->scratch);
			if (compensated(s, i, e)) {
				r->st.skipped++;
				e = 0;
			}
			note_why(r, r->scratch, e);
		}
		if (e == 0 && cb)
			e = cb(r->scratch, arg);
	}
	r->ref = false;
	r->applying = NULL;
	if (e == 0 && hold_full(r))
		e = drain(r);
	return e;
}

/* Counts the records applied for mfs_replay_segment(). */
static int seg_last_cb(const struct mfs_rec *rec, void *arg)
{
	*(uint64_t *)arg = rec->lsn;
	return 0;
}

int mfs_replay_segment(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
		       uint64_t after_lsn, bool strict, uint64_t *ret_last)
{
	struct mfs_replay_seg *s;
	uint64_t last = after_lsn;
	int e;

	int refused;

	e = mfs_replay_seg_load(r, segfd, expect_uuid, UINT64_MAX, &s);
	if (e < 0)
		return e;
	refused = s->refused;
	if ((refused && strict) || (strict && s->info.verdict != MFS_SEG_OK) ||
	    (s->info.verdict != MFS_SEG_OK && s->info.verdict != MFS_SEG_TORN) ||
	    !s->info.header_valid) {
		mfs_replay_seg_free(s);
		return refused ? refused : -EBADMSG;
	}
	if (!refused && (e = mfs_replay_seg_preflight(r, s, after_lsn)) < 0) {
		snprintf(r->why, sizeof(r->why), "%s", s->why);
		mfs_replay_seg_free(s);
		return e;
	}
	e = mfs_replay_seg_apply(r, s, after_lsn, seg_last_cb, &last); /* @s is the engine's now */
	if (e < 0)
		return e;
	if (refused) /* not strict: the records before the refused one are applied */
		return refused;
	*ret_last = last;
	return 0;
}
