/* SPDX-License-Identifier: MIT */
/*
 * test_pidlock.c - unit tests of lib/pidlock and lib/mountinfo: a lock
 * names its holder, a second take and a probe see it (another open file
 * of the same process counts as another holder), it goes with its fd and
 * survives a fork, a probe creates nothing; / is not a mirrorfs mount.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mirrorfs/mountinfo.h"
#include "mirrorfs/pidlock.h"
#include "tests.h"

static char *tmp;
static int dirfd_ = -1;

static int setup(void)
{
	return test_tmpdir_open(&tmp, &dirfd_);
}

static int teardown(void)
{
	return test_tmpdir_close(&tmp, &dirfd_);
}

static void test_take_and_refuse(void)
{
	struct mfs_pidlock_holder h = {0};
	char want[64], who[64];
	int fd, r;

	fd = mfs_pidlock_take(dirfd_, "lock", "mirrord", &h);
	CU_ASSERT_FATAL(fd >= 0);
	r = mfs_pidlock_take(dirfd_, "lock", "mirrorfs", &h);
	CU_ASSERT_EQUAL(r, -EBUSY);
	CU_ASSERT_EQUAL(h.pid, getpid());
	CU_ASSERT_STRING_EQUAL(h.role, "mirrord");
	snprintf(want, sizeof(want), "mirrord (pid %ld)", (long)getpid());
	CU_ASSERT_STRING_EQUAL(mfs_pidlock_describe(&h, who, sizeof(who)), want);
	memset(&h, 0, sizeof(h));
	CU_ASSERT_EQUAL(mfs_pidlock_probe(dirfd_, "lock", &h), -EBUSY);
	CU_ASSERT_EQUAL(h.pid, getpid());
	close(fd);
	CU_ASSERT_EQUAL(mfs_pidlock_probe(dirfd_, "lock", &h), 0);
	fd = mfs_pidlock_take(dirfd_, "lock", "mirrorfs", &h);
	CU_ASSERT(fd >= 0);
	close(fd);
}

static void test_probe_creates_nothing(void)
{
	struct stat st;

	CU_ASSERT_EQUAL(mfs_pidlock_probe(dirfd_, "absent", NULL), 0);
	CU_ASSERT_EQUAL(fstatat(dirfd_, "absent", &st, 0), -1);
	CU_ASSERT_EQUAL(mfs_pidlock_probe(dirfd_, MFS_PIDLOCK_DATA, NULL), 0);
	CU_ASSERT_EQUAL(fstatat(dirfd_, ".mirrorfs", &st, 0), -1);
}

/* The lock survives a fork (daemonizing) and the child writes its PID. */
static void test_fork(void)
{
	struct mfs_pidlock_holder h = {0};
	int fd, up[2], down[2], status;
	char c = 0;
	pid_t pid;

	fd = mfs_pidlock_take_data(dirfd_, "mirrorfs", NULL);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(pipe(up) == 0 && pipe(down) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) { /* update, tell, wait to be told to exit */
		close(up[0]);
		close(down[1]);
		c = mfs_pidlock_update(fd, "mirrorfs") == 0;
		_exit(write(up[1], &c, 1) == 1 && read(down[0], &c, 1) >= 0 ? 0 : 1);
	}
	close(up[1]);
	close(down[0]);
	close(fd); /* the parent lets go, as fuse_daemonize's parent exits */
	CU_ASSERT_EQUAL(read(up[0], &c, 1), 1);
	CU_ASSERT_EQUAL(c, 1);
	CU_ASSERT_EQUAL(mfs_pidlock_probe(dirfd_, MFS_PIDLOCK_DATA, &h), -EBUSY);
	CU_ASSERT_EQUAL(h.pid, pid);
	CU_ASSERT_STRING_EQUAL(h.role, "mirrorfs");
	close(down[1]);
	close(up[0]);
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_EQUAL(mfs_pidlock_probe(dirfd_, MFS_PIDLOCK_DATA, &h), 0);
}

static void test_mountinfo(void)
{
	char mnt[PATH_MAX] = "";

	CU_ASSERT_EQUAL(mfs_mirrorfs_mount_of("/", mnt, sizeof(mnt)), 0);
	CU_ASSERT_EQUAL(mfs_mirrorfs_mount_of(tmp, mnt, sizeof(mnt)), 0);
	CU_ASSERT_STRING_EQUAL(mnt, "");
}

static CU_TestInfo tests[] = {
	{"take_and_refuse", test_take_and_refuse},
	{"probe_creates_nothing", test_probe_creates_nothing},
	{"fork", test_fork},
	{"mountinfo", test_mountinfo},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_pidlock[] = {
	{"pidlock", setup, teardown, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
