/* SPDX-License-Identifier: MIT */
/*
 * pending.c - writes journaled but not yet applied to the backing files,
 * and the backing objects changed since the last checkpoint.
 *
 * The write-ahead rule: no change may reach the backing file system before
 * its journal record is durable. The kernel writes dirty pages of the
 * backing files back whenever it likes (age, memory pressure, anyone's
 * sync), so mirrorfs must not hand a change to the backing file system
 * before its record is durable. A write is therefore appended to the
 * journal and kept here, in memory, until a group commit has made its
 * record durable; the commit then applies it (fs_pending_apply(), called by
 * fs_journal_sync()). Until then it answers reads (fs_pending_read()
 * overlays it on the backing file's bytes) and sizes
 * (fs_pending_fix_stat()). A write larger than FS_PENDING_COPY_MAX is
 * not copied: its bytes are read back from the journal segment it was
 * appended to (an fd of the segment is kept with it), in the kernel
 * (copy_file_range) when it is applied. Every other mutation waits for its own record
 * to be durable before it is applied (journal.c), and that wait applies
 * every pending write before it returns, so one file's changes reach its
 * backing file in journal order.
 *
 * Bounds: a writer commits itself once pending data passes FS_PENDING_MAX
 * bytes, and the timer commits at least every FS_PENDING_DELAY_MS.
 *
 * The dirty set: every backing file or folder changed since the last
 * checkpoint (each holds a reference on its inode), so that a checkpoint
 * fsyncs exactly what mirrorfs changed, not the whole file system (syncfs
 * flushes nothing on a FUSE-based store, and other programs' dirty data is
 * not ours to wait for).
 *
 * Locks: fs->pend.alock (one apply pass at a time) -> inode->plock (its
 * pending list; held only around memory work and the backing pread/pwrite)
 * -> fs->pend.lock (the two lists) -> fs->itable_lock.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

/* Below this much free space, writes are applied at once (see data.c). */
#define FS_PENDING_LOW_SPACE (4ull * FS_PENDING_MAX)

struct fs_pwrite {
	struct fs_pwrite *next;
	uint64_t lsn, off;
	size_t len;
	int jfd;       /* -1: the bytes are in data[]; else at joff of this segment */
	uint64_t joff;
	char data[];
};

static void pwrite_free(struct fs_pwrite *w)
{
	if (w->jfd >= 0)
		close(w->jfd);
	free(w);
}

void fs_pending_init(struct fs *fs)
{
	pthread_mutex_init(&fs->pend.lock, NULL);
	pthread_mutex_init(&fs->pend.alock, NULL);
}

void fs_pending_inode_init(struct fs_inode *i)
{
	pthread_mutex_init(&i->plock, NULL);
	i->pfd = -1;
}

void fs_pending_inode_done(struct fs_inode *i)
{
	struct fs_pwrite *w = i->phead;

	while (w) {
		struct fs_pwrite *n = w->next;
		pwrite_free(w);
		w = n;
	}
	i->phead = i->ptail = NULL;
	if (i->pfd >= 0)
		close(i->pfd);
	i->pfd = -1;
	pthread_mutex_destroy(&i->plock);
}

/* ================================================================ pending writes */

int fs_pending_add(struct fs *fs, struct fs_inode *i, int fd, uint64_t lsn, const void *data,
		   size_t len, uint64_t off, int jfd, uint64_t joff)
{
	struct fs_pwrite *w = malloc(sizeof(*w) + (jfd >= 0 ? 0 : len));
	bool add = false;

	if (!w)
		return -ENOMEM;
	w->next = NULL;
	w->lsn = lsn;
	w->off = off;
	w->len = len;
	w->jfd = -1; /* the caller's until the write is kept */
	w->joff = joff;
	if (jfd < 0)
		memcpy(w->data, data, len);
	pthread_mutex_lock(&i->plock);
	if (i->pfd < 0)
		i->pfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (i->pfd < 0) {
		pthread_mutex_unlock(&i->plock);
		free(w);
		return -errno;
	}
	w->jfd = jfd;
	if (!i->phead) {
		i->pend = 0;
		i->phead = w;
	} else {
		i->ptail->next = w;
	}
	i->ptail = w;
	i->pend = MFS_MAX(i->pend, off + len);
	pthread_mutex_unlock(&i->plock);
	atomic_fetch_add(&fs->pend.bytes, len);
	pthread_mutex_lock(&fs->pend.lock);
	if (!i->in_plist) {
		i->in_plist = true;
		i->pnext = fs->pend.plist;
		fs->pend.plist = i;
		add = true;
	}
	pthread_mutex_unlock(&fs->pend.lock);
	if (add)
		fs_inode_ref(fs, i);
	return 0;
}

void fs_pending_open(struct fs_inode *i)
{
	pthread_mutex_lock(&i->plock);
	i->nopen++;
	pthread_mutex_unlock(&i->plock);
}

void fs_pending_release(struct fs_inode *i)
{
	pthread_mutex_lock(&i->plock);
	if (--i->nopen == 0 && !i->phead) {
		closep(&i->pfd);
		i->pfd = -1;
	}
	pthread_mutex_unlock(&i->plock);
}

bool fs_pending_has(struct fs_inode *i)
{
	bool has;

	pthread_mutex_lock(&i->plock);
	has = i->phead != NULL;
	pthread_mutex_unlock(&i->plock);
	return has;
}

void fs_pending_fix_stat(struct fs_inode *i, struct stat *st)
{
	struct stat now;

	if (!S_ISREG(st->st_mode))
		return;
	pthread_mutex_lock(&i->plock);
	/* @st was taken before the lock: an apply may have emptied the list
	 * since, leaving @st without the writes it applied (a size that went
	 * backwards makes the kernel drop the pages past it). The backing
	 * file's size and times are read again under the lock. */
	if (i->fd >= 0 && fstatat(i->fd, "", &now, AT_EMPTY_PATH) == 0 && now.st_ino == st->st_ino &&
	    now.st_dev == st->st_dev) {
		st->st_size = now.st_size;
		st->st_blocks = now.st_blocks;
		st->st_mtim = now.st_mtim;
		st->st_ctim = now.st_ctim;
	}
	if (i->phead && (uint64_t)st->st_size < i->pend) {
		st->st_size = (off_t)i->pend;
		st->st_blocks = (blkcnt_t)((i->pend + 511) / 512);
	}
	pthread_mutex_unlock(&i->plock);
}

ssize_t fs_pending_read(struct fs_inode *i, int fd, char *buf, size_t size, uint64_t off)
{
	ssize_t n;
	size_t len;

	pthread_mutex_lock(&i->plock);
	n = mfs_pread_all(fd, buf, size, off);
	if (n < 0 || !i->phead) {
		pthread_mutex_unlock(&i->plock);
		return n;
	}
	/* the size with the pending writes: the backing file's (what the
	 * pread found) or the end of the furthest one */
	len = i->pend > off ? (size_t)MFS_MIN((uint64_t)size, i->pend - off) : 0;
	if ((size_t)n < len)
		memset(buf + n, 0, len - (size_t)n);
	else
		len = (size_t)n;
	for (struct fs_pwrite *w = i->phead; w && n >= 0; w = w->next) {
		uint64_t a = MFS_MAX(w->off, off), b = MFS_MIN(w->off + w->len, off + len);
		if (a < b && w->jfd < 0)
			memcpy(buf + (a - off), w->data + (a - w->off), b - a);
		else if (a < b && mfs_pread_all(w->jfd, buf + (a - off), b - a,
						w->joff + (a - w->off)) != (ssize_t)(b - a))
			n = -EIO;
	}
	pthread_mutex_unlock(&i->plock);
	return n < 0 ? n : (ssize_t)len;
}

uint64_t fs_pending_bytes(struct fs *fs)
{
	return atomic_load(&fs->pend.bytes);
}

bool fs_pending_sync_writes(struct fs *fs)
{
	return atomic_load(&fs->pend.sync_writes);
}

void fs_pending_check_space(struct fs *fs)
{
	struct statvfs sv;
	bool low;

	if (fstatvfs(fs->sync_fd, &sv) < 0)
		return;
	low = (uint64_t)sv.f_bavail * sv.f_frsize < FS_PENDING_LOW_SPACE;
	if (low != atomic_exchange(&fs->pend.sync_writes, low))
		log_notice(low ? "the backing file system is nearly full: writes are applied at once"
			       : "the backing file system has room again: writes are applied in "
				 "batches");
}

/* Apply @i's pending writes up to LSN @durable, in order. Caller holds
 * alock. Returns 1 if some are left, 0 if none, -errno. */
static int apply_inode(struct fs *fs, struct fs_inode *i, uint64_t durable)
{
	struct fs_pwrite *w;
	int r = 0;

	pthread_mutex_lock(&i->plock);
	while ((w = i->phead) && w->lsn <= durable) {
		r = w->jfd < 0 ? mfs_pwrite_all(i->pfd, w->data, w->len, w->off)
			       : mfs_copy_range_all(w->jfd, w->joff, i->pfd, w->off, w->len);
		if (r < 0)
			break;
		i->phead = w->next;
		atomic_fetch_sub(&fs->pend.bytes, w->len);
		pwrite_free(w);
	}
	if (!i->phead) {
		i->ptail = NULL;
		if (i->nopen == 0) { /* else kept for the next write (fs_pending_open) */
			closep(&i->pfd);
			i->pfd = -1;
		}
	}
	if (r == 0)
		r = i->phead ? 1 : 0;
	pthread_mutex_unlock(&i->plock);
	return r;
}

/* The inodes on @fs's pending list, taken off it (their references move to
 * the caller), as an array: once off the list, an inode's pnext belongs to
 * whoever puts it back. Returns the count; *ret NULL with a count > 0 is
 * out of memory (nothing taken). */
static size_t take_plist(struct fs *fs, struct fs_inode ***ret)
{
	struct fs_inode **v = NULL, *i;
	size_t n = 0, k = 0;

	pthread_mutex_lock(&fs->pend.lock);
	for (i = fs->pend.plist; i; i = i->pnext)
		n++;
	if (n)
		v = malloc(n * sizeof(*v));
	if (v) {
		for (i = fs->pend.plist; i; i = i->pnext) {
			i->in_plist = false;
			v[k++] = i;
		}
		fs->pend.plist = NULL;
	}
	pthread_mutex_unlock(&fs->pend.lock);
	*ret = v;
	return n;
}

int fs_pending_apply(struct fs *fs, uint64_t durable)
{
	struct fs_inode **v;
	size_t n;
	int r = 0;

	pthread_mutex_lock(&fs->pend.alock);
	n = take_plist(fs, &v);
	if (n && !v)
		r = -ENOMEM;
	for (size_t k = 0; k < n && v; k++) {
		struct fs_inode *i = v[k];
		int e = apply_inode(fs, i, durable);
		bool keep = false;

		fs_dirty_add(fs, i);
		if (e < 0 && r == 0)
			r = e;
		pthread_mutex_lock(&fs->pend.lock);
		if (e != 0 && !i->in_plist) { /* left: back on the list, with our reference */
			i->in_plist = true;
			i->pnext = fs->pend.plist;
			fs->pend.plist = i;
			keep = true;
		}
		pthread_mutex_unlock(&fs->pend.lock);
		if (!keep)
			fs_inode_unref(fs, i);
	}
	free(v);
	pthread_mutex_unlock(&fs->pend.alock);
	return r;
}

/* ================================================================ dirty set */

void fs_dirty_add(struct fs *fs, struct fs_inode *i)
{
	bool add = false;

	if (!i || i->vkind != FS_VK_NONE)
		return;
	pthread_mutex_lock(&fs->pend.lock);
	if (!i->dirty) {
		i->dirty = true;
		i->dnext = fs->pend.dlist;
		fs->pend.dlist = i;
		add = true;
	}
	pthread_mutex_unlock(&fs->pend.lock);
	if (add)
		fs_inode_ref(fs, i);
}

/*
 * Up to this many changed objects are fsynced one after the other, with
 * no thread: a thread costs more than it saves there, and on ext4 the
 * second fsync mostly finds its transaction committed by the first. A
 * fence before an unlink of a new file (the file, then its folder, when
 * that unlink still had one), per create + write + close + unlink,
 * measured on an ext4 of its own: 4.34 jbd2 commits and 8.8 device flushes
 * in parallel, 4.00 and 8.00 one after the other, and 9 syscalls less (the
 * thread).
 */
#define DSYNC_INLINE_MAX 2

struct dsync_job {
	struct fs_inode *i;
};

static int dsync_one(void *arg)
{
	struct fs_inode *i = ((struct dsync_job *)arg)->i;
	char proc[64];
	struct stat st;
	int fd, r = 0;

	if (i->type != S_IFREG && i->type != S_IFDIR)
		return 0; /* a symlink, FIFO, socket or device: its folder holds it */
	fs_proc_path(i->fd, proc);
	fd = open(proc, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EPERM))
		fd = open(proc, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* a file without a name: nothing reaches its data after a crash, and
	 * the unlink of its last name, journaled before it was applied, is
	 * durable with its folder or replayed (mutate.c) */
	if ((fstat(fd, &st) < 0 || st.st_nlink > 0) && fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Run @jobs in this thread, in order; returns the first error, or 0. */
static int run_inline(struct mfs_job *jobs, size_t n)
{
	int r = 0;

	for (size_t k = 0; k < n; k++) {
		jobs[k].r = jobs[k].fn(jobs[k].arg);
		if (jobs[k].r < 0 && r == 0)
			r = jobs[k].r;
	}
	return r;
}

/* The path of @i's backing file, as the kernel names its fd, for an error. */
static void name_backing(struct fs_inode *i, char *buf, size_t size)
{
	char proc[64];
	ssize_t len;

	fs_proc_path(i->fd, proc);
	len = readlink(proc, buf, size - 1);
	buf[len > 0 ? (size_t)len : 0] = '\0';
}

int fs_dirty_sync(struct fs *fs, char *ret_path, size_t size)
{
	struct fs_inode **v = NULL, *i;
	struct mfs_job *jobs = NULL;
	struct dsync_job *args = NULL;
	size_t n = 0, k = 0;
	int r = 0;

	/* into an array: once off the list, an inode's dnext belongs to
	 * whoever marks it dirty again */
	pthread_mutex_lock(&fs->pend.lock);
	for (i = fs->pend.dlist; i; i = i->dnext)
		n++;
	if (n) {
		v = malloc(n * sizeof(*v));
		jobs = calloc(n, sizeof(*jobs));
		args = calloc(n, sizeof(*args));
	}
	if (n && (!v || !jobs || !args)) {
		r = -ENOMEM;
		n = 0;
	}
	for (i = fs->pend.dlist; i && n; i = i->dnext) {
		i->dirty = false;
		v[k] = i;
		args[k].i = i;
		jobs[k] = (struct mfs_job){ dsync_one, &args[k], 0 };
		k++;
	}
	if (n)
		fs->pend.dlist = NULL;
	pthread_mutex_unlock(&fs->pend.lock);
	if (n)
		r = n <= DSYNC_INLINE_MAX ? run_inline(jobs, n) : mfs_run_jobs(jobs, n);
	for (k = 0; k < n; k++) {
		if (r < 0 && jobs[k].r < 0 && ret_path && !*ret_path)
			name_backing(v[k], ret_path, size);
		if (r < 0)
			fs_dirty_add(fs, v[k]); /* the next checkpoint tries again */
		fs_inode_unref(fs, v[k]);
	}
	free(v);
	free(jobs);
	free(args);
	return r;
}
