/* SPDX-License-Identifier: MIT */
/*
 * fuzz_replay.c - libFuzzer target: decode + validate + plan of a segment.
 *
 * Every input is read as a segment from memory: each record the reader
 * accepts goes through mfs_replay_check() (the daemon's validation), and
 * the records that pass are applied with the replay engine (no sync) to a
 * scratch root inside a private temp folder, next to a canary file. Any
 * change to the canary, or any new entry beside the root, aborts: the
 * engine must never act outside its root. The scratch root is emptied every
 * 256 inputs to keep runs fast.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char top[] = "/tmp/mfs-fuzz.XXXXXX";
static int topfd = -1, rootfd = -1;
static unsigned runs;

static void rm_tree(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;
	struct dirent *de;

	if (fd < 0) {
		(void)unlinkat(dfd, name, 0);
		return;
	}
	d = fdopendir(fd);
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_tree(dirfd(d), de->d_name);
	if (d)
		closedir(d);
	(void)unlinkat(dfd, name, AT_REMOVEDIR);
}

/* At a normal exit (not after a finding: the folder then stays to look at). */
static void cleanup(void)
{
	if (rootfd >= 0)
		close(rootfd);
	rm_tree(topfd, "root");
	(void)unlinkat(topfd, "canary", 0);
	close(topfd);
	(void)rmdir(top);
}

static void setup(void)
{
	int fd;

	if (topfd >= 0)
		return;
	if (!mkdtemp(top))
		abort();
	atexit(cleanup);
	topfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fd = openat(topfd, "canary", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (topfd < 0 || fd < 0 || write(fd, "canary", 6) != 6)
		abort();
	close(fd);
}

static void reset_root(void)
{
	if (rootfd >= 0)
		close(rootfd);
	rm_tree(topfd, "root");
	if (mkdirat(topfd, "root", 0755) < 0)
		abort();
	rootfd = openat(topfd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		abort();
}

static void check_outside(void)
{
	char buf[16] = "";
	struct stat st;
	DIR *d;
	struct dirent *de;
	int fd = openat(topfd, "canary", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, buf, sizeof(buf)) != 6 || memcmp(buf, "canary", 6) ||
	    fstat(fd, &st) < 0 || (st.st_mode & 07777) != 0644)
		abort();
	close(fd);
	d = opendir(top);
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, "canary") && strcmp(de->d_name, "root"))
			abort(); /* something was created beside the root */
	if (d)
		closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mfs_rec rec;
	struct mfs_replay *engine = NULL;
	struct mfs_segr *r;

	setup();
	if (runs++ % 256 == 0)
		reset_root();
	if (mfs_segr_open_buf(data, size, NULL, &r) < 0)
		return 0;
	if (mfs_replay_new(rootfd, MFS_REPLAY_F_NO_SYNC, &engine) < 0)
		engine = NULL;
	while (mfs_segr_next(r, &rec) > 0) {
		if (mfs_replay_check(&rec) < 0)
			continue;
		if (mfs_rec_type_is_data(rec.type) && mfs_rec_end(&rec.fields) > (128u << 20))
			continue; /* keep the scratch files small */
		if (engine)
			(void)mfs_replay_apply(engine, &rec);
	}
	if (engine) {
		(void)mfs_replay_finish(engine);
		mfs_replay_free(engine);
	}
	mfs_segr_free(r);
	check_outside();
	return 0;
}
