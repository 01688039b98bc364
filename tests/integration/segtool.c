/* SPDX-License-Identifier: MIT */
/*
 * segtool.c - test helper: what an attacker without the key can do to a
 * segment file: edit bytes and make every CRC right again.
 *
 * usage: segtool offsets FILE          "OFFSET LENGTH LSN TYPE" per record
 *        segtool setlsn FILE OFF LSN   the LSN of the record at OFF (and of
 *                                      the header, OFF 0: its first LSN)
 *        segtool fix FILE              every record CRC, the header CRC, and
 *                                      the trailer's last LSN, count and
 *                                      segment CRC (its tag is left as is)
 * Records are walked by their length fields; a record whose flags say
 * "tagged" ends in a 32-byte tag, which the CRC covers.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/crc32c.h"
#include "mirrorfs/format.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

static uint8_t *buf;
static size_t len;

static void load(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(path);
		exit(1);
	}
	len = (size_t)st.st_size;
	buf = malloc(len + 1);
	if (!buf || mfs_pread_all(fd, buf, len, 0) != (ssize_t)len) {
		perror(path);
		exit(1);
	}
	close(fd);
}

static void save(const char *path)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);

	if (fd < 0 || mfs_pwrite_all(fd, buf, len, 0) < 0) {
		perror(path);
		exit(1);
	}
	close(fd);
}

static void fix(void)
{
	uint64_t off = MFS_SEG_HEADER_SIZE, count = 0, last = mfs_get_le64(buf + 40) - 1;
	uint32_t seg_crc;

	mfs_put_le32(buf + 124, mfs_crc32c(0, buf, 124));
	seg_crc = mfs_crc32c(0, buf, MFS_SEG_HEADER_SIZE);
	while (off + MFS_REC_HEADER_SIZE <= len) {
		uint8_t *p = buf + off;
		uint32_t l = mfs_get_le32(p), crc;

		if (l < MFS_REC_HEADER_SIZE || off + l > len)
			break;
		if (mfs_get_le16(p + 4) == MFS_REC_SEG_CLOSED) {
			uint8_t *t = p + MFS_REC_HEADER_SIZE;
			mfs_put_le64(p + 8, last);
			mfs_put_le64(t, last);
			mfs_put_le64(t + 8, count);
			mfs_put_le32(t + 16, seg_crc);
		}
		crc = mfs_crc32c(0, p, 28);
		crc = mfs_crc32c(crc, p + MFS_REC_HEADER_SIZE, l - MFS_REC_HEADER_SIZE);
		mfs_put_le32(p + 28, crc);
		if (mfs_get_le16(p + 4) != MFS_REC_SEG_CLOSED) {
			seg_crc = mfs_crc32c(seg_crc, p, l);
			last = mfs_get_le64(p + 8);
			count++;
		}
		off += l;
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: segtool offsets|fix|setlsn FILE [OFF LSN]\n");
		return 2;
	}
	load(argv[2]);
	if (!strcmp(argv[1], "offsets")) {
		for (uint64_t off = MFS_SEG_HEADER_SIZE; off + MFS_REC_HEADER_SIZE <= len;) {
			uint32_t l = mfs_get_le32(buf + off);
			if (l < MFS_REC_HEADER_SIZE || off + l > len)
				break;
			printf("%" PRIu64 " %" PRIu32 " %" PRIu64 " %u\n", off, l,
			       mfs_get_le64(buf + off + 8), mfs_get_le16(buf + off + 4));
			off += l;
		}
		return 0;
	}
	if (!strcmp(argv[1], "setlsn") && argc == 5) {
		uint64_t off = strtoull(argv[3], NULL, 10);
		if (off + 16 > len)
			return 1;
		mfs_put_le64(buf + (off ? off + 8 : 40), strtoull(argv[4], NULL, 10));
		save(argv[2]);
		return 0;
	}
	if (!strcmp(argv[1], "fix")) {
		fix();
		save(argv[2]);
		return 0;
	}
	fprintf(stderr, "segtool: unknown command\n");
	return 2;
}
