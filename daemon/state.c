/* SPDX-License-Identifier: MIT */
/*
 * state.c - the applied-LSN state of a mirror, its status and metrics.
 *
 * STATE/applied is a small text file ("key value" lines) replaced durably
 * with mfs_replace_file() after each segment's flush: data set id, applied
 * LSN, time of the last applied record. It only ever moves forward.
 * STATE/status.json and the --metrics file are written the same way, so a
 * reader never sees half of one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mirror.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#define STATE_FILE "applied"
#define STATUS_FILE "status.json"

int mirror_state_load(int dirfd, struct mirror_state *ret)
{
	_cleanup_free_ char *text = NULL;
	struct mirror_state s = { 0 };
	char key[32], val[64];
	const char *p;
	int r, n;

	r = mfs_read_file(dirfd, STATE_FILE, 4096, &text, NULL);
	if (r == -ENOENT) {
		*ret = s;
		return 0;
	}
	if (r < 0)
		return r;
	for (p = text; sscanf(p, "%31s %63s%n", key, val, &n) == 2; p += n) {
		if (!strcmp(key, "data_set")) {
			if (mfs_uuid_parse(val, s.uuid) < 0)
				return -EBADMSG;
			s.have_uuid = true;
		} else if (!strcmp(key, "applied_lsn")) {
			s.applied_lsn = strtoull(val, NULL, 10);
		} else if (!strcmp(key, "last_record_ns")) {
			s.last_record_ns = strtoull(val, NULL, 10);
		} else if (!strcmp(key, "segments_applied")) {
			s.segments_applied = strtoull(val, NULL, 10);
		}
	}
	*ret = s;
	return 0;
}

int mirror_state_save(int dirfd, const struct mirror_state *s)
{
	char uuid[37] = "-", buf[256];
	int n;

	if (s->have_uuid)
		mfs_uuid_format(s->uuid, uuid);
	n = snprintf(buf, sizeof(buf),
		     "data_set %s\napplied_lsn %" PRIu64 "\nlast_record_ns %" PRIu64
		     "\nsegments_applied %" PRIu64 "\n",
		     uuid, s->applied_lsn, s->last_record_ns, s->segments_applied);
	return mfs_replace_file(dirfd, STATE_FILE, buf, (size_t)n, 0644);
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
	fprintf(f, "],\"last_segment_bytes_per_sec\":%.0f,\"last_error\":", st->last_bytes_per_sec);
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
