/* SPDX-License-Identifier: MIT */
/*
 * test_io.c - unit tests of lib/io (and the log facade).
 *
 * Durable replacement, size and UUID parsing, full reads and writes, and
 * fault injection through mfs_io_set_ops(): a failing pwritev breaks the
 * segment writer (the first append returns the real error, every later one
 * -EIO) without leaving a partial record in the file; short writes and
 * EINTR are retried; a failing fdatasync is reported and sticks; ENOSPC
 * from preallocation is reported before anything is written.
 */
#include "mirrorfs/io.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"
#include "tests.h"

static char *tmpdir;
static int dirfd_ = -1;

static const uint8_t uuid_t1[16] = {0xde, 0xad, 0xbe, 0xef, 1, 2,  0x43, 4,
				    0x85, 6,	7,    8,    9, 10, 11,	 12};

static int suite_init(void)
{
	tmpdir = test_mkdtemp();
	if (!tmpdir)
		return -1;
	dirfd_ = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return dirfd_ < 0 ? -1 : 0;
}

static int suite_cleanup(void)
{
	mfs_io_set_ops(NULL);
	if (dirfd_ >= 0)
		close(dirfd_);
	dirfd_ = -1;
	test_rm_rf(tmpdir);
	free(tmpdir);
	tmpdir = NULL;
	return 0;
}

/* ---------------------------------------------------------------- plain helpers */

static void test_replace_file(void)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;

	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "state", "first", 5, 0640), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(dirfd_, "state", 100, &buf, &len), 0);
	CU_ASSERT_EQUAL(len, 5);
	CU_ASSERT_STRING_EQUAL(buf, "first");
	free(buf);
	buf = NULL;
	/* replace with something longer, then shorter, then empty */
	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "state", "the second", 10, 0640), 0);
	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "state", "3rd", 3, 0640), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(dirfd_, "state", 100, &buf, &len), 0);
	CU_ASSERT_EQUAL(len, 3);
	CU_ASSERT_STRING_EQUAL(buf, "3rd");
	free(buf);
	buf = NULL;
	CU_ASSERT_EQUAL(fstatat(dirfd_, "state", &st, 0), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0700, 0600);
	CU_ASSERT_EQUAL(st.st_mode & 0007, 0);
	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "state", "", 0, 0600), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(dirfd_, "state", 100, &buf, &len), 0);
	CU_ASSERT_EQUAL(len, 0);
	CU_ASSERT_STRING_EQUAL(buf, "");
	free(buf);
	buf = NULL;
	/* no temporary file is left behind */
	CU_ASSERT(faccessat(dirfd_, ".state.tmp", F_OK, 0) < 0);
	/* a directory that does not exist */
	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "no/such/dir", "x", 1, 0600), -ENOENT);
	/* read_file limits */
	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "big", "0123456789", 10, 0600), 0);
	CU_ASSERT_EQUAL(mfs_read_file(dirfd_, "big", 9, &buf, &len), -EFBIG);
	CU_ASSERT_PTR_NULL(buf);
	CU_ASSERT_EQUAL(mfs_read_file(dirfd_, "big", 10, &buf, NULL), 0);
	free(buf);
	buf = NULL;
	CU_ASSERT_EQUAL(mfs_read_file(dirfd_, "missing", 10, &buf, &len), -ENOENT);
	CU_ASSERT_EQUAL(mfs_fsync_dir(dirfd_, NULL), 0);
	CU_ASSERT_EQUAL(mfs_fsync_dir(dirfd_, "."), 0);
	CU_ASSERT_EQUAL(mfs_fsync_dir(dirfd_, "big"), -ENOTDIR);
}

/* mfs_publish_file and _path: the same replace, without fsync */
static void test_publish_file(void)
{
	_cleanup_free_ char *path = NULL;
	char *buf = NULL;
	size_t len = 0;

	CU_ASSERT_EQUAL(mfs_publish_file(dirfd_, "pub", "first version", 13, 0644), 0);
	CU_ASSERT_EQUAL(mfs_publish_file(dirfd_, "pub", "2nd", 3, 0644), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(dirfd_, "pub", 100, &buf, &len), 0);
	CU_ASSERT_EQUAL(len, 3);
	CU_ASSERT_STRING_EQUAL(buf, "2nd");
	free(buf);
	buf = NULL;
	CU_ASSERT(faccessat(dirfd_, ".pub.tmp", F_OK, 0) < 0);
	/* by path */
	CU_ASSERT_FATAL(asprintf(&path, "%s/pub", tmpdir) > 0);
	CU_ASSERT_EQUAL(mfs_publish_path(path, "by path", 7, 0644), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_read_file(dirfd_, "pub", 100, &buf, &len), 0);
	CU_ASSERT_STRING_EQUAL(buf, "by path");
	free(buf);
	buf = NULL;
	CU_ASSERT_EQUAL(mfs_publish_path("/no/such/dir/pub", "x", 1, 0644), -ENOENT);
	/* a symlink planted at the temp name is not followed */
	CU_ASSERT_EQUAL_FATAL(symlinkat("victim", dirfd_, ".pub.tmp"), 0);
	CU_ASSERT_EQUAL(mfs_publish_file(dirfd_, "pub", "x", 1, 0644), -ELOOP);
	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "pub", "x", 1, 0644), -ELOOP);
	CU_ASSERT(faccessat(dirfd_, "victim", F_OK, AT_SYMLINK_NOFOLLOW) < 0);
	CU_ASSERT_EQUAL(unlinkat(dirfd_, ".pub.tmp", 0), 0);
}

static void test_parse_size(void)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{"0", 0},
		{"4096", 4096},
		{"1k", 1024},
		{"1K", 1024},
		{"2KiB", 2048},
		{"64M", 64ull << 20},
		{"64m", 64ull << 20},
		{"3MB", 3ull << 20},
		{"1G", 1ull << 30},
		{"2T", 2ull << 40},
		{"18446744073709551615", UINT64_MAX},
		{"16777215T", 16777215ull << 40},
	};
	static const char *const bad[] = {
		"",	     "M",
		"-1",	     " 5",
		"5 ",	     "1.5M",
		"12X",	     "1MM",
		"1Mx",	     "0x10",
		"1KiBB",     "abc",
		"+3",	     "18446744073709551616",
		"16777216T", "17179869184G",
	};
	uint64_t v;

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		v = 12345;
		CU_ASSERT_EQUAL(mfs_parse_size(good[i].s, &v), 0);
		CU_ASSERT_EQUAL(v, good[i].v);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		v = 12345;
		if (mfs_parse_size(bad[i], &v) != -EINVAL)
			fprintf(stderr, "\n  parse_size('%s') accepted\n", bad[i]);
		CU_ASSERT_EQUAL(v, 12345);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CU_ASSERT_EQUAL(mfs_parse_size(bad[i], &v), -EINVAL);
	CU_ASSERT_EQUAL(mfs_parse_size(NULL, &v), -EINVAL);
}

static void test_uuid(void)
{
	static const uint8_t u[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
				      0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	uint8_t back[16], g1[16], g2[16];
	char s[37], s2[37];

	mfs_uuid_format(u, s);
	CU_ASSERT_STRING_EQUAL(s, "00112233-4455-6677-8899-aabbccddeeff");
	CU_ASSERT_EQUAL(mfs_uuid_parse(s, back), 0);
	CU_ASSERT(memcmp(back, u, 16) == 0);
	CU_ASSERT_EQUAL(mfs_uuid_parse("00112233-4455-6677-8899-AABBCCDDEEFF", back), 0);
	CU_ASSERT(memcmp(back, u, 16) == 0);
	CU_ASSERT_EQUAL(mfs_uuid_parse("00112233-4455-6677-8899-aabbccddeeff\n", back), 0);

	memset(back, 0x5a, sizeof(back));
	CU_ASSERT_EQUAL(mfs_uuid_parse("", back), -EINVAL);
	CU_ASSERT_EQUAL(mfs_uuid_parse("00112233-4455-6677-8899-aabbccddeef", back), -EINVAL);
	CU_ASSERT_EQUAL(mfs_uuid_parse("00112233-4455-6677-8899-aabbccddeeff0", back), -EINVAL);
	CU_ASSERT_EQUAL(mfs_uuid_parse("00112233445566778899aabbccddeeff", back), -EINVAL);
	CU_ASSERT_EQUAL(mfs_uuid_parse("00112233-4455-6677-8899_aabbccddeeff", back), -EINVAL);
	CU_ASSERT_EQUAL(mfs_uuid_parse("0011223g-4455-6677-8899-aabbccddeeff", back), -EINVAL);
	CU_ASSERT_EQUAL(mfs_uuid_parse("-0112233-4455-6677-8899-aabbccddeeff", back), -EINVAL);
	CU_ASSERT_EQUAL(back[0], 0x5a); /* untouched on failure */

	CU_ASSERT_EQUAL(mfs_uuid_generate(g1), 0);
	CU_ASSERT_EQUAL(mfs_uuid_generate(g2), 0);
	CU_ASSERT(memcmp(g1, g2, 16) != 0);
	CU_ASSERT_EQUAL(g1[6] >> 4, 4); /* version 4 */
	CU_ASSERT_EQUAL(g1[8] & 0xc0, 0x80); /* RFC 4122 variant */
	mfs_uuid_format(g1, s);
	CU_ASSERT_EQUAL(strlen(s), 36);
	CU_ASSERT_EQUAL(s[14], '4');
	CU_ASSERT_EQUAL(mfs_uuid_parse(s, back), 0);
	mfs_uuid_format(back, s2);
	CU_ASSERT_STRING_EQUAL(s, s2);
}

static void test_rw_all_and_time(void)
{
	char a[] = "alpha-", b[] = "beta-", c[] = "gamma";
	struct iovec iov[3] = {{a, 6}, {b, 5}, {c, 5}};
	char buf[64] = "";
	uint64_t t0, t1;
	int fd;

	fd = openat(dirfd_, "rw", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(mfs_pwritev_all(fd, iov, 3, 10), 0);
	CU_ASSERT_EQUAL(mfs_pwrite_all(fd, "0123456789", 10, 0), 0);
	CU_ASSERT_EQUAL(mfs_pread_all(fd, buf, sizeof(buf), 0), 26);
	CU_ASSERT(memcmp(buf, "0123456789alpha-beta-gamma", 26) == 0);
	CU_ASSERT_EQUAL(mfs_pread_all(fd, buf, 10, 100), 0); /* past EOF */
	CU_ASSERT_EQUAL(mfs_write_all(fd, "tail", 4), 0);
	close(fd);
	CU_ASSERT_EQUAL(mfs_pread_all(-1, buf, 1, 0), -EBADF);
	CU_ASSERT_EQUAL(mfs_pwrite_all(-1, buf, 1, 0), -EBADF);

	t0 = mfs_mono_ns();
	t1 = mfs_mono_ns();
	CU_ASSERT(t1 >= t0);
	CU_ASSERT(mfs_now_ns() > 1600000000ull * 1000000000ull); /* after 2020 */
}

/* ---------------------------------------------------------------- log facade */

static char log_buf[256];
static int log_level = -1;

__attribute__((format(printf, 2, 0))) static void capture(int level, const char *fmt, va_list ap)
{
	log_level = level;
	vsnprintf(log_buf, sizeof(log_buf), fmt, ap);
}

static int evaluated;

static int count_eval(void)
{
	return ++evaluated;
}

static void test_log(void)
{
	int saved = mfs_log_max_level, r;

	mfs_log_set_func(capture);
	mfs_log_max_level = LOG_INFO;
	r = log_error_errno(-ENOSPC, "disk '%s': %m", "x");
	CU_ASSERT_EQUAL(r, -ENOSPC);
	CU_ASSERT_EQUAL(log_level, LOG_ERR);
	CU_ASSERT_STRING_EQUAL(log_buf, "disk 'x': No space left on device");
	/* positive codes are returned negated */
	CU_ASSERT_EQUAL(log_warning_errno(EIO, "w"), -EIO);
	/* below the level: not emitted, arguments not evaluated */
	log_level = -1;
	evaluated = 0;
	log_debug("%d", count_eval());
	CU_ASSERT_EQUAL(log_level, -1);
	CU_ASSERT_EQUAL(evaluated, 0);
	log_info("%d", count_eval());
	CU_ASSERT_EQUAL(log_level, LOG_INFO);
	CU_ASSERT_EQUAL(evaluated, 1);
	mfs_log_set_func(NULL);
	mfs_log_max_level = saved;
}

/* ---------------------------------------------------------------- fault injection */

static int fail_errno; /* errno the failing op sets */
static int fail_after; /* calls that still succeed before failing */
static size_t short_max; /* bytes per pwritev call when > 0 */
static int eintr_every; /* every Nth call fails with EINTR */
static unsigned pwritev_calls, fdatasync_calls;

static ssize_t inj_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	struct iovec part[16];
	size_t budget;
	int n = 0;

	pwritev_calls++;
	if (eintr_every && pwritev_calls % (unsigned)eintr_every == 0) {
		errno = EINTR;
		return -1;
	}
	if (fail_errno && fail_after-- <= 0) {
		errno = fail_errno;
		return -1;
	}
	if (!short_max)
		return pwritev(fd, iov, cnt, off);
	budget = short_max;
	for (int i = 0; i < cnt && i < 16 && budget; i++) {
		size_t l = MFS_MIN(iov[i].iov_len, budget);

		part[n++] = (struct iovec){iov[i].iov_base, l};
		budget -= l;
	}
	return pwritev(fd, part, n, off);
}

/* Writes half of the first chunk, then fails with half_errno: a torn
 * record in the file. */
static int half_errno = EIO;

static ssize_t half_then_eio(int fd, const struct iovec *iov, int cnt, off_t off)
{
	ssize_t n;

	pwritev_calls++;
	if (pwritev_calls == 1 && iov[0].iov_len > 1) {
		n = pwrite(fd, iov[0].iov_base, iov[0].iov_len / 2, off);
		return n;
	}
	errno = half_errno;
	return -1;
}

static int inj_fdatasync(int fd)
{
	fdatasync_calls++;
	if (fail_errno) {
		errno = fail_errno;
		return -1;
	}
	return fdatasync(fd);
}

static int inj_fallocate(int fd, int mode, off_t off, off_t len)
{
	if (fail_errno) {
		errno = fail_errno;
		return -1;
	}
	return fallocate(fd, mode, off, len);
}

static void inj_reset(void)
{
	fail_errno = 0;
	fail_after = 0;
	short_max = 0;
	eintr_every = 0;
	pwritev_calls = fdatasync_calls = 0;
	mfs_io_set_ops(NULL);
}

static int append_one(struct mfs_segw *w, int i, uint64_t *ret_lsn)
{
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	static const char data[100] = "some data for the journal";
	int r;

	if (!rec)
		return -ENOMEM;
	rec->type = MFS_REC_WRITE;
	snprintf(rec->path, sizeof(rec->path), "file-%d", i);
	rec->offset = (uint64_t)i * 100;
	rec->data = data;
	rec->data_len = sizeof(data);
	r = mfs_segw_append(w, rec, ret_lsn);
	free(rec);
	return r;
}

/* Verdict and record count of a segment file. */
static void scan_name(const char *name, struct mfs_seg_info *info)
{
	int fd = openat(dirfd_, name, O_RDONLY | O_CLOEXEC);

	memset(info, 0, sizeof(*info));
	info->verdict = MFS_SEG_NOT_SEGMENT;
	if (fd < 0)
		return;
	CU_ASSERT_EQUAL(mfs_seg_scan_fd(fd, uuid_t1, NULL, NULL, info), 0);
	close(fd);
}

static void check_broken_writer(const char *name, int first_err,
				ssize_t (*op)(int, const struct iovec *, int, off_t))
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_segw *w = NULL;
	struct mfs_seg_info info;
	struct stat st;
	uint64_t lsn = 0, cut = 1;

	inj_reset();
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, name, uuid_t1, 1, 1, &w), 0);
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	CU_ASSERT_EQUAL(append_one(w, 1, &lsn), 0);
	CU_ASSERT_EQUAL(lsn, 2);
	ops.pwritev = op;
	fail_errno = first_err;
	mfs_io_set_ops(&ops);
	CU_ASSERT_EQUAL(append_one(w, 2, &lsn), -first_err);
	inj_reset();
	/* the disk works again, but the writer stays broken */
	CU_ASSERT_EQUAL(append_one(w, 3, &lsn), -EIO);
	CU_ASSERT_EQUAL(append_one(w, 4, &lsn), -EIO);
	CU_ASSERT_EQUAL(lsn, 2);
	CU_ASSERT_EQUAL(mfs_segw_reserve(w, 10), -EIO);
	/* what was appended before is still in the file, nothing after it */
	scan_name(name, &info);
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_TORN);
	CU_ASSERT_EQUAL(info.last_lsn, 2);
	CU_ASSERT_EQUAL(info.valid_end, info.file_size);
	CU_ASSERT_EQUAL(fstatat(dirfd_, name, &st, 0), 0);
	CU_ASSERT_EQUAL((uint64_t)st.st_size, info.valid_end);
	/* closing a broken writer fails and leaves the open segment as it is */
	CU_ASSERT_EQUAL(mfs_segw_close(w, dirfd_, NULL), -EIO);
	/* recovery: reopen continues at LSN 3 */
	CU_ASSERT_EQUAL_FATAL(mfs_segw_reopen(dirfd_, name, uuid_t1, &w, &cut), 0);
	CU_ASSERT_EQUAL(cut, 0);
	CU_ASSERT_EQUAL(append_one(w, 5, &lsn), 0);
	CU_ASSERT_EQUAL(lsn, 3);
	CU_ASSERT_EQUAL(mfs_segw_close(w, -1, NULL), 0);
	scan_name(name, &info);
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(info.records, 3);
}

/*
 * Out of space in the middle of a record: the torn part is cut off, the
 * append refused with ENOSPC, and the writer goes on once there is room.
 */
static void test_fault_pwritev_enospc(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_segw *w = NULL;
	struct mfs_seg_info info;
	struct stat st, before;
	uint64_t lsn = 0;

	inj_reset();
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "f-enospc", uuid_t1, 1, 1, &w), 0);
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	CU_ASSERT_EQUAL(append_one(w, 1, &lsn), 0);
	CU_ASSERT_EQUAL(fstatat(dirfd_, "f-enospc", &before, 0), 0);
	ops.pwritev = half_then_eio;
	half_errno = ENOSPC;
	mfs_io_set_ops(&ops);
	CU_ASSERT_EQUAL(append_one(w, 2, &lsn), -ENOSPC);
	CU_ASSERT_EQUAL(pwritev_calls, 2); /* half a record went in */
	half_errno = EIO;
	inj_reset();
	CU_ASSERT_EQUAL(fstatat(dirfd_, "f-enospc", &st, 0), 0);
	CU_ASSERT_EQUAL(st.st_size, before.st_size);
	CU_ASSERT_EQUAL(lsn, 2);
	CU_ASSERT_EQUAL(append_one(w, 3, &lsn), 0);
	CU_ASSERT_EQUAL(lsn, 3);
	CU_ASSERT_EQUAL(mfs_segw_close(w, -1, NULL), 0);
	scan_name("f-enospc", &info);
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(info.records, 3);
}

static void test_fault_pwritev_eio(void)
{
	check_broken_writer("f-eio", EIO, inj_pwritev);
}

static void test_fault_partial_then_eio(void)
{
	check_broken_writer("f-half", EIO, half_then_eio);
}

static void test_fault_short_writes_and_eintr(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_segw *w = NULL;
	struct mfs_seg_info info;
	uint64_t lsn = 0;
	char closed[MFS_SEG_NAME_LEN + 1];

	inj_reset();
	ops.pwritev = inj_pwritev;
	mfs_io_set_ops(&ops);
	short_max = 7; /* at most 7 bytes per call */
	eintr_every = 3; /* and every third call interrupted */
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "f-short", uuid_t1, 1, 10, &w), 0);
	for (int i = 0; i < 20; i++)
		CU_ASSERT_EQUAL(append_one(w, i, &lsn), 0);
	CU_ASSERT_EQUAL(lsn, 29);
	CU_ASSERT_EQUAL(mfs_segw_sync(w, lsn), 0);
	/* each record is > 100 bytes: many calls per record */
	CU_ASSERT(pwritev_calls > 20 * 15);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, dirfd_, closed), 0);
	inj_reset();
	CU_ASSERT_STRING_EQUAL(closed, "00000000000000000010-00000000000000000029.mfsj");
	scan_name(closed, &info);
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(info.records, 20);

	/* mfs_pwritev_all on its own, across iovec boundaries */
	{
		char a[] = "abc", b[] = "defghij", c[] = "klmnopqrstu";
		struct iovec iov[3] = {{a, 3}, {b, 7}, {c, 11}};
		char buf[32] = "";
		int fd = openat(dirfd_, "short-iov", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		CU_ASSERT_FATAL(fd >= 0);
		mfs_io_set_ops(&ops);
		short_max = 2;
		CU_ASSERT_EQUAL(mfs_pwritev_all(fd, iov, 3, 0), 0);
		inj_reset();
		CU_ASSERT_EQUAL(pread(fd, buf, sizeof(buf), 0), 21);
		CU_ASSERT(memcmp(buf, "abcdefghijklmnopqrstu", 21) == 0);
		close(fd);
	}
}

/* A pwritev that writes nothing (returns 0) must not loop for ever. */
static ssize_t zero_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return 0;
}

static void test_fault_zero_write(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	int fd = openat(dirfd_, "zero", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	CU_ASSERT_FATAL(fd >= 0);
	ops.pwritev = zero_pwritev;
	mfs_io_set_ops(&ops);
	CU_ASSERT(mfs_pwrite_all(fd, "x", 1, 0) < 0);
	inj_reset();
	close(fd);
}

static void test_fault_fdatasync(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_segw *w = NULL;
	struct mfs_segw_stats st;
	uint64_t lsn = 0;

	inj_reset();
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "f-sync", uuid_t1, 1, 1, &w), 0);
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	ops.fdatasync = inj_fdatasync;
	mfs_io_set_ops(&ops);
	fail_errno = EIO;
	CU_ASSERT_EQUAL(mfs_segw_sync(w, lsn), -EIO);
	CU_ASSERT_EQUAL(fdatasync_calls, 1);
	fail_errno = 0;
	/* after a failed flush nothing is known durable: the error sticks */
	CU_ASSERT_EQUAL(append_one(w, 1, &lsn), 0);
	CU_ASSERT_EQUAL(mfs_segw_sync(w, lsn), -EIO);
	mfs_segw_get_stats(w, &st);
	CU_ASSERT_EQUAL(st.durable_lsn, 0);
	inj_reset();
	mfs_segw_free(w);

	/* create fails cleanly when its flush fails: no file is left */
	mfs_io_set_ops(&ops);
	fail_errno = EIO;
	w = NULL;
	CU_ASSERT_EQUAL(mfs_segw_create(dirfd_, "f-sync2", uuid_t1, 1, 1, &w), -EIO);
	CU_ASSERT_PTR_NULL(w);
	inj_reset();
	CU_ASSERT(faccessat(dirfd_, "f-sync2", F_OK, 0) < 0);
}

static void test_fault_fallocate(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_segw *w = NULL;
	struct mfs_seg_info info;
	uint64_t lsn = 0;

	inj_reset();
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "f-falloc", uuid_t1, 1, 1, &w), 0);
	ops.fallocate = inj_fallocate;
	mfs_io_set_ops(&ops);
	fail_errno = ENOSPC;
	/* far beyond what is reserved: refused before anything is written */
	CU_ASSERT_EQUAL(mfs_segw_reserve(w, 64u << 20), -ENOSPC);
	/* the writer is not broken: what fits the reservation still goes in */
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	CU_ASSERT_EQUAL(lsn, 1);
	/* a file system without fallocate is not an error */
	fail_errno = EOPNOTSUPP;
	CU_ASSERT_EQUAL(mfs_segw_reserve(w, 64u << 20), 0);
	inj_reset();
	CU_ASSERT_EQUAL(append_one(w, 1, &lsn), 0);
	CU_ASSERT_EQUAL(mfs_segw_close(w, -1, NULL), 0);
	scan_name("f-falloc", &info);
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(info.records, 2);

	/* create fails with ENOSPC when it cannot even reserve its header */
	mfs_io_set_ops(&ops);
	fail_errno = ENOSPC;
	w = NULL;
	CU_ASSERT_EQUAL(mfs_segw_create(dirfd_, "f-falloc2", uuid_t1, 1, 1, &w), -ENOSPC);
	inj_reset();
	CU_ASSERT(faccessat(dirfd_, "f-falloc2", F_OK, 0) < 0);
}

static ssize_t failing_pread(int fd, void *buf, size_t len, off_t off)
{
	errno = EIO;
	return -1;
}

static int eintr_count;

static ssize_t eintr_pread(int fd, void *buf, size_t len, off_t off)
{
	if (eintr_count++ % 2 == 0) {
		errno = EINTR;
		return -1;
	}
	return pread(fd, buf, MFS_MIN(len, (size_t)5), off); /* and short */
}

static void test_fault_pread(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_seg_info info;
	struct mfs_segr *r = NULL;
	struct mfs_segw *w = NULL;
	char buf[32];
	uint64_t lsn;
	int fd;

	inj_reset();
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "f-pread", uuid_t1, 1, 1, &w), 0);
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	CU_ASSERT_EQUAL(mfs_segw_close(w, -1, NULL), 0);
	fd = openat(dirfd_, "f-pread", O_RDONLY | O_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	ops.pread = failing_pread;
	mfs_io_set_ops(&ops);
	CU_ASSERT_EQUAL(mfs_seg_scan_fd(fd, uuid_t1, NULL, NULL, &info), -EIO);
	CU_ASSERT_EQUAL(mfs_segr_open_fd(fd, uuid_t1, &r), -EIO);
	CU_ASSERT_PTR_NULL(r);
	CU_ASSERT_EQUAL(mfs_pread_all(fd, buf, sizeof(buf), 0), -EIO);
	/* EINTR and short reads are retried */
	ops.pread = eintr_pread;
	mfs_io_set_ops(&ops);
	eintr_count = 0;
	CU_ASSERT_EQUAL(mfs_pread_all(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	CU_ASSERT(memcmp(buf, "MFSJRNL\n", 8) == 0);
	CU_ASSERT_EQUAL(mfs_seg_scan_fd(fd, uuid_t1, NULL, NULL, &info), 0);
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_OK);
	inj_reset();
	close(fd);
}

/* Pages of the first @len bytes of @fd that are in the page cache. */
static size_t cached_pages(int fd, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = 0;
	unsigned char vec[1024];
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED || len / page > sizeof(vec) || mincore(p, len, vec) < 0)
		return SIZE_MAX;
	for (size_t i = 0; i < len / page; i++)
		n += vec[i] & 1;
	munmap(p, len);
	return n;
}

static bool has_cachestat(int fd)
{
	uint64_t range[2] = { 0, 0 }, cs[5];

	return syscall(451 /* cachestat */, fd, range, cs, 0) == 0 || errno != ENOSYS;
}

static void test_drop_clean_cache(void)
{
	const size_t len = 1 << 20, pages = len / (size_t)sysconf(_SC_PAGESIZE);
	char *buf = malloc(len);
	int fd = openat(dirfd_, "cache", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_FATAL(fd >= 0);
	memset(buf, 'c', len);
	CU_ASSERT_EQUAL_FATAL(mfs_pwrite_all(fd, buf, len, 0), 0);
	CU_ASSERT_EQUAL(fdatasync(fd), 0);
	CU_ASSERT_EQUAL(cached_pages(fd, len), pages);
	r = mfs_drop_clean_cache(fd);
	CU_ASSERT_EQUAL(r, has_cachestat(fd) ? 1 : 0);
	if (r == 1) { /* cachestat(2): clean pages are dropped, dirty ones kept */
		CU_ASSERT_EQUAL(cached_pages(fd, len), 0);
		CU_ASSERT_EQUAL(mfs_pwrite_all(fd, buf, len, 0), 0);
		CU_ASSERT_EQUAL(mfs_drop_clean_cache(fd), 0);
		CU_ASSERT_EQUAL(cached_pages(fd, len), pages);
		CU_ASSERT_EQUAL(fdatasync(fd), 0);
		CU_ASSERT_EQUAL(mfs_drop_clean_cache(fd), 1);
		CU_ASSERT_EQUAL(cached_pages(fd, len), 0);
	} else { /* no cachestat (Linux < 6.5): nothing dropped */
		CU_ASSERT_EQUAL(cached_pages(fd, len), pages);
	}
	close(fd);
	free(buf);
}

static void test_fault_seal_then_close(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_seg_info info;
	struct mfs_segw *w = NULL;
	char closed[MFS_SEG_NAME_LEN + 1];
	uint64_t lsn = 0;

	inj_reset();
	ops.fdatasync = inj_fdatasync;
	mfs_io_set_ops(&ops);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "seal-ok", uuid_t1, 1, 1, &w), 0);
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	CU_ASSERT_EQUAL(append_one(w, 1, &lsn), 0);
	fdatasync_calls = 0;
	CU_ASSERT_EQUAL(mfs_segw_seal(w), 0);
	CU_ASSERT_EQUAL(fdatasync_calls, 1);
	scan_name("seal-ok", &info); /* sealed in place, still under its open name */
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(info.records, 2);
	CU_ASSERT_EQUAL(mfs_segw_seal(w), 0); /* once only */
	CU_ASSERT_EQUAL(mfs_segw_close(w, dirfd_, closed), 0);
	CU_ASSERT_EQUAL(fdatasync_calls, 1);
	CU_ASSERT(faccessat(dirfd_, "seal-ok", F_OK, 0) < 0);
	scan_name(closed, &info); /* one trailer: a second one would be a tail */
	CU_ASSERT_EQUAL(info.verdict, MFS_SEG_OK);
	CU_ASSERT_EQUAL(info.records, 2);
	CU_ASSERT_EQUAL(info.last_lsn, 2);
	CU_ASSERT_EQUAL(unlinkat(dirfd_, closed, 0), 0);

	/* a failed seal: the writer is broken, close leaves the open segment */
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "seal-eio", uuid_t1, 1, 1, &w), 0);
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	fail_errno = EIO;
	CU_ASSERT_EQUAL(mfs_segw_seal(w), -EIO);
	fail_errno = 0;
	CU_ASSERT_EQUAL(append_one(w, 1, &lsn), -EIO);
	CU_ASSERT_EQUAL(mfs_segw_close(w, dirfd_, closed), -EIO);
	CU_ASSERT_EQUAL(faccessat(dirfd_, "seal-eio", F_OK, 0), 0);
	inj_reset();
}

/* Jobs that wait until @want of them run at the same time. */
struct meet {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int here, want;
};

struct meet_job {
	struct meet *m;
	int runs, ret;
};

static int meet_fn(void *arg)
{
	struct meet_job *j = arg;
	struct meet *m = j->m;
	struct timespec until;
	int r = 0;

	j->runs++;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20; /* a bound, not a measure: they meet at once or never */
	pthread_mutex_lock(&m->mu);
	if (++m->here >= m->want)
		pthread_cond_broadcast(&m->cv);
	while (m->here < m->want && r == 0)
		r = pthread_cond_timedwait(&m->cv, &m->mu, &until);
	pthread_mutex_unlock(&m->mu);
	return r ? -r : j->ret;
}

static void test_run_jobs(void)
{
	struct meet m = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, MFS_JOBS_THREADS };
	struct meet_job mj[3 * MFS_JOBS_THREADS] = { 0 };
	struct mfs_job jobs[3 * MFS_JOBS_THREADS];
	int fds[3];

	/* MFS_JOBS_THREADS of them run at the same time: they all meet */
	for (size_t k = 0; k < ARRAY_SIZE(jobs); k++) {
		mj[k].m = &m;
		jobs[k] = (struct mfs_job){ .fn = meet_fn, .arg = &mj[k] };
	}
	CU_ASSERT_EQUAL(mfs_run_jobs(jobs, MFS_JOBS_THREADS), 0);
	CU_ASSERT_EQUAL(m.here, MFS_JOBS_THREADS);
	/* more jobs than threads: each runs once; the first failure in job
	 * order is returned, every job's result is kept */
	m.here = 0;
	m.want = 1;
	mj[5].ret = -EIO;
	mj[17].ret = -ENOSPC;
	CU_ASSERT_EQUAL(mfs_run_jobs(jobs, ARRAY_SIZE(jobs)), -EIO);
	for (size_t k = 0; k < ARRAY_SIZE(jobs); k++) {
		CU_ASSERT_EQUAL(mj[k].runs, k < MFS_JOBS_THREADS ? 2 : 1);
		CU_ASSERT_EQUAL(jobs[k].r, mj[k].ret);
	}
	CU_ASSERT_EQUAL(mfs_run_jobs(jobs, 0), 0);

	fds[0] = dirfd_;
	CU_ASSERT_EQUAL_FATAL(mkdirat(dirfd_, "jobs-dir", 0700), 0);
	fds[1] = openat(dirfd_, "jobs-dir", O_PATH | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_FATAL(fds[1] >= 0);
	CU_ASSERT_EQUAL(mfs_fsync_dirs(fds, 2), 0);
	fds[2] = -1; /* a bad fd among good ones: its error */
	CU_ASSERT_EQUAL(mfs_fsync_dirs(fds, 3), -EBADF);
	close(fds[1]);
	CU_ASSERT_EQUAL(unlinkat(dirfd_, "jobs-dir", AT_REMOVEDIR), 0);
}

static int einval_renameat2(int odir, const char *old, int ndir, const char *new, unsigned flags)
{
	(void)odir, (void)old, (void)ndir, (void)new, (void)flags;
	errno = EINVAL;
	return -1;
}

/* A file system that refuses RENAME_NOREPLACE: link + unlink instead, and
 * a segment still closes (it used to stay in open/ for good). */
static void test_rename_noreplace_fallback(void)
{
	struct mfs_io_ops ops = mfs_io_default_ops;
	struct mfs_segw *w = NULL;
	char closed[MFS_SEG_NAME_LEN + 1];
	struct stat st;
	uint64_t lsn = 0;

	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "rn-a", "a", 1, 0600), 0);
	CU_ASSERT_EQUAL(mfs_replace_file(dirfd_, "rn-b", "b", 1, 0600), 0);
	ops.renameat2 = einval_renameat2;
	mfs_io_set_ops(&ops);
	CU_ASSERT_EQUAL(mfs_rename_noreplace(dirfd_, "rn-a", dirfd_, "rn-b"), -EEXIST);
	CU_ASSERT_EQUAL(mfs_rename_noreplace(dirfd_, "rn-a", dirfd_, "rn-c"), 0);
	CU_ASSERT_EQUAL(fstatat(dirfd_, "rn-a", &st, 0), -1);
	CU_ASSERT_EQUAL(fstatat(dirfd_, "rn-c", &st, 0), 0);
	CU_ASSERT_EQUAL(st.st_nlink, 1);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dirfd_, "rn-seg", uuid_t1, 1, 1, &w), 0);
	CU_ASSERT_EQUAL(append_one(w, 0, &lsn), 0);
	CU_ASSERT_EQUAL(mfs_segw_close(w, dirfd_, closed), 0);
	CU_ASSERT_EQUAL(fstatat(dirfd_, "rn-seg", &st, 0), -1);
	CU_ASSERT_EQUAL(fstatat(dirfd_, closed, &st, 0), 0);
	mfs_io_set_ops(NULL);
	/* the real call refuses an existing name too */
	CU_ASSERT_EQUAL(mfs_rename_noreplace(dirfd_, "rn-b", dirfd_, "rn-c"), -EEXIST);
}

static CU_TestInfo tests[] = {
	{"replace_file, read_file, fsync_dir", test_replace_file},
	{"publish_file, publish_path", test_publish_file},
	{"parse_size", test_parse_size},
	{"uuid format, parse, generate", test_uuid},
	{"pwritev_all, pread_all, clocks", test_rw_all_and_time},
	{"log facade", test_log},
	{"fault: pwritev ENOSPC cut back, the writer goes on", test_fault_pwritev_enospc},
	{"fault: pwritev EIO breaks the writer", test_fault_pwritev_eio},
	{"fault: half a record then EIO", test_fault_partial_then_eio},
	{"fault: short writes and EINTR retried", test_fault_short_writes_and_eintr},
	{"fault: pwritev writing 0 bytes", test_fault_zero_write},
	{"fault: fdatasync EIO", test_fault_fdatasync},
	{"fault: fallocate ENOSPC / EOPNOTSUPP", test_fault_fallocate},
	{"fault: pread EIO, EINTR, short reads", test_fault_pread},
	{"drop_clean_cache: clean pages dropped, dirty kept", test_drop_clean_cache},
	{"fault: seal then close, a failed seal", test_fault_seal_then_close},
	{"run_jobs: at once, each once, first error; fsync_dirs", test_run_jobs},
	{"rename_noreplace: link+unlink where the flag is refused", test_rename_noreplace_fallback},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_io[] = {
	{"io", suite_init, suite_cleanup, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
