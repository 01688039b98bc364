/* SPDX-License-Identifier: MIT */
/*
 * segment.c - append-only journal segment files: the writer, and the
 * names of segment files.
 *
 * Writer invariants: appends are serialised by w->lock, so file order is
 * LSN order and the running whole-segment CRC is exact; every append is in
 * the file (page cache) before it returns, so a killed process loses
 * nothing appended; durability comes from mfs_segw_sync(), where the first
 * caller becomes the leader and issues one fdatasync for everyone waiting
 * (group commit). Space is preallocated ahead with FALLOC_FL_KEEP_SIZE.
 *
 * The zeroed window: an append past the file's size makes fdatasync
 * commit the new size and extent too (a file system journal commit and a
 * second flush). While appends are made durable a few at a time, the
 * writer keeps real, written zeros ahead of the last record, so that such
 * appends land inside the file and fdatasync flushes their data alone.
 * The window is refilled by a sync, before its fdatasync (which commits
 * the refill's size change, once per chunk), only when the bytes appended
 * since the last sync are few (big streaming appends would write every
 * byte twice for nothing), by a chunk in proportion to those bytes and to
 * the segment so far (a segment a second with one record in it writes
 * little). Readers stop at the zeros (segread.c); sealing cuts them off.
 * In format 2 a write
 * may be compressed, then sealed (encryption), then tagged (the
 * authentication chain), in that order, all under w->lock. The reader and
 * validator is segread.c.
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
#include "mirrorfs/rectype.h"

#define PREALLOC_CHUNK (4u << 20)
#define ZERO_SMALL (256u << 10) /* refill only after syncs of at most this much */
#define ZERO_MIN (32u << 10)    /* a refill's chunk: at least, */
#define ZERO_MAX (1u << 20)     /* at most, */
#define ZERO_PER_SYNC 64u       /* and else this many times the bytes of a sync */
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
	uint64_t zero_end;     /* protected by lock: [size, zero_end) holds written zeros */
	uint64_t fence_size;   /* protected by lock: size at the last sync's refill check */
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
	w->size = w->zero_end = w->fence_size = MFS_SEG_HEADER_SIZE;
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
	w->size = w->reserved_end = w->zero_end = w->fence_size = info.valid_end;
	w->seg_crc = info.crc_valid_end;
	w->records = info.records;
	w->written_lsn = info.last_lsn;
	w->durable_lsn = info.last_lsn;
	if (ret_cut) /* the zeroed window is no torn tail */
		*ret_cut = (info.verdict == MFS_SEG_TORN ? info.zeros_from : info.file_size) -
			   info.valid_end;
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
	const struct mfs_rec_type_info *ti = mfs_rec_type_info(rec->type);
	size_t need;

	if (!w->zstd_level || !ti || !(ti->flags & MFS_RT_ZSTD) || rec->data_len < 64)
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

/* Blobs from this size on are read once for both CRCs (blob_crc()). */
#define CRC_COMBINE_MIN (64u << 10)

/*
 * The CRC of the @blob bytes that follow the record encoded in
 * head[0..head_len), from the record's CRC and that of its head alone:
 * the segment's CRC then takes it in with mfs_crc32c_combine(), and the
 * blob is read once (by the encoder) instead of twice.
 */
static uint32_t blob_crc(const uint8_t *head, size_t head_len, size_t blob)
{
	uint32_t h = mfs_crc32c(mfs_crc32c(0, head, 28), head + MFS_REC_HEADER_SIZE,
				head_len - MFS_REC_HEADER_SIZE);

	return mfs_get_le32(head + 28) ^ mfs_crc32c_combine(h, 0, blob);
}

int mfs_segw_append(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	return mfs_segw_append_publish(w, rec, ret_lsn, NULL);
}

static int segw_append(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
		       _Atomic uint64_t *publish, uint64_t *ret_data_off);

int mfs_segw_append_publish(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
			    _Atomic uint64_t *publish)
{
	return segw_append(w, rec, ret_lsn, publish, NULL);
}

int mfs_segw_append_at(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
		       uint64_t *ret_data_off)
{
	return segw_append(w, rec, ret_lsn, NULL, ret_data_off);
}

static int segw_append(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
		       _Atomic uint64_t *publish, uint64_t *ret_data_off)
{
	uint8_t head[HEAD_MAX], tag[MFS_TAG_SIZE];
	const void *data = rec->data;
	struct iovec iov[3];
	size_t head_len, total, blob;
	uint32_t crc, bcrc = 0;
	bool combine;
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
	if (mfs_rec_type_has_blob(rec->type) && blob) {
		iov[cnt++] = (struct iovec){ (void *)rec->data, blob };
		total += blob;
	}
	combine = cnt > 1 && !w->enc && blob >= CRC_COMBINE_MIN;
	if (combine) /* before the tag changes the record's CRC */
		bcrc = blob_crc(head, head_len, blob);
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
		crc = combine && i == 1 ? mfs_crc32c_combine(crc, bcrc, blob)
					: mfs_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	r = mfs_pwritev_all(w->fd, iov, cnt, w->size);
	if (r < 0) {
		/* Part of the record may be in the file: cut it. Out of space
		 * (a file system without fallocate, or one that needs more
		 * than the data), the file is then as before and the writer
		 * stays usable; else refuse more. */
		if (ftruncate(w->fd, (off_t)w->size) < 0 || (r != -ENOSPC && r != -EDQUOT))
			w->broken = r;
		w->reserved_end = w->zero_end = w->size; /* ask the file system again */
		goto out_unlock;
	}
	if (ret_data_off) /* the data as given: iov[1], not compressed, not sealed */
		*ret_data_off = cnt > 1 && !w->enc && !rec->zstd_len ? w->size + head_len
								     : UINT64_MAX;
	w->last_off = w->size;
	w->last_crc = w->seg_crc;
	w->seg_crc = crc;
	if (w->auth) {
		memcpy(w->last_chain, w->chain, MFS_TAG_SIZE);
		memcpy(w->chain, tag, MFS_TAG_SIZE);
	}
	w->size += total;
	w->zero_end = MFS_MAX(w->zero_end, w->size);
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
		/* the truncation took the zeroed window and the preallocation too */
		w->size = w->reserved_end = w->zero_end = w->last_off;
		w->fence_size = MFS_MIN(w->fence_size, w->size);
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

/*
 * Refill the zeroed window (see the top of the file) when the bytes
 * appended since the last check are few and it runs low: preallocate,
 * then write zeros up to a chunk past the last record. A failure leaves
 * the window as it was (the zeros that were written read as the end).
 * Called by a sync before it takes sync_lock.
 */
static void refill_window(struct mfs_segw *w)
{
	static const uint8_t zeros[64u << 10];
	struct iovec iov[ZERO_MAX / sizeof(zeros) + 1];
	uint64_t since, chunk, from, to;
	int cnt = 0;

	pthread_mutex_lock(&w->lock);
	since = w->size - w->fence_size;
	w->fence_size = w->size;
	if (w->broken || w->sealed || since == 0 || since > ZERO_SMALL)
		goto out_unlock;
	chunk = MFS_MIN(since * ZERO_PER_SYNC, (uint64_t)ZERO_MAX);
	chunk = MFS_MIN(chunk, MFS_MAX(w->size, (uint64_t)ZERO_MIN));
	if (w->zero_end - w->size >= chunk / 2)
		goto out_unlock;
	from = w->zero_end;
	to = (w->size + chunk + 4095) & ~(uint64_t)4095;
	if (reserve_locked(w, to - w->size) < 0)
		goto out_unlock;
	for (uint64_t n = to - from; n && cnt < (int)ARRAY_SIZE(iov); cnt++) {
		iov[cnt] = (struct iovec){ (void *)zeros, (size_t)MFS_MIN(n, sizeof(zeros)) };
		n -= iov[cnt].iov_len;
	}
	if (mfs_pwritev_all(w->fd, iov, cnt, from) == 0)
		w->zero_end = to;
out_unlock:
	pthread_mutex_unlock(&w->lock);
}

int mfs_segw_sync(struct mfs_segw *w, uint64_t lsn)
{
	int r = 0;

	refill_window(w);
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

int mfs_segw_trim(struct mfs_segw *w)
{
	int r = 0;

	pthread_mutex_lock(&w->lock);
	if (!w->broken && w->zero_end > w->size) {
		if (ftruncate(w->fd, (off_t)w->size) < 0)
			r = -errno;
		else
			w->zero_end = w->reserved_end = w->size;
	}
	pthread_mutex_unlock(&w->lock);
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
