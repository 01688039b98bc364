/* SPDX-License-Identifier: MIT */
/*
 * guard.c - what the commands that write a data folder or a mirror's state
 * folder (rejoin, promote, restore --to) check first: the folder is not a
 * mirrorfs mount (the data folder behind it is meant), and no other
 * program holds it (lib/pidlock.c: mirrorfs, mirrord, another mirrorctl).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
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
			"behind the mount (and stop the mount first)", path, mnt);
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
		cli_fail("cannot lock '%s/%s': %m", path, data ? MFS_PIDLOCK_DATA : MFS_PIDLOCK_STATE);
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
