/* SPDX-License-Identifier: MIT */
/*
 * test_rectype.c - unit tests of lib/rectype: the record type table.
 *
 * Every row of the table is used whole: its example round-trips through
 * the codec field by field, dump shows every field under its label, the
 * example passes the replay checks, and a field the table limits is
 * refused with the table's name for it. A new type added to the table is
 * covered here without this file knowing it.
 */
#include "mirrorfs/rectype.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/macro.h"
#include "mirrorfs/record.h"
#include "mirrorfs/replay.h"
#include "tests.h"

/* A record of type @t: the table's example on path "a/b" (none for markers). */
static struct mfs_rec *example(uint32_t t)
{
	struct mfs_rec *rec = calloc(1, sizeof(*rec));

	CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
	mfs_rec_example(t, rec);
	rec->lsn = 7;
	if (!mfs_rec_type_is_marker(rec->type))
		snprintf(rec->path, sizeof(rec->path), "a/b");
	return rec;
}

/* Encode @in with its blob, decode it into @out. Returns decode's result. */
static int roundtrip(const struct mfs_rec *in, struct mfs_rec *out, uint8_t *buf, size_t cap)
{
	size_t head;
	int e;

	e = mfs_rec_encode(in, buf, cap, &head);
	if (e < 0)
		return e;
	if (mfs_rec_type_has_blob(in->type) && in->data_len) {
		if (head + in->data_len > cap)
			return -ENOBUFS;
		memcpy(buf + head, in->data, in->data_len);
	}
	return mfs_rec_decode(buf, mfs_get_le32(buf), out);
}

/* Every field @t carries holds the same value in @a and @b. */
static void assert_fields_same(uint32_t t, const struct mfs_rec *a, const struct mfs_rec *b)
{
	for (const struct mfs_rec_field *f = mfs_rec_type_info(t)->fields; f->kind; f++) {
		CU_ASSERT_EQUAL(mfs_rec_field_get(&a->fields, f), mfs_rec_field_get(&b->fields, f));
		if (f->kind == MFS_FLD_TIME)
			CU_ASSERT_EQUAL(
				*(const uint32_t *)(const void *)((const char *)a + f->off2),
				*(const uint32_t *)(const void *)((const char *)b + f->off2));
		if (f->kind == MFS_FLD_STR)
			CU_ASSERT_STRING_EQUAL(a->path2, b->path2);
		if (f->kind == MFS_FLD_BLOB) {
			CU_ASSERT_EQUAL_FATAL(a->data_len, b->data_len);
			CU_ASSERT(!memcmp(a->data, b->data, a->data_len));
		}
	}
	CU_ASSERT_STRING_EQUAL(a->path, b->path);
}

/* The dump line of @rec shows every field of its type under the field's label. */
static void assert_dump_labels(const struct mfs_rec *rec)
{
	char line[16384], key[64];

	mfs_rec_format(rec, line, sizeof(line));
	for (const struct mfs_rec_field *f = mfs_rec_type_info(rec->type)->fields; f->kind; f++) {
		if (f->kind == MFS_FLD_TRAILER)
			continue;
		snprintf(key, sizeof(key), " %s=%s", f->label, f->kind == MFS_FLD_STR ? "'" : "");
		CU_ASSERT_PTR_NOT_NULL(strstr(line, key));
	}
}

static void test_every_row(void)
{
	static uint8_t buf[1 << 16];
	struct mfs_rec *out = calloc(1, sizeof(*out));
	unsigned n = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	for (uint32_t t = mfs_rec_type_next(0); t; t = mfs_rec_type_next(t), n++) {
		const struct mfs_rec_type_info *ti = mfs_rec_type_info(t);
		struct mfs_rec *in = example(t);
		uint32_t back = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(ti);
		CU_ASSERT_EQUAL(mfs_rec_type_from_name(ti->name, &back), 0);
		CU_ASSERT_EQUAL(back, t);
		CU_ASSERT_STRING_EQUAL(mfs_rec_type_name(t), ti->name);
		CU_ASSERT_EQUAL_FATAL(roundtrip(in, out, buf, sizeof(buf)), 0);
		assert_fields_same(t, in, out);
		assert_dump_labels(out);
		if (!(ti->flags & MFS_RT_TRAILER))
			CU_ASSERT_EQUAL(mfs_replay_check(in), 0);
		CU_ASSERT_EQUAL(mfs_rec_end(&in->fields) > 0, !!(ti->flags & MFS_RT_DATA));
		free(in);
	}
	CU_ASSERT(n >= 18); /* format 1's types, and any added since */
	CU_ASSERT_EQUAL(mfs_rec_type_from_name("nonesuch", &n), -EINVAL);
	CU_ASSERT_PTR_NULL(mfs_rec_type_info(0));
	CU_ASSERT_PTR_NULL(mfs_rec_type_info(UINT32_MAX));
	free(out);
}

/* The byte layout of one row is format.h's: a fallocate, built by hand. */
static void test_payload_order(void)
{
	static const uint8_t want[] = {1, 0, 'f', 3, 0,	 0, 0, 0, 16, 0, 0, 0,
				       0, 0, 0,	  0, 32, 0, 0, 0, 0,  0, 0};
	struct mfs_rec *in = calloc(1, sizeof(*in));
	uint8_t buf[256];
	size_t head;

	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	in->type = MFS_REC_FALLOCATE;
	strcpy(in->path, "f");
	in->mode = 3, in->offset = 4096, in->length = 8192;
	CU_ASSERT_EQUAL_FATAL(mfs_rec_encode(in, buf, sizeof(buf), &head), 0);
	CU_ASSERT_EQUAL_FATAL(head, MFS_REC_HEADER_SIZE + sizeof(want));
	CU_ASSERT(!memcmp(buf + MFS_REC_HEADER_SIZE, want, sizeof(want)));
	free(in);
}

/* What the replay checks say about a field the table limits. */
static void assert_why(struct mfs_rec *rec, const char *want)
{
	char why[600];

	CU_ASSERT_EQUAL(mfs_replay_check_why(rec, why, sizeof(why)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(why, want);
	free(rec);
}

static void test_field_rules(void)
{
	struct mfs_rec *r;

	r = example(MFS_REC_SYMLINK), r->path2[0] = 0;
	assert_why(r, "LSN 7 symlink 'a/b': target: empty or too long");
	r = example(MFS_REC_SETXATTR), r->path2[0] = 0;
	assert_why(r, "LSN 7 setxattr 'a/b': xattr name: empty or too long");
	r = example(MFS_REC_SETXATTR), r->data_len = MFS_XATTR_VALUE_MAX + 1;
	assert_why(r, "LSN 7 setxattr 'a/b': value: longer than the format allows");
	r = example(MFS_REC_TRUNCATE), r->length = (uint64_t)INT64_MAX + 1;
	assert_why(r, "LSN 7 truncate 'a/b': size: out of range");
	r = example(MFS_REC_UTIMENS), r->mtime_nsec = 1000000000;
	assert_why(r, "LSN 7 utimens 'a/b': nanoseconds: out of range");
	r = example(MFS_REC_WRITE), r->offset = INT64_MAX;
	assert_why(r, "LSN 7 write 'a/b': offset: out of range");
	r = example(MFS_REC_LINK), strcpy(r->path2, "../x");
	assert_why(r, "LSN 7 link 'a/b' -> '../x': new path: not a clean relative path (empty, "
		      "'.', '..', '//' or a name over 255 bytes)");
	r = example(MFS_REC_RENAME), r->flags = 1u << 7;
	assert_why(r, "LSN 7 rename 'a/b': flags: unknown or contradictory");
	r = example(MFS_REC_MKDIR), r->mode = 0100755;
	assert_why(r, "LSN 7 mkdir 'a/b': mode: not a directory mode");
}

/* A refusal names every field of the record, as the table labels them. */
static void test_format_fields(void)
{
	struct mfs_rec *r = example(MFS_REC_SETXATTR);
	char s[300];

	mfs_rec_format_fields(r, s, sizeof(s));
	CU_ASSERT_STRING_EQUAL(s, "xattr name 'user.comment', flags 0x0, length 1");
	free(r);
	r = example(MFS_REC_WRITE);
	mfs_rec_format_fields(r, s, sizeof(s));
	CU_ASSERT_STRING_EQUAL(s, "offset 8192, length 22");
	free(r);
	r = example(MFS_REC_UNLINK);
	mfs_rec_format_fields(r, s, sizeof(s));
	CU_ASSERT_STRING_EQUAL(s, "");
	free(r);
}

/*
 * The table's answers to "which types" are the lists fs/redo.c and the
 * segment writer held by hand before they asked the table: a type added
 * to the table answers for itself; a flag moved on an existing row fails
 * here.
 */
static void test_type_sets(void)
{
	for (uint32_t t = mfs_rec_type_next(0); t; t = mfs_rec_type_next(t)) {
		bool names = t == MFS_REC_MKNOD || t == MFS_REC_MKDIR || t == MFS_REC_SYMLINK ||
			     t == MFS_REC_UNLINK || t == MFS_REC_RMDIR || t == MFS_REC_RENAME ||
			     t == MFS_REC_LINK;

		if ((t > MFS_REC_REMOVEXATTR && t < MFS_REC_SNAPSHOT) || t > MFS_REC_SEG_CLOSED)
			continue; /* newer than these lists */
		CU_ASSERT_EQUAL(mfs_rec_type_changes_names(t), names);
		CU_ASSERT_EQUAL(mfs_rec_type_has_blob(t), t == MFS_REC_WRITE || t == MFS_REC_SETXATTR);
		CU_ASSERT_EQUAL(mfs_rec_type_has_path2(t), t == MFS_REC_RENAME || t == MFS_REC_LINK);
		CU_ASSERT_EQUAL(!!(mfs_rec_type_info(t)->flags & MFS_RT_ZSTD), t == MFS_REC_WRITE);
	}
	CU_ASSERT_FALSE(mfs_rec_type_changes_names(0));
	CU_ASSERT_FALSE(mfs_rec_type_changes_names(UINT32_MAX));
}

static CU_TestInfo tests[] = {
	{"every row: round trip, dump labels, replay checks", test_every_row},
	{"a row's field order is the payload's", test_payload_order},
	{"field rules and their reasons", test_field_rules},
	{"fields of a refusal", test_format_fields},
	{"which types make names, carry a blob, a second path, zstd", test_type_sets},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_rectype[] = {
	{"rectype", NULL, NULL, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
