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
 */
#include "mirrorfs/path.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
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

/* openat2 beneath @rootfd; -ENOSYS when the kernel lacks it. */
static int beneath_openat2(int rootfd, const char *path, int flags, unsigned mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
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

int mfs_path_open_parent(int rootfd, const char *path, const char **ret_base)
{
	const char *slash;
	char dir[MFS_PATH_MAX + 1];
	size_t dlen;
	int fd;

	if (!mfs_path_is_valid(path))
		return -EINVAL;
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
	fd = beneath_openat2(rootfd, dir, O_PATH | O_DIRECTORY, 0);
	if (fd == -ENOSYS)
		fd = walk_dirs(rootfd, dir, dlen);
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
	fd = beneath_openat2(rootfd, path, flags | O_NOFOLLOW, mode);
	if (fd != -ENOSYS)
		return fd;
	parent = mfs_path_open_parent(rootfd, path, &base);
	if (parent < 0)
		return parent;
	fd = openat(parent, base, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}
