/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - the commands written to .mirrorfs/ctl (protocol in
 * mirrorfs/ctl.h): one dispatcher for rotate, checkpoint, status, lock and
 * unlock (lock.c), and snapshot (snap.c). Every reply line is written by
 * lib's mfs_ctl_ok/mfs_ctl_err/mfs_ctl_errno, here and in the modules.
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

static int ctl_journal(struct fs *fs, const char *cmd, char **ret)
{
	char name[MFS_SEG_NAME_LEN + 1];
	uint64_t lsn;
	int r;

	if (!strcmp(cmd, "rotate")) {
		r = fs_journal_rotate(fs, name);
		if (r == 0)
			return name[0] ? mfs_ctl_ok(ret, "%s", name) : mfs_ctl_ok(ret, NULL);
	} else if (!strcmp(cmd, "checkpoint")) {
		r = fs_journal_checkpoint(fs, &lsn);
		if (r == 0)
			return mfs_ctl_ok(ret, "%" PRIu64, lsn);
	} else {
		_cleanup_free_ char *json = NULL;
		r = fs_status_json(fs, &json);
		if (r == 0) {
			size_t n = strlen(json);
			if (n && json[n - 1] == '\n')
				json[n - 1] = 0; /* the reply's own newline ends it */
			return mfs_ctl_ok(ret, "%s", json);
		}
	}
	return mfs_ctl_errno(ret, -r, NULL);
}

int fs_ctl_exec(struct fs *fs, struct fs_file *f, const char *cmd, char **ret)
{
	if (!strncmp(cmd, "lock", 4) || !strcmp(cmd, "unlock"))
		return fs_lock_ctl(fs, f, cmd, ret);
	if (!strcmp(cmd, "rotate") || !strcmp(cmd, "checkpoint") || !strcmp(cmd, "status"))
		return ctl_journal(fs, cmd, ret);
	if (!strncmp(cmd, "snapshot", 8) && (!cmd[8] || cmd[8] == ' '))
		return fs_snap_ctl(fs, cmd, ret);
	return mfs_ctl_err(ret, EINVAL, "unknown command '%s'", cmd);
}
