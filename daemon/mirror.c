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
#include "mirror_i.h"

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
	char **v;

	free_names(&m->status);
	if (mfs_dir_open(m->q_fd, ".", &d) < 0)
		return;
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
	m->status.auth = mirror_keyed(m);
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
	mirror_chain_reset(m);
	for (i = 0; i < n && !*stop; i++) {
		const struct mfs_segent *e = &v[i];

		if (e->last <= m->st.applied_lsn) {
			mirror_retire(m, e->name); /* already applied (re-delivered) */
			continue;
		}
		if (e->last <= upto)
			continue; /* in the batch, or held: covered by a validated one */
		if (e->first > upto + 1) {
			m->status.gap_from = upto + 1;
			m->status.gap_to = e->first - 1;
			mirror_set_error(m, "gap: LSN %" PRIu64 "-%" PRIu64 " missing before '%s', waiting",
				  upto + 1, e->first - 1, e->name);
			ret = 1;
			break;
		}
		r = mirror_handle(m, e, &v[i + 1], n - i - 1);
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
	mirror_prefetch_join_all(m);
	r = mirror_batch_commit(m);
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
	if ((m->in_fd = r = mirror_open_dir("incoming", cfg->incoming, false)) < 0 ||
	    (m->data_fd = r = mirror_open_dir("data", cfg->data, false)) < 0 ||
	    (m->state_fd = r = mirror_open_dir("state", cfg->state, true)) < 0 ||
	    (m->q_fd = r = mirror_open_dir("quarantine", cfg->quarantine, true)) < 0 ||
	    (cfg->cascade && (m->cascade_fd = r = mirror_open_dir("cascade", cfg->cascade, true)) < 0) ||
	    (cfg->keep && (m->keep_fd = r = mirror_open_dir("keep", cfg->keep, true)) < 0)) {
		mirror_free(m);
		return r;
	}
	r = mirror_take_locks(m);
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
	mirror_cascade_chain_load(m);
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
	if (mirror_has_snapshots(m->data_fd)) {
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
	mirror_prefetch_join_all(m);
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
