/* SPDX-License-Identifier: MIT */
/*
 * segread.c - reading and validating journal segment files (the writer
 * is segment.c), and the text of their verdicts.
 *
 * Invariants: every length is checked against the file size and
 * MFS_REC_MAX before any allocation or copy; a record is returned only
 * once its CRC, type, LSN and payload are valid (in format 2 also its tag,
 * checked before anything sealed is opened, and its expansion); the
 * verdict is one of the seven in enum mfs_seg_verdict. A segment is read
 * from memory or from a file through a window, never whole.
 */
#include "mirrorfs/segment.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/crc32c.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#define WINDOW (4u << 20)

struct mfs_segr {
	const uint8_t *buf; /* memory mode: the whole segment */
	int fd;             /* file mode: read through a window */
	uint8_t *win;
	size_t win_cap;
	uint64_t win_off, win_len;
	uint64_t off; /* next byte to read */
	uint32_t crc; /* CRC32C of [0, off) */
	uint64_t next_lsn;
	bool have_expect, done;
	uint8_t expect[16];
	const struct mfs_keyring *keys; /* non-empty: tags required and checked */
	const struct mfs_auth_key *key; /* the segment's key, when checked */
	uint32_t tag_len;               /* MFS_TAG_SIZE in a tagged segment */
	uint8_t chain[MFS_TAG_SIZE];    /* last valid record's tag, or the seed */
	uint8_t *zbuf;                  /* the last compressed write, expanded */
	size_t zcap;
	const struct mfs_auth_key *ekey; /* MFS_SEG_F_ENC: the segment's encryption key */
	uint8_t *dbuf;                   /* the last sealed record, opened */
	size_t dcap;
	struct mfs_seg_info info;
};

/*
 * Point *ret at @n bytes at @off (already checked to lie within the file).
 * Returns 0 or -errno.
 */
static int segr_get(struct mfs_segr *r, uint64_t off, size_t n, const uint8_t **ret)
{
	ssize_t got;
	size_t want;

	if (r->buf) {
		*ret = r->buf + off;
		return 0;
	}
	if (off >= r->win_off && off + n <= r->win_off + r->win_len) {
		*ret = r->win + (off - r->win_off);
		return 0;
	}
	want = MFS_MAX(n, (size_t)WINDOW);
	if (want > r->info.file_size - off)
		want = (size_t)(r->info.file_size - off);
	if (want > r->win_cap) {
		uint8_t *nw = realloc(r->win, want);
		if (!nw)
			return -ENOMEM;
		r->win = nw;
		r->win_cap = want;
	}
	got = mfs_pread_all(r->fd, r->win, want, off);
	if (got < 0)
		return (int)got;
	r->win_off = off;
	r->win_len = (uint64_t)got;
	if ((size_t)got < n)
		return -EIO; /* the file shrank under us */
	*ret = r->win;
	return 0;
}

static void finish(struct mfs_segr *r, enum mfs_seg_verdict v, uint64_t bad_offset)
{
	if (v != MFS_SEG_OK && v != MFS_SEG_TORN)
		r->info.authenticated = false;
	r->info.verdict = v;
	r->info.bad_offset = bad_offset;
	r->done = true;
}

/*
 * The offset just past the last non-zero byte of [@from, file_size), or
 * @from when that range is all zeros. Returns 0 or -errno.
 */
static int zeros_from(struct mfs_segr *r, uint64_t from, uint64_t *ret)
{
	uint64_t end = from;

	for (uint64_t off = from; off < r->info.file_size;) {
		size_t n = (size_t)MFS_MIN(r->info.file_size - off, (uint64_t)WINDOW);
		const uint8_t *p;
		int e = segr_get(r, off, n, &p);

		if (e < 0)
			return e;
		for (size_t i = n; i > 0; i--)
			if (p[i - 1]) {
				end = off + i;
				break;
			}
		off += n;
	}
	*ret = end;
	return 0;
}

/*
 * The record at r->off does not read. The writer keeps written zeros
 * ahead of an open segment's last record (segment.c), so a record torn by
 * a crash is followed by zeros, not by the end of the file: it is a torn
 * tail when nothing but zeros follows byte @end (its own last bytes may
 * be zeros too), and corrupt when anything else does. @torn: torn
 * whatever follows (no record starts here, or it runs past the file).
 * Returns 0 or -errno.
 */
static int finish_tail(struct mfs_segr *r, uint64_t end, bool torn)
{
	uint64_t z;
	int e = zeros_from(r, r->off, &z);

	if (e < 0)
		return e;
	if (torn || z <= end) {
		r->info.zeros_from = z;
		finish(r, MFS_SEG_TORN, r->off);
	} else {
		finish(r, MFS_SEG_CORRUPT, r->off);
	}
	return 0;
}

/* Version 1: bytes 56..123 are reserved. Returns the first non-zero one, or -1. */
static int header_v1_extra(const uint8_t *h)
{
	for (int i = 56; i < 124; i++)
		if (h[i])
			return i;
	return -1;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Version 2: flags, key id, previous tag. Returns the offset of a bad
 * field, or -1 when the header is well-formed (fields copied to r->info).
 */
static int header_v2_extra(struct mfs_segr *r, const uint8_t *h)
{
	uint32_t flags = mfs_get_le32(h + 56);

	if (flags & ~MFS_SEG_F_KNOWN)
		return 56;
	if (!all_zero(h + 60, 4))
		return 60;
	if (!(flags & MFS_SEG_F_ENC) && !all_zero(h + 104, 8))
		return 104;
	if (!all_zero(h + 112, 12))
		return 112;
	if (!(flags & MFS_SEG_F_AUTH) && !all_zero(h + 64, 8 + MFS_TAG_SIZE))
		return 64;
	r->info.seg_flags = flags;
	memcpy(r->info.enc_key_id, h + 104, MFS_AUTH_KEY_ID_SIZE);
	memcpy(r->info.key_id, h + 64, MFS_AUTH_KEY_ID_SIZE);
	memcpy(r->info.prev_tag, h + 72, MFS_TAG_SIZE);
	memcpy(r->info.last_tag, h + 72, MFS_TAG_SIZE);
	r->tag_len = (flags & MFS_SEG_F_AUTH) ? MFS_TAG_SIZE : 0;
	return -1;
}

static void finish_unauth(struct mfs_segr *r, enum mfs_auth_fail why, uint64_t off, uint64_t lsn)
{
	r->info.auth_fail = why;
	r->info.auth_lsn = lsn;
	finish(r, MFS_SEG_UNAUTH, off);
}

/* A reader with keys: the segment must be tagged with one of them. */
static void header_auth(struct mfs_segr *r, const uint8_t *h)
{
	if (!(r->info.seg_flags & MFS_SEG_F_AUTH)) {
		finish_unauth(r, MFS_AUTH_NO_TAGS, 0, r->info.first_lsn);
		return;
	}
	r->key = mfs_keyring_find(r->keys, r->info.key_id);
	if (!r->key) {
		finish_unauth(r, MFS_AUTH_UNKNOWN_KEY, 64, r->info.first_lsn);
		return;
	}
	mfs_auth_seed(r->key, h, r->chain);
	r->info.authenticated = true; /* as long as every record checks out */
}

/* Expand a compressed write into r->zbuf (valid until the next record). */
static int segr_expand(struct mfs_segr *r, struct mfs_rec *rec)
{
	if (rec->data_len > r->zcap) {
		uint8_t *n = realloc(r->zbuf, rec->data_len);
		if (!n)
			return -ENOMEM;
		r->zbuf = n;
		r->zcap = rec->data_len;
	}
	return mfs_rec_expand(rec, r->zbuf, r->zcap);
}

/* Check the tag of the record p[0..len) (decoded: @lsn). */
static bool segr_tag_ok(struct mfs_segr *r, const uint8_t *p, uint64_t len, uint8_t tag[])
{
	struct mfs_auth_piece pc = { p + MFS_REC_HEADER_SIZE,
				     (size_t)len - MFS_REC_HEADER_SIZE - MFS_TAG_SIZE };

	mfs_auth_tag(r->key, r->chain, p, &pc, 1, tag);
	return mfs_auth_tag_equal(tag, p + len - MFS_TAG_SIZE);
}

/*
 * A sealed record p[0..len) (MFS_SEG_F_ENC, not the trailer): its CRC,
 * then its tag (before anything is opened), then open it into r->dbuf as
 * the unsealed record would be and decode that. Returns 1 with @rec
 * decoded (rec->decrypted set) and *@seg_crc moved on, 0 with the verdict
 * set, or -errno.
 */
static int segr_open_sealed(struct mfs_segr *r, const uint8_t *p, uint64_t len,
			    struct mfs_rec *rec, uint32_t *seg_crc)
{
	uint16_t flags = mfs_get_le16(p + 6);
	uint64_t slen = len - MFS_REC_HEADER_SIZE - r->tag_len; /* sealed bytes */
	uint64_t plen = slen - MFS_ENC_OVERHEAD, dlen = MFS_REC_HEADER_SIZE + plen;
	uint8_t tag[MFS_TAG_SIZE];
	uint8_t *d;

	if (len < MFS_REC_HEADER_SIZE + r->tag_len + MFS_ENC_OVERHEAD || !(flags & MFS_REC_F_ENC) ||
	    mfs_get_le32(p + 28) != mfs_crc32c(mfs_crc32c(0, p, 28), p + MFS_REC_HEADER_SIZE,
					       len - MFS_REC_HEADER_SIZE)) {
		return finish_tail(r, r->off + len, false);
	}
	if (r->key && !segr_tag_ok(r, p, len, tag)) {
		finish_unauth(r, MFS_AUTH_BAD_TAG, r->off, mfs_get_le64(p + 8));
		return 0;
	}
	if (dlen > r->dcap) {
		d = realloc(r->dbuf, dlen);
		if (!d)
			return -ENOMEM;
		r->dbuf = d;
		r->dcap = dlen;
	}
	d = r->dbuf;
	if (mfs_enc_open(r->ekey, p, r->info.uuid, p + MFS_REC_HEADER_SIZE, slen,
			 d + MFS_REC_HEADER_SIZE) < 0) {
		finish_unauth(r, MFS_AUTH_BAD_SEAL, r->off, mfs_get_le64(p + 8));
		return 0;
	}
	/* the record as it was before sealing, untagged, its CRC made anew */
	memcpy(d, p, MFS_REC_HEADER_SIZE);
	mfs_put_le32(d, (uint32_t)dlen);
	mfs_put_le16(d + 6, flags & (uint16_t)~(MFS_REC_F_ENC | MFS_REC_F_TAG));
	mfs_put_le32(d + 28, mfs_crc32c(mfs_crc32c(0, d, 28), d + MFS_REC_HEADER_SIZE, plen));
	if (mfs_rec_decode_v2(d, dlen, 0, rec, NULL) < 0 ||
	    (flags & ~(MFS_REC_F_ENC | MFS_REC_F_ZSTD)) != (r->tag_len ? MFS_REC_F_TAG : 0)) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	*seg_crc = mfs_crc32c(*seg_crc, p, len);
	rec->decrypted = true;
	return 1;
}

/* Check the header; sets the verdict and done when it is not a usable one. */
static int segr_header(struct mfs_segr *r)
{
	uint64_t size = r->info.file_size;
	size_t have = (size_t)MFS_MIN(size, (uint64_t)MFS_SEG_HEADER_SIZE);
	const uint8_t *h;
	int ret;

	if (size == 0) { /* created, nothing written yet: a torn header */
		finish(r, MFS_SEG_TORN, 0);
		return 0;
	}
	ret = segr_get(r, 0, have, &h);
	if (ret < 0)
		return ret;
	if (memcmp(h, MFS_SEG_MAGIC, MFS_MIN(have, (size_t)MFS_SEG_MAGIC_LEN)) != 0) {
		finish(r, MFS_SEG_NOT_SEGMENT, 0);
		return 0;
	}
	if (have >= 12) {
		r->info.version = mfs_get_le32(h + 8);
		if (r->info.version != MFS_FORMAT_VERSION && r->info.version != MFS_FORMAT_VERSION_2) {
			finish(r, MFS_SEG_BAD_VERSION, 8);
			return 0;
		}
	}
	if (have < MFS_SEG_HEADER_SIZE) {
		finish(r, MFS_SEG_TORN, 0); /* header itself torn: no records */
		return 0;
	}
	if (mfs_get_le32(h + 124) != mfs_crc32c(0, h, 124) ||
	    mfs_get_le32(h + 12) != MFS_SEG_HEADER_SIZE || mfs_get_le64(h + 40) == 0) {
		finish(r, MFS_SEG_CORRUPT, 0);
		return 0;
	}
	ret = r->info.version == MFS_FORMAT_VERSION ? header_v1_extra(h) : header_v2_extra(r, h);
	if (ret >= 0) {
		finish(r, MFS_SEG_CORRUPT, (uint64_t)ret);
		return 0;
	}
	memcpy(r->info.uuid, h + 16, 16);
	r->info.seg_no = mfs_get_le64(h + 32);
	r->info.first_lsn = mfs_get_le64(h + 40);
	r->info.created_ns = mfs_get_le64(h + 48);
	r->info.last_lsn = r->info.first_lsn - 1;
	r->info.header_valid = true;
	r->next_lsn = r->info.first_lsn;
	r->crc = mfs_crc32c(0, h, MFS_SEG_HEADER_SIZE);
	r->off = r->info.valid_end = MFS_SEG_HEADER_SIZE;
	r->info.crc_valid_end = r->crc;
	if (r->have_expect && memcmp(r->expect, r->info.uuid, 16) != 0)
		finish(r, MFS_SEG_FOREIGN, 16);
	else if (r->keys && r->keys->n)
		header_auth(r, h);
	if (!r->done && (r->info.seg_flags & MFS_SEG_F_ENC)) {
		r->ekey = mfs_keyring_find_enc(r->keys, r->info.enc_key_id);
		if (!r->ekey)
			finish_unauth(r, MFS_AUTH_NO_ENC_KEY, 104, r->info.first_lsn);
	}
	return 0;
}

static int segr_open(struct mfs_segr *r, const struct mfs_segr_opts *o, struct mfs_segr **ret)
{
	int e;

	if (o && o->expect_uuid) {
		r->have_expect = true;
		memcpy(r->expect, o->expect_uuid, 16);
	}
	if (o)
		r->keys = o->keys;
	e = segr_header(r);
	if (e < 0) {
		mfs_segr_free(r);
		return e;
	}
	*ret = r;
	return 0;
}

int mfs_segr_open_fd(int fd, const uint8_t *expect_uuid, struct mfs_segr **ret)
{
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid };

	return mfs_segr_open_fd_opts(fd, &o, ret);
}

int mfs_segr_open_fd_opts(int fd, const struct mfs_segr_opts *o, struct mfs_segr **ret)
{
	struct mfs_segr *r;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = fd;
	r->info.file_size = r->info.zeros_from = (uint64_t)st.st_size;
	return segr_open(r, o, ret);
}

int mfs_segr_open_buf(const void *buf, size_t len, const uint8_t *expect_uuid,
		      struct mfs_segr **ret)
{
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid };

	return mfs_segr_open_buf_opts(buf, len, &o, ret);
}

int mfs_segr_open_buf_opts(const void *buf, size_t len, const struct mfs_segr_opts *o,
			   struct mfs_segr **ret)
{
	static const uint8_t empty[1];
	struct mfs_segr *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->fd = -EBADF;
	r->buf = len ? buf : empty;
	r->info.file_size = r->info.zeros_from = len;
	return segr_open(r, o, ret);
}

struct mfs_segr *mfs_segr_free(struct mfs_segr *r)
{
	if (!r)
		return NULL;
	free(r->win);
	free(r->zbuf);
	free(r->dbuf);
	free(r);
	return NULL;
}

const struct mfs_seg_info *mfs_segr_info(struct mfs_segr *r)
{
	return &r->info;
}

/* A record that decodes is checked against the segment: LSN, trailer. */
static int segr_check_trailer(struct mfs_segr *r, const struct mfs_rec *rec, uint64_t len)
{
	const struct mfs_seg_trailer *t = &rec->trailer;

	if (rec->lsn != r->next_lsn - 1 || t->last_lsn != r->next_lsn - 1 ||
	    t->rec_count != r->info.records || t->seg_crc != r->crc ||
	    r->off + len != r->info.file_size) {
		finish(r, MFS_SEG_CORRUPT, r->off);
	} else {
		finish(r, MFS_SEG_OK, 0);
	}
	return 0;
}

int mfs_segr_next(struct mfs_segr *r, struct mfs_rec *rec)
{
	uint8_t tag[MFS_TAG_SIZE];
	uint64_t remain, len;
	const uint8_t *p;
	uint32_t crc;
	int e;

	if (r->done)
		return 0;
	remain = r->info.file_size - r->off;
	if (remain < MFS_REC_HEADER_SIZE)
		return finish_tail(r, r->off, true);
	e = segr_get(r, r->off, MFS_REC_HEADER_SIZE, &p);
	if (e < 0)
		return e;
	len = mfs_get_le32(p);
	if (len == 0) /* zeros: the zeroed window, or a write that never landed */
		return finish_tail(r, r->off, true);
	if (len < MFS_REC_HEADER_SIZE || len > MFS_REC_MAX) /* torn inside its length? */
		return finish_tail(r, r->off + 4, false);
	if (len > remain)
		return finish_tail(r, r->off, true);
	e = segr_get(r, r->off, (size_t)len, &p);
	if (e < 0)
		return e;
	crc = r->crc;
	if (r->ekey && mfs_get_le16(p + 4) != MFS_REC_SEG_CLOSED) {
		e = segr_open_sealed(r, p, len, rec, &crc);
		if (e <= 0)
			return e;
	} else if ((r->info.version == MFS_FORMAT_VERSION_2 ? mfs_rec_decode_v2
							     : mfs_rec_decode_ext)(
			   p, (size_t)len, r->tag_len, rec, &crc) < 0) {
		/* the last record may be half-written: torn, not corrupt */
		return finish_tail(r, r->off + len, false);
	}
	if (r->key && !rec->decrypted && !segr_tag_ok(r, p, len, tag)) {
		finish_unauth(r, MFS_AUTH_BAD_TAG, r->off, rec->lsn);
		return 0;
	}
	if (rec->type == MFS_REC_SEG_CLOSED)
		return segr_check_trailer(r, rec, len);
	if (rec->lsn != r->next_lsn) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	if (rec->zstd_len && segr_expand(r, rec) < 0) {
		finish(r, MFS_SEG_CORRUPT, r->off);
		return 0;
	}
	if (r->tag_len) { /* checked or not, the chain value a segment hands on */
		memcpy(r->chain, p + len - MFS_TAG_SIZE, MFS_TAG_SIZE);
		memcpy(r->info.last_tag, r->chain, MFS_TAG_SIZE);
	}
	r->crc = crc; /* the trailer is not part of the segment CRC */
	r->off += len;
	r->next_lsn++;
	r->info.records++;
	r->info.last_lsn = rec->lsn;
	r->info.valid_end = r->off;
	r->info.crc_valid_end = r->crc;
	return 1;
}

int mfs_seg_scan_fd(int fd, const uint8_t *expect_uuid,
		    int (*cb)(const struct mfs_rec *rec, void *arg), void *arg,
		    struct mfs_seg_info *ret)
{
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid };

	return mfs_seg_scan_fd_opts(fd, &o, cb, arg, ret);
}

int mfs_seg_scan_fd_opts(int fd, const struct mfs_segr_opts *o,
			 int (*cb)(const struct mfs_rec *rec, void *arg), void *arg,
			 struct mfs_seg_info *ret)
{
	struct mfs_segr *r;
	struct mfs_rec *rec;
	int e;

	rec = malloc(sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	e = mfs_segr_open_fd_opts(fd, o, &r);
	if (e < 0) {
		free(rec);
		return e;
	}
	while ((e = mfs_segr_next(r, rec)) > 0) {
		if (cb) {
			e = cb(rec, arg);
			if (e != 0)
				break;
		}
	}
	*ret = r->info;
	mfs_segr_free(r);
	free(rec);
	return e;
}

const char *mfs_seg_verdict_name(enum mfs_seg_verdict v)
{
	switch (v) {
	case MFS_SEG_OK:
		return "ok";
	case MFS_SEG_TORN:
		return "torn";
	case MFS_SEG_CORRUPT:
		return "corrupt";
	case MFS_SEG_FOREIGN:
		return "foreign";
	case MFS_SEG_BAD_VERSION:
		return "unknown-version";
	case MFS_SEG_UNAUTH:
		return "unauthenticated";
	case MFS_SEG_NOT_SEGMENT:
		return "not-a-segment";
	}
	return "?";
}

static void unauth_format(const struct mfs_seg_info *i, char *out, size_t cap)
{
	char id[17];

	switch (i->auth_fail) {
	case MFS_AUTH_NO_TAGS:
		snprintf(out, cap, "not authenticated: format %" PRIu32 " segment without tags "
			 "(from LSN %" PRIu64 "), and this reader requires a key", i->version,
			 i->first_lsn);
		break;
	case MFS_AUTH_UNKNOWN_KEY:
		mfs_auth_id_format(i->key_id, id);
		snprintf(out, cap, "not authenticated: tagged with key id %s, not one of this "
			 "reader's keys (from LSN %" PRIu64 ")", id, i->first_lsn);
		break;
	case MFS_AUTH_NO_ENC_KEY:
		mfs_auth_id_format(i->enc_key_id, id);
		snprintf(out, cap, "encrypted with key id %s, not one of this reader's encryption "
			 "keys (from LSN %" PRIu64 ")", id, i->first_lsn);
		break;
	case MFS_AUTH_BAD_SEAL:
		snprintf(out, cap, "not authenticated: sealed record LSN %" PRIu64 " at byte %" PRIu64
			 " does not open (forged, altered, or sealed with another key; last valid "
			 "LSN %" PRIu64 ")", i->auth_lsn, i->bad_offset, i->last_lsn);
		break;
	default:
		snprintf(out, cap, "not authenticated: the tag of record LSN %" PRIu64 " at byte %"
			 PRIu64 " does not verify (forged, altered, or tagged with another key; "
			 "last authenticated LSN %" PRIu64 ")", i->auth_lsn, i->bad_offset,
			 i->last_lsn);
		break;
	}
}

void mfs_seg_verdict_format(const struct mfs_seg_info *i, char *out, size_t cap)
{
	char uuid[37];

	switch (i->verdict) {
	case MFS_SEG_OK:
		snprintf(out, cap, "ok: closed segment, LSN %" PRIu64 "..%" PRIu64 ", %" PRIu64
			 " records", i->first_lsn, i->last_lsn, i->records);
		break;
	case MFS_SEG_TORN:
		snprintf(out, cap, "torn tail at byte %" PRIu64 " after LSN %" PRIu64 "%s",
			 i->bad_offset, i->last_lsn,
			 i->bad_offset == i->file_size || i->zeros_from == i->bad_offset
				 ? " (no trailer: open segment)"
				 : "");
		break;
	case MFS_SEG_CORRUPT:
		snprintf(out, cap, "corrupt record at byte %" PRIu64 " (last valid LSN %" PRIu64 ")",
			 i->bad_offset, i->last_lsn);
		break;
	case MFS_SEG_FOREIGN:
		mfs_uuid_format(i->uuid, uuid);
		snprintf(out, cap, "foreign data set %s", uuid);
		break;
	case MFS_SEG_BAD_VERSION:
		snprintf(out, cap, "unknown format version %" PRIu32 " (this reader knows 1 and 2)",
			 i->version);
		break;
	case MFS_SEG_UNAUTH:
		unauth_format(i, out, cap);
		break;
	case MFS_SEG_NOT_SEGMENT:
		snprintf(out, cap, "not a mirrorfs segment (bad magic)");
		break;
	}
}
