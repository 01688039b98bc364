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
 *      every 1 MiB and at the end;
 *   C  layout (for diagnosis, not the target): the journal's file layout
 *      without the library, each payload preceded by as many bytes as a
 *      record's header and fixed fields, one pwritev() per record.
 * Runs are interleaved A B C A B C ... so that drift of the disk affects
 * all alike; the ratio A/B (the target) and A/C are computed per round and
 * their medians reported, with the CPU time (user + system) per MiB.
 * Creating and closing the files is outside the timed part for all.
 *
 * Then CRC32C (hardware and table) over a buffer in cache, one thread,
 * best of 5 trials.
 *
 * Usage: bench-journal [--dir DIR] [--mib N] [--rounds N] [--check] [--auth] [--zstd N]
 *   --dir     where the files go (default $TMPDIR or /var/tmp); use the
 *             disk you care about
 *   --mib     payload MiB per run (default 64)
 *   --rounds  rounds per payload size (default 5, at least 3)
 *   --check   exit 1 when a target is missed (journal >= 0.9x raw,
 *             CRC32C hw >= 5 GB/s)
 *   --auth    the journal runs write format 2, every record tagged (a
 *             fixed key): the cost of authentication
 *   --zstd N  ... and compress writes at zstd level N (the payload is a
 *             hash pattern, barely compressible: the cost of trying)
 *   --enc     ... and seal every record (XChaCha20-Poly1305, a fixed key)
 *   --matrix  instead of the above: the journal alone in five set-ups,
 *             interleaved per round (plain, auth, zstd:1, enc, all three),
 *             on a half-compressible payload (pages of text and noise);
 *             prints MiB/s medians and the median of the per-round ratios
 *             to plain, then the same for reading the segments back
 *             (mfs_seg_scan_fd with the keys: what replay's validation pays)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/crc32c.h"
#include "mirrorfs/io.h"
#include "mirrorfs/record.h"
#include "mirrorfs/segment.h"

#define SYNC_EVERY (1u << 20)
#define MAX_ROUNDS 64
#define BENCH_PATH "base/16384/2619"

static const char *arg_dir;
static unsigned arg_mib = 64;
static unsigned arg_rounds = 5;
static bool arg_check;
static bool arg_auth;
static int arg_zstd;
static bool arg_enc;
static bool arg_matrix;
static struct mfs_auth_key arg_key;
static struct mfs_keyring arg_ring; /* the tag key and the encryption key */
static struct mfs_segw_opts arg_opts;

static int dirfd_ = -1;
static uint8_t *payload;

static double secs(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* CPU seconds (user + system) this process has used so far. */
static double cpu_secs(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
	       (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds of the last run_journal() / run_raw(). */
static double last_cpu;

static int die(const char *what, int r)
{
	fprintf(stderr, "bench-journal: %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(EXIT_FAILURE);
}

/* A: the journal. Returns seconds for the appends and syncs. */
static double run_journal(size_t psize, uint64_t total, unsigned run)
{
	static const uint8_t uuid[16] = {0xbe, 0x4c, 0x41, 0x00, 1, 2,	0x43, 4,
					 0x85, 6,    7,	   8,	 9, 10, 11,   12};
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	struct mfs_segw *w = NULL;
	uint64_t t0, t1, lsn = 0, since_sync = 0;
	char name[64];
	int r;

	if (!rec)
		die("calloc", -ENOMEM);
	snprintf(name, sizeof(name), "bench-journal-%u.seg", run);
	(void)unlinkat(dirfd_, name, 0);
	r = mfs_segw_create_opts(dirfd_, name, uuid, 1, 1, 0,
				 arg_auth || arg_zstd || arg_enc ? &arg_opts : NULL, &w);
	if (r < 0)
		die("mfs_segw_create", r);
	rec->type = MFS_REC_WRITE;
	strcpy(rec->path, BENCH_PATH);
	rec->data_len = (uint32_t)psize;
	last_cpu = cpu_secs();
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
	last_cpu = cpu_secs() - last_cpu;
	r = mfs_segw_close(w, -1, NULL);
	if (r < 0)
		die("mfs_segw_close", r);
	if (!arg_matrix)
		(void)unlinkat(dirfd_, name, 0);
	free(rec);
	return secs(t1 - t0);
}

/* Read segment bench-journal-@run.seg back with the keys (then remove it):
 * seconds for the scan, which checks CRCs and tags, opens and expands. */
static double run_scan(unsigned run)
{
	struct mfs_segr_opts o = { .keys = arg_auth ? &arg_ring : NULL };
	struct mfs_keyring dec = arg_ring;
	struct mfs_seg_info info;
	uint64_t t0, t1;
	char name[64];
	int fd, r;

	dec.n = 0; /* not authenticating: only the encryption key */
	if (!arg_auth && arg_enc)
		o.keys = &dec;
	snprintf(name, sizeof(name), "bench-journal-%u.seg", run);
	fd = openat(dirfd_, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(name, -errno);
	last_cpu = cpu_secs();
	t0 = mfs_mono_ns();
	r = mfs_seg_scan_fd_opts(fd, &o, NULL, NULL, &info);
	t1 = mfs_mono_ns();
	last_cpu = cpu_secs() - last_cpu;
	if (r < 0 || info.verdict != MFS_SEG_OK)
		die("scan: not ok", r < 0 ? r : -EBADMSG);
	close(fd);
	(void)unlinkat(dirfd_, name, 0);
	return secs(t1 - t0);
}

/* The set-ups of --matrix. */
static const struct setup {
	const char *name;
	bool auth, enc;
	int zstd;
} setups[] = {
	{ "plain", false, false, 0 }, { "auth", true, false, 0 }, { "zstd:1", false, false, 1 },
	{ "enc", false, true, 0 },    { "all", true, true, 1 },
};
#define N_SETUPS (sizeof(setups) / sizeof(setups[0]))

static void use_setup(const struct setup *u)
{
	arg_auth = u->auth;
	arg_enc = u->enc;
	arg_zstd = u->zstd;
	arg_opts.key = u->auth ? &arg_key : NULL;
	arg_opts.enc_key = u->enc ? &arg_ring.enc[0] : NULL;
	arg_opts.zstd_level = u->zstd;
}

/*
 * B: write() + fdatasync() of the same payload bytes (@head == 0), or
 * C: the journal's file layout without the journal: each payload preceded
 * by @head bytes (the size of a record's header and fixed fields), one
 * pwritev() per record. C separates what the format's layout costs (data
 * no longer page-aligned in the file) from what the library costs.
 */
static double run_raw(size_t psize, uint64_t total, unsigned run, size_t head)
{
	static uint8_t zeros[256];
	uint64_t t0, t1, since_sync = 0, off = 0;
	char name[64];
	int fd, r;

	snprintf(name, sizeof(name), "bench-raw-%u.dat", run);
	fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open", -errno);
	last_cpu = cpu_secs();
	t0 = mfs_mono_ns();
	for (uint64_t done = 0; done < total; done += psize) {
		uint8_t *p = payload + (done % (4u << 20));

		if (head) {
			struct iovec iov[2] = {{zeros, head}, {p, psize}};

			r = mfs_pwritev_all(fd, iov, 2, off);
			off += head + psize;
		} else {
			r = mfs_write_all(fd, p, psize);
		}
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
	last_cpu = cpu_secs() - last_cpu;
	close(fd);
	(void)unlinkat(dirfd_, name, 0);
	return secs(t1 - t0);
}

/* Bytes of header and fixed fields of the journal's write records here. */
static size_t journal_head_size(void)
{
	struct mfs_rec *rec = calloc(1, sizeof(*rec));
	size_t n;

	if (!rec)
		die("calloc", -ENOMEM);
	rec->type = MFS_REC_WRITE;
	strcpy(rec->path, BENCH_PATH);
	n = mfs_rec_head_size(rec);
	free(rec);
	return n;
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
	double journal_mbs, raw_mbs, layout_mbs; /* medians */
	double ratio, ratio_min, ratio_max; /* journal / raw, per round */
	double ratio_layout; /* journal / layout, median */
	double journal_cpu, raw_cpu; /* CPU ms per MiB of payload, median */
};

static void bench_payload(size_t psize, struct result *res)
{
	double ratio[MAX_ROUNDS], rl[MAX_ROUNDS], jm[MAX_ROUNDS], rm[MAX_ROUNDS], lm[MAX_ROUNDS];
	double jc[MAX_ROUNDS], rc[MAX_ROUNDS];
	uint64_t total = (uint64_t)arg_mib << 20;
	double mib = (double)total / (1 << 20);
	size_t head = journal_head_size();

	/* one untimed warm-up of each, so the first round is not special */
	(void)run_journal(psize, SYNC_EVERY * 4ull, 999);
	(void)run_raw(psize, SYNC_EVERY * 4ull, 999, 0);
	for (unsigned i = 0; i < arg_rounds; i++) {
		double a = run_journal(psize, total, i);
		double ca = last_cpu;
		double b = run_raw(psize, total, i, 0);
		double cb = last_cpu;
		double c = run_raw(psize, total, i, head);

		jm[i] = mib / a;
		rm[i] = mib / b;
		lm[i] = mib / c;
		jc[i] = ca * 1e3 / mib;
		rc[i] = cb * 1e3 / mib;
		ratio[i] = b / a; /* throughput ratio journal / raw */
		rl[i] = c / a;
		fprintf(stderr,
			"  %3zu KiB round %u: journal %.1f, raw %.1f, raw with journal layout %.1f MiB/s;"
			" ratio %.3f\n",
			psize >> 10, i + 1, jm[i], rm[i], lm[i], ratio[i]);
	}
	res->ratio = median(ratio, arg_rounds);
	res->ratio_min = ratio[0];
	res->ratio_max = ratio[arg_rounds - 1];
	res->ratio_layout = median(rl, arg_rounds);
	res->journal_mbs = median(jm, arg_rounds);
	res->raw_mbs = median(rm, arg_rounds);
	res->layout_mbs = median(lm, arg_rounds);
	res->journal_cpu = median(jc, arg_rounds);
	res->raw_cpu = median(rc, arg_rounds);
}

/*
 * GB/s (1e9 bytes per second) of @fn over a @len-byte buffer: the best of
 * 5 trials of 0.2 s each (a CPU-bound loop is only ever slowed by noise).
 */
static double bench_crc(uint32_t (*fn)(uint32_t, const void *, size_t), size_t len)
{
	volatile uint32_t sink = 0;
	double best = 0;
	uint32_t c = 0;

	for (int trial = 0; trial < 5; trial++) {
		uint64_t t0 = mfs_mono_ns(), t1, bytes = 0;

		do {
			for (int i = 0; i < 64; i++) {
				c = fn(c, payload, len);
				bytes += len;
			}
			t1 = mfs_mono_ns();
		} while (t1 - t0 < 200000000u);
		if ((double)bytes / (double)(t1 - t0) > best)
			best = (double)bytes / (double)(t1 - t0);
	}
	sink = c;
	(void)sink;
	return best;
}


/* The load average: the machine may be shared, and then says so. */
static void print_loadavg(void)
{
	char buf[128] = "?";
	FILE *f = fopen("/proc/loadavg", "re");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			snprintf(buf, sizeof(buf), "?\n");
		fclose(f);
	}
	printf("load average (1, 5, 15 min): %s", buf);
}

/* --matrix: append and scan MiB/s of each set-up, ratios to plain per round. */
static void bench_matrix(size_t psize)
{
	static double ap[N_SETUPS][MAX_ROUNDS], sc[N_SETUPS][MAX_ROUNDS];
	static double ar[N_SETUPS][MAX_ROUNDS], sr[N_SETUPS][MAX_ROUNDS];
	uint64_t total = (uint64_t)arg_mib << 20;
	double mib = (double)total / (1 << 20);

	for (size_t k = 0; k < N_SETUPS; k++) { /* warm-up */
		use_setup(&setups[k]);
		(void)run_journal(psize, SYNC_EVERY * 4ull, 999);
		(void)run_scan(999);
	}
	for (unsigned i = 0; i < arg_rounds; i++)
		for (size_t k = 0; k < N_SETUPS; k++) {
			use_setup(&setups[k]);
			ap[k][i] = mib / run_journal(psize, total, i);
			sc[k][i] = mib / run_scan(i);
			ar[k][i] = ap[k][i] / ap[0][i];
			sr[k][i] = sc[k][i] / sc[0][i];
			fprintf(stderr, "  %3zu KiB round %u %-6s: append %.1f, scan %.1f MiB/s\n",
				psize >> 10, i + 1, setups[k].name, ap[k][i], sc[k][i]);
		}
	printf("%-7s %-7s %12s %9s %12s %9s\n", "payload", "set-up", "append MiB/s", "ratio",
	       "scan MiB/s", "ratio");
	for (size_t k = 0; k < N_SETUPS; k++)
		printf("%-7s %-7s %12.1f %9.3f %12.1f %9.3f\n", psize == 4096 ? "4 KiB" : "64 KiB",
		       setups[k].name, median(ap[k], arg_rounds), median(ar[k], arg_rounds),
		       median(sc[k], arg_rounds), median(sr[k], arg_rounds));
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-journal [--dir DIR] [--mib N] [--rounds N] [--check] "
			"[--auth] [--zstd N] [--enc] [--matrix]\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},	  {"mib", required_argument, NULL, 'm'},
		{"rounds", required_argument, NULL, 'r'}, {"check", no_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},	  {"auth", no_argument, NULL, 'a'},
		{"zstd", required_argument, NULL, 'z'},	  {"enc", no_argument, NULL, 'e'},
		{"matrix", no_argument, NULL, 'M'},	  {NULL, 0, NULL, 0},
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
		case 'a':
			arg_auth = true;
			break;
		case 'z':
			arg_zstd = (int)strtol(optarg, NULL, 10);
			break;
		case 'e':
			arg_enc = true;
			break;
		case 'M':
			arg_matrix = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || arg_mib < 2 || arg_rounds < 3 || arg_rounds > MAX_ROUNDS)
		usage();
	{
		uint8_t raw[32] = { 1, 2, 3 };
		if (mfs_auth_key_from_raw(raw, &arg_key) < 0 ||
		    mfs_enc_key_from_raw(raw, &arg_ring.enc[0]) < 0)
			die("mfs_auth_key_from_raw", -ENOSYS);
		arg_ring.keys[0] = arg_key;
		arg_ring.n = arg_ring.n_enc = 1;
	}
	arg_opts.key = arg_auth ? &arg_key : NULL;
	arg_opts.enc_key = arg_enc ? &arg_ring.enc[0] : NULL;
	arg_opts.zstd_level = arg_zstd;
	if (!arg_dir) {
		arg_dir = getenv("TMPDIR");
		if (!arg_dir || !*arg_dir)
			arg_dir = "/var/tmp";
	}
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = {4096, 65536};
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
	if (arg_matrix) { /* half text (a database page's worth of rows), half noise */
		for (size_t i = 0; i < (4u << 20) + 65536; i++)
			if ((i >> 12) % 2 == 0)
				payload[i] = (uint8_t)("row 4242, 'the quick brown fox', 3.14;"[i % 38]);
		printf("journal set-ups, %u MiB per run, fdatasync every 1 MiB, %u rounds, "
		       "interleaved; payload half text, half noise; ratio = median of per-round "
		       "ratios to plain\n",
		       arg_mib, arg_rounds);
		for (int i = 0; i < 2; i++)
			bench_matrix(i ? 65536 : 4096);
		print_loadavg();
		close(dirfd_);
		(void)rmdir(dir);
		return 0;
	}

	fprintf(stderr,
		"bench-journal: %u MiB per run, fdatasync every 1 MiB, %u rounds, in '%s'\n",
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

	printf("journal append vs write()+fdatasync(), sync every 1 MiB, %u MiB x %u rounds, "
	       "runs interleaved A B C\n",
	       arg_mib, arg_rounds);
	printf("%-7s %8s %8s %8s %7s %13s %10s %8s %9s\n", "payload", "journal", "raw", "layout",
	       "ratio", "min..max", "target", "j/layout", "cpu j/raw");
	for (int i = 0; i < 2; i++) {
		bool pass = res[i].ratio >= 0.9;
		char cpu[32];

		ok = ok && pass;
		snprintf(cpu, sizeof(cpu), "%.2f/%.2f", res[i].journal_cpu, res[i].raw_cpu);
		printf("%-7s %8.1f %8.1f %8.1f %7.3f %6.3f..%-5.3f %10s %8.3f %9s\n",
		       sizes[i] == 4096 ? "4 KiB" : "64 KiB", res[i].journal_mbs, res[i].raw_mbs,
		       res[i].layout_mbs, res[i].ratio, res[i].ratio_min, res[i].ratio_max,
		       pass ? ">=0.9 ok" : ">=0.9 MISS", res[i].ratio_layout, cpu);
	}
	printf("MiB/s of payload, medians. A journal: mfs_segw_append + mfs_segw_sync; B raw: write()\n"
	       "of the payload; C layout: pwritev() of the journal's file layout (a %zu-byte head\n"
	       "before each payload) without the library. ratio = A/B per round, median (the target);\n"
	       "j/layout = A/C; cpu = user+sys ms per MiB, journal/raw.\n",
	       journal_head_size());
	printf("\nCRC32C, one thread, buffer in cache, best of 5 trials\n");
	printf("%-8s %13s %13s %10s\n", "path", "GB/s 64 KiB", "GB/s 4 KiB", "target");
	if (mfs_crc32c_has_hw()) {
		bool pass = crc_hw >= 5.0;

		ok = ok && pass;
		printf("%-8s %13.2f %13.2f %10s\n", "sse4.2", crc_hw, crc_hw4k,
		       pass ? ">=5 ok" : ">=5 MISS");
	} else {
		printf("%-8s %13s %13s %10s\n", "sse4.2", "n/a", "n/a", "-");
	}
	printf("%-8s %13.2f %13.2f %10s\n", "table", crc_sw, crc_sw4k, "-");
	return arg_check && !ok ? EXIT_FAILURE : EXIT_SUCCESS;
}
