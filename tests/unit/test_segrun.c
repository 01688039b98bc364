/* SPDX-License-Identifier: MIT */
/*
 * test_segrun.c - unit tests of lib/segrun's stream mode, the one crash
 * recovery and mirrord's naive mode apply through: every record handed to
 * the hook with what happened to it, a failed record passed over or
 * stopping the run as the hook says, a torn segment accepted only as the
 * last one, and a read pass that applies nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"
#include "mirrorfs/segrun.h"
#include "tests.h"

static char *tmp;
static int topfd = -1;
static const uint8_t uuid[16] = { 0x5e, 0x90, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 };

static int setup(void)
{
	return test_tmpdir_open(&tmp, &topfd);
}

static int teardown(void)
{
	return test_tmpdir_close(&tmp, &topfd);
}

static int append(struct mfs_segw *w, enum mfs_rec_type t, const char *path, const char *data,
		  uint64_t off)
{
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	uint64_t lsn;
	int e;

	if (!rec)
		return -ENOMEM;
	rec->type = t;
	snprintf(rec->path, sizeof(rec->path), "%s", path);
	rec->mode = t == MFS_REC_MKDIR ? 0755 : S_IFREG | 0644;
	rec->data = data;
	rec->data_len = data ? strlen(data) : 0;
	rec->offset = off;
	e = mfs_segw_append(w, rec, &lsn);
	free(rec);
	return e;
}

/*
 * In folder @name: closed segment "c" holding LSN 1..4 (LSN 3 a write
 * into a file that is a folder, which fails) and open segment "o" (no
 * trailer: torn) holding LSN 5. Returns the folder's fd.
 */
static int make_segments(const char *name)
{
	struct mfs_segw *w;
	char closed[MFS_SEG_NAME_LEN + 1];
	int dfd;

	CU_ASSERT_EQUAL_FATAL(mkdirat(topfd, name, 0755), 0);
	dfd = openat(topfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_TRUE_FATAL(dfd >= 0);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dfd, "c.tmp", uuid, 1, 1, &w), 0);
	CU_ASSERT_EQUAL_FATAL(append(w, MFS_REC_MKDIR, "d", NULL, 0), 0);
	CU_ASSERT_EQUAL_FATAL(append(w, MFS_REC_MKNOD, "d/f", NULL, 0), 0);
	CU_ASSERT_EQUAL_FATAL(append(w, MFS_REC_WRITE, "d", "x", 0), 0);
	CU_ASSERT_EQUAL_FATAL(append(w, MFS_REC_WRITE, "d/f", "abc", 0), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_close(w, dfd, closed), 0);
	CU_ASSERT_EQUAL_FATAL(renameat(dfd, closed, dfd, "c"), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_segw_create(dfd, "o", uuid, 2, 5, &w), 0);
	CU_ASSERT_EQUAL_FATAL(append(w, MFS_REC_WRITE, "d/f", "def", 3), 0);
	mfs_segw_free(w);
	return dfd;
}

struct seen {
	int e[8];   /* by LSN */
	int n;      /* records seen */
	int stop_at; /* LSN whose hook stops the run with -ECANCELED, or 0 */
};

static int each(void *arg, const struct mfs_rec *rec, int e)
{
	struct seen *s = arg;

	s->n++;
	if (rec->lsn < 8)
		s->e[rec->lsn] = e;
	return rec->lsn == (uint64_t)s->stop_at ? -ECANCELED : 0;
}

/* Run @dfd's "c" then "o" (the last) in stream mode into a fresh root @root (or none). */
static int run_both(int dfd, const char *root, struct seen *s, struct mfs_segrun *run)
{
	struct mfs_replay *engine = NULL;
	int rfd = -1, fd, e;

	if (root) {
		CU_ASSERT_EQUAL_FATAL(mkdirat(topfd, root, 0755), 0);
		rfd = openat(topfd, root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		CU_ASSERT_EQUAL_FATAL(mfs_replay_new(rfd, MFS_REPLAY_F_NO_SYNC, &engine), 0);
	}
	mfs_segrun_init(run, engine, 0);
	run->stream = true;
	if (s) {
		run->each = each;
		run->each_arg = s;
	}
	fd = openat(dfd, "c", O_RDONLY | O_CLOEXEC);
	e = mfs_segrun_fd(run, fd, "c", false);
	close(fd);
	if (e == 0) {
		fd = openat(dfd, "o", O_RDONLY | O_CLOEXEC);
		e = mfs_segrun_fd(run, fd, "o", true);
		close(fd);
	}
	if (engine)
		CU_ASSERT_EQUAL(mfs_replay_finish(engine), 0);
	mfs_replay_free(engine);
	if (rfd >= 0)
		close(rfd);
	return e;
}

static void check_file(const char *path, const char *want)
{
	char buf[64] = "";
	int fd = openat(topfd, path, O_RDONLY | O_CLOEXEC);

	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(read(fd, buf, sizeof(buf) - 1), (ssize_t)strlen(want));
	CU_ASSERT_STRING_EQUAL(buf, want);
	close(fd);
}

/* A failed record goes to the hook, which passes over it: the rest is applied. */
static void test_stream_passes_over(void)
{
	int dfd = make_segments("s1");
	struct seen s = { .n = 0 };
	struct mfs_segrun run;

	CU_ASSERT_EQUAL(run_both(dfd, "r1", &s, &run), 0);
	CU_ASSERT_EQUAL(s.n, 5);
	CU_ASSERT_EQUAL(s.e[1], 0);
	CU_ASSERT_EQUAL(s.e[2], 0);
	CU_ASSERT_TRUE(s.e[3] < 0);
	CU_ASSERT_EQUAL(s.e[4], 0);
	CU_ASSERT_EQUAL(s.e[5], 0);
	CU_ASSERT_EQUAL(run.last, 5);
	CU_ASSERT_EQUAL(run.records, 4);
	CU_ASSERT_EQUAL(run.files, 2);
	CU_ASSERT_EQUAL(memcmp(run.uuid, uuid, 16), 0);
	check_file("r1/d/f", "abcdef");
	close(dfd);
}

/* The hook's negative value stops the run and is returned; no why. */
static void test_stream_hook_stops(void)
{
	int dfd = make_segments("s2");
	struct seen s = { .stop_at = 2 };
	struct mfs_segrun run;

	CU_ASSERT_EQUAL(run_both(dfd, "r2", &s, &run), -ECANCELED);
	CU_ASSERT_EQUAL(run.last, 1);
	CU_ASSERT_STRING_EQUAL(run.why, "");
	close(dfd);
}

/* Without a hook a failed record stops the run, with its LSN in why. */
static void test_stream_no_hook(void)
{
	int dfd = make_segments("s3");
	struct mfs_segrun run;
	int e = run_both(dfd, "r3", NULL, &run);

	CU_ASSERT_TRUE(e < 0);
	CU_ASSERT_EQUAL(run.last, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(run.why, "applying 'c' failed at LSN 3: "));
	close(dfd);
}

/* A torn segment is refused unless it is the last one. */
static void test_stream_torn(void)
{
	int dfd = make_segments("s4");
	struct seen s = { .n = 0 };
	struct mfs_segrun run;
	int fd = openat(dfd, "o", O_RDONLY | O_CLOEXEC);

	mfs_segrun_init(&run, NULL, 4);
	run.stream = true;
	run.each = each;
	run.each_arg = &s;
	CU_ASSERT_EQUAL(mfs_segrun_fd(&run, fd, "o", false), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(run.why, "segment 'o' is damaged: torn tail"));
	CU_ASSERT_EQUAL(mfs_segrun_fd(&run, fd, "o", true), 0);
	close(fd);
	close(dfd);
}

/* Without an engine every record goes to the hook with 0, nothing applied. */
static void test_stream_read_pass(void)
{
	int dfd = make_segments("s5");
	struct seen s = { .n = 0 };
	struct mfs_segrun run;
	struct stat st;

	CU_ASSERT_EQUAL(run_both(dfd, NULL, &s, &run), 0);
	CU_ASSERT_EQUAL(s.n, 5);
	CU_ASSERT_EQUAL(s.e[3], 0);
	CU_ASSERT_EQUAL(run.last, 5);
	CU_ASSERT_EQUAL(fstatat(dfd, "d", &st, 0), -1);
	close(dfd);
}

static CU_TestInfo tests[] = {
	{ "stream-passes-over", test_stream_passes_over },
	{ "stream-hook-stops", test_stream_hook_stops },
	{ "stream-no-hook", test_stream_no_hook },
	{ "stream-torn", test_stream_torn },
	{ "stream-read-pass", test_stream_read_pass },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_segrun[] = {
	{ "segrun", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
