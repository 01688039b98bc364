/* SPDX-License-Identifier: MIT */
/*
 * crc32c.c - CRC32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * Two implementations giving identical results: the SSE4.2 CRC32
 * instruction (three interleaved streams), chosen at run time when the CPU
 * has it, and a portable slicing-by-8 table. mfs_crc32c() chains: feeding a buffer in pieces
 * gives the CRC of the whole.
 */
#include "mirrorfs/crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "mirrorfs/macro.h"

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
		table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 1; k < 8; k++)
			table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xff];
}

uint32_t mfs_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&table_once, table_init);
	crc = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= crc; /* little-endian only; the hw path covers x86 */
		crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
		      table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^
		      table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

/* a * b mod P, in the reflected domain (bit 31 is x^0) */
static uint32_t gf2_mul(uint32_t a, uint32_t b)
{
	uint32_t p = 0;

	for (int i = 0; i < 32; i++) {
		if (a & 0x80000000u)
			p ^= b;
		a <<= 1;
		b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
	}
	return p;
}

/* x^(8n) mod P, reflected */
static uint32_t xpow8n(uint64_t n)
{
	uint32_t r = 0x80000000u, sq = 0x00800000u; /* x^0, x^8 */

	for (; n; n >>= 1) {
		if (n & 1)
			r = gf2_mul(r, sq);
		sq = gf2_mul(sq, sq);
	}
	return r;
}

uint32_t mfs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	return gf2_mul(xpow8n(len_b), crc_a) ^ crc_b;
}

#if defined(__x86_64__)
/*
 * Shifting a CRC over n zero bytes is a multiplication by x^(8n) mod P.
 * The hardware path runs three independent CRC32 streams over three
 * consecutive blocks (the instruction has a 3-cycle latency and a 1-cycle
 * throughput) and joins them with two table-driven shifts. Two block sizes:
 * 4 KiB for long buffers, 256 bytes for the records of a few KiB that
 * dominate a journal (one stream alone runs at a third of the speed).
 */
struct shift_tab {
	size_t blk;
	uint32_t by1[4][256], by2[4][256]; /* shift by blk, by 2 * blk bytes */
};

static struct shift_tab tab_big = {.blk = 4096}, tab_small = {.blk = 256};
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static void shift_table(uint32_t t[4][256], uint32_t k)
{
	for (int j = 0; j < 4; j++)
		for (uint32_t v = 0; v < 256; v++)
			t[j][v] = gf2_mul(k, v << (8 * j));
}

static void shift_init(void)
{
	struct shift_tab *all[] = {&tab_big, &tab_small};

	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		shift_table(all[i]->by1, xpow8n(all[i]->blk));
		shift_table(all[i]->by2, xpow8n(2 * all[i]->blk));
	}
}

static inline uint32_t shift(const uint32_t t[4][256], uint32_t r)
{
	return t[0][r & 0xff] ^ t[1][(r >> 8) & 0xff] ^ t[2][(r >> 16) & 0xff] ^ t[3][r >> 24];
}

/*
 * Three streams over 3 * t->blk bytes at a time while that many remain, for
 * one CRC or, with @two (a constant once inlined), for two CRCs of the same
 * bytes: six chains then share each load.
 */
__attribute__((target("sse4.2"), always_inline)) static inline void
crc_3way(const struct shift_tab *t, bool two, uint64_t *pa, uint64_t *pb, const uint8_t **pp,
	 size_t *plen)
{
	const uint8_t *p = *pp;
	size_t len = *plen, blk = t->blk;
	uint64_t a = *pa, b = *pb;

	while (len >= 3 * blk) {
		uint64_t a1 = 0, a2 = 0, b1 = 0, b2 = 0;
		for (size_t i = 0; i < blk; i += 8) {
			uint64_t x, y, z;
			memcpy(&x, p + i, 8);
			memcpy(&y, p + blk + i, 8);
			memcpy(&z, p + 2 * blk + i, 8);
			a = __builtin_ia32_crc32di(a, x);
			a1 = __builtin_ia32_crc32di(a1, y);
			a2 = __builtin_ia32_crc32di(a2, z);
			if (two) {
				b = __builtin_ia32_crc32di(b, x);
				b1 = __builtin_ia32_crc32di(b1, y);
				b2 = __builtin_ia32_crc32di(b2, z);
			}
		}
		a = shift(t->by2, (uint32_t)a) ^ shift(t->by1, (uint32_t)a1) ^ (uint32_t)a2;
		if (two)
			b = shift(t->by2, (uint32_t)b) ^ shift(t->by1, (uint32_t)b1) ^ (uint32_t)b2;
		p += 3 * blk;
		len -= 3 * blk;
	}
	*pa = a;
	*pb = b;
	*pp = p;
	*plen = len;
}

/* Continue *@crc_a (and, with @two, *@crc_b) over @len bytes. */
__attribute__((target("sse4.2"), always_inline)) static inline void
crc_hw(bool two, uint32_t *crc_a, uint32_t *crc_b, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t a = (uint32_t)~*crc_a, b = two ? (uint32_t)~*crc_b : 0;

	if (len >= 3 * tab_small.blk)
		pthread_once(&shift_once, shift_init);
	for (; len && ((uintptr_t)p & 7); p++, len--) {
		a = __builtin_ia32_crc32qi((uint32_t)a, *p);
		if (two)
			b = __builtin_ia32_crc32qi((uint32_t)b, *p);
	}
	crc_3way(&tab_big, two, &a, &b, &p, &len);
	crc_3way(&tab_small, two, &a, &b, &p, &len);
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		a = __builtin_ia32_crc32di(a, w);
		if (two)
			b = __builtin_ia32_crc32di(b, w);
	}
	for (; len; p++, len--) {
		a = __builtin_ia32_crc32qi((uint32_t)a, *p);
		if (two)
			b = __builtin_ia32_crc32qi((uint32_t)b, *p);
	}
	*crc_a = ~(uint32_t)a;
	if (two)
		*crc_b = ~(uint32_t)b;
}

__attribute__((target("sse4.2"))) uint32_t mfs_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	crc_hw(false, &crc, NULL, buf, len);
	return crc;
}

__attribute__((target("sse4.2"))) static void crc32c_pair_hw(uint32_t *crc_a, uint32_t *crc_b,
							     const void *buf, size_t len)
{
	crc_hw(true, crc_a, crc_b, buf, len);
}

bool mfs_crc32c_has_hw(void)
{
	static atomic_int has = -1;
	int h = atomic_load_explicit(&has, memory_order_relaxed);

	if (h < 0) {
		__builtin_cpu_init();
		h = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		atomic_store_explicit(&has, h, memory_order_relaxed);
	}
	return h;
}
#else
uint32_t mfs_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return mfs_crc32c_sw(crc, buf, len);
}

bool mfs_crc32c_has_hw(void)
{
	return false;
}
#endif

uint32_t mfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (mfs_crc32c_has_hw())
		return mfs_crc32c_hw(crc, buf, len);
	return mfs_crc32c_sw(crc, buf, len);
}

void mfs_crc32c_pair(uint32_t *crc_a, uint32_t *crc_b, const void *buf, size_t len)
{
#if defined(__x86_64__)
	if (mfs_crc32c_has_hw()) {
		crc32c_pair_hw(crc_a, crc_b, buf, len);
		return;
	}
#endif
	*crc_a = mfs_crc32c_sw(*crc_a, buf, len);
	*crc_b = mfs_crc32c_sw(*crc_b, buf, len);
}
