/* SPDX-License-Identifier: MIT */
/*
 * test_jdir.c - unit tests of lib/jdir: the exact bytes of the journal
 * folder's state and promoted files, round trips, a hostile state file,
 * the folder's subfolders and names, and the listing of closed segments.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/segment.h"
#include "tests.h"

#define UUID_TEXT "0123abcd-4567-89ef-0123-456789abcdef"

static char *tmp;
static int jfd = -1;

static int setup(void)
{
	return test_tmpdir_open(&tmp, &jfd);
}

static int teardown(void)
{
	return test_tmpdir_close(&tmp, &jfd);
}

static int put_read(const char *text, struct mfs_jstate *ret)
{
	CU_ASSERT_EQUAL_FATAL(mfs_replace_file(jfd, MFS_JDIR_STATE, text, strlen(text), 0600), 0);
	return mfs_jstate_read(jfd, ret);
}

static void test_state_format(void)
{
	/* the bytes mirrorfs and mirrorctl promote have always written */
	static const char want[] = "dataset=" UUID_TEXT "\ncheckpoint=40\nlast=42\nsegment=7\n";
	struct mfs_jstate st = { .checkpoint = 40, .last = 42, .segment = 7 }, back;
	char *text = NULL;

	CU_ASSERT_EQUAL_FATAL(mfs_uuid_parse(UUID_TEXT, st.data_set), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_jstate_write(jfd, &st), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(jfd, MFS_JDIR_STATE, 4096, &text, NULL), 0);
	CU_ASSERT_STRING_EQUAL(text, want);
	free(text);
	memset(&back, 0xa5, sizeof(back));
	CU_ASSERT_EQUAL_FATAL(mfs_jstate_read(jfd, &back), 0);
	CU_ASSERT_EQUAL(memcmp(&back, &st, sizeof(st)), 0);
	st.checkpoint = st.last = st.segment = UINT64_MAX;
	CU_ASSERT_EQUAL_FATAL(mfs_jstate_write(jfd, &st), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_jstate_read(jfd, &back), 0);
	CU_ASSERT_EQUAL(memcmp(&back, &st, sizeof(st)), 0);
}

static void test_promoted_format(void)
{
	static const char want[] = "dataset=" UUID_TEXT "\npromoted_lsn=9\n"
				   "time_ns=1700000000123456789\n";
	struct mfs_jpromoted p = { .promoted_lsn = 9, .time_ns = 1700000000123456789ull }, back;
	char *text = NULL;

	CU_ASSERT_EQUAL_FATAL(mfs_uuid_parse(UUID_TEXT, p.data_set), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_jpromoted_write(jfd, &p), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(jfd, MFS_JDIR_PROMOTED, 4096, &text, NULL), 0);
	CU_ASSERT_STRING_EQUAL(text, want);
	free(text);
	CU_ASSERT_EQUAL_FATAL(mfs_jpromoted_read(jfd, &back), 0);
	CU_ASSERT_EQUAL(memcmp(&back, &p, sizeof(p)), 0);
	/* time_ns is what a mount compares snapshots with: required */
	CU_ASSERT_EQUAL_FATAL(mfs_replace_file(jfd, MFS_JDIR_PROMOTED, "dataset=" UUID_TEXT "\n",
					       8 + 36 + 1, 0600), 0);
	CU_ASSERT_EQUAL(mfs_jpromoted_read(jfd, &back), -EBADMSG);
	(void)unlinkat(jfd, MFS_JDIR_PROMOTED, 0);
	CU_ASSERT_EQUAL(mfs_jpromoted_read(jfd, &back), -ENOENT);
}

/* What older writers and the runbook's hand edits leave: accepted. */
static void test_state_accepted(void)
{
	struct mfs_jstate st;

	CU_ASSERT_EQUAL(put_read("dataset=" UUID_TEXT "\n", &st), 0);
	CU_ASSERT(st.checkpoint == 0 && st.last == 0 && st.segment == 0);
	CU_ASSERT_EQUAL(put_read("segment=3\nlast=5\nnewer_field=x\ndataset=" UUID_TEXT
				 "\ncheckpoint=4\n", &st), 0);
	CU_ASSERT(st.checkpoint == 4 && st.last == 5 && st.segment == 3);
}

static void test_state_hostile(void)
{
	static const char *const bad[] = {
		"",					      /* no dataset */
		"checkpoint=1\nlast=1\n",		      /* no dataset */
		"dataset=" UUID_TEXT,			      /* truncated: no newline */
		"dataset=" UUID_TEXT "\nlast=1",	      /* truncated last line */
		"dataset=nonsense\n",
		"dataset=" UUID_TEXT "0\n",		      /* an overlong UUID */
		"dataset=" UUID_TEXT "\ncheckpoint=\n",	      /* empty number */
		"dataset=" UUID_TEXT "\ncheckpoint=-1\n",
		"dataset=" UUID_TEXT "\ncheckpoint=+1\n",
		"dataset=" UUID_TEXT "\ncheckpoint=1x\n",
		"dataset=" UUID_TEXT "\ncheckpoint= 1\n",
		"dataset=" UUID_TEXT "\nlast=18446744073709551616\n", /* 2^64 */
		"dataset=" UUID_TEXT "\nlast=99999999999999999999\n",
		"dataset=" UUID_TEXT "\nlast=1\nlast=2\n",    /* a key twice */
		"dataset=" UUID_TEXT "\ndataset=" UUID_TEXT "\n",
		"dataset=" UUID_TEXT "\n\n",		      /* an empty line */
		"dataset=" UUID_TEXT "\nno equals sign\n",
		"dataset=" UUID_TEXT "\nLAST=1\n",
		"dataset=" UUID_TEXT "\n=1\n",
	};
	struct mfs_jstate st = { .last = 77 };
	char big[8192];

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		int r = put_read(bad[i], &st);
		if (r != -EBADMSG)
			fprintf(stderr, "accepted: '%s' (%d)\n", bad[i], r);
		CU_ASSERT_EQUAL(r, -EBADMSG);
	}
	CU_ASSERT_EQUAL(st.last, 77); /* untouched on failure */
	/* a NUL byte, and a file too large */
	CU_ASSERT_EQUAL_FATAL(mfs_replace_file(jfd, MFS_JDIR_STATE, "dataset=\0\n", 10, 0600), 0);
	CU_ASSERT_EQUAL(mfs_jstate_read(jfd, &st), -EBADMSG);
	memset(big, 'a', sizeof(big));
	big[sizeof(big) - 1] = '\n';
	CU_ASSERT_EQUAL_FATAL(mfs_replace_file(jfd, MFS_JDIR_STATE, big, sizeof(big), 0600), 0);
	CU_ASSERT_EQUAL(mfs_jstate_read(jfd, &st), -EBADMSG);
	(void)unlinkat(jfd, MFS_JDIR_STATE, 0);
	CU_ASSERT_EQUAL(mfs_jstate_read(jfd, &st), -ENOENT);
	CU_ASSERT_EQUAL(st.last, 77);
}

static void test_folders(void)
{
	char path[4096], name[64];
	bool made = true;
	int fd, sub;

	snprintf(path, sizeof(path), "%s/j", tmp);
	CU_ASSERT_EQUAL(mfs_jdir_open(path, false, NULL), -ENOENT);
	fd = mfs_jdir_open(path, true, &made);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT(made);
	close(fd);
	fd = mfs_jdir_open(path, true, &made);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT(!made);
	CU_ASSERT_EQUAL(mfs_jdir_open_sub(fd, MFS_JDIR_OPEN, false, NULL), -ENOENT);
	sub = mfs_jdir_open_sub(fd, MFS_JDIR_OPEN, true, &made);
	CU_ASSERT(sub >= 0 && made);
	close(sub);
	sub = mfs_jdir_open_sub(fd, MFS_JDIR_OPEN, true, &made);
	CU_ASSERT(sub >= 0 && !made);
	close(sub);
	close(fd);

	mfs_jdir_open_name(12, name);
	CU_ASSERT_STRING_EQUAL(name, "open-00000000000000000012.mfsj");
	CU_ASSERT(mfs_jdir_is_open_name(name));
	CU_ASSERT(!mfs_jdir_is_open_name("open-.mfsj"));
	CU_ASSERT(!mfs_jdir_is_open_name("lost-open-00000000000000000012.mfsj"));
	CU_ASSERT(!mfs_jdir_is_open_name("open-00000000000000000012.mfsj.tmp"));
	CU_ASSERT(!mfs_jdir_is_open_name("00000000000000000001-00000000000000000002.mfsj"));
}

static void touch(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
}

static void test_segdir_list(void)
{
	char a[MFS_SEG_NAME_LEN + 1], b[MFS_SEG_NAME_LEN + 1], c[MFS_SEG_NAME_LEN + 1];
	struct mfs_segent *v = NULL;
	size_t n = 99;
	int dfd;

	CU_ASSERT_EQUAL_FATAL(mkdirat(jfd, "segs", 0700), 0);
	dfd = openat(jfd, "segs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_FATAL(dfd >= 0);
	CU_ASSERT_EQUAL(mfs_segdir_list(dfd, &v, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(v);
	mfs_seg_name(101, 200, a);
	mfs_seg_name(1, 100, b);
	mfs_seg_name(201, 200, c); /* an empty one */
	touch(dfd, a);
	touch(dfd, b);
	touch(dfd, c);
	touch(dfd, "open-00000000000000000003.mfsj"); /* not closed segments: */
	touch(dfd, ".00000000000000000001-00000000000000000100.mfsj.XXXXXX");
	touch(dfd, "00000000000000000001-00000000000000000100.mfsj.reason");
	touch(dfd, "README");
	CU_ASSERT_EQUAL_FATAL(mfs_segdir_list(dfd, &v, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	CU_ASSERT_STRING_EQUAL(v[0].name, b);
	CU_ASSERT(v[0].first == 1 && v[0].last == 100);
	CU_ASSERT_STRING_EQUAL(v[1].name, a);
	CU_ASSERT(v[1].first == 101 && v[1].last == 200);
	CU_ASSERT_STRING_EQUAL(v[2].name, c);
	CU_ASSERT(v[2].first == 201 && v[2].last == 200);
	free(v);
	close(dfd);
	CU_ASSERT_EQUAL(mfs_segdir_list(-1, &v, &n), -EBADF);
}

static CU_TestInfo tests[] = {
	{ "state_format", test_state_format },
	{ "promoted_format", test_promoted_format },
	{ "state_accepted", test_state_accepted },
	{ "state_hostile", test_state_hostile },
	{ "folders", test_folders },
	{ "segdir_list", test_segdir_list },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_jdir[] = {
	{ "jdir", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
