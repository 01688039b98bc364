/* SPDX-License-Identifier: MIT */
/*
 * fuzz_segment.c - libFuzzer target for the segment reader.
 *
 * The input is a whole segment file. It is read to its verdict twice, from
 * memory (mfs_segr_open_buf) and through a file descriptor (a memfd, the
 * windowed reader), and both readers must agree on everything. Every
 * record handed out is formatted (text and JSON) and must re-encode to
 * exactly the bytes it was decoded from: a decoder that accepts two
 * spellings of one record, or an encoder that disagrees with it, traps.
 * ASan and UBSan catch any read out of bounds or undefined behaviour.
 *
 * Random mutations almost never keep a CRC right, which would stop the
 * fuzzer at the first CRC check. So every input is read a second time
 * with its CRCs repaired (header CRC, each record's CRC, the trailer's
 * whole-segment CRC), which lets mutated lengths, types and payloads reach
 * the decoder's deeper checks.
 *
 * Format 2: every input is also read with a key ring holding the seeds'
 * key (gen_corpus.c). A keyed reader may only say less (unauthenticated,
 * fewer records), never more; where the key reader does not refuse, it
 * agrees with the keyless one. The repaired copy also gets its tags
 * recomputed with that key (a "forger" who holds it), so that mutated
 * tagged records get past the tag check into the decoder.
 *
 * Encrypted segments: every input is read once more with the seeds'
 * encryption key (and tag key). A reader without it reads no record of a
 * sealed segment; with it, each opened record is checked like any other
 * (but not re-encoded: it was sealed). The repaired copy is also re-sealed
 * by a forger holding that key (the mutated ciphertext taken as the
 * plaintext), so that mutated payloads reach the decoder behind the seal.
 *
 * Build: tests/fuzz/run-fuzz.sh (clang -fsanitize=fuzzer,address,undefined).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/crc32c.h"
#include "mirrorfs/format.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/record.h"
#include "mirrorfs/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The data set of the seeds written by gen_corpus.c. */
static const uint8_t seed_uuid[16] = {0x6d, 0x66, 0x73, 0x2d, 0x66, 0x75, 0x7a, 0x7a,
				      0x2d, 0x73, 0x65, 0x65, 0x64, 0x2d, 0x30, 0x31};

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_segment: check failed: %s (line %d)\n", #cond,       \
				__LINE__);                                                         \
			__builtin_trap();                                                          \
		}                                                                                  \
	} while (0)

static struct mfs_rec rec;
static uint8_t head[MFS_REC_HEADER_SIZE + 2 * (MFS_PATH_MAX + 2) + 64];
static char line[6 * 2 * MFS_PATH_MAX + 1024];

static struct mfs_keyring ring;
static struct mfs_keyring ering; /* the seeds' tag key and encryption key */
static uint8_t sealbuf[MFS_REC_MAX];

/* A decoded record re-encodes to exactly the bytes it came from (format 2:
 * but the CRC, which the encoder leaves without the tag, and the tag). */
static void check_reencode(const uint8_t *bytes, size_t len)
{
	uint32_t tag_len = mfs_get_le16(bytes + 6) & MFS_REC_F_TAG ? MFS_TAG_SIZE : 0;
	size_t head_len = 0, blob;

	CHECK(mfs_rec_encode_ext(&rec, tag_len, head, sizeof(head), &head_len) == 0);
	CHECK(head_len == mfs_rec_head_size(&rec));
	blob = mfs_rec_type_has_blob(rec.type) ? rec.data_len : 0;
	CHECK(head_len + blob + tag_len == len);
	if (tag_len)
		CHECK(mfs_crc32c(mfs_get_le32(head + 28), bytes + len - tag_len, tag_len) ==
		      mfs_get_le32(bytes + 28));
	CHECK(memcmp(head, bytes, 28) == 0);
	CHECK(memcmp(head + 32, bytes + 32, head_len - 32) == 0);
	if (blob)
		CHECK((const uint8_t *)rec.data == bytes + head_len);
}

static void check_record(const uint8_t *data, size_t size, uint64_t start, uint64_t end)
{
	CHECK(start < end && end <= size);
	CHECK(mfs_rec_type_is_valid(rec.type) && rec.type != MFS_REC_SEG_CLOSED);
	CHECK(strlen(rec.path) <= MFS_PATH_MAX && strlen(rec.path2) <= MFS_PATH_MAX);
	CHECK(mfs_rec_type_is_marker(rec.type) == (rec.path[0] == 0));
	CHECK(rec.zstd_len == 0); /* the reader expands compressed writes */
	mfs_rec_format(&rec, line, sizeof(line));
	mfs_rec_format_json(&rec, line, sizeof(line));
	if (rec.decrypted) { /* opened into the reader's buffer: nothing to compare */
		CHECK(rec.data_len == 0 || rec.data != NULL);
		return;
	}
	if (rec.was_zstd_len) { /* expanded: its frame lies in the record */
		CHECK((mfs_rec_type_info(rec.type)->flags & MFS_RT_ZSTD) && rec.data_len <= MFS_WRITE_MAX &&
		      rec.was_zstd_len < end - start);
		return;
	}
	if (rec.data_len)
		CHECK((const uint8_t *)rec.data >= data + start &&
		      (const uint8_t *)rec.data + rec.data_len <= data + end);
	check_reencode(data + start, (size_t)(end - start));
}

/* Read from memory to the end; returns the final info. */
static struct mfs_seg_info read_buf_keys(const uint8_t *data, size_t size, const uint8_t *expect,
					 const struct mfs_keyring *keys)
{
	struct mfs_segr_opts o = { .expect_uuid = expect, .keys = keys };
	struct mfs_seg_info info;
	struct mfs_segr *r = NULL;
	uint64_t prev_end, last = 0, n = 0;
	int e;

	CHECK(mfs_segr_open_buf_opts(data, size, &o, &r) == 0);
	prev_end = mfs_segr_info(r)->valid_end;
	while ((e = mfs_segr_next(r, &rec)) > 0) {
		const struct mfs_seg_info *i = mfs_segr_info(r);

		check_record(data, size, prev_end, i->valid_end);
		CHECK(n == 0 || rec.lsn == last + 1);
		last = rec.lsn;
		prev_end = i->valid_end;
		n++;
	}
	CHECK(e == 0);
	CHECK(mfs_segr_next(r, &rec) == 0); /* stays at the end */
	info = *mfs_segr_info(r);
	mfs_segr_free(r);

	mfs_seg_verdict_format(&info, line, sizeof(line));
	CHECK(mfs_seg_verdict_name(info.verdict) != NULL);
	CHECK(info.records == n && info.valid_end <= size && info.file_size == size);
	if (n)
		CHECK(info.last_lsn == last && info.header_valid);
	if (info.header_valid) /* what recovery continues the segment CRC from */
		CHECK(info.crc_valid_end == mfs_crc32c(0, data, (size_t)info.valid_end));
	if (info.verdict == MFS_SEG_OK)
		CHECK(info.header_valid && size >= info.valid_end + MFS_REC_HEADER_SIZE + 24);
	if (info.verdict == MFS_SEG_TORN || info.verdict == MFS_SEG_CORRUPT ||
	    info.verdict == MFS_SEG_UNAUTH)
		CHECK(info.bad_offset <= size);
	if (info.authenticated)
		CHECK(keys && (info.verdict == MFS_SEG_OK || info.verdict == MFS_SEG_TORN));
	return info;
}

static struct mfs_seg_info read_buf(const uint8_t *data, size_t size, const uint8_t *expect)
{
	return read_buf_keys(data, size, expect, NULL);
}

/* The keyed reader says no more than the keyless one. */
static void read_keyed(const uint8_t *data, size_t size, const struct mfs_seg_info *any)
{
	struct mfs_seg_info k = read_buf_keys(data, size, NULL, &ring);

	CHECK(k.records <= any->records);
	if (k.verdict != MFS_SEG_UNAUTH)
		CHECK(k.verdict == any->verdict && k.records == any->records &&
		      k.valid_end == any->valid_end &&
		      k.authenticated == (k.header_valid && (k.verdict == MFS_SEG_OK ||
							     k.verdict == MFS_SEG_TORN)));
	else
		CHECK(any->verdict != MFS_SEG_NOT_SEGMENT && any->verdict != MFS_SEG_BAD_VERSION);
}

/* A sealed segment read with its key: consistent on its own. */
static void read_sealed(const uint8_t *data, size_t size, const struct mfs_seg_info *any)
{
	struct mfs_seg_info e = read_buf_keys(data, size, NULL, &ering);

	if (!(any->seg_flags & MFS_SEG_F_ENC) && e.verdict != MFS_SEG_UNAUTH)
		CHECK(e.records <= any->records);
	if (e.records)
		CHECK(e.header_valid);
}

/* A forger holding the encryption key: seal every sealed record again,
 * its mutated ciphertext taken as the plaintext (same length). */
static void repair_seals(uint8_t *buf, size_t size)
{
	size_t off = MFS_SEG_HEADER_SIZE, t;

	if (size < MFS_SEG_HEADER_SIZE || mfs_get_le32(buf + 8) != 2 ||
	    !(mfs_get_le32(buf + 56) & MFS_SEG_F_ENC))
		return;
	t = mfs_get_le32(buf + 56) & MFS_SEG_F_AUTH ? MFS_TAG_SIZE : 0;
	memcpy(buf + 104, ering.enc[0].id, MFS_AUTH_KEY_ID_SIZE);
	while (size - off >= MFS_REC_HEADER_SIZE) {
		uint32_t len = mfs_get_le32(buf + off);
		size_t plen;

		if (len < MFS_REC_HEADER_SIZE + MFS_ENC_OVERHEAD + t || len > size - off)
			break;
		plen = len - MFS_REC_HEADER_SIZE - MFS_ENC_OVERHEAD - t;
		if (mfs_get_le16(buf + off + 6) & MFS_REC_F_ENC) {
			uint8_t *s = buf + off + MFS_REC_HEADER_SIZE;
			memcpy(sealbuf, s + MFS_ENC_NONCE_SIZE, plen);
			mfs_enc_seal(&ering.enc[0], s, buf + off, buf + 16, sealbuf, plen, s);
		}
		off += len;
	}
}

/* A forger holding the key: recompute the tags of a tagged segment. */
static void repair_tags(uint8_t *buf, size_t size)
{
	uint8_t chain[MFS_TAG_SIZE];
	size_t off = MFS_SEG_HEADER_SIZE;

	if (size < MFS_SEG_HEADER_SIZE || mfs_get_le32(buf + 8) != 2 ||
	    !(mfs_get_le32(buf + 56) & MFS_SEG_F_AUTH))
		return;
	memcpy(buf + 64, ring.keys[0].id, MFS_AUTH_KEY_ID_SIZE);
	mfs_put_le32(buf + 124, mfs_crc32c(0, buf, 124));
	mfs_auth_seed(&ring.keys[0], buf, chain);
	while (size - off >= MFS_REC_HEADER_SIZE) {
		uint32_t len = mfs_get_le32(buf + off);
		struct mfs_auth_piece pc;

		if (len < MFS_REC_HEADER_SIZE + MFS_TAG_SIZE || len > size - off)
			break;
		pc = (struct mfs_auth_piece){ buf + off + MFS_REC_HEADER_SIZE,
					      len - MFS_REC_HEADER_SIZE - MFS_TAG_SIZE };
		mfs_auth_tag(&ring.keys[0], chain, buf + off, &pc, 1, buf + off + len - MFS_TAG_SIZE);
		if (mfs_get_le16(buf + off + 4) != MFS_REC_SEG_CLOSED)
			memcpy(chain, buf + off + len - MFS_TAG_SIZE, MFS_TAG_SIZE);
		off += len;
	}
}

/* The same bytes through the fd reader must give the same answer. */
static void read_fd(const uint8_t *data, size_t size, const struct mfs_seg_info *want)
{
	static int fd = -1;
	struct mfs_seg_info got;

	/*
	 * Not for an empty input: mfs_segr_open_fd() on an empty file passes
	 * NULL to memcmp (lib/segread.c, segr_header), see the tests' report.
	 */
	if (size == 0)
		return;
	if (fd < 0)
		fd = memfd_create("fuzz-segment", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) < 0 || mfs_pwrite_all(fd, data, size, 0) < 0)
		return;
	CHECK(mfs_seg_scan_fd(fd, NULL, NULL, NULL, &got) == 0);
	CHECK(got.verdict == want->verdict && got.records == want->records &&
	      got.last_lsn == want->last_lsn && got.valid_end == want->valid_end &&
	      got.bad_offset == want->bad_offset && got.crc_valid_end == want->crc_valid_end);
}

/* Recompute every CRC that can be located in buf[0..size). */
static void repair_crcs(uint8_t *buf, size_t size)
{
	size_t off = MFS_SEG_HEADER_SIZE;

	if (size < MFS_SEG_HEADER_SIZE)
		return;
	mfs_put_le32(buf + 124, mfs_crc32c(0, buf, 124));
	while (size - off >= MFS_REC_HEADER_SIZE) {
		uint32_t len = mfs_get_le32(buf + off), crc;

		if (len < MFS_REC_HEADER_SIZE || len > size - off)
			break;
		if (mfs_get_le16(buf + off + 4) == MFS_REC_SEG_CLOSED &&
		    (len == MFS_REC_HEADER_SIZE + sizeof(struct mfs_seg_trailer) ||
		     len == MFS_REC_HEADER_SIZE + sizeof(struct mfs_seg_trailer) + MFS_TAG_SIZE))
			mfs_put_le32(buf + off + MFS_REC_HEADER_SIZE + 16, mfs_crc32c(0, buf, off));
		crc = mfs_crc32c(0, buf + off, 28);
		crc = mfs_crc32c(crc, buf + off + MFS_REC_HEADER_SIZE, len - MFS_REC_HEADER_SIZE);
		mfs_put_le32(buf + off + 28, crc);
		off += len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfs_seg_info any, mine;
	uint8_t *fixed;

	if (!ring.n) {
		uint8_t raw[32];
		for (int i = 0; i < 32; i++)
			raw[i] = (uint8_t)i;
		CHECK(mfs_auth_key_from_raw(raw, &ring.keys[0]) == 0);
		ring.n = 1;
		ering = ring;
		CHECK(mfs_enc_key_from_raw(raw, &ering.enc[0]) == 0);
		ering.n_enc = 1;
	}
	any = read_buf(data, size, NULL);
	read_keyed(data, size, &any);
	read_sealed(data, size, &any);
	mine = read_buf(data, size, seed_uuid);
	/* expecting a data set changes only the foreign verdict */
	if (mine.verdict != MFS_SEG_FOREIGN)
		CHECK(mine.verdict == any.verdict && mine.last_lsn == any.last_lsn);
	else
		CHECK(any.header_valid && memcmp(any.uuid, seed_uuid, 16) != 0);
	read_fd(data, size, &any);

	fixed = malloc(size ? size : 1);
	if (!fixed)
		return 0;
	memcpy(fixed, data, size);
	repair_crcs(fixed, size);
	any = read_buf(fixed, size, NULL);
	read_fd(fixed, size, &any);
	read_keyed(fixed, size, &any);
	repair_seals(fixed, size); /* seals, then tags, then CRCs: each covers the one before */
	repair_tags(fixed, size);
	repair_crcs(fixed, size);
	any = read_buf(fixed, size, NULL);
	read_keyed(fixed, size, &any);
	read_sealed(fixed, size, &any);
	free(fixed);
	return 0;
}
