/* SPDX-License-Identifier: MIT */
/*
 * backup.c - the formats of snapshot backups in object storage (layout and
 * manifest grammar in backup.h) and the two decisions made on them: which
 * backup a restore starts from, and what a prune keeps. Never does I/O.
 *
 * Invariants: a decoded manifest is whole (it ended with "end"), every
 * extent names a listed pack and follows its file, and a FROM only appears
 * in a backup that has a parent. A prune never drops a parent of a kept
 * backup.
 */
#include "mirrorfs/backup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/macro.h"

#define MAX_FIELDS 10

/* ================================================================ building */

static void entry_done(struct mfs_bk_entry *e)
{
	free(e->path);
	free(e->other);
	free(e->ext);
	for (size_t i = 0; i < e->n_xa; i++) {
		free(e->xa[i].name);
		free(e->xa[i].value);
	}
	free(e->xa);
}

void mfs_bk_manifest_done(struct mfs_bk_manifest *m)
{
	for (size_t i = 0; i < m->n; i++)
		entry_done(&m->v[i]);
	for (size_t i = 0; i < m->n_packs; i++)
		free(m->packs[i]);
	free(m->packs);
	free(m->pack_size);
	free(m->v);
	free(m->snapshot);
	free(m->dataset);
	*m = (struct mfs_bk_manifest){ 0 };
}

struct mfs_bk_entry *mfs_bk_entry_add(struct mfs_bk_manifest *m, char type, const char *path)
{
	struct mfs_bk_entry *e;

	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct mfs_bk_entry *v = realloc(m->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		m->v = v;
		m->cap = cap;
	}
	e = &m->v[m->n];
	*e = (struct mfs_bk_entry){ .type = type, .path = strdup(path) };
	if (!e->path)
		return NULL;
	m->n++;
	return e;
}

int mfs_bk_extent_add(struct mfs_bk_entry *e, uint32_t pack, uint64_t pack_off, uint64_t len,
		      uint64_t file_off)
{
	struct mfs_bk_extent *last = e->n_ext ? &e->ext[e->n_ext - 1] : NULL;

	/* contiguous in the file and in the pack: one extent */
	if (last && last->pack == pack && last->pack_off + last->len == pack_off &&
	    last->file_off + last->len == file_off) {
		last->len += len;
		return 0;
	}
	if (e->n_ext == e->cap_ext) {
		size_t cap = e->cap_ext ? e->cap_ext * 2 : 4;
		struct mfs_bk_extent *v = realloc(e->ext, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		e->ext = v;
		e->cap_ext = cap;
	}
	e->ext[e->n_ext++] = (struct mfs_bk_extent){ pack, pack_off, len, file_off };
	return 0;
}

int mfs_bk_xattr_add(struct mfs_bk_entry *e, const char *name, const void *value, size_t len)
{
	struct mfs_bk_xattr *v = realloc(e->xa, (e->n_xa + 1) * sizeof(*v));
	char *n;
	uint8_t *val;

	if (!v)
		return -ENOMEM;
	e->xa = v;
	n = strdup(name);
	val = malloc(len ? len : 1);
	if (!n || !val) {
		free(n);
		free(val);
		return -ENOMEM;
	}
	if (len)
		memcpy(val, value, len);
	e->xa[e->n_xa++] = (struct mfs_bk_xattr){ n, val, len };
	return 0;
}

int mfs_bk_pack_add(struct mfs_bk_manifest *m, const char *name, uint64_t size)
{
	char **p = realloc(m->packs, (m->n_packs + 1) * sizeof(*p));
	uint64_t *s;

	if (!p)
		return -ENOMEM;
	m->packs = p;
	s = realloc(m->pack_size, (m->n_packs + 1) * sizeof(*s));
	if (!s)
		return -ENOMEM;
	m->pack_size = s;
	p[m->n_packs] = strdup(name);
	if (!p[m->n_packs])
		return -ENOMEM;
	s[m->n_packs] = size;
	return (int)m->n_packs++;
}

/* ================================================================ encoding */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_grow(struct sbuf *b, size_t more)
{
	char *p;
	size_t cap;

	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	cap = MFS_MAX(b->cap * 2, b->len + more + 1);
	cap = MFS_MAX(cap, (size_t)4096);
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	sb_grow(b, (size_t)n);
	if (b->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static bool must_escape(unsigned char c)
{
	return c <= 0x20 || c >= 0x7f || c == '%';
}

/* " " and the percent-encoded @s */
static void sb_word(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	sb_grow(b, 1 + 3 * strlen(s));
	if (b->oom)
		return;
	b->p[b->len++] = ' ';
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (must_escape(*c)) {
			b->p[b->len++] = '%';
			b->p[b->len++] = hex[*c >> 4];
			b->p[b->len++] = hex[*c & 15];
		} else {
			b->p[b->len++] = (char)*c;
		}
	}
	b->p[b->len] = 0;
}

static void sb_hex(struct sbuf *b, const uint8_t *v, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	sb_grow(b, 2 + 2 * len);
	if (b->oom)
		return;
	b->p[b->len++] = ' ';
	if (!len)
		b->p[b->len++] = '-';
	for (size_t i = 0; i < len; i++) {
		b->p[b->len++] = hex[v[i] >> 4];
		b->p[b->len++] = hex[v[i] & 15];
	}
	b->p[b->len] = 0;
}

static void encode_entry(struct sbuf *b, const struct mfs_bk_entry *e)
{
	if (e->type == 'h') {
		sb_printf(b, "h");
		sb_word(b, e->path);
		sb_word(b, e->other);
		sb_printf(b, "\n");
		return;
	}
	sb_printf(b, "%c %" PRIo32 " %" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRIu64, e->type,
		  e->mode, e->uid, e->gid, e->atime_ns, e->mtime_ns);
	if (e->type == 'f') {
		sb_printf(b, " %" PRIu64, e->size);
		if (e->other)
			sb_word(b, e->other);
		else
			sb_printf(b, " -");
	}
	sb_word(b, e->path);
	if (e->type == 'l')
		sb_word(b, e->other);
	sb_printf(b, "\n");
	for (size_t i = 0; i < e->n_ext; i++)
		sb_printf(b, "e %" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", e->ext[i].pack,
			  e->ext[i].pack_off, e->ext[i].len, e->ext[i].file_off);
	for (size_t i = 0; i < e->n_xa; i++) {
		sb_printf(b, "x");
		sb_word(b, e->xa[i].name);
		sb_hex(b, e->xa[i].value, e->xa[i].len);
		sb_printf(b, "\n");
	}
}

int mfs_bk_manifest_encode(const struct mfs_bk_manifest *m, char **ret, size_t *ret_len)
{
	struct sbuf b = { 0 };

	sb_printf(&b, "mirrorfs-backup %d\nsnapshot", MFS_BK_VERSION);
	sb_word(&b, m->snapshot ? m->snapshot : "-");
	sb_printf(&b, "\ndataset");
	sb_word(&b, m->dataset ? m->dataset : "-");
	sb_printf(&b, "\nlsn %" PRIu64 "\ntime_ns %" PRIu64 "\nparent %s\n", m->lsn, m->time_ns,
		  m->parent[0] ? m->parent : "-");
	for (size_t i = 0; i < m->n_packs; i++) {
		sb_printf(&b, "pack");
		sb_word(&b, m->packs[i]);
		sb_printf(&b, " %" PRIu64 "\n", m->pack_size[i]);
	}
	for (size_t i = 0; i < m->n; i++)
		encode_entry(&b, &m->v[i]);
	sb_printf(&b, "end\n");
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*ret = b.p;
	*ret_len = b.len;
	return 0;
}

/* ================================================================ decoding */

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				       : -1;
}

/* Undo the percent-encoding of @s in place. 0 or -EBADMSG. */
static int unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (*s != '%') {
			*w++ = *s;
			continue;
		}
		int hi = unhex(s[1]), lo = hi < 0 ? -1 : unhex(s[2]);
		if (lo < 0)
			return -EBADMSG;
		*w++ = (char)(hi * 16 + lo);
		s += 2;
	}
	*w = 0;
	return 0;
}

static bool parse_u64(const char *s, int base, uint64_t *ret)
{
	char *end;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	*ret = strtoull(s, &end, base);
	return !*end && errno == 0;
}

static bool parse_u32(const char *s, int base, uint32_t *ret)
{
	uint64_t v;

	if (!parse_u64(s, base, &v) || v > UINT32_MAX)
		return false;
	*ret = (uint32_t)v;
	return true;
}

/* A decoded word (malloc'd) or NULL: bad escape or ENOMEM (*@oom). */
static char *word(char *s, bool *oom)
{
	char *w;

	if (unescape(s) < 0 || !*s)
		return NULL;
	w = strdup(s);
	*oom |= !w;
	return w;
}

static int decode_attrs(char **f, struct mfs_bk_entry *e)
{
	if (!parse_u32(f[1], 8, &e->mode) || !parse_u32(f[2], 10, &e->uid) ||
	    !parse_u32(f[3], 10, &e->gid) || !parse_u64(f[4], 10, &e->atime_ns) ||
	    !parse_u64(f[5], 10, &e->mtime_ns))
		return -EBADMSG;
	return 0;
}

static int decode_xattr(char **f, int nf, struct mfs_bk_entry *e)
{
	size_t hl = nf == 3 ? strlen(f[2]) : 1;
	_cleanup_free_ uint8_t *val = NULL;
	size_t len = 0;

	if (nf != 3 || !e || e->type == 'h' || unescape(f[1]) < 0 || !*f[1])
		return -EBADMSG;
	if (strcmp(f[2], "-") && (hl % 2 || !hl))
		return -EBADMSG;
	if (strcmp(f[2], "-")) {
		len = hl / 2;
		val = malloc(len);
		if (!val)
			return -ENOMEM;
		for (size_t i = 0; i < len; i++) {
			int hi = unhex(f[2][2 * i]), lo = unhex(f[2][2 * i + 1]);
			if (hi < 0 || lo < 0)
				return -EBADMSG;
			val[i] = (uint8_t)(hi * 16 + lo);
		}
	}
	return mfs_bk_xattr_add(e, f[1], val, len);
}

/* One entry line (d, l, f, h) of @nf fields. */
static int decode_entry(struct mfs_bk_manifest *m, char **f, int nf)
{
	char t = f[0][0];
	int want = t == 'd' ? 7 : t == 'l' ? 8 : t == 'f' ? 9 : 3;
	int at = t == 'f' ? 8 : t == 'h' ? 1 : 6; /* the path's field */
	struct mfs_bk_entry *e;
	bool oom = false;

	if (nf != want || unescape(f[at]) < 0 || !*f[at])
		return -EBADMSG;
	e = mfs_bk_entry_add(m, t, f[at]);
	if (!e)
		return -ENOMEM;
	if (t != 'h' && decode_attrs(f, e) < 0)
		return -EBADMSG;
	if (t == 'h' || t == 'l') {
		e->other = word(f[t == 'h' ? 2 : 7], &oom);
		return e->other ? 0 : oom ? -ENOMEM : -EBADMSG;
	}
	if (t == 'f') {
		if (!parse_u64(f[6], 10, &e->size))
			return -EBADMSG;
		if (strcmp(f[7], "-")) {
			if (!m->parent[0])
				return -EBADMSG; /* inherits from nothing */
			e->other = word(f[7], &oom);
			if (!e->other)
				return oom ? -ENOMEM : -EBADMSG;
		}
	}
	return 0;
}

static int decode_extent(struct mfs_bk_manifest *m, char **f, int nf)
{
	struct mfs_bk_entry *e = m->n ? &m->v[m->n - 1] : NULL;
	uint64_t off, len, foff;
	uint32_t pack;

	if (nf != 5 || !e || e->type != 'f' || !parse_u32(f[1], 10, &pack) ||
	    pack >= m->n_packs || !parse_u64(f[2], 10, &off) || !parse_u64(f[3], 10, &len) ||
	    !parse_u64(f[4], 10, &foff) || !len || off + len < off ||
	    off + len > m->pack_size[pack] || foff + len < foff || foff + len > e->size)
		return -EBADMSG;
	return mfs_bk_extent_add(e, pack, off, len, foff);
}

static int decode_header(struct mfs_bk_manifest *m, char **f, int nf, unsigned *seen)
{
	bool oom = false;
	uint64_t v;

	if (nf != 2 && !(nf == 3 && !strcmp(f[0], "pack")))
		return -EBADMSG;
	if (!strcmp(f[0], "snapshot") && !m->snapshot)
		m->snapshot = word(f[1], &oom), *seen |= 1;
	else if (!strcmp(f[0], "dataset") && !m->dataset)
		m->dataset = word(f[1], &oom), *seen |= 2;
	else if (!strcmp(f[0], "lsn") && parse_u64(f[1], 10, &m->lsn))
		*seen |= 4;
	else if (!strcmp(f[0], "time_ns") && parse_u64(f[1], 10, &m->time_ns))
		*seen |= 8;
	else if (!strcmp(f[0], "parent") && (!strcmp(f[1], "-") || mfs_bk_id_parse(f[1], &v, &v)))
		snprintf(m->parent, sizeof(m->parent), "%s", strcmp(f[1], "-") ? f[1] : ""),
			*seen |= 16;
	else if (!strcmp(f[0], "pack") && unescape(f[1]) == 0 && parse_u64(f[2], 10, &v))
		return mfs_bk_pack_add(m, f[1], v) < 0 ? -ENOMEM : 0;
	else
		return -EBADMSG;
	return oom ? -ENOMEM : 0;
}

/* Split @line at single spaces into @f. Returns the field count, or -1. */
static int split(char *line, char **f)
{
	int n = 0;

	for (char *p = line;;) {
		if (n == MAX_FIELDS)
			return -1;
		f[n++] = p;
		p = strchr(p, ' ');
		if (!p)
			return n;
		*p++ = 0;
	}
}

static int decode_line(struct mfs_bk_manifest *m, char *line, unsigned *seen)
{
	char *f[MAX_FIELDS];
	int nf = split(line, f);

	if (nf < 1)
		return -EBADMSG;
	if (f[0][0] && !f[0][1] && strchr("dlfh", f[0][0]))
		return *seen == 31 ? decode_entry(m, f, nf) : -EBADMSG;
	if (!strcmp(f[0], "e"))
		return decode_extent(m, f, nf);
	if (!strcmp(f[0], "x"))
		return decode_xattr(f, nf, m->n ? &m->v[m->n - 1] : NULL);
	if (m->n)
		return -EBADMSG; /* header fields come first */
	return decode_header(m, f, nf, seen);
}

int mfs_bk_manifest_decode(const char *text, size_t len, struct mfs_bk_manifest *ret)
{
	struct mfs_bk_manifest m = { 0 };
	_cleanup_free_ char *copy = malloc(len + 1);
	char *p, *nl;
	unsigned seen = 0;
	int r = 0, version;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = 0;
	if (strlen(copy) != len || len < 5 || strcmp(copy + len - 5, "\nend\n"))
		return -EBADMSG; /* a NUL inside, or truncated */
	if (sscanf(copy, "mirrorfs-backup %d\n", &version) != 1 || strncmp(copy, "mirrorfs-backup ", 16))
		return -EBADMSG;
	if (version != MFS_BK_VERSION)
		return -EPROTONOSUPPORT;
	p = strchr(copy, '\n') + 1;
	copy[len - 4] = 0; /* drop "end\n" */
	for (; r == 0 && *p; p = nl + 1) {
		nl = strchr(p, '\n');
		*nl = 0;
		r = decode_line(&m, p, &seen);
	}
	if (r == 0 && seen != 31)
		r = -EBADMSG;
	if (r < 0) {
		mfs_bk_manifest_done(&m);
		return r;
	}
	*ret = m;
	return 0;
}

/* ================================================================ keys */

void mfs_bk_id_format(uint64_t lsn, uint64_t time_ns, char out[MFS_BK_ID_LEN + 1])
{
	snprintf(out, MFS_BK_ID_LEN + 1, "%020" PRIu64 "-%020" PRIu64, lsn, time_ns);
}

bool mfs_bk_id_parse(const char *id, uint64_t *ret_lsn, uint64_t *ret_time_ns)
{
	char a[21], b[21];
	uint64_t lsn, t;

	if (strlen(id) != MFS_BK_ID_LEN || id[20] != '-')
		return false;
	memcpy(a, id, 20);
	a[20] = 0;
	memcpy(b, id + 21, 20);
	b[20] = 0;
	if (strspn(a, "0123456789") != 20 || strspn(b, "0123456789") != 20 ||
	    !parse_u64(a, 10, &lsn) || !parse_u64(b, 10, &t))
		return false;
	*ret_lsn = lsn;
	*ret_time_ns = t;
	return true;
}

bool mfs_bk_key_parse(const char *rel, char ret_id[MFS_BK_ID_LEN + 1], bool *ret_manifest,
		      char ret_parent[MFS_BK_ID_LEN + 1])
{
	char id[MFS_BK_ID_LEN + 1];
	const char *leaf = rel + MFS_BK_ID_LEN + 1;
	size_t ml = strlen(MFS_BK_MANIFEST);
	uint64_t a, b;

	if (strlen(rel) < MFS_BK_ID_LEN + 2 || rel[MFS_BK_ID_LEN] != '/')
		return false;
	memcpy(id, rel, MFS_BK_ID_LEN);
	id[MFS_BK_ID_LEN] = 0;
	if (!mfs_bk_id_parse(id, &a, &b))
		return false;
	*ret_manifest = false;
	ret_parent[0] = 0;
	if (!strcmp(leaf, MFS_BK_MANIFEST))
		*ret_manifest = true;
	else if (!strncmp(leaf, MFS_BK_MANIFEST "-", ml + 1) && mfs_bk_id_parse(leaf + ml + 1, &a, &b))
		*ret_manifest = true, memcpy(ret_parent, leaf + ml + 1, MFS_BK_ID_LEN + 1);
	memcpy(ret_id, id, sizeof(id));
	return true;
}

void mfs_bk_manifest_key(const char *id, const char *parent, char out[2 * MFS_BK_ID_LEN + 20])
{
	snprintf(out, 2 * MFS_BK_ID_LEN + 20, "%s/" MFS_BK_MANIFEST "%s%s", id, *parent ? "-" : "",
		 parent);
}

/* ================================================================ decisions */

int mfs_bk_find(const struct mfs_bk_info *v, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].id, id))
			return (int)i;
	return -ENOENT;
}

/* Whether every backup of @i's chain is complete and present. */
static bool chain_whole(const struct mfs_bk_info *v, size_t n, size_t i)
{
	for (size_t hops = 0; hops <= n; hops++) {
		int p;
		if (!v[i].complete)
			return false;
		if (!v[i].parent[0])
			return true;
		p = mfs_bk_find(v, n, v[i].parent);
		if (p < 0)
			return false;
		i = (size_t)p;
	}
	return false; /* a cycle */
}

int mfs_bk_pick(const struct mfs_bk_info *v, size_t n, uint64_t until_lsn, uint64_t until_ns)
{
	for (size_t i = n; i-- > 0;)
		if (v[i].lsn <= until_lsn && v[i].time_ns <= until_ns && chain_whole(v, n, i))
			return (int)i;
	return -ENOENT;
}

size_t mfs_bk_plan_prune(struct mfs_bk_info *v, size_t n, unsigned keep_backups,
			 uint64_t keep_within_ns, uint64_t now_ns, uint64_t *ret_window_lsn)
{
	uint64_t since = keep_within_ns < now_ns ? now_ns - keep_within_ns : 0;
	uint64_t window = 0;
	unsigned kept = 0;
	bool before_taken = false;
	size_t count = 0;

	for (size_t i = 0; i < n; i++)
		v[i].keep = false;
	for (size_t i = n; i-- > 0;) { /* newest first */
		bool k;
		if (!chain_whole(v, n, i))
			continue;
		if (keep_backups)
			k = kept < keep_backups;
		else if (v[i].time_ns >= since)
			k = true;
		else
			k = !before_taken, before_taken = true;
		if (!k)
			continue;
		kept++;
		window = v[i].lsn;
		for (int j = (int)i; j >= 0 && !v[j].keep;
		     j = v[j].parent[0] ? mfs_bk_find(v, n, v[j].parent) : -1)
			v[j].keep = true;
	}
	for (size_t i = 0; i < n; i++) {
		/* nothing restorable kept: nothing to start a window from, keep all */
		if (!kept || (!v[i].complete && v[i].lsn >= window))
			v[i].keep = true;
		count += v[i].keep;
	}
	*ret_window_lsn = kept ? window : 0;
	return count;
}
