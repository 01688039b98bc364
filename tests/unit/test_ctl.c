/* SPDX-License-Identifier: MIT */
/*
 * test_ctl.c - unit tests of lib/ctl: the control file's reply lines,
 * the exact bytes each writer gives and the reader's view of them and of
 * replies that are neither "ok" nor "err".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/ctl.h"
#include "tests.h"

/* @r's reply is @want; the reader gives @err and @text back. */
static void check(int r, char *reply, const char *want, int err, const char *text)
{
	const char *t = NULL;

	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_STRING_EQUAL(reply, want);
	CU_ASSERT_EQUAL(mfs_ctl_parse(reply, &t), err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_STRING_EQUAL(t, text);
	free(reply);
}

static void test_ok(void)
{
	char *reply = NULL;
	int r;

	r = mfs_ctl_ok(&reply, NULL);
	check(r, reply, "ok\n", 0, "\n");
	reply = NULL;
	r = mfs_ctl_ok(&reply, "%s %d", "seg", 42);
	check(r, reply, "ok seg 42\n", 0, "seg 42\n");
}

static void test_err(void)
{
	char *reply = NULL;
	int r;

	r = mfs_ctl_err(&reply, EINVAL, "unknown command '%s'", "x");
	check(r, reply, "err 22 unknown command 'x'\n", EINVAL, "unknown command 'x'\n");
	reply = NULL;
	r = mfs_ctl_errno(&reply, ENOSPC, "cannot create snapshot '%s'", "a");
	check(r, reply, "err 28 cannot create snapshot 'a': No space left on device\n", ENOSPC,
	      "cannot create snapshot 'a': No space left on device\n");
	reply = NULL;
	r = mfs_ctl_errno(&reply, EBUSY, NULL);
	check(r, reply, "err 16 Device or resource busy\n", EBUSY,
	      "Device or resource busy\n");
}

static void test_parse_hostile(void)
{
	const char *t = NULL;

	CU_ASSERT_EQUAL(mfs_ctl_parse("", &t), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_ctl_parse("error 5 x\n", &t), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_ctl_parse("OK\n", &t), -EBADMSG);
	/* an "err" that names no errno is an I/O error */
	CU_ASSERT_EQUAL(mfs_ctl_parse("err x\n", &t), EIO);
	CU_ASSERT_STRING_EQUAL(t, "x\n");
	CU_ASSERT_EQUAL(mfs_ctl_parse("err 0 zero\n", &t), EIO);
	CU_ASSERT_EQUAL(mfs_ctl_parse("err -3 neg\n", &t), EIO);
	CU_ASSERT_EQUAL(mfs_ctl_parse("ok", &t), 0);
	CU_ASSERT_STRING_EQUAL(t, "");
}

static CU_TestInfo tests[] = {
	{ "ok", test_ok },
	{ "err", test_err },
	{ "parse_hostile", test_parse_hostile },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_ctl[] = {
	{ "ctl", NULL, NULL, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
