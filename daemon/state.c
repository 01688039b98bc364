/* SPDX-License-Identifier: MIT */
/*
 * state.c - the applied-LSN state of a mirror, its status and metrics.
 *
 * STATE/applied (format and durable write: lib/applied.c) is replaced after
 * each batch's flush: data set id, applied LSN, time of the last applied
 * record, segments applied. It only ever moves forward. STATE/status.json
 * and the --metrics file are written the same way, so a reader never sees
 * half of one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirror.h"
#include "mirrorfs/applied.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#define STATUS_FILE "status.json"

int mirror_state_load(int dirfd, struct mirror_state *ret)
{
	struct mfs_applied a;
	int r;

	r = mfs_applied_read(dirfd, &a);
	if (r == -ENOENT) {
		*ret = (struct mirror_state){ 0 };
		return 0;
	}
	if (r < 0)
		return r;
	*ret = (struct mirror_state){
		.have_uuid = a.have_data_set,
		.applied_lsn = a.applied_lsn,
		.last_record_ns = a.last_record_ns,
		.segments_applied = a.segments_applied,
	};
	memcpy(ret->uuid, a.data_set, sizeof(ret->uuid));
	return 0;
}

int mirror_state_save(int dirfd, const struct mirror_state *s)
{
	struct mfs_applied a = {
		.have_data_set = s->have_uuid,
		.applied_lsn = s->applied_lsn,
		.last_record_ns = s->last_record_ns,
		.segments_applied = s->segments_applied,
	};

	memcpy(a.data_set, s->uuid, sizeof(a.data_set));
	return mfs_applied_write(dirfd, &a);
}

/* Append @s to @b as a JSON string (names are plain, but escape anyway). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static int status_json(const struct mirror_status *st, char **ret, size_t *ret_len)
{
	const struct mirror_state *s = st->state;
	char uuid[37] = "";
	FILE *f = open_memstream(ret, ret_len);

	if (!f)
		return -ENOMEM;
	if (s->have_uuid)
		mfs_uuid_format(s->uuid, uuid);
	fprintf(f, "{\"data_set\":\"%s\",\"applied_lsn\":%" PRIu64
		   ",\"last_record_ns\":%" PRIu64 ",\"segments_applied\":%" PRIu64
		   ",\"segments_waiting\":%u,\"hold\":%s,",
		uuid, s->applied_lsn, s->last_record_ns, s->segments_applied, st->waiting,
		st->hold ? "true" : "false");
	if (st->gap_from)
		fprintf(f, "\"gap\":{\"from\":%" PRIu64 ",\"to\":%" PRIu64 "},", st->gap_from,
			st->gap_to);
	else
		fputs("\"gap\":null,", f);
	fputs("\"quarantined\":[", f);
	for (unsigned i = 0; i < st->n_quarantined; i++) {
		if (i)
			fputc(',', f);
		json_str(f, st->quarantined[i]);
	}
	fprintf(f, "],\"last_segment_bytes_per_sec\":%.0f,", st->last_bytes_per_sec);
	if (st->retries)
		fprintf(f, "\"retry\":{\"count\":%u,\"in_ms\":%u},", st->retries, st->retry_ms);
	else
		fputs("\"retry\":null,", f);
	fputs("\"last_error\":", f);
	if (st->last_error)
		json_str(f, st->last_error);
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

static int metrics_text(const struct mirror_status *st, char **ret, size_t *ret_len)
{
	const struct mirror_state *s = st->state;
	FILE *f = open_memstream(ret, ret_len);

	if (!f)
		return -ENOMEM;
	fprintf(f,
		"# HELP mirrord_applied_lsn Highest LSN applied to the data directory.\n"
		"# TYPE mirrord_applied_lsn gauge\nmirrord_applied_lsn %" PRIu64 "\n"
		"# HELP mirrord_last_record_timestamp_seconds Time of the last applied record.\n"
		"# TYPE mirrord_last_record_timestamp_seconds gauge\n"
		"mirrord_last_record_timestamp_seconds %.3f\n"
		"# HELP mirrord_segments_applied_total Segments applied.\n"
		"# TYPE mirrord_segments_applied_total counter\n"
		"mirrord_segments_applied_total %" PRIu64 "\n"
		"# HELP mirrord_segments_waiting Segments in incoming not yet applied.\n"
		"# TYPE mirrord_segments_waiting gauge\nmirrord_segments_waiting %u\n"
		"# HELP mirrord_gap_lsns LSNs missing before the next segment (0: no gap).\n"
		"# TYPE mirrord_gap_lsns gauge\nmirrord_gap_lsns %" PRIu64 "\n"
		"# HELP mirrord_quarantined Segments in the quarantine folder.\n"
		"# TYPE mirrord_quarantined gauge\nmirrord_quarantined %u\n"
		"# HELP mirrord_hold Hold mode (segments validated, not applied).\n"
		"# TYPE mirrord_hold gauge\nmirrord_hold %d\n"
		"# HELP mirrord_last_segment_bytes_per_second Apply speed of the last segment.\n"
		"# TYPE mirrord_last_segment_bytes_per_second gauge\n"
		"mirrord_last_segment_bytes_per_second %.0f\n",
		s->applied_lsn, (double)s->last_record_ns / 1e9, s->segments_applied, st->waiting,
		st->gap_from ? st->gap_to - st->gap_from + 1 : 0, st->n_quarantined, st->hold,
		st->last_bytes_per_sec);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

int mirror_metrics_write(const char *path, const struct mirror_status *st)
{
	_cleanup_free_ char *buf = NULL, *dcopy = strdup(path), *bcopy = strdup(path);
	_cleanup_close_ int dirfd = -EBADF;
	size_t len = 0;
	int r;

	if (!dcopy || !bcopy)
		return -ENOMEM;
	r = metrics_text(st, &buf, &len);
	if (r < 0)
		return r;
	dirfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	return mfs_replace_file(dirfd, basename(bcopy), buf, len, 0644);
}
