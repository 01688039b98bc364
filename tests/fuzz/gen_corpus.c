/* SPDX-License-Identifier: MIT */
/*
 * gen_corpus.c - write seed segments for the segment fuzzer.
 *
 * Usage: gen_corpus DIR. Writes, with the real segment writer:
 *   every-type.mfsj  one record of every type, closed (trailer)
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

static const enum mfs_rec_type types[] = {
	MFS_REC_WRITE,	    MFS_REC_TRUNCATE, MFS_REC_FALLOCATE,   MFS_REC_MKNOD,
	MFS_REC_MKDIR,	    MFS_REC_UNLINK,   MFS_REC_RMDIR,	   MFS_REC_RENAME,
	MFS_REC_LINK,	    MFS_REC_SYMLINK,  MFS_REC_CHMOD,	   MFS_REC_CHOWN,
	MFS_REC_UTIMENS,    MFS_REC_SETXATTR, MFS_REC_REMOVEXATTR, MFS_REC_SNAPSHOT,
	MFS_REC_CHECKPOINT,
};

static void fill(struct mfs_rec *rec, enum mfs_rec_type t)
{
	static const char data[] = "database page contents";

	memset(rec, 0, sizeof(*rec));
	rec->type = t;
	rec->time_ns = 1763900000000000000ull + t;
	if (!mfs_rec_type_is_marker(t))
		snprintf(rec->path, sizeof(rec->path), "pg/base/%d", (int)t);
	rec->offset = 8192;
	rec->length = 4096;
	rec->mode = t == MFS_REC_MKNOD ? 0010644 : 0644;
	rec->uid = 1000;
	rec->gid = 1000;
	rec->atime_sec = 1763900000;
	rec->mtime_sec = 1763900001;
	rec->atime_nsec = 5;
	rec->mtime_nsec = 6;
	switch (t) {
	case MFS_REC_WRITE:
		rec->data = data;
		rec->data_len = sizeof(data) - 1;
		break;
	case MFS_REC_SETXATTR:
		strcpy(rec->path2, "user.comment");
		rec->data = "v";
		rec->data_len = 1;
		break;
	case MFS_REC_RENAME:
	case MFS_REC_LINK:
		strcpy(rec->path2, "pg/base/new");
		break;
	case MFS_REC_SYMLINK:
		strcpy(rec->path2, "../target");
		break;
	case MFS_REC_REMOVEXATTR:
		strcpy(rec->path2, "user.comment");
		break;
	case MFS_REC_SNAPSHOT:
		strcpy(rec->path2, "nightly");
		break;
	default:
		break;
	}
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
		fill(rec, types[i % (int)(sizeof(types) / sizeof(types[0]))]);
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
	const int n = (int)(sizeof(types) / sizeof(types[0]));
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
