/* SPDX-License-Identifier: MIT */
/*
 * guard.c - what the commands that write a data folder or a mirror's state
 * folder (rejoin, promote, restore --to) check first: the folder is not a
 * mirrorfs mount (the data folder behind it is meant), and no other
 * program holds it (lib/pidlock.c: mirrorfs, mirrord, another mirrorctl).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/mountinfo.h"
#include "mirrorfs/pidlock.h"

int cli_refuse_mount(const char *path)
{
	char real[PATH_MAX], mnt[PATH_MAX];

	if (!realpath(path, real))
		return 0; /* not there yet (restore --to creates it) */
	if (mfs_mirrorfs_mount_of(real, mnt, sizeof(mnt)) != 1)
		return 0;
	return cli_fail("refusing '%s': it is on the mirrorfs mount '%s'; give the data folder "
			"behind the mount (and stop the mount first)",
			path, mnt);
}

/* Take lock @name of @dirfd (the data folder's when @data) or say who holds it. */
static int take(const char *path, int dirfd, bool data, const char *role)
{
	struct mfs_pidlock_holder h;
	char who[64];
	int r;

	r = data ? mfs_pidlock_take_data(dirfd, role, &h)
		 : mfs_pidlock_take(dirfd, MFS_PIDLOCK_STATE, role, &h);
	if (r == -EBUSY) {
		cli_fail("%s'%s' is in use by %s: stop it first", data ? "" : "state folder ", path,
			 mfs_pidlock_describe(&h, who, sizeof(who)));
		return -1;
	}
	if (r < 0) {
		errno = -r;
		cli_fail("cannot lock '%s/%s': %m", path,
			 data ? MFS_PIDLOCK_DATA : MFS_PIDLOCK_STATE);
		return -1;
	}
	return r;
}

int cli_lock_data(const char *path, int datafd, const char *role)
{
	return take(path, datafd, true, role);
}

int cli_lock_state(const char *path, int statefd, const char *role)
{
	return take(path, statefd, false, role);
}

int cli_probe_data(const char *path, int datafd)
{
	struct mfs_pidlock_holder h;
	char who[64];

	if (mfs_pidlock_probe(datafd, MFS_PIDLOCK_DATA, &h) == -EBUSY)
		return cli_fail("'%s' is in use by %s: stop it first", path,
				mfs_pidlock_describe(&h, who, sizeof(who)));
	return 0;
}

int cli_probe_data_tree(const char *path)
{
	char real[PATH_MAX + 1];
	_cleanup_free_ char *copy = strdup(path);
	char *slash;

	if (!copy)
		return cli_fail("out of memory");
	/* the nearest folder that exists: --to may be created yet */
	while (!realpath(copy, real)) {
		slash = strrchr(copy, '/');
		if (!slash || slash == copy)
			return 0;
		*slash = 0;
	}
	for (;;) {
		_cleanup_close_ int fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd >= 0 && cli_probe_data(real, fd))
			return 1;
		slash = strrchr(real, '/');
		if (!slash || slash == real)
			return 0;
		*slash = 0;
	}
}

/* The LSN in a snapshot's meta file ("lsn=N"), 0 if unreadable. */
static uint64_t snapshot_lsn(int storefd, const char *name)
{
	_cleanup_free_ char *text = NULL;
	char path[300];
	const char *p;

	snprintf(path, sizeof(path), "%s/meta", name);
	if (mfs_read_file(storefd, path, 4096, &text, NULL) < 0)
		return 0;
	p = strstr(text, "\nlsn=");
	return p ? strtoull(p + 5, NULL, 10) : 0;
}

int cli_drop_snapshots(const char *data, int datafd, const char *why)
{
	_cleanup_closedir_ DIR *d = NULL;
	_cleanup_close_ int storefd = -EBADF;
	struct dirent *de;
	int r = 0;

	storefd =
		openat(datafd, MFS_SNAPSHOT_STORE, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (storefd < 0)
		return errno == ENOENT
			       ? 0
			       : cli_fail("cannot open '%s/" MFS_SNAPSHOT_STORE "': %m", data);
	r = mfs_dir_open(storefd, ".", &d);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot list '%s/" MFS_SNAPSHOT_STORE "': %m", data);
	}
	while ((de = mfs_readdir(d)) && r == 0) {
		if (de->d_name[0] != '.')
			cli_warn("removing snapshot '%s' (LSN %" PRIu64 ") of '%s': %s", de->d_name,
				 snapshot_lsn(storefd, de->d_name), data, why);
		r = mfs_rm_tree(storefd, de->d_name);
	}
	if (r == 0 && unlinkat(datafd, MFS_SNAPSHOT_STORE, AT_REMOVEDIR) < 0 && errno != ENOENT)
		r = -errno;
	if (r == 0)
		r = mfs_fsync_dir(datafd, MFS_CTL_DIR);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot remove the snapshots of '%s': %m", data);
	}
	return 0;
}
