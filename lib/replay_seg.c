/* SPDX-License-Identifier: MIT */
/*
 * replay_seg.c - segments loaded whole into memory (mapped, or read
 * into a pooled buffer), validated once, kept in compact form and applied
 * from there (see replay.c, "Segments").
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>

#include <liburing.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/path.h"
#include "mirrorfs/segment.h"
#include "mirrorfs/sigbus.h"
#include "replay_i.h"

/* ================================================================ segments */

static int seg_str(struct mfs_replay_seg *s, const char *str, uint32_t *ret)
{
	size_t n = strlen(str) + 1;

	if (s->n_strs + n > s->cap_strs) {
		size_t cap = MFS_MAX(s->cap_strs * 2, s->n_strs + n + 256);
		char *p = realloc(s->strs, cap);

		if (!p)
			return -ENOMEM;
		s->strs = p;
		s->cap_strs = cap;
	}
	if (s->n_strs > UINT32_MAX - n)
		return -EOVERFLOW;
	memcpy(s->strs + s->n_strs, str, n);
	*ret = (uint32_t)s->n_strs;
	s->n_strs += n;
	return 0;
}

/* Keep the decoded record @rec (data pointing into s->buf) in compact form. */
/* Copy @len bytes at *@data into memory of @s, and point *@data there. */
static int seg_keep_data(struct mfs_replay_seg *s, const void **data, size_t len)
{
	void *copy;

	if (s->n_zdata == s->cap_zdata) {
		size_t cap = s->cap_zdata ? s->cap_zdata * 2 : 64;
		void **n = realloc(s->zdata, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->zdata = n;
		s->cap_zdata = cap;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, *data, len);
	s->zdata[s->n_zdata++] = copy;
	*data = copy;
	return 0;
}

static int seg_keep(struct mfs_replay_seg *s, const struct mfs_rec *rec)
{
	const void *data = rec->data;
	struct lrec *l;
	int e;

	if (s->n_recs == s->cap_recs) {
		size_t cap = s->cap_recs ? s->cap_recs * 2 : 8;
		struct lrec *n = realloc(s->recs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->recs = n;
		s->cap_recs = cap;
	}
	if (rec->was_zstd_len || rec->decrypted) { /* in the reader's buffer: keep a copy */
		e = seg_keep_data(s, &data, rec->data_len);
		if (e < 0)
			return e;
	}
	l = &s->recs[s->n_recs];
	*l = (struct lrec){ .fields = rec->fields, .data = data };
	e = seg_str(s, rec->path, &l->path);
	if (e == 0)
		e = seg_str(s, rec->path2, &l->path2);
	if (e == 0)
		s->n_recs++;
	return e;
}

static void seg_get(const struct mfs_replay_seg *s, size_t i, struct mfs_rec *rec)
{
	const struct lrec *l = &s->recs[i];

	rec->fields = l->fields;
	strcpy(rec->path, s->strs + l->path);
	strcpy(rec->path2, s->strs + l->path2);
	rec->data = l->data;
	rec->zstd_len = rec->was_zstd_len = 0; /* expanded when loaded */
}

/* Decode and check every record of s->buf once; the verdict goes to s->info. */
static int seg_scan(struct mfs_replay_seg *s, const uint8_t *expect_uuid)
{
	_cleanup_free_ struct mfs_rec *rec = malloc(sizeof(*rec));
	struct mfs_segr_opts o = { .expect_uuid = expect_uuid, .keys = s->r->keys };
	struct mfs_segr *rd;
	int e;

	if (!rec)
		return -ENOMEM;
	e = mfs_segr_open_buf_opts(s->buf, s->len, &o, &rd);
	if (e < 0)
		return e;
	while ((e = mfs_segr_next(rd, rec)) > 0) {
		e = mfs_replay_check_why(rec, s->why, sizeof(s->why));
		if (e < 0) {
			s->refused = e;
			s->refused_lsn = rec->lsn;
			s->refused_type = rec->type;
			e = 0;
			break;
		}
		e = seg_keep(s, rec);
		if (e < 0)
			break;
	}
	s->info = *mfs_segr_info(rd);
	mfs_segr_free(rd);
	return e;
}

/*
 * A buffer of at least @size bytes, from the pool or freshly mapped and
 * populated at once: filling fresh memory page fault by page fault costs
 * more than reading the segment (measured: 3-6x in a VM).
 */
static void *buf_get(struct mfs_replay *r, size_t size, size_t *ret_cap)
{
	size_t cap = (size + BUF_ALIGN) & ~((size_t)BUF_ALIGN - 1);
	void *p = NULL;

	pthread_mutex_lock(&r->pool_lock);
	for (unsigned i = 0; i < POOL_SLOTS && !p; i++)
		if (r->pool[i].p && r->pool[i].cap >= size) {
			p = r->pool[i].p;
			*ret_cap = r->pool[i].cap;
			r->pool[i].p = NULL;
		}
	pthread_mutex_unlock(&r->pool_lock);
	if (p)
		return p;
	p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, cap, MADV_POPULATE_WRITE); /* best effort: faults later otherwise */
	*ret_cap = cap;
	return p;
}

static void buf_put_locked(struct mfs_replay *r, void *p, size_t cap)
{
	unsigned k = 0;

	for (unsigned i = 0; i < POOL_SLOTS; i++) {
		if (!r->pool[i].p) {
			r->pool[i].p = p;
			r->pool[i].cap = cap;
			return;
		}
		if (r->pool[i].cap < r->pool[k].cap)
			k = i;
	}
	if (r->pool[k].cap < cap) { /* keep the larger buffers */
		(void)munmap(r->pool[k].p, r->pool[k].cap);
		r->pool[k].p = p;
		r->pool[k].cap = cap;
		return;
	}
	(void)munmap(p, cap);
}

static void buf_put(struct mfs_replay *r, void *p, size_t cap)
{
	pthread_mutex_lock(&r->pool_lock);
	buf_put_locked(r, p, cap);
	pthread_mutex_unlock(&r->pool_lock);
}

int mfs_replay_seg_load(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
			uint64_t max_size, struct mfs_replay_seg **ret)
{
	struct mfs_replay_seg *s;
	struct mfs_bus_guard g;
	struct stat st;
	ssize_t got;
	int e;

	if (fstat(segfd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size > max_size || (uint64_t)st.st_size > SIZE_MAX / 2)
		return -EFBIG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->r = r;
	s->until_lsn = s->until_ns = UINT64_MAX;
	if (st.st_size > 0 && !(r->keys && r->keys->n)) {
		/*
		 * Not when authenticating: a mapping shows later changes to
		 * the file, and what is applied must be what was checked.
		 * No MAP_POPULATE: its page-by-page walk cost more than the
		 * validation pass's faults, which map the page cache 16 pages
		 * at a time (800 MiB of segments, 10 interleaved rounds:
		 * 0.88x the time).
		 */
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, segfd, 0);

		if (p != MAP_FAILED) {
			s->buf = p;
			s->mapped = true;
			s->len = (size_t)st.st_size;
			goto scan;
		}
	}
	s->buf = buf_get(r, (size_t)st.st_size, &s->cap);
	if (!s->buf) {
		mfs_replay_seg_free(s);
		return -ENOMEM;
	}
	got = mfs_pread_all(segfd, s->buf, (size_t)st.st_size, 0);
	if (got < 0) {
		mfs_replay_seg_free(s);
		return (int)got;
	}
	s->len = (size_t)got; /* a file that shrank meanwhile reads as torn */
scan:
	/* a mapped page that cannot be read is an I/O error, not SIGBUS (a buffer never faults) */
	mfs_bus_guard_arm(&g, s->buf, s->len);
	e = seg_scan(s, expect_uuid);
	if (mfs_bus_guard_disarm(&g) < 0)
		e = -EIO;
	if (e < 0) {
		mfs_replay_seg_free(s);
		return e;
	}
	*ret = s;
	return 0;
}

const struct mfs_seg_info *mfs_replay_seg_info(const struct mfs_replay_seg *s)
{
	return &s->info;
}

int mfs_replay_seg_refused(const struct mfs_replay_seg *s, uint64_t *ret_lsn,
			   enum mfs_rec_type *ret_type)
{
	if (!s->refused)
		return 0;
	if (ret_lsn)
		*ret_lsn = s->refused_lsn;
	if (ret_type)
		*ret_type = s->refused_type;
	return s->refused;
}

struct mfs_replay_seg *mfs_replay_seg_free(struct mfs_replay_seg *s)
{
	if (!s)
		return NULL;
	if (s->mapped)
		(void)munmap(s->buf, s->len);
	else if (s->buf)
		buf_put(s->r, s->buf, s->cap);
	free(s->recs);
	free(s->strs);
	for (size_t i = 0; i < s->n_zdata; i++)
		free(s->zdata[i]);
	free(s->zdata);
	free(s);
	return NULL;
}

void mfs_replay_seg_limit(struct mfs_replay_seg *s, uint64_t until_lsn, uint64_t until_ns)
{
	s->until_lsn = until_lsn;
	s->until_ns = until_ns;
	s->pf_done = false;
}

/* The index of the first record after @i of @s with the same path, or n_recs. */
static size_t next_same_path(const struct mfs_replay_seg *s, size_t i)
{
	const char *p = s->strs + s->recs[i].path;
	size_t k;

	for (k = i + 1; k < s->n_recs; k++)
		if (!mfs_rec_type_is_marker(s->recs[k].type) && !strcmp(s->strs + s->recs[k].path, p))
			break;
	return k;
}

bool lrec_is_compensated(const struct mfs_replay_seg *s, size_t i)
{
	const struct lrec *l = &s->recs[i], *n;
	size_t k = next_same_path(s, i);

	if (k == s->n_recs)
		return false;
	n = &s->recs[k];
	if (mfs_rec_type_is_data(l->type)) { /* compensated by a truncate (after a write) */
		if (n->type == MFS_REC_WRITE && (k = next_same_path(s, k)) < s->n_recs)
			n = &s->recs[k];
		return n->type == MFS_REC_TRUNCATE;
	}
	if (l->type == MFS_REC_SETXATTR)
		return (n->type == MFS_REC_SETXATTR || n->type == MFS_REC_REMOVEXATTR) &&
		       !strcmp(s->strs + l->path2, s->strs + n->path2);
	return false;
}

/*
 * Whether record @i of @s, failing with @e while applied, is the primary's
 * own failure: EFBIG of a write, truncate or fallocate, ENOSPC or E2BIG of
 * a setxattr (the attributes already there leave less room), compensated
 * (see replay_preflight.c; for sizes this is the fallback where the file
 * size limit could not be probed).
 */
static bool compensated(const struct mfs_replay_seg *s, size_t i, int e)
{
	const struct lrec *l = &s->recs[i];

	if (l->type == MFS_REC_SETXATTR)
		return (e == -ENOSPC || e == -E2BIG) && lrec_is_compensated(s, i);
	return e == -EFBIG && l->type != MFS_REC_WRITE && lrec_is_compensated(s, i);
}

int mfs_replay_seg_apply(struct mfs_replay *r, struct mfs_replay_seg *s, uint64_t after_lsn,
			 int (*cb)(const struct mfs_rec *rec, void *arg), void *arg)
{
	int e = 0;

	r->why[0] = '\0';
	if (!s->pf_done && (e = mfs_replay_seg_preflight(r, s, after_lsn)) < 0) {
		snprintf(r->why, sizeof(r->why), "%s", s->why);
		mfs_replay_seg_free(s);
		return e;
	}
	s->next = r->held;
	r->held = s;
	r->held_bytes += replay_seg_cost(s);
	r->n_held++;
	r->applying = s;
	r->ref = true;
	for (size_t i = 0; i < s->n_recs && e == 0; i++) {
		const struct lrec *l = &s->recs[i];

		if (l->lsn <= after_lsn)
			continue;
		if (l->lsn > s->until_lsn || l->time_ns > s->until_ns)
			break;
		seg_get(s, i, r->scratch);
		if (l->skip) {
			r->st.skipped++;
			log_debug("replay: LSN %" PRIu64 " %s '%s': the primary's failure, "
				  "compensated by a later record", l->lsn, mfs_rec_type_name(l->type),
				  r->scratch->path);
		} else {
			e = replay_apply_rec(r, r->scratch);
			if (compensated(s, i, e)) {
				r->st.skipped++;
				e = 0;
			}
			replay_note_why(r, r->scratch, e);
		}
		if (e == 0 && cb)
			e = cb(r->scratch, arg);
	}
	r->ref = false;
	r->applying = NULL;
	if (e == 0 && replay_hold_full(r))
		e = replay_drain(r);
	return e;
}

/* Counts the records applied for mfs_replay_segment(). */
static int seg_last_cb(const struct mfs_rec *rec, void *arg)
{
	*(uint64_t *)arg = rec->lsn;
	return 0;
}

int mfs_replay_segment(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
		       uint64_t after_lsn, bool strict, uint64_t *ret_last)
{
	struct mfs_replay_seg *s;
	uint64_t last = after_lsn;
	int e;

	int refused;

	e = mfs_replay_seg_load(r, segfd, expect_uuid, UINT64_MAX, &s);
	if (e < 0)
		return e;
	refused = s->refused;
	if ((refused && strict) || (strict && s->info.verdict != MFS_SEG_OK) ||
	    (s->info.verdict != MFS_SEG_OK && s->info.verdict != MFS_SEG_TORN) ||
	    !s->info.header_valid) {
		mfs_replay_seg_free(s);
		return refused ? refused : -EBADMSG;
	}
	if (!refused && (e = mfs_replay_seg_preflight(r, s, after_lsn)) < 0) {
		snprintf(r->why, sizeof(r->why), "%s", s->why);
		mfs_replay_seg_free(s);
		return e;
	}
	e = mfs_replay_seg_apply(r, s, after_lsn, seg_last_cb, &last); /* @s is the engine's now */
	if (e < 0)
		return e;
	if (refused) /* not strict: the records before the refused one are applied */
		return refused;
	*ret_last = last;
	return 0;
}
