/* SPDX-License-Identifier: MIT */
/*
 * incoming.c - mirrord's folders (opened, locked) and an arriving segment
 * judged: its records checked, its chain, its preflight against the data
 * folder; a bad one quarantined with its reason, an applied one retired
 * (see mirror.c for the invariants).
 */
#include "mirror_i.h"

/* ================================================================ helpers */

/* Open (@create: make first) the folder given as --@what. Returns the fd or -errno, logged. */
int mirror_open_dir(const char *what, const char *path, bool create)
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
bool mirror_has_snapshots(int fd)
{
	_cleanup_closedir_ DIR *d = NULL;
	int r = mfs_dir_open(fd, MFS_SNAPSHOT_STORE, &d);

	if (r < 0)
		return false;
	return mfs_readdir(d) != NULL;
}

/* In a cascade folder: its lock, and the mark mirrorfs-ship looks for. */
#define CASCADE_LOCK ".mirrord-cascade"

/*
 * One mirrord per data folder and per state folder, and never one on a data
 * folder that a mirrorfs mount, a rejoin, a promote or a restore is
 * writing: each of them holds DATADIR/.mirrorfs/lock (lib/pidlock.c).
 */
int mirror_take_locks(struct mirror *m)
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

void mirror_set_error(struct mirror *m, const char *fmt, ...)
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

void mirror_quarantine(struct mirror *m, const char *name, const char *fmt, ...)
{
	char reason[512], rname[MFS_SEG_NAME_LEN + 16];
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(reason, sizeof(reason) - 1, fmt, ap);
	va_end(ap);
	n = MFS_MIN(n, (int)sizeof(reason) - 2);
	mirror_set_error(m, "quarantined '%s': %s", name, reason);
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

void mirror_retire(struct mirror *m, const char *name)
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

int mirror_check_cb(const struct mfs_rec *rec, void *arg)
{
	struct check_ctx *c = arg;

	c->error = mfs_replay_check_why(rec, c->why, sizeof(c->why));
	return c->error < 0 ? 1 : 0;
}

bool mirror_keyed(const struct mirror *m)
{
	return m->cfg.keys && m->cfg.keys->n;
}

/* The batch's chain starts again from the recorded state. */
void mirror_chain_reset(struct mirror *m)
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
int mirror_judge(struct mirror *m, const struct mfs_segent *e, int fd, const struct check_ctx *c,
		 const struct mfs_seg_info *info)
{
	char verdict[256], u1[37], u2[37];
	struct stat st;

	if (c->error) {
		mirror_quarantine(m, e->name, "%s", c->why);
		return 1;
	}
	if (info->verdict == MFS_SEG_FOREIGN) {
		mfs_uuid_format(info->uuid, u1);
		mfs_uuid_format(m->st.data_set, u2);
		mirror_quarantine(m, e->name, "foreign data set %s (this mirror follows %s)", u1, u2);
		return 1;
	}
	if (info->verdict == MFS_SEG_TORN && !m->cfg.once && fstat(fd, &st) == 0 &&
	    mfs_now_ns() - ((uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec) <
		    YOUNG_NS)
		return 2;
	mfs_seg_verdict_format(info, verdict, sizeof(verdict));
	if (info->verdict != MFS_SEG_OK) {
		mirror_quarantine(m, e->name, "%s", verdict);
		return 1;
	}
	if (info->first_lsn != e->first || info->last_lsn != e->last) {
		mirror_quarantine(m, e->name, "name says LSN %" PRIu64 "-%" PRIu64 ", contents hold %" PRIu64
			   "-%" PRIu64, e->first, e->last, info->first_lsn, info->last_lsn);
		return 1;
	}
	if (mirror_keyed(m) && chain_check(m, info, verdict, sizeof(verdict))) {
		mirror_quarantine(m, e->name, "%s", verdict);
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
int mirror_preflight(struct mirror *m, const struct mfs_segent *e, struct mfs_replay_seg *s)
{
	const char *why;
	bool local;
	int r = mfs_replay_seg_preflight(m->engine, s, m->batch_lsn);

	if (r == 0)
		return 0;
	why = mfs_replay_seg_why(s, &local) ?: strerror(-r);
	if (local || r == -ENOMEM) {
		mirror_set_error(m, "'%s' cannot be applied yet (will retry): %s", e->name, why);
	} else {
		mirror_quarantine(m, e->name, "%s", why);
		r = 1;
	}
	mfs_replay_seg_free(s);
	return r;
}
