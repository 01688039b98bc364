/* SPDX-License-Identifier: MIT */
/*
 * test_segment.c - unit tests of lib/segment (placeholder until written).
 */
#include "tests.h"

static void test_placeholder(void)
{
	CU_PASS("placeholder");
}

static CU_TestInfo tests[] = {
	{ "placeholder", test_placeholder },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_segment[] = {
	{ "segment", NULL, NULL, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
