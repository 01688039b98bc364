/* SPDX-License-Identifier: MIT */
/*
 * test_log.c - unit tests of lib/log: with stamps, a stderr line carries
 * the time, the program, its PID and the level; on the journal's stream
 * (JOURNAL_STREAM names stderr) only the "<N>" priority; without stamps
 * (the CLI) "PROG: message"; the repeat limiter logs a failure the first
 * time, then with a doubling interval, and a new message at once.
 */
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/log.h"
#include "tests.h"

#define SEC 1000000000ull

/* Log one warning with stderr redirected to a temporary file; its text into @buf. */
static void capture(bool stamps, bool journal, char *buf, size_t size)
{
	char path[] = "/tmp/mfs-log.XXXXXX", env[64];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	struct stat st;
	ssize_t n;

	CU_ASSERT_FATAL(fd >= 0 && saved >= 0);
	fstat(fd, &st);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	if (journal)
		setenv("JOURNAL_STREAM", env, 1);
	else
		unsetenv("JOURNAL_STREAM");
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	mfs_log_set_ident("/usr/sbin/mirrord");
	mfs_log_set_stamps(stamps);
	log_warning("Failed to open '%s'", "/x");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	mfs_log_set_stamps(false);
	unsetenv("JOURNAL_STREAM");
	n = pread(fd, buf, size - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
}

static void test_stamps(void)
{
	char buf[512];
	regex_t re;

	capture(true, false, buf, sizeof(buf));
	CU_ASSERT_FATAL(regcomp(&re,
				"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
				"\\.[0-9]{3}[+-][0-9]{4} mirrord\\[[0-9]+\\] warning: "
				"Failed to open '/x'\n$",
				REG_EXTENDED) == 0);
	CU_ASSERT_EQUAL(regexec(&re, buf, 0, NULL, 0), 0);
	if (regexec(&re, buf, 0, NULL, 0))
		fprintf(stderr, "got: %s", buf);
	regfree(&re);
}

static void test_journal(void)
{
	char buf[512];

	capture(true, true, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "<4>Failed to open '/x'\n");
}

static void test_plain(void)
{
	char buf[512];

	capture(false, false, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "mirrord: Failed to open '/x'\n");
}

static void test_repeat(void)
{
	struct mfs_log_repeat rp = {0};
	unsigned dropped = 99, logged = 0;

	CU_ASSERT_TRUE(mfs_log_repeat_due(&rp, "disk full (will retry)", 0, &dropped));
	CU_ASSERT_EQUAL(dropped, 0);
	/* twice a second for 10 minutes: logged at 2, 6, 14, 30, ... s */
	for (uint64_t t = SEC / 2; t <= 600 * SEC; t += SEC / 2)
		logged += mfs_log_repeat_due(&rp, "disk full (will retry)", t, &dropped);
	CU_ASSERT(logged >= 5 && logged <= 9);
	/* a different message: at once */
	CU_ASSERT_TRUE(mfs_log_repeat_due(&rp, "quarantined 'x'", 600 * SEC, &dropped));
	CU_ASSERT_EQUAL(dropped, 0);
	CU_ASSERT_FALSE(mfs_log_repeat_due(&rp, "quarantined 'x'", 600 * SEC + 1, &dropped));
	CU_ASSERT_TRUE(mfs_log_repeat_due(&rp, "quarantined 'x'", 603 * SEC, &dropped));
	CU_ASSERT_EQUAL(dropped, 1);
	/* the failure is over: the same message again is new */
	mfs_log_repeat_reset(&rp);
	CU_ASSERT_TRUE(mfs_log_repeat_due(&rp, "quarantined 'x'", 603 * SEC + 1, &dropped));
}

static CU_TestInfo tests[] = {
	{"stamps", test_stamps}, {"journal", test_journal}, {"plain", test_plain},
	{"repeat", test_repeat}, CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_log[] = {
	{"log", NULL, NULL, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
