/* SPDX-License-Identifier: MIT */
/*
 * replay_wlog.c - the replay engine's write log: writes kept per file,
 * pointing at their bytes, issued together (drain) sorted by offset, each
 * byte once, with write-behind for sequential stretches (see replay.c,
 * "Writes").
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

/* ================================================================ pending writes */

static void note_error(struct mfs_replay *r, int e)
{
	if (e < 0 && r->error == 0)
		r->error = e;
}

bool replay_file_busy(const struct rfile *f)
{
	return f->n_log != 0;
}

/* A copy of @data that lives until the next drain. NULL when out of memory. */
const char *replay_arena_copy(struct mfs_replay *r, const void *data, size_t len)
{
	struct chunk *c = r->arena;

	if (!c || c->cap - c->used < len) {
		size_t cap = MFS_MAX(len, (size_t)ARENA_CHUNK);

		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = r->arena;
		c->used = 0;
		c->cap = cap;
		r->arena = c;
		r->held_bytes += cap;
	}
	memcpy(c->data + c->used, data, len);
	c->used += len;
	return c->data + c->used - len;
}

/* What holding loaded segment @s costs: its pages, its record index and its strings. */
size_t replay_seg_cost(const struct mfs_replay_seg *s)
{
	return (s->len + 4095) / 4096 * 4096 + s->cap_recs * sizeof(*s->recs) + s->cap_strs +
	       sizeof(*s);
}

/* Whether the held segments and copies are to be issued now. */
bool replay_hold_full(const struct mfs_replay *r)
{
	return r->held_bytes >= r->hold_max || r->n_held >= HOLD_SEGS;
}

/* Free held memory no logged write refers to any more (all but the segment being applied). */
static void held_release(struct mfs_replay *r)
{
	struct mfs_replay_seg **pp = &r->held;

	while (r->arena) {
		struct chunk *c = r->arena;

		r->arena = c->next;
		free(c);
	}
	r->held_bytes = 0;
	r->n_held = 0;
	while (*pp) {
		struct mfs_replay_seg *s = *pp;

		if (s == r->applying) {
			r->held_bytes += replay_seg_cost(s);
			r->n_held++;
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		s->next = NULL;
		mfs_replay_seg_free(s);
	}
}

static uint32_t *oidx_slot(const struct rfile *f, uint64_t off)
{
	size_t mask = f->cap_oidx - 1, i = (size_t)((off * 0x9e3779b97f4a7c15ull) >> 32) & mask;

	while (f->oidx[i] && f->log[f->oidx[i] - 1].off != off)
		i = (i + 1) & mask;
	return &f->oidx[i];
}

/* Room in the offset index for one more entry; false when there is no memory for it. */
static bool oidx_reserve(struct rfile *f)
{
	size_t cap = f->cap_oidx ? f->cap_oidx : 128;
	uint32_t *n;

	if (f->n_log + 1 < f->cap_oidx / 2)
		return true;
	if (f->n_log >= UINT32_MAX / 2)
		return false;
	while (f->n_log + 1 >= cap / 2)
		cap *= 2;
	n = calloc(cap, sizeof(*n));
	if (!n)
		return false;
	free(f->oidx);
	f->oidx = n;
	f->cap_oidx = cap;
	for (size_t i = 0; i < f->n_log; i++) /* later entries win a shared slot */
		*oidx_slot(f, f->log[i].off) = (uint32_t)i + 1;
	return true;
}

static void oidx_clear(struct rfile *f)
{
	if (f->oidx)
		memset(f->oidx, 0, f->cap_oidx * sizeof(*f->oidx));
}

/*
 * Log a write of @len bytes at @off from @src. A write that starts where
 * a logged one starts and reaches at least as far replaces it in place
 * (the database rewriting a page): the log, and the sort at issue time,
 * grow with the distinct pages, not with the writes (800 MiB of a hot
 * table: 100,000 writes, 2,048 pages).
 */
int replay_log_add(struct mfs_replay *r, struct rfile *f, uint64_t off, const char *src, size_t len)
{
	uint32_t *slot = NULL;

	if (oidx_reserve(f)) {
		slot = oidx_slot(f, off);
		if (*slot && f->log[*slot - 1].end <= off + len) {
			struct pw *w = &f->log[*slot - 1];

			r->st.dropped_bytes += w->end - w->off;
			*w = (struct pw){ .off = off, .end = off + len, .src = src, .seq = r->seq++ };
			return 0;
		}
	}
	if (f->n_log == f->cap_log) {
		size_t cap = f->cap_log ? f->cap_log * 2 : 64;
		struct pw *n = realloc(f->log, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		f->log = n;
		f->cap_log = cap;
	}
	f->log[f->n_log++] = (struct pw){ .off = off, .end = off + len, .src = src, .seq = r->seq++ };
	if (slot)
		*slot = (uint32_t)f->n_log;
	r->pending_writes++;
	if (!f->queued) {
		f->queued = true;
		f->qnext = r->queue;
		r->queue = f;
	}
	return 0;
}

static int pw_cmp(const void *a, const void *b)
{
	const struct pw *x = a, *y = b;

	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Max-heap of writes by seq: the write whose bytes win is on top. */
static void heap_push(struct pw **h, size_t *n, struct pw *w)
{
	size_t i = (*n)++;

	while (i && h[(i - 1) / 2]->seq < w->seq) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = w;
}

static void heap_pop(struct pw **h, size_t *n)
{
	struct pw *last = h[--(*n)];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1]->seq > h[c]->seq)
			c++;
		if (h[c]->seq <= last->seq)
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
}

/* Contiguous file bytes from held memory, written with one pwritev. */
struct iobatch {
	struct rfile *f;
	uint64_t off, end;
	uint64_t wb_from; /* start of the sequential bytes issued since the last kick */
	uint64_t wb_bytes; /* how many */
	struct iovec iov[IOV_BATCH];
	int n;
};

void replay_reap_one(struct mfs_replay *r, struct io_uring_cqe *cqe)
{
	if (io_uring_cqe_get_data64(cqe) == UD_WB) {
		r->wb_inflight--;
		if (cqe->res < 0) /* a hint: the flush's fsync still writes and reports */
			log_debug_errno(cqe->res, "replay: write-behind: %m");
	} else {
		note_error(r, cqe->res);
	}
	io_uring_cqe_seen(&r->ring, cqe);
	r->inflight--;
}

/*
 * Start writeback of [from, to) of @f without waiting (write-behind), so
 * that the disk writes a long sequential stretch while the drain goes on,
 * instead of all of it in the flush's fsync. An io_uring worker runs the
 * sync_file_range() on the other CPU. At most WB_INFLIGHT are in flight;
 * returns false when the kick was skipped (the caller keeps the range).
 * Scattered writes get none: early writeback of a sparse pattern made
 * ext4 allocate in pieces and cost more system time than it saved
 * (measured on 4 KiB random writes: 2.3 -> 3.0 s).
 */
static bool writebehind(struct mfs_replay *r, struct rfile *f, uint64_t from, uint64_t to)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;

	if (!r->uring || to <= from)
		return false;
	while (r->wb_inflight >= WB_INFLIGHT && io_uring_peek_cqe(&r->ring, &cqe) == 0)
		replay_reap_one(r, cqe);
	if (r->wb_inflight >= WB_INFLIGHT || r->inflight >= QUEUE_DEPTH)
		return false;
	sqe = io_uring_get_sqe(&r->ring);
	if (!sqe)
		return false;
	/* the length is 32 bits; 0 means "to the end of the file" */
	io_uring_prep_sync_file_range(sqe, f->fd, to - from > UINT32_MAX ? 0 : (unsigned)(to - from),
				      from, SYNC_FILE_RANGE_WRITE);
	io_uring_sqe_set_data64(sqe, UD_WB);
	r->inflight++;
	r->wb_inflight++;
	r->st.writebehinds++;
	if (io_uring_submit(&r->ring) >= 0) /* takes the file now: a later close is safe */
		r->sq_unsubmitted = 0;
	return true;
}

static int iob_flush(struct mfs_replay *r, struct iobatch *b)
{
	int e;

	if (b->n == 0)
		return 0;
	r->st.io_writes++;
	r->st.io_bytes += b->end - b->off;
	e = mfs_pwritev_all(b->f->fd, b->iov, b->n, b->off);
	b->n = 0;
	if (e < 0 || b->end - b->off < WB_RUN)
		return e;
	if (!b->wb_bytes)
		b->wb_from = b->off;
	b->wb_bytes += b->end - b->off;
	if (b->wb_bytes >= WB_CHUNK && writebehind(r, b->f, b->wb_from, b->end))
		b->wb_bytes = 0;
	return e;
}

static int iob_add(struct mfs_replay *r, struct iobatch *b, uint64_t off, const char *src,
		   size_t len)
{
	struct iovec *last = b->n ? &b->iov[b->n - 1] : NULL;
	int e;

	if (last && b->end == off && (const char *)last->iov_base + last->iov_len == src) {
		last->iov_len += len;
		b->end += len;
		return 0;
	}
	if (!b->n || b->end != off || b->n == IOV_BATCH) {
		e = iob_flush(r, b);
		if (e < 0)
			return e;
		b->off = b->end = off;
	}
	b->iov[b->n++] = (struct iovec){ .iov_base = (void *)src, .iov_len = len };
	b->end += len;
	return b->end - b->off >= WB_CHUNK ? iob_flush(r, b) : 0; /* write-behind granularity */
}

/*
 * Issue a file's log: sorted by offset, then swept with a heap so that
 * every byte is written once, from the last write of it (superseded bytes
 * are never copied or written); adjacent pieces go out in one pwritev.
 */
static int file_issue(struct mfs_replay *r, struct rfile *f)
{
	_cleanup_free_ struct pw **heap = NULL;
	_cleanup_free_ struct iobatch *b = NULL;
	struct pw *w = f->log;
	size_t n = f->n_log, i = 0, nh = 0;
	uint64_t pos = 0, written = 0;
	int e = 0;

	if (n == 1) {
		r->st.io_writes++;
		r->st.io_bytes += w->end - w->off;
		return mfs_pwrite_all(f->fd, w->src, (size_t)(w->end - w->off), w->off);
	}
	heap = malloc(n * sizeof(*heap));
	b = malloc(sizeof(*b));
	if (!heap || !b)
		return -ENOMEM;
	b->f = f;
	b->n = 0;
	b->wb_bytes = 0;
	qsort(w, n, sizeof(*w), pw_cmp);
	while (e == 0 && (i < n || nh)) {
		struct pw *top;
		uint64_t next;

		if (nh == 0 && pos < w[i].off)
			pos = w[i].off;
		while (i < n && w[i].off <= pos)
			heap_push(heap, &nh, &w[i++]);
		while (nh && heap[0]->end <= pos)
			heap_pop(heap, &nh);
		if (nh == 0)
			continue;
		top = heap[0];
		next = i < n && w[i].off < top->end ? w[i].off : top->end;
		e = iob_add(r, b, pos, top->src + (pos - top->off), (size_t)(next - pos));
		written += next - pos;
		pos = next;
	}
	if (e == 0)
		e = iob_flush(r, b);
	for (i = 0; i < n; i++)
		r->st.dropped_bytes += w[i].end - w[i].off;
	r->st.dropped_bytes -= written;
	return e;
}

/* Issue every logged write and release the memory they came from. Returns 0 or the first error. */
int replay_drain(struct mfs_replay *r)
{
	while (r->queue) {
		struct rfile *f = r->queue;

		r->queue = f->qnext;
		f->queued = false;
		if (!r->error)
			note_error(r, file_issue(r, f));
		f->n_log = 0;
		oidx_clear(f);
	}
	r->pending_writes = 0;
	held_release(r);
	return r->error;
}
