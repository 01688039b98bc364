/* SPDX-License-Identifier: MIT */
/*
 * restore.c - `mirrorctl restore --snapshot PATH [--lsn N] [--until LSN|TIME]
 * --segments DIR --to DIR`: point-in-time restore from a snapshot plus the
 * segments after it.
 *
 * 1. The snapshot's LSN N comes from the attribute user.mirrorfs.lsn of
 *    PATH (or --lsn), its data set from user.mirrorfs.dataset when present.
 *    The segments of DIR after N are listed and checked for gaps by name
 *    before anything is written.
 * 2. The tree under PATH is copied into the --to folder, which must be
 *    missing or empty: regular files, directories, symlinks (the link, never
 *    followed), fifos and sockets, with permissions, owners (as root),
 *    access and modification times, extended attributes and hard links.
 *    Everything is opened relative to directory fds (no path length limit,
 *    two fds per level) with O_NOFOLLOW.
 * 3. The records after N are applied with the replay engine (lib/segrun.c) up
 *    to --until; then the engine's flush, and one syncfs for the copy, make
 *    the restored tree durable.
 *
 * A target the segments do not reach is an error (exit 1, naming the
 * target and the last point reached), as PostgreSQL's recovery target: an
 * LSN past the last segment is refused before anything is written; a time
 * is reached only once a record after it is seen, so a time past the last
 * record fails after the replay (the --to folder then holds that last
 * point). `--until latest` (or no --until) asks for whatever is there.
 * The --to folder must not be inside a data folder in use (its lock).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "restore.h"

#include "cli.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/xattr.h"
#include "segset.h"


static const char usage_text[] = "usage: mirrorctl restore [--dry-run] --snapshot PATH [--lsn N] "
				 "[--until LSN|TIME|latest] [--auth-key FILE]... [--encrypt-key FILE]... --segments DIR --to DIR\n"
				 "       mirrorctl restore [--snapshot PATH [--lsn N]] [--until LSN|TIME|latest] "
				 "--from s3://BUCKET/PREFIX/ [--jobs N] [--s3-endpoint URL] --to DIR\n";

struct restore {
	const char *snapshot, *segments, *to;
	bool dry_run; /* the plan on stdout, nothing written */
	bool have_lsn;
	uint64_t lsn; /* the snapshot's */
	bool have_uuid;
	uint8_t uuid[16];
	uint64_t until_lsn, until_ns; /* UINT64_MAX: no limit */
	struct mfs_keyring keys;      /* --auth-key: segments must be authenticated */
};

/* ================================================================ parsing */

/* Returns 0, 1 after a message, 2 after the usage. */
static int parse_args(int argc, char **argv, struct restore *o)
{
	const char *lsn = NULL, *until = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dry-run")) {
			o->dry_run = true;
			continue;
		}
		int k = cli_key_opt(&o->keys, argc, argv, &i);

		if (k < 0)
			return 1;
		if (k)
			continue;
		const char **slot = !strcmp(argv[i], "--snapshot")   ? &o->snapshot
				    : !strcmp(argv[i], "--segments") ? &o->segments
				    : !strcmp(argv[i], "--to")	     ? &o->to
				    : !strcmp(argv[i], "--lsn")	     ? &lsn
				    : !strcmp(argv[i], "--until")    ? &until
								     : NULL;
		if (!slot || i + 1 >= argc) {
			fputs(usage_text, stderr);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!o->snapshot || !o->segments || !o->to) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (lsn && !cli_parse_lsn(lsn, &o->lsn))
		return cli_fail("--lsn '%s' is not an LSN", lsn);
	o->have_lsn = lsn != NULL;
	if (until && !strcmp(until, "latest"))
		return 0; /* whatever the segments hold: no target to miss */
	if (until && !cli_parse_lsn(until, &o->until_lsn) && cli_parse_time(until, &o->until_ns) < 0)
		return cli_fail("--until '%s' is neither an LSN nor a time "
				"(YYYY-MM-DDTHH:MM:SS[.frac][Z|+HH:MM] or @SECONDS[.frac])",
				until);
	return 0;
}

/* ================================================================ snapshot and target */

/*
 * Read attribute @name of @fd into @buf (trailing newline dropped).
 * Returns 1, 0 if absent, or -errno.
 */
static int get_attr(int fd, const char *name, char *buf, size_t cap)
{
	ssize_t n = fgetxattr(fd, name, buf, cap - 1);

	if (n < 0)
		return errno == ENODATA || errno == ENOTSUP ? 0 : -errno;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 1;
}

/* The snapshot's LSN (--lsn wins) and data set. Returns 0, or 1 after a message. */
static int snapshot_identity(int fd, struct restore *o)
{
	char buf[64];
	uint64_t lsn = 0;
	int r;

	r = get_attr(fd, SNAP_XATTR_LSN, buf, sizeof(buf));
	if (r < 0 && r != -ERANGE) {
		errno = -r;
		return cli_fail("cannot read %s of '%s': %m", SNAP_XATTR_LSN, o->snapshot);
	}
	if (r != 0 && (r < 0 || !cli_parse_lsn(buf, &lsn)))
		return cli_fail("'%s': %s is not an LSN", o->snapshot, SNAP_XATTR_LSN);
	if (r > 0 && o->have_lsn && lsn != o->lsn)
		cli_warn("'%s' says LSN %" PRIu64 "; using --lsn %" PRIu64, o->snapshot, lsn,
			 o->lsn);
	if (r > 0 && !o->have_lsn) {
		o->lsn = lsn;
		o->have_lsn = true;
	}
	if (!o->have_lsn)
		return cli_fail("no LSN for the snapshot '%s': it has no %s attribute (a copy that "
				"lost it?); give it with --lsn N",
				o->snapshot, SNAP_XATTR_LSN);
	r = get_attr(fd, SNAP_XATTR_DATASET, buf, sizeof(buf));
	if (r != 0 && (r < 0 || mfs_uuid_parse(buf, o->uuid) < 0))
		return cli_fail("'%s': %s is not a data-set UUID", o->snapshot, SNAP_XATTR_DATASET);
	o->have_uuid = r > 0;
	return 0;
}

/*
 * Open (creating it) the --to folder; it must be missing or empty.
 * Returns the fd, or -1 after a message.
 */
static int open_target(const char *to)
{
	_cleanup_close_ int fd = -EBADF;
	char **names;
	size_t n;
	int r;

	if (mkdir(to, 0700) < 0 && errno != EEXIST)
		return -cli_fail("cannot create '%s': %m", to);
	fd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOTDIR)
		return -cli_fail("refusing to restore into '%s': it is not a directory", to);
	if (fd < 0)
		return -cli_fail("cannot open '%s': %m", to);
	r = cli_list_names(fd, false, &names, &n);
	if (r < 0) {
		errno = -r;
		return -cli_fail("cannot list '%s': %m", to);
	}
	cli_free_names(names, n);
	if (n)
		return -cli_fail("refusing to restore into '%s': it is not empty", to);
	return TAKE_FD(fd);
}

/* ================================================================ replay */

/*
 * The segments of --segments that can hold LSNs after the snapshot's, gap
 * checked by name (before anything is written). Returns 0, or 1 after a message.
 */
static int list_segments(const struct restore *o, struct cli_segfile **ret, size_t *ret_n)
{
	struct cli_segfile *v;
	uint64_t from, to, end;
	size_t n;
	int r;

	r = cli_segdir_list(o->segments, &v, &n);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot list the segments in '%s': %m", o->segments);
	}
	end = 0;
	for (size_t i = 0; i < n; i++)
		end = MFS_MAX(end, v[i].last);
	if (!cli_segfiles_contiguous(v, n, o->lsn, o->until_lsn, &from, &to)) {
		cli_segfiles_free(v, n);
		return cli_fail("gap in the segments in '%s': LSN %" PRIu64 "..%" PRIu64 " missing",
				o->segments, from, to);
	}
	if (o->until_lsn != UINT64_MAX && o->until_lsn > MFS_MAX(end, o->lsn)) {
		cli_segfiles_free(v, n);
		return cli_fail("--until %" PRIu64 " is past the last segment in '%s' (LSN %" PRIu64
				")",
				o->until_lsn, o->segments, MFS_MAX(end, o->lsn));
	}
	*ret = v;
	*ret_n = n;
	return 0;
}


/*
 * A time target is reached only when a record after it was seen: records
 * that all end before it may be followed by others the segments folder
 * lacks (not shipped, not kept), as PostgreSQL's recovery target. Returns
 * 1 after a message naming the target and the last point reached.
 */
static int time_not_reached(const struct restore *o, const struct mfs_segrun *run)
{
	char want[64], got[64];

	cli_iso_time(o->until_ns, want, sizeof(want));
	if (!run->last_ns)
		return cli_fail("--until %s not reached: no record after the snapshot's LSN %" PRIu64
				" in '%s' ('%s' holds the snapshot only); give the segments "
				"that reach it, or --until latest",
				want, o->lsn, o->segments, o->to);
	cli_iso_time(run->last_ns, got, sizeof(got));
	return cli_fail("--until %s not reached: the segments in '%s' end at LSN %" PRIu64 " (%s); "
			"'%s' holds that point, not the target; give the segments that reach it, "
			"or --until latest",
			want, o->segments, run->last, got, o->to);
}

/* Apply @segs after the snapshot's LSN into @rootfd and flush. Returns 0, or 1 after a message. */
static int replay_segments(const struct restore *o, const struct cli_segfile *segs, size_t n,
			   int rootfd, struct cli_progress *prog, struct mfs_segrun *run)
{
	struct mfs_replay *engine;
	uint64_t total = 0;
	int r, ret = 0;

	for (size_t i = 0; i < n; i++)
		if (segs[i].last > o->lsn && segs[i].first <= o->until_lsn)
			total += segs[i].size;
	r = mfs_replay_new(rootfd, 0, &engine);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot start the replay engine on '%s': %m", o->to);
	}
	mfs_replay_set_keys(engine, &o->keys);
	cli_segrun_init(run, engine, o->lsn);
	run->auth = o->keys.n > 0;
	run->check_start = true;
	run->until_lsn = o->until_lsn;
	run->until_ns = o->until_ns;
	run->have_uuid = o->have_uuid;
	memcpy(run->uuid, o->uuid, 16);
	run->progress = cli_progress_cb;
	run->progress_arg = prog;
	cli_progress_phase(prog, "replay", total);
	for (size_t i = 0; i < n && !ret && !run->done; i++)
		if (segs[i].last > o->lsn) /* one ending before N + 1 is not needed */
			ret = cli_segrun_file(run, segs[i].path, i == n - 1);
	r = mfs_replay_finish(engine);
	mfs_replay_free(engine);
	if (!ret && r < 0) {
		errno = -r;
		ret = cli_fail("flushing '%s' failed: %m", o->to);
	}
	if (!ret && o->until_lsn != UINT64_MAX && run->last < o->until_lsn)
		ret = cli_fail("the segments in '%s' end at LSN %" PRIu64
			       ", before --until %" PRIu64 " ('%s' holds LSN %" PRIu64 ")",
			       o->segments, run->last, o->until_lsn, o->to, run->last);
	if (!ret && o->until_ns != UINT64_MAX && !run->done)
		ret = time_not_reached(o, run);
	return ret;
}

/*
 * The copy is not fsynced file by file: one syncfs of the target's file
 * system, after the engine's own flush, then the folder holding --to.
 */
static int make_durable(const struct restore *o, int rootfd)
{
	_cleanup_free_ char *parent = strdup(o->to);
	char *slash;
	int r;

	if (!parent)
		return cli_fail("out of memory");
	if (syncfs(rootfd) < 0)
		return cli_fail("syncing '%s' failed: %m", o->to);
	while ((slash = strrchr(parent, '/')) && !slash[1] && slash != parent)
		*slash = 0; /* trailing slashes */
	slash = strrchr(parent, '/');
	if (slash == parent)
		parent[1] = 0; /* "/x" */
	else if (slash)
		*slash = 0;
	r = mfs_fsync_dir(AT_FDCWD, slash ? parent : ".");
	if (r < 0) {
		errno = -r;
		return cli_fail("syncing the folder of '%s' failed: %m", o->to);
	}
	return 0;
}

/* So that deep trees (two fds per level) do not run out of descriptors. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* --dry-run: what restore would copy and replay, once every check passed. */
static int restore_plan(const struct restore *o, int snapfd, const struct cli_segfile *segs,
			size_t n)
{
	uint64_t lo = 0, hi = 0, bytes = 0;
	size_t k = 0;
	char until[64] = "the end of the segments";

	for (size_t i = 0; i < n; i++) {
		if (segs[i].last <= o->lsn || segs[i].first > o->until_lsn)
			continue;
		lo = k++ ? lo : segs[i].first;
		hi = segs[i].last;
		bytes += segs[i].size;
	}
	if (o->until_lsn != UINT64_MAX)
		snprintf(until, sizeof(until), "LSN %" PRIu64, o->until_lsn);
	else if (o->until_ns != UINT64_MAX)
		cli_iso_time(o->until_ns, until, sizeof(until));
	printf("dry run: nothing is written\n"
	       "would copy the snapshot '%s' (LSN %" PRIu64 ", %" PRIu64 " bytes) to '%s'\n",
	       o->snapshot, o->lsn, cli_count_bytes(snapfd, true), o->to);
	if (k)
		printf("would replay %zu segments of '%s' (LSN %" PRIu64 "..%" PRIu64 ", %" PRIu64
		       " bytes) after LSN %" PRIu64 ", up to %s\n",
		       k, o->segments, lo, hi, bytes, o->lsn, until);
	else
		printf("would replay nothing: no segment of '%s' goes past LSN %" PRIu64 "\n",
		       o->segments, o->lsn);
	return 0;
}

int cli_restore(int argc, char **argv)
{
	struct restore o = {.until_lsn = UINT64_MAX, .until_ns = UINT64_MAX};
	struct cli_progress prog = {.on = isatty(STDERR_FILENO)};
	_cleanup_close_ int snapfd = -EBADF, rootfd = -EBADF;
	struct cli_segfile *segs = NULL;
	struct mfs_segrun run = {0};
	struct stat snap_st;
	uint64_t copied = 0, t0 = mfs_mono_ns();
	size_t nsegs = 0;
	int r;

	if (cli_restore_wants_s3(argc, argv)) /* --from s3://: download, then here again */
		return cli_restore_s3(argc, argv);
	/* on a terminal, a message first erases the progress line */
	cli_set_prefix(prog.on ? "\r\033[Kmirrorctl restore" : "mirrorctl restore");
	r = parse_args(argc, argv, &o);
	if (r)
		return r;
	snapfd = cli_open_src(AT_FDCWD, o.snapshot, O_DIRECTORY);
	if (snapfd < 0) {
		errno = -snapfd;
		return cli_fail("cannot open the snapshot '%s': %m", o.snapshot);
	}
	if (fstat(snapfd, &snap_st) < 0)
		return cli_fail("cannot stat '%s': %m", o.snapshot);
	if (snapshot_identity(snapfd, &o))
		return 1;
	if (o.until_lsn < o.lsn)
		return cli_fail("--until %" PRIu64 " is before the snapshot's LSN %" PRIu64 " ('%s'): "
				"restore from an older snapshot",
				o.until_lsn, o.lsn, o.snapshot);
	if (list_segments(&o, &segs, &nsegs))
		return 1;
	if (cli_probe_data_tree(o.to)) /* inside a data folder some program writes */
		goto out_segs;
	if (o.dry_run) {
		r = restore_plan(&o, snapfd, segs, nsegs);
		cli_segfiles_free(segs, nsegs);
		return r;
	}
	rootfd = open_target(o.to);
	if (rootfd < 0)
		goto out_segs;
	raise_fd_limit();
	r = cli_copy_tree(o.snapshot, snapfd, &snap_st, o.to, rootfd, &prog, &copied);
	if (r == 0)
		r = replay_segments(&o, segs, nsegs, rootfd, &prog, &run);
	if (r == 0)
		r = make_durable(&o, rootfd);
	cli_progress_end(&prog);
	if (r)
		goto out_segs;
	cli_segfiles_free(segs, nsegs);
	printf("restored to LSN %" PRIu64 " (snapshot %" PRIu64 ", %" PRIu64
	       " records replayed, %" PRIu64 " bytes copied) in %.3f s\n",
	       run.last, o.lsn, run.records, copied, (double)(mfs_mono_ns() - t0) / 1e9);
	return 0;
out_segs:
	cli_segfiles_free(segs, nsegs);
	return 1;
}
