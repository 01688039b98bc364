/* SPDX-License-Identifier: MIT */
/*
 * prune.c - `mirrorctl prune [--dry-run] s3://BUCKET/PREFIX/
 * --keep-backups N | --keep-within DURATION`: delete the backups and the
 * segments a restore window no longer needs.
 *
 * What is kept is decided by mfs_bk_plan_prune() (lib/backup.c) from one
 * LIST of PREFIX/backups/: the backups asked for, every parent of a kept
 * incremental, and uploads still running. The window starts at the oldest
 * backup kept for itself: every segment that ends after its LSN stays
 * (the restore of any point from there on needs them), the ones ending at
 * or before it go. With no complete backup nothing is deleted: the window
 * then starts at LSN 1 and needs every segment. A backup's manifest is
 * deleted before its packs, so a prune cut short leaves a backup that is
 * visibly incomplete, never one that looks whole and is not.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "restore.h"

#include "bkcommon.h"
#include "cli.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

static const char usage_text[] = "usage: mirrorctl prune [--dry-run] [--s3-endpoint URL] "
				 "s3://BUCKET/PREFIX/ --keep-backups N|--keep-within DURATION\n";

struct prune {
	struct cli_bk_dest d;
	bool dry_run;
	unsigned keep_backups;
	uint64_t keep_within_ns;
	uint64_t objects, bytes, segments;
};

/* "30d", "12h", "15m", "90s", "2w" or seconds: ns in *@ret. */
static bool parse_duration(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	uint64_t unit = 1;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || (*end && end[1]))
		return false;
	switch (*end) {
	case 'w':
		unit = 7 * 86400;
		break;
	case 'd':
		unit = 86400;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'm':
		unit = 60;
		break;
	case 's':
	case 0:
		break;
	default:
		return false;
	}
	if (v > UINT64_MAX / 1000000000u / unit)
		return false;
	*ret = v * unit * 1000000000u;
	return true;
}

static int parse_args(struct prune *p, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool val = i + 1 < argc;

		if (!strcmp(a, "--dry-run")) {
			p->dry_run = true;
		} else if (!strcmp(a, "--s3-endpoint") && val) {
			p->d.opts.endpoint = argv[++i];
		} else if (!strcmp(a, "--keep-backups") && val) {
			uint64_t n;
			if (!cli_parse_lsn(argv[++i], &n) || n < 1 || n > 1000000)
				return cli_fail("--keep-backups '%s': want 1 or more", argv[i]);
			p->keep_backups = (unsigned)n;
		} else if (!strcmp(a, "--keep-within") && val) {
			if (!parse_duration(argv[++i], &p->keep_within_ns) || !p->keep_within_ns)
				return cli_fail("--keep-within '%s': want a duration such as 30d, "
						"12h, 90m or 3600s",
						argv[i]);
		} else if (a[0] != '-' && !p->d.url) {
			p->d.url = a;
		} else {
			return fputs(usage_text, stderr), 2;
		}
	}
	if (!p->d.url || !p->keep_backups == !p->keep_within_ns)
		return fputs(usage_text, stderr), 2;
	return 0;
}

static int delete_key(struct prune *p, const struct mfs_s3_object *o)
{
	printf("%s %s (%" PRIu64 " bytes)\n", p->dry_run ? "would delete" : "delete", o->key,
	       o->size);
	p->objects++;
	p->bytes += o->size;
	if (!p->dry_run && mfs_s3_delete(p->d.s3, p->d.bucket, o->key) < 0)
		return cli_fail("cannot delete %s: %s", o->key, mfs_s3_error(p->d.s3));
	return 0;
}

/* Every key of backup @id: its manifest first. 0, or 1 after a message. */
static int delete_backup(struct prune *p, const char *id)
{
	size_t pl = strlen(p->d.bkprefix);

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < p->d.keys.n; i++) {
			const struct mfs_s3_object *o = &p->d.keys.v[i];
			char kid[MFS_BK_ID_LEN + 1], parent[MFS_BK_ID_LEN + 1];
			bool man;

			if (!mfs_bk_key_parse(o->key + pl, kid, &man, parent) || strcmp(kid, id) ||
			    man != (pass == 0))
				continue;
			if (delete_key(p, o))
				return 1;
		}
	return 0;
}

/* The segments ending at or before @window. 0, or 1 after a message. */
static int delete_segments(struct prune *p, uint64_t window)
{
	struct mfs_s3_list l = { 0 };
	int r = 0;

	if (mfs_s3_list(p->d.s3, p->d.bucket, p->d.segprefix, NULL, 0, &l) < 0)
		return cli_fail("cannot list '%ssegments/': %s", p->d.url, mfs_s3_error(p->d.s3));
	for (size_t i = 0; i < l.n && !r; i++) {
		const char *name = strrchr(l.v[i].key, '/');
		uint64_t first, last;

		if (!mfs_seg_name_parse(name ? name + 1 : l.v[i].key, &first, &last) ||
		    last > window)
			continue;
		p->segments++;
		r = delete_key(p, &l.v[i]);
	}
	mfs_s3_list_done(&l);
	return r;
}

static int run(struct prune *p)
{
	struct mfs_bk_info *v = NULL;
	uint64_t window = 0;
	size_t n = 0, kept;
	int r = 0;

	if (cli_bk_list(&p->d, &v, &n))
		return 1;
	kept = mfs_bk_plan_prune(v, n, p->keep_backups, p->keep_within_ns, mfs_now_ns(), &window);
	if (!window) {
		printf("nothing to prune under '%s': no complete backup to start a restore window "
		       "(%zu backups, every segment is needed)\n",
		       p->d.url, n);
		free(v);
		return 0;
	}
	for (size_t i = 0; i < n && !r; i++) {
		if (v[i].keep)
			printf("keep backup %s (LSN %" PRIu64 ")%s\n", v[i].id, v[i].lsn,
			       !v[i].complete ? ", incomplete (an upload still running?)" : "");
		else
			r = delete_backup(p, v[i].id);
	}
	if (!r)
		r = delete_segments(p, window);
	if (!r)
		printf("%s %" PRIu64 " objects (%" PRIu64 " bytes): %zu backups, %" PRIu64
		       " segments; kept %zu backups and the segments after LSN %" PRIu64 "\n",
		       p->dry_run ? "dry run: would delete" : "deleted", p->objects, p->bytes,
		       n - kept, p->segments, kept, window);
	free(v);
	return r;
}

int cli_prune(int argc, char **argv)
{
	struct prune p = { 0 };
	int r;

	cli_set_prefix("mirrorctl prune");
	mfs_s3_opts_from_env(&p.d.opts);
	r = parse_args(&p, argc, argv);
	if (r == 0)
		r = cli_bk_dest_open(&p.d) ? 1 : run(&p);
	cli_bk_dest_done(&p.d);
	return r;
}
