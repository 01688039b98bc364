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

static void line(struct gen *g, char *s, struct mfs_rec *rec)
{
	char *t[8] = { 0 };
	int n = 0;
	uint64_t lsn;
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
#define A(i) (t[i] ? t[i] : "")
#define NUM(i) strtoull(A(i), NULL, 0)
#define OCT(i) (uint32_t) strtoul(A(i), NULL, 8)
#define P1 snprintf(rec->path, sizeof(rec->path), "%s", A(1))
#define P2(i) snprintf(rec->path2, sizeof(rec->path2), "%s", A(i))
	if (!strcmp(t[0], "write")) {
		rec->type = MFS_REC_WRITE, P1, rec->offset = NUM(2);
		rec->data = data_of(g, A(3), &rec->data_len);
	} else if (!strcmp(t[0], "truncate")) {
		rec->type = MFS_REC_TRUNCATE, P1, rec->length = NUM(2);
	} else if (!strcmp(t[0], "fallocate")) {
		rec->type = MFS_REC_FALLOCATE, P1, rec->mode = (uint32_t)NUM(2);
		rec->offset = NUM(3), rec->length = NUM(4);
	} else if (!strcmp(t[0], "mknod")) {
		unsigned maj, min;

		rec->type = MFS_REC_MKNOD, P1, rec->mode = OCT(2);
		if (t[3] && sscanf(t[3], "%u:%u", &maj, &min) == 2)
			rec->rdev = makedev(maj, min);
	} else if (!strcmp(t[0], "mkdir")) {
		rec->type = MFS_REC_MKDIR, P1, rec->mode = OCT(2);
	} else if (!strcmp(t[0], "unlink")) {
		rec->type = MFS_REC_UNLINK, P1;
	} else if (!strcmp(t[0], "rmdir")) {
		rec->type = MFS_REC_RMDIR, P1;
	} else if (!strcmp(t[0], "rename")) {
		rec->type = MFS_REC_RENAME, P1, P2(2), rec->flags = (uint32_t)NUM(3);
	} else if (!strcmp(t[0], "link")) {
		rec->type = MFS_REC_LINK, P1, P2(2);
	} else if (!strcmp(t[0], "symlink")) {
		rec->type = MFS_REC_SYMLINK, P1, P2(2);
	} else if (!strcmp(t[0], "chmod")) {
		rec->type = MFS_REC_CHMOD, P1, rec->mode = OCT(2);
	} else if (!strcmp(t[0], "chown")) {
		rec->type = MFS_REC_CHOWN, P1, rec->uid = (uint32_t)NUM(2), rec->gid = (uint32_t)NUM(3);
	} else if (!strcmp(t[0], "utimens")) {
		rec->type = MFS_REC_UTIMENS, P1, rec->atime_sec = (int64_t)NUM(2);
		rec->atime_nsec = (uint32_t)NUM(3), rec->mtime_sec = (int64_t)NUM(4);
		rec->mtime_nsec = (uint32_t)NUM(5);
	} else if (!strcmp(t[0], "setxattr")) {
		rec->type = MFS_REC_SETXATTR, P1, P2(2);
		rec->data = A(3), rec->data_len = (uint32_t)strlen(A(3));
	} else if (!strcmp(t[0], "removexattr")) {
		rec->type = MFS_REC_REMOVEXATTR, P1, P2(2);
	} else if (!strcmp(t[0], "checkpoint")) {
		rec->type = MFS_REC_CHECKPOINT, rec->length = NUM(1);
	} else if (!strcmp(t[0], "snapshot")) {
		rec->type = MFS_REC_SNAPSHOT, P2(1);
	} else {
		fprintf(stderr, "mkseg: unknown record '%s'\n", t[0]);
		exit(2);
	}
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
