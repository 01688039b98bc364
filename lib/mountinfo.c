/* SPDX-License-Identifier: MIT */
/*
 * mountinfo.c - find the mirrorfs mount a path lies on.
 *
 * Reads /proc/self/mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
 * [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS", the mount point with blanks
 * and backslashes escaped as octal (\040). The innermost mount covering
 * the path decides: a folder on a plain filesystem mounted beneath a
 * mirrorfs mount is not on mirrorfs.
 */
#include "mirrorfs/mountinfo.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirrorfs/macro.h"

/* Undo mountinfo's octal escapes in place. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = 0;
}

static bool covers(const char *mnt, const char *path)
{
	size_t n = strlen(mnt);

	if (!strcmp(mnt, "/"))
		return true;
	return !strncmp(path, mnt, n) && (path[n] == 0 || path[n] == '/');
}

/* Mount point and type of one mountinfo line, in place. Returns false if malformed. */
static bool parse_line(char *line, char **ret_mnt, char **ret_type)
{
	char *save = NULL, *tok, *mnt = NULL;
	int field = 0;
	bool dash = false;

	for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		if (++field == 5)
			mnt = tok;
		else if (field > 6 && !dash && !strcmp(tok, "-"))
			dash = true;
		else if (dash) {
			if (!mnt)
				return false;
			unescape(mnt);
			*ret_mnt = mnt;
			*ret_type = tok;
			return true;
		}
	}
	return false;
}

int mfs_mirrorfs_mount_of(const char *path, char *ret_mnt, size_t len)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *mnt, *type;
	size_t cap = 0, best = 0;
	bool found = false;

	if (!f)
		return -errno;
	/* later lines are later mounts: the last covering mount with the longest path wins */
	while (getline(&line, &cap, f) > 0) {
		if (!parse_line(line, &mnt, &type) || !covers(mnt, path) || strlen(mnt) < best)
			continue;
		best = strlen(mnt);
		found = !strcmp(type, MFS_FSTYPE);
		if (found && ret_mnt)
			snprintf(ret_mnt, len, "%s", mnt);
	}
	free(line);
	return found ? 1 : 0;
}
