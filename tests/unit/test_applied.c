/* SPDX-License-Identifier: MIT */
/*
 * test_applied.c - unit tests of lib/applied: the exact on-disk bytes,
 * round trips, and a hostile STATE/applied (missing, garbage, truncated,
 * overlong lines, missing or repeated keys, numbers beyond 64 bits).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/applied.h"
#include "mirrorfs/io.h"
#include "tests.h"

#define UUID_TEXT "0123abcd-4567-89ef-0123-456789abcdef"

static char *tmp;
static int statefd = -1;

static int setup(void)
{
	return test_tmpdir_open(&tmp, &statefd);
}

static int teardown(void)
{
	return test_tmpdir_close(&tmp, &statefd);
}

/* Put @len bytes of @text in STATE/applied. */
static void put(const char *text, size_t len)
{
	CU_ASSERT_EQUAL_FATAL(mfs_replace_file(statefd, MFS_APPLIED_FILE, text, len, 0644), 0);
}

/* Put @text (a C string) in STATE/applied and read it back. */
static int put_read(const char *text, struct mfs_applied *ret)
{
	put(text, strlen(text));
	return mfs_applied_read(statefd, ret);
}

static void test_format(void)
{
	/* the bytes mirrord, promote and rejoin have always written */
	static const char want[] = "data_set " UUID_TEXT "\napplied_lsn 42\n"
				   "last_record_ns 1700000000123456789\nsegments_applied 7\n";
	struct mfs_applied a = { .have_data_set = true, .applied_lsn = 42,
				 .last_record_ns = 1700000000123456789ull, .segments_applied = 7 };
	char *text = NULL;
	size_t len = 0;

	CU_ASSERT_EQUAL_FATAL(mfs_uuid_parse(UUID_TEXT, a.data_set), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_applied_write(statefd, &a), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(statefd, MFS_APPLIED_FILE, 4096, &text, &len), 0);
	CU_ASSERT_EQUAL(len, sizeof(want) - 1);
	CU_ASSERT_STRING_EQUAL(text, want);
	free(text);

	/* no data set yet: "-" */
	a = (struct mfs_applied){ 0 };
	CU_ASSERT_EQUAL_FATAL(mfs_applied_write(statefd, &a), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(statefd, MFS_APPLIED_FILE, 4096, &text, &len), 0);
	CU_ASSERT_STRING_EQUAL(text, "data_set -\napplied_lsn 0\nlast_record_ns 0\n"
				     "segments_applied 0\n");
	free(text);
	/* authenticated: the chain follows */
	a.have_chain = true;
	a.chain_lsn = 9;
	a.chain_tag[0] = 0xab;
	a.chain_tag[31] = 0x01;
	CU_ASSERT_EQUAL_FATAL(mfs_applied_write(statefd, &a), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(statefd, MFS_APPLIED_FILE, 4096, &text, &len), 0);
	CU_ASSERT_STRING_EQUAL(text, "data_set -\napplied_lsn 0\nlast_record_ns 0\n"
				     "segments_applied 0\nchain_lsn 9\nchain_tag ab"
				     "000000000000000000000000000000000000000000000000000000000000"
				     "01\n");
	free(text);
}

static void check_round_trip(const struct mfs_applied *a)
{
	struct mfs_applied b;

	memset(&b, 0xa5, sizeof(b));
	CU_ASSERT_EQUAL_FATAL(mfs_applied_write(statefd, a), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_applied_read(statefd, &b), 0);
	CU_ASSERT_EQUAL(b.have_data_set, a->have_data_set);
	if (a->have_data_set)
		CU_ASSERT_EQUAL(memcmp(b.data_set, a->data_set, 16), 0);
	CU_ASSERT_EQUAL(b.applied_lsn, a->applied_lsn);
	CU_ASSERT_EQUAL(b.last_record_ns, a->last_record_ns);
	CU_ASSERT_EQUAL(b.segments_applied, a->segments_applied);
	CU_ASSERT_EQUAL(b.have_chain, a->have_chain);
	if (a->have_chain)
		CU_ASSERT(b.chain_lsn == a->chain_lsn && !memcmp(b.chain_tag, a->chain_tag, 32));
}

static void test_round_trip(void)
{
	struct mfs_applied a = { .have_data_set = true, .applied_lsn = 1, .last_record_ns = 2,
				 .segments_applied = 3 };

	CU_ASSERT_EQUAL_FATAL(mfs_uuid_generate(a.data_set), 0);
	check_round_trip(&a);
	/* the largest numbers round-trip */
	a.applied_lsn = a.last_record_ns = a.segments_applied = UINT64_MAX;
	check_round_trip(&a);
	a = (struct mfs_applied){ 0 };
	check_round_trip(&a);
	a.applied_lsn = 99;
	check_round_trip(&a);
}

static void test_missing(void)
{
	struct mfs_applied a = { .applied_lsn = 5 };

	(void)unlinkat(statefd, MFS_APPLIED_FILE, 0);
	CU_ASSERT_EQUAL(mfs_applied_read(statefd, &a), -ENOENT);
	CU_ASSERT_EQUAL(a.applied_lsn, 5); /* untouched on failure */
}

/* The files written by hand (docs/runbook.md) and by older writers. */
static void test_accepted(void)
{
	struct mfs_applied a;

	CU_ASSERT_EQUAL_FATAL(put_read("data_set " UUID_TEXT "\napplied_lsn 17\n", &a), 0);
	CU_ASSERT_TRUE(a.have_data_set);
	CU_ASSERT_EQUAL(a.data_set[0], 0x01);
	CU_ASSERT_EQUAL(a.data_set[15], 0xef);
	CU_ASSERT_EQUAL(a.applied_lsn, 17);
	CU_ASSERT_EQUAL(a.last_record_ns, 0);
	CU_ASSERT_EQUAL(a.segments_applied, 0);
	/* any order; unknown keys skipped; upper-case UUID */
	CU_ASSERT_EQUAL_FATAL(put_read("segments_applied 3\nfuture_key some-value\napplied_lsn 9\n"
				       "data_set 0123ABCD-4567-89EF-0123-456789ABCDEF\n",
				       &a),
			      0);
	CU_ASSERT_TRUE(a.have_data_set);
	CU_ASSERT_EQUAL(a.data_set[0], 0x01);
	CU_ASSERT_EQUAL(a.applied_lsn, 9);
	CU_ASSERT_EQUAL(a.segments_applied, 3);
	CU_ASSERT_EQUAL_FATAL(put_read("data_set -\napplied_lsn 0\n", &a), 0);
	CU_ASSERT_FALSE(a.have_data_set);
}

static void test_garbage(void)
{
	static const char *bad[] = {
		"",
		"\n",
		"garbage",
		"hello world\n", /* well-formed but unknown: data_set, applied_lsn missing */
		"data_set " UUID_TEXT "\n\napplied_lsn 1\n",
		"data_set " UUID_TEXT "\napplied_lsn  1\n",
		"data_set " UUID_TEXT "\napplied_lsn\t1\n",
		"data_set " UUID_TEXT "\r\napplied_lsn 1\r\n",
		"data_set " UUID_TEXT "\napplied_lsn 1 \n",
		" data_set " UUID_TEXT "\napplied_lsn 1\n",
		"data_set " UUID_TEXT "\napplied_lsn\n",
		"data_set " UUID_TEXT "\napplied_lsn -1\n",
		"data_set " UUID_TEXT "\napplied_lsn +1\n",
		"data_set " UUID_TEXT "\napplied_lsn 0x10\n",
		"data_set " UUID_TEXT "\napplied_lsn 12abc\n",
		"data_set " UUID_TEXT "\nApplied_lsn 1\n",
		"data_set zzz\napplied_lsn 1\n",
		"data_set " UUID_TEXT "0\napplied_lsn 1\n",
		"data_set 0123abcd-4567-89ef-0123-456789abcde\napplied_lsn 1\n",
		"data_set --\napplied_lsn 1\n",
		"data_set " UUID_TEXT "\napplied_lsn 1\napplied_lsn 2\n",
		"data_set -\ndata_set " UUID_TEXT "\napplied_lsn 1\n",
		"data_set " UUID_TEXT "\napplied_lsn 1\nlast_record_ns x\n",
		"data_set " UUID_TEXT "\napplied_lsn 1\nfuture caf\xc3\xa9\n",
	};
	static const char nul[] = "data_set " UUID_TEXT "\napplied_lsn 1\0\n";
	static const char nul_end[] = "data_set " UUID_TEXT "\napplied_lsn 1\n\0";
	struct mfs_applied a = { .applied_lsn = 5 };
	unsigned char bin[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		int r = put_read(bad[i], &a);

		if (r != -EBADMSG)
			fprintf(stderr, "\naccepted (%d): '%s'\n", r, bad[i]);
		CU_ASSERT_EQUAL(r, -EBADMSG);
	}
	CU_ASSERT_EQUAL(a.applied_lsn, 5); /* untouched on failure */

	/* NUL bytes, and binary noise */
	put(nul, sizeof(nul) - 1);
	CU_ASSERT_EQUAL(mfs_applied_read(statefd, &a), -EBADMSG);
	put(nul_end, sizeof(nul_end) - 1);
	CU_ASSERT_EQUAL(mfs_applied_read(statefd, &a), -EBADMSG);
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)(i * 151 + 7);
	put((const char *)bin, sizeof(bin));
	CU_ASSERT_EQUAL(mfs_applied_read(statefd, &a), -EBADMSG);
}

/* Every cut of a good file is refused, except at the end of a line once
 * data_set and applied_lsn are in: those are files of the runbook's form. */
static void test_truncated(void)
{
	static const char full[] = "data_set " UUID_TEXT "\napplied_lsn 123456\n"
				   "last_record_ns 1700000000000000000\nsegments_applied 12\n";
	size_t len = sizeof(full) - 1;
	size_t lsn_end = (size_t)(strstr(full, "\nlast_record_ns") - full) + 1;

	for (size_t cut = 0; cut < len; cut++) {
		struct mfs_applied a;
		int r;

		put(full, cut);
		r = mfs_applied_read(statefd, &a);
		if (cut >= lsn_end && full[cut - 1] == '\n') {
			CU_ASSERT_EQUAL(r, 0);
			CU_ASSERT_EQUAL(a.applied_lsn, 123456);
			CU_ASSERT_EQUAL(a.segments_applied, 0);
		} else {
			if (r != -EBADMSG)
				fprintf(stderr, "\naccepted a cut at %zu: %d\n", cut, r);
			CU_ASSERT_EQUAL(r, -EBADMSG);
		}
	}
}

static void test_overlong(void)
{
	struct mfs_applied a;
	char line[256], longline[1100], *big;
	size_t n = 8192, off;

	/* a 31-byte key and an 80-byte value are the limits (a chain_tag is 64) */
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\n%031d %063d\n", 0, 0);
	memset(strstr(line, "\n0") + 1, 'k', 31);
	CU_ASSERT_EQUAL(put_read(line, &a), 0);
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\n%032d v\n", 0);
	memset(strstr(line, "\n0") + 1, 'k', 32);
	CU_ASSERT_EQUAL(put_read(line, &a), -EBADMSG);
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\nk %080d\n", 0);
	CU_ASSERT_EQUAL(put_read(line, &a), 0);
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\nk %081d\n", 0);
	CU_ASSERT_EQUAL(put_read(line, &a), -EBADMSG);
	/* the chain: both keys or neither, 64 hex digits */
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\nchain_lsn 1\nchain_tag %064d\n", 7);
	CU_ASSERT_EQUAL(put_read(line, &a), 0);
	CU_ASSERT(a.have_chain && a.chain_lsn == 1 && a.chain_tag[31] == 7);
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\nchain_lsn 1\n");
	CU_ASSERT_EQUAL(put_read(line, &a), -EBADMSG);
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\nchain_lsn 1\nchain_tag %063d\n", 7);
	CU_ASSERT_EQUAL(put_read(line, &a), -EBADMSG);
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1\nchain_lsn 1\nchain_tag %063dG\n", 7);
	CU_ASSERT_EQUAL(put_read(line, &a), -EBADMSG);
	/* a long number: its digits fit in a value but not in 64 bits */
	snprintf(line, sizeof(line), "data_set -\napplied_lsn %063d\n", 1);
	CU_ASSERT_EQUAL(put_read(line, &a), 0);
	CU_ASSERT_EQUAL(a.applied_lsn, 1);
	snprintf(line, sizeof(line), "data_set -\napplied_lsn 1%063d\n", 0);
	CU_ASSERT_EQUAL(put_read(line, &a), -EBADMSG);

	/* a 1000-byte line in a small file; a huge line; a file beyond 4 KiB of
	 * otherwise valid lines */
	snprintf(longline, sizeof(longline), "data_set -\napplied_lsn 1\n%01000d 1\n", 0);
	CU_ASSERT_EQUAL(put_read(longline, &a), -EBADMSG);
	big = malloc(n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	memset(big, 'x', n);
	big[n - 1] = '\n';
	put(big, n);
	CU_ASSERT_EQUAL(mfs_applied_read(statefd, &a), -EBADMSG);
	off = (size_t)snprintf(big, n, "data_set -\napplied_lsn 1\n");
	while (off + 16 < n)
		off += (size_t)snprintf(big + off, n - off, "padding 0\n");
	put(big, off);
	CU_ASSERT_EQUAL(mfs_applied_read(statefd, &a), -EBADMSG);
	free(big);
}

static void test_missing_keys(void)
{
	struct mfs_applied a;

	CU_ASSERT_EQUAL(put_read("data_set " UUID_TEXT "\n", &a), -EBADMSG);
	CU_ASSERT_EQUAL(put_read("applied_lsn 5\n", &a), -EBADMSG);
	CU_ASSERT_EQUAL(put_read("applied_lsn 5\nlast_record_ns 1\nsegments_applied 1\n", &a),
			-EBADMSG);
	CU_ASSERT_EQUAL(put_read("data_set -\nlast_record_ns 1\nsegments_applied 1\n", &a),
			-EBADMSG);
	CU_ASSERT_EQUAL(put_read("data_set -\napplied_lsn 5\nsegments_applied 2\n", &a), 0);
	CU_ASSERT_EQUAL(a.applied_lsn, 5);
	CU_ASSERT_EQUAL(a.last_record_ns, 0);
	CU_ASSERT_EQUAL(a.segments_applied, 2);
}

static void test_huge_numbers(void)
{
	static const char *bad[] = {
		"18446744073709551616",  /* UINT64_MAX + 1 */
		"18446744073709551620",
		"99999999999999999999",
		"184467440737095516150", /* UINT64_MAX * 10 */
		"340282366920938463463374607431768211456",
	};
	struct mfs_applied a;
	char text[256];

	CU_ASSERT_EQUAL(put_read("data_set -\napplied_lsn 18446744073709551615\n", &a), 0);
	CU_ASSERT_EQUAL(a.applied_lsn, UINT64_MAX);
	CU_ASSERT_EQUAL(put_read("data_set -\napplied_lsn 18446744073709551614\n", &a), 0);
	CU_ASSERT_EQUAL(a.applied_lsn, UINT64_MAX - 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		snprintf(text, sizeof(text), "data_set -\napplied_lsn %s\n", bad[i]);
		CU_ASSERT_EQUAL(put_read(text, &a), -EBADMSG);
		snprintf(text, sizeof(text), "data_set -\napplied_lsn 1\nlast_record_ns %s\n",
			 bad[i]);
		CU_ASSERT_EQUAL(put_read(text, &a), -EBADMSG);
		snprintf(text, sizeof(text), "data_set -\napplied_lsn 1\nsegments_applied %s\n",
			 bad[i]);
		CU_ASSERT_EQUAL(put_read(text, &a), -EBADMSG);
	}
}

static CU_TestInfo tests[] = {
	{ "format", test_format },
	{ "round_trip", test_round_trip },
	{ "missing", test_missing },
	{ "accepted", test_accepted },
	{ "garbage", test_garbage },
	{ "truncated", test_truncated },
	{ "overlong", test_overlong },
	{ "missing_keys", test_missing_keys },
	{ "huge_numbers", test_huge_numbers },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_applied[] = {
	{ "applied", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
