/* SPDX-License-Identifier: MIT */
/*
 * places.c - refuse a DATADIR and MOUNTPOINT that cannot be meant.
 *
 * Checked before anything is created or mounted:
 *  - DATADIR in use (its lock held): already mounted, or a mirrord...;
 *  - DATADIR on a mirrorfs mount: mirrorfs would journal its own mount
 *    (stacking; or the two arguments swapped while the primary runs);
 *  - MOUNTPOINT on a mirrorfs mount: a second mount over a live one;
 *  - MOUNTPOINT held by a running program (its .mirrorfs/lock), or holding
 *    a data set (.mirrorfs/state) while DATADIR holds none: the two
 *    arguments are swapped, and mounting would hide the real data under a
 *    new, empty data set;
 *  - DATADIR empty while MOUNTPOINT is not: the same mistake with a
 *    database that was never mounted (mirrorfs would hide its files).
 * What cannot be told apart is let through: two empty folders, or a
 * DATADIR with files over a MOUNTPOINT with files (a mount over a
 * non-empty folder is allowed by FUSE).
 */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/mountinfo.h"
#include "mirrorfs/pidlock.h"

#define SWAPPED "(arguments swapped? usage: mirrorfs [-o opt,...] DATADIR MOUNTPOINT)"

/* Whether the folder @fd holds no entry at all. */
static bool dir_is_empty(int fd)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0 || !(d = fdopendir(dfd))) {
		if (dfd >= 0)
			close(dfd);
		return false;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			return false;
	return true;
}

static int check_not_on_mirrorfs(const char *what, const char *arg, const char *path)
{
	char mnt[PATH_MAX];
	int r = mfs_mirrorfs_mount_of(path, mnt, sizeof(mnt));

	if (r < 0) {
		log_warning_errno(r, "cannot read /proc/self/mountinfo, ignoring: %m");
		return 0;
	}
	if (r == 0)
		return 0;
	if (!strcmp(mnt, path))
		return log_error_errno(-EBUSY,
				       "%s '%s' is a mirrorfs mount: mirrorfs does not stack "
				       "on itself " SWAPPED,
				       what, arg);
	return log_error_errno(-EBUSY,
			       "%s '%s' is on the mirrorfs mount '%s': mirrorfs does not "
			       "stack on itself " SWAPPED,
			       what, arg, mnt);
}

/* DATADIR must not be mounted already, nor written by a mirrord, rejoin... */
static int check_data_free(const char *data_arg, const char *data)
{
	_cleanup_close_ int fd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct mfs_pidlock_holder h;
	char who[64];

	if (fd < 0 || mfs_pidlock_probe(fd, MFS_PIDLOCK_DATA, &h) != -EBUSY)
		return 0; /* what cannot be opened is reported later */
	return log_error_errno(-EBUSY, "'%s' is %sin use by %s", data_arg,
			       strcmp(h.role, "mirrorfs") ? "" : "already mounted: ",
			       mfs_pidlock_describe(&h, who, sizeof(who)));
}

/* MOUNTPOINT must not be a live or a former data folder while DATADIR is not. */
static int check_mountpoint(const char *data_arg, int data_fd, const char *mnt_arg, int mnt_fd)
{
	struct mfs_pidlock_holder h;
	char who[64];
	bool data_has = faccessat(data_fd, MFS_CTL_DIR "/state", F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	int r;

	r = mfs_pidlock_probe(mnt_fd, MFS_PIDLOCK_DATA, &h);
	if (r == -EBUSY)
		return log_error_errno(r, "mountpoint '%s' is a data folder in use by %s " SWAPPED,
				       mnt_arg, mfs_pidlock_describe(&h, who, sizeof(who)));
	if (!data_has && faccessat(mnt_fd, MFS_CTL_DIR "/state", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return log_error_errno(-EEXIST,
				       "mountpoint '%s' holds a mirrorfs data set "
				       "(.mirrorfs/state) and data folder '%s' does not " SWAPPED,
				       mnt_arg, data_arg);
	if (dir_is_empty(data_fd) && !dir_is_empty(mnt_fd))
		return log_error_errno(-EEXIST,
				       "data folder '%s' is empty and mountpoint '%s' is "
				       "not: mounting would hide its files " SWAPPED,
				       data_arg, mnt_arg);
	return 0;
}

int fs_check_places(const char *data_arg, const char *mnt_arg)
{
	char data[PATH_MAX], mnt[PATH_MAX];
	_cleanup_close_ int data_fd = -EBADF, mnt_fd = -EBADF;
	int r;

	if (!realpath(data_arg, data))
		return log_error_errno(-errno, "data folder '%s' cannot be used: %m", data_arg);
	if (!realpath(mnt_arg, mnt))
		return log_error_errno(-errno, "mountpoint '%s' cannot be used: %m", mnt_arg);
	r = check_data_free(data_arg, data);
	if (r == 0)
		r = check_not_on_mirrorfs("data folder", data_arg, data);
	if (r == 0)
		r = check_not_on_mirrorfs("mountpoint", mnt_arg, mnt);
	if (r < 0 || !strcmp(data, mnt)) /* a mount over its own data folder: nothing to swap */
		return r;
	data_fd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (data_fd < 0)
		return log_error_errno(-errno, "data folder '%s' cannot be opened: %m", data_arg);
	mnt_fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mnt_fd < 0)
		return log_error_errno(-errno, "mountpoint '%s' cannot be opened: %m", mnt_arg);
	return check_mountpoint(data_arg, data_fd, mnt_arg, mnt_fd);
}
