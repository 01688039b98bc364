/* SPDX-License-Identifier: MIT */
/*
 * prefetch.c - the next PREFETCH segments opened and loaded (mapped and
 * validated) on threads of their own while the main thread applies the one
 * before them; the streaming validation of the naive mode; hold mode's
 * list of segments already validated.
 */
#include "mirror_i.h"

/* ================================================================ prefetch */

/*
 * Open segment @name of the incoming folder @in_fd and fstat it. Returns
 * 0, or -errno; *ret_fd is the caller's to close either way (negative if
 * the open failed).
 */
int mirror_seg_open(int in_fd, const char *name, int *ret_fd, struct stat *st)
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

	if (mirror_seg_open(p->in_fd, p->name, &p->fd, &p->st) < 0) {
		closep(&p->fd); /* not taken: the main thread opens it and reports */
		p->fd = -EBADF;
	} else if (S_ISREG(p->st.st_mode)) {
		p->r = mfs_replay_seg_load(p->engine, p->fd, p->have_uuid ? p->uuid : NULL,
					   p->max_size, &p->s);
	}
	return NULL;
}

/* Start loading segment @e ahead, unless it is already or no slot is free. */
void mirror_prefetch_start(struct mirror *m, const struct mfs_segent *e)
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

void mirror_prefetch_join_all(struct mirror *m)
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
bool mirror_prefetch_take(struct mirror *m, const struct mfs_segent *e, int *ret_fd,
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
	mirror_set_error(m, "reading '%s' failed (will retry): %m", e->name);
	return r;
}

/* Naive mode: validate by a streaming scan of the file (it is read again to apply). */
int mirror_validate_stream(struct mirror *m, const struct mfs_segent *e, int fd,
			   struct mfs_seg_info *info)
{
	struct mfs_segr_opts o = { .expect_uuid = m->st.have_data_set ? m->st.data_set : NULL,
				   .keys = m->cfg.keys };
	struct check_ctx c = { 0 };
	int r;

	r = mfs_seg_scan_fd_opts(fd, &o, mirror_check_cb, &c, info);
	if (r < 0 && !c.error)
		return read_failed(m, e, r);
	return mirror_judge(m, e, fd, &c, info);
}

/*
 * Judge segment @e (open as @fd), loaded into memory once and validated in
 * full by mfs_replay_seg_load() (@r its result, @s the segment). Returns 0
 * and @s in *ret if it may be applied, 1 if it was quarantined, 2 if it
 * may still be arriving, -errno. @s is freed unless returned.
 */
int mirror_validate(struct mirror *m, const struct mfs_segent *e, int fd, int r,
		    struct mfs_replay_seg *s, struct mfs_replay_seg **ret)
{
	struct check_ctx c = { 0 };

	if (r == -EFBIG) {
		mirror_quarantine(m, e->name, "larger than --max-segment (%" PRIu64 " bytes)",
			   m->cfg.max_segment);
		return 1;
	}
	if (r < 0)
		return read_failed(m, e, r);
	c.error = mfs_replay_seg_refused(s, NULL, NULL);
	if (c.error)
		snprintf(c.why, sizeof(c.why), "%s", mfs_replay_seg_why(s, NULL) ?: "refused");
	r = mirror_judge(m, e, fd, &c, mfs_replay_seg_info(s));
	if (r != 0) {
		mfs_replay_seg_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

bool mirror_held_has(struct mirror *m, const struct mfs_segent *e, const struct stat *st)
{
	for (size_t i = 0; i < m->n_held; i++)
		if (!strcmp(m->held[i].name, e->name) && m->held[i].size == (uint64_t)st->st_size &&
		    m->held[i].mtime == st->st_mtim.tv_sec)
			return true;
	return false;
}

void mirror_held_add(struct mirror *m, const struct mfs_segent *e, const struct stat *st)
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
