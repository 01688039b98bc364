/* SPDX-License-Identifier: MIT */
/*
 * test_sigbus.c - unit tests of lib/sigbus.
 *
 * A file of three pages is mapped, then truncated to one: its second and
 * third pages now raise SIGBUS when touched. Under an armed guard they
 * read as zeros and disarming reports -EIO, while the first page keeps its
 * bytes and a guard without a fault reports 0. Without a guard (in a
 * child) the fault still ends the process, after a line on stderr that
 * says why.
 */
#include "mirrorfs/sigbus.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests.h"

/* A 3-page file of 0xa5 bytes, mapped, then truncated to one page. */
static char *map_shrunk(size_t *ret_page, char **ret_dir)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char *dir = test_mkdtemp(), path[4096], *buf, *p;
	int fd;

	if (!dir)
		return NULL;
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	buf = malloc(3 * page);
	if (fd < 0 || !buf) {
		free(buf);
		return NULL;
	}
	memset(buf, 0xa5, 3 * page);
	p = write(fd, buf, 3 * page) == (ssize_t)(3 * page)
		    ? mmap(NULL, 3 * page, PROT_READ, MAP_PRIVATE, fd, 0)
		    : MAP_FAILED;
	free(buf);
	if (p == MAP_FAILED || ftruncate(fd, (off_t)page) < 0) {
		close(fd);
		return NULL;
	}
	close(fd);
	*ret_page = page;
	*ret_dir = dir;
	return p;
}

static void test_guarded(void)
{
	struct mfs_bus_guard g;
	size_t page, zeros = 0;
	char *dir = NULL;
	char *p = map_shrunk(&page, &dir);
	volatile const char *v;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	v = p;
	mfs_bus_guard_arm(&g, p, page);
	CU_ASSERT_EQUAL((unsigned char)v[page - 1], 0xa5);
	CU_ASSERT_EQUAL(mfs_bus_guard_disarm(&g), 0);

	mfs_bus_guard_arm(&g, p, 3 * page);
	CU_ASSERT_EQUAL((unsigned char)v[0], 0xa5);
	for (size_t i = page; i < 3 * page; i += 64)
		zeros += v[i] == 0;
	CU_ASSERT_EQUAL(g.faults, 2); /* one per page past the end */
	CU_ASSERT_EQUAL(mfs_bus_guard_disarm(&g), -EIO);
	CU_ASSERT_EQUAL(zeros, 2 * page / 64);

	mfs_bus_guard_arm(&g, p, 3 * page); /* the zero pages stay: no new fault */
	CU_ASSERT_EQUAL(v[2 * page], 0);
	CU_ASSERT_EQUAL(mfs_bus_guard_disarm(&g), 0);
	munmap(p, 3 * page);
	test_rm_rf(dir);
	free(dir);
}

static void test_unguarded(void)
{
	struct mfs_bus_guard g;
	size_t page;
	char *dir = NULL, out[256] = "";
	char *p = map_shrunk(&page, &dir);
	int fds[2], status = 0;
	ssize_t n, got = 0;
	pid_t pid;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	/* the handler is installed, and a guard elsewhere does not cover p */
	mfs_bus_guard_arm(&g, p, page);
	CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		(void)*(volatile const char *)(p + page);
		_exit(0);
	}
	close(fds[1]);
	while ((n = read(fds[0], out + got, sizeof(out) - 1 - (size_t)got)) > 0)
		got += n;
	close(fds[0]);
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "SIGBUS: a mapped segment could not be read"));
	CU_ASSERT_EQUAL(mfs_bus_guard_disarm(&g), 0);
	munmap(p, 3 * page);
	test_rm_rf(dir);
	free(dir);
}

static CU_TestInfo tests[] = {
	{"guarded: a page past the end reads as zeros, -EIO", test_guarded},
	{"unguarded: the process ends, saying why", test_unguarded},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_sigbus[] = {
	{"sigbus", NULL, NULL, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
