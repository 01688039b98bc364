/* SPDX-License-Identifier: MIT */
/*
 * state.c - the applied-LSN state of a mirror, its status and metrics.
 *
 * STATE/applied (format and durable write: lib/applied.c) is replaced after
 * each batch's flush: data set id, applied LSN, time of the last applied
 * record, segments applied. It only ever moves forward. STATE/status.json
 * is replaced the same way (a shipper trims the primary's segments by the
 * applied LSN it reports: after a power cut it must not show an older
 * state's), so a reader never sees half of one. The --metrics file is
 * replaced by a rename too but not fsynced (mfs_publish_path): it is
 * written again after every batch, and nothing is decided from it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mirror.h"
#include "mirrorfs/applied.h"
#include "mirrorfs/io.h"
#include "mirrorfs/json.h"
#include "mirrorfs/macro.h"

#define STATUS_FILE "status.json"

int mirror_state_load(int dirfd, struct mfs_applied *ret)
{
	int r = mfs_applied_read(dirfd, ret);

	if (r == -ENOENT) {
		*ret = (struct mfs_applied){ 0 };
		return 0;
	}
	return r;
}

/*
 * The lag: how old the last applied record is while something waits (a
 * segment not yet applied, a gap); 0 when the mirror has applied all it
 * was given (an idle primary is not a lagging mirror).
 */
static double lag_seconds(const struct mirror_status *st)
{
	uint64_t now = mfs_now_ns(), rec = st->state->last_record_ns;

	if (!(st->waiting || st->gap_from) || !rec || rec >= now)
		return 0;
	return (double)(now - rec) / 1e9;
}

static int status_json(const struct mirror_status *st, char **ret, size_t *ret_len)
{
	const struct mfs_applied *s = st->state;
	char uuid[37] = "";
	FILE *f = open_memstream(ret, ret_len);

	if (!f)
		return -ENOMEM;
	if (s->have_data_set)
		mfs_uuid_format(s->data_set, uuid);
	/* dataset as in mirrorfs's status; data_set kept for one release */
	fprintf(f, "{\"dataset\":\"%s\",\"data_set\":\"%s\",\"applied_lsn\":%" PRIu64
		   ",\"last_record_ns\":%" PRIu64 ",\"lag_seconds\":%.3f,\"segments_applied\":%" PRIu64
		   ",\"segments_waiting\":%u,\"hold\":%s,",
		uuid, uuid, s->applied_lsn, s->last_record_ns, lag_seconds(st), s->segments_applied,
		st->waiting, st->hold ? "true" : "false");
	if (st->auth)
		fputs("\"authentication\":\"required\",", f);
	else
		fprintf(f, "\"authentication\":\"off: segments are applied without checking "
			   "their tags\",\"unauthenticated_applied\":%" PRIu64 ",",
			st->unauth_applied);
	if (s->have_chain)
		fprintf(f, "\"chain_lsn\":%" PRIu64 ",", s->chain_lsn);
	if (st->gap_from)
		fprintf(f, "\"gap\":{\"from\":%" PRIu64 ",\"to\":%" PRIu64 "},", st->gap_from,
			st->gap_to);
	else
		fputs("\"gap\":null,", f);
	fputs("\"quarantined\":[", f);
	for (unsigned i = 0; i < st->n_quarantined; i++) {
		if (i)
			fputc(',', f);
		mfs_json_fputs(f, st->quarantined[i]);
	}
	fprintf(f, "],\"last_segment_bytes_per_sec\":%.0f,", st->last_bytes_per_sec);
	if (st->retries)
		fprintf(f, "\"retry\":{\"count\":%u,\"in_ms\":%u},", st->retries, st->retry_ms);
	else
		fputs("\"retry\":null,", f);
	fputs("\"last_error\":", f);
	if (st->last_error)
		mfs_json_fputs(f, st->last_error);
	else
		fputs("null", f);
	fputs("}\n", f);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

int mirror_status_write(int dirfd, const struct mirror_status *st)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = status_json(st, &buf, &len);
	if (r < 0)
		return r;
	return mfs_replace_file(dirfd, STATUS_FILE, buf, len, 0644);
}

/* Print @s as a Prometheus label value (escape \\, " and newline). */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* One family with one sample, labelled with the data set and the instance. */
static void sample(FILE *f, const char *labels, const char *name, const char *type,
		   const char *help, double v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s{%s} %.17g\n", name, help, name, type, name,
		labels, v);
}

static int metrics_text(const struct mirror_status *st, char **ret, size_t *ret_len)
{
	const struct mfs_applied *s = st->state;
	_cleanup_free_ char *labels = NULL;
	char uuid[37] = "";
	size_t llen = 0;
	FILE *f;

	if (s->have_data_set)
		mfs_uuid_format(s->data_set, uuid);
	f = open_memstream(&labels, &llen);
	if (!f)
		return -ENOMEM;
	fprintf(f, "dataset=\"%s\",instance=\"", uuid);
	label_value(f, st->instance ? st->instance : "");
	fputc('"', f);
	if (fclose(f) != 0)
		return -ENOMEM;
	f = open_memstream(ret, ret_len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "# HELP mirrord_build_info The mirrord version (always 1).\n"
		   "# TYPE mirrord_build_info gauge\nmirrord_build_info{%s,version=\"%s\"} 1\n",
		labels, PACKAGE_VERSION);
	sample(f, labels, "mirrord_applied_lsn", "gauge",
	       "Highest LSN applied to the data directory.", (double)s->applied_lsn);
	sample(f, labels, "mirrord_last_record_timestamp_seconds", "gauge",
	       "Primary's time of the last applied record.", (double)s->last_record_ns / 1e9);
	sample(f, labels, "mirrord_lag_seconds", "gauge",
	       "Age of the last applied record while segments wait (0: all applied).",
	       lag_seconds(st));
	sample(f, labels, "mirrord_segments_applied_total", "counter", "Segments applied.",
	       (double)s->segments_applied);
	sample(f, labels, "mirrord_segments_waiting", "gauge",
	       "Segments in incoming not yet applied.", st->waiting);
	sample(f, labels, "mirrord_gap_lsns", "gauge",
	       "LSNs missing before the next segment (0: no gap).",
	       st->gap_from ? (double)(st->gap_to - st->gap_from + 1) : 0);
	sample(f, labels, "mirrord_quarantined", "gauge", "Segments in the quarantine folder.",
	       st->n_quarantined);
	sample(f, labels, "mirrord_retries", "gauge",
	       "Passes in a row that failed for a local reason (0: none).", st->retries);
	sample(f, labels, "mirrord_hold", "gauge",
	       "Hold mode (segments validated, not applied).", st->hold);
	sample(f, labels, "mirrord_last_segment_bytes_per_second", "gauge",
	       "Apply speed of the last segment.", st->last_bytes_per_sec);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

int mirror_metrics_write(const char *path, const struct mirror_status *st)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = metrics_text(st, &buf, &len);
	if (r < 0)
		return r;
	return mfs_publish_path(path, buf, len, 0644);
}
