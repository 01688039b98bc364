/* SPDX-License-Identifier: MIT */
/*
 * apply.c - one segment applied through lib/segrun.c (loaded and judged
 * ahead, or in naive mode streamed) and cascaded, batches of them
 * gathered, flushed once, recorded as applied, then retired.
 */
#include "mirror_i.h"

#include "mirrorfs/segrun.h"

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

/* Naive mode: each record of the streaming read, applied (or past the file
 * system's limits: compensated, see the preflight), then accounted; the
 * first that fails stops the segment. */
static int stream_each(void *arg, const struct mfs_rec *rec, int e)
{
	struct apply_ctx *a = arg;

	if (e < 0) {
		a->error = e;
		a->err_lsn = rec->lsn;
		return e;
	}
	return applied_cb(rec, arg);
}

/* Default mode: each record applied from the loaded segment, then accounted. */
static int applied_each(void *arg, const struct mfs_rec *rec, int e)
{
	return applied_cb(rec, arg);
}

/*
 * Start the cascade copy of segment @info from LSN @first. A mirror with
 * keys re-tags what it forwards with the key that tagged @info (its id is
 * in the header; a further mirror holds the same keys), in a chain of its
 * own: the cascade segment's previous tag is the last tag of the cascade
 * segment before it when that one ended at @first - 1, else zeros (a new
 * chain, which the next mirror accepts and logs). An encrypted segment is
 * forwarded encrypted with the same key.
 */
static int cascade_begin(struct mirror *m, const struct mfs_seg_info *info, uint64_t first,
			 struct mfs_segw **ret)
{
	struct mfs_segw_opts o = { .key = NULL };
	char tmp[64];

	if (m->cascade_fd < 0) {
		*ret = NULL;
		return 0;
	}
	snprintf(tmp, sizeof(tmp), ".cascade-%020" PRIu64 ".partial", first);
	(void)unlinkat(m->cascade_fd, tmp, 0);
	if (mirror_keyed(m) && info->authenticated)
		o.key = mfs_keyring_find(m->cfg.keys, info->key_id);
	if (info->seg_flags & MFS_SEG_F_ENC) /* what was encrypted stays so */
		o.enc_key = mfs_keyring_find_enc(m->cfg.keys, info->enc_key_id);
	if (!o.key && !o.enc_key)
		return mfs_segw_create(m->cascade_fd, tmp, info->uuid, info->seg_no, first, ret);
	if (m->cascade_have_chain && m->cascade_chain_lsn + 1 == first)
		memcpy(o.prev_tag, m->cascade_chain, MFS_TAG_SIZE);
	return mfs_segw_create_opts(m->cascade_fd, tmp, info->uuid, info->seg_no, first, 0, &o,
				    ret);
}

static int cascade_end(struct mirror *m, struct mfs_segw *cw)
{
	char name[MFS_SEG_NAME_LEN + 1];
	struct mfs_segw_stats s;
	uint8_t chain[MFS_TAG_SIZE];
	bool tagged;
	int r;

	if (!cw)
		return 0;
	tagged = mfs_segw_is_auth(cw);
	mfs_segw_chain(cw, chain);
	mfs_segw_get_stats(cw, &s);
	r = mfs_segw_close(cw, m->cascade_fd, name);
	if (r == 0)
		r = mfs_fsync_dir(m->cascade_fd, NULL);
	m->cascade_have_chain = r == 0 && tagged;
	m->cascade_chain_lsn = s.next_lsn - 1;
	memcpy(m->cascade_chain, chain, MFS_TAG_SIZE);
	return r;
}

/*
 * At start: the chain of the newest closed segment in the cascade folder,
 * when it is tagged with one of our keys and authenticates (the next
 * cascade segment continues it). Anything else: a new chain.
 */
void mirror_cascade_chain_load(struct mirror *m)
{
	struct mfs_segr_opts o = { .keys = m->cfg.keys };
	_cleanup_free_ struct mfs_segent *segs = NULL;
	struct mfs_seg_info info;
	size_t n = 0;
	int fd;

	if (m->cascade_fd < 0 || !mirror_keyed(m) ||
	    mfs_segdir_list(m->cascade_fd, &segs, &n) < 0 || n == 0)
		return;
	fd = openat(m->cascade_fd, segs[n - 1].name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && mfs_seg_scan_fd_opts(fd, &o, NULL, NULL, &info) == 0 &&
	    info.verdict == MFS_SEG_OK && info.authenticated) {
		m->cascade_have_chain = true;
		m->cascade_chain_lsn = info.last_lsn;
		memcpy(m->cascade_chain, info.last_tag, MFS_TAG_SIZE);
	}
	if (fd >= 0)
		close(fd);
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
	struct mfs_segrun run;
	int r;

	r = cascade_begin(m, info, a.after + 1, &a.cw);
	if (r < 0) {
		mfs_replay_seg_free(s);
		return log_error_errno(r, "Failed to start the cascade segment in '%s': %m",
				       m->cfg.cascade);
	}
	mfs_segrun_init(&run, m->engine, a.after);
	run.each_arg = &a;
	if (s) {
		run.each = applied_each;
		r = mfs_segrun_seg(&run, s);
		if (r < 0 && !a.local) {
			a.error = r;
			a.err_lsn = a.last + 1; /* LSNs are consecutive */
		}
	} else {
		run.stream = true;
		run.each = stream_each;
		run.keys = m->cfg.keys;
		run.have_uuid = true;
		memcpy(run.uuid, info->uuid, 16);
		/* not the last file: torn, it changed since validation (-EBADMSG) */
		r = mfs_segrun_fd(&run, fd, e->name, false);
	}
	if (a.error < 0 || r < 0) {
		int err = a.error < 0 ? a.error : r;

		const char *why = a.local ? NULL : mfs_replay_why(m->engine);

		mfs_segw_free(a.cw);
		errno = -err;
		if (!a.local && !mfs_replay_error_is_local(err)) {
			if (why)
				mirror_quarantine(m, e->name, "applying failed: %s", why);
			else
				mirror_quarantine(m, e->name, "applying LSN %" PRIu64 " failed: %m", a.err_lsn);
			return 1;
		}
		if (why)
			mirror_set_error(m, "applying '%s' failed (will retry): %s", e->name, why);
		else
			mirror_set_error(m, "applying '%s' failed at LSN %" PRIu64 " (will retry): %m",
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
	struct batch_part odd = { m, 1, 2, mirror_retire }, even = { m, 0, 2, mirror_retire },
			  all = { m, 0, 1, mirror_retire };
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
 * then retire its segments. The mirror's applied LSN (m->st, which passes
 * skip and retire by and status.json reports) moves only once recorded.
 * Returns 0 or -errno (the segments stay in incoming and are applied
 * again: idempotent).
 */
int mirror_batch_commit(struct mirror *m)
{
	uint64_t dt;
	int r;

	if (m->n_batch == 0)
		return 0;
	r = batch_flush(m);
	if (r < 0) {
		errno = -r;
		mirror_set_error(m, "flushing the data directory '%s' failed (will retry): %m",
			  m->cfg.data);
	} else {
		/* the mirror goes by (skips, retires, reports) only what is recorded */
		struct mfs_applied next = m->st;

		next.applied_lsn = m->batch_lsn;
		if (m->batch_ns)
			next.last_record_ns = m->batch_ns;
		next.segments_applied += m->n_batch;
		next.have_chain = m->batch_have_chain;
		next.chain_lsn = m->batch_chain_lsn;
		memcpy(next.chain_tag, m->batch_chain, MFS_TAG_SIZE);
		r = mfs_applied_write(m->state_fd, &next);
		if (r < 0)
			log_error_errno(r, "Failed to record applied LSN %" PRIu64 " in '%s/"
					MFS_APPLIED_FILE "': %m", m->batch_lsn, m->cfg.state);
		else
			m->st = next;
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
	mirror_chain_reset(m);
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
 * ahead meanwhile. Returns 0 with the fd in *ret_fd, or what mirror_handle()
 * returns.
 */
static int open_segment(struct mirror *m, const struct mfs_segent *e, const struct mfs_segent *next,
			size_t n_next, int *ret_fd, struct stat *st, int *ret_load,
			struct mfs_replay_seg **ret_s)
{
	int fd = -EBADF, r;
	bool taken = mirror_prefetch_take(m, e, &fd, st, ret_load, ret_s);

	for (size_t i = 0, k = 0; i < n_next && k < PREFETCH; i++)
		if (next[i].last > e->last) { /* not covered once @e is applied */
			mirror_prefetch_start(m, &next[i]);
			k++;
		}
	if (taken) {
		*ret_fd = fd;
		return 0;
	}
	r = mirror_seg_open(m->in_fd, e->name, ret_fd, st);
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
 * the loaded segment in *ret_s, or what mirror_handle() returns.
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
int mirror_handle(struct mirror *m, const struct mfs_segent *e, const struct mfs_segent *next,
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
		mirror_set_error(m, "'%s' is not a regular file, skipped (waiting for the segment)",
			  e->name);
		return 2;
	}
	if (m->cfg.hold && mirror_held_has(m, e, &st))
		return 3;
	if (m->cfg.naive) {
		r = mirror_validate_stream(m, e, fd, &info);
	} else {
		if (m->cfg.hold)
			load = load_segment(m, fd, &s);
		r = mirror_validate(m, e, fd, load, s, &s);
		if (r == 0)
			info = *mfs_replay_seg_info(s);
	}
	if (r != 0)
		return r;
	if (m->cfg.hold) {
		mfs_replay_seg_free(s);
		mirror_held_add(m, e, &st);
		log_info("hold: '%s' validated, kept", e->name);
		return 3;
	}
	if (m->cfg.naive && (r = naive_preflight(m, e, fd, &s)) != 0)
		return r;
	if (s && (r = mirror_preflight(m, e, s)) != 0)
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
		return mirror_batch_commit(m);
	return 0;
}
