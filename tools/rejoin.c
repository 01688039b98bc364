/* SPDX-License-Identifier: MIT */
/*
 * rejoin.c - `mirrorctl rejoin --data DIR --state STATEDIR --incoming DIR`:
 * let a repaired old primary follow the new primary as a mirror.
 *
 * The old primary's data directory reflects its own journal up to LSN L
 * (DIR/.mirrorfs/state). The new primary continues the same data set from
 * its promotion LSN P: its segments in INCOMING start at P+1 or earlier.
 * If L <= P the old data is a prefix of the new history: the mirror state
 * is set to L and mirrord takes over. If L > P, the records P+1..L of the
 * old primary are compared with the new primary's records of the same LSNs
 * (their CRCs); any difference means the two diverged — the old primary
 * kept running unseen after the failover — and rejoining is refused, naming
 * both LSNs: rebuild from the new primary instead (docs/runbook.md).
 * Records of the old primary that change no data (the checkpoints its own
 * crash recovery appends on the next mount) do not count as divergence: the
 * mirror state is then set to the last LSN both histories share.
 *
 * Refused first: the data folder given as its mirrorfs mount, or in use
 * (DATADIR/.mirrorfs/lock held: the old mirrorfs still mounted, a mirrord),
 * or the state folder in use. Once accepted, the old primary's snapshots
 * are removed, each named: their files are hard links to the live inodes
 * that mirrord then writes in place, so a kept snapshot would silently
 * hold the new primary's later rows (copying each one out instead would
 * cost a full copy of the data per snapshot, unasked).
 *
 * With --dry-run: the same checks (no lock taken: the locks are probed),
 * then the plan on stdout; nothing is written or created.
 *
 * Both histories are read through the segment reader with the keys given:
 * --encrypt-key opens sealed segments (format 2, encrypt_key), --auth-key
 * checks their tags. A segment the reader cannot open or authenticate with
 * them (no key, another key, a bad tag) is refused by name, never taken
 * for a divergence: without its records the window would look different.
 */
#include <dirent.h>
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
#include "mirrorfs/applied.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/crc32c.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/pidlock.h"
#include "mirrorfs/segment.h"

#define REJOIN_USAGE                                                                               \
	"usage: mirrorctl rejoin [--dry-run] --data DIR --state STATEDIR --incoming DIR "          \
	"[--auth-key FILE]... [--encrypt-key FILE]...\n"

static struct mfs_keyring arg_keys; /* --auth-key, --encrypt-key: both histories */

/* LSN -> record CRC of one history over an LSN window [lo, hi]. */
struct window {
	uint64_t lo, hi;
	uint32_t *crc; /* hi - lo + 1 entries */
	bool *have;
	bool *marker; /* the record changes no data (checkpoint, snapshot) */
	const struct mfs_keyring *keys; /* --auth-key, --encrypt-key */
};

static int window_cb(const struct mfs_rec *rec, void *arg)
{
	struct window *w = arg;
	uint8_t head[MFS_REC_HEADER_SIZE + 2 * (MFS_PATH_MAX + 2) + 64];
	size_t head_len;
	uint32_t crc;

	if (rec->lsn < w->lo || rec->lsn > w->hi)
		return 0;
	/* re-encode: the header CRC covers type, LSN, time and payload */
	if (mfs_rec_encode(rec, head, sizeof(head), &head_len) < 0)
		return 0;
	crc = mfs_get_le32(head + 28);
	w->crc[rec->lsn - w->lo] = crc;
	w->have[rec->lsn - w->lo] = true;
	w->marker[rec->lsn - w->lo] = mfs_rec_type_is_marker(rec->type);
	return 0;
}

/*
 * Feed every segment of folder @dir (closed, or open: open-SEQ.mfsj) to the
 * window. A segment that cannot be opened or read is an error, never a
 * difference: a local read error must not pass for divergence ("rebuild
 * it"). Nor is one the keys do not open or authenticate (MFS_SEG_UNAUTH).
 * Another verdict (torn, corrupt, foreign) is not an error: the window
 * keeps the valid records. Returns 0, or 1 after a message.
 */
static int window_fill(int dirfd, const char *dir, const uint8_t uuid[16], struct window *w)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r = mfs_dir_open(dirfd, ".", &d);

	if (r < 0) {
		errno = -r;
		return cli_fail("cannot list '%s': %m", dir);
	}
	while ((de = mfs_readdir(d))) {
		struct mfs_segr_opts o = { .expect_uuid = uuid, .keys = w->keys };
		struct mfs_seg_info info;
		uint64_t first, last;
		char why[256];
		_cleanup_close_ int sfd = -EBADF;

		if (!mfs_seg_name_parse(de->d_name, &first, &last) &&
		    !mfs_jdir_is_open_name(de->d_name))
			continue;
		sfd = openat(dirfd, de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (sfd < 0)
			return cli_fail("cannot open segment '%s/%s': %m", dir, de->d_name);
		r = mfs_seg_scan_fd_opts(sfd, &o, window_cb, w, &info);
		if (r < 0) {
			errno = -r;
			return cli_fail("cannot read segment '%s/%s': %m", dir, de->d_name);
		}
		if (info.verdict != MFS_SEG_UNAUTH)
			continue;
		mfs_seg_verdict_format(&info, why, sizeof(why));
		return cli_fail("cannot read segment '%s/%s': %s; give its keys (--encrypt-key, "
				"--auth-key)",
				dir, de->d_name, why);
	}
	return 0;
}

/* Fill @w from subfolder @sub of the journal folder DATA/.mirrorfs, if there is one. */
static int window_fill_jdir(int datafd, const char *data, const char *sub, const uint8_t uuid[16],
			    struct window *w)
{
	_cleanup_close_ int jfd = openat(datafd, MFS_CTL_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int fd = -EBADF;
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/%s/%s", data, MFS_CTL_DIR, sub);
	if (jfd < 0)
		return cli_fail("cannot open '%s/%s': %m", data, MFS_CTL_DIR);
	fd = mfs_jdir_open_sub(jfd, sub, false, NULL);
	if (fd == -ENOENT)
		return 0;
	if (fd < 0) {
		errno = -fd;
		return cli_fail("cannot open '%s': %m", dir);
	}
	return window_fill(fd, dir, uuid, w);
}

/* Read DIR/.mirrorfs/state (lib/jdir.c): data set and last LSN. */
static int old_state(int datafd, uint8_t uuid[16], uint64_t *last)
{
	_cleanup_close_ int jfd = openat(datafd, MFS_CTL_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct mfs_jstate st;
	int r;

	if (jfd < 0)
		return -errno;
	r = mfs_jstate_read(jfd, &st);
	if (r < 0)
		return r;
	memcpy(uuid, st.data_set, 16);
	*last = st.last;
	return 0;
}

/* The lowest first LSN among the closed segments of @dirfd (0: none), or -errno. */
static int lowest_first(int dirfd, uint64_t *ret)
{
	_cleanup_free_ struct mfs_segent *segs = NULL;
	size_t n;
	int r = mfs_segdir_list(dirfd, &segs, &n);

	if (r < 0)
		return r;
	*ret = n ? segs[0].first : 0;
	return 0;
}

static int refuse(const char *data, uint64_t old_last, uint64_t diverge)
{
	return cli_fail("refusing to rejoin: '%s' holds LSNs up to %" PRIu64
			", but the new primary's history differs from LSN %" PRIu64
			" on: the old primary kept running after the failover. Rebuild it "
			"from the new primary (snapshot + rsync, see docs/runbook.md)",
			data, old_last, diverge);
}

static void window_done(struct window *w)
{
	free(w->crc);
	free(w->have);
	free(w->marker);
}

static int window_init(struct window *w, uint64_t lo, uint64_t hi, const struct mfs_keyring *keys)
{
	size_t cnt = (size_t)(hi - lo + 1);

	*w = (struct window){ .lo = lo, .hi = hi, .keys = keys };
	w->crc = calloc(cnt, sizeof(uint32_t));
	w->have = calloc(cnt, sizeof(bool));
	w->marker = calloc(cnt, sizeof(bool));
	if (w->crc && w->have && w->marker)
		return 0;
	window_done(w);
	return cli_fail("out of memory");
}

/*
 * Compare the old primary's records @first..*@old_last with the new
 * primary's in @incoming. Returns 0 (with *@old_last lowered past trailing
 * data-free records that differ), or 1 after a message (divergence, or
 * a segment that could not be read).
 */
static int compare_overlap(int datafd, const char *data, int infd, const char *incoming,
			   const uint8_t uuid[16], uint64_t first, uint64_t *old_last)
{
	struct window wo, wn;
	size_t cnt = (size_t)(*old_last - first + 1);
	int r;

	if (window_init(&wo, first, *old_last, &arg_keys))
		return 1;
	if (window_init(&wn, first, *old_last, &arg_keys)) {
		window_done(&wo);
		return 1;
	}
	r = window_fill_jdir(datafd, data, MFS_JDIR_CLOSED, uuid, &wo) ||
	    window_fill_jdir(datafd, data, MFS_JDIR_OPEN, uuid, &wo) ||
	    window_fill(infd, incoming, uuid, &wn);
	for (size_t k = 0; r == 0 && k < cnt; k++) {
		if (wo.have[k] && wn.have[k] && wo.crc[k] == wn.crc[k])
			continue;
		/* histories part at first + k: only data-free records may follow */
		for (size_t m = k; r == 0 && m < cnt; m++)
			if (!wo.have[m] || !wo.marker[m])
				r = refuse(data, *old_last, first + k);
		if (r == 0)
			*old_last = first + k - 1;
		break;
	}
	window_done(&wo);
	window_done(&wn);
	return r;
}

/* --dry-run: whether someone holds the state folder's lock (1: said so). */
static int probe_state(const char *state, int statefd)
{
	struct mfs_pidlock_holder h;
	char who[64];

	if (mfs_pidlock_probe(statefd, MFS_PIDLOCK_STATE, &h) == -EBUSY)
		return cli_fail("state folder '%s' is in use by %s: stop it first", state,
				mfs_pidlock_describe(&h, who, sizeof(who)));
	return 0;
}

/* --dry-run: what rejoin would do, once every check passed. */
static int rejoin_plan(const char *data, int datafd, const char *state, bool have_state,
		       const char *incoming, uint64_t lsn)
{
	printf("dry run: nothing is written\n");
	if (faccessat(datafd, MFS_SNAPSHOT_STORE, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		printf("would drop the snapshot store '%s/%s'\n", data, MFS_SNAPSHOT_STORE);
	if (!have_state)
		printf("would create the state folder '%s'\n", state);
	printf("would set the applied LSN in '%s/%s' to %" PRIu64 "; then: mirrord --data %s "
	       "--state %s --incoming %s\n", state, MFS_APPLIED_FILE, lsn, data, state, incoming);
	return 0;
}

int cli_rejoin(int argc, char **argv)
{
	const char *data = NULL, *state = NULL, *incoming = NULL;
	_cleanup_close_ int datafd = -EBADF, statefd = -EBADF, infd = -EBADF;
	_cleanup_close_ int data_lock = -EBADF, state_lock = -EBADF;
	struct mfs_applied applied;
	uint8_t uuid[16];
	uint64_t old_last = 0, first;
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
		const char **slot = !strcmp(argv[i], "--data")	     ? &data
				    : !strcmp(argv[i], "--state")    ? &state
				    : !strcmp(argv[i], "--incoming") ? &incoming
								     : NULL;
		if (!slot || i + 1 >= argc) {
			fputs(REJOIN_USAGE, stderr);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!data || !state || !incoming) {
		fputs(REJOIN_USAGE, stderr);
		return 2;
	}
	if (cli_refuse_mount(data))
		return 1;
	if ((datafd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return cli_fail("cannot open '%s': %m", data);
	/* a data folder still mounted (the old primary's mirrorfs alive) or
	 * applied into by a mirrord is not ours to turn into a mirror */
	if (dry_run) {
		if (cli_probe_data(data, datafd))
			return 1;
	} else if ((data_lock = cli_lock_data(data, datafd, "mirrorctl rejoin")) < 0) {
		return 1;
	}
	if ((infd = open(incoming, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return cli_fail("cannot open '%s': %m", incoming);
	if (!dry_run && mkdir(state, 0755) < 0 && errno != EEXIST)
		return cli_fail("cannot create '%s': %m", state);
	statefd = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (statefd < 0 && !(dry_run && errno == ENOENT))
		return cli_fail("cannot open '%s': %m", state);
	if (dry_run && statefd >= 0 && probe_state(state, statefd))
		return 1;
	if (!dry_run && (state_lock = cli_lock_state(state, statefd, "mirrorctl rejoin")) < 0)
		return 1;
	r = old_state(datafd, uuid, &old_last);
	if (r < 0) {
		errno = -r;
		return cli_fail("'%s' holds no mirrorfs state (%s/%s): %m", data, MFS_CTL_DIR,
				MFS_JDIR_STATE);
	}
	r = lowest_first(infd, &first);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot list '%s': %m", incoming);
	}
	if (!first)
		return cli_fail("no segment of the new primary in '%s' yet", incoming);
	if (first > old_last + 1)
		return cli_fail("gap: this data directory ends at LSN %" PRIu64 " and the first "
				"segment in '%s' starts at LSN %" PRIu64 "; ship LSN %" PRIu64
				"..%" PRIu64 " first", old_last, incoming, first, old_last + 1,
				first - 1);
	/* the overlap must be the same history on both sides */
	if (old_last >= first && compare_overlap(datafd, data, infd, incoming, uuid, first, &old_last))
		return 1;
	if (dry_run)
		return rejoin_plan(data, datafd, state, statefd >= 0, incoming, old_last);
	/* replay writes in place into the inodes the snapshots hard-link */
	if (cli_drop_snapshots(data, datafd, "a mirror's data folder cannot keep snapshots, "
				"replay would write into the files they share"))
		return 1;
	/* a fresh mirror state: the old primary's counters do not carry over */
	applied = (struct mfs_applied){ .have_data_set = true, .applied_lsn = old_last };
	memcpy(applied.data_set, uuid, sizeof(applied.data_set));
	r = mfs_applied_write(statefd, &applied);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot write the mirror state in '%s': %m", state);
	}
	printf("'%s' can follow the new primary: applied LSN set to %" PRIu64
	       "; start mirrord --data %s --state %s --incoming %s\n",
	       data, old_last, data, state, incoming);
	return 0;
}
