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
 *
 * --dry-run prints the plan from one LIST of PREFIX/ alone: the backup it
 * would rebuild and its objects, the segments it would fetch (LSN ranges
 * from their names, sizes from the LIST) and the target. Nothing is
 * downloaded and nothing written, not even a scratch folder; where a time
 * target ends is decided by the records, so the plan says so instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
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
#include "mirrorfs/macro.h"
#include "mirrorfs/s3.h"
#include "mirrorfs/segment.h"
#include "segset.h"

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
	struct mfs_s3 *s = mfs_s3_new(&f->opts, err, sizeof(err));
	int r;

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
	cli_bk_workers(worker, f, MFS_MIN((size_t)jobs, f->list.n));
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
		       int jobs, const char *base, uint64_t *ret_lsn)
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
	if (at >= 0)
		r = cli_bk_rebuild(&d, v, n, (size_t)at, base, jobs, &bytes);
	if (at >= 0 && !r)
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
	bool snapshot = false;
	int n = 0, jobs = 4, r;

	if (!args)
		return cli_fail("out of memory");
	r = take_args(argc, argv, args, &n, &url, &jobs, &until, &until_ns, &snapshot, f);
	if (!r && mfs_s3_parse_url(url, &bucket, &prefix) < 0)
		r = cli_fail("--from '%s' is not s3://BUCKET/PREFIX/", url);
	if (!r && (asprintf(&segs, "%s/segments", scratch) < 0 || asprintf(&base, "%s/base", scratch) < 0))
		r = cli_fail("out of memory");
	if (!r && mkdir(segs, 0700) < 0)
		r = cli_fail("cannot create folders in '%s': %m", scratch);
	/* base: the restored root, a backup's tree or empty */
	if (!r && !snapshot)
		r = from_backup(f, url, until, until_ns, jobs, base, &after);
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

/* ================================================================ --dry-run */

/* Whether folder @to is missing or empty (as the restore wants it); 1 after a message. */
static int check_target(const char *to)
{
	DIR *dir = opendir(to);
	struct dirent *e;
	bool empty = true;

	if (!dir && errno == ENOENT)
		return 0;
	if (!dir && errno == ENOTDIR)
		return cli_fail("refusing to restore into '%s': it is not a directory", to);
	if (!dir)
		return cli_fail("cannot open '%s': %m", to);
	while (empty && (e = readdir(dir)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(dir);
	return empty ? 0 : cli_fail("refusing to restore into '%s': it is not empty", to);
}

/* The objects of backup @v[@at]'s chain in @d->keys: their count and bytes. */
static size_t chain_objects(const struct cli_bk_dest *d, const struct mfs_bk_info *v, size_t n,
			    int at, uint64_t *ret_bytes)
{
	size_t pl = strlen(d->bkprefix), count = 0;

	*ret_bytes = 0;
	for (int i = at; i >= 0; i = v[i].parent[0] ? mfs_bk_find(v, n, v[i].parent) : -1)
		for (size_t j = 0; j < d->keys.n; j++) {
			const char *key = d->keys.v[j].key;

			if (!strncmp(key, d->bkprefix, pl) &&
			    !strncmp(key + pl, v[i].id, MFS_BK_ID_LEN) && key[pl + MFS_BK_ID_LEN] == '/') {
				count++;
				*ret_bytes += d->keys.v[j].size;
			}
		}
	return count;
}

/* The closed segments in @d->keys that can hold LSNs in (@after, @until],
 * sorted (their names sort by LSN); paths borrowed from the keys. */
static int plan_segments(const struct cli_bk_dest *d, uint64_t after, uint64_t until,
			 struct cli_segfile **ret, size_t *ret_n)
{
	size_t pl = strlen(d->segprefix), k = 0;
	struct cli_segfile *v = calloc(d->keys.n + 1, sizeof(*v));

	if (!v)
		return cli_fail("out of memory");
	for (size_t i = 0; i < d->keys.n; i++) {
		struct cli_segfile *s = &v[k];

		if (strncmp(d->keys.v[i].key, d->segprefix, pl) ||
		    !segment_key(d->keys.v[i].key, &s->first, &s->last) || s->first > until || s->last <= after)
			continue;
		s->path = d->keys.v[i].key;
		s->size = d->keys.v[i].size;
		k++;
	}
	*ret = v;
	*ret_n = k;
	return 0;
}

/* What the restore would do, from one LIST of PREFIX/. Returns 0, 1 or 2 after a message. */
static int plan_from(struct fetch *f, int argc, char **argv)
{
	static const char *const with_value[] = { "--to", "--until", "--snapshot", "--lsn",
						  "--auth-key", "--encrypt-key" };
	char **args = calloc((size_t)argc + 1, sizeof(*args)), until_text[64] = "";
	struct cli_bk_dest d = { .no_scratch = true };
	struct mfs_bk_info *v = NULL;
	struct cli_segfile *segs = NULL;
	const char *url = NULL, *to = NULL, *until_arg = NULL, *snap = NULL;
	uint64_t until = UINT64_MAX, until_ns = UINT64_MAX, after = 0, bytes = 0, lo, hi;
	uint64_t gap_from, gap_to;
	bool snapshot = false;
	size_t nb = 0, nsegs = 0;
	int n = 0, jobs = 4, at = -1, r;

	if (!args)
		return cli_fail("out of memory");
	r = take_args(argc, argv, args, &n, &url, &jobs, &until, &until_ns, &snapshot, f);
	for (int i = 1; !r && i < n; i++) { /* what cli_restore() would refuse */
		bool known = !strcmp(args[i], "--dry-run");

		for (size_t j = 0; !known && j < ARRAY_SIZE(with_value); j++)
			if (!strcmp(args[i], with_value[j]) && i + 1 < n) {
				known = true;
				to = j == 0 ? args[i + 1] : to;
				until_arg = j == 1 ? args[i + 1] : until_arg;
				snap = j == 2 ? args[i + 1] : snap;
				i++;
			}
		if (!known) {
			cli_fail("restore --from: unknown option or missing value '%s'", args[i]);
			r = 2;
		}
	}
	if (!r && !to) {
		cli_fail("restore --from needs --to DIR");
		r = 2;
	}
	if (!r && until_arg && strcmp(until_arg, "latest") && until == UINT64_MAX && until_ns == UINT64_MAX)
		r = cli_fail("--until '%s' is neither an LSN nor a time "
			     "(YYYY-MM-DDTHH:MM:SS[.frac][Z|+HH:MM] or @SECONDS[.frac])",
			     until_arg);
	if (!r && (check_target(to) || cli_probe_data_tree(to)))
		r = 1;
	d.opts = f->opts;
	d.url = url;
	if (!r)
		r = cli_bk_dest_open(&d);
	if (!r && mfs_s3_list(d.s3, d.bucket, d.prefix, NULL, 0, &d.keys) < 0)
		r = cli_fail("cannot list '%s': %s", url, mfs_s3_error(d.s3));
	if (!r)
		r = cli_bk_parse(&d, &v, &nb);
	if (!r && !snapshot)
		at = mfs_bk_pick(v, nb, until, until_ns);
	after = at >= 0 ? v[at].lsn : 0;
	if (!r)
		r = plan_segments(&d, after, until, &segs, &nsegs);
	if (!r && !nsegs && !after)
		r = cli_fail("no segment under '%ssegments/'", url);
	if (!r && !cli_segfiles_contiguous(segs, nsegs, after, until, &gap_from, &gap_to))
		r = cli_fail("gap in the segments under '%ssegments/': LSN %" PRIu64 "..%" PRIu64
			     " missing",
			     url, gap_from, gap_to);
	lo = nsegs ? segs[0].first : 0;
	hi = nsegs ? segs[nsegs - 1].last : 0;
	if (!r && until != UINT64_MAX && until > MFS_MAX(hi, after))
		r = cli_fail("--until %" PRIu64 " is past the last segment under '%ssegments/' (LSN %" PRIu64 ")",
			     until, url, MFS_MAX(hi, after));
	if (r)
		goto out;
	for (size_t i = 0; i < nsegs; i++)
		bytes += segs[i].size;
	printf("dry run: nothing downloaded or written (one LIST of '%s')\n", url);
	if (at >= 0) {
		uint64_t bk_bytes;
		size_t objects = chain_objects(&d, v, nb, at, &bk_bytes), k = 0;

		for (int i = at; v[i].parent[0] && (i = mfs_bk_find(v, nb, v[i].parent)) >= 0;)
			k++;
		printf("would rebuild backup %s (LSN %" PRIu64 ", a full backup and %zu incrementals, "
		       "%zu objects, %" PRIu64 " bytes)\n",
		       v[at].id, v[at].lsn, k, objects, bk_bytes);
	} else if (snapshot) {
		printf("would start from the snapshot '%s' (at its LSN)\n", snap);
	} else {
		printf("would start from empty (LSN 0): no complete backup at or before the target\n");
	}
	if (nsegs)
		printf("would fetch %zu segments (LSN %" PRIu64 "..%" PRIu64 ", %" PRIu64
		       " bytes) from '%ssegments/', %d in parallel\n",
		       nsegs, lo, hi, bytes, url, jobs);
	else
		printf("would fetch no segment: none under '%ssegments/' goes past LSN %" PRIu64 "\n",
		       url, after);
	if (until != UINT64_MAX) {
		printf("would replay after LSN %" PRIu64 " up to LSN %" PRIu64 " into '%s'\n", after,
		       until, to);
	} else if (until_ns != UINT64_MAX) {
		cli_iso_time(until_ns, until_text, sizeof(until_text));
		printf("would replay after LSN %" PRIu64 " up to %s into '%s': where that is is "
		       "decided by reading the records of these segments (at most LSN %" PRIu64
		       "), not from the LIST\n",
		       after, until_text, to, MFS_MAX(hi, after));
	} else {
		printf("would replay after LSN %" PRIu64 " up to the end of the segments (LSN %" PRIu64
		       ") into '%s'\n",
		       after, MFS_MAX(hi, after), to);
	}
out:
	free(segs);
	free(v);
	free(args);
	cli_bk_dest_done(&d);
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
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--dry-run")) /* the plan: no scratch folder */
			return plan_from(&f, argc, argv);
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
