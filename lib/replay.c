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

/* ================================================================ engine */

/* Remember why applying @rec failed with @e, one line (mfs_replay_why). Returns @e. */
int replay_note_why(struct mfs_replay *r, const struct mfs_rec *rec, int e)
{
	char fields[300];

	if (e < 0) {
		replay_rec_fields(rec, fields, sizeof(fields));
		snprintf(r->why, sizeof(r->why), "LSN %" PRIu64 " %s '%.200s'%s: %s", rec->lsn,
			 mfs_rec_type_name(rec->type) ?: "?", rec->path, fields, strerror(-e));
	}
	return e;
}

int mfs_replay_apply(struct mfs_replay *r, const struct mfs_rec *rec)
{
	int e = mfs_replay_check_why(rec, r->why, sizeof(r->why));

	return e < 0 ? e : replay_note_why(r, rec, replay_apply_rec(r, rec));
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
		replay_reap_one(r, cqe);
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
		} else if (!replay_is_gone(fd) && e == 0) {
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
	return replay_drain(r);
}

int mfs_replay_finish(struct mfs_replay *r)
{
	int e = replay_drain(r);

	if (e == 0 && !(r->flags & MFS_REPLAY_F_NO_SYNC))
		e = flush_all(r);
	for (unsigned i = 0; i < ITAB_SIZE; i++)
		for (struct rfile *f = r->itab[i]; f; f = f->inext)
			f->touched = false;
	for (unsigned i = 0; i < r->n_dirs; i++)
		free(r->dirs[i]);
	r->n_dirs = 0;
	r->need_syncfs = false;
	replay_files_gc(r, false); /* files no path names any more */
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
	(void)replay_drain(r);
	replay_path_clear(r);
	r->need_syncfs = false;
	for (unsigned i = 0; i < ITAB_SIZE; i++)
		while (r->itab[i]) {
			r->itab[i]->touched = false;
			replay_rfile_free(r, r->itab[i]);
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
