/* SPDX-License-Identifier: MIT */
/*
 * statrace.c - test helper: a file's size, asked of the filesystem while
 * its writes are being applied, never goes backwards.
 *
 * usage: statrace DIR SECONDS
 *
 * One thread appends 4 KiB blocks to DIR/grow (no fsync: the writes stay
 * pending in mirrorfs until a commit applies them); one writes and
 * fdatasyncs DIR/commit in a loop (each commit applies the pending writes
 * of every file); one asks for DIR/grow's size with statx(
 * AT_STATX_FORCE_SYNC), which always reaches the filesystem, and checks it
 * against the end of the last write that had returned before the call.
 * A size below it is what PostgreSQL reports as "unexpected data beyond
 * EOF": the kernel believes the reply and drops the pages past it.
 * Prints the counts; exits 1 if any size was stale, 2 on an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static atomic_ullong done_end; /* end of the last write that returned */
static atomic_bool stop;
static atomic_int failed;

static void die(const char *what)
{
	fprintf(stderr, "statrace: %s: %s\n", what, strerror(errno));
	atomic_store(&failed, 1);
	atomic_store(&stop, true);
}

static void *grow(void *arg)
{
	char path[4096], buf[4096];
	unsigned long long off = 0;
	int fd;

	(void)arg;
	memset(buf, 'g', sizeof(buf));
	snprintf(path, sizeof(path), "%s/grow", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		die("open grow");
		return NULL;
	}
	while (!atomic_load(&stop) && off < (1ull << 30)) {
		if (pwrite(fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf)) {
			die("pwrite grow");
			break;
		}
		off += sizeof(buf);
		atomic_store(&done_end, off);
	}
	close(fd);
	return NULL;
}

static void *commit(void *arg)
{
	char path[4096];
	int fd;

	(void)arg;
	snprintf(path, sizeof(path), "%s/commit", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		die("open commit");
		return NULL;
	}
	while (!atomic_load(&stop)) {
		if (pwrite(fd, "c", 1, 0) != 1 || fdatasync(fd) < 0) {
			die("commit");
			break;
		}
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long long stats = 0, stale = 0;
	pthread_t tg, tc;
	struct timespec t0, t;
	char path[4096];
	double secs;

	if (argc != 3) {
		fprintf(stderr, "usage: statrace DIR SECONDS\n");
		return 2;
	}
	dir = argv[1];
	secs = atof(argv[2]);
	snprintf(path, sizeof(path), "%s/grow", dir);
	if (pthread_create(&tg, NULL, grow, NULL) || pthread_create(&tc, NULL, commit, NULL))
		return 2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		unsigned long long want = atomic_load(&done_end);
		struct statx sx;

		if (statx(AT_FDCWD, path, AT_STATX_FORCE_SYNC, STATX_SIZE, &sx) == 0) {
			stats++;
			if (sx.stx_size < want) {
				if (stale++ < 5)
					printf("stale size %llu, a write up to %llu had returned\n",
					       (unsigned long long)sx.stx_size, want);
			}
		} else if (errno != ENOENT) {
			die("statx");
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (!atomic_load(&stop) &&
		 (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
	atomic_store(&stop, true);
	pthread_join(tg, NULL);
	pthread_join(tc, NULL);
	printf("statrace: %llu sizes asked, %llu stale, file grew to %llu bytes\n", stats, stale,
	       (unsigned long long)atomic_load(&done_end));
	if (atomic_load(&failed))
		return 2;
	return stale ? 1 : 0;
}
