/* SPDX-License-Identifier: MIT */
/*
 * test_backup.c - unit tests of lib/backup: the manifest's round trip and
 * exact text, hostile manifests, backup IDs and keys, the choice of the
 * backup a restore starts from, and what a prune keeps (never a parent of
 * a kept incremental).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/backup.h"
#include "mirrorfs/macro.h"
#include "tests.h"

static void sample(struct mfs_bk_manifest *m)
{
	struct mfs_bk_entry *e;

	*m = (struct mfs_bk_manifest){ .lsn = 42, .time_ns = 1700000000000000001ull };
	m->snapshot = strdup("nightly");
	m->dataset = strdup("0f0e0d0c-0b0a-0908-0706-050403020100");
	mfs_bk_id_format(7, 9, m->parent);
	CU_ASSERT_EQUAL(mfs_bk_pack_add(m, "pack-00000000000000ab-000000", 8192), 0);
	e = mfs_bk_entry_add(m, 'd', ".");
	e->mode = 040755;
	e = mfs_bk_entry_add(m, 'f', "a dir/file%1\n");
	e->mode = 0100600;
	e->uid = 1000;
	e->gid = 100;
	e->atime_ns = 5;
	e->mtime_ns = 6;
	e->size = 1 << 20;
	e->other = strdup("old name");
	CU_ASSERT_EQUAL(mfs_bk_extent_add(e, 0, 0, 4096, 0), 0);
	CU_ASSERT_EQUAL(mfs_bk_extent_add(e, 0, 4096, 4096, 4096), 0); /* merged */
	CU_ASSERT_EQUAL(mfs_bk_extent_add(e, 0, 8000, 192, 65536), 0);
	CU_ASSERT_EQUAL(mfs_bk_xattr_add(e, "user.k", "v\0w", 3), 0);
	CU_ASSERT_EQUAL(mfs_bk_xattr_add(e, "user.empty", "", 0), 0);
	e = mfs_bk_entry_add(m, 'l', "link");
	e->mode = 0120777;
	e->other = strdup("../target with space");
	e = mfs_bk_entry_add(m, 'h', "hard");
	e->other = strdup("a dir/file%1\n");
}

static void test_round_trip(void)
{
	struct mfs_bk_manifest m, d = { 0 };
	_cleanup_free_ char *text = NULL, *again = NULL;
	size_t len, len2;

	sample(&m);
	CU_ASSERT_EQUAL_FATAL(mfs_bk_manifest_encode(&m, &text, &len), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nf 100600 1000 100 5 6 1048576 old%20name "
					    "a%20dir/file%251%0A\ne 0 0 8192 0\ne 0 8000 192 65536\n"
					    "x user.k 760077\nx user.empty -\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nl 120777 0 0 0 0 link ../target%20with%20space\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nh hard a%20dir/file%251%0A\nend\n"));
	CU_ASSERT_EQUAL(strncmp(text, "mirrorfs-backup 1\nsnapshot nightly\n", 35), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_bk_manifest_decode(text, len, &d), 0);
	CU_ASSERT_STRING_EQUAL(d.snapshot, "nightly");
	CU_ASSERT_EQUAL(d.lsn, 42);
	CU_ASSERT_EQUAL(d.time_ns, 1700000000000000001ull);
	CU_ASSERT_STRING_EQUAL(d.parent, m.parent);
	CU_ASSERT_EQUAL_FATAL(d.n, 4);
	CU_ASSERT_STRING_EQUAL(d.v[1].path, "a dir/file%1\n");
	CU_ASSERT_STRING_EQUAL(d.v[1].other, "old name");
	CU_ASSERT_EQUAL(d.v[1].n_ext, 2);
	CU_ASSERT_EQUAL(d.v[1].ext[0].len, 8192);
	CU_ASSERT_EQUAL(d.v[1].n_xa, 2);
	CU_ASSERT_EQUAL(d.v[1].xa[0].len, 3);
	CU_ASSERT_EQUAL(memcmp(d.v[1].xa[0].value, "v\0w", 3), 0);
	CU_ASSERT_STRING_EQUAL(d.v[2].other, "../target with space");
	CU_ASSERT_STRING_EQUAL(d.v[3].other, "a dir/file%1\n");
	CU_ASSERT_EQUAL_FATAL(mfs_bk_manifest_encode(&d, &again, &len2), 0);
	CU_ASSERT_EQUAL(len2, len);
	CU_ASSERT_STRING_EQUAL(again, text);
	mfs_bk_manifest_done(&m);
	mfs_bk_manifest_done(&d);
}

static int decode_str(const char *s)
{
	struct mfs_bk_manifest d = { 0 };
	int r = mfs_bk_manifest_decode(s, strlen(s), &d);

	mfs_bk_manifest_done(&d);
	return r;
}

#define HDR "mirrorfs-backup 1\nsnapshot s\ndataset -\nlsn 1\ntime_ns 2\nparent -\npack p 10\n"

static void test_hostile(void)
{
	CU_ASSERT_EQUAL(decode_str(HDR "end\n"), 0);
	CU_ASSERT_EQUAL(decode_str(HDR), -EBADMSG);			/* truncated */
	CU_ASSERT_EQUAL(decode_str("mirrorfs-backup 2\nend\n"), -EPROTONOSUPPORT);
	CU_ASSERT_EQUAL(decode_str("mirrorfs-backup 1\nend\n"), -EBADMSG); /* no header */
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 10 - a\ne 0 0 10 0\nend\n"), 0);
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 10 - a\ne 1 0 10 0\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 10 - a\ne 0 5 10 0\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 10 - a\ne 0 0 10 1\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 10 - a\ne 0 0 0 0\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "e 0 0 10 0\nend\n"), -EBADMSG);	/* no file */
	CU_ASSERT_EQUAL(decode_str(HDR "d 755 0 0 0 0 a\ne 0 0 1 0\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 10 old a\nend\n"), -EBADMSG); /* no parent */
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 10 - %zz\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "f 644 0 0 0 0 -1 - a\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "d 9x9 0 0 0 0 a\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "d 755 0 0 0 0 a extra\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "x user.a 0\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "d 755 0 0 0 0 a\nx user.a 0g\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "d 755 0 0 0 0 a\nlsn 3\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "h a\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str("mirrorfs-backup 1\nsnapshot s\nparent junk\nend\n"), -EBADMSG);
	CU_ASSERT_EQUAL(decode_str(HDR "\nend\n"), -EBADMSG);
}

static void test_ids(void)
{
	char id[MFS_BK_ID_LEN + 1], got[MFS_BK_ID_LEN + 1], par[MFS_BK_ID_LEN + 1];
	char key[2 * MFS_BK_ID_LEN + 20];
	uint64_t lsn, t;
	bool man;

	mfs_bk_id_format(123, 1700000000000000000ull, id);
	CU_ASSERT_STRING_EQUAL(id, "00000000000000000123-01700000000000000000");
	CU_ASSERT_TRUE(mfs_bk_id_parse(id, &lsn, &t));
	CU_ASSERT_EQUAL(lsn, 123);
	CU_ASSERT_EQUAL(t, 1700000000000000000ull);
	CU_ASSERT_FALSE(mfs_bk_id_parse("00000000000000000123-0170000000000000000", &lsn, &t));
	CU_ASSERT_FALSE(mfs_bk_id_parse("0000000000000000012x-01700000000000000000", &lsn, &t));
	CU_ASSERT_TRUE(mfs_bk_key_parse(
		"00000000000000000123-01700000000000000000/manifest", got, &man, par));
	CU_ASSERT_TRUE(man);
	CU_ASSERT_STRING_EQUAL(par, "");
	CU_ASSERT_STRING_EQUAL(got, id);
	mfs_bk_manifest_key(id, "", key);
	CU_ASSERT_STRING_EQUAL(key, "00000000000000000123-01700000000000000000/manifest");
	mfs_bk_manifest_key(id, "00000000000000000100-01600000000000000000", key);
	CU_ASSERT_STRING_EQUAL(key, "00000000000000000123-01700000000000000000/manifest-"
				    "00000000000000000100-01600000000000000000");
	CU_ASSERT_TRUE(mfs_bk_key_parse(key, got, &man, par));
	CU_ASSERT_TRUE(man);
	CU_ASSERT_STRING_EQUAL(par, "00000000000000000100-01600000000000000000");
	CU_ASSERT_TRUE(mfs_bk_key_parse(
		"00000000000000000123-01700000000000000000/pack-1-2", got, &man, par));
	CU_ASSERT_FALSE(man);
	CU_ASSERT_TRUE(mfs_bk_key_parse(
		"00000000000000000123-01700000000000000000/manifest-junk", got, &man, par));
	CU_ASSERT_FALSE(man);
	CU_ASSERT_FALSE(mfs_bk_key_parse("00000000000000000123-01700000000000000000", got, &man, par));
	CU_ASSERT_FALSE(mfs_bk_key_parse("junk/manifest", got, &man, par));
}

/* Backups at LSN 10*(i+1), time i+1 s; @parents[i]: the parent's index or -1. */
static void make(struct mfs_bk_info *v, size_t n, const int *parents, const bool *complete)
{
	for (size_t i = 0; i < n; i++) {
		v[i] = (struct mfs_bk_info){ .lsn = 10 * (i + 1), .time_ns = (i + 1) * 1000000000ull,
					     .complete = complete ? complete[i] : true };
		mfs_bk_id_format(v[i].lsn, v[i].time_ns, v[i].id);
	}
	for (size_t i = 0; i < n; i++)
		if (parents[i] >= 0)
			snprintf(v[i].parent, sizeof(v[i].parent), "%s", v[parents[i]].id);
}

static void test_pick(void)
{
	/* 0 full, 1 <- 0, 2 <- 1 incomplete, 3 full, 4 <- missing 2 */
	static const int par[] = { -1, 0, 1, -1, 2 };
	static const bool comp[] = { true, true, false, true, true };
	struct mfs_bk_info v[5];

	make(v, 5, par, comp);
	CU_ASSERT_EQUAL(mfs_bk_pick(v, 5, UINT64_MAX, UINT64_MAX), 3); /* 4's chain is broken */
	CU_ASSERT_EQUAL(mfs_bk_pick(v, 5, 39, UINT64_MAX), 1);	       /* 2 is incomplete */
	CU_ASSERT_EQUAL(mfs_bk_pick(v, 5, 20, UINT64_MAX), 1);
	CU_ASSERT_EQUAL(mfs_bk_pick(v, 5, UINT64_MAX, 1999999999), 0);
	CU_ASSERT_EQUAL(mfs_bk_pick(v, 5, 9, UINT64_MAX), -ENOENT);
	CU_ASSERT_EQUAL(mfs_bk_pick(v, 0, UINT64_MAX, UINT64_MAX), -ENOENT);
}

static void test_prune(void)
{
	/* 0 full, 1 <- 0, 2 <- 1, 3 full, 4 <- 3, 5 incomplete */
	static const int par[] = { -1, 0, 1, -1, 3, 4 };
	static const bool comp[] = { true, true, true, true, true, false };
	struct mfs_bk_info v[6];
	uint64_t w;

	make(v, 6, par, comp);
	/* newest 1: 4 and its parent 3; the running upload 5 */
	CU_ASSERT_EQUAL(mfs_bk_plan_prune(v, 6, 1, 0, 0, &w), 3);
	CU_ASSERT_EQUAL(w, 50);
	CU_ASSERT_TRUE(v[3].keep && v[4].keep && v[5].keep);
	CU_ASSERT_FALSE(v[0].keep || v[1].keep || v[2].keep);
	/* newest 3: 4, 3, 2 and 2's parents 1 and 0; the window starts at 2 */
	CU_ASSERT_EQUAL(mfs_bk_plan_prune(v, 6, 3, 0, 0, &w), 6);
	CU_ASSERT_EQUAL(w, 30);
	/* within 1.5 s of t=5.6 s: 4 (5 s) and the one before, 3 */
	CU_ASSERT_EQUAL(mfs_bk_plan_prune(v, 6, 0, 1500000000ull, 5600000000ull, &w), 3);
	CU_ASSERT_EQUAL(w, 40);
	CU_ASSERT_TRUE(v[3].keep && v[4].keep);
	/* within 2.5 s of t=5 s: 4, 3, 2, and 1 (before) with its parent */
	CU_ASSERT_EQUAL(mfs_bk_plan_prune(v, 6, 0, 2500000000ull, 5000000000ull, &w), 6);
	CU_ASSERT_EQUAL(w, 20);
	/* no complete backup: nothing to start a window, everything kept */
	v[0].complete = v[3].complete = false;
	CU_ASSERT_EQUAL(mfs_bk_plan_prune(v, 6, 1, 0, 0, &w), 6);
	CU_ASSERT_EQUAL(w, 0);
}

static CU_TestInfo tests[] = {
	{ "round_trip", test_round_trip },
	{ "hostile", test_hostile },
	{ "ids", test_ids },
	{ "pick", test_pick },
	{ "prune", test_prune },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_backup[] = {
	{ "backup", NULL, NULL, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
