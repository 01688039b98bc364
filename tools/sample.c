/* SPDX-License-Identifier: MIT */
/*
 * sample.c - `mirrorctl sample FILE`: write a closed segment holding one
 * record of every type, for demos, docs and as a fuzzing seed.
 *
 * The records tell a small life of a data directory; a type it does not
 * tell follows as the record type table's example (lib/rectype.c), so
 * every type is in the sample without this file knowing it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/falloc.h>

#include "cli.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

static int append(struct mfs_segw *w, struct mfs_rec *rec)
{
	uint64_t lsn;

	return mfs_segw_append(w, rec, &lsn);
}

/* Whether @type is among the @n records of @proto. */
static bool told(const struct mfs_rec *proto, size_t n, uint32_t type)
{
	for (size_t i = 0; i < n; i++)
		if ((uint32_t)proto[i].type == type)
			return true;
	return false;
}

/* The table's example of every type the life does not tell (the trailer aside). */
static int write_examples(struct mfs_segw *w, const struct mfs_rec *proto, size_t n,
			  struct mfs_rec *rec)
{
	int r = 0;

	for (uint32_t t = mfs_rec_type_next(0); t && r == 0; t = mfs_rec_type_next(t)) {
		if (told(proto, n, t) || (mfs_rec_type_info(t)->flags & MFS_RT_TRAILER))
			continue;
		memset(rec, 0, sizeof(*rec));
		mfs_rec_example(t, rec);
		if (!mfs_rec_type_is_marker(rec->type))
			snprintf(rec->path, sizeof(rec->path), "db/table.dat");
		r = append(w, rec);
	}
	return r;
}

/* The sample: a small life of a data directory. */
static int write_records(struct mfs_segw *w)
{
	static const char data[] = "hello, mirror\n";
	static const char value[] = "v1";
	const struct mfs_rec proto[] = {
		{ .type = MFS_REC_MKDIR, .path = "db", .mode = 0755 },
		{ .type = MFS_REC_MKNOD, .path = "db/table.dat", .mode = S_IFREG | 0644 },
		{ .type = MFS_REC_WRITE, .path = "db/table.dat", .offset = 0, .data = data,
		  .data_len = sizeof(data) - 1 },
		{ .type = MFS_REC_FALLOCATE, .path = "db/table.dat", .mode = FALLOC_FL_KEEP_SIZE,
		  .offset = 0, .length = 65536 },
		{ .type = MFS_REC_TRUNCATE, .path = "db/table.dat", .length = 8192 },
		{ .type = MFS_REC_SETXATTR, .path = "db/table.dat", .path2 = "user.origin",
		  .data = value, .data_len = 2 },
		{ .type = MFS_REC_REMOVEXATTR, .path = "db/table.dat", .path2 = "user.origin" },
		{ .type = MFS_REC_CHMOD, .path = "db/table.dat", .mode = 0600 },
		{ .type = MFS_REC_CHOWN, .path = "db/table.dat", .uid = 0, .gid = 0 },
		{ .type = MFS_REC_UTIMENS, .path = "db/table.dat", .atime_sec = 1700000000,
		  .mtime_sec = 1700000000, .mtime_nsec = 5 },
		{ .type = MFS_REC_LINK, .path = "db/table.dat", .path2 = "db/table.lnk" },
		{ .type = MFS_REC_SYMLINK, .path = "db/current", .path2 = "table.dat" },
		{ .type = MFS_REC_RENAME, .path = "db/table.lnk", .path2 = "db/table.old" },
		{ .type = MFS_REC_UNLINK, .path = "db/table.old" },
		{ .type = MFS_REC_MKDIR, .path = "tmp", .mode = 0700 },
		{ .type = MFS_REC_RMDIR, .path = "tmp" },
		{ .type = MFS_REC_CHECKPOINT, .length = 16 },
		{ .type = MFS_REC_SNAPSHOT, .path2 = "nightly" },
	};
	struct mfs_rec *rec = malloc(sizeof(*rec));
	int r = 0;

	if (!rec)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(proto) && r == 0; i++) {
		*rec = proto[i];
		r = append(w, rec);
	}
	if (r == 0)
		r = write_examples(w, proto, ARRAY_SIZE(proto), rec);
	free(rec);
	return r;
}

int cli_sample(int argc, char **argv)
{
	_cleanup_free_ char *dcopy = NULL, *bcopy = NULL;
	_cleanup_close_ int dirfd = -EBADF;
	struct mfs_segw *w;
	uint8_t uuid[16];
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: mirrorctl sample FILE\n");
		return 2;
	}
	dcopy = strdup(argv[1]);
	bcopy = strdup(argv[1]);
	if (!dcopy || !bcopy)
		return cli_fail("out of memory");
	dirfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return cli_fail("cannot open the folder of '%s': %m", argv[1]);
	r = mfs_uuid_generate(uuid);
	if (r == 0)
		r = mfs_segw_create(dirfd, basename(bcopy), uuid, 1, 1, &w);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot create '%s': %m", argv[1]);
	}
	r = write_records(w);
	if (r < 0) {
		mfs_segw_free(w);
		errno = -r;
		return cli_fail("cannot write '%s': %m", argv[1]);
	}
	r = mfs_segw_close(w, -1, NULL);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot close '%s': %m", argv[1]);
	}
	return 0;
}
