/* SPDX-License-Identifier: MIT */
/*
 * odirect.c - test helper (fs-odirect): a buffered reader must not see
 * stale pages after an asynchronous O_DIRECT write through another open
 * (the xfstests generic/451 idea), made deterministic with the mount's lock.
 *
 *   odirect MOUNTPOINT FILE aio|uring
 *
 * FILE (below MOUNTPOINT) is filled with 'A' and read through a buffered
 * descriptor. The mount is locked (mutations park), an O_DIRECT write of
 * 'B' is submitted asynchronously (Linux AIO or io_uring) through a second
 * descriptor, and once the mount reports it parked (the kernel has dropped
 * the range's pages and sent the write) the reader reads the range again:
 * it gets 'A', now cached. Unlock, wait for the write to complete, then
 * the reader must see 'B', through the same descriptor and through a new
 * buffered open. Exits 0 if so, 1 with the bytes seen otherwise, 77 if an
 * interface is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#define FILE_SIZE (64u * 1024u)
#define W_OFF 4096u
#define W_LEN (16u * 1024u)

static int die(const char *what)
{
	fprintf(stderr, "odirect: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Send @cmd on the control file descriptor, expect "ok". */
static void ctl(int fd, const char *cmd)
{
	char reply[256];
	ssize_t n;

	if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
		die(cmd);
	n = pread(fd, reply, sizeof(reply) - 1, 0);
	if (n < 0)
		die(cmd);
	reply[n] = 0;
	if (strncmp(reply, "ok", 2)) {
		fprintf(stderr, "odirect: '%s' refused: %s\n", cmd, reply);
		exit(1);
	}
}

/* Number of parked mutations in MOUNTPOINT/.mirrorfs/status. */
static long parked(const char *mnt)
{
	char path[4096], buf[8192], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/.mirrorfs/status", mnt);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		die(path);
	buf[n] = 0;
	p = strstr(buf, "\"parked\":");
	return p ? strtol(p + 9, NULL, 10) : -1;
}

static void wait_parked(const char *mnt)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int i;

	for (i = 0; i < 6000; i++) {
		if (parked(mnt) >= 1)
			return;
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "odirect: the write never reached the mount\n");
	exit(1);
}

/* Read [W_OFF, W_OFF+W_LEN) through @fd; returns the first byte that is not
 * @want, or @want if all are. */
static int check(int fd, char want, const char *when)
{
	static _Alignas(4096) char buf[W_LEN];
	size_t k;

	if (pread(fd, buf, W_LEN, W_OFF) != (ssize_t)W_LEN)
		die("buffered read");
	for (k = 0; k < W_LEN; k++) {
		if (buf[k] != want) {
			fprintf(stderr, "odirect: %s: byte %zu is '%c', expected '%c'\n", when,
				(size_t)W_OFF + k, buf[k], want);
			return buf[k];
		}
	}
	return want;
}

/* ---------------------------------------------------------------- Linux AIO */

static aio_context_t aio_ctx;

static void aio_submit(int fd, void *buf)
{
	struct iocb cb = { 0 }, *cbs[1] = { &cb };

	if (syscall(SYS_io_setup, 1, &aio_ctx) < 0) {
		fprintf(stderr, "odirect: no Linux AIO: %s\n", strerror(errno));
		exit(77);
	}
	cb.aio_lio_opcode = IOCB_CMD_PWRITE;
	cb.aio_fildes = (uint32_t)fd;
	cb.aio_buf = (uint64_t)(uintptr_t)buf;
	cb.aio_nbytes = W_LEN;
	cb.aio_offset = W_OFF;
	if (syscall(SYS_io_submit, aio_ctx, 1, cbs) != 1)
		die("io_submit");
}

static long aio_wait(void)
{
	struct io_event ev;

	if (syscall(SYS_io_getevents, aio_ctx, 1, 1, &ev, NULL) != 1)
		die("io_getevents");
	syscall(SYS_io_destroy, aio_ctx);
	return (long)ev.res;
}

/* ---------------------------------------------------------------- io_uring */

static struct io_uring ring;

static void uring_submit(int fd, void *buf)
{
	struct io_uring_sqe *sqe;
	int r = io_uring_queue_init(4, &ring, 0);

	if (r < 0) {
		fprintf(stderr, "odirect: no io_uring: %s\n", strerror(-r));
		exit(77);
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_write(sqe, fd, buf, W_LEN, W_OFF);
	if (io_uring_submit(&ring) != 1)
		die("io_uring_submit");
}

static long uring_wait(void)
{
	struct io_uring_cqe *cqe;
	long res;
	int r = io_uring_wait_cqe(&ring, &cqe);

	if (r < 0) {
		errno = -r;
		die("io_uring_wait_cqe");
	}
	res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	return res;
}

int main(int argc, char **argv)
{
	static char fill[FILE_SIZE];
	char path[4096];
	void *dbuf;
	long res;
	int rfd, dfd, cfd, bad = 0;
	bool uring;

	if (argc != 4 || (strcmp(argv[3], "aio") && strcmp(argv[3], "uring"))) {
		fprintf(stderr, "usage: odirect MOUNTPOINT FILE aio|uring\n");
		return 2;
	}
	uring = !strcmp(argv[3], "uring");
	memset(fill, 'A', sizeof(fill));
	rfd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (rfd < 0 || pwrite(rfd, fill, FILE_SIZE, 0) != (ssize_t)FILE_SIZE || fsync(rfd) < 0)
		die(argv[2]);
	if (check(rfd, 'A', "before") != 'A') /* caches the pages */
		return 1;
	dfd = open(argv[2], O_RDWR | O_DIRECT);
	if (dfd < 0)
		die("O_DIRECT open");
	if (posix_memalign(&dbuf, 4096, W_LEN))
		die("posix_memalign");
	memset(dbuf, 'B', W_LEN);
	snprintf(path, sizeof(path), "%s/.mirrorfs/ctl", argv[1]);
	cfd = open(path, O_RDWR);
	if (cfd < 0)
		die(path);

	ctl(cfd, "lock 60000");
	if (uring)
		uring_submit(dfd, dbuf);
	else
		aio_submit(dfd, dbuf);
	wait_parked(argv[1]);
	if (check(rfd, 'A', "while parked") != 'A') /* the old bytes, cached again */
		return 1;
	ctl(cfd, "unlock");
	res = uring ? uring_wait() : aio_wait();
	if (res != (long)W_LEN) {
		fprintf(stderr, "odirect: the O_DIRECT write returned %ld\n", res);
		return 1;
	}

	bad |= check(rfd, 'B', "same descriptor after the write") != 'B';
	close(rfd);
	rfd = open(argv[2], O_RDONLY);
	if (rfd < 0)
		die("reopen");
	bad |= check(rfd, 'B', "new open after the write") != 'B';
	bad |= check(dfd, 'B', "O_DIRECT read after the write") != 'B';
	close(rfd);
	close(dfd);
	close(cfd);
	free(dbuf);
	return bad;
}
