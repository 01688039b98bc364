/* SPDX-License-Identifier: MIT */
/*
 * test_codec.c - unit tests of lib/codec: record encode/decode.
 *
 * Every record type round-trips with every field it carries (encode with
 * mfs_rec_encode, append the data blob, decode the concatenation with
 * mfs_rec_decode, compare field by field). Malformed records are rejected
 * with -EBADMSG: bad CRC, unknown type, length mismatches, NUL in a
 * string, oversize strings and blobs, payloads not consumed exactly. Raw
 * records are built by hand here (build_raw) with a correct CRC, so each
 * check is reached on its own and not just caught by the CRC.
 */
#include "mirrorfs/record.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/crc32c.h"
#include "mirrorfs/format.h"
#include "mirrorfs/macro.h"
#include "tests.h"

static const enum mfs_rec_type all_types[] = {
	MFS_REC_WRITE,	    MFS_REC_TRUNCATE,	MFS_REC_FALLOCATE,   MFS_REC_MKNOD,
	MFS_REC_MKDIR,	    MFS_REC_UNLINK,	MFS_REC_RMDIR,	     MFS_REC_RENAME,
	MFS_REC_LINK,	    MFS_REC_SYMLINK,	MFS_REC_CHMOD,	     MFS_REC_CHOWN,
	MFS_REC_UTIMENS,    MFS_REC_SETXATTR,	MFS_REC_REMOVEXATTR, MFS_REC_SNAPSHOT,
	MFS_REC_CHECKPOINT, MFS_REC_SEG_CLOSED,
};

static const uint8_t blob[] = "hello, journal\0with a NUL and \xff\xfe bytes";

/* Fill @rec (zeroed by the caller) with distinctive values for every field @t carries. */
static void fill_rec(struct mfs_rec *rec, enum mfs_rec_type t)
{
	rec->type = t;
	rec->lsn = 0x0102030405060708ull + t;
	rec->time_ns = 1700000000123456789ull + t;
	if (!mfs_rec_type_is_marker(t))
		snprintf(rec->path, sizeof(rec->path), "dir/sub dir/file-%d.db", (int)t);
	switch (t) {
	case MFS_REC_WRITE:
		rec->offset = 0xfedcba9876543210ull;
		rec->data = blob;
		rec->data_len = sizeof(blob);
		break;
	case MFS_REC_TRUNCATE:
		rec->length = 0x123456789abcull;
		break;
	case MFS_REC_FALLOCATE:
		rec->mode = 0x3; /* KEEP_SIZE | PUNCH_HOLE */
		rec->offset = 1ull << 40;
		rec->length = (1ull << 33) + 5;
		break;
	case MFS_REC_MKNOD:
		rec->mode = 0020644; /* S_IFCHR | 0644 */
		rec->rdev = 0x0000000100000005ull;
		rec->uid = 1000;
		rec->gid = 0xfffffffeu;
		break;
	case MFS_REC_MKDIR:
		rec->mode = 0755;
		rec->uid = 4242;
		rec->gid = 4343;
		break;
	case MFS_REC_RENAME:
		strcpy(rec->path2, "other/new name");
		rec->flags = 1u << 1; /* RENAME_EXCHANGE */
		break;
	case MFS_REC_LINK:
		strcpy(rec->path2, "hard/link");
		break;
	case MFS_REC_SYMLINK:
		strcpy(rec->path2, "../../target/\xc3\xa9t\xc3\xa9");
		rec->uid = 7;
		rec->gid = 8;
		break;
	case MFS_REC_CHMOD:
		rec->mode = 04755;
		break;
	case MFS_REC_CHOWN:
		rec->uid = 0xffffffffu; /* unchanged */
		rec->gid = 99;
		break;
	case MFS_REC_UTIMENS:
		rec->atime_sec = -5; /* before the epoch */
		rec->atime_nsec = 999999999;
		rec->mtime_sec = INT64_MAX;
		rec->mtime_nsec = (1u << 30) - 2; /* UTIME_OMIT */
		break;
	case MFS_REC_SETXATTR:
		strcpy(rec->path2, "user.mirrorfs.test");
		rec->flags = 2; /* XATTR_REPLACE */
		rec->data = blob;
		rec->data_len = sizeof(blob);
		break;
	case MFS_REC_REMOVEXATTR:
		strcpy(rec->path2, "trusted.x");
		break;
	case MFS_REC_SNAPSHOT:
		strcpy(rec->path2, "nightly-2026-11-23");
		break;
	case MFS_REC_CHECKPOINT:
		rec->length = 123456789;
		break;
	case MFS_REC_SEG_CLOSED:
		rec->trailer.last_lsn = rec->lsn;
		rec->trailer.rec_count = 77;
		rec->trailer.seg_crc = 0xcafef00du;
		break;
	default:
		break;
	}
}

static bool has_blob(enum mfs_rec_type t)
{
	return t == MFS_REC_WRITE || t == MFS_REC_SETXATTR;
}

/*
 * Encode @rec into a fresh buffer: head followed by the data blob.
 * Returns the malloc'd record and its length, or NULL.
 */
static uint8_t *encode_full(const struct mfs_rec *rec, size_t *ret_len)
{
	size_t cap = mfs_rec_head_size(rec) + rec->data_len;
	uint8_t *buf = malloc(cap + 1);
	size_t head = 0;

	if (!buf)
		return NULL;
	if (mfs_rec_encode(rec, buf, cap, &head) < 0) {
		free(buf);
		return NULL;
	}
	if (has_blob(rec->type) && rec->data_len) {
		memcpy(buf + head, rec->data, rec->data_len);
		head += rec->data_len;
	}
	*ret_len = head;
	return buf;
}

/* Every field must come back as it went in, including those that must stay zero. */
static void assert_same(const struct mfs_rec *a, const struct mfs_rec *b)
{
	CU_ASSERT_EQUAL(a->type, b->type);
	CU_ASSERT_EQUAL(a->lsn, b->lsn);
	CU_ASSERT_EQUAL(a->time_ns, b->time_ns);
	CU_ASSERT_STRING_EQUAL(a->path, b->path);
	CU_ASSERT_STRING_EQUAL(a->path2, b->path2);
	CU_ASSERT_EQUAL(a->offset, b->offset);
	CU_ASSERT_EQUAL(a->length, b->length);
	CU_ASSERT_EQUAL(a->rdev, b->rdev);
	CU_ASSERT_EQUAL(a->mode, b->mode);
	CU_ASSERT_EQUAL(a->uid, b->uid);
	CU_ASSERT_EQUAL(a->gid, b->gid);
	CU_ASSERT_EQUAL(a->flags, b->flags);
	CU_ASSERT_EQUAL(a->atime_sec, b->atime_sec);
	CU_ASSERT_EQUAL(a->atime_nsec, b->atime_nsec);
	CU_ASSERT_EQUAL(a->mtime_sec, b->mtime_sec);
	CU_ASSERT_EQUAL(a->mtime_nsec, b->mtime_nsec);
	CU_ASSERT_EQUAL(a->data_len, b->data_len);
	if (a->data_len == b->data_len && a->data_len)
		CU_ASSERT(memcmp(a->data, b->data, a->data_len) == 0);
	CU_ASSERT_EQUAL(a->trailer.last_lsn, b->trailer.last_lsn);
	CU_ASSERT_EQUAL(a->trailer.rec_count, b->trailer.rec_count);
	CU_ASSERT_EQUAL(a->trailer.seg_crc, b->trailer.seg_crc);
}

static struct mfs_rec *rec_new(void)
{
	return calloc(1, sizeof(struct mfs_rec));
}

/* ---------------------------------------------------------------- round trip */

static void roundtrip_one(struct mfs_rec *in)
{
	struct mfs_rec *out = rec_new();
	char line[16384];
	size_t len = 0;
	uint8_t *buf;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	buf = encode_full(in, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL(mfs_get_le32(buf), len);
	CU_ASSERT_EQUAL(mfs_get_le16(buf + 4), in->type);
	CU_ASSERT_EQUAL(len, mfs_rec_head_size(in) + (has_blob(in->type) ? in->data_len : 0));
	memset(out, 0xa5, sizeof(*out)); /* decode must not leave garbage behind */
	CU_ASSERT_EQUAL_FATAL(mfs_rec_decode(buf, len, out), 0);
	assert_same(in, out);
	if (has_blob(in->type) && in->data_len) /* data points into the buffer */
		CU_ASSERT(out->data >= (const void *)buf &&
			  (const uint8_t *)out->data + out->data_len <= buf + len);
	/* formatting never crashes and names the type */
	mfs_rec_format(out, line, sizeof(line));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, mfs_rec_type_name(in->type)));
	mfs_rec_format_json(out, line, sizeof(line));
	CU_ASSERT_EQUAL(line[0], '{');
	CU_ASSERT_EQUAL(line[strlen(line) - 1], '}');
	free(buf);
	free(out);
}

static void test_roundtrip_every_type(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(all_types); i++) {
		struct mfs_rec *in = rec_new();

		CU_ASSERT_PTR_NOT_NULL_FATAL(in);
		fill_rec(in, all_types[i]);
		roundtrip_one(in);
		free(in);
	}
}

/* Edge values: longest path and names, empty blobs, big blobs, zero/max numbers. */
static void test_roundtrip_limits(void)
{
	struct mfs_rec *in = rec_new();
	uint8_t *big = malloc(MFS_XATTR_VALUE_MAX);

	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	for (size_t i = 0; i < MFS_XATTR_VALUE_MAX; i++)
		big[i] = (uint8_t)(i * 7 + 1);

	fill_rec(in, MFS_REC_RENAME);
	memset(in->path, 'p', MFS_PATH_MAX);
	in->path[MFS_PATH_MAX] = 0;
	memset(in->path2, 'q', MFS_PATH_MAX);
	in->path2[MFS_PATH_MAX] = 0;
	in->flags = UINT32_MAX;
	roundtrip_one(in);

	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_WRITE);
	in->data = NULL;
	in->data_len = 0; /* an empty write is valid */
	in->offset = UINT64_MAX;
	roundtrip_one(in);

	in->data = big;
	in->data_len = MFS_XATTR_VALUE_MAX;
	roundtrip_one(in);

	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_SETXATTR);
	memset(in->path2, 'n', MFS_XATTR_NAME_MAX);
	in->path2[MFS_XATTR_NAME_MAX] = 0;
	in->data = big;
	in->data_len = MFS_XATTR_VALUE_MAX;
	roundtrip_one(in);
	in->data = NULL;
	in->data_len = 0; /* an empty value is valid */
	roundtrip_one(in);

	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_SNAPSHOT);
	memset(in->path2, 's', MFS_SNAPSHOT_NAME_MAX);
	in->path2[MFS_SNAPSHOT_NAME_MAX] = 0;
	roundtrip_one(in);

	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_UTIMENS);
	in->atime_sec = INT64_MIN;
	in->lsn = 0;
	in->time_ns = 0;
	roundtrip_one(in);

	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_UNLINK);
	strcpy(in->path, "x"); /* shortest path */
	roundtrip_one(in);

	free(big);
	free(in);
}

static void test_type_table(void)
{
	unsigned valid = 0;

	for (size_t i = 0; i < ARRAY_SIZE(all_types); i++) {
		enum mfs_rec_type t = all_types[i];

		CU_ASSERT(mfs_rec_type_is_valid(t));
		CU_ASSERT_PTR_NOT_NULL(mfs_rec_type_name(t));
		CU_ASSERT_EQUAL(mfs_rec_type_is_marker(t), t >= MFS_REC_SNAPSHOT);
	}
	for (uint32_t t = 0; t < 70000; t++)
		valid += mfs_rec_type_is_valid(t);
	CU_ASSERT_EQUAL(valid, ARRAY_SIZE(all_types));
	CU_ASSERT_FALSE(mfs_rec_type_is_valid(0));
	CU_ASSERT_FALSE(mfs_rec_type_is_valid(16));
	CU_ASSERT_FALSE(mfs_rec_type_is_valid(63));
	CU_ASSERT_FALSE(mfs_rec_type_is_valid(67));
	CU_ASSERT_FALSE(mfs_rec_type_is_valid(UINT32_MAX));
	CU_ASSERT_PTR_NULL(mfs_rec_type_name((enum mfs_rec_type)0));
	CU_ASSERT_PTR_NULL(mfs_rec_type_name((enum mfs_rec_type)20));
	CU_ASSERT_PTR_NULL(mfs_rec_type_name((enum mfs_rec_type)1000));
	CU_ASSERT_STRING_EQUAL(mfs_rec_type_name(MFS_REC_WRITE), "write");
	CU_ASSERT_STRING_EQUAL(mfs_rec_type_name(MFS_REC_RENAME), "rename");
}

/* ---------------------------------------------------------------- encode errors */

static void test_encode_rejects(void)
{
	struct mfs_rec *in = rec_new();
	uint8_t *buf = malloc(2 * MFS_PATH_MAX + 256);
	size_t cap = 2 * MFS_PATH_MAX + 256, head = 12345;
	uint8_t *huge;

	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);

	/* unknown type */
	fill_rec(in, MFS_REC_UNLINK);
	in->type = (enum mfs_rec_type)16;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);
	in->type = (enum mfs_rec_type)0;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);

	/* empty and too-long paths */
	fill_rec(in, MFS_REC_UNLINK);
	in->path[0] = 0;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);
	memset(in->path, 'a', MFS_PATH_MAX + 1); /* no NUL inside path[] at all */
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);

	/* rename without a new name; xattr name and snapshot name too long */
	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_RENAME);
	in->path2[0] = 0;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);
	fill_rec(in, MFS_REC_SETXATTR);
	memset(in->path2, 'n', MFS_XATTR_NAME_MAX + 1);
	in->path2[MFS_XATTR_NAME_MAX + 1] = 0;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);
	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_SNAPSHOT);
	memset(in->path2, 's', MFS_SNAPSHOT_NAME_MAX + 1);
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);

	/* oversize blobs, and a length without data */
	memset(in, 0, sizeof(*in));
	fill_rec(in, MFS_REC_SETXATTR);
	in->data_len = MFS_XATTR_VALUE_MAX + 1;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);
	in->data = NULL;
	in->data_len = 3;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);
	fill_rec(in, MFS_REC_WRITE);
	huge = calloc(1, (size_t)MFS_WRITE_MAX + 1); /* untouched pages: cheap */
	CU_ASSERT_PTR_NOT_NULL_FATAL(huge);
	in->data = huge;
	in->data_len = MFS_WRITE_MAX + 1;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, cap, &head), -EINVAL);
	free(huge);

	/* a buffer that is too small */
	fill_rec(in, MFS_REC_MKNOD);
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, MFS_REC_HEADER_SIZE - 1, &head), -ENOBUFS);
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, mfs_rec_head_size(in) - 1, &head), -ENOBUFS);
	CU_ASSERT_EQUAL(head, 12345); /* untouched on failure */
	CU_ASSERT_EQUAL(mfs_rec_encode(in, buf, mfs_rec_head_size(in), &head), 0);
	CU_ASSERT_EQUAL(head, mfs_rec_head_size(in));

	free(buf);
	free(in);
}

/* ---------------------------------------------------------------- decode errors */

/* Build a raw record of @type with @payload, a correct length and CRC. */
static size_t build_raw(uint8_t *out, uint16_t type, const void *payload, size_t plen)
{
	uint32_t crc;

	memset(out, 0, MFS_REC_HEADER_SIZE);
	mfs_put_le32(out, (uint32_t)(MFS_REC_HEADER_SIZE + plen));
	mfs_put_le16(out + 4, type);
	mfs_put_le64(out + 8, 42);
	mfs_put_le64(out + 16, 1);
	if (plen)
		memcpy(out + MFS_REC_HEADER_SIZE, payload, plen);
	crc = mfs_crc32c(0, out, 28);
	crc = mfs_crc32c(crc, out + MFS_REC_HEADER_SIZE, plen);
	mfs_put_le32(out + 28, crc);
	return MFS_REC_HEADER_SIZE + plen;
}

/* Recompute the CRC of a record whose length field is right. */
static void fix_crc(uint8_t *rec)
{
	uint32_t len = mfs_get_le32(rec);
	uint32_t crc = mfs_crc32c(0, rec, 28);

	crc = mfs_crc32c(crc, rec + MFS_REC_HEADER_SIZE, len - MFS_REC_HEADER_SIZE);
	mfs_put_le32(rec + 28, crc);
}

/* Payload builder. */
struct pb {
	uint8_t b[2 * 70000];
	size_t n;
};

static void pb_str(struct pb *p, const char *s, size_t n)
{
	mfs_put_le16(p->b + p->n, (uint16_t)n);
	memcpy(p->b + p->n + 2, s, n);
	p->n += 2 + n;
}

static void pb_u32(struct pb *p, uint32_t v)
{
	mfs_put_le32(p->b + p->n, v);
	p->n += 4;
}

static void pb_u64(struct pb *p, uint64_t v)
{
	mfs_put_le64(p->b + p->n, v);
	p->n += 8;
}

static int decode_raw(struct pb *p, uint16_t type)
{
	static uint8_t rec[MFS_REC_HEADER_SIZE + sizeof(((struct pb *)0)->b)];
	static struct mfs_rec out;
	size_t len = build_raw(rec, type, p->b, p->n);

	return mfs_rec_decode(rec, len, &out);
}

static void test_decode_bad_crc(void)
{
	struct mfs_rec *in = rec_new(), *out = rec_new();
	size_t len = 0;
	uint8_t *buf;

	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	for (size_t i = 0; i < ARRAY_SIZE(all_types); i++) {
		memset(in, 0, sizeof(*in));
		fill_rec(in, all_types[i]);
		buf = encode_full(in, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
		/* every single-bit flip anywhere (but the length field) is caught */
		for (size_t pos = 4; pos < len; pos++) {
			for (int bit = 0; bit < 8; bit++) {
				buf[pos] ^= (uint8_t)(1u << bit);
				if (mfs_rec_decode(buf, len, out) != -EBADMSG)
					CU_FAIL("bit flip not detected");
				buf[pos] ^= (uint8_t)(1u << bit);
			}
		}
		CU_ASSERT_EQUAL(mfs_rec_decode(buf, len, out), 0);
		free(buf);
	}
	free(in);
	free(out);
}

static void test_decode_bad_type_flags_reserved(void)
{
	static const uint16_t bad_types[] = {0, 16, 17, 63, 67, 255, 0x8001, 0xffff};
	uint8_t rec[256];
	struct mfs_rec *out = rec_new();
	struct pb *p = calloc(1, sizeof(*p));
	size_t len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	pb_str(p, "f", 1);
	for (size_t i = 0; i < ARRAY_SIZE(bad_types); i++)
		CU_ASSERT_EQUAL(decode_raw(p, bad_types[i]), -EBADMSG);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), 0);

	/* flags and reserved must be zero in version 1 */
	len = build_raw(rec, MFS_REC_UNLINK, p->b, p->n);
	mfs_put_le16(rec + 6, 1);
	fix_crc(rec);
	CU_ASSERT_EQUAL(mfs_rec_decode(rec, len, out), -EBADMSG);
	len = build_raw(rec, MFS_REC_UNLINK, p->b, p->n);
	mfs_put_le32(rec + 24, 0x80000000u);
	fix_crc(rec);
	CU_ASSERT_EQUAL(mfs_rec_decode(rec, len, out), -EBADMSG);
	free(p);
	free(out);
}

static void test_decode_length_mismatch(void)
{
	uint8_t rec[512];
	struct mfs_rec *out = rec_new();
	struct pb *p = calloc(1, sizeof(*p));
	size_t len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	pb_str(p, "a/b", 3);
	pb_u64(p, 100); /* truncate size */
	len = build_raw(rec, MFS_REC_TRUNCATE, p->b, p->n);
	CU_ASSERT_EQUAL_FATAL(mfs_rec_decode(rec, len, out), 0);
	CU_ASSERT_EQUAL(out->length, 100);

	/* the buffer length disagrees with the length field */
	CU_ASSERT_EQUAL(mfs_rec_decode(rec, len - 1, out), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_rec_decode(rec, len + 1, out), -EBADMSG);
	/* shorter than a header, and a length field below the header size */
	CU_ASSERT_EQUAL(mfs_rec_decode(rec, 0, out), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_rec_decode(rec, MFS_REC_HEADER_SIZE - 1, out), -EBADMSG);
	memset(rec, 0, sizeof(rec));
	mfs_put_le32(rec, 16);
	CU_ASSERT_EQUAL(mfs_rec_decode(rec, 16, out), -EBADMSG);

	/* payload one byte short of what the type needs */
	p->n--;
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_TRUNCATE), -EBADMSG);
	/* payload with one byte left over */
	p->n += 2;
	p->b[p->n - 1] = 0;
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_TRUNCATE), -EBADMSG);
	/* a valid unlink payload under a type that needs more */
	p->n = 0;
	pb_str(p, "a", 1);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_CHMOD), -EBADMSG);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_RENAME), -EBADMSG);
	/* a str16 claiming more bytes than the record has */
	p->n = 0;
	pb_str(p, "abc", 3);
	mfs_put_le16(p->b, 4);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), -EBADMSG);
	mfs_put_le16(p->b, 0xffff);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), -EBADMSG);
	/* a blob32 claiming more bytes than the record has */
	p->n = 0;
	pb_str(p, "w", 1);
	pb_u64(p, 0);
	pb_u32(p, 5);
	memcpy(p->b + p->n, "abcd", 4);
	p->n += 4;
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_WRITE), -EBADMSG);
	mfs_put_le32(p->b + 2 + 1 + 8, UINT32_MAX);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_WRITE), -EBADMSG);
	mfs_put_le32(p->b + 2 + 1 + 8, 4);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_WRITE), 0);
	/* an empty payload for a type that needs a path */
	p->n = 0;
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), -EBADMSG);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SEG_CLOSED), -EBADMSG);
	free(p);
	free(out);
}

static void test_decode_bad_strings(void)
{
	struct pb *p = calloc(1, sizeof(*p));
	char name[MFS_PATH_MAX + 2];

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	/* NUL inside path, at its start and at its end */
	pb_str(p, "a\0b", 3);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), -EBADMSG);
	p->n = 0;
	pb_str(p, "\0ab", 3);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), -EBADMSG);
	p->n = 0;
	pb_str(p, "ab\0", 3);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_RMDIR), -EBADMSG);
	/* NUL in the second path */
	p->n = 0;
	pb_str(p, "old", 3);
	pb_str(p, "n\0w", 3);
	pb_u32(p, 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_RENAME), -EBADMSG);
	p->n = 0;
	pb_str(p, "old", 3);
	pb_str(p, "new", 3);
	pb_u32(p, 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_RENAME), 0);
	/* NUL in a symlink target and in an xattr name */
	p->n = 0;
	pb_str(p, "l", 1);
	pb_str(p, "t\0", 2);
	pb_u32(p, 0);
	pb_u32(p, 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SYMLINK), -EBADMSG);
	p->n = 0;
	pb_str(p, "f", 1);
	pb_str(p, "user.\0", 6);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_REMOVEXATTR), -EBADMSG);
	/* an empty path / new name */
	p->n = 0;
	pb_str(p, "", 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), -EBADMSG);
	p->n = 0;
	pb_str(p, "a", 1);
	pb_str(p, "", 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_LINK), -EBADMSG);

	/* oversize: path of MFS_PATH_MAX + 1, xattr name 256, snapshot name 129 */
	memset(name, 'x', sizeof(name));
	p->n = 0;
	pb_str(p, name, MFS_PATH_MAX + 1);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), -EBADMSG);
	p->n = 0;
	pb_str(p, name, MFS_PATH_MAX);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_UNLINK), 0);
	p->n = 0;
	pb_str(p, "f", 1);
	pb_str(p, name, MFS_XATTR_NAME_MAX + 1);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_REMOVEXATTR), -EBADMSG);
	p->n = 0;
	pb_str(p, name, MFS_SNAPSHOT_NAME_MAX + 1);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SNAPSHOT), -EBADMSG);
	p->n = 0;
	pb_str(p, name, MFS_SNAPSHOT_NAME_MAX);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SNAPSHOT), 0);
	/* markers carry no path: a path-first payload is not a snapshot */
	p->n = 0;
	pb_str(p, "f", 1);
	pb_str(p, "snap", 4);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SNAPSHOT), -EBADMSG);
	free(p);
}

static void test_decode_oversize(void)
{
	struct pb *p = calloc(1, sizeof(*p));
	struct mfs_rec *out = rec_new();
	uint8_t *big;
	size_t len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	/* an xattr value of MFS_XATTR_VALUE_MAX + 1 */
	pb_str(p, "f", 1);
	pb_str(p, "user.a", 6);
	pb_u32(p, 0);
	pb_u32(p, MFS_XATTR_VALUE_MAX + 1);
	memset(p->b + p->n, 'v', MFS_XATTR_VALUE_MAX + 1);
	p->n += MFS_XATTR_VALUE_MAX + 1;
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SETXATTR), -EBADMSG);
	p->n--;
	mfs_put_le32(p->b + 3 + 8 + 4, MFS_XATTR_VALUE_MAX);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SETXATTR), 0);

	/* a record longer than MFS_REC_MAX, length field and buffer agreeing */
	len = (size_t)MFS_REC_MAX + 1;
	big = calloc(1, len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	mfs_put_le32(big, (uint32_t)len);
	mfs_put_le16(big + 4, MFS_REC_WRITE);
	big[MFS_REC_HEADER_SIZE] = 1; /* path "f" */
	big[MFS_REC_HEADER_SIZE + 2] = 'f';
	mfs_put_le32(big + MFS_REC_HEADER_SIZE + 3 + 8,
		     (uint32_t)(len - MFS_REC_HEADER_SIZE - 3 - 8 - 4));
	fix_crc(big);
	CU_ASSERT_EQUAL(mfs_rec_decode(big, len, out), -EBADMSG);
	/* a write of MFS_WRITE_MAX + 1 bytes inside MFS_REC_MAX is still refused */
	len = MFS_REC_HEADER_SIZE + 3 + 8 + 4 + (size_t)MFS_WRITE_MAX + 1;
	mfs_put_le32(big, (uint32_t)len);
	mfs_put_le32(big + MFS_REC_HEADER_SIZE + 3 + 8, MFS_WRITE_MAX + 1);
	fix_crc(big);
	CU_ASSERT_EQUAL(mfs_rec_decode(big, len, out), -EBADMSG);
	/* and exactly MFS_WRITE_MAX is accepted */
	len--;
	mfs_put_le32(big, (uint32_t)len);
	mfs_put_le32(big + MFS_REC_HEADER_SIZE + 3 + 8, MFS_WRITE_MAX);
	fix_crc(big);
	CU_ASSERT_EQUAL(mfs_rec_decode(big, len, out), 0);
	CU_ASSERT_EQUAL(out->data_len, MFS_WRITE_MAX);
	free(big);
	free(out);
	free(p);
}

static void test_decode_trailer(void)
{
	struct pb *p = calloc(1, sizeof(*p));

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	pb_u64(p, 42);
	pb_u64(p, 3);
	pb_u32(p, 0x1234);
	pb_u32(p, 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SEG_CLOSED), 0);
	/* the reserved word of the trailer must be zero */
	mfs_put_le32(p->b + 20, 1);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_SEG_CLOSED), -EBADMSG);
	/* a checkpoint is one u64, nothing more */
	p->n = 0;
	pb_u64(p, 9);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_CHECKPOINT), 0);
	pb_u32(p, 0);
	CU_ASSERT_EQUAL(decode_raw(p, MFS_REC_CHECKPOINT), -EBADMSG);
	free(p);
}


/*
 * A write of MFS_WRITE_MAX bytes to a path of MFS_PATH_MAX bytes is within
 * both documented limits, but its record (32 + 2 + 4095 + 8 + 4 + 64 MiB)
 * exceeds MFS_REC_MAX (64 MiB + 4096).
 */
static void test_max_write_long_path(void)
{
	struct mfs_rec *in;
	uint8_t *data, head[MFS_REC_HEADER_SIZE + MFS_PATH_MAX + 64];
	size_t head_len = 0;

	in = rec_new();
	data = calloc(1, MFS_WRITE_MAX);
	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	fill_rec(in, MFS_REC_WRITE);
	memset(in->path, 'p', MFS_PATH_MAX);
	in->path[MFS_PATH_MAX] = 0;
	in->data = data;
	in->data_len = MFS_WRITE_MAX;
	CU_ASSERT_EQUAL(mfs_rec_encode(in, head, sizeof(head), &head_len), 0);
	free(data);
	free(in);
}

static CU_TestInfo tests[] = {
	{"round trip of every type, every field", test_roundtrip_every_type},
	{"round trip at the limits", test_roundtrip_limits},
	{"type table", test_type_table},
	{"encode rejects malformed records", test_encode_rejects},
	{"decode: every bit flip caught by the CRC", test_decode_bad_crc},
	{"decode: bad type, flags, reserved", test_decode_bad_type_flags_reserved},
	{"decode: length mismatches", test_decode_length_mismatch},
	{"decode: NUL, empty and oversize strings", test_decode_bad_strings},
	{"decode: oversize blobs and records", test_decode_oversize},
	{"decode: markers and trailer", test_decode_trailer},
	{"largest write on the longest path", test_max_write_long_path},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_codec[] = {
	{"codec", NULL, NULL, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
