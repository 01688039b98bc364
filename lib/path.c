/* SPDX-License-Identifier: MIT */
/*
 * path.c - safe resolution of record paths beneath a root directory.
 *
 * A record path is hostile until proven otherwise. It is first checked for
 * syntax (mfs_path_is_valid: relative, no "."/"..", no empty component),
 * then resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), which
 * refuses (-EXDEV) anything that would leave the root, including through a
 * symlink. Kernels without openat2 (-ENOSYS, detected once at run time) get
 * a component-by-component walk with O_NOFOLLOW: stricter, since it refuses
 * every symlink in the path, not only those that escape.
 *
 * The last component is never followed: callers operate on it with the
 * *at() calls and AT_SYMLINK_NOFOLLOW, or open it with O_NOFOLLOW.
 *
 * The reserved top-level name ".mirrorfs" (a rejoined data folder keeps
 * its journal state there) is unreachable by any path: refused by name,
 * and, where a path goes through a symlink (which a primary never
 * journals: its paths are the real ones), the folder the symlinks led to
 * is checked, by device and inode, for being the root's .mirrorfs or below
 * it, and a last component ".mirrorfs" in the root refused (-EXDEV, as an
 * escape). Paths without a symlink take one openat2(RESOLVE_NO_SYMLINKS),
 * as before; only a path that meets a symlink pays for the check.
 */
#include "mirrorfs/path.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "mirrorfs/format.h"
#include "mirrorfs/macro.h"

/* 0 = not tried yet, 1 = openat2 works, -1 = missing (walk instead) */
static atomic_int openat2_state;
static atomic_bool force_walk;

void mfs_path_set_force_walk(bool on)
{
	atomic_store(&force_walk, on);
}

bool mfs_path_is_valid(const char *path)
{
	size_t total = 0, comp = 0;
	const char *p;

	if (!path || !path[0] || path[0] == '/')
		return false;
	for (p = path;; p++) {
		if (*p == '/' || *p == '\0') {
			const char *start = p - comp;

			if (comp == 0 || comp > MFS_NAME_MAX)
				return false;
			if ((comp == 1 && start[0] == '.') ||
			    (comp == 2 && start[0] == '.' && start[1] == '.'))
				return false;
			if (*p == '\0')
				break;
			comp = 0;
		} else {
			comp++;
		}
		if (++total > MFS_PATH_MAX)
			return false;
	}
	return true;
}

/* Whether @path names the reserved folder or something in it, by name. */
static bool is_reserved(const char *path)
{
	size_t n = strlen(MFS_PATH_RESERVED);

	return strncmp(path, MFS_PATH_RESERVED, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/*
 * openat2 beneath @rootfd (@nosym: and through no symlink at all); -ENOSYS
 * when the kernel lacks it.
 */
static int beneath_openat2(int rootfd, const char *path, int flags, unsigned mode, bool nosym)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (nosym ? RESOLVE_NO_SYMLINKS : 0),
	};
	int state = atomic_load_explicit(&openat2_state, memory_order_relaxed);
	long fd;

	if (state < 0 || atomic_load_explicit(&force_walk, memory_order_relaxed))
		return -ENOSYS;
	do
		fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
	while (fd < 0 && errno == EINTR);
	if (fd < 0 && errno == ENOSYS) {
		atomic_store(&openat2_state, -1);
		return -ENOSYS;
	}
	if (state == 0 && fd >= 0)
		atomic_store(&openat2_state, 1);
	return fd < 0 ? -errno : (int)fd;
}

/*
 * Walk the first @len bytes of @path (directory components only) from
 * @rootfd, refusing every symlink. Returns an O_PATH directory fd or -errno.
 */
static int walk_dirs(int rootfd, const char *path, size_t len)
{
	_cleanup_close_ int cur = -EBADF;
	char name[MFS_NAME_MAX + 1];
	size_t i = 0;

	cur = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	while (i < len) {
		size_t n = strcspn(path + i, "/");
		int next;

		if (n > len - i)
			n = len - i;
		if (n == 0 || n > MFS_NAME_MAX)
			return -EINVAL;
		memcpy(name, path + i, n);
		name[n] = '\0';
		next = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return errno == ELOOP ? -EXDEV : -errno;
		closep(&cur);
		cur = next;
		i += n + 1;
	}
	return TAKE_FD(cur);
}

/*
 * Directory @dfd was reached through a symlink: refuse (-EXDEV) if it is
 * the root's reserved folder or below it, walking up ".." to the root.
 */
static int check_not_reserved(int rootfd, int dfd)
{
	_cleanup_close_ int cur = -EBADF;
	struct stat root, res, st;

	if (fstat(rootfd, &root) < 0)
		return -errno;
	if (fstatat(rootfd, MFS_PATH_RESERVED, &res, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(res.st_mode))
		return 0;
	cur = openat(dfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	for (unsigned depth = 0; depth <= MFS_PATH_MAX; depth++) {
		int up;

		if (fstat(cur, &st) < 0)
			return -errno;
		if (st.st_dev == res.st_dev && st.st_ino == res.st_ino)
			return -EXDEV;
		if (st.st_dev == root.st_dev && st.st_ino == root.st_ino)
			return 0;
		up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (up < 0)
			return -errno;
		closep(&cur);
		cur = up;
	}
	return -EXDEV; /* not below the root any more (moved meanwhile) */
}

/* @dfd is @path's parent, reached through a symlink: the reserved checks. */
static int check_resolved_parent(int rootfd, int dfd, const char *base)
{
	struct stat root, st;
	int e = check_not_reserved(rootfd, dfd);

	if (e < 0 || strcmp(base, MFS_PATH_RESERVED) != 0)
		return e;
	if (fstat(rootfd, &root) < 0 || fstat(dfd, &st) < 0)
		return -errno;
	return st.st_dev == root.st_dev && st.st_ino == root.st_ino ? -EXDEV : 0;
}

/* The parent folder @dir (@dlen bytes) of @base, beneath @rootfd, reserved checks done. */
static int open_dir_checked(int rootfd, const char *dir, size_t dlen, const char *base)
{
	_cleanup_close_ int fd = -EBADF;
	int e;

	fd = beneath_openat2(rootfd, dir, O_PATH | O_DIRECTORY, 0, true);
	if (fd == -ENOSYS)
		return walk_dirs(rootfd, dir, dlen); /* refuses every symlink */
	if (fd != -ELOOP)
		return fd < 0 ? fd : TAKE_FD(fd);
	fd = beneath_openat2(rootfd, dir, O_PATH | O_DIRECTORY, 0, false);
	if (fd < 0)
		return fd;
	e = check_resolved_parent(rootfd, fd, base);
	return e < 0 ? e : TAKE_FD(fd);
}

int mfs_path_open_parent(int rootfd, const char *path, const char **ret_base)
{
	const char *slash;
	char dir[MFS_PATH_MAX + 1];
	size_t dlen;
	int fd;

	if (!mfs_path_is_valid(path))
		return -EINVAL;
	if (is_reserved(path))
		return -EXDEV;
	slash = strrchr(path, '/');
	if (!slash) {
		fd = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		*ret_base = path;
		return fd;
	}
	dlen = (size_t)(slash - path);
	memcpy(dir, path, dlen);
	dir[dlen] = '\0';
	fd = open_dir_checked(rootfd, dir, dlen, slash + 1);
	if (fd < 0)
		return fd;
	*ret_base = slash + 1;
	return fd;
}

int mfs_path_open(int rootfd, const char *path, int flags, unsigned mode)
{
	_cleanup_close_ int parent = -EBADF;
	const char *base;
	int fd;

	if (!mfs_path_is_valid(path))
		return -EINVAL;
	if (is_reserved(path))
		return -EXDEV;
	fd = beneath_openat2(rootfd, path, flags | O_NOFOLLOW, mode, true);
	if (fd != -ENOSYS && fd != -ELOOP)
		return fd;
	/* no openat2, or a symlink on the way (or last): through the checked parent */
	parent = mfs_path_open_parent(rootfd, path, &base);
	if (parent < 0)
		return parent;
	fd = openat(parent, base, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}
