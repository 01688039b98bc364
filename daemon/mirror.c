/* SPDX-License-Identifier: MIT */
/*
 * mirror.c - order, validate, quarantine, apply, cascade and retire
 * segments arriving in the incoming folder.
 *
 * Invariants:
 *  - segments are applied strictly in LSN order, each from the first LSN
 *    not yet applied (an overlapping or re-delivered segment applies only
 *    its new tail); a segment starting after applied+1 is a gap: it waits;
 *  - a segment is validated in full (verdict, data-set id, name against
 *    contents, every record's path and fields) and then as a whole against
 *    the data folder (the engine's preflight: symlinks, sizes past the file
 *    system's limits, fallocate totals, device nodes) before any record of
 *    it is applied; a bad one is moved to the quarantine folder with a
 *    NAME.reason file naming the LSN, record type, path and field, never
 *    applied; a refusal of the machine's (not enough free space for its
 *    allocations, no CAP_MKNOD for its device nodes) leaves it in place,
 *    retried with backoff;
 *  - a segment is mapped into memory once (at most --max-segment bytes),
 *    validated from that memory and applied from the same memory: no
 *    second read, no second checksum pass (paths and fields are decoded
 *    and checked once, only write data are taken from the mapping later);
 *  - segments ready together form a batch (up to BATCH_BYTES): applied
 *    one after the other, then one flush of everything they touched and
 *    one durable save of the applied LSN (state.c) for all of them; the
 *    applied LSN is recorded only after that flush, and after the
 *    cascade copies are durable: a kill -9 at any moment re-applies at
 *    most one batch, and the replay engine makes that idempotent. The
 *    naive mode (--naive, the benchmark's baseline) reads each segment
 *    twice through the streaming reader (validate, then apply), loads it
 *    once more for the same preflight as the default mode, and its
 *    engine does one pwrite per write record and fsyncs each touched file
 *    at the end of the batch;
 *  - a segment is deleted (or moved to --keep) only after its LSNs are
 *    recorded as applied; its page cache, when clean, is dropped earlier,
 *    while the batch's flush waits for the disk, so the delete is cheap;
 *  - a segment that cannot be read (an I/O error under the incoming
 *    folder) is neither applied nor quarantined: the error is reported
 *    and it is tried again; anything in incoming that is not a regular
 *    file (a FIFO named like a segment) is opened without blocking and
 *    skipped, reported as waiting.
 * Local failures (EIO, ENOSPC, ... mfs_replay_error_is_local()) leave the
 * segment in place: the pass stops, and is tried again after 1, 2, 4 ...
 * up to 60 s (status.json "retry"). A record that fails while being
 * applied for a reason that is the segment's although the preflight
 * passed (the data folder changed by someone else meanwhile) quarantines
 * the segment; the records before it, all beneath the data root, stay
 * applied: the engine stops before the failing record rather than undo
 * (see lib/replay_preflight.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirror.h"
#include "mirrorfs/applied.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/pidlock.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

#define YOUNG_NS (30ull * 1000000000ull) /* a torn segment this young may still be arriving */
#define MAX_LISTED 100u
#define BATCH_BYTES (1ull << 30) /* segment bytes applied before a flush and state save */
#define RETRY_MIN_MS 1000u       /* first retry after a local failure ... */
#define RETRY_MAX_MS 60000u      /* ... doubling up to this */

/*
 * The next PREFETCH segments, each opened and loaded (mapped and
 * validated) by a thread of its own while the main thread applies the one
 * before them: the checksum passes and page-ins, which bound replay when
 * most writes are superseded, run on every CPU. A thread only reads (the
 * file, and the engine's buffer pool, which is locked); every decision
 * (judge, quarantine, apply) stays on the main thread, in LSN order.
 */
#define PREFETCH 2

struct prefetch {
	pthread_t thread;
	bool active;
	char name[MFS_SEG_NAME_LEN + 1];
	struct mfs_replay *engine;
	int in_fd;
	uint64_t max_size;
	bool have_uuid;   /* the data-set id expected when the load started */
	uint8_t uuid[16];
	int fd;           /* the open segment, or -errno */
	struct stat st;
	int r;            /* 0, or -errno of fstat / the load */
	struct mfs_replay_seg *s;
};

struct held {
	char name[MFS_SEG_NAME_LEN + 1];
	uint64_t size;
	int64_t mtime;
};

struct mirror {
	struct mirror_config cfg;
	int in_fd, data_fd, state_fd, q_fd, cascade_fd, keep_fd;
	int data_lock_fd, state_lock_fd; /* mfs_pidlock: one mirrord per data and per state folder */
	int cascade_lock_fd;             /* and per cascade folder */
	struct mfs_replay *engine;
	struct mfs_applied st; /* STATE/applied */
	struct mirror_status status;
	char last_error[512];
	struct mfs_log_repeat error_log; /* the same failure pass after pass: logged with backoff */
	int status_err, metrics_err; /* the last write's error: a new one is logged, not a repeat */
	char instance[PATH_MAX]; /* status.instance */
	struct held *held; /* hold mode: segments already validated */
	size_t n_held;
	struct mfs_rec *rec; /* cascade copy */
	/* the batch: applied, not yet flushed and recorded */
	uint64_t batch_lsn, batch_ns, batch_bytes, batch_data, batch_t0;
	bool batch_have_chain; /* authenticated: the chain value at batch_chain_lsn */
	uint64_t batch_chain_lsn;
	uint8_t batch_chain[MFS_TAG_SIZE];
	char **batch_names;
	size_t n_batch;
	struct prefetch pf[PREFETCH];
	unsigned retries; /* passes in a row that failed locally */
};

/* What applying one segment needs in the scan callback. */
struct apply_ctx {
	struct mirror *m;
	struct mfs_segw *cw; /* cascade writer or NULL */
	uint64_t after, last, last_ns, bytes;
	uint64_t err_lsn;
	int error;
	bool local; /* error is ours (cascade), not the segment's */
};

/* ================================================================ helpers */

/* Open (@create: make first) the folder given as --@what. Returns the fd or -errno, logged. */
static int open_dir(const char *what, const char *path, bool create)
{
	int fd;

	if (create && mkdir(path, 0750) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "Failed to create the --%s folder '%s': %m", what,
				       path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "Failed to open the --%s folder '%s': %m", what,
				       path);
	return fd;
}

/* Whether the data folder @fd holds a snapshot store with anything in it. */
static bool has_snapshots(int fd)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int sfd = openat(fd, MFS_SNAPSHOT_STORE, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (sfd < 0)
		return false;
	d = fdopendir(sfd);
	if (!d) {
		close(sfd);
		return true; /* there, and unreadable: do not guess */
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			return true;
	return false;
}

/* In a cascade folder: its lock, and the mark mirrorfs-ship looks for. */
#define CASCADE_LOCK ".mirrord-cascade"

/*
 * One mirrord per data folder and per state folder, and never one on a data
 * folder that a mirrorfs mount, a rejoin, a promote or a restore is
 * writing: each of them holds DATADIR/.mirrorfs/lock (lib/pidlock.c).
 */
static int take_locks(struct mirror *m)
{
	struct mfs_pidlock_holder h;
	char who[64];
	int r;

	r = m->data_lock_fd = mfs_pidlock_take_data(m->data_fd, "mirrord", &h);
	if (r == -EBUSY)
		return log_error_errno(r, "'%s' is in use by %s: refusing to apply into it",
				       m->cfg.data, mfs_pidlock_describe(&h, who, sizeof(who)));
	if (r < 0)
		return log_error_errno(r, "Failed to lock '%s/" MFS_PIDLOCK_DATA "': %m", m->cfg.data);
	r = m->state_lock_fd = mfs_pidlock_take(m->state_fd, MFS_PIDLOCK_STATE, "mirrord", &h);
	if (r == -EBUSY)
		return log_error_errno(r, "state folder '%s' is in use by %s", m->cfg.state,
				       mfs_pidlock_describe(&h, who, sizeof(who)));
	if (r < 0)
		return log_error_errno(r, "Failed to lock '%s/" MFS_PIDLOCK_STATE "': %m",
				       m->cfg.state);
	if (m->cascade_fd < 0)
		return 0;
	/* also the mark by which mirrorfs-ship knows a folder of segments */
	r = m->cascade_lock_fd = mfs_pidlock_take(m->cascade_fd, CASCADE_LOCK, "mirrord", &h);
	if (r == -EBUSY)
		return log_error_errno(r, "cascade folder '%s' is in use by %s", m->cfg.cascade,
				       mfs_pidlock_describe(&h, who, sizeof(who)));
	if (r < 0)
		return log_error_errno(r, "Failed to lock '%s/" CASCADE_LOCK "': %m", m->cfg.cascade);
	return 0;
}

static void set_error(struct mirror *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct mirror *m, const char *fmt, ...)
{
	va_list ap;

	unsigned dropped;

	va_start(ap, fmt);
	vsnprintf(m->last_error, sizeof(m->last_error), fmt, ap);
	va_end(ap);
	m->status.last_error = m->last_error;
	if (!mfs_log_repeat_due(&m->error_log, m->last_error, mfs_mono_ns(), &dropped))
		return;
	if (dropped)
		log_warning("%s (%u times more since it was last logged)", m->last_error, dropped);
	else
		log_warning("%s", m->last_error);
}

/* ================================================================ quarantine, retire */

static void quarantine(struct mirror *m, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void quarantine(struct mirror *m, const char *name, const char *fmt, ...)
{
	char reason[512], rname[MFS_SEG_NAME_LEN + 16];
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(reason, sizeof(reason) - 1, fmt, ap);
	va_end(ap);
	n = MFS_MIN(n, (int)sizeof(reason) - 2);
	set_error(m, "quarantined '%s': %s", name, reason);
	reason[n++] = '\n';
	snprintf(rname, sizeof(rname), "%s.reason", name);
	r = mfs_replace_file(m->q_fd, rname, reason, (size_t)n, 0644);
	if (r < 0)
		log_error_errno(r, "Failed to write '%s' in the quarantine folder: %m", rname);
	if (renameat(m->in_fd, name, m->q_fd, name) < 0) {
		log_error_errno(-errno, "Failed to move '%s' to quarantine, removing it: %m", name);
		(void)unlinkat(m->in_fd, name, 0);
	}
}

static void retire(struct mirror *m, const char *name)
{
	if (m->keep_fd >= 0) {
		if (renameat(m->in_fd, name, m->keep_fd, name) == 0)
			return;
		log_warning_errno(-errno, "Failed to move '%s' to '%s', leaving it: %m", name,
				  m->cfg.keep);
		return;
	}
	if (unlinkat(m->in_fd, name, 0) < 0 && errno != ENOENT)
		log_warning_errno(-errno, "Failed to remove applied '%s', ignoring: %m", name);
}

/* ================================================================ validation */

struct check_ctx {
	int error;
	char why[640]; /* the refused record: LSN, type, path, field */
};

static int check_cb(const struct mfs_rec *rec, void *arg)
{
	struct check_ctx *c = arg;

	c->error = mfs_replay_check_why(rec, c->why, sizeof(c->why));
	return c->error < 0 ? 1 : 0;
}

static bool keyed(const struct mirror *m)
{
	return m->cfg.keys && m->cfg.keys->n;
}

/* The batch's chain starts again from the recorded state. */
static void chain_reset(struct mirror *m)
{
	m->batch_have_chain = m->st.have_chain;
	m->batch_chain_lsn = m->st.chain_lsn;
	memcpy(m->batch_chain, m->st.chain_tag, MFS_TAG_SIZE);
}

static bool tag_is_zero(const uint8_t *t)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < MFS_TAG_SIZE; i++)
		acc |= t[i];
	return acc == 0;
}

/*
 * An authenticated segment must continue the chain of what was applied:
 * start right after the batch's last LSN, its previous tag that LSN's
 * tag. A previous tag of zeros starts a chain (a data set's first
 * segment, a promoted mirror's first). Returns NULL or why not.
 */
static const char *chain_check(struct mirror *m, const struct mfs_seg_info *info, char *buf,
			       size_t cap)
{
	if (info->first_lsn <= m->batch_lsn) {
		snprintf(buf, cap, "not authenticated: it starts at LSN %" PRIu64 ", at or before "
			 "the last applied LSN %" PRIu64 ", and its chain cannot be checked there "
			 "(replayed, or from another history)", info->first_lsn, m->batch_lsn);
		return buf;
	}
	if (tag_is_zero(info->prev_tag)) {
		log_notice("authenticated chain starts at LSN %" PRIu64, info->first_lsn);
		return NULL;
	}
	if (info->first_lsn == m->batch_lsn + 1 && m->batch_have_chain &&
	    m->batch_chain_lsn == m->batch_lsn &&
	    !mfs_auth_tag_equal(info->prev_tag, m->batch_chain)) {
		snprintf(buf, cap, "not authenticated: chain broken at LSN %" PRIu64 ": its "
			 "previous tag is not the tag of LSN %" PRIu64 " applied here (a segment "
			 "dropped, reordered, replayed, or from another history)", info->first_lsn,
			 m->batch_lsn);
		return buf;
	}
	return NULL;
}

/*
 * Judge segment @e (open as @fd) from its reader verdict @info and the
 * first refused record (@c->error). Returns 0 if it may be applied, 1 if
 * it was quarantined, 2 if it may still be arriving.
 */
static int judge(struct mirror *m, const struct mfs_segent *e, int fd, const struct check_ctx *c,
		 const struct mfs_seg_info *info)
{
	char verdict[256], u1[37], u2[37];
	struct stat st;

	if (c->error) {
		quarantine(m, e->name, "%s", c->why);
		return 1;
	}
	if (info->verdict == MFS_SEG_FOREIGN) {
		mfs_uuid_format(info->uuid, u1);
		mfs_uuid_format(m->st.data_set, u2);
		quarantine(m, e->name, "foreign data set %s (this mirror follows %s)", u1, u2);
		return 1;
	}
	if (info->verdict == MFS_SEG_TORN && !m->cfg.once && fstat(fd, &st) == 0 &&
	    mfs_now_ns() - ((uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec) <
		    YOUNG_NS)
		return 2;
	mfs_seg_verdict_format(info, verdict, sizeof(verdict));
	if (info->verdict != MFS_SEG_OK) {
		quarantine(m, e->name, "%s", verdict);
		return 1;
	}
	if (info->first_lsn != e->first || info->last_lsn != e->last) {
		quarantine(m, e->name, "name says LSN %" PRIu64 "-%" PRIu64 ", contents hold %" PRIu64
			   "-%" PRIu64, e->first, e->last, info->first_lsn, info->last_lsn);
		return 1;
	}
	if (keyed(m) && chain_check(m, info, verdict, sizeof(verdict))) {
		quarantine(m, e->name, "%s", verdict);
		return 1;
	}
	return 0;
}

/*
 * The engine's preflight of loaded segment @s against the data folder, as
 * it is after the batch so far. Returns 0 (apply it), 1 quarantined, or
 * -errno: the machine's condition (left in place, retried). @s is freed
 * unless 0 is returned.
 */
static int preflight(struct mirror *m, const struct mfs_segent *e, struct mfs_replay_seg *s)
{
	const char *why;
	bool local;
	int r = mfs_replay_seg_preflight(m->engine, s, m->batch_lsn);

	if (r == 0)
		return 0;
	why = mfs_replay_seg_why(s, &local) ?: strerror(-r);
	if (local || r == -ENOMEM) {
		set_error(m, "'%s' cannot be applied yet (will retry): %s", e->name, why);
	} else {
		quarantine(m, e->name, "%s", why);
		r = 1;
	}
	mfs_replay_seg_free(s);
	return r;
}

/* ================================================================ prefetch */

/*
 * Open segment @name of the incoming folder @in_fd and fstat it. Returns
 * 0, or -errno; *ret_fd is the caller's to close either way (negative if
 * the open failed).
 */
static int seg_open(int in_fd, const char *name, int *ret_fd, struct stat *st)
{
	/* O_NONBLOCK: a FIFO named like a segment must not block the open */
	*ret_fd = openat(in_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (*ret_fd < 0)
		return -errno;
	return fstat(*ret_fd, st) < 0 ? -errno : 0;
}

static void *prefetch_run(void *arg)
{
	struct prefetch *p = arg;

	if (seg_open(p->in_fd, p->name, &p->fd, &p->st) < 0) {
		closep(&p->fd); /* not taken: the main thread opens it and reports */
		p->fd = -EBADF;
	} else if (S_ISREG(p->st.st_mode)) {
		p->r = mfs_replay_seg_load(p->engine, p->fd, p->have_uuid ? p->uuid : NULL,
					   p->max_size, &p->s);
	}
	return NULL;
}

/* Start loading segment @e ahead, unless it is already or no slot is free. */
static void prefetch_start(struct mirror *m, const struct mfs_segent *e)
{
	struct prefetch *p = NULL;

	if (m->cfg.naive || m->cfg.hold)
		return;
	for (unsigned i = 0; i < PREFETCH; i++) {
		if (m->pf[i].active && strcmp(m->pf[i].name, e->name) == 0)
			return;
		if (!m->pf[i].active && !p)
			p = &m->pf[i];
	}
	if (!p)
		return;
	*p = (struct prefetch){ .engine = m->engine, .in_fd = m->in_fd, .fd = -EBADF,
				.max_size = m->cfg.max_segment, .have_uuid = m->st.have_data_set };
	memcpy(p->name, e->name, sizeof(p->name));
	memcpy(p->uuid, m->st.data_set, sizeof(p->uuid));
	p->active = pthread_create(&p->thread, NULL, prefetch_run, p) == 0;
}

/* Forget slot @p's result: the loaded segment and the open file. */
static void prefetch_drop(struct prefetch *p)
{
	p->s = mfs_replay_seg_free(p->s);
	if (p->fd >= 0)
		closep(&p->fd);
}

/* Wait for slot @p's thread; forget its result unless @keep. */
static void prefetch_join(struct prefetch *p, bool keep)
{
	if (!p->active)
		return;
	(void)pthread_join(p->thread, NULL);
	p->active = false;
	if (!keep)
		prefetch_drop(p);
}

static void prefetch_join_all(struct mirror *m)
{
	for (unsigned i = 0; i < PREFETCH; i++)
		prefetch_join(&m->pf[i], false);
}

/*
 * Take the prefetched segment if it is @e and was loaded expecting what is
 * expected now (a load that expected no data-set id still counts when the
 * header names the one now known). Returns true and the open fd (taken
 * over), its stat, the load result and the segment; false if there is none
 * (the caller opens and loads itself).
 */
static bool prefetch_take(struct mirror *m, const struct mfs_segent *e, int *ret_fd,
			  struct stat *ret_st, int *ret_r, struct mfs_replay_seg **ret_s)
{
	struct prefetch *p = NULL;
	const struct mfs_seg_info *info;
	bool same;

	for (unsigned i = 0; i < PREFETCH && !p; i++)
		if (m->pf[i].active && strcmp(m->pf[i].name, e->name) == 0)
			p = &m->pf[i];
	if (!p)
		return false;
	prefetch_join(p, true);
	same = p->have_uuid == m->st.have_data_set &&
	       (!p->have_uuid || memcmp(p->uuid, m->st.data_set, 16) == 0);
	if (!same && p->s && !p->have_uuid) {
		info = mfs_replay_seg_info(p->s);
		same = info->header_valid && memcmp(info->uuid, m->st.data_set, 16) == 0;
	}
	if (p->fd < 0 || !same) {
		prefetch_drop(p);
		return false;
	}
	*ret_fd = p->fd;
	*ret_st = p->st;
	*ret_r = p->r;
	*ret_s = p->s;
	p->fd = -EBADF;
	p->s = NULL;
	return true;
}

/*
 * Segment @e could not be read (@r: an I/O error of the disk under the
 * incoming folder, say): it stays in incoming, is tried again, and the
 * status says why meanwhile.
 */
static int read_failed(struct mirror *m, const struct mfs_segent *e, int r)
{
	errno = -r;
	set_error(m, "reading '%s' failed (will retry): %m", e->name);
	return r;
}

/* Naive mode: validate by a streaming scan of the file (it is read again to apply). */
static int validate_stream(struct mirror *m, const struct mfs_segent *e, int fd,
			   struct mfs_seg_info *info)
{
	struct mfs_segr_opts o = { .expect_uuid = m->st.have_data_set ? m->st.data_set : NULL,
				   .keys = m->cfg.keys };
	struct check_ctx c = { 0 };
	int r;

	r = mfs_seg_scan_fd_opts(fd, &o, check_cb, &c, info);
	if (r < 0 && !c.error)
		return read_failed(m, e, r);
	return judge(m, e, fd, &c, info);
}

/*
 * Judge segment @e (open as @fd), loaded into memory once and validated in
 * full by mfs_replay_seg_load() (@r its result, @s the segment). Returns 0
 * and @s in *ret if it may be applied, 1 if it was quarantined, 2 if it
 * may still be arriving, -errno. @s is freed unless returned.
 */
static int validate(struct mirror *m, const struct mfs_segent *e, int fd, int r,
		    struct mfs_replay_seg *s, struct mfs_replay_seg **ret)
{
	struct check_ctx c = { 0 };

	if (r == -EFBIG) {
		quarantine(m, e->name, "larger than --max-segment (%" PRIu64 " bytes)",
			   m->cfg.max_segment);
		return 1;
	}
	if (r < 0)
		return read_failed(m, e, r);
	c.error = mfs_replay_seg_refused(s, NULL, NULL);
	if (c.error)
		snprintf(c.why, sizeof(c.why), "%s", mfs_replay_seg_why(s, NULL) ?: "refused");
	r = judge(m, e, fd, &c, mfs_replay_seg_info(s));
	if (r != 0) {
		mfs_replay_seg_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

static bool held_has(struct mirror *m, const struct mfs_segent *e, const struct stat *st)
{
	for (size_t i = 0; i < m->n_held; i++)
		if (!strcmp(m->held[i].name, e->name) && m->held[i].size == (uint64_t)st->st_size &&
		    m->held[i].mtime == st->st_mtim.tv_sec)
			return true;
	return false;
}

static void held_add(struct mirror *m, const struct mfs_segent *e, const struct stat *st)
{
	struct held *n = realloc(m->held, (m->n_held + 1) * sizeof(*n));

	if (!n)
		return;
	m->held = n;
	snprintf(n[m->n_held].name, sizeof(n->name), "%s", e->name);
	n[m->n_held].size = (uint64_t)st->st_size;
	n[m->n_held].mtime = st->st_mtim.tv_sec;
	m->n_held++;
}

/* ================================================================ apply */

/* After a record was applied: its cascade copy, progress. */
static int applied_cb(const struct mfs_rec *rec, void *arg)
{
	struct apply_ctx *a = arg;
	uint64_t lsn;

	if (a->cw) {
		*a->m->rec = *rec;
		a->error = mfs_segw_append(a->cw, a->m->rec, &lsn);
		if (a->error == 0 && lsn != rec->lsn)
			a->error = -EPROTO;
		if (a->error < 0) {
			a->err_lsn = rec->lsn;
			a->local = true;
			return a->error;
		}
	}
	a->last = rec->lsn;
	a->last_ns = rec->time_ns;
	a->bytes += rec->data_len;
	return 0;
}

/* Naive mode: each record of the streaming scan is applied, then accounted. */
static int stream_cb(const struct mfs_rec *rec, void *arg)
{
	struct apply_ctx *a = arg;

	if (rec->lsn <= a->after)
		return 0;
	if (mfs_replay_is_past_limits(a->m->engine, rec)) /* compensated: see the preflight */
		return applied_cb(rec, arg) ? 1 : 0;
	a->error = mfs_replay_apply(a->m->engine, rec);
	if (a->error < 0) {
		a->err_lsn = rec->lsn;
		return 1;
	}
	return applied_cb(rec, arg) ? 1 : 0;
}

static int cascade_begin(struct mirror *m, const struct mfs_seg_info *info, uint64_t first,
			 struct mfs_segw **ret)
{
	char tmp[64];

	if (m->cascade_fd < 0) {
		*ret = NULL;
		return 0;
	}
	snprintf(tmp, sizeof(tmp), ".cascade-%020" PRIu64 ".partial", first);
	(void)unlinkat(m->cascade_fd, tmp, 0);
	return mfs_segw_create(m->cascade_fd, tmp, info->uuid, info->seg_no, first, ret);
}

static int cascade_end(struct mirror *m, struct mfs_segw *cw)
{
	char name[MFS_SEG_NAME_LEN + 1];
	int r;

	if (!cw)
		return 0;
	r = mfs_segw_close(cw, m->cascade_fd, name);
	if (r == 0)
		r = mfs_fsync_dir(m->cascade_fd, NULL);
	return r;
}

/*
 * Apply the records of segment @e after the batch's LSN: from loaded
 * segment @s (taken over), or (naive mode, @s NULL) by a second streaming
 * scan of @fd. Nothing is flushed or recorded here (batch_commit).
 * Returns 0 applied, 1 quarantined, -errno (left in incoming for a retry).
 */
static int apply_segment(struct mirror *m, const struct mfs_segent *e, int fd,
			 const struct mfs_seg_info *info, struct mfs_replay_seg *s)
{
	struct apply_ctx a = { .m = m, .after = m->batch_lsn, .last = m->batch_lsn };
	struct mfs_segr_opts o = { .expect_uuid = info->uuid, .keys = m->cfg.keys };
	struct mfs_seg_info again;
	int r;

	r = cascade_begin(m, info, a.after + 1, &a.cw);
	if (r < 0) {
		mfs_replay_seg_free(s);
		return log_error_errno(r, "Failed to start the cascade segment in '%s': %m",
				       m->cfg.cascade);
	}
	if (s) {
		r = mfs_replay_seg_apply(m->engine, s, a.after, applied_cb, &a);
		if (r < 0 && !a.local) {
			a.error = r;
			a.err_lsn = a.last + 1; /* LSNs are consecutive */
		}
	} else {
		r = mfs_seg_scan_fd_opts(fd, &o, stream_cb, &a, &again);
		if (r >= 0 && !a.error && again.verdict != MFS_SEG_OK)
			r = -EBADMSG; /* changed since validation */
	}
	if (a.error < 0 || r < 0) {
		int err = a.error < 0 ? a.error : r;

		const char *why = a.local ? NULL : mfs_replay_why(m->engine);

		mfs_segw_free(a.cw);
		errno = -err;
		if (!a.local && !mfs_replay_error_is_local(err)) {
			if (why)
				quarantine(m, e->name, "applying failed: %s", why);
			else
				quarantine(m, e->name, "applying LSN %" PRIu64 " failed: %m", a.err_lsn);
			return 1;
		}
		if (why)
			set_error(m, "applying '%s' failed (will retry): %s", e->name, why);
		else
			set_error(m, "applying '%s' failed at LSN %" PRIu64 " (will retry): %m",
				  e->name, a.err_lsn);
		return err;
	}
	r = cascade_end(m, a.cw);
	if (r < 0)
		return log_error_errno(r, "Failed to close the cascade segment in '%s': %m",
				       m->cfg.cascade);
	memcpy(m->st.data_set, info->uuid, 16);
	m->st.have_data_set = true;
	m->batch_lsn = a.last;
	if (info->authenticated) {
		m->batch_have_chain = true;
		m->batch_chain_lsn = info->last_lsn;
		memcpy(m->batch_chain, info->last_tag, MFS_TAG_SIZE);
	} else {
		m->batch_have_chain = false;
		m->status.unauth_applied++;
	}
	if (a.last_ns)
		m->batch_ns = a.last_ns;
	m->batch_data += a.bytes;
	return 0;
}

/* One thread's share of the batch's segments, and what to do with each. */
struct batch_part {
	struct mirror *m;
	size_t from, step; /* the batch's names from, from + step, ... */
	void (*fn)(struct mirror *m, const char *name);
};

static void *batch_run(void *arg)
{
	struct batch_part *h = arg;

	for (size_t i = h->from; i < h->m->n_batch; i += h->step)
		h->fn(h->m, h->m->batch_names[i]);
	return NULL;
}

/*
 * Retire the batch's segments, half of them on a second thread: deleting a
 * segment frees its page cache, which costs CPU in proportion to its size
 * (~18% of the engine's time on a replay of 800 MiB of segments).
 */
static void retire_batch(struct mirror *m)
{
	struct batch_part odd = { m, 1, 2, retire }, even = { m, 0, 2, retire },
			  all = { m, 0, 1, retire };
	pthread_t t;
	bool two = m->n_batch >= 2 && pthread_create(&t, NULL, batch_run, &odd) == 0;

	batch_run(two ? &even : &all);
	if (two)
		(void)pthread_join(t, NULL);
}

/*
 * Drop a drained segment's page cache, if it is clean, while the flush
 * waits for the disk: deleting it later then has no pages to free. A
 * dirty one (just written by rsync) is left: dropping would write it out.
 */
static void drop_cache(struct mirror *m, const char *name)
{
	_cleanup_close_ int fd = openat(m->in_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd >= 0)
		(void)mfs_drop_clean_cache(fd);
}

/* Drain the batch's writes, then flush while two threads drop the segments' cache. */
static int batch_flush(struct mirror *m)
{
	struct batch_part part[2] = { { m, 0, 2, drop_cache }, { m, 1, 2, drop_cache } };
	bool started[2] = { false, false };
	pthread_t t[2];
	int r;

	if (!m->cfg.naive && mfs_replay_drain(m->engine) == 0)
		for (size_t i = 0; i < 2; i++)
			started[i] = pthread_create(&t[i], NULL, batch_run, &part[i]) == 0;
	r = mfs_replay_finish(m->engine);
	for (size_t i = 0; i < 2; i++)
		if (started[i])
			(void)pthread_join(t[i], NULL);
	return r;
}

/*
 * Flush everything the batch touched, then record its last LSN durably,
 * then retire its segments. Returns 0 or -errno (the segments stay in
 * incoming and are applied again: idempotent).
 */
static int batch_commit(struct mirror *m)
{
	uint64_t dt;
	int r;

	if (m->n_batch == 0)
		return 0;
	r = batch_flush(m);
	if (r < 0) {
		errno = -r;
		set_error(m, "flushing the data directory '%s' failed (will retry): %m",
			  m->cfg.data);
	} else {
		m->st.applied_lsn = m->batch_lsn;
		if (m->batch_ns)
			m->st.last_record_ns = m->batch_ns;
		m->st.segments_applied += m->n_batch;
		m->st.have_chain = m->batch_have_chain;
		m->st.chain_lsn = m->batch_chain_lsn;
		memcpy(m->st.chain_tag, m->batch_chain, MFS_TAG_SIZE);
		r = mfs_applied_write(m->state_fd, &m->st);
		if (r < 0)
			log_error_errno(r, "Failed to record applied LSN %" PRIu64 " in '%s/"
					MFS_APPLIED_FILE "': %m", m->batch_lsn, m->cfg.state);
	}
	if (r == 0) {
		dt = mfs_mono_ns() - m->batch_t0;
		m->status.last_bytes_per_sec = dt ? (double)m->batch_data * 1e9 / (double)dt : 0;
		log_info("applied %zu segment(s) up to LSN %" PRIu64 " (%.1f MB/s), last '%s'",
			 m->n_batch, m->st.applied_lsn, m->status.last_bytes_per_sec / 1e6,
			 m->batch_names[m->n_batch - 1]);
		retire_batch(m);
	}
	for (size_t i = 0; i < m->n_batch; i++)
		free(m->batch_names[i]);
	m->n_batch = 0;
	m->batch_lsn = m->st.applied_lsn;
	chain_reset(m);
	m->batch_ns = m->batch_data = m->batch_bytes = 0;
	return r;
}

static int batch_add(struct mirror *m, const struct mfs_segent *e, uint64_t size)
{
	char **n = realloc(m->batch_names, (m->n_batch + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	m->batch_names = n;
	n[m->n_batch] = strdup(e->name);
	if (!n[m->n_batch])
		return -ENOMEM;
	if (m->n_batch++ == 0)
		m->batch_t0 = mfs_mono_ns();
	m->batch_bytes += size;
	return 0;
}

/* Load and validate the segment open as @fd, expecting the data set known now. */
static int load_segment(struct mirror *m, int fd, struct mfs_replay_seg **ret)
{
	return mfs_replay_seg_load(m->engine, fd, m->st.have_data_set ? m->st.data_set : NULL,
				   m->cfg.max_segment, ret);
}

/*
 * Open segment @e (or take it from a prefetch thread) and load it unless
 * in naive or hold mode; the @n_next segments after it start loading
 * ahead meanwhile. Returns 0 with the fd in *ret_fd, or what handle()
 * returns.
 */
static int open_segment(struct mirror *m, const struct mfs_segent *e, const struct mfs_segent *next,
			size_t n_next, int *ret_fd, struct stat *st, int *ret_load,
			struct mfs_replay_seg **ret_s)
{
	int fd = -EBADF, r;
	bool taken = prefetch_take(m, e, &fd, st, ret_load, ret_s);

	for (size_t i = 0, k = 0; i < n_next && k < PREFETCH; i++)
		if (next[i].last > e->last) { /* not covered once @e is applied */
			prefetch_start(m, &next[i]);
			k++;
		}
	if (taken) {
		*ret_fd = fd;
		return 0;
	}
	r = seg_open(m->in_fd, e->name, ret_fd, st);
	if (*ret_fd < 0)
		return r == -ENOENT ? 2 : log_error_errno(r, "Failed to open '%s': %m", e->name);
	if (r < 0)
		return r;
	if (S_ISREG(st->st_mode) && !m->cfg.naive && !m->cfg.hold)
		*ret_load = load_segment(m, *ret_fd, ret_s);
	return 0;
}

/*
 * Naive mode streams a segment (validate, then apply) but the preflight
 * needs it whole: load it once more for the preflight alone, so that the
 * naive mode refuses exactly what the default mode refuses. Returns 0 with
 * the loaded segment in *ret_s, or what handle() returns.
 */
static int naive_preflight(struct mirror *m, const struct mfs_segent *e, int fd,
			   struct mfs_replay_seg **ret_s)
{
	int r = load_segment(m, fd, ret_s);

	if (r < 0)
		return log_error_errno(r, "Failed to load '%s' for its preflight: %m", e->name);
	return 0;
}

/*
 * Validate and apply one segment into the batch (the @n_next after it are
 * loaded ahead meanwhile). Returns 0 applied, 1 quarantined, 2 may still
 * be arriving, 3 validated and held (hold mode), -errno.
 */
static int handle(struct mirror *m, const struct mfs_segent *e, const struct mfs_segent *next,
		  size_t n_next)
{
	_cleanup_close_ int fd = -EBADF;
	struct mfs_replay_seg *s = NULL;
	struct mfs_seg_info info;
	struct stat st;
	int r, load = 0;

	r = open_segment(m, e, next, n_next, &fd, &st, &load, &s);
	if (r != 0)
		return r;
	if (!S_ISREG(st.st_mode)) {
		set_error(m, "'%s' is not a regular file, skipped (waiting for the segment)",
			  e->name);
		return 2;
	}
	if (m->cfg.hold && held_has(m, e, &st))
		return 3;
	if (m->cfg.naive) {
		r = validate_stream(m, e, fd, &info);
	} else {
		if (m->cfg.hold)
			load = load_segment(m, fd, &s);
		r = validate(m, e, fd, load, s, &s);
		if (r == 0)
			info = *mfs_replay_seg_info(s);
	}
	if (r != 0)
		return r;
	if (m->cfg.hold) {
		mfs_replay_seg_free(s);
		held_add(m, e, &st);
		log_info("hold: '%s' validated, kept", e->name);
		return 3;
	}
	if (m->cfg.naive && (r = naive_preflight(m, e, fd, &s)) != 0)
		return r;
	if (s && (r = preflight(m, e, s)) != 0)
		return r;
	if (m->cfg.naive)
		s = mfs_replay_seg_free(s); /* applied by a second streaming read */
	r = apply_segment(m, e, fd, &info, s);
	if (r != 0)
		return r;
	r = batch_add(m, e, (uint64_t)st.st_size);
	if (r < 0)
		return r;
	if (m->batch_bytes >= BATCH_BYTES)
		return batch_commit(m);
	return 0;
}

/* ================================================================ pass */

static void free_names(struct mirror_status *s)
{
	for (unsigned i = 0; i < s->n_quarantined; i++)
		free(s->quarantined[i]);
	free(s->quarantined);
	s->quarantined = NULL;
	s->n_quarantined = 0;
}

static void list_quarantined(struct mirror *m)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int fd = dup(m->q_fd);
	char **v;

	free_names(&m->status);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		(void)close(fd);
		return;
	}
	rewinddir(d);
	v = calloc(MAX_LISTED, sizeof(*v));
	if (!v)
		return;
	m->status.quarantined = v;
	while ((de = readdir(d)) && m->status.n_quarantined < MAX_LISTED) {
		size_t n = strlen(de->d_name);

		if (de->d_name[0] == '.' || (n > 7 && !strcmp(de->d_name + n - 7, ".reason")))
			continue;
		v[m->status.n_quarantined] = strdup(de->d_name);
		if (v[m->status.n_quarantined])
			m->status.n_quarantined++;
	}
}

static void publish(struct mirror *m)
{
	int r;

	list_quarantined(m);
	m->status.state = &m->st;
	m->status.hold = m->cfg.hold;
	m->status.auth = keyed(m);
	r = mirror_status_write(m->state_fd, &m->status);
	if (r < 0 && r != m->status_err)
		log_warning_errno(r, "Failed to write '%s/status.json', ignoring: %m", m->cfg.state);
	else if (r == 0 && m->status_err)
		log_notice("'%s/status.json' is written again", m->cfg.state);
	m->status_err = r;
	if (m->cfg.metrics) {
		r = mirror_metrics_write(m->cfg.metrics, &m->status);
		if (r < 0 && r != m->metrics_err)
			log_warning_errno(r, "Failed to write '%s', ignoring until it works: %m",
					  m->cfg.metrics);
		else if (r == 0 && m->metrics_err)
			log_notice("'%s' is written again", m->cfg.metrics);
		m->metrics_err = r;
	}
}

int mirror_pass(struct mirror *m, volatile const int *stop)
{
	_cleanup_free_ struct mfs_segent *v = NULL;
	uint64_t upto = m->st.applied_lsn; /* applied (maybe not yet flushed), or held */
	size_t n = 0, i;
	int r = 0, ret = 0;

	r = mfs_segdir_list(m->in_fd, &v, &n);
	if (r < 0)
		return log_error_errno(r, "Failed to list '%s': %m", m->cfg.incoming);
	m->status.gap_from = m->status.gap_to = 0;
	m->batch_lsn = m->st.applied_lsn;
	chain_reset(m);
	for (i = 0; i < n && !*stop; i++) {
		const struct mfs_segent *e = &v[i];

		if (e->last <= m->st.applied_lsn) {
			retire(m, e->name); /* already applied (re-delivered) */
			continue;
		}
		if (e->last <= upto)
			continue; /* in the batch, or held: covered by a validated one */
		if (e->first > upto + 1) {
			m->status.gap_from = upto + 1;
			m->status.gap_to = e->first - 1;
			set_error(m, "gap: LSN %" PRIu64 "-%" PRIu64 " missing before '%s', waiting",
				  upto + 1, e->first - 1, e->name);
			ret = 1;
			break;
		}
		r = handle(m, e, &v[i + 1], n - i - 1);
		if (r < 0) {
			ret = r;
			break;
		}
		if (r == 0) {
			upto = m->batch_lsn;
		} else if (r == 3) {
			upto = e->last; /* validated and held */
		} else if (r == 2) {
			ret = 1; /* still arriving: later ones wait */
			break;
		} else {
			ret = 1; /* quarantined: moved away, no longer waiting */
			v[i].last = 0;
		}
	}
	prefetch_join_all(m);
	r = batch_commit(m);
	if (r < 0 && ret >= 0)
		ret = r;
	m->status.waiting = 0;
	for (size_t j = 0; j < n; j++)
		m->status.waiting += v[j].last > m->st.applied_lsn;
	if (ret == 0 && !m->status.gap_from) {
		m->status.last_error = NULL;
		mfs_log_repeat_reset(&m->error_log);
	}
	m->retries = ret < 0 ? m->retries + 1 : 0;
	m->status.retries = m->retries;
	m->status.retry_ms = mirror_retry_ms(m);
	publish(m);
	return ret;
}

void mirror_describe(const struct mirror *m, char *buf, size_t size)
{
	const struct mirror_status *st = &m->status;

	snprintf(buf, size, "applied LSN %" PRIu64 ", %u waiting, %u quarantined%s%s%s",
		 m->st.applied_lsn, st->waiting, st->n_quarantined, m->cfg.hold ? ", holding" : "",
		 st->last_error ? "; " : "", st->last_error ? st->last_error : "");
}

unsigned mirror_retry_ms(const struct mirror *m)
{
	unsigned ms = RETRY_MIN_MS;

	if (!m->retries)
		return 0;
	for (unsigned i = 1; i < m->retries && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	return ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS;
}

/* ================================================================ lifetime */

int mirror_new(const struct mirror_config *cfg, struct mirror **ret)
{
	struct mirror *m = calloc(1, sizeof(*m));
	int r;

	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	m->in_fd = m->data_fd = m->state_fd = m->q_fd = m->cascade_fd = m->keep_fd = -EBADF;
	m->data_lock_fd = m->state_lock_fd = m->cascade_lock_fd = -EBADF;
	m->rec = malloc(sizeof(*m->rec));
	if (!m->rec) {
		mirror_free(m);
		return -ENOMEM;
	}
	if ((m->in_fd = r = open_dir("incoming", cfg->incoming, false)) < 0 ||
	    (m->data_fd = r = open_dir("data", cfg->data, false)) < 0 ||
	    (m->state_fd = r = open_dir("state", cfg->state, true)) < 0 ||
	    (m->q_fd = r = open_dir("quarantine", cfg->quarantine, true)) < 0 ||
	    (cfg->cascade && (m->cascade_fd = r = open_dir("cascade", cfg->cascade, true)) < 0) ||
	    (cfg->keep && (m->keep_fd = r = open_dir("keep", cfg->keep, true)) < 0)) {
		mirror_free(m);
		return r;
	}
	r = take_locks(m);
	if (r < 0) {
		mirror_free(m);
		return r;
	}
	if (cfg->instance)
		snprintf(m->instance, sizeof(m->instance), "%s", cfg->instance);
	else if (!realpath(cfg->data, m->instance))
		snprintf(m->instance, sizeof(m->instance), "%s", cfg->data);
	m->status.instance = m->instance;
	r = mirror_state_load(m->state_fd, &m->st);
	if (r < 0) {
		log_error_errno(r, "Failed to load the state in '%s': %m", cfg->state);
		mirror_free(m);
		return r;
	}
	/* a data directory that was a primary may hold records the new primary
	 * does not have: only `mirrorctl rejoin` may turn it into a mirror */
	if (!m->st.have_data_set && faccessat(m->data_fd, ".mirrorfs/state", F_OK, 0) == 0) {
		log_error("'%s' was a primary (it has .mirrorfs/state) and this mirror has no applied "
			  "state: run 'mirrorctl rejoin --data %s --state %s --incoming %s' first",
			  cfg->data, cfg->data, cfg->state, cfg->incoming);
		mirror_free(m);
		return -EEXIST;
	}
	/* snapshots hard-link the live inodes, which replay writes in place */
	if (has_snapshots(m->data_fd)) {
		log_error("'%s' holds snapshots (%s/" MFS_SNAPSHOT_STORE "): replay would write into "
			  "the files they share; 'mirrorctl rejoin' removes them (copy out any you "
			  "need first)", cfg->data, cfg->data);
		mirror_free(m);
		return -EEXIST;
	}
	r = mfs_replay_new(m->data_fd, cfg->naive ? MFS_REPLAY_F_NO_URING : 0, &m->engine);
	if (r < 0) {
		log_error_errno(r, "Failed to start the replay engine on '%s': %m", cfg->data);
		mirror_free(m);
		return r;
	}
	mfs_replay_set_keys(m->engine, cfg->keys);
	mfs_replay_set_alloc_share(m->engine, cfg->max_alloc_pct ? cfg->max_alloc_pct :
					       MFS_REPLAY_ALLOC_PCT);
	if (!cfg->naive) {
		struct mfs_replay_stats st;

		mfs_replay_get_stats(m->engine, &st);
		if (!st.uring)
			log_warning("io_uring is unavailable (kernel.io_uring_disabled?), "
				    "replaying with plain syscalls");
	}
	*ret = m;
	return 0;
}

struct mirror *mirror_free(struct mirror *m)
{
	if (!m)
		return NULL;
	prefetch_join_all(m);
	mfs_replay_free(m->engine);
	free_names(&m->status);
	free(m->held);
	free(m->rec);
	for (size_t i = 0; i < m->n_batch; i++)
		free(m->batch_names[i]);
	free(m->batch_names);
	closep(&m->in_fd);
	closep(&m->data_fd);
	closep(&m->state_fd);
	closep(&m->q_fd);
	closep(&m->cascade_fd);
	closep(&m->keep_fd);
	closep(&m->data_lock_fd);
	closep(&m->state_lock_fd);
	closep(&m->cascade_lock_fd);
	free(m);
	return NULL;
}
