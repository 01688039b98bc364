/* SPDX-License-Identifier: MIT */
/*
 * mountinfo.h - is a path on a mirrorfs mount? (/proc/self/mountinfo)
 */
#pragma once

#include <stddef.h>

/* The file system type of a mirrorfs mount in /proc/self/mountinfo. */
#define MFS_FSTYPE "fuse.mirrorfs"

/*
 * Whether the canonical path @path (realpath) is a mirrorfs mount point or
 * lies beneath one. Returns 1 (and the innermost such mount point in
 * @ret_mnt, when not NULL) or 0, or -errno when mountinfo cannot be read.
 */
int mfs_mirrorfs_mount_of(const char *path, char *ret_mnt, size_t len);
