/* SPDX-License-Identifier: MIT */
/*
 * test_crc32c.c - unit tests of lib/crc32c.
 *
 * The published check values on both implementations (the portable table
 * and, when the CPU has it, the SSE4.2 instruction), agreement of the two
 * on every length 0..300 at every alignment and on the lengths around the
 * hardware path's block sizes (3 x 256 and 3 x 4096 bytes), and chaining:
 * feeding a buffer in pieces gives the CRC of the whole.
 */
#include "mirrorfs/crc32c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/macro.h"
#include "tests.h"

typedef uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

static const struct {
	const char *name;
	crc_fn fn;
	bool (*usable)(void);
} impls[] = {
	{"sw", mfs_crc32c_sw, NULL},
	{"hw", mfs_crc32c_hw, mfs_crc32c_has_hw},
	{"dispatch", mfs_crc32c, NULL},
};

static bool impl_usable(size_t i)
{
	return !impls[i].usable || impls[i].usable();
}

/* Deterministic pseudo-random bytes (xorshift64*), so failures reproduce. */
static void fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		buf[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

static void test_check_values(void)
{
	static const uint8_t zeros[32];
	uint8_t ones[32], inc[32], dec[32];

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++) {
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	for (size_t i = 0; i < ARRAY_SIZE(impls); i++) {
		crc_fn f = impls[i].fn;

		if (!impl_usable(i))
			continue;
		/* "123456789" (the CRC catalogue's check value) */
		CU_ASSERT_EQUAL(f(0, "123456789", 9), 0xE3069283u);
		/* RFC 3720 (iSCSI) B.4 test vectors */
		CU_ASSERT_EQUAL(f(0, zeros, 32), 0x8A9136AAu);
		CU_ASSERT_EQUAL(f(0, ones, 32), 0x62A8AB43u);
		CU_ASSERT_EQUAL(f(0, inc, 32), 0x46DD794Eu);
		CU_ASSERT_EQUAL(f(0, dec, 32), 0x113FDB5Cu);
		/* the empty buffer leaves the CRC as it is */
		CU_ASSERT_EQUAL(f(0, "", 0), 0u);
		CU_ASSERT_EQUAL(f(0x12345678u, "", 0), 0x12345678u);
	}
}

static void test_hw_reported(void)
{
	/* Not a failure on a CPU without SSE4.2, but say which path ran. */
	if (!mfs_crc32c_has_hw()) {
		CU_PASS("no SSE4.2 on this CPU: only the table path was checked");
	} else {
		CU_PASS("SSE4.2 path checked");
	}
}

/* hw == sw on every length 0..300, at each of 8 alignments. */
static void test_hw_equals_sw(void)
{
	enum { MAXLEN = 300 };
	uint8_t *buf = malloc(MAXLEN + 16);
	unsigned mismatches = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	fill_random(buf, MAXLEN + 16, 42);
	for (size_t len = 0; len <= MAXLEN; len++) {
		for (size_t align = 0; align < 8; align++) {
			uint32_t sw = mfs_crc32c_sw(0, buf + align, len);
			uint32_t any = mfs_crc32c(0, buf + align, len);

			if (any != sw)
				mismatches++;
			if (mfs_crc32c_has_hw() && mfs_crc32c_hw(0, buf + align, len) != sw)
				mismatches++;
			/* and when continuing from a non-zero CRC */
			if (mfs_crc32c_has_hw() &&
			    mfs_crc32c_hw(0xdeadbeefu, buf + align, len) !=
				    mfs_crc32c_sw(0xdeadbeefu, buf + align, len))
				mismatches++;
		}
	}
	CU_ASSERT_EQUAL(mismatches, 0);
	free(buf);
}

/*
 * hw == sw around the three-stream thresholds and their multiples (one,
 * two rounds of each block size, then the tail), at three alignments, for
 * one CRC and for the one-pass pair of two CRCs of the same bytes.
 */
static void test_hw_blocks(void)
{
	static const size_t base[] = {10, 768, 1536, 2304, 8192, 8192 + 64, 12288, 24576, 36864 + 768};
	enum { MAXLEN = 40000 };
	uint8_t *buf = malloc(MAXLEN + 16);
	unsigned bad = 0, bad_pair = 0, checked = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	fill_random(buf, MAXLEN + 16, 5);
	for (size_t i = 0; i < ARRAY_SIZE(base); i++)
		for (size_t len = base[i] - 9; len <= base[i] + 9; len++)
			for (size_t align = 0; align < 8; align += 3) {
				uint32_t sw = mfs_crc32c_sw(0x1234567u, buf + align, len);
				uint32_t sw2 = mfs_crc32c_sw(0xfedcba9u, buf + align, len);
				uint32_t a = 0x1234567u, b = 0xfedcba9u;

				checked++;
				if (mfs_crc32c(0x1234567u, buf + align, len) != sw)
					bad++;
				mfs_crc32c_pair(&a, &b, buf + align, len);
				if (a != sw || b != sw2)
					bad_pair++;
			}
	CU_ASSERT_EQUAL(checked, ARRAY_SIZE(base) * 19 * 3);
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(bad_pair, 0);
	free(buf);
}

/* crc(crc(0, a), b) == crc(0, a || b), for every split point. */
static void test_chaining(void)
{
	enum { LEN = 300 };
	uint8_t buf[LEN];
	unsigned bad = 0;

	fill_random(buf, sizeof(buf), 7);
	for (size_t i = 0; i < ARRAY_SIZE(impls); i++) {
		crc_fn f = impls[i].fn;
		uint32_t whole, bytewise = 0;

		if (!impl_usable(i))
			continue;
		whole = f(0, buf, LEN);
		for (size_t cut = 0; cut <= LEN; cut++)
			if (f(f(0, buf, cut), buf + cut, LEN - cut) != whole)
				bad++;
		for (size_t k = 0; k < LEN; k++)
			bytewise = f(bytewise, buf + k, 1);
		if (bytewise != whole)
			bad++;
		/* three pieces */
		if (f(f(f(0, buf, 13), buf + 13, 100), buf + 113, LEN - 113) != whole)
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* mixing the implementations along a chain still agrees */
	if (mfs_crc32c_has_hw())
		CU_ASSERT_EQUAL(mfs_crc32c_hw(mfs_crc32c_sw(0, buf, 77), buf + 77, LEN - 77),
				mfs_crc32c_sw(0, buf, LEN));
	/* "123456789" in two pieces */
	CU_ASSERT_EQUAL(mfs_crc32c(mfs_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* A large buffer (spanning the unrolled loops) agrees between paths. */
static void test_large(void)
{
	size_t len = (1u << 20) + 13;
	uint8_t *buf = malloc(len);
	uint32_t before;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	fill_random(buf, len, 99);
	if (mfs_crc32c_has_hw())
		CU_ASSERT_EQUAL(mfs_crc32c_hw(0, buf, len), mfs_crc32c_sw(0, buf, len));
	before = mfs_crc32c_sw(0, buf, len);
	CU_ASSERT_EQUAL(mfs_crc32c(0, buf, len), before);
	/* a single flipped bit changes the CRC */
	buf[len / 2] ^= 0x10;
	CU_ASSERT_NOT_EQUAL(mfs_crc32c(0, buf, len), before);
	free(buf);
}

/* combine(crc(a), crc(b), |b|) == crc(a || b), from empty to 1 MiB pieces. */
static void test_combine(void)
{
	size_t len = (1u << 20) + 300;
	const size_t cuts[] = { 0, 1, 28, 300, 4096, 65536 + 7, len - 1, len };
	uint8_t *buf = malloc(len);
	uint32_t whole;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	fill_random(buf, len, 5);
	whole = mfs_crc32c(0, buf, len);
	for (size_t k = 0; k < ARRAY_SIZE(cuts); k++) {
		size_t c = cuts[k];

		CU_ASSERT_EQUAL(mfs_crc32c_combine(mfs_crc32c(0, buf, c),
						   mfs_crc32c(0, buf + c, len - c), len - c),
				whole);
	}
	/* the CRC of b alone, recovered from crc(a || b) and crc(a) */
	CU_ASSERT_EQUAL(whole ^ mfs_crc32c_combine(mfs_crc32c(0, buf, 300), 0, len - 300),
			mfs_crc32c(0, buf + 300, len - 300));
	free(buf);
}

static CU_TestInfo tests[] = {
	{"check values (sw, hw, dispatch)", test_check_values},
	{"hw path present", test_hw_reported},
	{"hw == sw, lengths 0..300, all alignments", test_hw_equals_sw},
	{"hw == sw around the block sizes, one CRC and a pair", test_hw_blocks},
	{"incremental chaining", test_chaining},
	{"1 MiB buffer", test_large},
	{"combine two CRCs without the bytes", test_combine},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_crc32c[] = {
	{"crc32c", NULL, NULL, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
