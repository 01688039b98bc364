/* SPDX-License-Identifier: MIT */
/*
 * test_auth.c - authenticated segments (format 2): fixed test vectors
 * computed independently (Python hashlib.blake2b and a bitwise CRC32C, see
 * docs/journal-format.md), key files, and the reader's verdicts on
 * forged, altered, re-keyed, truncated-and-extended and chained segments.
 */
#include "mirrorfs/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/crc32c.h"
#include "mirrorfs/format.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"
#include "tests.h"

static char *tmpdir;
static int dirfd_ = -1;
static const uint8_t uuid_v[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
				   0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};

/* The vector of docs/journal-format.md: key 00 01 .. 1f. */
static const char vec_key_id[] = "e162e1a22375cc1a";
static const char vec_hdr[] =
	"4d46534a524e4c0a0200000080000000101112131415161718191a1b1c1d1e1f0100000000000000"
	"070000000000000000c04f57b4a17a180100000000000000e162e1a22375cc1aaaaaaaaaaaaaaaaa"
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa00000000000000000000000000000000"
	"0000000066116988";
static const char vec_seed[] = "3bdeedc700c0d1f61be5cab617ed61324758cb8d2a6e795de80ac7bf6c8cc037";
static const char vec_rec[] =
	"5800000001000100070000000000000000c04f57b4a17a18000000007bfed3f1050064622f743100"
	"200000000000000500000068656c6c6fca0fc4ece50ade81c3e2ba7f82a11d6c2fc1b8feb785833d"
	"98158f327618d453";
static const char vec_tag[] = "ca0fc4ece50ade81c3e2ba7f82a11d6c2fc1b8feb785833d98158f327618d453";

static int suite_init(void)
{
	tmpdir = test_mkdtemp();
	if (!tmpdir)
		return -1;
	dirfd_ = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dirfd_ < 0 ? -1 : 0;
}

static int suite_cleanup(void)
{
	if (dirfd_ >= 0)
		close(dirfd_);
	dirfd_ = -1;
	test_rm_rf(tmpdir);
	free(tmpdir);
	tmpdir = NULL;
	return 0;
}

/* ---------------------------------------------------------------- helpers */

static size_t unhex(const char *s, uint8_t *out)
{
	size_t n = strlen(s) / 2;

	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(s + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void key_of(uint8_t first, struct mfs_auth_key *k)
{
	uint8_t raw[32];

	for (int i = 0; i < 32; i++)
		raw[i] = (uint8_t)(first + i);
	CU_ASSERT_EQUAL_FATAL(mfs_auth_key_from_raw(raw, k), 0);
}

static void ring_of(struct mfs_keyring *kr, const struct mfs_auth_key *a,
		    const struct mfs_auth_key *b)
{
	memset(kr, 0, sizeof(*kr));
	kr->keys[kr->n++] = *a;
	if (b)
		kr->keys[kr->n++] = *b;
}

struct scan {
	struct mfs_seg_info info;
	unsigned n;
};

static void scan_buf(const uint8_t *buf, size_t len, const struct mfs_keyring *kr, struct scan *ret)
{
	struct mfs_segr_opts o = {.expect_uuid = NULL, .keys = kr};
	struct mfs_rec *rec = malloc(sizeof(*rec));
	struct mfs_segr *r = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
	CU_ASSERT_EQUAL_FATAL(mfs_segr_open_buf_opts(buf, len, &o, &r), 0);
	ret->n = 0;
	while (mfs_segr_next(r, rec) > 0)
		ret->n++;
	ret->info = *mfs_segr_info(r);
	mfs_segr_free(r);
	free(rec);
}

/* Append @n writes of "record i" to @w. */
static void append_n(struct mfs_segw *w, int n)
{
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	char data[64];
	uint64_t lsn;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
	for (int i = 0; i < n; i++) {
		memset(rec, 0, sizeof(*rec));
		rec->type = MFS_REC_WRITE;
		snprintf(rec->path, sizeof(rec->path), "db/f%d", i % 3);
		rec->offset = (uint64_t)i * 4096;
		snprintf(data, sizeof(data), "record %d", i);
		rec->data = data;
		rec->data_len = (uint32_t)strlen(data);
		CU_ASSERT_EQUAL(mfs_segw_append(w, rec, &lsn), 0);
	}
	free(rec);
}

/* Read file @name of the temp folder whole; returns a malloc'd buffer. */
static uint8_t *slurp(const char *name, size_t *ret_len)
{
	int fd = openat(dirfd_, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *b;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(fstat(fd, &st) == 0);
	b = malloc((size_t)st.st_size + 1);
	CU_ASSERT_FATAL(mfs_pread_all(fd, b, (size_t)st.st_size, 0) == st.st_size);
	close(fd);
	*ret_len = (size_t)st.st_size;
	return b;
}

/* A closed authenticated segment @name: LSN first.., @n records. */
static void make_seg(const char *name, const struct mfs_auth_key *k, const uint8_t prev[32],
		     uint64_t seg_no, uint64_t first, int n, uint8_t ret_chain[32])
{
	struct mfs_segw_opts o = {.key = k};
	struct mfs_segw *w = NULL;

	if (prev)
		memcpy(o.prev_tag, prev, 32);
	CU_ASSERT_EQUAL_FATAL(
		mfs_segw_create_opts(dirfd_, name, uuid_v, seg_no, first, 0, k ? &o : NULL, &w), 0);
	append_n(w, n);
	if (ret_chain)
		mfs_segw_chain(w, ret_chain);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, -1, NULL), 0);
}

static int truncate_at(const char *name, size_t len)
{
	int fd = openat(dirfd_, name, O_WRONLY | O_CLOEXEC);
	int r = fd >= 0 && ftruncate(fd, (off_t)len) == 0 ? 0 : -1;

	if (fd >= 0)
		close(fd);
	return r;
}

/* Recompute the CRC of the record at b[off..] (after a deliberate change). */
static void fix_crc(uint8_t *b, size_t off)
{
	uint32_t len = mfs_get_le32(b + off);
	uint32_t crc = mfs_crc32c(0, b + off, 28);

	crc = mfs_crc32c(crc, b + off + 32, len - 32);
	mfs_put_le32(b + off + 28, crc);
}

/* ---------------------------------------------------------------- tests */

static void test_vectors(void)
{
	struct mfs_auth_key k;
	struct mfs_keyring kr;
	uint8_t buf[512], want[32], got[32], hdr[128];
	char id[17];
	size_t hl, rl;
	struct scan s;

	key_of(0, &k);
	mfs_auth_id_format(k.id, id);
	CU_ASSERT_STRING_EQUAL(id, vec_key_id);
	hl = unhex(vec_hdr, buf);
	CU_ASSERT_EQUAL_FATAL(hl, 128);
	memcpy(hdr, buf, 128);
	mfs_auth_seed(&k, hdr, got);
	unhex(vec_seed, want);
	CU_ASSERT(memcmp(got, want, 32) == 0);
	rl = unhex(vec_rec, buf + hl);
	CU_ASSERT_EQUAL_FATAL(rl, 88);
	{
		struct mfs_auth_piece pc = {buf + hl + 32, rl - 64};
		mfs_auth_tag(&k, want, buf + hl, &pc, 1, got);
		unhex(vec_tag, want);
		CU_ASSERT(memcmp(got, want, 32) == 0);
	}
	/* the reader takes the vector: one authenticated record, no trailer */
	ring_of(&kr, &k, NULL);
	scan_buf(buf, hl + rl, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_TORN);
	CU_ASSERT_EQUAL(s.n, 1);
	CU_ASSERT_EQUAL(s.info.last_lsn, 7);
	CU_ASSERT_EQUAL(s.info.version, 2);
	CU_ASSERT(memcmp(s.info.last_tag, want, 32) == 0);
	/* without a key: read, not authenticated */
	scan_buf(buf, hl + rl, NULL, &s);
	CU_ASSERT_EQUAL(s.n, 1);
	CU_ASSERT_FALSE(s.info.authenticated);
	/* one bit of the data flipped, CRC made right again: refused */
	buf[hl + 0x33] ^= 1;
	fix_crc(buf, hl);
	scan_buf(buf, hl + rl, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.info.auth_fail, MFS_AUTH_BAD_TAG);
	CU_ASSERT_EQUAL(s.info.auth_lsn, 7);
	CU_ASSERT_EQUAL(s.info.bad_offset, 128);
	CU_ASSERT_EQUAL(s.n, 0);
	/* a keyless reader sees a well-formed record */
	scan_buf(buf, hl + rl, NULL, &s);
	CU_ASSERT_EQUAL(s.n, 1);
}

static void test_keyfile(void)
{
	char path[512], path2[512];
	struct mfs_auth_key a, b;
	struct mfs_keyring kr = {0};
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/k1", tmpdir);
	CU_ASSERT_EQUAL_FATAL(mfs_auth_key_generate(path), 0);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
	CU_ASSERT_EQUAL(st.st_size, 65);
	CU_ASSERT_EQUAL(mfs_auth_key_generate(path), -EEXIST);
	CU_ASSERT_EQUAL(mfs_auth_key_load(path, &a), 0);
	snprintf(path2, sizeof(path2), "%s/k2", tmpdir);
	CU_ASSERT_EQUAL_FATAL(mfs_auth_key_generate(path2), 0);
	CU_ASSERT_EQUAL(mfs_auth_key_load(path2, &b), 0);
	CU_ASSERT(memcmp(a.key, b.key, 32) != 0);
	CU_ASSERT(memcmp(a.id, b.id, 8) != 0);
	CU_ASSERT_EQUAL(mfs_keyring_add_file(&kr, path), 0);
	CU_ASSERT_EQUAL(mfs_keyring_add_file(&kr, path), -EEXIST);
	CU_ASSERT_EQUAL(mfs_keyring_add_file(&kr, path2), 0);
	CU_ASSERT_EQUAL(kr.n, 2);
	CU_ASSERT_PTR_EQUAL(mfs_keyring_find(&kr, b.id), &kr.keys[1]);
	/* readable by others: refused */
	CU_ASSERT_EQUAL(chmod(path, 0644), 0);
	CU_ASSERT_EQUAL(mfs_auth_key_load(path, &a), -EPERM);
	/* not a key */
	snprintf(path, sizeof(path), "%s/k3", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, "00112233\n", 9), 9);
	close(fd);
	CU_ASSERT_EQUAL(mfs_auth_key_load(path, &a), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_auth_key_load("/nonexistent/key", &a), -ENOENT);
}

static void test_roundtrip_and_keys(void)
{
	struct mfs_auth_key k1, k2, k3;
	struct mfs_keyring kr1, kr23, kr12;
	uint8_t chain[32], *b;
	size_t len;
	struct scan s;

	key_of(1, &k1);
	key_of(2, &k2);
	key_of(3, &k3);
	ring_of(&kr1, &k1, NULL);
	ring_of(&kr23, &k2, &k3);
	ring_of(&kr12, &k2, &k1); /* rotation: both keys */
	make_seg("rt", &k1, NULL, 1, 1, 10, chain);
	b = slurp("rt", &len);
	scan_buf(b, len, &kr1, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
	CU_ASSERT(s.info.authenticated);
	CU_ASSERT_EQUAL(s.n, 10);
	CU_ASSERT(memcmp(s.info.last_tag, chain, 32) == 0);
	scan_buf(b, len, &kr12, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
	CU_ASSERT(s.info.authenticated);
	/* another key: refused, nothing read */
	scan_buf(b, len, &kr23, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.info.auth_fail, MFS_AUTH_UNKNOWN_KEY);
	CU_ASSERT_EQUAL(s.n, 0);
	/* key id rewritten to another key's (header CRC fixed): tags fail */
	memcpy(b + 64, k2.id, 8);
	mfs_put_le32(b + 124, mfs_crc32c(0, b, 124));
	scan_buf(b, len, &kr23, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.info.auth_fail, MFS_AUTH_BAD_TAG);
	CU_ASSERT_EQUAL(s.info.auth_lsn, 1);
	CU_ASSERT_EQUAL(s.n, 0);
	/* no key: read as before, not authenticated */
	scan_buf(b, len, NULL, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
	CU_ASSERT_FALSE(s.info.authenticated);
	free(b);
	/* a format-1 segment for a reader with a key: refused at once */
	make_seg("v1", NULL, NULL, 1, 1, 3, NULL);
	b = slurp("v1", &len);
	CU_ASSERT_EQUAL(mfs_get_le32(b + 8), 1);
	scan_buf(b, len, &kr1, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.info.auth_fail, MFS_AUTH_NO_TAGS);
	CU_ASSERT_EQUAL(s.n, 0);
	free(b);
}

/* Records of two segments spliced (truncated and extended, reordered):
 * every CRC right, the chain is not. */
static void test_splice_and_prev(void)
{
	struct mfs_auth_key k;
	struct mfs_keyring kr;
	uint8_t c1[32], c2[32], *a, *b, *m;
	size_t la, lb, cut;
	uint32_t rl;
	struct scan s;

	key_of(9, &k);
	ring_of(&kr, &k, NULL);
	make_seg("sa", &k, NULL, 1, 1, 6, c1);
	make_seg("sb", &k, c1, 2, 7, 6, c2);
	a = slurp("sa", &la);
	b = slurp("sb", &lb);
	scan_buf(b, lb, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
	CU_ASSERT(memcmp(s.info.prev_tag, c1, 32) == 0);
	CU_ASSERT(memcmp(s.info.last_tag, c2, 32) == 0);
	/* a's header and first three records, then b's records renumbered
	 * 4.. (same key, valid tags for their own chain, CRCs fixed) */
	cut = MFS_SEG_HEADER_SIZE;
	for (int i = 0; i < 3; i++)
		cut += mfs_get_le32(a + cut);
	m = malloc(cut + lb);
	memcpy(m, a, cut);
	rl = mfs_get_le32(b + MFS_SEG_HEADER_SIZE);
	memcpy(m + cut, b + MFS_SEG_HEADER_SIZE, rl);
	mfs_put_le64(m + cut + 8, 4);
	fix_crc(m, cut);
	scan_buf(m, cut + rl, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.info.auth_lsn, 4);
	CU_ASSERT_EQUAL(s.info.bad_offset, cut);
	CU_ASSERT_EQUAL(s.n, 3);
	CU_ASSERT_EQUAL(s.info.last_lsn, 3);
	/* a segment's own records in another order: the second one first */
	memcpy(m, a, la);
	{
		size_t o1 = MFS_SEG_HEADER_SIZE, l1 = mfs_get_le32(a + o1);
		size_t l2 = mfs_get_le32(a + o1 + l1);
		memcpy(m + o1, a + o1 + l1, l2);
		memcpy(m + o1 + l2, a + o1, l1);
		mfs_put_le64(m + o1 + 8, 1);
		fix_crc(m, o1);
		mfs_put_le64(m + o1 + l2 + 8, 2);
		fix_crc(m, o1 + l2);
	}
	scan_buf(m, la, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.info.auth_lsn, 1);
	CU_ASSERT_EQUAL(s.n, 0);
	/* the trailer's tag: its counts changed (CRC right) */
	memcpy(m, a, la);
	mfs_put_le64(m + la - 32 - 24 + 8, 99);
	fix_crc(m, la - 32 - 24 - 32);
	scan_buf(m, la, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.n, 6);
	/* the header's previous tag changed (header CRC right): every tag fails */
	memcpy(m, b, lb);
	m[80] ^= 0x40;
	mfs_put_le32(m + 124, mfs_crc32c(0, m, 124));
	scan_buf(m, lb, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
	CU_ASSERT_EQUAL(s.info.auth_lsn, 7);
	CU_ASSERT_EQUAL(s.n, 0);
	free(m);
	free(a);
	free(b);
}

/* The writer's reopen continues the chain; unappend steps it back. */
static void test_reopen_unappend(void)
{
	struct mfs_segw_opts o = {0};
	struct mfs_auth_key k, k2;
	struct mfs_keyring kr, kr2;
	struct mfs_segw *w = NULL;
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	uint8_t c_before[32], c[32], *b;
	uint64_t lsn, cut = 0;
	size_t len;
	struct scan s;

	key_of(5, &k);
	key_of(6, &k2);
	ring_of(&kr, &k, NULL);
	ring_of(&kr2, &k2, NULL);
	o.key = &k;
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create_opts(dirfd_, "ro", uuid_v, 3, 100, 0, &o, &w), 0);
	append_n(w, 4);
	mfs_segw_chain(w, c_before);
	rec->type = MFS_REC_TRUNCATE;
	snprintf(rec->path, sizeof(rec->path), "db/x");
	CU_ASSERT_EQUAL(mfs_segw_append(w, rec, &lsn), 0);
	mfs_segw_chain(w, c);
	CU_ASSERT(memcmp(c, c_before, 32) != 0);
	CU_ASSERT_EQUAL(mfs_segw_unappend(w, lsn), 0);
	mfs_segw_chain(w, c);
	CU_ASSERT(memcmp(c, c_before, 32) == 0);
	mfs_segw_free(w); /* left open, as by a crash */
	w = NULL;
	CU_ASSERT_EQUAL(mfs_segw_reopen_keys(dirfd_, "ro", uuid_v, &kr2, &w, &cut), -ENOKEY);
	CU_ASSERT_EQUAL(mfs_segw_reopen(dirfd_, "ro", uuid_v, &w, &cut), -ENOKEY);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_reopen_keys(dirfd_, "ro", uuid_v, &kr, &w, &cut), 0);
	CU_ASSERT(mfs_segw_is_auth(w));
	mfs_segw_chain(w, c);
	CU_ASSERT(memcmp(c, c_before, 32) == 0);
	append_n(w, 2);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, -1, NULL), 0);
	b = slurp("ro", &len);
	scan_buf(b, len, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
	CU_ASSERT(s.info.authenticated);
	CU_ASSERT_EQUAL(s.n, 6);
	CU_ASSERT_EQUAL(s.info.last_lsn, 105);
	/* torn tail of a tagged segment: cut at the last whole record */
	scan_buf(b, len - 100, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_TORN);
	CU_ASSERT_EQUAL(s.n, 5);
	free(b);
	free(rec);
}

/* Compressed writes (format 2, with or without a key): what was written
 * reads back byte for byte; a frame that does not expand is corrupt. */
static void test_compressed(void)
{
	struct mfs_segw_opts o = {.zstd_level = 3};
	struct mfs_auth_key k;
	struct mfs_keyring kr;
	struct mfs_segw *w = NULL;
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	struct mfs_segr *r = NULL;
	static uint8_t page[8192], noise[4096];
	uint8_t *b;
	uint64_t lsn;
	size_t len, stored = 0;
	struct scan s;
	int n = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i % 100 < 90 ? ' ' : 'a' + i % 7);
	for (size_t i = 0, x = 88172645463325252ull; i < sizeof(noise); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		noise[i] = (uint8_t)(x >> 24);
	}
	key_of(7, &k);
	ring_of(&kr, &k, NULL);
	for (int pass = 0; pass < 2; pass++) {
		const char *name = pass ? "zk" : "z";
		o.key = pass ? &k : NULL;
		CU_ASSERT_EQUAL_FATAL(mfs_segw_create_opts(dirfd_, name, uuid_v, 1, 1, 0, &o, &w),
				      0);
		for (int i = 0; i < 6; i++) {
			memset(rec, 0, sizeof(*rec));
			rec->type = MFS_REC_WRITE;
			snprintf(rec->path, sizeof(rec->path), "db/p");
			rec->offset = (uint64_t)i * 8192;
			rec->data = i % 2 ? (const void *)noise : (const void *)page;
			rec->data_len = i % 2 ? sizeof(noise) : sizeof(page);
			CU_ASSERT_EQUAL(mfs_segw_append(w, rec, &lsn), 0);
			/* the caller's record is left as it was */
			CU_ASSERT(rec->data == (i % 2 ? (const void *)noise : (const void *)page));
			CU_ASSERT_EQUAL(rec->zstd_len, 0);
		}
		CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, -1, NULL), 0);
		b = slurp(name, &len);
		CU_ASSERT(len < 3 * sizeof(page) + 3 * sizeof(noise)); /* the pages shrank */
		CU_ASSERT_EQUAL(mfs_get_le32(b + 8), 2);
		CU_ASSERT_EQUAL_FATAL(
			mfs_segr_open_buf_opts(
				b, len, &(struct mfs_segr_opts){.keys = pass ? &kr : NULL}, &r),
			0);
		n = 0;
		while (mfs_segr_next(r, rec) > 0) {
			CU_ASSERT_EQUAL(rec->zstd_len, 0);
			if (n % 2 == 0) {
				CU_ASSERT(rec->was_zstd_len > 0 && rec->was_zstd_len < 1000);
				CU_ASSERT_EQUAL(rec->data_len, sizeof(page));
				CU_ASSERT(memcmp(rec->data, page, sizeof(page)) == 0);
				stored += rec->was_zstd_len;
			} else { /* noise does not compress: stored as it is */
				CU_ASSERT_EQUAL(rec->was_zstd_len, 0);
				CU_ASSERT(memcmp(rec->data, noise, sizeof(noise)) == 0);
			}
			n++;
		}
		CU_ASSERT_EQUAL(n, 6);
		CU_ASSERT_EQUAL(mfs_segr_info(r)->verdict, MFS_SEG_OK);
		CU_ASSERT_EQUAL(mfs_segr_info(r)->authenticated, pass == 1);
		r = mfs_segr_free(r);
		/* torn in the middle of the last compressed record: 4 whole */
		{
			size_t o0 = MFS_SEG_HEADER_SIZE;
			for (int i = 0; i < 4; i++)
				o0 += mfs_get_le32(b + o0);
			scan_buf(b, o0 + 20, pass ? &kr : NULL, &s);
			CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_TORN);
			CU_ASSERT_EQUAL(s.n, 4);
		}
		if (!pass) { /* a frame that does not expand, CRC right: corrupt */
			size_t o0 = MFS_SEG_HEADER_SIZE;
			b[o0 + 32 + 2 + 4 + 8] ^= 1; /* the declared size (u32 after the offset) */
			fix_crc(b, o0);
			scan_buf(b, len, NULL, &s);
			CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_CORRUPT);
			CU_ASSERT_EQUAL(s.n, 0);
			/* a format-1 reader's view: the flag is unknown there */
			mfs_put_le32(b + 8, 1);
			mfs_put_le32(b + 124, mfs_crc32c(0, b, 124));
			scan_buf(b, len, NULL, &s);
			CU_ASSERT_EQUAL(s.n, 0);
			CU_ASSERT(s.info.verdict == MFS_SEG_CORRUPT ||
				  s.info.verdict == MFS_SEG_TORN);
		}
		free(b);
	}
	CU_ASSERT(stored > 0);
	/* a caller's record with stale compression fields (memory reused, as
	 * the replay engine's scratch record): the writer stores the data */
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "stale", uuid_v, 1, 1, &w), 0);
	memset(rec, 0, sizeof(*rec));
	rec->type = MFS_REC_WRITE;
	snprintf(rec->path, sizeof(rec->path), "db/p");
	rec->data = page;
	rec->data_len = sizeof(page);
	rec->zstd_len = 0xa5a5a5a5u;
	rec->was_zstd_len = 0xa5a5a5a5u;
	CU_ASSERT_EQUAL(mfs_segw_append(w, rec, &lsn), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, -1, NULL), 0);
	b = slurp("stale", &len);
	scan_buf(b, len, NULL, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(s.n, 1);
	free(b);
	free(rec);
}

/* The encryption vector of docs/journal-format.md, computed independently
 * (Python: hashlib.blake2b, HChaCha20 by hand over cryptography's
 * ChaCha20Poly1305, checked against the XChaCha20-Poly1305 draft's A.3.1). */
static const char vec_ekey[] = "a2ded2478692f5162885b970e251c5c1e604c6087c2ebfc233c036246363e2b4";
static const char vec_sealed[] =
	"404142434445464748494a4b4c4d4e4f5051525354555657aea7a0b4d4d5815dc8ece2217a7f64fae346cd"
	"869ecb59f22feab02f5fa3d509c2eb755f60c69a";

static void test_enc_vector(void)
{
	uint8_t raw[32], nonce[24], head[28], uuid[16], want[64], out[64], back[64], id[8];
	static const char msg[] = "mirrorfs sealed payload";
	struct mfs_auth_key ek;
	size_t n;

	for (int i = 0; i < 32; i++)
		raw[i] = (uint8_t)i;
	for (int i = 0; i < 24; i++)
		nonce[i] = (uint8_t)(0x40 + i);
	for (int i = 0; i < 28; i++)
		head[i] = (uint8_t)(0x80 + i);
	for (int i = 0; i < 16; i++)
		uuid[i] = (uint8_t)(0xa0 + i);
	CU_ASSERT_EQUAL_FATAL(mfs_enc_key_from_raw(raw, &ek), 0);
	unhex(vec_ekey, want);
	CU_ASSERT(memcmp(ek.key, want, 32) == 0);
	unhex(vec_key_id, id); /* the key file's id, as for tags */
	CU_ASSERT(memcmp(ek.id, id, 8) == 0);
	n = unhex(vec_sealed, want);
	CU_ASSERT_EQUAL_FATAL(n, sizeof(msg) - 1 + MFS_ENC_OVERHEAD);
	mfs_enc_seal(&ek, nonce, head, uuid, msg, sizeof(msg) - 1, out);
	CU_ASSERT(memcmp(out, want, n) == 0);
	CU_ASSERT_EQUAL(mfs_enc_open(&ek, head, uuid, out, n, back), 0);
	CU_ASSERT(memcmp(back, msg, sizeof(msg) - 1) == 0);
	/* another header, data set, byte or key: refused */
	head[8] ^= 1;
	CU_ASSERT_EQUAL(mfs_enc_open(&ek, head, uuid, out, n, back), -EBADMSG);
	head[8] ^= 1;
	uuid[0] ^= 1;
	CU_ASSERT_EQUAL(mfs_enc_open(&ek, head, uuid, out, n, back), -EBADMSG);
	uuid[0] ^= 1;
	out[30] ^= 1;
	CU_ASSERT_EQUAL(mfs_enc_open(&ek, head, uuid, out, n, back), -EBADMSG);
	out[30] ^= 1;
	ek.key[0] ^= 1;
	CU_ASSERT_EQUAL(mfs_enc_open(&ek, head, uuid, out, n, back), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_enc_open(&ek, head, uuid, out, MFS_ENC_OVERHEAD - 1, back), -EBADMSG);
	/* a random nonce each time: the same record never seals the same */
	ek.key[0] ^= 1;
	mfs_enc_seal(&ek, NULL, head, uuid, msg, sizeof(msg) - 1, out);
	mfs_enc_seal(&ek, NULL, head, uuid, msg, sizeof(msg) - 1, back);
	CU_ASSERT(memcmp(out, back, 24) != 0);
}

/* Does @b[0..len) hold @needle anywhere? */
static bool holds(const uint8_t *b, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(b + i, needle, n))
			return true;
	return false;
}

static void enc_ring(struct mfs_keyring *kr, uint8_t first, const struct mfs_auth_key *tag_key)
{
	uint8_t raw[32];

	memset(kr, 0, sizeof(*kr));
	if (tag_key)
		kr->keys[kr->n++] = *tag_key;
	for (int i = 0; i < 32; i++)
		raw[i] = (uint8_t)(first + i);
	CU_ASSERT_EQUAL_FATAL(mfs_enc_key_from_raw(raw, &kr->enc[kr->n_enc++]), 0);
}

static void test_encrypted(void)
{
	struct mfs_keyring kr, other, none = {0};
	struct mfs_segw_opts o = {.zstd_level = 3};
	struct mfs_segw *w = NULL;
	struct mfs_auth_key k;
	struct scan s;
	uint8_t *b;
	size_t len, o0;
	uint64_t cut = 0;

	key_of(7, &k);
	for (int pass = 0; pass < 2; pass++) { /* sealed; sealed and tagged */
		const char *name = pass ? "ek" : "e";
		enc_ring(&kr, 9, pass ? &k : NULL);
		enc_ring(&other, 10, pass ? &k : NULL);
		o.key = pass ? &k : NULL;
		o.enc_key = &kr.enc[0];
		CU_ASSERT_EQUAL_FATAL(mfs_segw_create_opts(dirfd_, name, uuid_v, 1, 1, 0, &o, &w),
				      0);
		append_n(w, 5);
		CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, -1, NULL), 0);
		b = slurp(name, &len);
		/* nothing of the paths or the data in the clear */
		CU_ASSERT(!holds(b, len, "db/f") && !holds(b, len, "record "));
		CU_ASSERT(mfs_get_le32(b + 56) & MFS_SEG_F_ENC);
		scan_buf(b, len, &kr, &s);
		CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
		CU_ASSERT_EQUAL(s.n, 5);
		CU_ASSERT_EQUAL(s.info.authenticated, pass == 1);
		/* without the key, or with another: nothing read */
		scan_buf(b, len, &none, &s);
		CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
		CU_ASSERT_EQUAL(s.info.auth_fail, MFS_AUTH_NO_ENC_KEY);
		CU_ASSERT_EQUAL(s.n, 0);
		memcpy(other.enc[0].id, kr.enc[0].id, 8); /* the right id, the wrong key */
		scan_buf(b, len, &other, &s);
		CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
		CU_ASSERT_EQUAL(s.n, 0);
		/* torn inside the fourth record: three read, torn */
		o0 = MFS_SEG_HEADER_SIZE;
		for (int i = 0; i < 3; i++)
			o0 += mfs_get_le32(b + o0);
		scan_buf(b, o0 + 40, &kr, &s);
		CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_TORN);
		CU_ASSERT_EQUAL(s.n, 3);
		/* a ciphertext byte flipped, CRC made right: refused at that record */
		b[o0 + 32 + 30] ^= 1;
		fix_crc(b, o0);
		scan_buf(b, len, &kr, &s);
		CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_UNAUTH);
		CU_ASSERT_EQUAL(s.info.auth_fail, pass ? MFS_AUTH_BAD_TAG : MFS_AUTH_BAD_SEAL);
		CU_ASSERT_EQUAL(s.info.auth_lsn, 4);
		CU_ASSERT_EQUAL(s.n, 3);
		/* the flag cleared (a record passed off as plain): corrupt */
		b[o0 + 32 + 30] ^= 1;
		mfs_put_le16(b + o0 + 6, mfs_get_le16(b + o0 + 6) & (uint16_t)~MFS_REC_F_ENC);
		fix_crc(b, o0);
		scan_buf(b, len, &kr, &s);
		CU_ASSERT(s.info.verdict != MFS_SEG_OK);
		CU_ASSERT_EQUAL(s.n, 3);
		free(b);
	}
	/* an open segment torn mid-record: reopened with the key, continued */
	enc_ring(&kr, 9, NULL);
	o.key = NULL;
	o.enc_key = &kr.enc[0];
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create_opts(dirfd_, "eo", uuid_v, 1, 1, 0, &o, &w), 0);
	append_n(w, 4);
	w = mfs_segw_free(w);
	b = slurp("eo", &len);
	CU_ASSERT_EQUAL_FATAL(truncate_at("eo", len - 7), 0);
	free(b);
	CU_ASSERT_EQUAL(mfs_segw_reopen_keys(dirfd_, "eo", uuid_v, &none, &w, &cut), -ENOKEY);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_reopen_keys(dirfd_, "eo", uuid_v, &kr, &w, &cut), 0);
	CU_ASSERT(cut > 0);
	CU_ASSERT_PTR_NOT_NULL(mfs_segw_enc_key_id(w));
	append_n(w, 2);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, -1, NULL), 0);
	b = slurp("eo", &len);
	scan_buf(b, len, &kr, &s);
	CU_ASSERT_EQUAL(s.info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(s.n, 5);
	CU_ASSERT_EQUAL(s.info.last_lsn, 5);
	free(b);
}

static CU_TestInfo tests[] = {
	{"fixed test vectors (key id, seed, tag, record)", test_vectors},
	{"key files: keygen, mode, refusals", test_keyfile},
	{"round trip, other keys, key ring, format 1", test_roundtrip_and_keys},
	{"spliced, reordered, trailer, previous tag", test_splice_and_prev},
	{"reopen continues the chain, unappend", test_reopen_unappend},
	{"compressed writes, with and without a key", test_compressed},
	{"encryption: fixed vector, nonces", test_enc_vector},
	{"encrypted segments: keys, torn tail, altered, reopen", test_encrypted},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_auth[] = {
	{"auth", suite_init, suite_cleanup, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
