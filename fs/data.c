/* SPDX-License-Identifier: MIT */
/*
 * data.c - open files: open/create, read, write, truncate, fsync,
 * fallocate, copy_file_range, lseek.
 *
 * Write-ahead (see pending.c): a write is appended to the journal and kept
 * in memory until the group commit that makes its record durable applies
 * it to the backing file; reads and sizes see it meanwhile. Truncate and
 * O_TRUNC wait for their own record to be durable (which applies every
 * pending write first), then apply. Both run under fs->ns_lock shared and
 * the inode's lock, so records of one file are in the journal in the
 * order their changes reach the backing file. A truncate that fails after
 * its record was made durable is compensated: the range is journaled again
 * with what the backing file really holds, and the size set back. fsync
 * makes the file's records durable (group commit) and applies them;
 * backing files are synced at checkpoints. Backing fds are opened without
 * O_APPEND (the kernel gives the offset) and without O_DIRECT (buffers are
 * unaligned). Opens keep the kernel's page cache (keep_cache): every change
 * comes through here, and an O_DIRECT write drops the pages of its range
 * (inval_direct) so that buffered readers never keep stale ones; a new
 * mtime does not drop them either (no FUSE_CAP_AUTO_INVAL_DATA, ops.c).
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

#define COPY_CHUNK (1u << 20)

static struct fs_file *file_of(struct fuse_file_info *fi)
{
	return (struct fs_file *)(uintptr_t)fi->fh;
}

/*
 * A journaled write at [off, off+len) failed (maybe halfway): journal what
 * the backing file really holds there and its real size, so that replay
 * ends where the backing file is.
 */
static void compensate_write(struct fs *fs, struct fs_inode *i, struct mfs_rec *rec,
			     uint64_t off, size_t len)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *buf = NULL;
	char proc[64];
	struct stat st;
	uint64_t lsn, end;
	ssize_t n = 0;

	fs_proc_path(i->fd, proc);
	fd = open(proc, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		goto fail;
	end = MFS_MIN(off + len, (uint64_t)st.st_size);
	if (end > off) {
		buf = malloc(end - off);
		if (!buf)
			goto fail;
		n = fs_pending_read(i, fd, buf, end - off, off);
		if (n != (ssize_t)(end - off))
			goto fail;
		rec->type = MFS_REC_WRITE;
		rec->offset = off;
		rec->data = buf;
		rec->data_len = (uint32_t)n;
		rec->time_ns = 0;
		if (fs_journal_append(fs, rec, &lsn) < 0)
			goto fail;
	}
	rec->type = MFS_REC_TRUNCATE;
	rec->length = (uint64_t)st.st_size;
	rec->data = NULL;
	rec->data_len = 0;
	rec->time_ns = 0;
	if (fs_journal_append(fs, rec, &lsn) < 0)
		goto fail;
	return;
fail:
	fs_fail(fs, -EIO, "a failed write could not be compensated in the journal");
}

/* Writes past this offset are applied at once: one the backing file system
 * refuses (EFBIG: ext4 stops at 16 TiB) is then reported to the writer and
 * compensated in the journal, not found at a later commit. */
#define FS_PENDING_OFF_MAX (1ull << 40)

/* The write of @rec (LSN @lsn) could not be kept pending: wait for its
 * record to be durable and write it now. */
static int write_now(struct fs *fs, struct fs_file *f, struct mfs_rec *rec, uint64_t lsn)
{
	int r = fs_journal_sync(fs, lsn);

	if (r < 0)
		return r;
	r = mfs_pwrite_all(f->fd, rec->data, rec->data_len, rec->offset);
	if (r < 0)
		compensate_write(fs, f->inode, rec, rec->offset, rec->data_len);
	else
		fs_dirty_add(fs, f->inode);
	return r;
}

/* Write @len bytes at @off through open file @f, journaled; with @kill
 * (the request), first clear the suid and sgid bits (killpriv.c). */
static ssize_t data_write(struct fs *fs, struct fs_file *f, const void *data, size_t len,
			  uint64_t off, fuse_req_t kill)
{
	struct fs_inode *i = f->inode;
	struct mfs_rec *rec = fs_rec_new(MFS_REC_WRITE);
	uint64_t lsn = 0, joff = 0;
	int r, jfd = -1;

	if (!rec)
		return -ENOMEM;
	pthread_rwlock_rdlock(&fs->ns_lock);
	pthread_mutex_lock(&i->lock);
	r = fs_mutate_begin(fs, i, rec->path);
	if (r >= 0 && kill) {
		int e = fs_attr_kill_suidgid(fs, i, f->fd, kill);
		r = e < 0 ? e : r;
	}
	if (r >= 0)
		fs_snap_cow(fs, i, off, len); /* before the journal: see cow.c */
	if (r > 0) {
		rec->offset = off;
		rec->data = data;
		rec->data_len = (uint32_t)len;
		r = len > FS_PENDING_COPY_MAX ? fs_journal_append_at(fs, rec, &lsn, &jfd, &joff)
					      : fs_journal_append(fs, rec, &lsn);
		if (r == 0 && (fs_pending_sync_writes(fs) || off + len > FS_PENDING_OFF_MAX ||
			       fs_pending_add(fs, i, f->fd, lsn, data, len, off, jfd, joff) < 0)) {
			closep(&jfd);
			r = write_now(fs, f, rec, lsn);
		}
		if (r == 0)
			atomic_store(&i->last_lsn, lsn);
	} else if (r == 0) { /* no name left: nothing to journal */
		r = mfs_pwrite_all(f->fd, data, len, off);
	}
	pthread_mutex_unlock(&i->lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	free(rec);
	if (r == 0 && fs_pending_bytes(fs) > FS_PENDING_MAX)
		(void)fs_journal_sync(fs, 0);
	return r < 0 ? r : (ssize_t)len;
}

int fs_data_truncate(struct fs *fs, struct fs_inode *i, int fd, uint64_t size)
{
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_TRUNCATE);
	char proc[64];
	struct stat st;
	uint64_t lsn = 0;
	int r, jr;

	if (!rec)
		return -ENOMEM;
	jr = fs_mutate_begin(fs, i, rec->path);
	if (jr < 0)
		return jr;
	fs_proc_path(i->fd, proc);
	if (fstatat(i->fd, "", &st, AT_EMPTY_PATH) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	fs_pending_fix_stat(i, &st);
	rec->length = size;
	fs_snap_cow(fs, i, size, UINT64_MAX);
	if (jr > 0) {
		r = fs_journal_first(fs, rec, &lsn);
		if (r < 0)
			return r;
	}
	r = (fd >= 0 ? ftruncate(fd, (off_t)size) : truncate(proc, (off_t)size)) < 0 ? -errno : 0;
	fs_dirty_add(fs, i);
	if (r < 0) {
		if (jr > 0 && size < (uint64_t)st.st_size)
			fs_fail(fs, r, "a journaled truncate failed");
		else if (jr > 0)
			compensate_write(fs, i, rec, (uint64_t)st.st_size, 0);
		return r;
	}
	if (jr > 0)
		atomic_store(&i->last_lsn, lsn);
	return 0;
}

/* ================================================================ open, create */

static int open_flags(int flags)
{
	return (flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL | O_APPEND | O_DIRECT | O_TRUNC |
			  O_NOCTTY)) |
	       O_CLOEXEC;
}

static struct fs_file *file_new(struct fs *fs, struct fs_inode *i, int fd)
{
	struct fs_file *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->inode = i;
	f->fd = fd;
	fs_inode_ref(fs, i);
	fs_pending_open(i);
	return f;
}

/* Undo file_new(), closing the backing fd. */
static void file_free(struct fs *fs, struct fs_file *f)
{
	close(f->fd);
	fs_pending_release(f->inode);
	fs_inode_unref(fs, f->inode);
	free(f);
}

/* Open inode @i's backing file for @req; O_TRUNC is journaled. Caller
 * holds no lock. */
static int open_inode(fuse_req_t req, struct fs *fs, struct fs_inode *i, int flags,
		      struct fs_file **ret)
{
	char proc[64];
	int fd, r = 0;

	fs_proc_path(i->fd, proc);
	fd = open(proc, open_flags(flags));
	if (fd < 0)
		return -errno;
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
		pthread_rwlock_rdlock(&fs->ns_lock);
		pthread_mutex_lock(&i->lock);
		if (fs_killpriv_asked()) /* without CAP_FSETID */
			r = fs_attr_kill_suidgid(fs, i, fd, req);
		if (r == 0)
			r = fs_data_truncate(fs, i, fd, 0);
		pthread_mutex_unlock(&i->lock);
		pthread_rwlock_unlock(&fs->ns_lock);
	}
	if (r == 0) {
		*ret = file_new(fs, i, fd);
		r = *ret ? 0 : -ENOMEM;
	}
	if (r < 0)
		close(fd);
	return r;
}

static void set_open_flags(struct fuse_file_info *fi)
{
	fi->keep_cache = 1; /* every change goes through us: the page cache stays valid */
	fi->noflush = 1;    /* flush has nothing to do (locks are the kernel's): no round trip */
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *i = fs_inode(req, ino);
	struct fs_file *f;
	int r;

	if (i->ops) {
		i->ops->open(req, i, fi);
		return;
	}
	r = open_inode(req, fs, i, fi->flags, &f);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uintptr_t)f;
	set_open_flags(fi);
	if (fuse_reply_open(req, fi) != 0)
		file_free(fs, f);
}

/* Create a new regular file: check, journal, create, compensate on failure. */
static int create_new(fuse_req_t req, struct fs_inode *p, const char *name, mode_t mode,
		      int flags, struct fuse_entry_param *e, int *ret_fd)
{
	struct fs *fs = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_MKNOD);
	_cleanup_free_ struct mfs_rec *undo = fs_rec_new(MFS_REC_UNLINK);
	struct stat pst;
	uint64_t lsn;
	int fd, r;

	if (!rec || !undo)
		return -ENOMEM;
	r = fs_entry_path(fs, p, name, rec->path, sizeof(rec->path));
	if (r < 0)
		return r;
	memcpy(undo->path, rec->path, sizeof(rec->path));
	rec->mode = S_IFREG | (mode & 07777);
	rec->uid = fs->is_root ? ctx->uid : getuid();
	rec->gid = fs->is_root ? ctx->gid : getgid();
	if (fstatat(p->fd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID))
		rec->gid = pst.st_gid;
	r = fs_journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	fd = openat(p->fd, name, open_flags(flags) | O_CREAT | O_EXCL, mode & 07777);
	r = fd < 0 ? -errno : 0;
	if (fd < 0) {
		fs_compensate(fs, undo, "a failed creation could not be compensated");
		return r;
	}
	r = fs_finish_new(fs, p, name, rec, lsn, e);
	if (r < 0) {
		close(fd);
		return r;
	}
	fs_stat_fix(fs, (struct fs_inode *)(uintptr_t)e->ino, &e->attr);
	*ret_fd = fd;
	return 0;
}

/* create on a name that exists (no O_EXCL): open it. */
static int create_existing(fuse_req_t req, struct fs *fs, struct fs_inode *p, const char *name,
			   int flags, struct fuse_entry_param *e, struct fs_file **ret)
{
	struct fs_inode *i;
	int r;

	pthread_rwlock_rdlock(&fs->ns_lock);
	r = fs_stat_lookup(fs, p, name, e);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (r < 0)
		return r;
	i = (struct fs_inode *)(uintptr_t)e->ino;
	r = open_inode(req, fs, i, flags, ret);
	if (r < 0)
		fs_inode_forget(fs, i, 1);
	return r;
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *p = fs_inode(req, parent);
	struct fuse_entry_param e;
	struct fs_file *f = NULL;
	struct stat st;
	int fd = -1, r;

	if (p->vkind != FS_VK_NONE || fs_is_reserved(fs, p, name)) {
		fuse_reply_err(req, p->vkind == FS_VK_SNAP || p->vkind == FS_VK_SNAPS ? EROFS : EPERM);
		return;
	}
	if (strlen(name) > MFS_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_rwlock_wrlock(&fs->ns_lock);
	if (fstatat(p->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		r = (fi->flags & O_EXCL) ? -EEXIST : 1;
	else if (errno != ENOENT)
		r = -errno;
	else
		r = create_new(req, p, name, mode, fi->flags, &e, &fd);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (r == 1)
		r = create_existing(req, fs, p, name, fi->flags, &e, &f);
	else if (r == 0 && !(f = file_new(fs, (struct fs_inode *)(uintptr_t)e.ino, fd)))
		r = -ENOMEM;
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uintptr_t)f;
	set_open_flags(fi);
	if (fuse_reply_create(req, &e, fi) != 0) {
		struct fs_inode *i = f->inode;

		fs_inode_forget(fs, i, 1); /* the file's reference keeps it */
		file_free(fs, f);
	}
}

/* ================================================================ I/O */

/* A read of a file with pending writes: the backing bytes with them laid over. */
static void read_pending(fuse_req_t req, struct fs_file *f, size_t size, uint64_t off)
{
	_cleanup_free_ char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = fs_pending_read(f->inode, f->fd, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct fs_file *f = file_of(fi);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	if (f->inode->ops) {
		f->inode->ops->read(req, f->inode, size, off, f);
		return;
	}
	if (fs_pending_has(f->inode)) {
		read_pending(req, f, size, (uint64_t)off);
		return;
	}
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = f->fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/*
 * The kernel sends an O_DIRECT write of a file opened without
 * FOPEN_DIRECT_IO through generic_file_direct_write: it drops the range's
 * pages before the write and, for a synchronous one, again after. An
 * asynchronous one (AIO, io_uring) returns -EIOCBQUEUED and is never
 * followed by the second drop, so a buffered reader that filled a page
 * while the write was in flight keeps the old bytes, across opens too
 * (keep_cache). Drop the range here: after the write is visible to reads
 * (pending or applied), before the reply, and with no lock of ours held
 * (the kernel waits for pages a read of that range has locked, and that
 * read needs another worker and maybe i->lock).
 */
static void inval_direct(struct fs *fs, fuse_ino_t ino, uint64_t off, size_t len)
{
	struct fuse_session *se = fs->se;
	int r;

	if (!se)
		return;
	r = fuse_lowlevel_notify_inval_inode(se, ino, (off_t)off, (off_t)len);
	if (r < 0 && r != -ENOENT)
		log_debug("cannot drop cached pages after an O_DIRECT write: %s", strerror(-r));
}

void fs_op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_file *f = file_of(fi);
	size_t size = fuse_buf_size(bufv);
	_cleanup_free_ char *copy = NULL;
	const char *data;
	ssize_t n;

	if (bufv->count == 1 && !(bufv->buf[0].flags & FUSE_BUF_IS_FD)) {
		data = bufv->buf[0].mem;
	} else {
		struct fuse_bufvec mem = FUSE_BUFVEC_INIT(size);
		copy = malloc(size ? size : 1);
		if (!copy) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		mem.buf[0].mem = copy;
		n = fuse_buf_copy(&mem, bufv, 0);
		if (n < 0) {
			fuse_reply_err(req, (int)-n);
			return;
		}
		size = (size_t)n;
		data = copy;
	}
	if (f->inode->ops) {
		f->inode->ops->write(req, f->inode, data, size, f);
		return;
	}
	n = data_write(fs, f, data, size, (uint64_t)off, fs_killpriv_asked() ? req : NULL);
	if (n > 0 && (fi->flags & O_DIRECT) && !fi->writepage)
		inval_direct(fs, ino, (uint64_t)off, (size_t)n);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0); /* locks are the kernel's; data is written at once */
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_file *f = file_of(fi);

	if (f->inode->vkind == FS_VK_NONE) {
		file_free(fs, f);
	} else {
		if (f->fd >= 0)
			close(f->fd);
		free(f->buf);
		free(f);
	}
	fuse_reply_err(req, 0);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_inode *i = fs_inode(req, ino);
	uint64_t lsn = atomic_load(&i->last_lsn);
	int r = 0;

	if (i->vkind == FS_VK_NONE && lsn)
		r = fs_journal_sync(fs, lsn);
	if (r == 0)
		r = fs_check_failed(fs);
	fuse_reply_err(req, -r);
}

static int do_fallocate(struct fs *fs, struct fs_file *f, int mode, off_t off, off_t len)
{
	struct fs_inode *i = f->inode;
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_FALLOCATE);
	uint64_t lsn;
	int r, jr;

	if (!rec)
		return -ENOMEM;
	jr = fs_mutate_begin(fs, i, rec->path);
	if (jr < 0)
		return jr;
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		fs_snap_cow(fs, i, (uint64_t)off, (uint64_t)len);
	else if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))
		fs_snap_cow(fs, i, (uint64_t)off, UINT64_MAX);
	else
		fs_snap_cow(fs, i, 0, 0); /* the size may change */
	if (!jr)
		return fallocate(f->fd, mode, off, len) < 0 ? -errno : 0;
	rec->mode = (uint32_t)mode;
	rec->offset = (uint64_t)off;
	rec->length = (uint64_t)len;
	r = fs_journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	r = fallocate(f->fd, mode, off, len) < 0 ? -errno : 0;
	fs_dirty_add(fs, i);
	if (r < 0) {
		/* journal what the file holds now: its size, and the bytes of a
		 * range the failed call may have changed */
		struct stat st;
		uint64_t from = (uint64_t)off, size, span;

		size = fstat(f->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
		if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_COLLAPSE_RANGE |
			      FALLOC_FL_INSERT_RANGE)))
			from = size;
		span = (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) ? UINT64_MAX
										   : (uint64_t)len;
		compensate_write(fs, i, rec, from, from < size ? (size_t)MFS_MIN(size - from, span) : 0);
		return r;
	}
	atomic_store(&i->last_lsn, lsn);
	return 0;
}

void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_file *f = file_of(fi);
	int r;

	if (f->inode->vkind != FS_VK_NONE) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_rwlock_rdlock(&fs->ns_lock);
	pthread_mutex_lock(&f->inode->lock);
	r = fs_killpriv_unflagged(req) ? fs_attr_kill_suidgid(fs, f->inode, f->fd, req) : 0;
	if (r == 0)
		r = do_fallocate(fs, f, mode, off, len);
	pthread_mutex_unlock(&f->inode->lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	fuse_reply_err(req, -r);
}

/* copy_file_range, journaled as the writes it amounts to. */
void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			   struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			   struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fs_file *in = file_of(fi_in), *out = file_of(fi_out);
	_cleanup_free_ char *buf = NULL;
	size_t done = 0;
	ssize_t n = 0;
	bool kill = fs_killpriv_unflagged(req);

	if (in->inode->vkind != FS_VK_NONE || out->inode->vkind != FS_VK_NONE || flags) {
		fuse_reply_err(req, flags ? EINVAL : EXDEV);
		return;
	}
	buf = malloc(COPY_CHUNK);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	while (done < len) {
		size_t chunk = MFS_MIN(len - done, (size_t)COPY_CHUNK);
		n = fs_pending_read(in->inode, in->fd, buf, chunk, (uint64_t)off_in + done);
		if (n <= 0)
			break;
		n = data_write(fs, out, buf, (size_t)n, (uint64_t)off_out + done,
			       kill && done == 0 ? req : NULL);
		if (n < 0)
			break;
		done += (size_t)n;
	}
	if (n < 0 && done == 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, done);
}

void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		 struct fuse_file_info *fi)
{
	struct fs_file *f = file_of(fi);
	off_t r;

	if (f->fd < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* SEEK_DATA/SEEK_HOLE and SEEK_END ask the backing file: apply first */
	if (whence != SEEK_SET && whence != SEEK_CUR && fs_pending_has(f->inode) &&
	    fs_journal_sync(fuse_req_userdata(req), 0) < 0) {
		fuse_reply_err(req, EIO);
		return;
	}
	r = lseek(f->fd, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}
