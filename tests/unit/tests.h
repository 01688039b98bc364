/* SPDX-License-Identifier: MIT */
/*
 * tests.h - suites of the unit runner and small shared test helpers.
 */
#pragma once

#include <CUnit/CUnit.h>
#include <stdbool.h>

extern CU_SuiteInfo suite_crc32c[];
extern CU_SuiteInfo suite_codec[];
extern CU_SuiteInfo suite_segment[];
extern CU_SuiteInfo suite_io[];
extern CU_SuiteInfo suite_path[];
extern CU_SuiteInfo suite_replay[];
extern CU_SuiteInfo suite_applied[];
extern CU_SuiteInfo suite_sigbus[];
extern CU_SuiteInfo suite_pidlock[];
extern CU_SuiteInfo suite_log[];
extern CU_SuiteInfo suite_auth[];
extern CU_SuiteInfo suite_jdir[];
extern CU_SuiteInfo suite_json[];
extern CU_SuiteInfo suite_xattr[];
extern CU_SuiteInfo suite_dir[];
extern CU_SuiteInfo suite_s3[];
extern CU_SuiteInfo suite_cowmap[];
extern CU_SuiteInfo suite_backup[];
extern CU_SuiteInfo suite_ctl[];
extern CU_SuiteInfo suite_rectype[];
extern CU_SuiteInfo suite_segrun[];

/* Make a fresh temporary directory (mkdtemp under $TMPDIR or /tmp); returns
 * a malloc'd path or NULL. rm_rf() removes it again. */
char *test_mkdtemp(void);
int test_rm_rf(const char *path);

/* A suite's scratch folder: test_tmpdir_open() makes a fresh one and opens
 * it (O_DIRECTORY) into *fd, returns 0 or -1; test_tmpdir_close() closes
 * the fd, removes the folder and frees the path, returns 0. */
int test_tmpdir_open(char **path, int *fd);
int test_tmpdir_close(char **path, int *fd);
