/* SPDX-License-Identifier: MIT */
/*
 * lock.c - flush-and-lock: the ctl commands "lock [TIMEOUT_MS]" and
 * "unlock" (mirrorfs/ctl.h).
 *
 * fs_lock_wrap_ops() wraps the mutating entries of the ops table. Each
 * wrapper passes a gate. While the gate is closed (the fs is locked, or
 * parked requests are still being resumed) the wrapper copies the request
 * and its arguments (names, write data) into a heap "parked op", appends it
 * to a FIFO and returns without replying: a parked request never holds a
 * FUSE worker thread, so reads, lookups, the ctl file and the unlock itself
 * always find one. One resumer thread (not a FUSE worker) runs the parked
 * ops in arrival order after unlock, by calling the original handlers with
 * the saved arguments (the low-level API lets any thread reply); it also
 * releases a lock at its timeout.
 *
 * Locking first flushes with writers still running (so that the flush
 * under the lock is short), then closes the gate, waits until no mutation
 * is in flight (every wrapper that got through has returned, so it has
 * replied and its change is applied and journaled), then checkpoints:
 * ns_lock barrier, journal sync, fsync of what changed. The lock belongs to the
 * ctl handle that took it: "unlock" on any ctl handle, the release of that
 * handle (its holder exited or died) or the timeout releases it.
 *
 * What the kernel still serialises: a parked request keeps the VFS locks
 * its syscall took, so a parked create/mkdir/unlink/rename blocks other
 * lookups and listings of that directory, and a parked write keeps a page
 * it fills partially (and that is not cached) locked, so a read of that
 * very page waits. Those callers wait in the kernel, not in a FUSE worker:
 * everything else, the ctl file and the unlock go on.
 *
 * Invariants: the gate is closed whenever the fs is locked or the FIFO is
 * not empty, so a new mutation never overtakes a parked one. The fast path
 * reads "closed" and "inflight" without lk->mu: a wrapper increments
 * inflight before it reads closed, a locker sets closed before it reads
 * inflight (seq_cst atomics), so one of them always sees the other.
 *
 * Not parked: fsync/fsyncdir/flush (nothing changes while locked, and
 * everything is durable already), opens without O_TRUNC, anything on the
 * virtual .mirrorfs/ tree (the ctl file, segment trims).
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

#define LOCK_TIMEOUT_DEFAULT_MS UINT64_C(60000)
#define LOCK_TIMEOUT_MAX_MS UINT64_C(604800000) /* a week */
#define NS_PER_MS UINT64_C(1000000)

enum park_kind {
	PK_SETATTR,
	PK_MKNOD,
	PK_MKDIR,
	PK_SYMLINK,
	PK_UNLINK,
	PK_RMDIR,
	PK_RENAME,
	PK_LINK,
	PK_OPEN,
	PK_CREATE,
	PK_WRITE,
	PK_FALLOCATE,
	PK_COPY,
	PK_SETXATTR,
	PK_REMOVEXATTR,
};

/* A request waiting for the unlock, with copies of all its arguments. */
struct fs_parked {
	struct fs_parked *next;
	enum park_kind kind;
	fuse_req_t req;
	fuse_ino_t ino, ino2;
	struct fuse_file_info fi, fi2;
	bool has_fi;
	struct stat attr;
	int valid, flags, mode;
	mode_t fmode;
	dev_t rdev;
	off_t off, off2, len;
	size_t size;
	char *name, *name2; /* names, link target, xattr name */
	char *data; /* write data, xattr value */
};

struct fs_lock {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* resumer: state changed (CLOCK_MONOTONIC) */
	pthread_cond_t idle; /* locker: inflight dropped to 0 */
	atomic_bool closed; /* written under mu */
	atomic_uint inflight;
	bool locked; /* mu */
	bool internal; /* mu; held by fs_lock_quiesce(): no unlock, no timeout */
	bool stop; /* mu */
	const void *owner; /* mu; the owning ctl handle, compared only */
	uint64_t since_ns; /* mu; CLOCK_REALTIME */
	uint64_t timeout_ms; /* mu */
	uint64_t deadline_ns; /* mu; CLOCK_MONOTONIC */
	struct fs_parked *head; /* mu */
	struct fs_parked **tail; /* mu */
	size_t n_parked; /* mu */
	pthread_t resumer;
	bool resumer_started;
};

static struct fuse_lowlevel_ops orig; /* the wrapped table */

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct fs_lock *lock_of(fuse_req_t req)
{
	struct fs *fs = fuse_req_userdata(req);

	return fs->lock;
}

/* ================================================================ gate */

/* One mutation less in flight; wakes a locker waiting for none. */
static void gate_leave(struct fs_lock *lk)
{
	if (lk && atomic_fetch_sub(&lk->inflight, 1) == 1 && atomic_load(&lk->closed)) {
		pthread_mutex_lock(&lk->mu);
		pthread_cond_broadcast(&lk->idle);
		pthread_mutex_unlock(&lk->mu);
	}
}

/* Whether a mutation may run now; if so, call gate_leave() once it replied. */
static bool gate_enter(struct fs_lock *lk)
{
	if (!lk)
		return true;
	atomic_fetch_add(&lk->inflight, 1);
	if (!atomic_load(&lk->closed))
		return true;
	gate_leave(lk);
	return false;
}

static struct fs_parked *parked_free(struct fs_parked *p)
{
	if (p) {
		free(p->name);
		free(p->name2);
		free(p->data);
		free(p);
	}
	return NULL;
}

/* A new parked op for @req with copies of @name and @name2 (may be NULL). */
static struct fs_parked *parked_new(fuse_req_t req, enum park_kind kind, const char *name,
				    const char *name2)
{
	struct fs_parked *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->req = req;
	p->kind = kind;
	if ((name && !(p->name = strdup(name))) || (name2 && !(p->name2 = strdup(name2))))
		return parked_free(p);
	return p;
}

/*
 * Queue @p (NULL: out of memory, reply ENOMEM). If the gate opened since
 * gate_enter() failed, it is queued all the same and the resumer runs it:
 * that keeps every later mutation behind it.
 */
static void park(struct fs_lock *lk, fuse_req_t req, struct fs_parked *p)
{
	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&lk->mu);
	p->next = NULL;
	*lk->tail = p;
	lk->tail = &p->next;
	lk->n_parked++;
	atomic_store(&lk->closed, true);
	if (!lk->locked)
		pthread_cond_signal(&lk->wake);
	pthread_mutex_unlock(&lk->mu);
}

/* ================================================================ resuming */

static void resume_ns(struct fs_parked *p)
{
	switch (p->kind) {
	case PK_MKNOD:
		orig.mknod(p->req, p->ino, p->name, p->fmode, p->rdev);
		break;
	case PK_MKDIR:
		orig.mkdir(p->req, p->ino, p->name, p->fmode);
		break;
	case PK_SYMLINK:
		orig.symlink(p->req, p->name2, p->ino, p->name);
		break;
	case PK_UNLINK:
		orig.unlink(p->req, p->ino, p->name);
		break;
	case PK_RMDIR:
		orig.rmdir(p->req, p->ino, p->name);
		break;
	case PK_RENAME:
		orig.rename(p->req, p->ino, p->name, p->ino2, p->name2, (unsigned)p->flags);
		break;
	case PK_LINK:
		orig.link(p->req, p->ino, p->ino2, p->name);
		break;
	default:
		fuse_reply_err(p->req, EIO);
		break;
	}
}

/* Run parked op @p through the original handler; it replies. */
static void resume(struct fs_parked *p)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(p->size);

	switch (p->kind) {
	case PK_SETATTR:
		orig.setattr(p->req, p->ino, &p->attr, p->valid, p->has_fi ? &p->fi : NULL);
		break;
	case PK_OPEN:
		orig.open(p->req, p->ino, &p->fi);
		break;
	case PK_CREATE:
		orig.create(p->req, p->ino, p->name, p->fmode, &p->fi);
		break;
	case PK_WRITE:
		bv.buf[0].mem = p->data;
		orig.write_buf(p->req, p->ino, &bv, p->off, &p->fi);
		break;
	case PK_FALLOCATE:
		orig.fallocate(p->req, p->ino, p->mode, p->off, p->len, &p->fi);
		break;
	case PK_COPY:
		orig.copy_file_range(p->req, p->ino, p->off, &p->fi, p->ino2, p->off2, &p->fi2,
				     p->size, p->flags);
		break;
	case PK_SETXATTR:
		orig.setxattr(p->req, p->ino, p->name, p->data, p->size, p->flags);
		break;
	case PK_REMOVEXATTR:
		orig.removexattr(p->req, p->ino, p->name);
		break;
	default:
		resume_ns(p);
		break;
	}
}

static void release_locked(struct fs_lock *lk, const char *why)
{
	log_info("lock released (%s) after %" PRIu64 " ms, %zu parked requests resume", why,
		 (realtime_ns() - lk->since_ns) / NS_PER_MS, lk->n_parked);
	lk->locked = false;
	lk->owner = NULL;
	if (!lk->head)
		atomic_store(&lk->closed, false);
	pthread_cond_signal(&lk->wake);
}

/* Sleep until something changes, or until the lock's deadline. */
static void resumer_wait(struct fs_lock *lk)
{
	struct timespec ts;

	if (!lk->locked) {
		pthread_cond_wait(&lk->wake, &lk->mu);
		return;
	}
	ts.tv_sec = (time_t)(lk->deadline_ns / 1000000000ull);
	ts.tv_nsec = (long)(lk->deadline_ns % 1000000000ull);
	pthread_cond_timedwait(&lk->wake, &lk->mu, &ts);
}

static void *resumer_main(void *arg)
{
	struct fs_lock *lk = arg;

	pthread_mutex_lock(&lk->mu);
	while (!lk->stop) {
		struct fs_parked *p = lk->head;

		if (lk->locked && !lk->internal && mfs_mono_ns() >= lk->deadline_ns) {
			release_locked(lk, "timeout");
			continue;
		}
		if (lk->locked || !p) {
			resumer_wait(lk);
			continue;
		}
		lk->head = p->next;
		if (!lk->head)
			lk->tail = &lk->head;
		lk->n_parked--;
		atomic_fetch_add(&lk->inflight, 1);
		pthread_mutex_unlock(&lk->mu);
		resume(p);
		parked_free(p);
		gate_leave(lk);
		pthread_mutex_lock(&lk->mu);
		if (!lk->head && !lk->locked)
			atomic_store(&lk->closed, false);
	}
	pthread_mutex_unlock(&lk->mu);
	return NULL;
}

/* ================================================================ lifetime */

static int lock_new(struct fs_lock **ret)
{
	struct fs_lock *lk = calloc(1, sizeof(*lk));
	pthread_condattr_t ca;
	int r;

	if (!lk)
		return -ENOMEM;
	pthread_mutex_init(&lk->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&lk->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&lk->idle, NULL);
	lk->tail = &lk->head;
	r = pthread_create(&lk->resumer, NULL, resumer_main, lk);
	if (r) {
		free(lk);
		return -r;
	}
	lk->resumer_started = true;
	*ret = lk;
	return 0;
}

/*
 * Stop the resumer and free requests still parked, unapplied: destroy runs
 * after fuse_session_unmount() closed the device, which aborted them (their
 * callers got ECONNABORTED), so there is nobody to reply to.
 */
static void lock_free(struct fs_lock *lk)
{
	if (!lk)
		return;
	pthread_mutex_lock(&lk->mu);
	lk->stop = true;
	pthread_cond_signal(&lk->wake);
	pthread_mutex_unlock(&lk->mu);
	if (lk->resumer_started)
		pthread_join(lk->resumer, NULL);
	if (lk->n_parked)
		log_warning("unmounted while locked: %zu parked requests dropped", lk->n_parked);
	while (lk->head) {
		struct fs_parked *p = lk->head;
		lk->head = p->next;
		fuse_reply_none(p->req); /* frees it, sends nothing */
		parked_free(p);
	}
	pthread_cond_destroy(&lk->wake);
	pthread_cond_destroy(&lk->idle);
	pthread_mutex_destroy(&lk->mu);
	free(lk);
}

static void lk_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	int r = lock_new(&fs->lock);

	if (r < 0)
		log_error_errno(r, "cannot start the lock resumer, lock is unavailable: %m");
	if (orig.init)
		orig.init(userdata, conn);
}

static void lk_destroy(void *userdata)
{
	struct fs *fs = userdata;

	lock_free(fs->lock);
	fs->lock = NULL;
	if (orig.destroy)
		orig.destroy(userdata);
}

/* ================================================================ ctl */

static bool is_locked(struct fs_lock *lk)
{
	bool locked;

	pthread_mutex_lock(&lk->mu);
	locked = lk->locked;
	pthread_mutex_unlock(&lk->mu);
	return locked;
}

/*
 * Flush while writers still run (errors are caught by the checkpoint under
 * the lock): the flush inside the lock window then only has what was
 * written meanwhile, which keeps that window short.
 */
static void preflush(struct fs *fs)
{
	(void)fs_journal_checkpoint(fs, NULL); /* what mirrorfs changed, not syncfs */
}

/* Returns 0 once locked and flushed, -EBUSY if already locked, -errno. */
static int lock_take(struct fs *fs, const void *owner, uint64_t timeout_ms)
{
	struct fs_lock *lk = fs->lock;
	int r;

	if (is_locked(lk))
		return -EBUSY;
	preflush(fs);
	pthread_mutex_lock(&lk->mu);
	if (lk->locked) {
		pthread_mutex_unlock(&lk->mu);
		return -EBUSY;
	}
	lk->locked = true;
	lk->owner = owner;
	lk->timeout_ms = timeout_ms;
	lk->since_ns = realtime_ns();
	lk->deadline_ns = mfs_mono_ns() + timeout_ms * NS_PER_MS;
	atomic_store(&lk->closed, true);
	while (atomic_load(&lk->inflight) > 0)
		pthread_cond_wait(&lk->idle, &lk->mu);
	pthread_cond_signal(&lk->wake); /* new deadline */
	pthread_mutex_unlock(&lk->mu);

	r = fs_journal_checkpoint(fs, NULL); /* barrier, journal sync, fsync of what changed */
	if (r == 0)
		r = fs_journal_sync(fs, 0);
	if (r < 0) {
		pthread_mutex_lock(&lk->mu);
		if (lk->locked && lk->owner == owner)
			release_locked(lk, "flush failed");
		pthread_mutex_unlock(&lk->mu);
		return r;
	}
	log_info("locked for at most %" PRIu64 " ms", timeout_ms);
	return 0;
}

int fs_lock_quiesce(struct fs *fs, int (*fn)(struct fs *fs, void *arg), void *arg,
		    uint64_t *ret_ns)
{
	struct fs_lock *lk = fs->lock;
	uint64_t t0;
	int r;

	*ret_ns = 0;
	if (!lk)
		return -ENOTSUP;
	/* No flush first: @fn does not sync (see snap.c, create_durable()), and every disk
	 * cache flush stalls the writers on a busy disk, also outside the
	 * window. */
	pthread_mutex_lock(&lk->mu);
	if (lk->locked) {
		/* an operator's lock: nothing runs, and unlock waits for lk->mu */
		r = lk->internal ? -EBUSY : fn(fs, arg);
		pthread_mutex_unlock(&lk->mu);
		return r;
	}
	t0 = mfs_mono_ns();
	lk->locked = true;
	lk->internal = true;
	lk->owner = NULL;
	lk->since_ns = realtime_ns();
	lk->timeout_ms = 0;
	atomic_store(&lk->closed, true);
	while (atomic_load(&lk->inflight) > 0)
		pthread_cond_wait(&lk->idle, &lk->mu);
	pthread_mutex_unlock(&lk->mu);

	r = fn(fs, arg);

	pthread_mutex_lock(&lk->mu);
	lk->internal = false;
	lk->locked = false;
	if (!lk->head)
		atomic_store(&lk->closed, false);
	pthread_cond_signal(&lk->wake);
	*ret_ns = mfs_mono_ns() - t0;
	pthread_mutex_unlock(&lk->mu);
	return r;
}

/* Release the lock if @owner (NULL: anyone) holds it. Returns 0 or -EINVAL. */
static int lock_drop(struct fs *fs, const void *owner, const char *why)
{
	struct fs_lock *lk = fs->lock;
	int r = -EINVAL;

	pthread_mutex_lock(&lk->mu);
	if (lk->locked && !lk->internal && (!owner || lk->owner == owner)) {
		release_locked(lk, why);
		r = 0;
	}
	pthread_mutex_unlock(&lk->mu);
	return r;
}

static int parse_timeout(const char *arg, uint64_t *ret_ms)
{
	char *end;
	unsigned long long v;

	while (*arg == ' ')
		arg++;
	if (!*arg) {
		*ret_ms = LOCK_TIMEOUT_DEFAULT_MS;
		return 0;
	}
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno || *end || arg[0] == '-' || v > LOCK_TIMEOUT_MAX_MS)
		return -EINVAL;
	*ret_ms = v ? v : LOCK_TIMEOUT_DEFAULT_MS;
	return 0;
}

int fs_lock_ctl(struct fs *fs, struct fs_file *f, const char *cmd, char **ret)
{
	uint64_t timeout_ms;
	int r;

	if (!fs->lock)
		return mfs_ctl_err(ret, ENOMEM, "lock is unavailable");
	if (!strcmp(cmd, "unlock")) {
		r = lock_drop(fs, NULL, "unlock");
		if (r < 0)
			return mfs_ctl_err(ret, -r, "not locked");
		return mfs_ctl_ok(ret, NULL);
	}
	if (strncmp(cmd, "lock", 4) || (cmd[4] && cmd[4] != ' '))
		return mfs_ctl_err(ret, EINVAL, "unknown command '%s'", cmd);
	if (parse_timeout(cmd + 4, &timeout_ms) < 0)
		return mfs_ctl_err(ret, EINVAL, "bad timeout '%s'", cmd + 4);
	r = lock_take(fs, f, timeout_ms);
	if (r == -EBUSY)
		return mfs_ctl_err(ret, EBUSY, "already locked");
	if (r < 0)
		return mfs_ctl_errno(ret, -r, NULL);
	return mfs_ctl_ok(ret, NULL);
}

int fs_lock_status(struct fs *fs, char *buf, size_t cap)
{
	struct fs_lock *lk = fs->lock;
	bool locked = false;
	uint64_t since = 0, timeout = 0;
	size_t parked = 0;

	if (lk) {
		pthread_mutex_lock(&lk->mu);
		locked = lk->locked;
		since = locked ? lk->since_ns : 0;
		timeout = locked ? lk->timeout_ms : 0;
		parked = lk->n_parked;
		pthread_mutex_unlock(&lk->mu);
	}
	return snprintf(buf, cap,
			"\"locked\":%s,\"lock_since_ns\":%" PRIu64 ",\"lock_timeout_ms\":%" PRIu64
			",\"parked\":%zu",
			locked ? "true" : "false", since, timeout, parked);
}

/* ================================================================ wrappers */

static bool is_virtual(fuse_req_t req, fuse_ino_t ino)
{
	return fs_inode(req, ino)->vkind != FS_VK_NONE;
}

static bool file_is_virtual(struct fuse_file_info *fi)
{
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;

	return f->inode->vkind != FS_VK_NONE;
}

static void lk_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p;

	if (is_virtual(req, ino)) {
		orig.setattr(req, ino, attr, valid, fi); /* `echo cmd > ctl` truncates */
		return;
	}
	if (gate_enter(lk)) {
		orig.setattr(req, ino, attr, valid, fi);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, PK_SETATTR, NULL, NULL);
	if (p) {
		p->ino = ino;
		p->attr = *attr;
		p->valid = valid;
		p->has_fi = fi != NULL;
		if (fi)
			p->fi = *fi;
	}
	park(lk, req, p);
}

/* The namespace ops: mknod, mkdir, symlink, unlink, rmdir, rename, link. */
static void ns_op(fuse_req_t req, enum park_kind kind, fuse_ino_t ino, const char *name,
		  fuse_ino_t ino2, const char *name2, mode_t mode, dev_t rdev, int flags)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p = NULL;

	if (kind == PK_UNLINK && is_virtual(req, ino)) {
		orig.unlink(req, ino, name); /* trims a segment */
		return;
	}
	if (gate_enter(lk)) {
		struct fs_parked now = {.kind = kind,
					.req = req,
					.ino = ino,
					.ino2 = ino2,
					.name = (char *)name,
					.name2 = (char *)name2,
					.fmode = mode,
					.rdev = rdev,
					.flags = flags};
		resume_ns(&now);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, kind, name, name2);
	if (p) {
		p->ino = ino;
		p->ino2 = ino2;
		p->fmode = mode;
		p->rdev = rdev;
		p->flags = flags;
	}
	park(lk, req, p);
}

static void lk_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	ns_op(req, PK_MKNOD, parent, name, 0, NULL, mode, rdev, 0);
}

static void lk_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	ns_op(req, PK_MKDIR, parent, name, 0, NULL, mode, 0, 0);
}

static void lk_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	ns_op(req, PK_SYMLINK, parent, name, 0, link, 0, 0, 0);
}

static void lk_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ns_op(req, PK_UNLINK, parent, name, 0, NULL, 0, 0, 0);
}

static void lk_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ns_op(req, PK_RMDIR, parent, name, 0, NULL, 0, 0, 0);
}

static void lk_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	ns_op(req, PK_RENAME, parent, name, newparent, newname, 0, 0, (int)flags);
}

static void lk_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	ns_op(req, PK_LINK, ino, newname, newparent, NULL, 0, 0, 0);
}

static bool open_truncates(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	return (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY &&
	       !is_virtual(req, ino);
}

static void lk_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p;

	if (!open_truncates(req, ino, fi)) {
		orig.open(req, ino, fi);
		return;
	}
	if (gate_enter(lk)) {
		orig.open(req, ino, fi);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, PK_OPEN, NULL, NULL);
	if (p) {
		p->ino = ino;
		p->fi = *fi;
	}
	park(lk, req, p);
}

static void lk_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p;

	if (gate_enter(lk)) {
		orig.create(req, parent, name, mode, fi);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, PK_CREATE, name, NULL);
	if (p) {
		p->ino = parent;
		p->fmode = mode;
		p->fi = *fi;
	}
	park(lk, req, p);
}

/* Copy the data out of @bufv (it lives in the worker's buffer). */
static struct fs_parked *park_write(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv,
				    off_t off, struct fuse_file_info *fi)
{
	struct fs_parked *p = parked_new(req, PK_WRITE, NULL, NULL);
	size_t size = fuse_buf_size(bufv);
	struct fuse_bufvec mem = FUSE_BUFVEC_INIT(size);
	ssize_t n;

	if (!p || !(p->data = malloc(size ? size : 1)))
		return parked_free(p);
	mem.buf[0].mem = p->data;
	n = fuse_buf_copy(&mem, bufv, 0);
	if (n < 0)
		return parked_free(p);
	p->size = (size_t)n;
	p->ino = ino;
	p->off = off;
	p->fi = *fi;
	return p;
}

static void lk_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
			 struct fuse_file_info *fi)
{
	struct fs_lock *lk = lock_of(req);

	if (file_is_virtual(fi)) {
		orig.write_buf(req, ino, bufv, off, fi); /* ctl: never parked */
		return;
	}
	if (gate_enter(lk)) {
		orig.write_buf(req, ino, bufv, off, fi);
		gate_leave(lk);
		return;
	}
	park(lk, req, park_write(req, ino, bufv, off, fi));
}

static void lk_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p;

	if (gate_enter(lk)) {
		orig.fallocate(req, ino, mode, off, len, fi);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, PK_FALLOCATE, NULL, NULL);
	if (p) {
		p->ino = ino;
		p->mode = mode;
		p->off = off;
		p->len = len;
		p->fi = *fi;
	}
	park(lk, req, p);
}

static void lk_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p;

	if (gate_enter(lk)) {
		orig.copy_file_range(req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, len,
				     flags);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, PK_COPY, NULL, NULL);
	if (p) {
		p->ino = ino_in;
		p->off = off_in;
		p->fi = *fi_in;
		p->ino2 = ino_out;
		p->off2 = off_out;
		p->fi2 = *fi_out;
		p->size = len;
		p->flags = flags;
	}
	park(lk, req, p);
}

static void lk_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p;

	if (gate_enter(lk)) {
		orig.setxattr(req, ino, name, value, size, flags);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, PK_SETXATTR, name, NULL);
	if (p && !(p->data = malloc(size ? size : 1)))
		p = parked_free(p);
	if (p) {
		if (size)
			memcpy(p->data, value, size);
		p->ino = ino;
		p->size = size;
		p->flags = flags;
	}
	park(lk, req, p);
}

static void lk_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs_lock *lk = lock_of(req);
	struct fs_parked *p;

	if (gate_enter(lk)) {
		orig.removexattr(req, ino, name);
		gate_leave(lk);
		return;
	}
	p = parked_new(req, PK_REMOVEXATTR, name, NULL);
	if (p)
		p->ino = ino;
	park(lk, req, p);
}

/* The owning ctl handle goes away (closed, or its holder died): unlock. */
static void lk_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	const void *f = (const void *)(uintptr_t)fi->fh;

	if (fs->lock && fs_inode(req, ino)->vkind == FS_VK_CTL)
		(void)lock_drop(fs, f, "holder closed the control file");
	orig.release(req, ino, fi);
}

const struct fuse_lowlevel_ops *fs_lock_wrap_ops(const struct fuse_lowlevel_ops *ops)
{
	static struct fuse_lowlevel_ops wrapped;

	orig = *ops;
	wrapped = *ops;
	wrapped.init = lk_init;
	wrapped.destroy = lk_destroy;
	wrapped.setattr = lk_setattr;
	wrapped.mknod = lk_mknod;
	wrapped.mkdir = lk_mkdir;
	wrapped.symlink = lk_symlink;
	wrapped.unlink = lk_unlink;
	wrapped.rmdir = lk_rmdir;
	wrapped.rename = lk_rename;
	wrapped.link = lk_link;
	wrapped.open = lk_open;
	wrapped.create = lk_create;
	wrapped.write_buf = lk_write_buf;
	wrapped.fallocate = lk_fallocate;
	wrapped.copy_file_range = lk_copy_file_range;
	wrapped.setxattr = lk_setxattr;
	wrapped.removexattr = lk_removexattr;
	wrapped.release = lk_release;
	return &wrapped;
}
