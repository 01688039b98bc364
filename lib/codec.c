/* SPDX-License-Identifier: MIT */
/*
 * codec.c - encode and decode journal records (format.h).
 *
 * Encoding writes the header and every fixed field into a small buffer;
 * the one variable blob of a record (write data, xattr value) is always
 * last and is not copied: the caller writes it after the head, and the CRC
 * in the header already covers it. Decoding goes through a bounds-checked
 * cursor and trusts nothing: every length is checked against the bytes
 * that are really there and against the format's maxima, and the payload
 * must be consumed exactly.
 */
#include <zstd.h>

#include "mirrorfs/record.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mirrorfs/crc32c.h"
#include "mirrorfs/json.h"
#include "mirrorfs/macro.h"

/* ------------------------------------------------------------ type table */

/* Which fields a type carries, in payload order. */
#define F_PATH (1u << 0)
#define F_PATH2 (1u << 1)   /* str16 after path */
#define F_TAIL_U32 (1u << 2) /* a trailing u32 flags (rename) */

static const char *const type_names[] = {
	[MFS_REC_WRITE] = "write",	   [MFS_REC_TRUNCATE] = "truncate",
	[MFS_REC_FALLOCATE] = "fallocate", [MFS_REC_MKNOD] = "mknod",
	[MFS_REC_MKDIR] = "mkdir",	   [MFS_REC_UNLINK] = "unlink",
	[MFS_REC_RMDIR] = "rmdir",	   [MFS_REC_RENAME] = "rename",
	[MFS_REC_LINK] = "link",	   [MFS_REC_SYMLINK] = "symlink",
	[MFS_REC_CHMOD] = "chmod",	   [MFS_REC_CHOWN] = "chown",
	[MFS_REC_UTIMENS] = "utimens",	   [MFS_REC_SETXATTR] = "setxattr",
	[MFS_REC_REMOVEXATTR] = "removexattr", [MFS_REC_SNAPSHOT] = "snapshot",
	[MFS_REC_CHECKPOINT] = "checkpoint", [MFS_REC_SEG_CLOSED] = "segment-closed",
};

const char *mfs_rec_type_name(enum mfs_rec_type type)
{
	if ((unsigned)type >= ARRAY_SIZE(type_names))
		return NULL;
	return type_names[type];
}

bool mfs_rec_type_is_valid(uint32_t type)
{
	return type < ARRAY_SIZE(type_names) && type_names[type];
}

bool mfs_rec_type_is_marker(enum mfs_rec_type type)
{
	return type == MFS_REC_SNAPSHOT || type == MFS_REC_CHECKPOINT ||
	       type == MFS_REC_SEG_CLOSED;
}

/* ------------------------------------------------------------ encoding */

struct wcur {
	uint8_t *p, *end;
	bool overflow;
};

static void put(struct wcur *c, const void *v, size_t n)
{
	if ((size_t)(c->end - c->p) < n) {
		c->overflow = true;
		return;
	}
	memcpy(c->p, v, n);
	c->p += n;
}

static void put16(struct wcur *c, uint16_t v)
{
	uint8_t b[2];
	mfs_put_le16(b, v);
	put(c, b, 2);
}

static void put32(struct wcur *c, uint32_t v)
{
	uint8_t b[4];
	mfs_put_le32(b, v);
	put(c, b, 4);
}

static void put64(struct wcur *c, uint64_t v)
{
	uint8_t b[8];
	mfs_put_le64(b, v);
	put(c, b, 8);
}

static void put_str(struct wcur *c, const char *s)
{
	size_t n = strlen(s);
	put16(c, (uint16_t)n);
	put(c, s, n);
}

static bool str_ok(const char *s, size_t min, size_t max)
{
	size_t n = strnlen(s, max + 1);
	return n >= min && n <= max;
}

/* Check what encode would otherwise silently truncate. */
static bool rec_is_encodable(const struct mfs_rec *rec)
{
	if (!mfs_rec_type_is_valid(rec->type))
		return false;
	if (!mfs_rec_type_is_marker(rec->type) && !str_ok(rec->path, 1, MFS_PATH_MAX))
		return false;
	switch (rec->type) {
	case MFS_REC_WRITE:
		if (rec->zstd_len && (!rec->data_len || rec->zstd_len > MFS_WRITE_MAX))
			return false;
		return rec->data_len <= MFS_WRITE_MAX && (rec->data || !rec->data_len);
	case MFS_REC_RENAME:
	case MFS_REC_LINK:
	case MFS_REC_SYMLINK:
		return str_ok(rec->path2, 1, MFS_PATH_MAX);
	case MFS_REC_SETXATTR:
		return str_ok(rec->path2, 1, MFS_XATTR_NAME_MAX) &&
		       rec->data_len <= MFS_XATTR_VALUE_MAX && (rec->data || !rec->data_len);
	case MFS_REC_REMOVEXATTR:
		return str_ok(rec->path2, 1, MFS_XATTR_NAME_MAX);
	case MFS_REC_SNAPSHOT:
		return str_ok(rec->path2, 1, MFS_SNAPSHOT_NAME_MAX);
	default:
		return true;
	}
}

/* The payload fields of @rec except the trailing blob's bytes. */
static void encode_payload(struct wcur *c, const struct mfs_rec *rec)
{
	if (!mfs_rec_type_is_marker(rec->type))
		put_str(c, rec->path);
	switch (rec->type) {
	case MFS_REC_WRITE:
		put64(c, rec->offset);
		if (rec->zstd_len)
			put32(c, rec->data_len); /* then the frame's size */
		put32(c, rec->zstd_len ? rec->zstd_len : rec->data_len);
		break;
	case MFS_REC_TRUNCATE:
		put64(c, rec->length);
		break;
	case MFS_REC_FALLOCATE:
		put32(c, rec->mode);
		put64(c, rec->offset);
		put64(c, rec->length);
		break;
	case MFS_REC_MKNOD:
		put32(c, rec->mode);
		put64(c, rec->rdev);
		put32(c, rec->uid);
		put32(c, rec->gid);
		break;
	case MFS_REC_MKDIR:
		put32(c, rec->mode);
		put32(c, rec->uid);
		put32(c, rec->gid);
		break;
	case MFS_REC_UNLINK:
	case MFS_REC_RMDIR:
		break;
	case MFS_REC_RENAME:
		put_str(c, rec->path2);
		put32(c, rec->flags);
		break;
	case MFS_REC_LINK:
		put_str(c, rec->path2);
		break;
	case MFS_REC_SYMLINK:
		put_str(c, rec->path2);
		put32(c, rec->uid);
		put32(c, rec->gid);
		break;
	case MFS_REC_CHMOD:
		put32(c, rec->mode);
		break;
	case MFS_REC_CHOWN:
		put32(c, rec->uid);
		put32(c, rec->gid);
		break;
	case MFS_REC_UTIMENS:
		put64(c, (uint64_t)rec->atime_sec);
		put32(c, rec->atime_nsec);
		put64(c, (uint64_t)rec->mtime_sec);
		put32(c, rec->mtime_nsec);
		break;
	case MFS_REC_SETXATTR:
		put_str(c, rec->path2);
		put32(c, rec->flags);
		put32(c, rec->data_len);
		break;
	case MFS_REC_REMOVEXATTR:
	case MFS_REC_SNAPSHOT:
		put_str(c, rec->path2);
		break;
	case MFS_REC_CHECKPOINT:
		put64(c, rec->length);
		break;
	case MFS_REC_SEG_CLOSED:
		put64(c, rec->trailer.last_lsn);
		put64(c, rec->trailer.rec_count);
		put32(c, rec->trailer.seg_crc);
		put32(c, 0);
		break;
	}
}

static bool has_blob(enum mfs_rec_type t)
{
	return t == MFS_REC_WRITE || t == MFS_REC_SETXATTR;
}

/* Bytes of the blob as stored: a write's frame when compressed. */
static uint32_t blob_len(const struct mfs_rec *rec)
{
	return rec->type == MFS_REC_WRITE && rec->zstd_len ? rec->zstd_len : rec->data_len;
}

size_t mfs_rec_head_size(const struct mfs_rec *rec)
{
	uint8_t scratch[2 * (MFS_PATH_MAX + 2) + 64];
	struct wcur c = { scratch, scratch + sizeof(scratch), false };

	encode_payload(&c, rec);
	return MFS_REC_HEADER_SIZE + (size_t)(c.p - scratch);
}

int mfs_rec_encode(const struct mfs_rec *rec, void *buf, size_t cap, size_t *ret_head)
{
	return mfs_rec_encode_ext(rec, 0, buf, cap, ret_head);
}

int mfs_rec_encode_ext(const struct mfs_rec *rec, uint32_t tag_len, void *buf, size_t cap,
		       size_t *ret_head)
{
	uint8_t *b = buf;
	struct wcur c = { b + MFS_REC_HEADER_SIZE, b + cap, false };
	size_t head, total;
	uint32_t crc;

	if (!rec_is_encodable(rec))
		return -EINVAL;
	if (cap < MFS_REC_HEADER_SIZE)
		return -ENOBUFS;
	encode_payload(&c, rec);
	if (c.overflow)
		return -ENOBUFS;
	head = (size_t)(c.p - b);
	total = head + (has_blob(rec->type) ? blob_len(rec) : 0) + tag_len;
	if (total > MFS_REC_MAX)
		return -EINVAL;
	mfs_put_le32(b, (uint32_t)total);
	mfs_put_le16(b + 4, (uint16_t)rec->type);
	mfs_put_le16(b + 6, (tag_len ? MFS_REC_F_TAG : 0) | (rec->zstd_len ? MFS_REC_F_ZSTD : 0));
	mfs_put_le64(b + 8, rec->lsn);
	mfs_put_le64(b + 16, rec->time_ns);
	mfs_put_le32(b + 24, 0);
	crc = mfs_crc32c(0, b, 28);
	crc = mfs_crc32c(crc, b + MFS_REC_HEADER_SIZE, head - MFS_REC_HEADER_SIZE);
	if (has_blob(rec->type) && blob_len(rec))
		crc = mfs_crc32c(crc, rec->data, blob_len(rec));
	mfs_put_le32(b + 28, crc);
	*ret_head = head;
	return 0;
}

/* ------------------------------------------------------------ decoding */

struct rcur {
	const uint8_t *p, *end;
};

static int get(struct rcur *c, void *v, size_t n)
{
	if ((size_t)(c->end - c->p) < n)
		return -EBADMSG;
	memcpy(v, c->p, n);
	c->p += n;
	return 0;
}

static int get32(struct rcur *c, uint32_t *v)
{
	uint8_t b[4];
	if (get(c, b, 4) < 0)
		return -EBADMSG;
	*v = mfs_get_le32(b);
	return 0;
}

static int get64(struct rcur *c, uint64_t *v)
{
	uint8_t b[8];
	if (get(c, b, 8) < 0)
		return -EBADMSG;
	*v = mfs_get_le64(b);
	return 0;
}

/* A str16 of min..max bytes without NUL, copied NUL-terminated into out. */
static int get_str(struct rcur *c, char *out, size_t min, size_t max)
{
	uint8_t b[2];
	uint16_t n;

	if (get(c, b, 2) < 0)
		return -EBADMSG;
	n = mfs_get_le16(b);
	if (n < min || n > max || (size_t)(c->end - c->p) < n)
		return -EBADMSG;
	if (memchr(c->p, 0, n))
		return -EBADMSG;
	memcpy(out, c->p, n);
	out[n] = 0;
	c->p += n;
	return 0;
}

/* A blob32 of at most max bytes, pointed to (not copied). */
static int get_blob(struct rcur *c, struct mfs_rec *rec, uint32_t max)
{
	if (get32(c, &rec->data_len) < 0 || rec->data_len > max ||
	    (size_t)(c->end - c->p) < rec->data_len)
		return -EBADMSG;
	rec->data = c->p;
	c->p += rec->data_len;
	return 0;
}

/* A compressed write's u32 size (1..MFS_WRITE_MAX) and blob32 frame. */
static int get_frame(struct rcur *c, struct mfs_rec *rec)
{
	uint32_t size;

	if (get32(c, &size) < 0 || size == 0 || size > MFS_WRITE_MAX ||
	    get_blob(c, rec, MFS_WRITE_MAX) < 0 || rec->data_len == 0)
		return -EBADMSG;
	rec->zstd_len = rec->data_len;
	rec->data_len = size;
	return 0;
}

static int decode_payload(struct rcur *c, struct mfs_rec *rec)
{
	uint64_t u = 0;
	uint32_t pad = 0;
	int r = 0;

	if (!mfs_rec_type_is_marker(rec->type) && get_str(c, rec->path, 1, MFS_PATH_MAX) < 0)
		return -EBADMSG;
	switch (rec->type) {
	case MFS_REC_WRITE:
		if (rec->zstd_len) /* flagged: u32 size, then blob32 frame */
			return get64(c, &rec->offset) ?: get_frame(c, rec) ?: (c->p != c->end ? -EBADMSG : 0);
		r = get64(c, &rec->offset) ?: get_blob(c, rec, MFS_WRITE_MAX);
		break;
	case MFS_REC_TRUNCATE:
		r = get64(c, &rec->length);
		break;
	case MFS_REC_FALLOCATE:
		r = get32(c, &rec->mode) ?: get64(c, &rec->offset) ?: get64(c, &rec->length);
		break;
	case MFS_REC_MKNOD:
		r = get32(c, &rec->mode) ?: get64(c, &rec->rdev) ?: get32(c, &rec->uid)
			?: get32(c, &rec->gid);
		break;
	case MFS_REC_MKDIR:
		r = get32(c, &rec->mode) ?: get32(c, &rec->uid) ?: get32(c, &rec->gid);
		break;
	case MFS_REC_UNLINK:
	case MFS_REC_RMDIR:
		break;
	case MFS_REC_RENAME:
		r = get_str(c, rec->path2, 1, MFS_PATH_MAX) ?: get32(c, &rec->flags);
		break;
	case MFS_REC_LINK:
		r = get_str(c, rec->path2, 1, MFS_PATH_MAX);
		break;
	case MFS_REC_SYMLINK:
		r = get_str(c, rec->path2, 1, MFS_PATH_MAX) ?: get32(c, &rec->uid)
			?: get32(c, &rec->gid);
		break;
	case MFS_REC_CHMOD:
		r = get32(c, &rec->mode);
		break;
	case MFS_REC_CHOWN:
		r = get32(c, &rec->uid) ?: get32(c, &rec->gid);
		break;
	case MFS_REC_UTIMENS:
		r = get64(c, &u) ?: get32(c, &rec->atime_nsec);
		rec->atime_sec = (int64_t)u;
		r = r ?: get64(c, &u) ?: get32(c, &rec->mtime_nsec);
		rec->mtime_sec = (int64_t)u;
		break;
	case MFS_REC_SETXATTR:
		r = get_str(c, rec->path2, 1, MFS_XATTR_NAME_MAX) ?: get32(c, &rec->flags)
			?: get_blob(c, rec, MFS_XATTR_VALUE_MAX);
		break;
	case MFS_REC_REMOVEXATTR:
		r = get_str(c, rec->path2, 1, MFS_XATTR_NAME_MAX);
		break;
	case MFS_REC_SNAPSHOT:
		r = get_str(c, rec->path2, 1, MFS_SNAPSHOT_NAME_MAX);
		break;
	case MFS_REC_CHECKPOINT:
		r = get64(c, &rec->length);
		break;
	case MFS_REC_SEG_CLOSED:
		r = get64(c, &rec->trailer.last_lsn) ?: get64(c, &rec->trailer.rec_count)
			?: get32(c, &rec->trailer.seg_crc) ?: get32(c, &pad);
		if (r == 0 && pad)
			r = -EBADMSG;
		break;
	}
	if (r < 0 || c->p != c->end)
		return -EBADMSG;
	return 0;
}

int mfs_rec_decode(const void *buf, size_t len, struct mfs_rec *ret)
{
	return mfs_rec_decode_seg(buf, len, ret, NULL);
}

int mfs_rec_decode_seg(const void *buf, size_t len, struct mfs_rec *ret, uint32_t *seg_crc)
{
	return mfs_rec_decode_ext(buf, len, 0, ret, seg_crc);
}

static int decode(const void *buf, size_t len, uint32_t tag_len, bool v2, struct mfs_rec *ret,
		  uint32_t *seg_crc);

int mfs_rec_decode_ext(const void *buf, size_t len, uint32_t tag_len, struct mfs_rec *ret,
		       uint32_t *seg_crc)
{
	return decode(buf, len, tag_len, false, ret, seg_crc);
}

int mfs_rec_decode_v2(const void *buf, size_t len, uint32_t tag_len, struct mfs_rec *ret,
		      uint32_t *seg_crc)
{
	return decode(buf, len, tag_len, true, ret, seg_crc);
}

static int decode(const void *buf, size_t len, uint32_t tag_len, bool v2, struct mfs_rec *ret,
		  uint32_t *seg_crc)
{
	const uint8_t *b = buf;
	uint16_t flags;
	struct rcur c;
	uint32_t crc, sc = 0;
	int e;

	if (len < MFS_REC_HEADER_SIZE + tag_len || len > MFS_REC_MAX || mfs_get_le32(b) != len)
		return -EBADMSG;
	crc = mfs_crc32c(0, b, 28);
	if (seg_crc) { /* both CRCs in one pass over the bulk */
		sc = mfs_crc32c(*seg_crc, b, MFS_REC_HEADER_SIZE);
		mfs_crc32c_pair(&crc, &sc, b + MFS_REC_HEADER_SIZE, len - MFS_REC_HEADER_SIZE);
	} else {
		crc = mfs_crc32c(crc, b + MFS_REC_HEADER_SIZE, len - MFS_REC_HEADER_SIZE);
	}
	if (crc != mfs_get_le32(b + 28))
		return -EBADMSG;
	flags = mfs_get_le16(b + 6);
	if (v2 && mfs_get_le16(b + 4) == MFS_REC_WRITE)
		flags &= (uint16_t)~MFS_REC_F_ZSTD;
	if (!mfs_rec_type_is_valid(mfs_get_le16(b + 4)) ||
	    flags != (tag_len ? MFS_REC_F_TAG : 0) || mfs_get_le32(b + 24) != 0)
		return -EBADMSG;
	ret->type = (enum mfs_rec_type)mfs_get_le16(b + 4);
	ret->lsn = mfs_get_le64(b + 8);
	ret->time_ns = mfs_get_le64(b + 16);
	ret->path[0] = ret->path2[0] = 0;
	memset(&ret->offset, 0, sizeof(*ret) - offsetof(struct mfs_rec, offset));
	if (v2 && (mfs_get_le16(b + 6) & MFS_REC_F_ZSTD))
		ret->zstd_len = 1; /* decode_payload reads the frame */
	c.p = b + MFS_REC_HEADER_SIZE;
	c.end = b + len - tag_len;
	e = decode_payload(&c, ret);
	if (e == 0 && seg_crc)
		*seg_crc = sc;
	return e;
}

int mfs_rec_expand(struct mfs_rec *rec, void *buf, size_t cap)
{
	size_t n;

	if (!rec->zstd_len)
		return 0;
	if (cap < rec->data_len)
		return -ENOBUFS;
	n = ZSTD_decompress(buf, rec->data_len, rec->data, rec->zstd_len);
	if (ZSTD_isError(n) || n != rec->data_len)
		return -EBADMSG;
	rec->data = buf;
	rec->was_zstd_len = rec->zstd_len;
	rec->zstd_len = 0;
	return 0;
}

int mfs_rec_compress(struct mfs_rec *rec, struct ZSTD_CCtx_s *cctx, int level, void *buf,
		     size_t cap)
{
	size_t n;

	if (rec->type != MFS_REC_WRITE || rec->data_len < 64 || rec->zstd_len)
		return 0;
	n = ZSTD_compressCCtx(cctx, buf, cap, rec->data, rec->data_len, level);
	if (ZSTD_isError(n) || n + 4 >= rec->data_len) /* +4: the size field */
		return 0;
	rec->data = buf;
	rec->zstd_len = (uint32_t)n;
	return 1;
}

/* ------------------------------------------------------------ formatting */

static void fmt_time(uint64_t ns, char *out, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(ns % 1000000000u / 1000u));
}

/* Arguments of a record after its path, as "key=value" text. */
static void fmt_args(const struct mfs_rec *rec, char *out, size_t cap)
{
	out[0] = 0;
	switch (rec->type) {
	case MFS_REC_WRITE:
		if (rec->was_zstd_len || rec->zstd_len)
			snprintf(out, cap, "offset=%" PRIu64 " length=%" PRIu32 " zstd=%" PRIu32,
				 rec->offset, rec->data_len,
				 rec->zstd_len ? rec->zstd_len : rec->was_zstd_len);
		else
			snprintf(out, cap, "offset=%" PRIu64 " length=%" PRIu32, rec->offset,
				 rec->data_len);
		break;
	case MFS_REC_TRUNCATE:
		snprintf(out, cap, "size=%" PRIu64, rec->length);
		break;
	case MFS_REC_FALLOCATE:
		snprintf(out, cap, "mode=0x%" PRIx32 " offset=%" PRIu64 " length=%" PRIu64, rec->mode,
			 rec->offset, rec->length);
		break;
	case MFS_REC_MKNOD:
		snprintf(out, cap, "mode=0%" PRIo32 " rdev=%" PRIu64 " uid=%" PRIu32 " gid=%" PRIu32,
			 rec->mode, rec->rdev, rec->uid, rec->gid);
		break;
	case MFS_REC_MKDIR:
		snprintf(out, cap, "mode=0%" PRIo32 " uid=%" PRIu32 " gid=%" PRIu32, rec->mode,
			 rec->uid, rec->gid);
		break;
	case MFS_REC_RENAME:
		snprintf(out, cap, "flags=0x%" PRIx32, rec->flags);
		break;
	case MFS_REC_SYMLINK:
		snprintf(out, cap, "uid=%" PRIu32 " gid=%" PRIu32, rec->uid, rec->gid);
		break;
	case MFS_REC_CHMOD:
		snprintf(out, cap, "mode=0%" PRIo32, rec->mode);
		break;
	case MFS_REC_CHOWN:
		snprintf(out, cap, "uid=%" PRId32 " gid=%" PRId32, (int32_t)rec->uid,
			 (int32_t)rec->gid);
		break;
	case MFS_REC_UTIMENS:
		snprintf(out, cap, "atime=%" PRId64 ".%09" PRIu32 " mtime=%" PRId64 ".%09" PRIu32,
			 rec->atime_sec, rec->atime_nsec, rec->mtime_sec, rec->mtime_nsec);
		break;
	case MFS_REC_SETXATTR:
		snprintf(out, cap, "flags=0x%" PRIx32 " length=%" PRIu32, rec->flags, rec->data_len);
		break;
	case MFS_REC_CHECKPOINT:
		snprintf(out, cap, "durable_lsn=%" PRIu64, rec->length);
		break;
	case MFS_REC_SEG_CLOSED:
		snprintf(out, cap, "last_lsn=%" PRIu64 " records=%" PRIu64 " crc=0x%08" PRIx32,
			 rec->trailer.last_lsn, rec->trailer.rec_count, rec->trailer.seg_crc);
		break;
	default:
		break;
	}
}

/* The second name of a record and how to label it, or NULL. */
static const char *second_name(const struct mfs_rec *rec)
{
	switch (rec->type) {
	case MFS_REC_RENAME:
	case MFS_REC_LINK:
		return "to";
	case MFS_REC_SYMLINK:
		return "target";
	case MFS_REC_SETXATTR:
	case MFS_REC_REMOVEXATTR:
		return "name";
	case MFS_REC_SNAPSHOT:
		return "snapshot";
	default:
		return NULL;
	}
}

/* Quote a string for a terminal: printable bytes as is, others as \xNN. */
static void quote(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s && o + 5 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '\\')
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = 0;
}

void mfs_rec_format(const struct mfs_rec *rec, char *out, size_t cap)
{
	char when[80], args[160], p1[4 * MFS_PATH_MAX + 8], p2[4 * MFS_PATH_MAX + 8];
	const char *label = second_name(rec);
	const char *name = mfs_rec_type_name(rec->type);

	fmt_time(rec->time_ns, when, sizeof(when));
	fmt_args(rec, args, sizeof(args));
	quote(rec->path, p1, sizeof(p1));
	quote(rec->path2, p2, sizeof(p2));
	snprintf(out, cap, "%" PRIu64 " %s %-11s%s%s%s%s%s%s%s%s%s", rec->lsn, when,
		 name ? name : "?", rec->path[0] ? " '" : "", p1, rec->path[0] ? "'" : "",
		 label ? " " : "", label ? label : "", label ? "='" : "", label ? p2 : "",
		 label ? "'" : "", args[0] ? " " : "");
	if (args[0])
		strncat(out, args, cap - strlen(out) - 1);
}

void mfs_rec_format_json(const struct mfs_rec *rec, char *out, size_t cap)
{
	char p1[6 * MFS_PATH_MAX + 8], p2[6 * MFS_PATH_MAX + 8], args[160], *a, *save = NULL;
	const char *label = second_name(rec);
	const char *name = mfs_rec_type_name(rec->type);
	size_t o;

	mfs_json_str(rec->path, true, p1, sizeof(p1));
	mfs_json_str(rec->path2, true, p2, sizeof(p2));
	fmt_args(rec, args, sizeof(args));
	o = (size_t)snprintf(out, cap, "{\"lsn\":%" PRIu64 ",\"time_ns\":%" PRIu64 ",\"type\":\"%s\"",
			     rec->lsn, rec->time_ns, name ? name : "?");
	if (rec->path[0] && o < cap)
		o += (size_t)snprintf(out + o, cap - o, ",\"path\":%s", p1);
	if (label && o < cap)
		o += (size_t)snprintf(out + o, cap - o, ",\"%s\":%s", label, p2);
	/* args are "k=v k=v" with numeric values: emit them as JSON numbers/strings */
	for (a = strtok_r(args, " ", &save); a && o < cap; a = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(a, '=');
		if (!eq)
			continue;
		*eq = 0;
		if (eq[1] == '0' && eq[2])
			o += (size_t)snprintf(out + o, cap - o, ",\"%s\":\"%s\"", a, eq + 1);
		else
			o += (size_t)snprintf(out + o, cap - o, ",\"%s\":%s", a, eq + 1);
	}
	if (o < cap)
		snprintf(out + o, cap - o, "}");
}
