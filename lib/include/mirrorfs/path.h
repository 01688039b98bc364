/* SPDX-License-Identifier: MIT */
/*
 * path.h - safe resolution of record paths beneath a root directory.
 */
#pragma once

#include <stdbool.h>

/* The reserved top-level name: unreachable by any path (see path.c). */
#define MFS_PATH_RESERVED ".mirrorfs"

/*
 * Whether @path is acceptable in a record: non-empty, relative, no "." or
 * ".." components, no empty components (no "//", no trailing "/"), every
 * component <= 255 bytes, total <= MFS_PATH_MAX.
 */
bool mfs_path_is_valid(const char *path);

/*
 * Open the parent directory of @path beneath @rootfd (openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS; where openat2 is missing, a
 * component-by-component walk with O_NOFOLLOW). Returns the new fd
 * (O_PATH | O_DIRECTORY) and points *ret_base at the last component of
 * @path, or -errno (-EINVAL invalid path, -EXDEV escape, or the reserved
 * folder reached by name or through a symlink).
 */
int mfs_path_open_parent(int rootfd, const char *path, const char **ret_base);

/*
 * openat2(rootfd, path, flags, mode) with RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS and O_NOFOLLOW for the last component, the
 * reserved folder refused as in mfs_path_open_parent().
 * Returns fd or -errno.
 */
int mfs_path_open(int rootfd, const char *path, int flags, unsigned mode);

/*
 * Tests only: force the component walk used where openat2 is missing
 * (true), or go back to openat2 (false).
 */
void mfs_path_set_force_walk(bool on);
