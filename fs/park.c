/* SPDX-License-Identifier: MIT */
/*
 * park.c - parking mutations while the file system is locked (lock.c).
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
#include "lock_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"

static struct fuse_lowlevel_ops orig; /* the wrapped table */

static struct fs_lock *lock_of(fuse_req_t req)
{
	struct fs *fs = fuse_req_userdata(req);

	return fs->lock;
}

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
			fs_lock_release_locked(lk, "timeout");
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
static void lock_free(struct fs_lock *lk, const char *mnt)
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
		log_warning("%s unmounted while locked: %zu parked requests dropped", mnt,
			    lk->n_parked);
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
		log_error_errno(r, "%s: cannot start the lock resumer, lock is unavailable: %m",
				fs->mountpoint);
	if (orig.init)
		orig.init(userdata, conn);
}

static void lk_destroy(void *userdata)
{
	struct fs *fs = userdata;

	lock_free(fs->lock, fs->mountpoint);
	fs->lock = NULL;
	if (orig.destroy)
		orig.destroy(userdata);
}

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
		(void)fs_lock_drop(fs, f, "holder closed the control file");
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
