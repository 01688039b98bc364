/* SPDX-License-Identifier: MIT */
/*
 * pidlock.c - one lock per role on a folder, naming the holder's PID.
 *
 * The lock is an OFD lock on the whole file (F_OFD_SETLK): it belongs to
 * the open file description, so it is inherited across fork and dropped
 * when the last fd closes, whatever the process that took it. A probe asks
 * F_OFD_GETLK on a fresh read-only fd and never takes anything, so it
 * cannot make a holder that is starting at that instant fail. The PID in
 * the file is only for messages: whether the lock is held is the kernel's
 * answer, never the file's contents.
 */
#include "mirrorfs/pidlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

/* Parse "PID ROLE\n" of the lock file open at @fd. */
static void read_holder(int fd, struct mfs_pidlock_holder *h)
{
	char buf[64] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	char *end, *nl;
	long pid;

	*h = (struct mfs_pidlock_holder){0};
	if (n <= 0)
		return;
	buf[n] = 0;
	pid = strtol(buf, &end, 10);
	if (end == buf || pid <= 0 || *end != ' ')
		return;
	h->pid = (pid_t)pid;
	nl = strchr(end + 1, '\n');
	if (nl)
		*nl = 0;
	snprintf(h->role, sizeof(h->role), "%s", end + 1);
}

int mfs_pidlock_update(int fd, const char *role)
{
	char buf[64];
	int len = snprintf(buf, sizeof(buf), "%ld %s\n", (long)getpid(), role);

	if (len < 0 || (size_t)len >= sizeof(buf))
		return -EINVAL;
	if (ftruncate(fd, 0) < 0)
		return -errno;
	return mfs_pwrite_all(fd, buf, (size_t)len, 0);
}

int mfs_pidlock_take(int dirfd, const char *name, const char *role,
		     struct mfs_pidlock_holder *ret_holder)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	_cleanup_close_ int fd = -EBADF;
	int r;

	fd = openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		r = -errno;
		if (r != -EAGAIN && r != -EACCES)
			return r;
		if (ret_holder)
			read_holder(fd, ret_holder);
		return -EBUSY;
	}
	r = mfs_pidlock_update(fd, role);
	if (r < 0)
		return r;
	return TAKE_FD(fd);
}

int mfs_pidlock_take_data(int datafd, const char *role, struct mfs_pidlock_holder *ret_holder)
{
	if (mkdirat(datafd, ".mirrorfs", 0700) < 0 && errno != EEXIST)
		return -errno;
	return mfs_pidlock_take(datafd, MFS_PIDLOCK_DATA, role, ret_holder);
}

int mfs_pidlock_probe(int dirfd, const char *name, struct mfs_pidlock_holder *ret_holder)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	_cleanup_close_ int fd = -EBADF;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return -errno;
	if (fl.l_type == F_UNLCK)
		return 0;
	if (ret_holder)
		read_holder(fd, ret_holder);
	return -EBUSY;
}

const char *mfs_pidlock_describe(const struct mfs_pidlock_holder *h, char *buf, size_t len)
{
	if (h->pid > 0)
		snprintf(buf, len, "%s (pid %ld)", h->role[0] ? h->role : "a process",
			 (long)h->pid);
	else
		snprintf(buf, len, "another process");
	return buf;
}
