/* SPDX-License-Identifier: MIT */
/*
 * runner.c - the one CUnit runner for the unit suites.
 *
 * Usage: unit-tests [SUITE...]; no argument runs every suite. The exit
 * status is non-zero when any test failed.
 */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"

static const struct {
	const char *name;
	CU_SuiteInfo *suites;
} all[] = {
	{ "crc32c", suite_crc32c }, { "codec", suite_codec }, { "segment", suite_segment },
	{ "io", suite_io },	    { "path", suite_path },   { "replay", suite_replay },
	{ "applied", suite_applied }, { "sigbus", suite_sigbus }, { "pidlock", suite_pidlock },
	{ "log", suite_log },
	{ "auth", suite_auth },
	{ "jdir", suite_jdir },
	{ "json", suite_json },
	{ "xattr", suite_xattr },
	{ "dir", suite_dir },
	{ "s3", suite_s3 },
	{ "cowmap", suite_cowmap },
	{ "backup", suite_backup },
	{ "ctl", suite_ctl },
	{ "rectype", suite_rectype },
	{ "segrun", suite_segrun },
};

int main(int argc, char **argv)
{
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return EXIT_FAILURE;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		bool want = argc < 2;
		for (int a = 1; a < argc; a++)
			if (strcmp(argv[a], all[i].name) == 0)
				want = true;
		if (want && CU_register_suites(all[i].suites) != CUE_SUCCESS) {
			fprintf(stderr, "unit-tests: cannot register suite '%s': %s\n", all[i].name,
				CU_get_error_msg());
			CU_cleanup_registry();
			return EXIT_FAILURE;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
