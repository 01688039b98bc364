/* SPDX-License-Identifier: MIT */
/*
 * crc32c.h - CRC32C (Castagnoli), SSE4.2 when the CPU has it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC32C over @len bytes. Start with crc = 0; the value returned
 * is the finished CRC of everything fed so far (pre/post inversion done
 * inside), so crc32c(crc32c(0, a), b) == crc32c(0, a || b).
 */
uint32_t mfs_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * Continue two CRC32Cs over the same @len bytes in one pass (a record's own
 * CRC and its segment's): each word is loaded once, which matters when the
 * bytes come from memory rather than cache.
 */
void mfs_crc32c_pair(uint32_t *crc_a, uint32_t *crc_b, const void *buf, size_t len);

/*
 * The CRC32C of A || B from the CRC32Cs of A and of B (@len_b bytes),
 * without the bytes: mfs_crc32c_combine(mfs_crc32c(0, a), mfs_crc32c(0, b),
 * len_b) == mfs_crc32c(mfs_crc32c(0, a), b). A microsecond or so, whatever
 * @len_b: for long buffers whose CRC is known already.
 */
uint32_t mfs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* The portable table implementation, always available (for tests). */
uint32_t mfs_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* The SSE4.2 implementation; only call when mfs_crc32c_has_hw(). */
uint32_t mfs_crc32c_hw(uint32_t crc, const void *buf, size_t len);

/* Whether the running CPU has the CRC32 instruction. */
bool mfs_crc32c_has_hw(void);
