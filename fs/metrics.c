/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - the -o metrics=FILE Prometheus textfile of mirrorfs.
 *
 * The write path only bumps atomic counters (fs->metrics); the timer thread
 * (journal.c) calls fs_metrics_write() about once a second, which reads
 * them with the journal's gauges and replaces FILE by a temp file and a
 * rename (mfs_publish_path), so node_exporter's textfile collector never
 * reads half of one.
 * Nothing is fsynced: the file is rewritten every second, and a crash loses
 * nothing a reader needs.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

#define NS_PER_S 1000000000ull

/* upper bounds of the fsync latency buckets, in ns (+Inf is implied) */
static const uint64_t bucket_ns[FS_METRICS_BUCKETS] = {
	100000ull,   500000ull,	  1000000ull,	5000000ull,
	10000000ull, 50000000ull, 100000000ull, 1000000000ull,
};

void fs_metrics_fsync(struct fs *fs, uint64_t ns)
{
	struct fs_metrics *m = &fs->metrics;
	unsigned b = 0;

	while (b < FS_METRICS_BUCKETS && ns > bucket_ns[b])
		b++;
	atomic_fetch_add_explicit(&m->fsync_bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->fsync_ns, ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->fsyncs, 1, memory_order_relaxed);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(FILE *f, const char *name, const char *help, double v)
{
	family(f, name, "gauge", help);
	fprintf(f, "%s %.9g\n", name, v);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
	family(f, name, "counter", help);
	fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void histogram(FILE *f, struct fs_metrics *m)
{
	uint64_t cum = 0, count, sum;

	family(f, "mirrorfs_journal_fsync_duration_seconds", "histogram",
	       "Latency of the journal's group-commit fsyncs.");
	for (unsigned b = 0; b <= FS_METRICS_BUCKETS; b++) {
		cum += atomic_load_explicit(&m->fsync_bucket[b], memory_order_relaxed);
		if (b < FS_METRICS_BUCKETS)
			fprintf(f,
				"mirrorfs_journal_fsync_duration_seconds_bucket{le=\"%g\"} %" PRIu64
				"\n",
				(double)bucket_ns[b] / 1e9, cum);
	}
	/* count is the +Inf bucket: read once, so the family is consistent */
	count = cum;
	sum = atomic_load_explicit(&m->fsync_ns, memory_order_relaxed);
	fprintf(f,
		"mirrorfs_journal_fsync_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
		"mirrorfs_journal_fsync_duration_seconds_sum %.9f\n"
		"mirrorfs_journal_fsync_duration_seconds_count %" PRIu64 "\n",
		count, (double)sum / 1e9, count);
}

static int metrics_text(struct fs *fs, char **ret, size_t *ret_len)
{
	struct fs_metrics *m = &fs->metrics;
	struct fs_journal_gauges g = {0};
	char lock[192] = "";
	FILE *f;

	fs_journal_gauges(fs, &g);
	fs_lock_status(fs, lock, sizeof(lock));
	f = open_memstream(ret, ret_len);
	if (!f)
		return -ENOMEM;
	gauge(f, "mirrorfs_last_lsn", "Highest LSN journaled.", (double)g.last_lsn);
	gauge(f, "mirrorfs_checkpoint_lsn", "LSN of the last checkpoint.",
	      (double)g.checkpoint_lsn);
	gauge(f, "mirrorfs_open_segment_bytes", "Size of the open journal segment.",
	      (double)g.open_segment_bytes);
	counter(f, "mirrorfs_journal_records_total", "Records journaled since the mount.",
		atomic_load(&m->records));
	counter(f, "mirrorfs_journal_bytes_total", "Bytes journaled since the mount.",
		atomic_load(&m->bytes));
	counter(f, "mirrorfs_journal_fsyncs_total", "Group-commit fsyncs of the journal.",
		atomic_load(&m->fsyncs));
	histogram(f, m);
	gauge(f, "mirrorfs_last_checkpoint_duration_seconds", "How long the last checkpoint took.",
	      (double)atomic_load(&m->ckpt_ns) / 1e9);
	gauge(f, "mirrorfs_last_snapshot_duration_seconds", "How long the last snapshot took.",
	      (double)atomic_load(&m->snap_ns) / 1e9);
	gauge(f, "mirrorfs_locked", "1 while the file system is locked (writers parked).",
	      strstr(lock, "\"locked\":true") ? 1 : 0);
	gauge(f, "mirrorfs_failed", "1 once a fatal error made the file system refuse writes.",
	      atomic_load(&fs->failed) ? 1 : 0);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

void fs_metrics_write(struct fs *fs, bool force)
{
	struct fs_metrics *m = &fs->metrics;
	_cleanup_free_ char *buf = NULL;
	uint64_t now = mfs_mono_ns();
	size_t len = 0;
	int r;

	if (!fs->opt.metrics || (!force && now - m->last_write_ns < NS_PER_S * 9 / 10))
		return;
	m->last_write_ns = now;
	r = metrics_text(fs, &buf, &len);
	if (r == 0)
		r = mfs_publish_path(fs->opt.metrics, buf, len, 0644);
	if (r < 0 && !m->warned)
		log_warning_errno(r, "Failed to write the metrics file '%s', ignoring: %m",
				  fs->opt.metrics);
	m->warned = r < 0;
}
