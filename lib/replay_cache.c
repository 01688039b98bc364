/* SPDX-License-Identifier: MIT */
/*
 * replay_cache.c - the replay engine's caches: the open regular files by
 * inode (fd cache, bounded), the path -> file cache invalidated below a
 * path by every namespace operation, the touched folders to fsync.
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

/* ================================================================ tables */

#define HASH_INIT 2166136261u /* FNV-1a */

static inline uint32_t hash_step(uint32_t h, char c)
{
	return (h ^ (uint8_t)c) * 16777619u;
}

uint32_t replay_hash_str(const char *s)
{
	uint32_t h = HASH_INIT;

	for (; *s; s++)
		h = hash_step(h, *s);
	return h;
}

unsigned replay_inode_slot(dev_t dev, ino_t ino)
{
	uint64_t k = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (unsigned)(k >> 32) % ITAB_SIZE;
}

struct rfile *replay_inode_find(struct mfs_replay *r, dev_t dev, ino_t ino)
{
	struct rfile *f = r->itab[replay_inode_slot(dev, ino)];

	while (f && !(f->dev == dev && f->ino == ino))
		f = f->inext;
	return f;
}

/*
 * Count @path (@d = 1 or -1) in the pfx slot of each folder above it.
 * Returns replay_hash_str(@path), computed on the way.
 */
static uint32_t pfx_count(struct mfs_replay *r, const char *path, int d)
{
	uint32_t h = HASH_INIT; /* replay_hash_str() of the prefix read so far */

	for (const char *s = path; *s; s++) {
		if (*s == '/')
			r->pfx[h % PFX_SIZE] += d > 0 ? 1u : UINT32_MAX; /* +1 or -1 */
		h = hash_step(h, *s);
	}
	return h;
}

static void pent_remove(struct mfs_replay *r, struct pent **pp)
{
	struct pent *e = *pp;

	pfx_count(r, e->path, -1);
	*pp = e->next;
	e->f->refs--;
	r->n_paths--;
	free(e);
}

struct rfile *replay_path_find(struct mfs_replay *r, const char *path)
{
	uint32_t h = replay_hash_str(path);

	for (struct pent *e = r->ptab[h % PTAB_SIZE]; e; e = e->next)
		if (e->hash == h && strcmp(e->path, path) == 0)
			return e->f;
	return NULL;
}

void replay_path_clear(struct mfs_replay *r)
{
	for (unsigned i = 0; i < PTAB_SIZE; i++)
		while (r->ptab[i])
			pent_remove(r, &r->ptab[i]);
}

int replay_path_add(struct mfs_replay *r, const char *path, struct rfile *f)
{
	size_t len = strlen(path);
	struct pent *e;

	if (r->n_paths >= MAX_PATHS)
		replay_path_clear(r);
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	memcpy(e->path, path, len + 1);
	e->hash = pfx_count(r, e->path, 1);
	e->f = f;
	e->next = r->ptab[e->hash % PTAB_SIZE];
	r->ptab[e->hash % PTAB_SIZE] = e;
	f->refs++;
	r->n_paths++;
	return 0;
}

/* Forget @path and every path below it (a namespace operation changed them). */
void replay_path_invalidate(struct mfs_replay *r, const char *path)
{
	size_t n = strlen(path);
	uint32_t h = replay_hash_str(path);

	if (r->n_paths == 0)
		return;
	if (n == 0) {
		replay_path_clear(r);
		return;
	}
	for (struct pent **pp = &r->ptab[h % PTAB_SIZE]; *pp;) {
		if ((*pp)->hash == h && strcmp((*pp)->path, path) == 0)
			pent_remove(r, pp);
		else
			pp = &(*pp)->next;
	}
	/*
	 * Below it: the whole table is scanned only when a cached path has
	 * @path as a folder (or a hash collision says it might); creating,
	 * removing or renaming a file name costs a lookup, not a scan.
	 */
	if (r->pfx[h % PFX_SIZE] == 0)
		return;
	for (unsigned i = 0; i < PTAB_SIZE; i++) {
		struct pent **pp = &r->ptab[i];

		while (*pp) {
			const char *p = (*pp)->path;

			if (strncmp(p, path, n) == 0 && (p[n] == '\0' || p[n] == '/'))
				pent_remove(r, pp);
			else
				pp = &(*pp)->next;
		}
	}
}

void replay_rfile_free(struct mfs_replay *r, struct rfile *f)
{
	struct rfile **pp = &r->itab[replay_inode_slot(f->dev, f->ino)];

	while (*pp != f)
		pp = &(*pp)->inext;
	*pp = f->inext;
	free(f->log);
	free(f->oidx);
	if (f->touched)
		r->need_syncfs = true; /* closed before its flush */
	(void)close(f->fd);
	r->n_files--;
	free(f);
}

/* Close every file that no path names and that has nothing pending. */
void replay_files_gc(struct mfs_replay *r, bool all)
{
	for (unsigned i = 0; i < ITAB_SIZE; i++) {
		struct rfile *f = r->itab[i], *next;

		for (; f; f = next) {
			next = f->inext;
			if ((all || f->refs == 0) && f->n_log == 0 && !f->queued)
				replay_rfile_free(r, f);
		}
	}
}

void replay_dir_touch(struct mfs_replay *r, const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	char *d;

	if (r->need_syncfs)
		return;
	for (unsigned i = 0; i < r->n_dirs; i++)
		if (strlen(r->dirs[i]) == n && strncmp(r->dirs[i], path, n) == 0)
			return;
	if (r->n_dirs >= MAX_DIRS || !(d = strndup(path, n))) {
		r->need_syncfs = true;
		return;
	}
	r->dirs[r->n_dirs++] = d;
}

/* ================================================================ files */

/*
 * The cached writable file for @path. Returns 0, -ENOENT/-ENOTDIR when it
 * does not exist, -EINVAL if it is not a regular file, or -errno.
 */
int replay_file_get(struct mfs_replay *r, const char *path, struct rfile **ret)
{
	_cleanup_close_ int pfd = -EBADF, fd = -EBADF;
	struct stat st, st2;
	struct rfile *f;
	int e;

	f = replay_path_find(r, path);
	if (f) {
		*ret = f;
		return 0;
	}
	pfd = mfs_path_open(r->rootfd, path, O_PATH, 0);
	if (pfd < 0)
		return pfd;
	if (fstat(pfd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	f = replay_inode_find(r, st.st_dev, st.st_ino);
	if (!f) {
		if (r->n_files >= r->max_files) {
			replay_path_clear(r);
			replay_files_gc(r, false);
			if (r->n_files >= r->max_files && (e = replay_drain(r)) < 0)
				return e;
			replay_files_gc(r, false);
		}
		fd = mfs_path_open(r->rootfd, path, O_WRONLY | O_NOCTTY, 0);
		if (fd < 0)
			return fd;
		if (fstat(fd, &st2) < 0)
			return -errno;
		if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)
			return -ESTALE; /* swapped under us */
		f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->fd = TAKE_FD(fd);
		f->inext = r->itab[replay_inode_slot(f->dev, f->ino)];
		r->itab[replay_inode_slot(f->dev, f->ino)] = f;
		r->n_files++;
	}
	e = replay_path_add(r, path, f);
	if (e < 0)
		return e;
	*ret = f;
	return 0;
}

bool replay_is_gone(int e)
{
	return e == -ENOENT || e == -ENOTDIR;
}

int replay_skipped(struct mfs_replay *r, const struct mfs_rec *rec, int e)
{
	r->st.skipped++;
	log_debug("replay: LSN %" PRIu64 " %s '%s': %s, taken as already done", rec->lsn,
		  mfs_rec_type_name(rec->type), rec->path, strerror(-e));
	return 0;
}
