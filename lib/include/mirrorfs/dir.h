/* SPDX-License-Identifier: MIT */
/*
 * dir.h - opening, listing and removing a folder: the one folder lister
 * and the one recursive remove.
 */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Open folder @name of @dirfd ("." for @dirfd itself, with an offset of
 * its own; symlinks are not followed) for listing. Returns 0 and the
 * stream in *@ret, or -errno.
 */
int mfs_dir_open(int dirfd, const char *name, DIR **ret);

/*
 * The entry names of folder @name of @dirfd, "." and ".." left out, and
 * those @keep (when not NULL) says no to, sorted (strcmp). Returns 0 with
 * a malloc'd array of malloc'd names in *@ret (free with
 * mfs_dir_names_free()) and its length in *@ret_n, or -errno (a read error
 * of the folder included).
 */
int mfs_dir_list(int dirfd, const char *name, bool (*keep)(const char *name, void *arg), void *arg,
		 char ***ret, size_t *ret_n);

/* Free what mfs_dir_list() returned; returns NULL. */
char **mfs_dir_names_free(char **names, size_t n);

/*
 * Remove whatever @name in @dfd is (never following a symlink); a folder
 * with everything below it, at any depth: iterative, with two folders open
 * at a time, so a tree deeper than the fd limit or PATH_MAX goes too; a
 * folder moved away meanwhile stops it (-ESTALE). A missing @name is not
 * an error. Returns 0 or the first -errno (it stops there).
 */
int mfs_dir_remove_tree(int dfd, const char *name);
