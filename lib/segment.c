/* SPDX-License-Identifier: MIT */
/*
 * segment.c - append-only journal segment files: writer and validator.
 *
 * Writer invariants: appends are serialised by w->lock, so file order is
 * LSN order and the running whole-segment CRC is exact; every append is in
 * the file (page cache) before it returns, so a killed process loses
 * nothing appended; durability comes from mfs_segw_sync(), where the first
 * caller becomes the leader and issues one fdatasync for everyone waiting
 * (group commit). Space is preallocated ahead with FALLOC_FL_KEEP_SIZE, so
 * the file size is always exactly the bytes written.
 *
 * Reader invariants: every length is checked against the file size and
 * MFS_REC_MAX before any allocation or copy; a record is returned only once
 * its CRC, type, LSN and payload are valid; the verdict is one of the six
 * in enum mfs_seg_verdict.
 */
#include "mirrorfs/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/crc32c.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#define PREALLOC_CHUNK (4u << 20)
#define HEAD_MAX (MFS_REC_HEADER_SIZE + 2 * (MFS_PATH_MAX + 2) + 64)

/* ================================================================ writer */

struct mfs_segw {
	pthread_mutex_t lock; /* serialises appends; take before sync_lock */
	int fd;
	int dirfd;
	char name[256];
	uint8_t uuid[16];
	uint64_t seg_no;
	uint64_t first_lsn;
	uint64_t next_lsn;     /* protected by lock */
	uint64_t size;         /* protected by lock */
	uint64_t reserved_end; /* protected by lock */
	uint32_t seg_crc;      /* protected by lock */
	uint64_t records;      /* protected by lock */
	uint64_t last_off;     /* protected by lock: where the last record starts */
	uint32_t last_crc;     /* protected by lock: seg_crc before the last record */
	int broken;            /* protected by lock: 0 or the first error */
	bool sealed;           /* protected by lock: the trailer is written and synced */
	_Atomic uint64_t written_lsn;

	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	uint64_t durable_lsn; /* protected by sync_lock */
	bool syncing;         /* protected by sync_lock */
	int sync_error;       /* protected by sync_lock */
	bool pending;         /* protected by sync_lock: MFS_SEGW_LAZY, not established yet */
	uint64_t syncs, sync_requests;
	_Atomic uint64_t wb_off; /* mfs_segw_writeback() submitted up to here */
};

void mfs_seg_name(uint64_t first_lsn, uint64_t last_lsn, char out[MFS_SEG_NAME_LEN + 1])
{
	snprintf(out, MFS_SEG_NAME_LEN + 1, "%020" PRIu64 "-%020" PRIu64 MFS_SEG_SUFFIX,
		 first_lsn, last_lsn);
}

static bool parse_u20(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	for (int i = 0; i < 20; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = v;
	return true;
}

bool mfs_seg_name_parse(const char *name, uint64_t *ret_first, uint64_t *ret_last)
{
	uint64_t first, last;

	if (strlen(name) != MFS_SEG_NAME_LEN || name[20] != '-' ||
	    strcmp(name + 41, MFS_SEG_SUFFIX) != 0)
		return false;
	if (!parse_u20(name, &first) || !parse_u20(name + 21, &last))
		return false;
	if (first == 0 || last < first - 1)
		return false;
	*ret_first = first;
	*ret_last = last;
	return true;
}

static struct mfs_segw *segw_alloc(int dirfd, const char *name)
{
	struct mfs_segw *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->fd = -EBADF;
	w->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (w->dirfd < 0 || strlen(name) >= sizeof(w->name)) {
		if (w->dirfd >= 0)
			close(w->dirfd);
		free(w);
		return NULL;
	}
	snprintf(w->name, sizeof(w->name), "%s", name);
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->sync_lock, NULL);
	pthread_cond_init(&w->sync_cond, NULL);
	return w;
}

struct mfs_segw *mfs_segw_free(struct mfs_segw *w)
{
	if (!w)
		return NULL;
	if (w->fd >= 0)
		close(w->fd);
	if (w->dirfd >= 0)
		close(w->dirfd);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->sync_lock);
	pthread_cond_destroy(&w->sync_cond);
	free(w);
	return NULL;
}

static void header_encode(const uint8_t uuid[16], uint64_t seg_no, uint64_t first_lsn,
			  uint64_t created_ns, uint8_t out[MFS_SEG_HEADER_SIZE])
{
	memset(out, 0, MFS_SEG_HEADER_SIZE);
	memcpy(out, MFS_SEG_MAGIC, MFS_SEG_MAGIC_LEN);
	mfs_put_le32(out + 8, MFS_FORMAT_VERSION);
	mfs_put_le32(out + 12, MFS_SEG_HEADER_SIZE);
	memcpy(out + 16, uuid, 16);
	mfs_put_le64(out + 32, seg_no);
	mfs_put_le64(out + 40, first_lsn);
	mfs_put_le64(out + 48, created_ns);
	mfs_put_le32(out + 124, mfs_crc32c(0, out, 124));
}

/* Preallocate so that @need more bytes fit. Called with w->lock held. */
static int reserve_locked(struct mfs_segw *w, uint64_t need)
{
	uint64_t want = w->size + need;
	uint64_t len;

	if (want <= w->reserved_end)
		return 0;
	len = MFS_MAX(want - w->reserved_end, (uint64_t)PREALLOC_CHUNK);
	if (mfs_io->fallocate(w->fd, FALLOC_FL_KEEP_SIZE, (off_t)w->reserved_end, (off_t)len) < 0) {
		int r = -errno;
		if (r != -EOPNOTSUPP)
			return r;
		/* no preallocation here: appends may still meet ENOSPC */
		len = want - w->reserved_end;
	}
	w->reserved_end += len;
	return 0;
}

int mfs_segw_create(int dirfd, const char *name, const uint8_t uuid[16], uint64_t seg_no,
		    uint64_t first_lsn, struct mfs_segw **ret)
{
	return mfs_segw_create_flags(dirfd, name, uuid, seg_no, first_lsn, 0, ret);
}

int mfs_segw_create_flags(int dirfd, const char *name, const uint8_t uuid[16], uint64_t seg_no,
			  uint64_t first_lsn, unsigned flags, struct mfs_segw **ret)
{
	uint8_t hdr[MFS_SEG_HEADER_SIZE];
	struct mfs_segw *w;
	int r;

	if (first_lsn == 0)
		return -EINVAL;
	w = segw_alloc(dirfd, name);
	if (!w)
		return -ENOMEM;
	w->fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		r = -errno;
		goto out_free;
	}
	(void)fchmod(w->fd, 0600);
	memcpy(w->uuid, uuid, 16);
	w->seg_no = seg_no;
	w->first_lsn = w->next_lsn = first_lsn;
	header_encode(uuid, seg_no, first_lsn, mfs_now_ns(), hdr);
	r = reserve_locked(w, MFS_SEG_HEADER_SIZE);
	if (r == 0)
		r = mfs_pwrite_all(w->fd, hdr, sizeof(hdr), 0);
	if (r == 0 && !(flags & MFS_SEGW_LAZY) && mfs_io->fdatasync(w->fd) < 0)
		r = -errno;
	if (r == 0 && !(flags & MFS_SEGW_LAZY))
		r = mfs_fsync_dir(dirfd, NULL);
	if (r < 0) {
		(void)unlinkat(dirfd, name, 0);
		goto out_free;
	}
	w->pending = flags & MFS_SEGW_LAZY;
	w->size = MFS_SEG_HEADER_SIZE;
	w->seg_crc = mfs_crc32c(0, hdr, sizeof(hdr));
	w->written_lsn = first_lsn - 1;
	w->durable_lsn = first_lsn - 1;
	*ret = w;
	return 0;

out_free:
	mfs_segw_free(w);
	return r;
}

int mfs_segw_reopen(int dirfd, const char *name, const uint8_t uuid[16], struct mfs_segw **ret,
		    uint64_t *ret_cut)
{
	struct mfs_seg_info info;
	struct mfs_segw *w;
	int r;

	w = segw_alloc(dirfd, name);
	if (!w)
		return -ENOMEM;
	w->fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (w->fd < 0) {
		r = -errno;
		goto out_free;
	}
	r = mfs_seg_scan_fd(w->fd, uuid, NULL, NULL, &info);
	if (r < 0)
		goto out_free;
	if (info.verdict == MFS_SEG_OK) {
		r = -EALREADY;
		goto out_free;
	}
	if ((info.verdict != MFS_SEG_TORN && info.verdict != MFS_SEG_CORRUPT) ||
	    !info.header_valid) {
		r = -EBADMSG;
		goto out_free;
	}
	if (info.file_size != info.valid_end) {
		if (ftruncate(w->fd, (off_t)info.valid_end) < 0 || fdatasync(w->fd) < 0) {
			r = -errno;
			goto out_free;
		}
	}
	memcpy(w->uuid, info.uuid, 16);
	w->seg_no = info.seg_no;
	w->first_lsn = info.first_lsn;
	w->next_lsn = info.last_lsn + 1;
	w->size = w->reserved_end = info.valid_end;
	w->seg_crc = info.crc_valid_end;
	w->records = info.records;
	w->written_lsn = info.last_lsn;
	w->durable_lsn = info.last_lsn;
	if (ret_cut)
		*ret_cut = info.file_size - info.valid_end;
	*ret = w;
	return 0;

out_free:
	mfs_segw_free(w);
	return r;
}

int mfs_segw_reserve(struct mfs_segw *w, uint64_t bytes)
{
	int r;

	pthread_mutex_lock(&w->lock);
	r = w->broken ? -EIO : reserve_locked(w, bytes);
	pthread_mutex_unlock(&w->lock);
	return r;
}

static bool rec_has_blob(enum mfs_rec_type t)
{
	return t == MFS_REC_WRITE || t == MFS_REC_SETXATTR;
}

int mfs_segw_append(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	return mfs_segw_append_publish(w, rec, ret_lsn, NULL);
}

int mfs_segw_append_publish(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
			    _Atomic uint64_t *publish)
{
	uint8_t head[HEAD_MAX];
	struct iovec iov[2];
	size_t head_len, total;
	int cnt = 1, r;

	if (rec->type == MFS_REC_SEG_CLOSED)
		return -EINVAL;
	pthread_mutex_lock(&w->lock);
	if (w->broken) {
		r = -EIO;
		goto out_unlock;
	}
	rec->lsn = w->next_lsn;
	if (publish) /* before a byte of the record can reach the file */
		atomic_store(publish, rec->lsn);
	if (!rec->time_ns)
		rec->time_ns = mfs_now_ns();
	r = mfs_rec_encode(rec, head, sizeof(head), &head_len);
	if (r < 0)
		goto out_unlock;
	iov[0] = (struct iovec){ head, head_len };
	total = head_len;
	if (rec_has_blob(rec->type) && rec->data_len) {
		iov[cnt++] = (struct iovec){ (void *)rec->data, rec->data_len };
		total += rec->data_len;
	}
	r = reserve_locked(w, total);
	if (r < 0)
		goto out_unlock; /* nothing written: the writer stays usable */
	r = mfs_pwritev_all(w->fd, iov, cnt, w->size);
	if (r < 0) {
		/* Part of the record may be in the file: cut it. Out of space
		 * (a file system without fallocate, or one that needs more
		 * than the data), the file is then as before and the writer
		 * stays usable; else refuse more. */
		if (ftruncate(w->fd, (off_t)w->size) < 0 || (r != -ENOSPC && r != -EDQUOT))
			w->broken = r;
		w->reserved_end = w->size; /* ask the file system again next time */
		goto out_unlock;
	}
	w->last_off = w->size;
	w->last_crc = w->seg_crc;
	w->seg_crc = mfs_crc32c(w->seg_crc, head, head_len);
	if (cnt > 1)
		w->seg_crc = mfs_crc32c(w->seg_crc, rec->data, rec->data_len);
	w->size += total;
	w->records++;
	w->next_lsn++;
	atomic_store(&w->written_lsn, rec->lsn);
	*ret_lsn = rec->lsn;
out_unlock:
	pthread_mutex_unlock(&w->lock);
	return r;
}

int mfs_segw_unappend(struct mfs_segw *w, uint64_t lsn)
{
	int r = 0;

	bool was_durable;

	pthread_mutex_lock(&w->lock);
	if (w->broken) {
		r = -EIO;
		goto out_unlock;
	}
	if (lsn + 1 != w->next_lsn || w->last_off < MFS_SEG_HEADER_SIZE) {
		r = -EBUSY;
		goto out_unlock;
	}
	/* A sync leader may hold lsn as its target: let it finish first, or
	 * it would mark the LSN durable after we reused it. */
	pthread_mutex_lock(&w->sync_lock);
	while (w->syncing)
		pthread_cond_wait(&w->sync_cond, &w->sync_lock);
	was_durable = w->durable_lsn >= lsn;
	if (ftruncate(w->fd, (off_t)w->last_off) < 0 ||
	    (was_durable && mfs_io->fdatasync(w->fd) < 0)) {
		r = -errno;
		w->broken = r;
	} else {
		w->size = w->last_off;
		w->seg_crc = w->last_crc;
		w->last_off = 0; /* only one step back */
		w->records--;
		w->next_lsn--;
		atomic_store(&w->written_lsn, lsn - 1);
		if (w->durable_lsn >= lsn)
			w->durable_lsn = lsn - 1;
	}
	pthread_mutex_unlock(&w->sync_lock);
out_unlock:
	pthread_mutex_unlock(&w->lock);
	return r;
}

int mfs_segw_establish(struct mfs_segw *w)
{
	int r = 0;

	pthread_mutex_lock(&w->sync_lock);
	if (w->pending) {
		r = mfs_io->fdatasync(w->fd) < 0 ? -errno : 0;
		if (r < 0)
			w->sync_error = r;
		w->pending = false;
		pthread_cond_broadcast(&w->sync_cond);
	}
	pthread_mutex_unlock(&w->sync_lock);
	return r;
}

int mfs_segw_sync(struct mfs_segw *w, uint64_t lsn)
{
	int r = 0;

	pthread_mutex_lock(&w->sync_lock);
	w->sync_requests++;
	while (w->pending && !w->sync_error) /* nothing is durable before that */
		pthread_cond_wait(&w->sync_cond, &w->sync_lock);
	while (w->durable_lsn < lsn && !w->sync_error) {
		uint64_t target;

		if (w->syncing) {
			pthread_cond_wait(&w->sync_cond, &w->sync_lock);
			continue;
		}
		target = atomic_load(&w->written_lsn);
		if (target < lsn) {
			r = -EINVAL; /* asked for an LSN never appended */
			break;
		}
		w->syncing = true;
		pthread_mutex_unlock(&w->sync_lock);
		r = mfs_io->fdatasync(w->fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&w->sync_lock);
		w->syncing = false;
		w->syncs++;
		if (r < 0)
			w->sync_error = r; /* after a failed fdatasync nothing is known durable */
		else if (target > w->durable_lsn)
			w->durable_lsn = target;
		pthread_cond_broadcast(&w->sync_cond);
	}
	if (w->sync_error)
		r = w->sync_error;
	pthread_mutex_unlock(&w->sync_lock);
	return r;
}

uint64_t mfs_segw_writeback(struct mfs_segw *w)
{
	uint64_t from, to;

	pthread_mutex_lock(&w->lock);
	to = w->size & ~(uint64_t)4095; /* whole pages: the last one is still filling */
	pthread_mutex_unlock(&w->lock);
	from = atomic_load(&w->wb_off);
	if (to <= from)
		return 0;
	/* outside w->lock: appends go on while the pages are queued */
	if (sync_file_range(w->fd, (off64_t)from, (off64_t)(to - from), SYNC_FILE_RANGE_WRITE) < 0)
		return 0;
	atomic_store(&w->wb_off, to);
	return to - from;
}

/* Write the trailer; called with w->lock held. */
static int write_trailer_locked(struct mfs_segw *w)
{
	struct mfs_rec *t;
	uint8_t head[MFS_REC_HEADER_SIZE + sizeof(struct mfs_seg_trailer)];
	size_t head_len;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->type = MFS_REC_SEG_CLOSED;
	t->lsn = w->next_lsn - 1;
	t->time_ns = mfs_now_ns();
	t->trailer.last_lsn = w->next_lsn - 1;
	t->trailer.rec_count = w->records;
	t->trailer.seg_crc = w->seg_crc;
	r = mfs_rec_encode(t, head, sizeof(head), &head_len);
	free(t);
	if (r < 0)
		return r;
	r = mfs_pwrite_all(w->fd, head, head_len, w->size);
	if (r < 0)
		return r;
	w->size += head_len;
	if (ftruncate(w->fd, (off_t)w->size) < 0) /* drop the preallocated blocks */
		return -errno;
	if (mfs_io->fdatasync(w->fd) < 0)
		return -errno;
	return 0;
}

int mfs_segw_seal(struct mfs_segw *w)
{
	int r = 0;

	pthread_mutex_lock(&w->lock);
	if (!w->sealed) {
		r = w->broken ? -EIO : write_trailer_locked(w);
		if (r < 0)
			w->broken = r;
		else
			w->sealed = true;
	}
	pthread_mutex_unlock(&w->lock);
	return r;
}

int mfs_segw_close(struct mfs_segw *w, int dst_dirfd, char *ret_name)
{
	char closed[MFS_SEG_NAME_LEN + 1];
	int r = mfs_segw_seal(w);

	pthread_mutex_lock(&w->lock);
	mfs_seg_name(w->first_lsn, w->next_lsn - 1, closed);
	pthread_mutex_unlock(&w->lock);
	if (r == 0 && dst_dirfd >= 0) {
		r = mfs_rename_noreplace(w->dirfd, w->name, dst_dirfd, closed);
		if (r == 0) /* both folders at once: their flushes merge */
			r = mfs_fsync_dirs((const int[]){ dst_dirfd, w->dirfd }, 2);
	}
	if (r == 0 && ret_name)
		memcpy(ret_name, closed, sizeof(closed));
	mfs_segw_free(w);
	return r;
}

void mfs_segw_get_stats(struct mfs_segw *w, struct mfs_segw_stats *ret)
{
	pthread_mutex_lock(&w->lock);
	ret->seg_no = w->seg_no;
	ret->first_lsn = w->first_lsn;
	ret->next_lsn = w->next_lsn;
	ret->size = w->size;
	ret->records = w->records;
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_lock(&w->sync_lock);
	ret->durable_lsn = w->durable_lsn;
	ret->syncs = w->syncs;
	ret->sync_requests = w->sync_requests;
	pthread_mutex_unlock(&w->sync_lock);
}

int mfs_segw_fd(struct mfs_segw *w)
{
	return w->fd;
}

/* ================================================================ reader */

#define WINDOW (4u << 20)

struct mfs_segr {
	const uint8_t *buf; /* memory mode: the whole segment */
	int fd;             /* file mode: read through a window */
	uint8_t *win;
	size_t win_cap;
	uint64_t win_off, win_len;
	uint64_t off; /* next byte to read */
	uint32_t crc; /* CRC32C of [0, off) */
	uint64_t next_lsn;
	bool have_expect, done;
	uint8_t expect[16];
	struct mfs_seg_info info;
};

/*
 * Point *ret at @n bytes at @off (already checked to lie within the file).
 * Returns 0 or -errno.
 */
static int segr_get(struct mfs_segr *r, uint64_t off, size_t n, const uint8_t **ret)
{
	ssize_t got;
	size_t want;

	if (r->buf) {
		*ret = r->buf + off;
		return 0;
	}
	if (off >= r->win_off && off + n <= r->win_off + r->win_len) {
		*ret = r->win + (off - r->win_off);
		return 0;
	}
	want = MFS_MAX(n, (size_t)WINDOW);
	if (want > r->info.file_size - off)
		want = (size_t)(r->info.file_size - off);
	if (want > r->win_cap) {
		uint8_t *nw = realloc(r->win, want);
		if (!nw)
			return -ENOMEM;
		r->win = nw;
		r->win_cap = want;
	}
	got = mfs_pread_all(r->fd, r->win, want, off);
	if (got < 0)
		return (int)got;
	r->win_off = off;
	r->win_len = (uint64_t)got;
	if ((size_t)got < n)
		return -EIO; /* the file shrank under us */
	*ret = r->win;
	return 0;
}

static void finish(struct mfs_segr *r, enum mfs_seg_verdict v, uint64_t bad_offset)
{
	r->info.verdict = v;
	r->info.bad_offset = bad_offset;
	r->done = true;
}

/* Check the header; sets the verdict and done when it is not a usable one. */
static int segr_header(struct mfs_segr *r)
{
	uint64_t size = r->info.file_size;
	size_t have = (size_t)MFS_MIN(size, (uint64_t)MFS_SEG_HEADER_SIZE);
	const uint8_t *h;
	int ret;

	if (size == 0) { /* created, nothing written yet: a torn header */
		finish(r, MFS_SEG_TORN, 0);
		return 0;
	}
	ret = segr_get(r, 0, have, &h);
	if (ret < 0)
		return ret;
	if (memcmp(h, MFS_SEG_MAGIC, MFS_MIN(have, (size_t)MFS_SEG_MAGIC_LEN)) != 0) {
		finish(r, MFS_SEG_NOT_SEGMENT, 0);
		return 0;
	}
	if (have >= 12) {
		r->info.version = mfs_get_le32(h + 8);
		if (r->info.version != MFS_FORMAT_VERSION) {
			finish(r, MFS_SEG_BAD_VERSION, 8);
			return 0;
		}
	}
	if (have < MFS_SEG_HEADER_SIZE) {
		finish(r, MFS_SEG_TORN, 0); /* header itself torn: no records */
		return 0;
	}
	if (mfs_get_le32(h + 124) != mfs_crc32c(0, h, 124) ||
	    mfs_get_le32(h + 12) != MFS_SEG_HEADER_SIZE || mfs_get_le64(h + 40) == 0) {
		finish(r, MFS_SEG_CORRUPT, 0);
		return 0;
	}
	for (int i = 56; i < 124; i++)
		if (h[i]) {
			finish(r, MFS_SEG_CORRUPT, (uint64_t)i);
			return 0;
		}
	memcpy(r->info.uuid, h + 16, 16);
	r->info.seg_no = mfs_get_le64(h + 32);
	r->info.first_lsn = mfs_get_le64(h + 40);
	r->info.created_ns = mfs_get_le64(h + 48);
	r->info.last_lsn = r->info.first_lsn - 1;
	r->info.header_valid = true;
	r->next_lsn = r->info.first_lsn;
	r->crc = mfs_crc32c(0, h, MFS_SEG_HEADER_SIZE);
	r->off = r->info.valid_end = MFS_SEG_HEADER_SIZE;
	r->info.crc_valid_end = r->crc;
	if (r->have_expect && memcmp(r->expect, r->info.uuid, 16) != 0)
		finish(r, MFS_SEG_FOREIGN, 16);
	return 0;
}

static int segr_open(struct mfs_segr *r, const uint8_t *expect_uuid, struct mfs_segr **ret)
{
	int e;

	if (expect_uuid) {
		r->have_expect = true;
		memcpy(r->expect, expect_uuid, 16);
	}
	e = segr_header(r);
	if (e < 0) {
		mfs_segr_free(r);
		return e;
	}
	*ret = r;
	return 0;
}

int mfs_segr_open_fd(int fd, const uint8_t *expect_uuid, struct mfs_segr **ret)
{
	struct mfs_segr *r;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = fd;
	r->info.file_size = (uint64_t)st.st_size;
	return segr_open(r, expect_uuid, ret);
}

int mfs_segr_open_buf(const void *buf, size_t len, const uint8_t *expect_uuid,
		      struct mfs_segr **ret)
{
	static const uint8_t empty[1];
	struct mfs_segr *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->fd = -EBADF;
	r->buf = len ? buf : empty;
	r->info.file_size = len;
	return segr_open(r, expect_uuid, ret);
}

struct mfs_segr *mfs_segr_free(struct mfs_segr *r)
{
	if (!r)
		return NULL;
	free(r->win);
	free(r);
	return NULL;
}

const struct mfs_seg_info *mfs_segr_info(struct mfs_segr *r)
{
	return &r->info;
}

/* A record that decodes is checked against the segment: LSN, trailer. */
static int segr_check_trailer(struct mfs_segr *r, const struct mfs_rec *rec, uint64_t len)
{
	const struct mfs_seg_trailer *t = &rec->trailer;

	if (rec->lsn != r->next_lsn - 1 || t->last_lsn != r->next_lsn - 1 ||
	    t->rec_count != r->info.records || t->seg_crc != r->crc ||
	    r->off + len != r->info.file_size)
		finish(r, MFS_SEG_CORRUPT, r->off);
	else
		finish(r, MFS_SEG_OK, 0);
	return 0;
}

int mfs_segr_next(struct mfs_segr *r, struct mfs_rec *rec)
{
	uint64_t remain, len;
	const uint8_t *p;
	uint32_t crc;
	int e;

	if (r->done)
		return 0;
	remain = r->info.file_size - r->off;
	if (remain < MFS_REC_HEADER_SIZE) {
		finish(r, MFS_SEG_TORN, r->off);
		return 0;
	}
	e = segr_get(r, r->off, MFS_REC_HEADER_SIZE, &p);
	if (e < 0)
		return e;
	len = mfs_get_le32(p);
	if (len == 0) { /* zeros: preallocated space or a write that never landed */
		finish(r, MFS_SEG_TORN, r->off);
		return 0;
	}
	if (len < MFS_REC_HEADER_SIZE || len > MFS_REC_MAX) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	if (len > remain) {
		finish(r, MFS_SEG_TORN, r->off);
		return 0;
	}
	e = segr_get(r, r->off, (size_t)len, &p);
	if (e < 0)
		return e;
	crc = r->crc;
	if (mfs_rec_decode_seg(p, (size_t)len, rec, &crc) < 0) {
		/* the last record of the file may be half-written: torn, not corrupt */
		finish(r, r->off + len == r->info.file_size ? MFS_SEG_TORN : MFS_SEG_CORRUPT,
		       r->off);
		return 0;
	}
	if (rec->type == MFS_REC_SEG_CLOSED)
		return segr_check_trailer(r, rec, len);
	if (rec->lsn != r->next_lsn) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	r->crc = crc; /* the trailer is not part of the segment CRC */
	r->off += len;
	r->next_lsn++;
	r->info.records++;
	r->info.last_lsn = rec->lsn;
	r->info.valid_end = r->off;
	r->info.crc_valid_end = r->crc;
	return 1;
}

int mfs_seg_scan_fd(int fd, const uint8_t *expect_uuid,
		    int (*cb)(const struct mfs_rec *rec, void *arg), void *arg,
		    struct mfs_seg_info *ret)
{
	struct mfs_segr *r;
	struct mfs_rec *rec;
	int e;

	rec = malloc(sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	e = mfs_segr_open_fd(fd, expect_uuid, &r);
	if (e < 0) {
		free(rec);
		return e;
	}
	while ((e = mfs_segr_next(r, rec)) > 0) {
		if (cb) {
			e = cb(rec, arg);
			if (e != 0)
				break;
		}
	}
	*ret = r->info;
	mfs_segr_free(r);
	free(rec);
	return e;
}

const char *mfs_seg_verdict_name(enum mfs_seg_verdict v)
{
	switch (v) {
	case MFS_SEG_OK:
		return "ok";
	case MFS_SEG_TORN:
		return "torn";
	case MFS_SEG_CORRUPT:
		return "corrupt";
	case MFS_SEG_FOREIGN:
		return "foreign";
	case MFS_SEG_BAD_VERSION:
		return "unknown-version";
	case MFS_SEG_NOT_SEGMENT:
		return "not-a-segment";
	}
	return "?";
}

void mfs_seg_verdict_format(const struct mfs_seg_info *i, char *out, size_t cap)
{
	char uuid[37];

	switch (i->verdict) {
	case MFS_SEG_OK:
		snprintf(out, cap, "ok: closed segment, LSN %" PRIu64 "..%" PRIu64 ", %" PRIu64
			 " records", i->first_lsn, i->last_lsn, i->records);
		break;
	case MFS_SEG_TORN:
		snprintf(out, cap, "torn tail at byte %" PRIu64 " after LSN %" PRIu64 "%s",
			 i->bad_offset, i->last_lsn,
			 i->bad_offset == i->file_size ? " (no trailer: open segment)" : "");
		break;
	case MFS_SEG_CORRUPT:
		snprintf(out, cap, "corrupt record at byte %" PRIu64 " (last valid LSN %" PRIu64 ")",
			 i->bad_offset, i->last_lsn);
		break;
	case MFS_SEG_FOREIGN:
		mfs_uuid_format(i->uuid, uuid);
		snprintf(out, cap, "foreign data set %s", uuid);
		break;
	case MFS_SEG_BAD_VERSION:
		snprintf(out, cap, "unknown format version %" PRIu32 " (this reader knows %u)",
			 i->version, MFS_FORMAT_VERSION);
		break;
	case MFS_SEG_NOT_SEGMENT:
		snprintf(out, cap, "not a mirrorfs segment (bad magic)");
		break;
	}
}
