/* SPDX-License-Identifier: MIT */
/*
 * gen_corpus.c - write seed segments for the segment fuzzer.
 *
 * Usage: gen_corpus DIR. Writes, with the real segment writer:
 *   every-type.mfsj  one record of every type (the record type table's example), closed
 *   open.seg         the same records, no trailer (an open segment)
 *   empty.mfsj       a closed segment without records
 *   torn.seg         an open segment cut in the middle of its last record
 *   big-write.mfsj   one 64 KiB write, closed
 *   foreign.mfsj     a closed segment of another data set
 * Exit status 0 on success.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/format.h"
#include "mirrorfs/record.h"
#include "mirrorfs/segment.h"

/* Keep in sync with fuzz_segment.c. */
static const uint8_t seed_uuid[16] = {0x6d, 0x66, 0x73, 0x2d, 0x66, 0x75, 0x7a, 0x7a,
				      0x2d, 0x73, 0x65, 0x65, 0x64, 0x2d, 0x30, 0x31};
static const uint8_t other_uuid[16] = {1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16};

/* How many record types a segment may hold (every type of the table but the trailer). */
static int n_types(void)
{
	int n = 0;

	for (uint32_t t = mfs_rec_type_next(0); t; t = mfs_rec_type_next(t))
		n += !(mfs_rec_type_info(t)->flags & MFS_RT_TRAILER);
	return n;
}

/* The @i-th of them (modulo their number), in number order. */
static uint32_t type_at(int i)
{
	uint32_t t = mfs_rec_type_next(0);

	for (i %= n_types(); t; t = mfs_rec_type_next(t))
		if (!(mfs_rec_type_info(t)->flags & MFS_RT_TRAILER) && i-- == 0)
			break;
	return t;
}

/* A record of type @t: the record type table's example, on a path of its own. */
static void fill(struct mfs_rec *rec, uint32_t t)
{
	memset(rec, 0, sizeof(*rec));
	mfs_rec_example(t, rec);
	rec->time_ns = 1763900000000000000ull + t;
	if (!mfs_rec_type_is_marker(rec->type))
		snprintf(rec->path, sizeof(rec->path), "pg/base/%d", (int)t);
}

/* The key of the format-2 seeds, also fuzz_segment.c's: bytes 0x00..0x1f. */
static struct mfs_auth_key seed_key;
static bool seed_auth;
static int seed_zstd;
static struct mfs_auth_key seed_ekey; /* encrypted seeds: derived from the same bytes */
static bool seed_enc;

static int write_segment(int dirfd, const char *name, const uint8_t uuid[16], int nrec,
			 const void *big, size_t big_len, bool close_it)
{
	struct mfs_segw_opts o = { .key = &seed_key, .zstd_level = seed_zstd,
				   .enc_key = seed_enc ? &seed_ekey : NULL };
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	struct mfs_segw *w = NULL;
	uint64_t lsn;
	int r;

	if (!rec)
		return -ENOMEM;
	(void)unlinkat(dirfd, name, 0);
	r = mfs_segw_create_opts(dirfd, name, uuid, 1, 1, 0, seed_auth ? &o : NULL, &w);
	for (int i = 0; r == 0 && i < nrec; i++) {
		fill(rec, type_at(i));
		r = mfs_segw_append(w, rec, &lsn);
	}
	if (r == 0 && big) {
		fill(rec, MFS_REC_WRITE);
		rec->data = big;
		rec->data_len = (uint32_t)big_len;
		r = mfs_segw_append(w, rec, &lsn);
	}
	free(rec);
	if (r < 0) {
		mfs_segw_free(w);
		return r;
	}
	if (!close_it) {
		mfs_segw_free(w);
		return 0;
	}
	return mfs_segw_close(w, -1, NULL);
}

/* Cut file @name of @dirfd to @size bytes. Returns 0 or -errno. */
static int cut_file(int dirfd, const char *name, off_t size)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size) < 0)
		r = -errno;
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	static uint8_t big[64 * 1024];
	const int n = n_types();
	struct stat st;
	int dirfd, r;

	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	(void)mkdir(argv[1], 0700);
	dirfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fprintf(stderr, "gen_corpus: cannot open '%s': %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31);
	r = write_segment(dirfd, "every-type.mfsj", seed_uuid, n, NULL, 0, true);
	if (r == 0)
		r = write_segment(dirfd, "open.seg", seed_uuid, n, NULL, 0, false);
	if (r == 0)
		r = write_segment(dirfd, "empty.mfsj", seed_uuid, 0, NULL, 0, true);
	if (r == 0)
		r = write_segment(dirfd, "torn.seg", seed_uuid, 5, NULL, 0, false);
	if (r == 0)
		r = fstatat(dirfd, "torn.seg", &st, 0) < 0
			    ? -errno
			    : cut_file(dirfd, "torn.seg", st.st_size - 7);
	if (r == 0)
		r = write_segment(dirfd, "big-write.mfsj", seed_uuid, 1, big, sizeof(big), true);
	if (r == 0)
		r = write_segment(dirfd, "foreign.mfsj", other_uuid, 3, NULL, 0, true);
	/* format 2, tagged with the seed key */
	if (r == 0) {
		uint8_t raw[32];
		for (int i = 0; i < 32; i++)
			raw[i] = (uint8_t)i;
		r = mfs_auth_key_from_raw(raw, &seed_key);
		seed_auth = true;
	}
	if (r == 0)
		r = write_segment(dirfd, "v2-every-type.mfsj", seed_uuid, n, NULL, 0, true);
	if (r == 0)
		r = write_segment(dirfd, "v2-open.seg", seed_uuid, n, NULL, 0, false);
	if (r == 0)
		r = write_segment(dirfd, "v2-big-write.mfsj", seed_uuid, 1, big, 4096, true);
	seed_zstd = 3; /* compressed writes, tagged */
	if (r == 0)
		r = write_segment(dirfd, "v2-zstd.mfsj", seed_uuid, n, big, 8192, true);
	if (r == 0) { /* encrypted (key file bytes 0x00..0x1f), tagged, compressed */
		uint8_t raw[32];
		for (int i = 0; i < 32; i++)
			raw[i] = (uint8_t)i;
		r = mfs_enc_key_from_raw(raw, &seed_ekey);
		seed_enc = true;
	}
	if (r == 0)
		r = write_segment(dirfd, "v2-enc.mfsj", seed_uuid, n, big, 8192, true);
	if (r == 0)
		r = write_segment(dirfd, "v2-enc-open.seg", seed_uuid, n, NULL, 0, false);
	close(dirfd);
	if (r < 0) {
		fprintf(stderr, "gen_corpus: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
