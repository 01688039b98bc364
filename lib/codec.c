/* SPDX-License-Identifier: MIT */
/*
 * codec.c - encode and decode journal records (format.h).
 *
 * Encoding writes the header and every fixed field into a small buffer;
 * the one variable blob of a record (write data, xattr value) is always
 * last and is not copied: the caller writes it after the head, and the CRC
 * in the header already covers it. Decoding goes through a bounds-checked
 * cursor and trusts nothing: every length is checked against the bytes
 * that are really there and against the format's maxima, and the payload
 * must be consumed exactly.
 */
#include <zstd.h>

#include "mirrorfs/record.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mirrorfs/crc32c.h"
#include "mirrorfs/json.h"
#include "mirrorfs/macro.h"

/* ------------------------------------------------------------ type table */

/* The table itself is lib/rectype.c: names, fields, limits, labels. */

const char *mfs_rec_type_name(enum mfs_rec_type type)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info((uint32_t)type);

	return ti ? ti->name : NULL;
}

bool mfs_rec_type_is_valid(uint32_t type)
{
	return mfs_rec_type_info(type);
}

bool mfs_rec_type_is_marker(enum mfs_rec_type type)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info((uint32_t)type);

	return ti && (ti->flags & MFS_RT_MARKER);
}

/* The field list of @rec's type (an empty one for an unknown type). */
static const struct mfs_rec_field *fields_of(const struct mfs_rec *rec)
{
	static const struct mfs_rec_field none = { 0 };
	const struct mfs_rec_type_info *ti = mfs_rec_type_info((uint32_t)rec->type);

	return ti ? ti->fields : &none;
}

static const char *str_of(const struct mfs_rec *rec, const struct mfs_rec_field *f)
{
	return (const char *)rec + f->off;
}

/* ------------------------------------------------------------ encoding */

struct wcur {
	uint8_t *p, *end;
	bool overflow;
};

static void put(struct wcur *c, const void *v, size_t n)
{
	if ((size_t)(c->end - c->p) < n) {
		c->overflow = true;
		return;
	}
	memcpy(c->p, v, n);
	c->p += n;
}

static void put16(struct wcur *c, uint16_t v)
{
	uint8_t b[2];
	mfs_put_le16(b, v);
	put(c, b, 2);
}

static void put32(struct wcur *c, uint32_t v)
{
	uint8_t b[4];
	mfs_put_le32(b, v);
	put(c, b, 4);
}

static void put64(struct wcur *c, uint64_t v)
{
	uint8_t b[8];
	mfs_put_le64(b, v);
	put(c, b, 8);
}

static void put_str(struct wcur *c, const char *s)
{
	size_t n = strlen(s);
	put16(c, (uint16_t)n);
	put(c, s, n);
}

static bool str_ok(const char *s, size_t min, size_t max)
{
	size_t n = strnlen(s, max + 1);
	return n >= min && n <= max;
}

/* Whether the blob of @rec, if its type has one, is what its field allows. */
static bool blob_ok(const struct mfs_rec *rec, const struct mfs_rec_field *f)
{
	if (rec->zstd_len && (!rec->data_len || rec->zstd_len > f->max))
		return false;
	return rec->data_len <= f->max && (rec->data || !rec->data_len);
}

/* Check what encode would otherwise silently truncate. */
static bool rec_is_encodable(const struct mfs_rec *rec)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info((uint32_t)rec->type);

	if (!ti)
		return false;
	if (!(ti->flags & MFS_RT_MARKER) && !str_ok(rec->path, 1, MFS_PATH_MAX))
		return false;
	if (rec->zstd_len && !(ti->flags & MFS_RT_ZSTD))
		return false;
	for (const struct mfs_rec_field *f = ti->fields; f->kind; f++) {
		if (f->kind == MFS_FLD_STR && !str_ok(str_of(rec, f), 1, f->max))
			return false;
		if (f->kind == MFS_FLD_BLOB && !blob_ok(rec, f))
			return false;
	}
	return true;
}

static void encode_field(struct wcur *c, const struct mfs_rec *rec, const struct mfs_rec_field *f)
{
	switch (f->kind) {
	case MFS_FLD_U32:
		put32(c, (uint32_t)mfs_rec_field_get(&rec->fields, f));
		break;
	case MFS_FLD_U64:
		put64(c, mfs_rec_field_get(&rec->fields, f));
		break;
	case MFS_FLD_TIME:
		put64(c, mfs_rec_field_get(&rec->fields, f));
		put32(c, *(const uint32_t *)(const void *)((const char *)rec + f->off2));
		break;
	case MFS_FLD_STR:
		put_str(c, str_of(rec, f));
		break;
	case MFS_FLD_BLOB: /* its length; the bytes follow the head */
		if (rec->zstd_len)
			put32(c, rec->data_len); /* then the frame's size */
		put32(c, rec->zstd_len ? rec->zstd_len : rec->data_len);
		break;
	case MFS_FLD_TRAILER:
		put64(c, rec->trailer.last_lsn);
		put64(c, rec->trailer.rec_count);
		put32(c, rec->trailer.seg_crc);
		put32(c, 0);
		break;
	}
}

/* The payload fields of @rec except the trailing blob's bytes. */
static void encode_payload(struct wcur *c, const struct mfs_rec *rec)
{
	if (!mfs_rec_type_is_marker(rec->type))
		put_str(c, rec->path);
	for (const struct mfs_rec_field *f = fields_of(rec); f->kind; f++)
		encode_field(c, rec, f);
}

static bool has_blob(enum mfs_rec_type t)
{
	return mfs_rec_type_has_blob((uint32_t)t);
}

/* Bytes of the blob as stored: a write's frame when compressed. */
static uint32_t blob_len(const struct mfs_rec *rec)
{
	return rec->zstd_len ? rec->zstd_len : rec->data_len;
}

size_t mfs_rec_head_size(const struct mfs_rec *rec)
{
	uint8_t scratch[2 * (MFS_PATH_MAX + 2) + 64];
	struct wcur c = { scratch, scratch + sizeof(scratch), false };

	encode_payload(&c, rec);
	return MFS_REC_HEADER_SIZE + (size_t)(c.p - scratch);
}

int mfs_rec_encode(const struct mfs_rec *rec, void *buf, size_t cap, size_t *ret_head)
{
	return mfs_rec_encode_ext(rec, 0, buf, cap, ret_head);
}

int mfs_rec_encode_ext(const struct mfs_rec *rec, uint32_t tag_len, void *buf, size_t cap,
		       size_t *ret_head)
{
	uint8_t *b = buf;
	struct wcur c = { b + MFS_REC_HEADER_SIZE, b + cap, false };
	size_t head, total;
	uint32_t crc;

	if (!rec_is_encodable(rec))
		return -EINVAL;
	if (cap < MFS_REC_HEADER_SIZE)
		return -ENOBUFS;
	encode_payload(&c, rec);
	if (c.overflow)
		return -ENOBUFS;
	head = (size_t)(c.p - b);
	total = head + (has_blob(rec->type) ? blob_len(rec) : 0) + tag_len;
	if (total > MFS_REC_MAX)
		return -EINVAL;
	mfs_put_le32(b, (uint32_t)total);
	mfs_put_le16(b + 4, (uint16_t)rec->type);
	mfs_put_le16(b + 6, (tag_len ? MFS_REC_F_TAG : 0) | (rec->zstd_len ? MFS_REC_F_ZSTD : 0));
	mfs_put_le64(b + 8, rec->lsn);
	mfs_put_le64(b + 16, rec->time_ns);
	mfs_put_le32(b + 24, 0);
	crc = mfs_crc32c(0, b, 28);
	crc = mfs_crc32c(crc, b + MFS_REC_HEADER_SIZE, head - MFS_REC_HEADER_SIZE);
	if (has_blob(rec->type) && blob_len(rec))
		crc = mfs_crc32c(crc, rec->data, blob_len(rec));
	mfs_put_le32(b + 28, crc);
	*ret_head = head;
	return 0;
}

/* ------------------------------------------------------------ decoding */

struct rcur {
	const uint8_t *p, *end;
};

static int get(struct rcur *c, void *v, size_t n)
{
	if ((size_t)(c->end - c->p) < n)
		return -EBADMSG;
	memcpy(v, c->p, n);
	c->p += n;
	return 0;
}

static int get32(struct rcur *c, uint32_t *v)
{
	uint8_t b[4];
	if (get(c, b, 4) < 0)
		return -EBADMSG;
	*v = mfs_get_le32(b);
	return 0;
}

static int get64(struct rcur *c, uint64_t *v)
{
	uint8_t b[8];
	if (get(c, b, 8) < 0)
		return -EBADMSG;
	*v = mfs_get_le64(b);
	return 0;
}

/* A str16 of min..max bytes without NUL, copied NUL-terminated into out. */
static int get_str(struct rcur *c, char *out, size_t min, size_t max)
{
	uint8_t b[2];
	uint16_t n;

	if (get(c, b, 2) < 0)
		return -EBADMSG;
	n = mfs_get_le16(b);
	if (n < min || n > max || (size_t)(c->end - c->p) < n)
		return -EBADMSG;
	if (memchr(c->p, 0, n))
		return -EBADMSG;
	memcpy(out, c->p, n);
	out[n] = 0;
	c->p += n;
	return 0;
}

/* A blob32 of at most max bytes, pointed to (not copied). */
static int get_blob(struct rcur *c, struct mfs_rec *rec, uint32_t max)
{
	if (get32(c, &rec->data_len) < 0 || rec->data_len > max ||
	    (size_t)(c->end - c->p) < rec->data_len)
		return -EBADMSG;
	rec->data = c->p;
	c->p += rec->data_len;
	return 0;
}

/* A compressed write's u32 size (1..MFS_WRITE_MAX) and blob32 frame. */
static int get_frame(struct rcur *c, struct mfs_rec *rec)
{
	uint32_t size;

	if (get32(c, &size) < 0 || size == 0 || size > MFS_WRITE_MAX ||
	    get_blob(c, rec, MFS_WRITE_MAX) < 0 || rec->data_len == 0)
		return -EBADMSG;
	rec->zstd_len = rec->data_len;
	rec->data_len = size;
	return 0;
}

static int decode_field(struct rcur *c, struct mfs_rec *rec, const struct mfs_rec_field *f)
{
	uint64_t u = 0;
	uint32_t v = 0;
	int r;

	switch (f->kind) {
	case MFS_FLD_U32:
		r = get32(c, &v);
		mfs_rec_field_set(&rec->fields, f, v);
		return r;
	case MFS_FLD_U64:
	case MFS_FLD_TIME:
		r = get64(c, &u);
		mfs_rec_field_set(&rec->fields, f, u);
		if (r == 0 && f->kind == MFS_FLD_TIME)
			r = get32(c, (uint32_t *)(void *)((char *)rec + f->off2));
		return r;
	case MFS_FLD_STR:
		return get_str(c, (char *)rec + f->off, 1, f->max);
	case MFS_FLD_BLOB: /* flagged zstd: u32 size, then blob32 frame */
		return rec->zstd_len ? get_frame(c, rec) : get_blob(c, rec, f->max);
	case MFS_FLD_TRAILER:
		r = get64(c, &rec->trailer.last_lsn) ?: get64(c, &rec->trailer.rec_count)
			?: get32(c, &rec->trailer.seg_crc) ?: get32(c, &v);
		return r < 0 || v ? -EBADMSG : 0;
	default:
		return -EBADMSG;
	}
}

static int decode_payload(struct rcur *c, struct mfs_rec *rec)
{
	if (!mfs_rec_type_is_marker(rec->type) && get_str(c, rec->path, 1, MFS_PATH_MAX) < 0)
		return -EBADMSG;
	for (const struct mfs_rec_field *f = fields_of(rec); f->kind; f++)
		if (decode_field(c, rec, f) < 0)
			return -EBADMSG;
	return c->p != c->end ? -EBADMSG : 0;
}

int mfs_rec_decode(const void *buf, size_t len, struct mfs_rec *ret)
{
	return mfs_rec_decode_seg(buf, len, ret, NULL);
}

int mfs_rec_decode_seg(const void *buf, size_t len, struct mfs_rec *ret, uint32_t *seg_crc)
{
	return mfs_rec_decode_ext(buf, len, 0, ret, seg_crc);
}

static int decode(const void *buf, size_t len, uint32_t tag_len, bool v2, struct mfs_rec *ret,
		  uint32_t *seg_crc);

int mfs_rec_decode_ext(const void *buf, size_t len, uint32_t tag_len, struct mfs_rec *ret,
		       uint32_t *seg_crc)
{
	return decode(buf, len, tag_len, false, ret, seg_crc);
}

int mfs_rec_decode_v2(const void *buf, size_t len, uint32_t tag_len, struct mfs_rec *ret,
		      uint32_t *seg_crc)
{
	return decode(buf, len, tag_len, true, ret, seg_crc);
}

static int decode(const void *buf, size_t len, uint32_t tag_len, bool v2, struct mfs_rec *ret,
		  uint32_t *seg_crc)
{
	const uint8_t *b = buf;
	uint16_t flags;
	struct rcur c;
	uint32_t crc, sc = 0;
	int e;

	if (len < MFS_REC_HEADER_SIZE + tag_len || len > MFS_REC_MAX || mfs_get_le32(b) != len)
		return -EBADMSG;
	crc = mfs_crc32c(0, b, 28);
	if (seg_crc) { /* both CRCs in one pass over the bulk */
		sc = mfs_crc32c(*seg_crc, b, MFS_REC_HEADER_SIZE);
		mfs_crc32c_pair(&crc, &sc, b + MFS_REC_HEADER_SIZE, len - MFS_REC_HEADER_SIZE);
	} else {
		crc = mfs_crc32c(crc, b + MFS_REC_HEADER_SIZE, len - MFS_REC_HEADER_SIZE);
	}
	if (crc != mfs_get_le32(b + 28))
		return -EBADMSG;
	flags = mfs_get_le16(b + 6);
	if (v2 && mfs_rec_type_info(mfs_get_le16(b + 4)) &&
	    (mfs_rec_type_info(mfs_get_le16(b + 4))->flags & MFS_RT_ZSTD))
		flags &= (uint16_t)~MFS_REC_F_ZSTD;
	if (!mfs_rec_type_is_valid(mfs_get_le16(b + 4)) ||
	    flags != (tag_len ? MFS_REC_F_TAG : 0) || mfs_get_le32(b + 24) != 0)
		return -EBADMSG;
	ret->type = (enum mfs_rec_type)mfs_get_le16(b + 4);
	ret->lsn = mfs_get_le64(b + 8);
	ret->time_ns = mfs_get_le64(b + 16);
	ret->path[0] = ret->path2[0] = 0;
	memset(&ret->offset, 0, sizeof(*ret) - offsetof(struct mfs_rec, offset));
	if (v2 && (mfs_get_le16(b + 6) & MFS_REC_F_ZSTD))
		ret->zstd_len = 1; /* decode_payload reads the frame */
	c.p = b + MFS_REC_HEADER_SIZE;
	c.end = b + len - tag_len;
	e = decode_payload(&c, ret);
	if (e == 0 && seg_crc)
		*seg_crc = sc;
	return e;
}

int mfs_rec_expand(struct mfs_rec *rec, void *buf, size_t cap)
{
	size_t n;

	if (!rec->zstd_len)
		return 0;
	if (cap < rec->data_len)
		return -ENOBUFS;
	n = ZSTD_decompress(buf, rec->data_len, rec->data, rec->zstd_len);
	if (ZSTD_isError(n) || n != rec->data_len)
		return -EBADMSG;
	rec->data = buf;
	rec->was_zstd_len = rec->zstd_len;
	rec->zstd_len = 0;
	return 0;
}

int mfs_rec_compress(struct mfs_rec *rec, struct ZSTD_CCtx_s *cctx, int level, void *buf,
		     size_t cap)
{
	size_t n;

	const struct mfs_rec_type_info *ti = mfs_rec_type_info((uint32_t)rec->type);

	if (!ti || !(ti->flags & MFS_RT_ZSTD) || rec->data_len < 64 || rec->zstd_len)
		return 0;
	n = ZSTD_compressCCtx(cctx, buf, cap, rec->data, rec->data_len, level);
	if (ZSTD_isError(n) || n + 4 >= rec->data_len) /* +4: the size field */
		return 0;
	rec->data = buf;
	rec->zstd_len = (uint32_t)n;
	return 1;
}

/* ------------------------------------------------------------ formatting */

static void fmt_time(uint64_t ns, char *out, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(ns % 1000000000u / 1000u));
}

/* Append to @out (@cap bytes, *@o used) what fmt says; stops at the end. */
static void __attribute__((format(printf, 4, 5)))
add(char *out, size_t cap, size_t *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*o >= cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(out + *o, cap - *o, fmt, ap);
	va_end(ap);
	if (n > 0)
		*o += (size_t)n;
}

/* A number field as its table says to show it, after "@label@eq". */
static void fmt_num(const struct mfs_rec *rec, const struct mfs_rec_field *f, const char *eq,
		    char *out, size_t cap, size_t *o)
{
	uint64_t v = mfs_rec_field_get(&rec->fields, f);

	if (f->kind == MFS_FLD_TIME)
		add(out, cap, o, "%s%s%" PRId64 ".%09" PRIu32, f->label, eq, (int64_t)v,
		    *(const uint32_t *)(const void *)((const char *)rec + f->off2));
	else if (f->show == MFS_SHOW_OCT)
		add(out, cap, o, "%s%s0%" PRIo64, f->label, eq, v);
	else if (f->show == MFS_SHOW_HEX)
		add(out, cap, o, "%s%s0x%" PRIx64, f->label, eq, v);
	else if (f->show == MFS_SHOW_SIGNED)
		add(out, cap, o, "%s%s%" PRId32, f->label, eq, (int32_t)(uint32_t)v);
	else
		add(out, cap, o, "%s%s%" PRIu64, f->label, eq, v);
}

/* One field, "label@eq value"; a string as "what 'value'"; @strs: the refusal style. */
static void fmt_field(const struct mfs_rec *rec, const struct mfs_rec_field *f, const char *eq,
		      bool strs, char *out, size_t cap, size_t *o)
{
	switch (f->kind) {
	case MFS_FLD_STR:
		add(out, cap, o, "%s '%.200s'", f->what ?: f->label, str_of(rec, f));
		break;
	case MFS_FLD_BLOB:
		add(out, cap, o, "%s%s%" PRIu32, f->label, eq, rec->data_len);
		if (rec->zstd_len || rec->was_zstd_len)
			add(out, cap, o, "%szstd%s%" PRIu32, strs ? ", " : " ", eq,
			    rec->zstd_len ? rec->zstd_len : rec->was_zstd_len);
		break;
	case MFS_FLD_TRAILER:
		add(out, cap, o, "last_lsn%s%" PRIu64 "%srecords%s%" PRIu64 "%scrc%s0x%08" PRIx32, eq,
		    rec->trailer.last_lsn, strs ? ", " : " ", eq, rec->trailer.rec_count,
		    strs ? ", " : " ", eq, rec->trailer.seg_crc);
		break;
	default:
		fmt_num(rec, f, eq, out, cap, o);
		break;
	}
}

/*
 * The fields of @rec after its path, as the table says: "key=value" text
 * for dump (@strs false: string fields are shown apart), or "key value,
 * key 'text'" for refusals (@strs true).
 */
static void fmt_fields(const struct mfs_rec *rec, bool strs, char *out, size_t cap)
{
	size_t o = 0;

	out[0] = 0;
	for (const struct mfs_rec_field *f = fields_of(rec); f->kind; f++) {
		if (f->kind == MFS_FLD_STR && !strs)
			continue;
		if (o)
			add(out, cap, &o, "%s", strs ? ", " : " ");
		fmt_field(rec, f, strs ? " " : "=", strs, out, cap, &o);
	}
}

void mfs_rec_format_fields(const struct mfs_rec *rec, char *out, size_t cap)
{
	fmt_fields(rec, true, out, cap);
}

static void fmt_args(const struct mfs_rec *rec, char *out, size_t cap)
{
	fmt_fields(rec, false, out, cap);
}

/* The second name of a record and how to label it, or NULL. */
static const char *second_name(const struct mfs_rec *rec)
{
	for (const struct mfs_rec_field *f = fields_of(rec); f->kind; f++)
		if (f->kind == MFS_FLD_STR)
			return f->label;
	return NULL;
}

/* Quote a string for a terminal: printable bytes as is, others as \xNN. */
static void quote(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s && o + 5 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '\\')
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = 0;
}

void mfs_rec_format(const struct mfs_rec *rec, char *out, size_t cap)
{
	char when[80], args[160], p1[4 * MFS_PATH_MAX + 8], p2[4 * MFS_PATH_MAX + 8];
	const char *label = second_name(rec);
	const char *name = mfs_rec_type_name(rec->type);

	fmt_time(rec->time_ns, when, sizeof(when));
	fmt_args(rec, args, sizeof(args));
	quote(rec->path, p1, sizeof(p1));
	quote(rec->path2, p2, sizeof(p2));
	snprintf(out, cap, "%" PRIu64 " %s %-11s%s%s%s%s%s%s%s%s%s", rec->lsn, when,
		 name ? name : "?", rec->path[0] ? " '" : "", p1, rec->path[0] ? "'" : "",
		 label ? " " : "", label ? label : "", label ? "='" : "", label ? p2 : "",
		 label ? "'" : "", args[0] ? " " : "");
	if (args[0])
		strncat(out, args, cap - strlen(out) - 1);
}

void mfs_rec_format_json(const struct mfs_rec *rec, char *out, size_t cap)
{
	char p1[6 * MFS_PATH_MAX + 8], p2[6 * MFS_PATH_MAX + 8], args[160], *a, *save = NULL;
	const char *label = second_name(rec);
	const char *name = mfs_rec_type_name(rec->type);
	size_t o;

	mfs_json_str(rec->path, true, p1, sizeof(p1));
	mfs_json_str(rec->path2, true, p2, sizeof(p2));
	fmt_args(rec, args, sizeof(args));
	o = (size_t)snprintf(out, cap, "{\"lsn\":%" PRIu64 ",\"time_ns\":%" PRIu64 ",\"type\":\"%s\"",
			     rec->lsn, rec->time_ns, name ? name : "?");
	if (rec->path[0] && o < cap)
		o += (size_t)snprintf(out + o, cap - o, ",\"path\":%s", p1);
	if (label && o < cap)
		o += (size_t)snprintf(out + o, cap - o, ",\"%s\":%s", label, p2);
	/* args are "k=v k=v" with numeric values: emit them as JSON numbers/strings */
	for (a = strtok_r(args, " ", &save); a && o < cap; a = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(a, '=');
		if (!eq)
			continue;
		*eq = 0;
		if (eq[1] == '0' && eq[2])
			o += (size_t)snprintf(out + o, cap - o, ",\"%s\":\"%s\"", a, eq + 1);
		else
			o += (size_t)snprintf(out + o, cap - o, ",\"%s\":%s", a, eq + 1);
	}
	if (o < cap)
		snprintf(out + o, cap - o, "}");
}
