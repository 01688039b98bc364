/* SPDX-License-Identifier: MIT */
/*
 * mkseg.c - test helper: write journal segments from a script, with the
 * library's own writer, before (or without) the filesystem.
 *
 * usage: mkseg OUTDIR UUID FIRST_LSN [SEG_NO] < SCRIPT
 *
 * One record per line, fields separated by blanks (names have none):
 *   write PATH OFF DATA        DATA: text, or @LEN:SEED for LEN pattern bytes
 *   truncate PATH SIZE         fallocate PATH MODE OFF LEN
 *   mknod PATH MODE(octal, with type bits) [MAJOR:MINOR]   mkdir PATH MODE
 *   unlink PATH   rmdir PATH   rename A B [FLAGS]   link A B
 *   symlink PATH TARGET        chmod PATH MODE      chown PATH UID GID
 *   utimens PATH AS ANS MS MNS setxattr PATH NAME VALUE   removexattr PATH NAME
 *   checkpoint LSN             snapshot NAME
 *   close                      seal the segment, start the next one
 * Every record is parsed from the record type table (lib/rectype.c): its
 * name, its path unless it is a marker, then its fields in payload order
 * (numbers in C syntax, modes the table shows in octal in octal, a device
 * as MAJOR:MINOR, a time as two tokens), missing ones 0. A blob (write
 * DATA, setxattr VALUE) is always the last token, and the numbers between
 * a line's names and its blob may be left out (setxattr's flags).
 * Paths are written as given (hostile ones too). Closed segments get their
 * closed names in OUTDIR; the last one is sealed at end of input. Prints
 * the names, one a line.
 *
 * Environment: MKSEG_KEY=FILE writes format 2, tagged with that key, the
 * chain going on from segment to segment; MKSEG_PREV=HEX (64 digits) is
 * the first segment's previous tag (zeros: a chain's start).
 * MKSEG_ENC_KEY=FILE seals every record with that key's encryption key;
 * MKSEG_ZSTD=N compresses writes at zstd level N (both format 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/io.h"
#include "mirrorfs/segment.h"

struct gen {
	int dirfd;
	uint8_t uuid[16];
	uint64_t seg_no, next_lsn;
	struct mfs_segw *w;
	char *buf;
	size_t cap;
	bool auth;
	struct mfs_auth_key key;
	uint8_t chain[MFS_TAG_SIZE];
	bool enc;
	struct mfs_auth_key ekey;
	int zstd;
};

static int fail(const char *what, int r)
{
	fprintf(stderr, "mkseg: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(1);
}

static void seg_open(struct gen *g)
{
	char tmp[64];
	int r;

	struct mfs_segw_opts o = { .key = g->auth ? &g->key : NULL,
				   .enc_key = g->enc ? &g->ekey : NULL,
				   .zstd_level = g->zstd };

	memcpy(o.prev_tag, g->chain, MFS_TAG_SIZE);
	snprintf(tmp, sizeof(tmp), ".mkseg.%" PRIu64, g->seg_no);
	r = mfs_segw_create_opts(g->dirfd, tmp, g->uuid, g->seg_no, g->next_lsn, 0,
				 g->auth || g->enc || g->zstd ? &o : NULL, &g->w);
	if (r < 0)
		fail("create", r);
}

static void seg_close(struct gen *g)
{
	char name[MFS_SEG_NAME_LEN + 1];
	struct mfs_segw_stats st;
	int r;

	mfs_segw_get_stats(g->w, &st);
	mfs_segw_chain(g->w, g->chain);
	g->next_lsn = st.next_lsn;
	r = mfs_segw_close(g->w, g->dirfd, name);
	if (r < 0)
		fail("close", r);
	g->w = NULL;
	g->seg_no++;
	printf("%s\n", name);
}

static const void *data_of(struct gen *g, const char *tok, uint32_t *len)
{
	unsigned long n, seed;

	if (tok[0] != '@' || sscanf(tok, "@%lu:%lu", &n, &seed) != 2) {
		*len = (uint32_t)strlen(tok);
		return tok;
	}
	if (n > g->cap) {
		g->buf = realloc(g->buf, n);
		if (!g->buf)
			fail("memory", -ENOMEM);
		g->cap = n;
	}
	for (unsigned long i = 0; i < n; i++)
		g->buf[i] = (char)((i * 131 + seed * 7919 + (i >> 12) * seed) & 0xff);
	*len = (uint32_t)n;
	return g->buf;
}

/* Field @f from token @s: octal if the table shows it so, MAJ:MIN as a device number. */
static uint64_t num_of(const struct mfs_rec_field *f, const char *s)
{
	unsigned maj, min;

	if (strchr(s, ':') && sscanf(s, "%u:%u", &maj, &min) == 2)
		return makedev(maj, min);
	return strtoull(s, NULL, f->show == MFS_SHOW_OCT ? 8 : 0);
}

/* How many tokens a line gives before its blob's at least (see the head comment). */
static int blob_after(const struct mfs_rec_type_info *ti)
{
	int pre = 0, nstr = 0;

	for (const struct mfs_rec_field *f = ti->fields; f->kind && f->kind != MFS_FLD_BLOB; f++) {
		pre++;
		nstr += f->kind == MFS_FLD_STR;
	}
	return pre == 0 ? 0 : nstr > 1 ? nstr : 1;
}

/* A time field from "SECONDS [NANOSECONDS]" of the @n tokens @t: how many it took. */
static int set_time(struct mfs_rec *rec, const struct mfs_rec_field *f, char **t, int n)
{
	mfs_rec_field_set(&rec->fields, f, num_of(f, t[0]));
	if (n > 1)
		*(uint32_t *)(void *)((char *)rec + f->off2) = (uint32_t)num_of(f, t[1]);
	return n > 1 ? 2 : 1;
}

/* The fields of @rec from its @n tokens @t, as the record type table lists them. */
static void fields(struct gen *g, struct mfs_rec *rec, char **t, int n)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info(rec->type);
	int i = 0;

	if (n < 0)
		n = 0;
	if (mfs_rec_type_has_blob(rec->type) && n > blob_after(ti))
		rec->data = data_of(g, t[--n], &rec->data_len);
	for (const struct mfs_rec_field *f = ti->fields; f->kind && i < n; f++) {
		if (f->kind == MFS_FLD_STR)
			snprintf(rec->path2, sizeof(rec->path2), "%s", t[i++]);
		else if (f->kind == MFS_FLD_TIME)
			i += set_time(rec, f, t + i, n - i);
		else if (f->kind != MFS_FLD_BLOB)
			mfs_rec_field_set(&rec->fields, f, num_of(f, t[i++]));
	}
}

static void line(struct gen *g, char *s, struct mfs_rec *rec)
{
	char *t[8] = { 0 };
	int n = 0;
	uint64_t lsn;
	uint32_t type;
	int r;

	for (char *p = strtok(s, " \t\n"); p && n < 8; p = strtok(NULL, " \t\n"))
		t[n++] = p;
	if (n == 0 || t[0][0] == '#')
		return;
	if (!strcmp(t[0], "close")) {
		seg_close(g);
		seg_open(g);
		return;
	}
	memset(rec, 0, sizeof(*rec));
	if (mfs_rec_type_from_name(t[0], &type) < 0) {
		fprintf(stderr, "mkseg: unknown record '%s'\n", t[0]);
		exit(2);
	}
	rec->type = (enum mfs_rec_type)type;
	if (!mfs_rec_type_is_marker(rec->type))
		snprintf(rec->path, sizeof(rec->path), "%s", t[1] ? t[1] : "");
	fields(g, rec, t + 2 - mfs_rec_type_is_marker(rec->type), n - 2 + mfs_rec_type_is_marker(rec->type));
	r = mfs_segw_append(g->w, rec, &lsn);
	if (r < 0)
		fail("append", r);
}

int main(int argc, char **argv)
{
	struct gen g = { .seg_no = 1 };
	struct mfs_rec *rec = malloc(sizeof(*rec));
	char *s = NULL;
	size_t cap = 0;

	if (argc < 4 || argc > 5 || !rec) {
		fprintf(stderr, "usage: mkseg OUTDIR UUID FIRST_LSN [SEG_NO] < SCRIPT\n");
		return 2;
	}
	g.dirfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g.dirfd < 0)
		fail(argv[1], errno);
	if (mfs_uuid_parse(argv[2], g.uuid) < 0)
		fail("uuid", EINVAL);
	g.next_lsn = strtoull(argv[3], NULL, 10);
	if (argc == 5)
		g.seg_no = strtoull(argv[4], NULL, 10);
	if (getenv("MKSEG_KEY")) {
		int r = mfs_auth_key_load(getenv("MKSEG_KEY"), &g.key);
		if (r < 0)
			fail("MKSEG_KEY", r);
		g.auth = true;
	}
	if (getenv("MKSEG_ENC_KEY")) {
		struct mfs_auth_key k;
		int r = mfs_auth_key_load(getenv("MKSEG_ENC_KEY"), &k);
		if (r == 0)
			r = mfs_enc_key_from_raw(k.key, &g.ekey);
		if (r < 0)
			fail("MKSEG_ENC_KEY", r);
		g.enc = true;
	}
	if (getenv("MKSEG_ZSTD"))
		g.zstd = atoi(getenv("MKSEG_ZSTD"));
	if (getenv("MKSEG_PREV")) {
		const char *h = getenv("MKSEG_PREV");
		for (size_t i = 0; i < MFS_TAG_SIZE && strlen(h) == 2 * MFS_TAG_SIZE; i++) {
			unsigned v;
			sscanf(h + 2 * i, "%2x", &v);
			g.chain[i] = (uint8_t)v;
		}
	}
	seg_open(&g);
	while (getline(&s, &cap, stdin) > 0)
		line(&g, s, rec);
	seg_close(&g);
	free(s);
	free(rec);
	free(g.buf);
	return 0;
}
