/* SPDX-License-Identifier: MIT */
/*
 * applied.c - a mirror's applied state, STATE/applied.
 *
 * The file is text, one "KEY VALUE\n" line per field, written in this order:
 *
 *	data_set UUID        (or "-" when no segment was applied yet)
 *	applied_lsn N
 *	last_record_ns N
 *	segments_applied N
 *	chain_lsn N          (only after authenticated segments)
 *	chain_tag HEX        (64 hex digits: the tag of the record chain_lsn)
 *
 * It is replaced durably and atomically with mfs_replace_file(), so a reader
 * sees the old or the new file, never half of one. The reader trusts
 * nothing: at most MAX_TEXT bytes; every line ends with '\n' (a last line
 * without one is a truncated file); a key of [a-z0-9_], one space, a value
 * of printable non-blank characters, both bounded; numbers are plain
 * decimal and fit in 64 bits; a known key appears at most once. data_set and
 * applied_lsn are required; last_record_ns and segments_applied default to 0
 * (the runbook has operators write the first two lines by hand). Unknown
 * keys on well-formed lines are skipped, as mirrord always did, so that a
 * newer writer can add a field.
 */
#include "mirrorfs/applied.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

#define MAX_TEXT 4096
#define KEY_MAX 31
#define VALUE_MAX 80

enum { K_DATA_SET, K_APPLIED_LSN, K_LAST_RECORD_NS, K_SEGMENTS_APPLIED, K_CHAIN_LSN, K_CHAIN_TAG,
       K_COUNT };

static const char *const key_names[K_COUNT] = {
	[K_DATA_SET] = "data_set",
	[K_APPLIED_LSN] = "applied_lsn",
	[K_LAST_RECORD_NS] = "last_record_ns",
	[K_SEGMENTS_APPLIED] = "segments_applied",
	[K_CHAIN_LSN] = "chain_lsn",
	[K_CHAIN_TAG] = "chain_tag",
};

/* Refuse the file: the reason at debug level (the caller logs the error). */
static int refuse(unsigned line, const char *why)
{
	if (line)
		log_debug("'%s': line %u: %s", MFS_APPLIED_FILE, line, why);
	else
		log_debug("'%s': %s", MFS_APPLIED_FILE, why);
	return -EBADMSG;
}

static bool is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static bool is_value_char(char c)
{
	return c > ' ' && c < 0x7f;
}

/* Plain decimal, no sign, no blanks, at most UINT64_MAX. */
static int parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return -EBADMSG;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (*s < '0' || *s > '9' || v > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

/*
 * Split the line @p (@n bytes, without its '\n') into @key and @val.
 * Returns NULL, or why the line is refused.
 */
static const char *split_line(const char *p, size_t n, char key[KEY_MAX + 1],
			      char val[VALUE_MAX + 1])
{
	const char *sp;
	size_t klen, vlen;

	if (n > KEY_MAX + 1 + VALUE_MAX)
		return "line too long";
	sp = memchr(p, ' ', n);
	if (!sp)
		return "not a 'KEY VALUE' line";
	klen = (size_t)(sp - p);
	vlen = n - klen - 1;
	if (klen == 0 || klen > KEY_MAX || vlen == 0 || vlen > VALUE_MAX)
		return "empty or overlong key or value";
	for (size_t i = 0; i < klen; i++)
		if (!is_key_char(p[i]))
			return "bad character in the key";
	for (size_t i = 0; i < vlen; i++)
		if (!is_value_char(sp[1 + i]))
			return "bad character in the value";
	memcpy(key, p, klen);
	key[klen] = 0;
	memcpy(val, sp + 1, vlen);
	val[vlen] = 0;
	return NULL;
}

static int parse_tag(const char *s, uint8_t out[32])
{
	if (strlen(s) != 64)
		return -EBADMSG;
	for (size_t i = 0; i < 32; i++) {
		int v = 0;
		for (size_t j = 0; j < 2; j++) {
			char c = s[2 * i + j];
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
			if (d < 0)
				return -EBADMSG;
			v = v * 16 + d;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* Store @val of @key in @a. Returns NULL, or why the line is refused. */
static const char *set_field(struct mfs_applied *a, bool seen[K_COUNT], const char *key,
			     const char *val)
{
	uint64_t *num[K_COUNT] = {
		[K_APPLIED_LSN] = &a->applied_lsn,
		[K_LAST_RECORD_NS] = &a->last_record_ns,
		[K_SEGMENTS_APPLIED] = &a->segments_applied,
		[K_CHAIN_LSN] = &a->chain_lsn,
	};
	unsigned k;

	for (k = 0; k < K_COUNT; k++)
		if (!strcmp(key, key_names[k]))
			break;
	if (k == K_COUNT)
		return NULL; /* unknown key: skipped */
	if (seen[k])
		return "key given twice";
	seen[k] = true;
	if (k == K_CHAIN_TAG)
		return parse_tag(val, a->chain_tag) < 0 ? "chain_tag is not 64 hex digits" : NULL;
	if (k != K_DATA_SET)
		return parse_u64(val, num[k]) < 0 ? "not a decimal number below 2^64" : NULL;
	if (!strcmp(val, "-"))
		return NULL;
	if (strlen(val) != 36 || mfs_uuid_parse(val, a->data_set) < 0)
		return "data_set is neither a UUID nor '-'";
	a->have_data_set = true;
	return NULL;
}

/* Parse the @len bytes of @text (which may hold NULs). Returns 0 or -EBADMSG. */
static int applied_decode(const char *text, size_t len, struct mfs_applied *ret)
{
	struct mfs_applied a = { 0 };
	bool seen[K_COUNT] = { false };
	const char *p = text, *end = text + len, *why;
	unsigned line = 0;

	if (len > MAX_TEXT)
		return refuse(0, "file too large");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		char key[KEY_MAX + 1], val[VALUE_MAX + 1];

		line++;
		if (!nl)
			return refuse(line, "no newline at the end: the file is truncated");
		why = split_line(p, (size_t)(nl - p), key, val);
		if (!why)
			why = set_field(&a, seen, key, val);
		if (why)
			return refuse(line, why);
		p = nl + 1;
	}
	if (!seen[K_DATA_SET] || !seen[K_APPLIED_LSN])
		return refuse(0, "data_set or applied_lsn missing");
	if (seen[K_CHAIN_LSN] != seen[K_CHAIN_TAG])
		return refuse(0, "chain_lsn without chain_tag, or the reverse");
	a.have_chain = seen[K_CHAIN_LSN];
	*ret = a;
	return 0;
}

/* Format @a into @buf. Returns the length or -ENOBUFS. */
static int applied_encode(const struct mfs_applied *a, char *buf, size_t size)
{
	char uuid[37] = "-";
	int n;

	if (a->have_data_set)
		mfs_uuid_format(a->data_set, uuid);
	n = snprintf(buf, size,
		     "data_set %s\napplied_lsn %" PRIu64 "\nlast_record_ns %" PRIu64
		     "\nsegments_applied %" PRIu64 "\n",
		     uuid, a->applied_lsn, a->last_record_ns, a->segments_applied);
	if (n < 0 || (size_t)n >= size)
		return -ENOBUFS;
	if (a->have_chain) {
		int m = snprintf(buf + n, size - (size_t)n, "chain_lsn %" PRIu64 "\nchain_tag ",
				 a->chain_lsn);
		if (m < 0 || (size_t)(n + m + 66) > size)
			return -ENOBUFS;
		n += m;
		for (size_t i = 0; i < 32; i++)
			n += snprintf(buf + n, size - (size_t)n, "%02x", a->chain_tag[i]);
		buf[n++] = '\n';
		buf[n] = 0;
	}
	return n;
}

int mfs_applied_read(int dirfd, struct mfs_applied *ret)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	r = mfs_read_file(dirfd, MFS_APPLIED_FILE, MAX_TEXT, &text, &len);
	if (r == -EFBIG)
		return refuse(0, "file too large");
	if (r < 0)
		return r;
	return applied_decode(text, len, ret);
}

int mfs_applied_write(int dirfd, const struct mfs_applied *a)
{
	char buf[256];
	int n;

	n = applied_encode(a, buf, sizeof(buf));
	if (n < 0)
		return n;
	return mfs_replace_file(dirfd, MFS_APPLIED_FILE, buf, (size_t)n, 0644);
}
