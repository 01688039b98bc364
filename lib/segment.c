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

#include <zstd.h>

#include "mirrorfs/auth.h"
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

	/* format 2: set at creation, then protected by lock */
	uint32_t version;
	int zstd_level;   /* 0: writes are not compressed */
	ZSTD_CCtx *cctx;
	uint8_t *zbuf;    /* a compressed write's frame */
	size_t zcap;
	bool auth;
	struct mfs_auth_key key;
	uint8_t prev_tag[MFS_TAG_SIZE];   /* the header's: chain value before the segment */
	uint8_t chain[MFS_TAG_SIZE];      /* the last record's tag, or the header's seed */
	uint8_t last_chain[MFS_TAG_SIZE]; /* chain before the last record (unappend) */
	bool enc;                         /* every record but the trailer is sealed */
	struct mfs_auth_key ekey;         /* the derived encryption key, its file's id */
	uint8_t *ebuf;                    /* a sealed payload */
	size_t ecap;
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
	explicit_bzero(&w->key, sizeof(w->key));
	explicit_bzero(&w->ekey, sizeof(w->ekey));
	ZSTD_freeCCtx(w->cctx);
	free(w->zbuf);
	free(w->ebuf);
	free(w);
	return NULL;
}

static void header_encode(const struct mfs_segw *w, uint64_t created_ns,
			  uint8_t out[MFS_SEG_HEADER_SIZE])
{
	memset(out, 0, MFS_SEG_HEADER_SIZE);
	memcpy(out, MFS_SEG_MAGIC, MFS_SEG_MAGIC_LEN);
	mfs_put_le32(out + 8, w->version);
	if (w->auth) {
		mfs_put_le32(out + 56, MFS_SEG_F_AUTH);
		memcpy(out + 64, w->key.id, MFS_AUTH_KEY_ID_SIZE);
		memcpy(out + 72, w->prev_tag, MFS_TAG_SIZE);
	}
	if (w->enc) {
		mfs_put_le32(out + 56, mfs_get_le32(out + 56) | MFS_SEG_F_ENC);
		memcpy(out + 104, w->ekey.id, MFS_AUTH_KEY_ID_SIZE);
	}
	mfs_put_le32(out + 12, MFS_SEG_HEADER_SIZE);
	memcpy(out + 16, w->uuid, 16);
	mfs_put_le64(out + 32, w->seg_no);
	mfs_put_le64(out + 40, w->first_lsn);
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
	return mfs_segw_create_opts(dirfd, name, uuid, seg_no, first_lsn, flags, NULL, ret);
}

int mfs_segw_create_opts(int dirfd, const char *name, const uint8_t uuid[16], uint64_t seg_no,
			 uint64_t first_lsn, unsigned flags, const struct mfs_segw_opts *opts,
			 struct mfs_segw **ret)
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
	w->version = MFS_FORMAT_VERSION;
	if (opts && opts->key) {
		w->auth = true;
		w->key = *opts->key;
		memcpy(w->prev_tag, opts->prev_tag, MFS_TAG_SIZE);
		w->version = MFS_FORMAT_VERSION_2;
	}
	if (opts && opts->enc_key) {
		w->enc = true;
		w->ekey = *opts->enc_key;
		w->version = MFS_FORMAT_VERSION_2;
	}
	if (opts && opts->zstd_level) {
		w->version = MFS_FORMAT_VERSION_2;
		r = mfs_segw_set_compress(w, opts->zstd_level);
		if (r < 0)
			goto out_free_unlink;
	}
	header_encode(w, mfs_now_ns(), hdr);
	if (w->auth)
		mfs_auth_seed(&w->key, hdr, w->chain);
	r = reserve_locked(w, MFS_SEG_HEADER_SIZE);
	if (r == 0)
		r = mfs_pwrite_all(w->fd, hdr, sizeof(hdr), 0);
	if (r == 0 && !(flags & MFS_SEGW_LAZY) && mfs_io->fdatasync(w->fd) < 0)
		r = -errno;
	if (r == 0 && !(flags & MFS_SEGW_LAZY))
		r = mfs_fsync_dir(dirfd, NULL);
	if (r < 0)
		goto out_free_unlink;
	w->pending = flags & MFS_SEGW_LAZY;
	w->size = MFS_SEG_HEADER_SIZE;
	w->seg_crc = mfs_crc32c(0, hdr, sizeof(hdr));
	w->written_lsn = first_lsn - 1;
	w->durable_lsn = first_lsn - 1;
	*ret = w;
	return 0;

out_free_unlink:
	(void)unlinkat(dirfd, name, 0);
out_free:
	mfs_segw_free(w);
	return r;
}

int mfs_segw_reopen(int dirfd, const char *name, const uint8_t uuid[16], struct mfs_segw **ret,
		    uint64_t *ret_cut)
{
	return mfs_segw_reopen_keys(dirfd, name, uuid, NULL, ret, ret_cut);
}

/* The chain of reopened segment @w (authenticated) from its header and @info. */
static int reopen_chain(struct mfs_segw *w, const struct mfs_seg_info *info,
			const struct mfs_keyring *keys)
{
	uint8_t hdr[MFS_SEG_HEADER_SIZE];
	const struct mfs_auth_key *k = mfs_keyring_find(keys, info->key_id);
	ssize_t n;

	if (!k)
		return -ENOKEY;
	n = mfs_pread_all(w->fd, hdr, sizeof(hdr), 0);
	if (n != (ssize_t)sizeof(hdr))
		return n < 0 ? (int)n : -EIO;
	w->auth = true;
	w->key = *k;
	memcpy(w->prev_tag, info->prev_tag, MFS_TAG_SIZE);
	if (info->records)
		memcpy(w->chain, info->last_tag, MFS_TAG_SIZE);
	else
		mfs_auth_seed(k, hdr, w->chain);
	return 0;
}

int mfs_segw_reopen_keys(int dirfd, const char *name, const uint8_t uuid[16],
			 const struct mfs_keyring *keys, struct mfs_segw **ret, uint64_t *ret_cut)
{
	struct mfs_segr_opts o = { .expect_uuid = uuid, .keys = keys };
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
	r = mfs_seg_scan_fd_opts(w->fd, &o, NULL, NULL, &info);
	if (r < 0)
		goto out_free;
	if (info.verdict == MFS_SEG_OK) {
		r = -EALREADY;
		goto out_free;
	}
	if (info.verdict == MFS_SEG_UNAUTH) {
		r = info.auth_fail == MFS_AUTH_UNKNOWN_KEY || info.auth_fail == MFS_AUTH_NO_ENC_KEY
			    ? -ENOKEY
			    : -EBADMSG;
		goto out_free;
	}
	if (info.seg_flags & MFS_SEG_F_AUTH) {
		r = reopen_chain(w, &info, keys);
		if (r < 0)
			goto out_free;
	}
	if (info.seg_flags & MFS_SEG_F_ENC) {
		const struct mfs_auth_key *ek = mfs_keyring_find_enc(keys, info.enc_key_id);

		if (!ek) {
			r = -ENOKEY;
			goto out_free;
		}
		w->enc = true;
		w->ekey = *ek;
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
	w->version = info.version;
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

int mfs_segw_set_compress(struct mfs_segw *w, int level)
{
	if (w->version < MFS_FORMAT_VERSION_2 && level)
		return -EPROTO;
	if (level && !w->cctx) {
		w->cctx = ZSTD_createCCtx();
		if (!w->cctx)
			return -ENOMEM;
	}
	w->zstd_level = level;
	return 0;
}

/* Compress a write's data into w->zbuf when it pays. Called with w->lock held. */
static int compress_locked(struct mfs_segw *w, struct mfs_rec *rec)
{
	size_t need;

	if (!w->zstd_level || rec->type != MFS_REC_WRITE || rec->data_len < 64)
		return 0;
	need = ZSTD_compressBound(rec->data_len);
	if (need > w->zcap) {
		uint8_t *n = realloc(w->zbuf, need);
		if (!n)
			return 0; /* stored as it is */
		w->zbuf = n;
		w->zcap = need;
	}
	return mfs_rec_compress(rec, w->cctx, w->zstd_level, w->zbuf, w->zcap);
}

/*
 * Seal the payload of the record encoded in head[0..head_len) (+ @blob)
 * into w->ebuf (nonce | ciphertext | MAC, *ret_len bytes): the header then
 * says MFS_REC_F_ENC, its length and CRC cover the sealed bytes (a tag
 * still to come counted in the length). Called with w->lock held.
 */
static int seal_locked(struct mfs_segw *w, uint8_t *head, size_t head_len, const void *blob,
		       size_t blob_len, size_t *ret_len)
{
	size_t plen = head_len - MFS_REC_HEADER_SIZE + (blob ? blob_len : 0);
	size_t need = plen + MFS_ENC_OVERHEAD;
	uint64_t len = MFS_REC_HEADER_SIZE + need + (w->auth ? MFS_TAG_SIZE : 0);

	if (len > MFS_REC_MAX)
		return -EOVERFLOW;
	if (need > w->ecap) {
		uint8_t *n = realloc(w->ebuf, need);
		if (!n)
			return -ENOMEM;
		w->ebuf = n;
		w->ecap = need;
	}
	memcpy(w->ebuf + MFS_ENC_NONCE_SIZE, head + MFS_REC_HEADER_SIZE,
	       head_len - MFS_REC_HEADER_SIZE);
	if (blob)
		memcpy(w->ebuf + MFS_ENC_NONCE_SIZE + head_len - MFS_REC_HEADER_SIZE, blob,
		       blob_len);
	mfs_put_le32(head, (uint32_t)len);
	mfs_put_le16(head + 6, mfs_get_le16(head + 6) | MFS_REC_F_ENC);
	/* in place: the plaintext lies where the ciphertext goes */
	mfs_enc_seal(&w->ekey, NULL, head, w->uuid, w->ebuf + MFS_ENC_NONCE_SIZE, plen, w->ebuf);
	mfs_put_le32(head + 28, mfs_crc32c(mfs_crc32c(0, head, 28), w->ebuf, need));
	*ret_len = need;
	return 0;
}

/*
 * Tag the record encoded in head[0..head_len) (+ @data) after w->chain,
 * and fold the tag into the header's CRC. Called with w->lock held.
 */
static void tag_record(struct mfs_segw *w, uint8_t *head, size_t head_len, const void *data,
		       size_t data_len, uint8_t tag[MFS_TAG_SIZE])
{
	struct mfs_auth_piece pc[2] = { { head + MFS_REC_HEADER_SIZE,
					  head_len - MFS_REC_HEADER_SIZE },
					{ data, data ? data_len : 0 } };

	mfs_auth_tag(&w->key, w->chain, head, pc, 2, tag);
	mfs_put_le32(head + 28, mfs_crc32c(mfs_get_le32(head + 28), tag, MFS_TAG_SIZE));
}

int mfs_segw_append(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	return mfs_segw_append_publish(w, rec, ret_lsn, NULL);
}

int mfs_segw_append_publish(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
			    _Atomic uint64_t *publish)
{
	uint8_t head[HEAD_MAX], tag[MFS_TAG_SIZE];
	const void *data = rec->data;
	struct iovec iov[3];
	size_t head_len, total, blob;
	uint32_t crc;
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
	rec->zstd_len = 0; /* a caller's record holds data, never a frame */
	r = compress_locked(w, rec);
	if (r >= 0)
		r = mfs_rec_encode_ext(rec, w->auth ? MFS_TAG_SIZE : 0, head, sizeof(head),
				       &head_len);
	blob = rec->zstd_len ? rec->zstd_len : rec->data_len;
	if (r < 0)
		goto out_unlock;
	iov[0] = (struct iovec){ head, head_len };
	total = head_len;
	if (rec_has_blob(rec->type) && blob) {
		iov[cnt++] = (struct iovec){ (void *)rec->data, blob };
		total += blob;
	}
	if (w->enc) {
		r = seal_locked(w, head, head_len, cnt > 1 ? rec->data : NULL, blob, &total);
		if (r < 0)
			goto out_unlock;
		head_len = MFS_REC_HEADER_SIZE;
		iov[0].iov_len = head_len;
		iov[1] = (struct iovec){ w->ebuf, total };
		cnt = 2;
		total += head_len;
	}
	if (w->auth) {
		tag_record(w, head, head_len, cnt > 1 ? iov[1].iov_base : NULL,
			   cnt > 1 ? iov[1].iov_len : 0, tag);
		iov[cnt++] = (struct iovec){ tag, MFS_TAG_SIZE };
		total += MFS_TAG_SIZE;
	}
	r = reserve_locked(w, total);
	if (r < 0)
		goto out_unlock; /* nothing written: the writer stays usable */
	crc = w->seg_crc; /* before the write, which may consume iov */
	for (int i = 0; i < cnt; i++)
		crc = mfs_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
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
	w->seg_crc = crc;
	if (w->auth) {
		memcpy(w->last_chain, w->chain, MFS_TAG_SIZE);
		memcpy(w->chain, tag, MFS_TAG_SIZE);
	}
	w->size += total;
	w->records++;
	w->next_lsn++;
	atomic_store(&w->written_lsn, rec->lsn);
	*ret_lsn = rec->lsn;
out_unlock:
	rec->data = data; /* the caller's record as it was */
	rec->zstd_len = 0;
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
		if (w->auth)
			memcpy(w->chain, w->last_chain, MFS_TAG_SIZE);
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
	uint8_t head[MFS_REC_HEADER_SIZE + sizeof(struct mfs_seg_trailer) + MFS_TAG_SIZE];
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
	r = mfs_rec_encode_ext(t, w->auth ? MFS_TAG_SIZE : 0, head, sizeof(head), &head_len);
	free(t);
	if (r < 0)
		return r;
	if (w->auth) { /* tagged after the chain, which it does not move */
		tag_record(w, head, head_len, NULL, 0, head + head_len);
		head_len += MFS_TAG_SIZE;
	}
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

void mfs_segw_chain(struct mfs_segw *w, uint8_t ret[MFS_TAG_SIZE])
{
	pthread_mutex_lock(&w->lock);
	if (!w->auth)
		memset(ret, 0, MFS_TAG_SIZE);
	else if (w->records)
		memcpy(ret, w->chain, MFS_TAG_SIZE);
	else
		memcpy(ret, w->prev_tag, MFS_TAG_SIZE);
	pthread_mutex_unlock(&w->lock);
}

bool mfs_segw_is_auth(struct mfs_segw *w)
{
	return w->auth;
}

const uint8_t *mfs_segw_key_id(struct mfs_segw *w)
{
	return w->auth ? w->key.id : NULL;
}

const uint8_t *mfs_segw_enc_key_id(struct mfs_segw *w)
{
	return w->enc ? w->ekey.id : NULL;
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
	const struct mfs_keyring *keys; /* non-empty: tags required and checked */
	const struct mfs_auth_key *key; /* the segment's key, when checked */
	uint32_t tag_len;               /* MFS_TAG_SIZE in a tagged segment */
	uint8_t chain[MFS_TAG_SIZE];    /* last valid record's tag, or the seed */
	uint8_t *zbuf;                  /* the last compressed write, expanded */
	size_t zcap;
	const struct mfs_auth_key *ekey; /* MFS_SEG_F_ENC: the segment's encryption key */
	uint8_t *dbuf;                   /* the last sealed record, opened */
	size_t dcap;
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
	if (v != MFS_SEG_OK && v != MFS_SEG_TORN)
		r->info.authenticated = false;
	r->info.verdict = v;
	r->info.bad_offset = bad_offset;
	r->done = true;
}

/* Version 1: bytes 56..123 are reserved. Returns the first non-zero one, or -1. */
static int header_v1_extra(const uint8_t *h)
{
	for (int i = 56; i < 124; i++)
		if (h[i])
			return i;
	return -1;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Version 2: flags, key id, previous tag. Returns the offset of a bad
 * field, or -1 when the header is well-formed (fields copied to r->info).
 */
static int header_v2_extra(struct mfs_segr *r, const uint8_t *h)
{
	uint32_t flags = mfs_get_le32(h + 56);

	if (flags & ~MFS_SEG_F_KNOWN)
		return 56;
	if (!all_zero(h + 60, 4))
		return 60;
	if (!(flags & MFS_SEG_F_ENC) && !all_zero(h + 104, 8))
		return 104;
	if (!all_zero(h + 112, 12))
		return 112;
	if (!(flags & MFS_SEG_F_AUTH) && !all_zero(h + 64, 8 + MFS_TAG_SIZE))
		return 64;
	r->info.seg_flags = flags;
	memcpy(r->info.enc_key_id, h + 104, MFS_AUTH_KEY_ID_SIZE);
	memcpy(r->info.key_id, h + 64, MFS_AUTH_KEY_ID_SIZE);
	memcpy(r->info.prev_tag, h + 72, MFS_TAG_SIZE);
	memcpy(r->info.last_tag, h + 72, MFS_TAG_SIZE);
	r->tag_len = (flags & MFS_SEG_F_AUTH) ? MFS_TAG_SIZE : 0;
	return -1;
}

static void finish_unauth(struct mfs_segr *r, enum mfs_auth_fail why, uint64_t off, uint64_t lsn)
{
	r->info.auth_fail = why;
	r->info.auth_lsn = lsn;
	finish(r, MFS_SEG_UNAUTH, off);
}

/* A reader with keys: the segment must be tagged with one of them. */
static void header_auth(struct mfs_segr *r, const uint8_t *h)
{
	if (!(r->info.seg_flags & MFS_SEG_F_AUTH)) {
		finish_unauth(r, MFS_AUTH_NO_TAGS, 0, r->info.first_lsn);
		return;
	}
	r->key = mfs_keyring_find(r->keys, r->info.key_id);
	if (!r->key) {
		finish_unauth(r, MFS_AUTH_UNKNOWN_KEY, 64, r->info.first_lsn);
		return;
	}
	mfs_auth_seed(r->key, h, r->chain);
	r->info.authenticated = true; /* as long as every record checks out */
}

/* Expand a compressed write into r->zbuf (valid until the next record). */
static int segr_expand(struct mfs_segr *r, struct mfs_rec *rec)
{
	if (rec->data_len > r->zcap) {
		uint8_t *n = realloc(r->zbuf, rec->data_len);
		if (!n)
			return -ENOMEM;
		r->zbuf = n;
		r->zcap = rec->data_len;
	}
	return mfs_rec_expand(rec, r->zbuf, r->zcap);
}

/* Check the tag of the record p[0..len) (decoded: @lsn). */
static bool segr_tag_ok(struct mfs_segr *r, const uint8_t *p, uint64_t len, uint8_t tag[])
{
	struct mfs_auth_piece pc = { p + MFS_REC_HEADER_SIZE,
				     (size_t)len - MFS_REC_HEADER_SIZE - MFS_TAG_SIZE };

	mfs_auth_tag(r->key, r->chain, p, &pc, 1, tag);
	return mfs_auth_tag_equal(tag, p + len - MFS_TAG_SIZE);
}

/*
 * A sealed record p[0..len) (MFS_SEG_F_ENC, not the trailer): its CRC,
 * then its tag (before anything is opened), then open it into r->dbuf as
 * the unsealed record would be and decode that. Returns 1 with @rec
 * decoded (rec->decrypted set) and *@seg_crc moved on, 0 with the verdict
 * set, or -errno.
 */
static int segr_open_sealed(struct mfs_segr *r, const uint8_t *p, uint64_t len,
			    struct mfs_rec *rec, uint32_t *seg_crc)
{
	uint16_t flags = mfs_get_le16(p + 6);
	uint64_t slen = len - MFS_REC_HEADER_SIZE - r->tag_len; /* sealed bytes */
	uint64_t plen = slen - MFS_ENC_OVERHEAD, dlen = MFS_REC_HEADER_SIZE + plen;
	uint8_t tag[MFS_TAG_SIZE];
	uint8_t *d;

	if (len < MFS_REC_HEADER_SIZE + r->tag_len + MFS_ENC_OVERHEAD || !(flags & MFS_REC_F_ENC) ||
	    mfs_get_le32(p + 28) != mfs_crc32c(mfs_crc32c(0, p, 28), p + MFS_REC_HEADER_SIZE,
					       len - MFS_REC_HEADER_SIZE)) {
		finish(r, r->off + len == r->info.file_size ? MFS_SEG_TORN : MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	if (r->key && !segr_tag_ok(r, p, len, tag)) {
		finish_unauth(r, MFS_AUTH_BAD_TAG, r->off, mfs_get_le64(p + 8));
		return 0;
	}
	if (dlen > r->dcap) {
		d = realloc(r->dbuf, dlen);
		if (!d)
			return -ENOMEM;
		r->dbuf = d;
		r->dcap = dlen;
	}
	d = r->dbuf;
	if (mfs_enc_open(r->ekey, p, r->info.uuid, p + MFS_REC_HEADER_SIZE, slen,
			 d + MFS_REC_HEADER_SIZE) < 0) {
		finish_unauth(r, MFS_AUTH_BAD_SEAL, r->off, mfs_get_le64(p + 8));
		return 0;
	}
	/* the record as it was before sealing, untagged, its CRC made anew */
	memcpy(d, p, MFS_REC_HEADER_SIZE);
	mfs_put_le32(d, (uint32_t)dlen);
	mfs_put_le16(d + 6, flags & (uint16_t)~(MFS_REC_F_ENC | MFS_REC_F_TAG));
	mfs_put_le32(d + 28, mfs_crc32c(mfs_crc32c(0, d, 28), d + MFS_REC_HEADER_SIZE, plen));
	if (mfs_rec_decode_v2(d, dlen, 0, rec, NULL) < 0 ||
	    (flags & ~(MFS_REC_F_ENC | MFS_REC_F_ZSTD)) != (r->tag_len ? MFS_REC_F_TAG : 0)) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	*seg_crc = mfs_crc32c(*seg_crc, p, len);
	rec->decrypted = true;
	return 1;
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
		if (r->info.version != MFS_FORMAT_VERSION && r->info.version != MFS_FORMAT_VERSION_2) {
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
	ret = r->info.version == MFS_FORMAT_VERSION ? header_v1_extra(h) : header_v2_extra(r, h);
	if (ret >= 0) {
		finish(r, MFS_SEG_CORRUPT, (uint64_t)ret);
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
	else if (r->keys && r->keys->n)
		header_auth(r, h);
	if (!r->done && (r->info.seg_flags & MFS_SEG_F_ENC)) {
		r->ekey = mfs_keyring_find_enc(r->keys, r->info.enc_key_id);
		if (!r->ekey)
			finish_unauth(r, MFS_AUTH_NO_ENC_KEY, 104, r->info.first_lsn);
	}
	return 0;
}

static int segr_open(struct mfs_segr *r, const struct mfs_segr_opts *o, struct mfs_segr **ret)
{
	int e;

	if (o && o->expect_uuid) {
		r->have_expect = true;
		memcpy(r->expect, o->expect_uuid, 16);
	}
	if (o)
		r->keys = o->keys;
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
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid };

	return mfs_segr_open_fd_opts(fd, &o, ret);
}

int mfs_segr_open_fd_opts(int fd, const struct mfs_segr_opts *o, struct mfs_segr **ret)
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
	return segr_open(r, o, ret);
}

int mfs_segr_open_buf(const void *buf, size_t len, const uint8_t *expect_uuid,
		      struct mfs_segr **ret)
{
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid };

	return mfs_segr_open_buf_opts(buf, len, &o, ret);
}

int mfs_segr_open_buf_opts(const void *buf, size_t len, const struct mfs_segr_opts *o,
			   struct mfs_segr **ret)
{
	static const uint8_t empty[1];
	struct mfs_segr *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->fd = -EBADF;
	r->buf = len ? buf : empty;
	r->info.file_size = len;
	return segr_open(r, o, ret);
}

struct mfs_segr *mfs_segr_free(struct mfs_segr *r)
{
	if (!r)
		return NULL;
	free(r->win);
	free(r->zbuf);
	free(r->dbuf);
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
	    r->off + len != r->info.file_size) {
		finish(r, MFS_SEG_CORRUPT, r->off);
	} else {
		finish(r, MFS_SEG_OK, 0);
	}
	return 0;
}

int mfs_segr_next(struct mfs_segr *r, struct mfs_rec *rec)
{
	uint8_t tag[MFS_TAG_SIZE];
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
	if (r->ekey && mfs_get_le16(p + 4) != MFS_REC_SEG_CLOSED) {
		e = segr_open_sealed(r, p, len, rec, &crc);
		if (e <= 0)
			return e;
	} else if ((r->info.version == MFS_FORMAT_VERSION_2 ? mfs_rec_decode_v2
							     : mfs_rec_decode_ext)(
			   p, (size_t)len, r->tag_len, rec, &crc) < 0) {
		/* the last record of the file may be half-written: torn, not corrupt */
		finish(r, r->off + len == r->info.file_size ? MFS_SEG_TORN : MFS_SEG_CORRUPT,
		       r->off);
		return 0;
	}
	if (r->key && !rec->decrypted && !segr_tag_ok(r, p, len, tag)) {
		finish_unauth(r, MFS_AUTH_BAD_TAG, r->off, rec->lsn);
		return 0;
	}
	if (rec->type == MFS_REC_SEG_CLOSED)
		return segr_check_trailer(r, rec, len);
	if (rec->lsn != r->next_lsn) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	if (rec->zstd_len && segr_expand(r, rec) < 0) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	if (r->tag_len) { /* checked or not, the chain value a segment hands on */
		memcpy(r->chain, p + len - MFS_TAG_SIZE, MFS_TAG_SIZE);
		memcpy(r->info.last_tag, r->chain, MFS_TAG_SIZE);
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
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid };

	return mfs_seg_scan_fd_opts(fd, &o, cb, arg, ret);
}

int mfs_seg_scan_fd_opts(int fd, const struct mfs_segr_opts *o,
			 int (*cb)(const struct mfs_rec *rec, void *arg), void *arg,
			 struct mfs_seg_info *ret)
{
	struct mfs_segr *r;
	struct mfs_rec *rec;
	int e;

	rec = malloc(sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	e = mfs_segr_open_fd_opts(fd, o, &r);
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
	case MFS_SEG_UNAUTH:
		return "unauthenticated";
	case MFS_SEG_NOT_SEGMENT:
		return "not-a-segment";
	}
	return "?";
}

static void unauth_format(const struct mfs_seg_info *i, char *out, size_t cap)
{
	char id[17];

	switch (i->auth_fail) {
	case MFS_AUTH_NO_TAGS:
		snprintf(out, cap, "not authenticated: format %" PRIu32 " segment without tags "
			 "(from LSN %" PRIu64 "), and this reader requires a key", i->version,
			 i->first_lsn);
		break;
	case MFS_AUTH_UNKNOWN_KEY:
		mfs_auth_id_format(i->key_id, id);
		snprintf(out, cap, "not authenticated: tagged with key id %s, not one of this "
			 "reader's keys (from LSN %" PRIu64 ")", id, i->first_lsn);
		break;
	case MFS_AUTH_NO_ENC_KEY:
		mfs_auth_id_format(i->enc_key_id, id);
		snprintf(out, cap, "encrypted with key id %s, not one of this reader's encryption "
			 "keys (from LSN %" PRIu64 ")", id, i->first_lsn);
		break;
	case MFS_AUTH_BAD_SEAL:
		snprintf(out, cap, "not authenticated: sealed record LSN %" PRIu64 " at byte %" PRIu64
			 " does not open (forged, altered, or sealed with another key; last valid "
			 "LSN %" PRIu64 ")", i->auth_lsn, i->bad_offset, i->last_lsn);
		break;
	default:
		snprintf(out, cap, "not authenticated: the tag of record LSN %" PRIu64 " at byte %"
			 PRIu64 " does not verify (forged, altered, or tagged with another key; "
			 "last authenticated LSN %" PRIu64 ")", i->auth_lsn, i->bad_offset,
			 i->last_lsn);
		break;
	}
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
		snprintf(out, cap, "unknown format version %" PRIu32 " (this reader knows 1 and 2)",
			 i->version);
		break;
	case MFS_SEG_UNAUTH:
		unauth_format(i, out, cap);
		break;
	case MFS_SEG_NOT_SEGMENT:
		snprintf(out, cap, "not a mirrorfs segment (bad magic)");
		break;
	}
}
