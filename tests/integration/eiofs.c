/* SPDX-License-Identifier: MIT */
/*
 * eiofs.c - test helper: a read-only FUSE view of one folder whose files
 * cannot be read past a given offset, like a disk with bad sectors.
 *
 * usage: eiofs SRCDIR FAIL_AT MOUNTPOINT [FUSE options...]
 *
 * Lists, stats and opens the files of SRCDIR (flat: no subfolders) with
 * their real sizes; a read that reaches byte FAIL_AT or beyond of any file
 * fails with EIO, reads below it return the file's bytes. Runs in the
 * foreground, single-threaded; stop it by unmounting (or SIGTERM).
 */
#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int src_fd = -1;
static off_t fail_at;

/* "/name" -> "name"; "/" -> "." */
static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

static int e_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	if (fstatat(src_fd, rel(path), st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	st->st_mode &= ~0222; /* read-only view */
	return 0;
}

static int e_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct dirent *de;
	DIR *d;
	int fd;

	(void)off;
	(void)fi;
	(void)flags;
	if (strcmp(path, "/") != 0)
		return -ENOTDIR;
	fd = openat(src_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	while ((de = readdir(d)))
		if (fill(buf, de->d_name, NULL, 0, 0))
			break;
	closedir(d);
	return 0;
}

static int e_open(const char *path, struct fuse_file_info *fi)
{
	int fd;

	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	fd = openat(src_fd, rel(path), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int e_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	if (off + (off_t)size > fail_at)
		return -EIO;
	n = pread((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int e_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static const struct fuse_operations ops = {
	.getattr = e_getattr,
	.readdir = e_readdir,
	.open = e_open,
	.read = e_read,
	.release = e_release,
};

int main(int argc, char **argv)
{
	static char fg[] = "-f", single[] = "-s";
	char *args[64];
	int n = 0;

	if (argc < 4 || argc > 60) {
		fprintf(stderr, "usage: eiofs SRCDIR FAIL_AT MOUNTPOINT [FUSE options...]\n");
		return 2;
	}
	src_fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src_fd < 0) {
		perror(argv[1]);
		return 1;
	}
	fail_at = (off_t)strtoll(argv[2], NULL, 0);
	args[n++] = argv[0];
	args[n++] = fg;
	args[n++] = single;
	for (int i = 3; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	return fuse_main(n, args, &ops, NULL);
}
