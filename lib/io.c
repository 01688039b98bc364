/* SPDX-License-Identifier: MIT */
/*
 * io.c - full reads and writes, durable replacement of small files, time,
 * UUIDs and size parsing.
 *
 * The syscalls on the journal's durable path go through mfs_io (an ops
 * table) so that unit tests can inject EIO, ENOSPC and short writes. EINTR
 * and short-write loops live here and nowhere else.
 */
#include "mirrorfs/io.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mirrorfs/dir.h"
#include "mirrorfs/macro.h"

static ssize_t def_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return pwritev(fd, iov, cnt, off);
}

static ssize_t def_pread(int fd, void *buf, size_t len, off_t off)
{
	return pread(fd, buf, len, off);
}

static int def_fdatasync(int fd)
{
	return fdatasync(fd);
}

static int def_fallocate(int fd, int mode, off_t off, off_t len)
{
	return fallocate(fd, mode, off, len);
}

static int def_renameat2(int odir, const char *old, int ndir, const char *new, unsigned flags)
{
	return renameat2(odir, old, ndir, new, flags);
}

const struct mfs_io_ops mfs_io_default_ops = {
	.pwritev = def_pwritev,
	.pread = def_pread,
	.fdatasync = def_fdatasync,
	.fallocate = def_fallocate,
	.renameat2 = def_renameat2,
};

const struct mfs_io_ops *mfs_io = &mfs_io_default_ops;

void mfs_io_set_ops(const struct mfs_io_ops *ops)
{
	mfs_io = ops ? ops : &mfs_io_default_ops;
}

int mfs_pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt > 0) {
		ssize_t n = mfs_io->pwritev(fd, iov, cnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int mfs_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return mfs_pwritev_all(fd, &iov, 1, off);
}

ssize_t mfs_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = mfs_io->pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* The rest of a copy the kernel could not do, through a buffer. */
static int copy_by_buffer(int in, uint64_t in_off, int out, uint64_t out_off, size_t len)
{
	size_t chunk = MFS_MIN(len, (size_t)1 << 20);
	char *buf = malloc(chunk ? chunk : 1);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	while (r == 0 && len > 0) {
		size_t want = MFS_MIN(len, chunk);
		ssize_t n = mfs_pread_all(in, buf, want, in_off);

		if (n >= 0 && (size_t)n != want)
			n = -EIO; /* the source ends early */
		r = n < 0 ? (int)n : mfs_pwrite_all(out, buf, want, out_off);
		in_off += want;
		out_off += want;
		len -= want;
	}
	free(buf);
	return r;
}

int mfs_copy_range_all(int in, uint64_t in_off, int out, uint64_t out_off, size_t len)
{
	while (len > 0) {
		off_t io = (off_t)in_off, oo = (off_t)out_off;
		ssize_t n = copy_file_range(in, &io, out, &oo, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP &&
		    errno != ENOSYS)
			return -errno;
		if (n <= 0) /* not between these files, or the source ends: copy it here */
			return copy_by_buffer(in, in_off, out, out_off, len);
		in_off += (uint64_t)n;
		out_off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int mfs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct dirent *mfs_readdir(DIR *d)
{
	struct dirent *de;

	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			break;
	return de;
}

int mfs_rm_tree(int dirfd, const char *name)
{
	return mfs_dir_remove_tree(dirfd, name);
}

int mfs_rename_noreplace(int odir, const char *old, int ndir, const char *new)
{
	if (mfs_io->renameat2(odir, old, ndir, new, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (linkat(odir, old, ndir, new, 0) < 0)
		return -errno;
	return unlinkat(odir, old, 0) < 0 ? -errno : 0;
}

int mfs_fsync_dir(int dirfd, const char *path)
{
	_cleanup_close_ int fd = -EBADF;

	fd = openat(dirfd, path ? path : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

struct jobs_queue {
	struct mfs_job *jobs;
	size_t n;
	atomic_size_t next;
};

static void *jobs_worker(void *arg)
{
	struct jobs_queue *q = arg;

	for (size_t k; (k = atomic_fetch_add(&q->next, 1)) < q->n;)
		q->jobs[k].r = q->jobs[k].fn(q->jobs[k].arg);
	return NULL;
}

int mfs_run_jobs(struct mfs_job *jobs, size_t n)
{
	struct jobs_queue q = { .jobs = jobs, .n = n };
	pthread_t t[MFS_JOBS_THREADS - 1];
	size_t nt = 0;

	while (nt < ARRAY_SIZE(t) && nt + 1 < n && pthread_create(&t[nt], NULL, jobs_worker, &q) == 0)
		nt++;
	jobs_worker(&q);
	while (nt > 0)
		pthread_join(t[--nt], NULL);
	for (size_t k = 0; k < n; k++)
		if (jobs[k].r < 0)
			return jobs[k].r;
	return 0;
}

static int fsync_dir_job(void *arg)
{
	return mfs_fsync_dir(*(const int *)arg, NULL);
}

int mfs_fsync_dirs(const int *dirfds, size_t n)
{
	_cleanup_free_ struct mfs_job *jobs = calloc(n ? n : 1, sizeof(*jobs));

	if (!jobs)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++)
		jobs[k] = (struct mfs_job){ .fn = fsync_dir_job, .arg = (void *)(uintptr_t)&dirfds[k] };
	return mfs_run_jobs(jobs, n);
}

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same on every architecture (Linux 6.5) */
#endif

struct mfs_cachestat_range {
	uint64_t off, len;
};

struct mfs_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

int mfs_drop_clean_cache(int fd)
{
	static atomic_bool missing;
	struct mfs_cachestat_range range = { 0, 0 }; /* len 0: to the end */
	struct mfs_cachestat cs;
	int e;

	if (atomic_load_explicit(&missing, memory_order_relaxed))
		return 0;
	if (syscall(__NR_cachestat, fd, &range, &cs, 0) < 0) {
		if (errno != ENOSYS)
			return -errno;
		atomic_store_explicit(&missing, true, memory_order_relaxed);
		return 0;
	}
	if (cs.nr_dirty || cs.nr_writeback)
		return 0;
	if (cs.nr_cache == 0)
		return 1;
	e = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* returns the error number */
	return e ? -e : 1;
}

static int replace_file(int dirfd, const char *name, const void *data, size_t len, unsigned mode,
			bool durable)
{
	char tmp[PATH_MAX];
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	r = mfs_write_all(fd, data, len);
	if (r == 0 && durable && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlinkat(dirfd, tmp, 0);
		return r;
	}
	return durable ? mfs_fsync_dir(dirfd, NULL) : 0;
}

int mfs_replace_file(int dirfd, const char *name, const void *data, size_t len, unsigned mode)
{
	return replace_file(dirfd, name, data, len, mode, true);
}

int mfs_publish_file(int dirfd, const char *name, const void *data, size_t len, unsigned mode)
{
	return replace_file(dirfd, name, data, len, mode, false);
}

int mfs_publish_path(const char *path, const void *data, size_t len, unsigned mode)
{
	_cleanup_free_ char *dcopy = strdup(path), *bcopy = strdup(path);
	_cleanup_close_ int dirfd = -EBADF;

	if (!dcopy || !bcopy)
		return -ENOMEM;
	dirfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	return mfs_publish_file(dirfd, basename(bcopy), data, len, mode);
}

int mfs_read_file(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ char *buf = NULL;
	ssize_t n;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(max + 1);
	if (!buf)
		return -ENOMEM;
	n = mfs_pread_all(fd, buf, max + 1, 0);
	if (n < 0)
		return (int)n;
	if ((size_t)n > max)
		return -EFBIG;
	buf[n] = 0;
	if (ret_len)
		*ret_len = (size_t)n;
	*ret = TAKE_PTR(buf);
	return 0;
}

uint64_t mfs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mfs_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mfs_uuid_generate(uint8_t out[16])
{
	size_t done = 0;

	while (done < 16) {
		ssize_t n = getrandom(out + done, 16 - done, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	out[6] = (out[6] & 0x0f) | 0x40; /* version 4 */
	out[8] = (out[8] & 0x3f) | 0x80; /* RFC 4122 variant */
	return 0;
}

void mfs_uuid_format(const uint8_t uuid[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[uuid[i] >> 4];
		*o++ = hex[uuid[i] & 15];
	}
	*o = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int mfs_uuid_parse(const char *s, uint8_t out[16])
{
	uint8_t u[16];

	for (int i = 0; i < 16; i++) {
		int hi, lo;
		if (i == 4 || i == 6 || i == 8 || i == 10) {
			if (*s++ != '-')
				return -EINVAL;
		}
		hi = hexval(s[0]);
		lo = hi < 0 ? -1 : hexval(s[1]);
		if (lo < 0)
			return -EINVAL;
		u[i] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	if (*s && *s != '\n')
		return -EINVAL;
	memcpy(out, u, 16);
	return 0;
}

int mfs_parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 0:
		break;
	case 'K':
		mult = 1ull << 10;
		break;
	case 'M':
		mult = 1ull << 20;
		break;
	case 'G':
		mult = 1ull << 30;
		break;
	case 'T':
		mult = 1ull << 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (v > UINT64_MAX / mult)
		return -EINVAL;
	*ret = v * mult;
	return 0;
}
