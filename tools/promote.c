/* SPDX-License-Identifier: MIT */
/*
 * promote.c - `mirrorctl promote --data DIR --state STATEDIR [--incoming DIR]
 * [--current FILE]`: turn a mirror into the new primary.
 *
 * 1. With --incoming, apply what is left there: its closed segments after
 *    the mirror's applied LSN, in LSN order, each validated in full before
 *    any of its records is applied (lib/segrun.c, as mirrord does).
 * 2. Integrate the failed primary's open segment (its .mirrorfs/current, or
 *    the raw open-*.mfsj from its disk) up to its last valid record: every
 *    record after the mirror's applied LSN, after a full validation, with the
 *    same data set; a gap refuses.
 * 3. Record the final LSN in STATEDIR/applied and write DIR/.mirrorfs/state
 *    so that `mirrorfs DIR MOUNTPOINT` continues the same data set and LSN
 *    sequence, plus DIR/.mirrorfs/promoted (LSN and time of the promotion),
 *    which a rejoining old primary is checked against.
 *
 * With --dry-run: the same checks (mount, locks held by others, the mirror
 * state), then the plan on stdout; nothing is written, no lock is taken.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "segset.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/applied.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/pidlock.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

static struct mfs_keyring arg_keys;

/*
 * Apply the segments waiting in @incoming (closed segments, in LSN order,
 * each validated in full first: lib/segrun.c) into @datafd after LSN
 * a->applied_lsn, then flush, and advance @a. A gap, a refused segment or
 * a failure stops it. Returns 0, or 1 after a message.
 */
static int apply_incoming(const char *incoming, int datafd, const char *data,
			  struct mfs_applied *a)
{
	struct cli_segfile *v = NULL;
	struct mfs_replay *engine = NULL;
	struct mfs_segrun run;
	size_t n = 0;
	int r, ret = 0;

	r = cli_segdir_list(incoming, &v, &n);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot list '%s': %m", incoming);
	}
	r = mfs_replay_new(datafd, 0, &engine);
	if (r < 0) {
		cli_segfiles_free(v, n);
		errno = -r;
		return cli_fail("cannot start the replay engine on '%s': %m", data);
	}
	mfs_replay_set_keys(engine, &arg_keys);
	cli_segrun_init(&run, engine, a->applied_lsn);
	run.check_start = true; /* as mirrord: nothing may be missing after the applied LSN */
	run.have_uuid = a->have_data_set;
	memcpy(run.uuid, a->data_set, sizeof(run.uuid));
	run.auth = arg_keys.n > 0;
	run.have_chain = a->have_chain;
	run.chain_lsn = a->chain_lsn;
	memcpy(run.chain_tag, a->chain_tag, sizeof(run.chain_tag));
	for (size_t i = 0; i < n && !ret; i++) /* closed segments only: none may be torn */
		ret = cli_segrun_file(&run, v[i].path, false);
	cli_segfiles_free(v, n);
	r = mfs_replay_finish(engine);
	mfs_replay_free(engine);
	if (!ret && r < 0) {
		errno = -r;
		ret = cli_fail("flushing '%s' failed: %m", data);
	}
	if (ret)
		return cli_fail("'%s' was not applied in full (applied up to LSN %" PRIu64 "); "
				"fix that first", incoming, run.last);
	if (run.last > a->applied_lsn) {
		a->applied_lsn = run.last;
		a->last_record_ns = run.last_ns;
		a->segments_applied += run.files;
	}
	if (run.have_uuid && !a->have_data_set) {
		memcpy(a->data_set, run.uuid, sizeof(a->data_set));
		a->have_data_set = true;
	}
	if (run.auth && run.have_chain) {
		a->have_chain = true;
		a->chain_lsn = run.chain_lsn;
		memcpy(a->chain_tag, run.chain_tag, sizeof(a->chain_tag));
	}
	printf("applied '%s' up to LSN %" PRIu64 " (%" PRIu64 " segments)\n", incoming,
	       a->applied_lsn, run.files);
	return 0;
}

struct apply_ctx {
	uint64_t last, last_ns;
};

static int apply_cb(const struct mfs_rec *rec, void *arg)
{
	struct apply_ctx *c = arg;

	c->last = rec->lsn;
	c->last_ns = rec->time_ns;
	return 0;
}

/*
 * Load the open segment @path whole and validate it (the reader's verdict,
 * torn allowed; every record's checks; the data set). Returns 0 and the
 * segment in *ret, or 1 after a message.
 */
static int load_current(struct mfs_replay *engine, const char *path, const struct mfs_applied *a,
			struct mfs_replay_seg **ret)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	const struct mfs_seg_info *info;
	struct mfs_replay_seg *s;
	char verdict[256];
	uint64_t bad;
	int r;

	if (fd < 0)
		return cli_fail("cannot open '%s': %m", path);
	r = mfs_replay_seg_load(engine, fd, a->have_data_set ? a->data_set : NULL, UINT64_MAX, &s);
	if (r == -EINVAL)
		return cli_fail("refusing '%s': not a regular file", path);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read '%s': %m", path);
	}
	info = mfs_replay_seg_info(s);
	mfs_seg_verdict_format(info, verdict, sizeof(verdict));
	if ((info->verdict != MFS_SEG_OK && info->verdict != MFS_SEG_TORN &&
	     !mfs_seg_auth_prefix_ok(info)) || !info->header_valid) {
		mfs_replay_seg_free(s);
		return cli_fail("refusing '%s', nothing of it applied: %s", path, verdict);
	}
	if (arg_keys.n && mfs_seg_chain_check(info, a->have_chain, a->chain_lsn, a->chain_tag, verdict,
					  sizeof(verdict))) {
		mfs_replay_seg_free(s);
		return cli_fail("refusing '%s', nothing of it applied: %s", path, verdict);
	}
	if (info->verdict == MFS_SEG_UNAUTH)
		cli_warn("'%s': %s; integrating its authenticated part, up to LSN %" PRIu64, path,
			 verdict, info->last_lsn);
	if (mfs_replay_seg_refused(s, &bad, NULL) && bad > a->applied_lsn) {
		r = cli_fail("refusing '%s', nothing of it applied: %s", path,
			     mfs_replay_seg_why(s, NULL) ?: "?");
		mfs_replay_seg_free(s);
		return r;
	}
	if (info->first_lsn > a->applied_lsn + 1) {
		r = cli_fail("gap: the mirror applied up to LSN %" PRIu64 " but '%s' starts at %"
			     PRIu64 "; ship LSN %" PRIu64 "..%" PRIu64 " first",
			     a->applied_lsn, path, info->first_lsn, a->applied_lsn + 1,
			     info->first_lsn - 1);
		mfs_replay_seg_free(s);
		return r;
	}
	printf("open segment '%s': %s\n", path, verdict);
	*ret = s;
	return 0;
}

/*
 * Integrate the open segment @path into @datafd after LSN a->applied_lsn:
 * validated in full and preflighted (lib/replay_preflight.c) before its
 * first record is applied, as mirrord does.
 */
static int integrate_current(const char *path, int datafd, struct mfs_applied *a,
			     uint64_t *seg_no)
{
	struct apply_ctx c = { .last = a->applied_lsn };
	struct mfs_replay *engine = NULL;
	struct mfs_replay_seg *s = NULL;
	struct mfs_seg_info info;
	bool local;
	int r;

	r = mfs_replay_new(datafd, 0, &engine);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot start the replay engine to integrate '%s': %m", path);
	}
	mfs_replay_set_keys(engine, &arg_keys);
	r = load_current(engine, path, a, &s);
	if (r) {
		mfs_replay_free(engine);
		return r;
	}
	info = *mfs_replay_seg_info(s);
	r = mfs_replay_seg_preflight(engine, s, a->applied_lsn);
	if (r < 0) {
		const char *why = mfs_replay_seg_why(s, &local);

		errno = -r;
		r = cli_fail("%s '%s', nothing of it applied: %s", local ? "cannot apply" : "refusing",
			     path, why ?: strerror(-r));
		mfs_replay_seg_free(s);
		mfs_replay_free(engine);
		return r;
	}
	r = mfs_replay_seg_apply(engine, s, a->applied_lsn, apply_cb, &c); /* takes @s */
	if (r == 0)
		r = mfs_replay_finish(engine);
	if (r < 0) {
		const char *why = mfs_replay_why(engine);

		errno = -r;
		r = cli_fail("integrating '%s' failed after LSN %" PRIu64 ": %s", path, c.last,
			     why ?: strerror(-r));
		mfs_replay_free(engine);
		return r;
	}
	mfs_replay_free(engine);
	if (!a->have_data_set)
		memcpy(a->data_set, info.uuid, 16);
	a->have_data_set = true;
	if (c.last > a->applied_lsn) {
		a->applied_lsn = c.last;
		a->last_record_ns = c.last_ns;
		a->have_chain = arg_keys.n && c.last == info.last_lsn;
		a->chain_lsn = info.last_lsn;
		memcpy(a->chain_tag, info.last_tag, sizeof(a->chain_tag));
	}
	*seg_no = info.seg_no;
	return 0;
}

/* DIR/.mirrorfs/state and DIR/.mirrorfs/promoted (lib/jdir.c). */
static int mark_primary(int datafd, const struct mfs_applied *a, uint64_t seg_no)
{
	_cleanup_close_ int jfd = -EBADF;
	struct mfs_jstate st = { .checkpoint = a->applied_lsn, .last = a->applied_lsn,
				 .segment = seg_no };
	struct mfs_jpromoted p = { .promoted_lsn = a->applied_lsn, .time_ns = mfs_now_ns() };
	int r;

	if (mkdirat(datafd, MFS_CTL_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	jfd = openat(datafd, MFS_CTL_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (jfd < 0)
		return -errno;
	memcpy(st.data_set, a->data_set, sizeof(st.data_set));
	memcpy(p.data_set, a->data_set, sizeof(p.data_set));
	/* authenticated up to the end: the new primary's first segment carries
	 * the chain value there as its previous tag (docs/journal-format.md) */
	if (a->have_chain && a->chain_lsn == a->applied_lsn) {
		st.have_chain = true;
		st.chain_lsn = a->chain_lsn;
		memcpy(st.chain_tag, a->chain_tag, sizeof(st.chain_tag));
	}
	r = mfs_jstate_write(jfd, &st);
	if (r < 0)
		return r;
	return mfs_jpromoted_write(jfd, &p);
}

#define PROMOTE_USAGE                                                                              \
	"usage: mirrorctl promote [--dry-run] --data DIR --state STATEDIR [--incoming DIR] "       \
	"[--current FILE] [--auth-key FILE]... [--encrypt-key FILE]...\n"

/* --dry-run: check what promote would check, print what it would do, write nothing. */
static int promote_plan(const char *data, const char *state, const char *incoming,
			const char *current)
{
	_cleanup_close_ int datafd = -EBADF, statefd = -EBADF;
	struct mfs_pidlock_holder h;
	struct mfs_applied a;
	char who[64], uuid[37] = "(none yet)";
	int r;

	if (cli_refuse_mount(data))
		return 1;
	datafd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (datafd < 0)
		return cli_fail("cannot open '%s': %m", data);
	if (cli_probe_data(data, datafd))
		return 1;
	statefd = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (statefd < 0)
		return cli_fail("cannot open '%s': %m", state);
	if (mfs_pidlock_probe(statefd, MFS_PIDLOCK_STATE, &h) == -EBUSY)
		return cli_fail("state folder '%s' is in use by %s: stop it first", state,
				mfs_pidlock_describe(&h, who, sizeof(who)));
	r = mfs_applied_read(statefd, &a);
	if (r == -ENOENT) {
		a = (struct mfs_applied){ 0 };
		r = 0;
	}
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read the mirror state in '%s': %m", state);
	}
	if (a.have_data_set)
		mfs_uuid_format(a.data_set, uuid);
	printf("dry run: nothing is written\n"
	       "mirror applied up to LSN %" PRIu64 ", data set %s\n", a.applied_lsn, uuid);
	if (faccessat(datafd, MFS_SNAPSHOT_STORE, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		printf("would drop the snapshot store '%s/%s'\n", data, MFS_SNAPSHOT_STORE);
	if (incoming)
		printf("would apply what waits in '%s' (closed segments after the applied LSN, "
		       "each validated in full first)\n", incoming);
	if (current)
		printf("would integrate the valid records of '%s' after the applied LSN\n", current);
	printf("would record the promotion in '%s/%s', '%s/" MFS_CTL_DIR "/" MFS_JDIR_STATE "' and "
	       "'%s/" MFS_CTL_DIR "/" MFS_JDIR_PROMOTED "'; mounted, '%s' would continue at LSN %" PRIu64 "%s\n",
	       state, MFS_APPLIED_FILE, data, data, data, a.applied_lsn + 1,
	       incoming || current ? " or later" : "");
	if (!a.have_data_set && !incoming && !current)
		return cli_fail("no data set known: nothing was ever applied to '%s'", data);
	return 0;
}

int cli_promote(int argc, char **argv)
{
	const char *data = NULL, *state = NULL, *incoming = NULL, *current = NULL;
	_cleanup_close_ int datafd = -EBADF, statefd = -EBADF;
	_cleanup_close_ int data_lock = -EBADF, state_lock = -EBADF;
	struct mfs_applied a;
	uint64_t seg_no = 0, t0 = mfs_mono_ns();
	char uuid[37];
	bool dry_run = false;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dry-run")) {
			dry_run = true;
			continue;
		}
		int k = cli_key_opt(&arg_keys, argc, argv, &i);

		if (k < 0)
			return 1;
		if (k)
			continue;
		const char **slot = !strcmp(argv[i], "--data")	    ? &data
				    : !strcmp(argv[i], "--state")    ? &state
				    : !strcmp(argv[i], "--incoming") ? &incoming
				    : !strcmp(argv[i], "--current")  ? &current
								     : NULL;
		if (!slot || i + 1 >= argc) {
			fputs(PROMOTE_USAGE, stderr);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!data || !state) {
		fputs(PROMOTE_USAGE, stderr);
		return 2;
	}
	if (dry_run)
		return promote_plan(data, state, incoming, current);
	if (cli_refuse_mount(data))
		return 1;
	datafd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (datafd < 0)
		return cli_fail("cannot open '%s': %m", data);
	/* a mirrord still applying (or a mount) is refused before anything
	 * runs; a snapshot store here was written through by replay already
	 * (and mirrord refuses it) */
	if ((data_lock = cli_lock_data(data, datafd, "mirrorctl promote")) < 0)
		return 1;
	if (cli_drop_snapshots(data, datafd, "it was kept in a mirror's data folder, where replay "
				"writes into the files it shares: it no longer holds its LSN"))
		return 1;
	statefd = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (statefd < 0)
		return cli_fail("cannot open '%s': %m", state);
	if ((state_lock = cli_lock_state(state, statefd, "mirrorctl promote")) < 0)
		return 1;
	r = mfs_applied_read(statefd, &a);
	if (r == -ENOENT) {
		a = (struct mfs_applied){ 0 }; /* nothing applied yet */
		r = 0;
	}
	if (r == -EBADMSG)
		return cli_fail("malformed mirror state '%s/%s', refusing to promote", state,
				MFS_APPLIED_FILE);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read the mirror state in '%s': %m", state);
	}
	printf("mirror applied up to LSN %" PRIu64 "\n", a.applied_lsn);
	if (incoming) {
		if (apply_incoming(incoming, datafd, data, &a))
			return 1;
		r = mfs_applied_write(statefd, &a); /* as mirrord would have */
		if (r < 0) {
			errno = -r;
			return cli_fail("cannot write '%s/%s': %m", state, MFS_APPLIED_FILE);
		}
	}
	if (current && integrate_current(current, datafd, &a, &seg_no))
		return 1;
	if (!a.have_data_set)
		return cli_fail("no data set known: nothing was ever applied to '%s'", data);
	r = mfs_applied_write(statefd, &a);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot record the promotion in '%s/%s': %m", state,
				MFS_APPLIED_FILE);
	}
	r = mark_primary(datafd, &a, MFS_MAX(seg_no, a.segments_applied));
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot record the promotion in '%s/" MFS_CTL_DIR "': %m", data);
	}
	mfs_uuid_format(a.data_set, uuid);
	printf("promoted '%s': data set %s, final LSN %" PRIu64 " (%.3f s); mount it with "
	       "mirrorfs to continue at LSN %" PRIu64 "\n",
	       data, uuid, a.applied_lsn, (double)(mfs_mono_ns() - t0) / 1e9,
	       a.applied_lsn + 1);
	return 0;
}
