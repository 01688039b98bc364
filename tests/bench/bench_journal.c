/* SPDX-License-Identifier: MIT */
/*
 * bench_journal.c - journal append throughput against plain write+fdatasync,
 * and CRC32C speed.
 *
 * For each payload size (4 KiB, 64 KiB) and each round, two runs write the
 * same payload bytes with an fdatasync every 1 MiB of payload:
 *   A  journal: mfs_segw_append() of MFS_REC_WRITE records into a fresh
 *      segment, mfs_segw_sync() every 1 MiB and at the end;
 *   B  raw: write() of the same buffers into a fresh file, fdatasync()
 *      every 1 MiB and at the end.
 * Runs are interleaved A B A B ... so that drift of the disk affects both
 * alike; the ratio A/B is computed per round and the median reported.
 * Creating and closing the files is outside the timed part for both.
 *
 * Then CRC32C (hardware and table) over a buffer in cache, one thread.
 *
 * Usage: bench-journal [--dir DIR] [--mib N] [--rounds N] [--check]
 *   --dir     where the files go (default $TMPDIR or /var/tmp); use the
 *             disk you care about
 *   --mib     payload MiB per run (default 64)
 *   --rounds  rounds per payload size (default 5, at least 3)
 *   --check   exit 1 when a target is missed (journal >= 0.9x raw,
 *             CRC32C hw >= 5 GB/s)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/crc32c.h"
#include "mirrorfs/io.h"
#include "mirrorfs/record.h"
#include "mirrorfs/segment.h"

#define SYNC_EVERY (1u << 20)
#define MAX_ROUNDS 64

static const char *arg_dir;
static unsigned arg_mib = 64;
static unsigned arg_rounds = 5;
static bool arg_check;

static int dirfd_ = -1;
static uint8_t *payload;

static double secs(uint64_t ns)
{
	return (double)ns / 1e9;
}

static int die(const char *what, int r)
{
	fprintf(stderr, "bench-journal: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(EXIT_FAILURE);
}

/* A: the journal. Returns seconds for the appends and syncs. */
static double run_journal(size_t psize, uint64_t total, unsigned run)
{
	static const uint8_t uuid[16] = { 0xbe, 0x4c, 0x41, 0x00, 1, 2, 0x43, 4,
					  0x85, 6, 7, 8, 9, 10, 11, 12 };
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	struct mfs_segw *w = NULL;
	uint64_t t0, t1, lsn = 0, since_sync = 0;
	char name[64];
	int r;

	if (!rec)
		die("calloc", -ENOMEM);
	snprintf(name, sizeof(name), "bench-journal-%u.seg", run);
	(void)unlinkat(dirfd_, name, 0);
	r = mfs_segw_create(dirfd_, name, uuid, 1, 1, &w);
	if (r < 0)
		die("mfs_segw_create", r);
	rec->type = MFS_REC_WRITE;
	strcpy(rec->path, "base/16384/2619");
	rec->data_len = (uint32_t)psize;
	t0 = mfs_mono_ns();
	for (uint64_t done = 0; done < total; done += psize) {
		rec->data = payload + (done % (4u << 20));
		rec->offset = done;
		rec->time_ns = 0;
		r = mfs_segw_append(w, rec, &lsn);
		if (r < 0)
			die("mfs_segw_append", r);
		since_sync += psize;
		if (since_sync >= SYNC_EVERY) {
			r = mfs_segw_sync(w, lsn);
			if (r < 0)
				die("mfs_segw_sync", r);
			since_sync = 0;
		}
	}
	r = mfs_segw_sync(w, lsn);
	if (r < 0)
		die("mfs_segw_sync", r);
	t1 = mfs_mono_ns();
	r = mfs_segw_close(w, -1, NULL);
	if (r < 0)
		die("mfs_segw_close", r);
	(void)unlinkat(dirfd_, name, 0);
	free(rec);
	return secs(t1 - t0);
}

/* B: write() + fdatasync() of the same bytes. */
static double run_raw(size_t psize, uint64_t total, unsigned run)
{
	uint64_t t0, t1, since_sync = 0;
	char name[64];
	int fd, r;

	snprintf(name, sizeof(name), "bench-raw-%u.dat", run);
	fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open", -errno);
	t0 = mfs_mono_ns();
	for (uint64_t done = 0; done < total; done += psize) {
		r = mfs_write_all(fd, payload + (done % (4u << 20)), psize);
		if (r < 0)
			die("write", r);
		since_sync += psize;
		if (since_sync >= SYNC_EVERY) {
			if (fdatasync(fd) < 0)
				die("fdatasync", -errno);
			since_sync = 0;
		}
	}
	if (fdatasync(fd) < 0)
		die("fdatasync", -errno);
	t1 = mfs_mono_ns();
	close(fd);
	(void)unlinkat(dirfd_, name, 0);
	return secs(t1 - t0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct result {
	double journal_mbs, raw_mbs, ratio, ratio_min, ratio_max;
};

static void bench_payload(size_t psize, struct result *res)
{
	double ratio[MAX_ROUNDS], jm[MAX_ROUNDS], rm[MAX_ROUNDS];
	uint64_t total = (uint64_t)arg_mib << 20;
	double mib = (double)total / (1 << 20);

	/* one untimed warm-up of each, so the first round is not special */
	(void)run_journal(psize, SYNC_EVERY * 4ull, 999);
	(void)run_raw(psize, SYNC_EVERY * 4ull, 999);
	for (unsigned i = 0; i < arg_rounds; i++) {
		double a = run_journal(psize, total, i);
		double b = run_raw(psize, total, i);

		jm[i] = mib / a;
		rm[i] = mib / b;
		ratio[i] = b / a; /* throughput ratio journal / raw */
		fprintf(stderr, "  %3zu KiB round %u: journal %.1f MiB/s, raw %.1f MiB/s, ratio %.3f\n",
			psize >> 10, i + 1, jm[i], rm[i], ratio[i]);
	}
	res->ratio = median(ratio, arg_rounds);
	res->ratio_min = ratio[0];
	res->ratio_max = ratio[arg_rounds - 1];
	res->journal_mbs = median(jm, arg_rounds);
	res->raw_mbs = median(rm, arg_rounds);
}

/* GB/s (1e9 bytes per second) of @fn over a @len-byte buffer, ~0.5 s. */
static double bench_crc(uint32_t (*fn)(uint32_t, const void *, size_t), size_t len)
{
	uint64_t t0, t1, bytes = 0;
	volatile uint32_t sink = 0;
	uint32_t c = 0;

	t0 = mfs_mono_ns();
	do {
		for (int i = 0; i < 64; i++) {
			c = fn(c, payload, len);
			bytes += len;
		}
		t1 = mfs_mono_ns();
	} while (t1 - t0 < 500000000u);
	sink = c;
	(void)sink;
	return (double)bytes / (double)(t1 - t0);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-journal [--dir DIR] [--mib N] [--rounds N] [--check]\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "mib", required_argument, NULL, 'm' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "d:m:r:ch", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			arg_dir = optarg;
			break;
		case 'm':
			arg_mib = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			arg_rounds = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'c':
			arg_check = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || arg_mib < 2 || arg_rounds < 3 || arg_rounds > MAX_ROUNDS)
		usage();
	if (!arg_dir) {
		arg_dir = getenv("TMPDIR");
		if (!arg_dir || !*arg_dir)
			arg_dir = "/var/tmp";
	}
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 4096, 65536 };
	struct result res[2];
	double crc_hw = 0, crc_sw, crc_hw4k = 0, crc_sw4k;
	char dir[4096];
	bool ok = true;

	parse_args(argc, argv);
	snprintf(dir, sizeof(dir), "%s/mfs-bench.XXXXXX", arg_dir);
	if (!mkdtemp(dir))
		die(dir, -errno);
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd_ < 0)
		die(dir, -errno);
	payload = malloc((4u << 20) + 65536);
	if (!payload)
		die("malloc", -ENOMEM);
	for (size_t i = 0; i < (4u << 20) + 65536; i++)
		payload[i] = (uint8_t)(i * 2654435761u >> 13);

	fprintf(stderr, "bench-journal: %u MiB per run, fdatasync every 1 MiB, %u rounds, in '%s'\n",
		arg_mib, arg_rounds, dir);
	for (int i = 0; i < 2; i++)
		bench_payload(sizes[i], &res[i]);
	close(dirfd_);
	(void)rmdir(dir);

	if (mfs_crc32c_has_hw()) {
		crc_hw = bench_crc(mfs_crc32c_hw, 65536);
		crc_hw4k = bench_crc(mfs_crc32c_hw, 4096);
	}
	crc_sw = bench_crc(mfs_crc32c_sw, 65536);
	crc_sw4k = bench_crc(mfs_crc32c_sw, 4096);

	printf("journal append vs write()+fdatasync(), sync every 1 MiB, %u MiB x %u rounds (A B interleaved)\n",
	       arg_mib, arg_rounds);
	printf("%-10s %14s %14s %14s %16s %8s\n", "payload", "journal MiB/s", "raw MiB/s",
	       "ratio median", "ratio min..max", "target");
	for (int i = 0; i < 2; i++) {
		bool pass = res[i].ratio >= 0.9;

		ok = ok && pass;
		printf("%-10s %14.1f %14.1f %14.3f %8.3f..%-7.3f %8s\n",
		       sizes[i] == 4096 ? "4 KiB" : "64 KiB", res[i].journal_mbs, res[i].raw_mbs,
		       res[i].ratio, res[i].ratio_min, res[i].ratio_max, pass ? ">=0.9 ok" : ">=0.9 MISS");
	}
	printf("\nCRC32C, one thread, buffer in cache\n");
	printf("%-10s %14s %14s %8s\n", "path", "GB/s (64 KiB)", "GB/s (4 KiB)", "target");
	if (mfs_crc32c_has_hw()) {
		bool pass = crc_hw >= 5.0;

		ok = ok && pass;
		printf("%-10s %14.2f %14.2f %8s\n", "sse4.2", crc_hw, crc_hw4k,
		       pass ? ">=5 ok" : ">=5 MISS");
	} else {
		printf("%-10s %14s %14s %8s\n", "sse4.2", "n/a", "n/a", "-");
	}
	printf("%-10s %14.2f %14.2f %8s\n", "table", crc_sw, crc_sw4k, "-");
	return arg_check && !ok ? EXIT_FAILURE : EXIT_SUCCESS;
}
