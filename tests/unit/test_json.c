/* SPDX-License-Identifier: MIT */
/*
 * test_json.c - unit tests of lib/json: the one JSON string escaper.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/json.h"
#include "tests.h"

static void test_escapes(void)
{
	char out[64];

	CU_ASSERT_EQUAL(mfs_json_str("plain/name", false, out, sizeof(out)), 12);
	CU_ASSERT_STRING_EQUAL(out, "\"plain/name\"");
	mfs_json_str("a\"b\\c\nd\x01\x7f", false, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "\"a\\\"b\\\\c\\u000ad\\u0001\\u007f\"");
	/* bytes from 0x80: as they are, or each as \u00XX with @ascii */
	mfs_json_str("caf\xc3\xa9", false, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "\"caf\xc3\xa9\"");
	mfs_json_str("caf\xc3\xa9", true, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "\"caf\\u00c3\\u00a9\"");
	CU_ASSERT_EQUAL(mfs_json_str("", false, out, sizeof(out)), 2);
	CU_ASSERT_STRING_EQUAL(out, "\"\"");
}

static void test_cut_short(void)
{
	char out[8];

	/* never an escape cut in half, always closed and NUL-terminated */
	CU_ASSERT_EQUAL(mfs_json_str("abcdefgh", false, out, sizeof(out)), 7);
	CU_ASSERT_STRING_EQUAL(out, "\"abcde\"");
	mfs_json_str("ab\x01", false, out, sizeof(out));
	CU_ASSERT_STRING_EQUAL(out, "\"ab\"");
	mfs_json_str("a\"b", false, out, 5);
	CU_ASSERT_STRING_EQUAL(out, "\"a\"");
	CU_ASSERT_EQUAL(mfs_json_str("abc", false, out, 2), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
}

static void test_stream(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	mfs_json_fputs(f, "q\"\\\t\xc3\xa9");
	fclose(f);
	CU_ASSERT_STRING_EQUAL(buf, "\"q\\\"\\\\\\u0009\xc3\xa9\"");
	free(buf);
}

static CU_TestInfo tests[] = {
	{ "escapes", test_escapes },
	{ "cut_short", test_cut_short },
	{ "stream", test_stream },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_json[] = {
	{ "json", NULL, NULL, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
