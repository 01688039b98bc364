/* SPDX-License-Identifier: MIT */
/*
 * s3fetch.c - `mirrorctl restore --from s3://BUCKET/PREFIX/ ...`: the
 * newest complete backup at or before the target (mirrorctl backup, under
 * PREFIX/backups/) is rebuilt into a scratch folder (bkcommon.c), then the
 * segments mirrorfs-ship put under PREFIX/segments/ after its LSN are
 * downloaded, by --jobs parallel clients, each verified (MD5 against the
 * ETag); then the ordinary restore runs on that folder (from the backup's
 * tree at its LSN; without a backup from an empty base at LSN 0; or from
 * --snapshot when given) and the scratch folders are removed.
 *
 * Only the segments a restore can need are fetched: none that ends at or
 * before the backup's LSN, and with --until LSN none that starts after it.
 * One LIST (all pages) of PREFIX/backups/ and one of PREFIX/segments/.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore.h"

#include "bkcommon.h"
#include "cli.h"
#include "mirrorfs/io.h"
#include "mirrorfs/s3.h"
#include "mirrorfs/segment.h"

struct fetch {
	struct mfs_s3_opts opts;
	const char *bucket, *dir;
	struct mfs_s3_list list; /* the keys to fetch */
	pthread_mutex_t lock;
	size_t next, done;
	uint64_t bytes, total;
	int failed;
	char err[512];
	struct cli_progress prog;
};

/* A closed segment's key: PREFIX/segments/FIRST-LAST.mfsj, the name as
 * mfs_seg_name() makes it. */
static bool segment_key(const char *key, uint64_t *first, uint64_t *last)
{
	const char *n = strrchr(key, '/');

	return mfs_seg_name_parse(n ? n + 1 : key, first, last);
}

static void *worker(void *arg)
{
	struct fetch *f = arg;
	char err[256];
	struct mfs_s3 *s = mfs_s3_new(&f->opts, err, sizeof(err));

	for (;;) {
		struct mfs_s3_object *o;
		char *path = NULL;
		int r;

		pthread_mutex_lock(&f->lock);
		if (!s && !f->failed) {
			f->failed = 1;
			snprintf(f->err, sizeof(f->err), "%s", err);
		}
		o = !f->failed && f->next < f->list.n ? &f->list.v[f->next++] : NULL;
		pthread_mutex_unlock(&f->lock);
		if (!o)
			break;
		if (asprintf(&path, "%s/%s", f->dir, strrchr(o->key, '/') + 1) < 0)
			path = NULL;
		r = path ? mfs_s3_get_file(s, f->bucket, o->key, path) : -ENOMEM;
		free(path);
		pthread_mutex_lock(&f->lock);
		if (r < 0 && !f->failed) {
			f->failed = 1;
			snprintf(f->err, sizeof(f->err), "%s", r == -ENOMEM ? "out of memory" : mfs_s3_error(s));
		}
		f->done++;
		f->bytes += o->size;
		cli_progress_set(&f->prog, f->bytes);
		pthread_mutex_unlock(&f->lock);
	}
	mfs_s3_free(s);
	return NULL;
}

/* Keep the keys of closed segments that can hold LSNs in (@after, @until]. */
static void select_keys(struct fetch *f, uint64_t after, uint64_t until)
{
	size_t k = 0;

	for (size_t i = 0; i < f->list.n; i++) {
		uint64_t first, last;

		if (segment_key(f->list.v[i].key, &first, &last) && first <= until && last > after) {
			f->list.v[k++] = f->list.v[i];
			f->total += f->list.v[i].size;
		} else {
			free(f->list.v[i].key);
		}
	}
	f->list.n = k;
}

/* List, then download with @jobs threads. Returns 0, or 1 after a message. */
static int fetch_all(struct fetch *f, const char *url, const char *prefix, uint64_t after,
		     uint64_t until, int jobs)
{
	char err[256], *seg_prefix = NULL;
	pthread_t tid[64];
	struct mfs_s3 *s = mfs_s3_new(&f->opts, err, sizeof(err));
	int n = 0, r;

	if (!s)
		return cli_fail("%s", err);
	if (asprintf(&seg_prefix, "%s%ssegments/", prefix, *prefix && prefix[strlen(prefix) - 1] != '/' ? "/" : "") < 0)
		seg_prefix = NULL;
	r = seg_prefix ? mfs_s3_list(s, f->bucket, seg_prefix, NULL, 0, &f->list) : -ENOMEM;
	if (r < 0)
		cli_fail("cannot list '%s': %s", url, seg_prefix ? mfs_s3_error(s) : "out of memory");
	free(seg_prefix);
	mfs_s3_free(s);
	if (r < 0)
		return 1;
	select_keys(f, after, until);
	if (!f->list.n && !after)
		return cli_fail("no segment under '%ssegments/'", url);
	cli_progress_phase(&f->prog, "downloading", f->total);
	for (; n < jobs && (size_t)n < f->list.n; n++)
		if (pthread_create(&tid[n], NULL, worker, f))
			break;
	if (!n)
		worker(f);
	for (int i = 0; i < n; i++)
		pthread_join(tid[i], NULL);
	cli_progress_end(&f->prog);
	if (f->failed)
		return cli_fail("download from '%s' failed: %s", url, f->err);
	return 0;
}

bool cli_restore_wants_s3(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--from"))
			return true;
	return false;
}

/* Take --from URL, --jobs N, --s3-endpoint URL out of @argv (into @f and
 * the returned values); the rest, with the scratch folders, goes to @out. */
static int take_args(int argc, char **argv, char **out, int *nout, const char **url, int *jobs,
		     uint64_t *until, uint64_t *until_ns, bool *snapshot, struct fetch *f)
{
	*nout = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;

		if (i && (!strcmp(a, "--from") || !strcmp(a, "--jobs") || !strcmp(a, "--s3-endpoint"))) {
			if (!has_val)
				return cli_fail("%s needs a value", a), 2;
			if (!strcmp(a, "--from"))
				*url = argv[i + 1];
			else if (!strcmp(a, "--s3-endpoint"))
				f->opts.endpoint = argv[i + 1];
			else if ((*jobs = atoi(argv[i + 1])) < 1 || *jobs > 64)
				return cli_fail("--jobs '%s': want 1..64", argv[i + 1]);
			i++;
			continue;
		}
		if (!strcmp(a, "--segments"))
			return cli_fail("--from and --segments exclude each other");
		if (!strcmp(a, "--snapshot"))
			*snapshot = true;
		if (!strcmp(a, "--until") && has_val && !cli_parse_lsn(argv[i + 1], until)) {
			*until = UINT64_MAX;
			if (cli_parse_time(argv[i + 1], until_ns) < 0)
				*until_ns = UINT64_MAX;
		}
		out[(*nout)++] = argv[i];
	}
	return 0;
}

/*
 * The newest backup at or before the target (LSN or time), rebuilt into
 * @base: its LSN in *@ret_lsn. None there: 0 and *@ret_lsn 0 (restore
 * from empty). Returns 0, or 1 after a message.
 */
static int from_backup(struct fetch *f, const char *url, uint64_t until, uint64_t until_ns,
		       int jobs, bool dry_run, const char *base, uint64_t *ret_lsn)
{
	struct cli_bk_dest d = { .opts = f->opts, .url = url };
	struct mfs_bk_info *v = NULL;
	uint64_t t0 = mfs_mono_ns(), bytes = 0;
	size_t n = 0, k = 0;
	int at, r;

	*ret_lsn = 0;
	r = cli_bk_dest_open(&d);
	if (!r)
		r = cli_bk_list(&d, &v, &n);
	at = r ? -1 : mfs_bk_pick(v, n, until, until_ns);
	for (int i = at; i >= 0 && v[i].parent[0]; i = mfs_bk_find(v, n, v[i].parent))
		k++;
	if (at >= 0 && dry_run) { /* the plan only: an empty base at the backup's LSN */
		printf("would rebuild backup %s (LSN %" PRIu64 ", a full backup and %zu "
		       "incrementals)\n",
		       v[at].id, v[at].lsn, k);
		r = mkdir(base, 0700) < 0 ? cli_fail("cannot create '%s': %m", base) : 0;
	} else if (at >= 0) {
		r = cli_bk_rebuild(&d, v, n, (size_t)at, base, jobs, &bytes);
	}
	if (at >= 0 && !r && !dry_run)
		printf("rebuilt backup %s (LSN %" PRIu64 ", a full backup and %zu incrementals, "
		       "%" PRIu64 " bytes) in %.3f s\n",
		       v[at].id, v[at].lsn, k, bytes, (double)(mfs_mono_ns() - t0) / 1e9);
	if (at >= 0 && !r)
		*ret_lsn = v[at].lsn;
	free(v);
	cli_bk_dest_done(&d);
	return r;
}

static int restore_from(struct fetch *f, int argc, char **argv, const char *scratch)
{
	char **args = calloc((size_t)argc + 8, sizeof(*args));
	char *segs = NULL, *base = NULL, *bucket = NULL, *prefix = NULL, lsn_text[24] = "0";
	const char *url = NULL;
	uint64_t until = UINT64_MAX, until_ns = UINT64_MAX, after = 0, t0;
	bool snapshot = false, dry_run = false;
	int n = 0, jobs = 4, r;

	if (!args)
		return cli_fail("out of memory");
	for (int i = 1; i < argc; i++)
		dry_run |= !strcmp(argv[i], "--dry-run");
	r = take_args(argc, argv, args, &n, &url, &jobs, &until, &until_ns, &snapshot, f);
	if (!r && mfs_s3_parse_url(url, &bucket, &prefix) < 0)
		r = cli_fail("--from '%s' is not s3://BUCKET/PREFIX/", url);
	if (!r && (asprintf(&segs, "%s/segments", scratch) < 0 || asprintf(&base, "%s/base", scratch) < 0))
		r = cli_fail("out of memory");
	if (!r && mkdir(segs, 0700) < 0)
		r = cli_fail("cannot create folders in '%s': %m", scratch);
	/* base: the restored root, a backup's tree or empty */
	if (!r && !snapshot)
		r = from_backup(f, url, until, until_ns, jobs, dry_run, base, &after);
	if (!r && !after && mkdir(base, 0755) < 0)
		r = cli_fail("cannot create folders in '%s': %m", scratch);
	f->bucket = bucket;
	f->dir = segs;
	t0 = mfs_mono_ns();
	if (!r)
		r = fetch_all(f, url, prefix, after, until, jobs);
	if (!r) {
		printf("fetched %zu segments (%" PRIu64 " bytes) from '%s' in %.3f s, %d in parallel\n",
		       f->list.n, f->bytes, url, (double)(mfs_mono_ns() - t0) / 1e9, jobs);
		fflush(stdout);
		static char o_segs[] = "--segments", o_snap[] = "--snapshot", o_lsn[] = "--lsn";

		args[n++] = o_segs;
		args[n++] = segs;
		if (!snapshot) { /* from the backup, or from empty: the bucket holds every LSN from 1 */
			snprintf(lsn_text, sizeof(lsn_text), "%" PRIu64, after);
			args[n++] = o_snap;
			args[n++] = base;
			args[n++] = o_lsn;
			args[n++] = lsn_text;
		}
		r = cli_restore(n, args);
	}
	mfs_s3_list_done(&f->list);
	free(args);
	free(segs);
	free(base);
	free(bucket);
	free(prefix);
	return r;
}

int cli_restore_s3(int argc, char **argv)
{
	struct fetch f = { .lock = PTHREAD_MUTEX_INITIALIZER };
	const char *tmp = getenv("TMPDIR");
	char *scratch = NULL;
	int r;

	f.prog.on = isatty(STDERR_FILENO);
	mfs_s3_opts_from_env(&f.opts);
	if (asprintf(&scratch, "%s/mirrorctl-restore.XXXXXX", tmp && *tmp ? tmp : "/var/tmp") < 0)
		return cli_fail("out of memory");
	if (!mkdtemp(scratch)) {
		r = cli_fail("cannot create a scratch folder '%s': %m", scratch);
		free(scratch);
		return r;
	}
	r = restore_from(&f, argc, argv, scratch);
	if (mfs_rm_tree(AT_FDCWD, scratch) < 0)
		cli_warn("cannot remove the scratch folder '%s'", scratch);
	free(scratch);
	return r;
}
