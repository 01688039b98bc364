/* SPDX-License-Identifier: MIT */
/*
 * io.h - I/O helpers: full reads/writes with EINTR loops, durable file
 * replacement, directory fsync, and an ops table for fault injection.
 */
#pragma once

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Syscalls the library's durable paths go through; tests swap them. */
struct mfs_io_ops {
	ssize_t (*pwritev)(int fd, const struct iovec *iov, int cnt, off_t off);
	ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
	int (*fdatasync)(int fd);
	int (*fallocate)(int fd, int mode, off_t off, off_t len);
	int (*renameat2)(int odir, const char *old, int ndir, const char *new, unsigned flags);
};

extern const struct mfs_io_ops mfs_io_default_ops;
/* The ops in force (default: mfs_io_default_ops). */
extern const struct mfs_io_ops *mfs_io;
void mfs_io_set_ops(const struct mfs_io_ops *ops);

/* Write all of iov at off (loops over short writes and EINTR). Returns 0 or -errno. */
int mfs_pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off);
int mfs_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* Read up to len bytes at off; returns bytes read (< len only at EOF) or -errno. */
ssize_t mfs_pread_all(int fd, void *buf, size_t len, uint64_t off);
int mfs_write_all(int fd, const void *buf, size_t len);
/*
 * Copy @len bytes at @in_off of @in to @out_off of @out: in the kernel
 * (copy_file_range: no pass through this process's memory), or through a
 * buffer where the kernel cannot copy between these two files. Returns 0,
 * -EIO if @in ends before, or -errno.
 */
int mfs_copy_range_all(int in, uint64_t in_off, int out, uint64_t out_off, size_t len);

/*
 * Rename @old in @odir to @new in @ndir, failing with -EEXIST if @new
 * exists: renameat2(RENAME_NOREPLACE), or where the file system refuses
 * that flag (EINVAL: some FUSE-based and network file systems), a hard
 * link to the new name then removal of the old one (a crash between the
 * two leaves both names of one file; callers recover from that). Returns 0
 * or -errno.
 */
int mfs_rename_noreplace(int odir, const char *old, int ndir, const char *new);

/* fsync a directory by fd or by path relative to dirfd. Returns 0 or -errno. */
int mfs_fsync_dir(int dirfd, const char *path);

/*
 * Run independent jobs at once, on up to MFS_JOBS_THREADS threads (the
 * caller is one of them), and wait for all; each job's result is in its
 * @r. Where a thread cannot be started, fewer run (at worst the caller
 * runs them all in turn). Returns the first failed job's result, or 0.
 *
 * For fsyncs that need no order among them: each one ends with a disk
 * cache flush, and the block layer merges the flushes of fsyncs in
 * flight together, so N of them at once cost about one or two flushes
 * where N in turn cost N (and, on a busy disk, stall every other I/O N
 * times).
 */
#define MFS_JOBS_THREADS 8
struct mfs_job {
	int (*fn)(void *arg);
	void *arg;
	int r;
};
int mfs_run_jobs(struct mfs_job *jobs, size_t n);

/* mfs_fsync_dir() every folder of @dirfds at once (mfs_run_jobs; an
 * O_PATH fd will do). Returns the first error or 0. */
int mfs_fsync_dirs(const int *dirfds, size_t n);

/*
 * Drop @fd's page cache if none of it is dirty or under writeback (as
 * cachestat(2) tells, Linux 6.5+): dropping dirty pages would start
 * writing them. Returns 1 dropped, 0 left (dirty, or no cachestat), -errno.
 */
int mfs_drop_clean_cache(int fd);

/* The next entry of @d other than "." and "..", or NULL at the end. */
struct dirent *mfs_readdir(DIR *d);
/*
 * Remove @name in @dirfd and everything below it, never following a
 * symlink; a missing @name is not an error: mfs_dir_remove_tree()
 * (mirrorfs/dir.h), under the name fs/ knows. Returns 0 or the first
 * -errno.
 */
int mfs_rm_tree(int dirfd, const char *name);

/*
 * Replace @name in @dirfd with @len bytes of @data durably: write a temp
 * file, fsync it, renameat over @name, fsync the directory.
 * Returns 0 or -errno.
 */
int mfs_replace_file(int dirfd, const char *name, const void *data, size_t len, unsigned mode);

/*
 * Replace @name in @dirfd with @len bytes of @data for readers: a temp
 * file, then renameat over @name, nothing fsynced. A reader sees the old
 * file or the new one, never half of one; after a crash either may be
 * there, or an empty one. For what is rewritten often and regenerated
 * (status and metrics files). Returns 0 or -errno.
 */
int mfs_publish_file(int dirfd, const char *name, const void *data, size_t len, unsigned mode);

/* mfs_publish_file() by path: the folder of @path, then its last part. */
int mfs_publish_path(const char *path, const void *data, size_t len, unsigned mode);

/* Read a whole small file (up to @max bytes) into a NUL-terminated malloc'd buffer. */
int mfs_read_file(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len);

/* Current CLOCK_REALTIME in ns. */
uint64_t mfs_now_ns(void);
/* CLOCK_MONOTONIC in ns. */
uint64_t mfs_mono_ns(void);

/* UUIDs: random v4, and text form (36 chars + NUL). */
int mfs_uuid_generate(uint8_t out[16]);
void mfs_uuid_format(const uint8_t uuid[16], char out[37]);
int mfs_uuid_parse(const char *s, uint8_t out[16]);

/* Parse "64M", "1G", "4096": returns 0 and bytes, or -EINVAL. */
int mfs_parse_size(const char *s, uint64_t *ret);
