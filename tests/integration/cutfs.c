/* SPDX-License-Identifier: MIT */
/*
 * cutfs.c - test helper: an in-memory FUSE filesystem that models a disk
 * with a volatile write cache, and cuts its power on command.
 *
 * usage: cutfs MOUNTPOINT [FUSE options...]      (foreground, multithreaded)
 *
 * Stack it under a mirrorfs DATADIR (the data files and the journal both
 * live on it), cut the power, and look at what a reboot would find.
 *
 * What it models. Every inode has a VOLATILE state (what reads, stat and
 * readdir see) and a DURABLE state (what survives a power cut):
 *  - fsync/fdatasync of a file makes its content, size, mode, owner, times
 *    and xattrs durable (fdatasync does the same as fsync);
 *  - fsync of a directory (FUSE_FSYNCDIR: fsync of any fd opened on it,
 *    opendir or open(O_RDONLY|O_DIRECTORY)) makes its entries and its own
 *    attributes durable. A rename between two directories is one change:
 *    fsync of either directory makes both of its entries durable, as a
 *    journaling filesystem commits a rename in one transaction;
 *  - nothing else makes anything durable: fsync of a file does not make its
 *    directory entry durable (POSIX: fsync the directory too), syncfs(2)
 *    and sync(2) never reach a FUSE filesystem (the kernel sends
 *    FUSE_SYNCFS to virtiofs only), and there is no background writeback.
 * A new inode's durable state is its state at creation (empty), reached
 * once an entry naming it is durable.
 *
 * File contents are sparse 4 KiB pages, reference-counted and shared
 * between the two states (copy-on-write), so an fsync copies pointers of
 * the pages written since the last one. Every change to a file marks the
 * 512-byte sectors it touched dirty.
 *
 * Control: the file MOUNTPOINT/.cutfs-ctl (not listed by readdir). Write
 * one command to it (echo CMD > MOUNTPOINT/.cutfs-ctl); the write returns
 * once it is done:
 *   cut drop        power cut: everything not durable is lost
 *   cut torn SEED   power cut that persists a seeded arbitrary subset of
 *                   the unsynced changes, as kernel writeback in any order
 *                   would: for each file, each dirty sector independently
 *                   takes its new bytes or keeps its durable ones, the size
 *                   is the old or the new one, the attributes (mode, owner,
 *                   times, xattrs) all old or all new; for each directory,
 *                   each changed entry is old or new (the two entries of a
 *                   rename or exchange together)
 *   sync            make everything durable (a clean shutdown)
 *   list            print the unsynced entries and files on stderr
 * After a cut, the volatile state is the durable state and the filesystem
 * keeps serving, like a machine after a reboot. Reading the file gives
 * counters: unsynced bytes (dirty sectors x 512), files with unsynced
 * data or attributes, unsynced directory entries, cuts so far, pages held.
 *
 * Kernel caches: entries and attributes are never cached (timeouts 0),
 * every open drops the file's cached pages (no keep_cache), writes go
 * through (no writeback cache). Files may still be mmap'ed MAP_SHARED
 * (mirrorfs maps one): run `sync -f MOUNTPOINT` before a cut so dirty
 * mapped pages reach cutfs first (then they are lost or torn like other
 * unsynced writes). Cut while no process holds a file of cutfs open: the
 * kernel's page cache of a file open across a cut is not invalidated.
 *
 * What it does not model: partial writes within a 512-byte sector (a
 * sector is written whole or not at all); ordering between the volatile
 * changes (torn mode picks any subset, not a prefix: a directory entry may
 * survive without the data of the file it names, which a real disk can
 * show too); reordered namespace changes of one entry (one random choice
 * per entry, between its durable value and its latest one); I/O errors,
 * ENOSPC; a directory cycle left by a torn cut of directory renames only
 * leaks memory. Hard links, FIFOs and device nodes are kept; file locks
 * (flock, fcntl) stay in the kernel; no lseek SEEK_DATA/SEEK_HOLE (the
 * kernel's default answers), no reflinks, no copy_file_range (the kernel
 * falls back to copying). All state is in memory, behind one mutex.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#define PAGE 4096u
#define SECT 512u
#define SECTS_PER_PAGE (PAGE / SECT)
#define MAX_PAGES (1u << 22) /* files up to 16 GiB */
#define CTL_NAME ".cutfs-ctl"

/* ================================================================ state */

struct page {
	uint32_t ref;
	uint8_t d[PAGE];
};

struct xattr {
	char *name;
	void *val;
	size_t len;
	struct xattr *next;
};

struct meta {
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec atime, mtime, ctime;
	struct xattr *x;
};

struct inode;

/* A directory entry: its volatile and durable targets (NULL: absent). */
struct dent {
	char *name;
	uint64_t hash;
	struct inode *v, *d;
	uint64_t grp;         /* id of the change that set v; one rename = one id */
	struct inode *pdir;   /* the other directory of that rename (pinned) */
	bool changed;         /* on its directory's changed list */
	struct dent *next;    /* hash chain */
	struct dent *cnext;   /* changed list */
};

struct inode {
	uint64_t num; /* st_ino */
	uint64_t nlookup;
	uint32_t nopen, vlink, dlink, pins; /* freed when all are 0 */
	dev_t rdev;
	char *target; /* symlink */
	struct meta vm, dm;
	bool meta_dirty;
	/* regular files */
	uint64_t vsize, dsize;
	struct page **vp, **dp; /* cap entries each */
	uint8_t *mask;          /* dirty sectors of each page since the last fsync */
	size_t cap;
	uint32_t *dirty; /* pages with a non-zero mask */
	size_t ndirty, capdirty;
	/* directories */
	struct dent **tab;
	size_t tabcap, nent;
	struct dent *chg;
	uint32_t vsubdirs;
	struct inode *prev, *next; /* every inode, in creation order */
};

/* readdir state of an open directory: its listing, taken at offset 0 */
struct dirh {
	size_t n;
	struct dent_copy {
		char *name;
		uint64_t num;
		mode_t mode;
	} *e;
};

static pthread_mutex_t big = PTHREAD_MUTEX_INITIALIZER; /* everything below */
static struct inode root_ino, ctl_ino;
static struct inode *all_head, *all_tail;
static uint64_t next_num = 2, next_grp = 1, n_pages, n_cuts;

/* ================================================================ helpers */

static struct timespec now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return t;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rng_state;
static bool coin(void)
{
	rng_state = mix64(rng_state);
	return rng_state & 1;
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

static struct inode *I(fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &root_ino;
	return (struct inode *)(uintptr_t)ino;
}

static fuse_ino_t nodeid(struct inode *n)
{
	return n == &root_ino ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static void page_put(struct page *p)
{
	if (p && --p->ref == 0) {
		free(p);
		n_pages--;
	}
}

static struct page *page_get(struct page *p)
{
	if (p)
		p->ref++;
	return p;
}

static struct page *page_new(const struct page *copy)
{
	struct page *p = copy ? malloc(sizeof(*p)) : calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	if (copy)
		memcpy(p->d, copy->d, PAGE);
	p->ref = 1;
	n_pages++;
	return p;
}

/* ================================================================ attributes */

static void xattrs_free(struct xattr *x)
{
	while (x) {
		struct xattr *n = x->next;
		free(x->name);
		free(x->val);
		free(x);
		x = n;
	}
}

static struct xattr *xattrs_dup(const struct xattr *x)
{
	struct xattr *head = NULL, **tail = &head;

	for (; x; x = x->next) {
		struct xattr *c = calloc(1, sizeof(*c));
		if (!c || !(c->name = strdup(x->name)) || !(c->val = malloc(x->len ? x->len : 1))) {
			fprintf(stderr, "cutfs: out of memory\n");
			abort();
		}
		memcpy(c->val, x->val, x->len);
		c->len = x->len;
		*tail = c;
		tail = &c->next;
	}
	return head;
}

/* durable := volatile (or the reverse) for mode, owner, times, xattrs */
static void meta_copy(struct meta *dst, const struct meta *src)
{
	struct xattr *x = xattrs_dup(src->x);

	xattrs_free(dst->x);
	*dst = *src;
	dst->x = x;
}

static void touch(struct inode *n, bool mtime)
{
	n->vm.ctime = now();
	if (mtime)
		n->vm.mtime = n->vm.ctime;
	n->meta_dirty = true;
}

static void fill_stat(const struct inode *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->num;
	st->st_mode = n->vm.mode;
	st->st_nlink = S_ISDIR(n->vm.mode) ? 2 + n->vsubdirs : n->vlink;
	st->st_uid = n->vm.uid;
	st->st_gid = n->vm.gid;
	st->st_rdev = n->rdev;
	st->st_size = S_ISREG(n->vm.mode) ? (off_t)n->vsize
		      : S_ISLNK(n->vm.mode) ? (off_t)strlen(n->target) : 4096;
	st->st_blksize = PAGE;
	st->st_blocks = (blkcnt_t)((st->st_size + 511) / 512);
	st->st_atim = n->vm.atime;
	st->st_mtim = n->vm.mtime;
	st->st_ctim = n->vm.ctime;
}

/* ================================================================ inodes */

static struct inode *inode_new(mode_t mode, uid_t uid, gid_t gid, dev_t rdev)
{
	struct inode *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->num = next_num++;
	n->vm.mode = mode;
	n->vm.uid = uid;
	n->vm.gid = gid;
	n->vm.atime = n->vm.mtime = n->vm.ctime = now();
	n->dm = n->vm; /* durable at creation: exists once an entry is durable */
	n->rdev = rdev;
	n->prev = all_tail;
	if (all_tail)
		all_tail->next = n;
	else
		all_head = n;
	all_tail = n;
	return n;
}

static void dent_set_v(struct inode *dir, struct dent *e, struct inode *n, uint64_t grp);
static void dent_set_d(struct dent *e, struct inode *n);
static void maybe_free(struct inode *n);

static void unpin(struct dent *e)
{
	struct inode *p = e->pdir;

	e->pdir = NULL;
	if (p) {
		p->pins--;
		maybe_free(p);
	}
}

static void inode_free(struct inode *n)
{
	for (size_t k = 0; k < n->tabcap; k++) {
		struct dent *e = n->tab[k];
		while (e) {
			struct dent *nx = e->next;
			unpin(e);
			dent_set_v(n, e, NULL, 0);
			dent_set_d(e, NULL);
			free(e->name);
			free(e);
			e = nx;
		}
	}
	free(n->tab);
	for (size_t k = 0; k < n->cap; k++) {
		page_put(n->vp[k]);
		page_put(n->dp[k]);
	}
	free(n->vp);
	free(n->dp);
	free(n->mask);
	free(n->dirty);
	free(n->target);
	xattrs_free(n->vm.x);
	xattrs_free(n->dm.x);
	if (n->prev)
		n->prev->next = n->next;
	else
		all_head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		all_tail = n->prev;
	free(n);
}

static void maybe_free(struct inode *n)
{
	if (n && n != &root_ino && n != &ctl_ino && !n->nlookup && !n->nopen && !n->vlink &&
	    !n->dlink && !n->pins)
		inode_free(n);
}

/* ================================================================ directories */

static struct dent *dent_find(struct inode *dir, const char *name)
{
	uint64_t h;

	if (!dir->tabcap)
		return NULL;
	h = name_hash(name);
	for (struct dent *e = dir->tab[h % dir->tabcap]; e; e = e->next)
		if (e->hash == h && !strcmp(e->name, name))
			return e;
	return NULL;
}

static int tab_grow(struct inode *dir)
{
	size_t cap = dir->tabcap ? dir->tabcap * 2 : 16;
	struct dent **t = calloc(cap, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (size_t k = 0; k < dir->tabcap; k++)
		for (struct dent *e = dir->tab[k], *nx; e; e = nx) {
			nx = e->next;
			e->next = t[e->hash % cap];
			t[e->hash % cap] = e;
		}
	free(dir->tab);
	dir->tab = t;
	dir->tabcap = cap;
	return 0;
}

/* The entry @name of @dir, created (absent in both states) if missing. */
static struct dent *dent_get(struct inode *dir, const char *name)
{
	struct dent *e = dent_find(dir, name);

	if (e)
		return e;
	if (dir->nent >= dir->tabcap && tab_grow(dir) < 0)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name))) {
		free(e);
		return NULL;
	}
	e->hash = name_hash(name);
	e->next = dir->tab[e->hash % dir->tabcap];
	dir->tab[e->hash % dir->tabcap] = e;
	dir->nent++;
	return e;
}

static void dent_unlink(struct inode *dir, struct dent *e)
{
	struct dent **pp = &dir->tab[e->hash % dir->tabcap];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	dir->nent--;
	free(e->name);
	free(e);
}

/* Volatile change of an entry; @grp groups the entries of one change. */
static void dent_set_v(struct inode *dir, struct dent *e, struct inode *n, uint64_t grp)
{
	struct inode *old = e->v;

	if (grp)
		unpin(e); /* a new change: the old one's partner no longer matters */
	if (n) {
		n->vlink++;
		if (S_ISDIR(n->vm.mode))
			dir->vsubdirs++;
	}
	e->v = n;
	e->grp = grp;
	if (!e->changed && grp) {
		e->changed = true;
		e->cnext = dir->chg;
		dir->chg = e;
	}
	if (old) {
		old->vlink--;
		if (S_ISDIR(old->vm.mode))
			dir->vsubdirs--;
		maybe_free(old);
	}
}

static void dent_set_d(struct dent *e, struct inode *n)
{
	struct inode *old = e->d;

	if (n)
		n->dlink++;
	e->d = n;
	if (old) {
		old->dlink--;
		maybe_free(old);
	}
}

static void dir_commit(struct inode *dir);

/* Make the change @grp durable in @dir (the other side of a rename). */
static void commit_grp(struct inode *dir, uint64_t grp)
{
	for (struct dent *e = dir->chg; e; e = e->cnext)
		if (e->grp == grp) {
			dent_set_d(e, e->v);
			unpin(e);
		}
}

/* The entry's latest value becomes durable, with its rename partner. */
static void dent_commit(struct inode *dir, struct dent *e)
{
	struct inode *p = e->pdir;

	dent_set_d(e, e->v);
	if (p) {
		p->pins++; /* keep it while we look at it */
		unpin(e);
		commit_grp(p, e->grp);
		p->pins--;
		maybe_free(p);
	}
}

/* Drop the changed list; entries absent in both states go away. */
static void dir_clean(struct inode *dir)
{
	struct dent *e = dir->chg, *nx;

	dir->chg = NULL;
	for (; e; e = nx) {
		nx = e->cnext;
		e->changed = false;
		e->cnext = NULL;
		if (e->pdir && e->v != e->d) { /* still pending with its partner */
			e->changed = true;
			e->cnext = dir->chg;
			dir->chg = e;
			continue;
		}
		unpin(e);
		if (!e->v && !e->d)
			dent_unlink(dir, e);
	}
}

/* fsync of a directory */
static void dir_commit(struct inode *dir)
{
	dir->pins++;
	for (struct dent *e = dir->chg; e; e = e->cnext)
		dent_commit(dir, e);
	dir_clean(dir);
	if (dir->meta_dirty) {
		meta_copy(&dir->dm, &dir->vm);
		dir->meta_dirty = false;
	}
	dir->pins--;
}

/* ================================================================ file pages */

static int pages_reserve(struct inode *n, size_t npages)
{
	size_t cap = n->cap;
	struct page **vp, **dp;
	uint8_t *mask;

	if (npages <= cap)
		return 0;
	if (npages > MAX_PAGES)
		return -EFBIG;
	while (cap < npages)
		cap = cap ? cap * 2 : 16;
	vp = realloc(n->vp, cap * sizeof(*vp));
	if (vp)
		n->vp = vp;
	dp = realloc(n->dp, cap * sizeof(*dp));
	if (dp)
		n->dp = dp;
	mask = realloc(n->mask, cap);
	if (mask)
		n->mask = mask;
	if (!vp || !dp || !mask)
		return -ENOMEM;
	memset(vp + n->cap, 0, (cap - n->cap) * sizeof(*vp));
	memset(dp + n->cap, 0, (cap - n->cap) * sizeof(*dp));
	memset(mask + n->cap, 0, cap - n->cap);
	n->cap = cap;
	return 0;
}

/* Mark sectors [s0, s1) of page @idx dirty. */
static int mark_dirty(struct inode *n, size_t idx, unsigned s0, unsigned s1)
{
	uint8_t bits = (uint8_t)(((1u << s1) - 1) & ~((1u << s0) - 1));

	if (!n->mask[idx]) {
		if (n->ndirty == n->capdirty) {
			size_t c = n->capdirty ? n->capdirty * 2 : 64;
			uint32_t *d = realloc(n->dirty, c * sizeof(*d));
			if (!d)
				return -ENOMEM;
			n->dirty = d;
			n->capdirty = c;
		}
		n->dirty[n->ndirty++] = (uint32_t)idx;
	}
	n->mask[idx] |= bits;
	return 0;
}

/*
 * Change volatile bytes [off, off + len): copy from @src, or zeros if
 * @src is NULL (whole zero pages become holes). Marks the sectors dirty.
 */
static int vmodify(struct inode *n, const char *src, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	int r;

	if (!len)
		return 0;
	r = pages_reserve(n, (size_t)((end + PAGE - 1) / PAGE));
	if (r < 0)
		return r;
	while (off < end) {
		size_t idx = (size_t)(off / PAGE);
		unsigned in = (unsigned)(off % PAGE);
		unsigned k = (unsigned)(end - off < PAGE - in ? end - off : PAGE - in);
		struct page *p = n->vp[idx];

		r = mark_dirty(n, idx, in / SECT, (in + k + SECT - 1) / SECT);
		if (r < 0)
			return r;
		if (!src && k == PAGE) {
			page_put(p);
			n->vp[idx] = NULL;
		} else if (src || p) {
			if (!p || p->ref > 1) {
				struct page *c = page_new(p);
				if (!c)
					return -ENOMEM;
				page_put(p);
				n->vp[idx] = p = c;
			}
			if (src)
				memcpy(p->d + in, src, k);
			else
				memset(p->d + in, 0, k);
		}
		if (src)
			src += k;
		off += k;
	}
	return 0;
}

/* Volatile size change; bytes past the size are always zero. */
static int vtruncate(struct inode *n, uint64_t size)
{
	int r = 0;

	if (size > (uint64_t)MAX_PAGES * PAGE)
		return -EFBIG;
	if (size < n->vsize) {
		size_t from = (size_t)((size + PAGE - 1) / PAGE);
		r = vmodify(n, NULL, size, (uint64_t)from * PAGE - size);
		for (size_t k = from; r == 0 && k < n->cap; k++)
			if (n->vp[k] || n->dp[k]) {
				page_put(n->vp[k]);
				n->vp[k] = NULL;
				r = mark_dirty(n, k, 0, SECTS_PER_PAGE);
			}
	}
	if (r == 0)
		n->vsize = size;
	return r;
}

/* fsync of a file */
static void file_commit(struct inode *n)
{
	for (size_t k = 0; k < n->ndirty; k++) {
		size_t idx = n->dirty[k];
		page_put(n->dp[idx]);
		n->dp[idx] = page_get(n->vp[idx]);
		n->mask[idx] = 0;
	}
	n->ndirty = 0;
	n->dsize = n->vsize;
	if (n->meta_dirty) {
		meta_copy(&n->dm, &n->vm);
		n->meta_dirty = false;
	}
}

/* A durable page of @n we may write into. */
static struct page *dpage_private(struct inode *n, size_t idx)
{
	struct page *p = n->dp[idx];

	if (!p || p->ref > 1) {
		struct page *c = page_new(p);
		if (!c) {
			fprintf(stderr, "cutfs: out of memory\n");
			abort();
		}
		page_put(p);
		n->dp[idx] = p = c;
	}
	return p;
}

/* Torn cut of a file: each dirty sector new or old, the size new or old. */
static void file_tear(struct inode *n)
{
	for (size_t k = 0; k < n->ndirty; k++) {
		size_t idx = n->dirty[k];
		for (unsigned s = 0; s < SECTS_PER_PAGE; s++) {
			if (!(n->mask[idx] & (1u << s)) || !coin())
				continue;
			if (!n->vp[idx] && !n->dp[idx])
				continue;
			if (n->vp[idx])
				memcpy(dpage_private(n, idx)->d + s * SECT, n->vp[idx]->d + s * SECT,
				       SECT);
			else
				memset(dpage_private(n, idx)->d + s * SECT, 0, SECT);
		}
	}
	if (coin())
		n->dsize = n->vsize;
	/* keep "bytes past the size are zero" in the durable state too */
	for (size_t idx = (size_t)(n->dsize / PAGE); idx < n->cap; idx++) {
		unsigned in = idx == n->dsize / PAGE ? (unsigned)(n->dsize % PAGE) : 0;
		if (!n->dp[idx])
			continue;
		if (in == 0) {
			page_put(n->dp[idx]);
			n->dp[idx] = NULL;
		} else {
			memset(dpage_private(n, idx)->d + in, 0, PAGE - in);
		}
	}
	if (n->meta_dirty && coin())
		meta_copy(&n->dm, &n->vm);
}

/* ================================================================ power cut */

static bool grp_survives(uint64_t seed, uint64_t grp)
{
	return mix64(seed ^ mix64(grp)) & 1;
}

/* After a cut: volatile := durable, for one inode's data and attributes. */
static void inode_reboot(struct inode *n)
{
	for (size_t idx = 0; idx < n->cap; idx++) {
		if (n->vp[idx] == n->dp[idx])
			continue;
		page_put(n->vp[idx]);
		n->vp[idx] = page_get(n->dp[idx]);
	}
	if (n->cap)
		memset(n->mask, 0, n->cap);
	n->ndirty = 0;
	n->vsize = n->dsize;
	if (n->meta_dirty) {
		meta_copy(&n->vm, &n->dm);
		n->meta_dirty = false;
	}
}

/* After a cut: every entry's volatile target := its durable one. */
static void dir_reboot(struct inode *dir)
{
	for (struct dent *e = dir->chg; e; e = e->cnext) {
		unpin(e);
		if (e->v != e->d)
			dent_set_v(dir, e, e->d, 0);
	}
	dir_clean(dir);
}

/* Recount the subfolders of every folder (their types may have reverted). */
static void recount_subdirs(void)
{
	for (struct inode *n = all_head; n; n = n->next) {
		n->vsubdirs = 0;
		for (size_t k = 0; k < n->tabcap; k++)
			for (struct dent *e = n->tab[k]; e; e = e->next)
				if (e->v && S_ISDIR(e->v->vm.mode))
					n->vsubdirs++;
	}
}

static void cut(bool torn, uint64_t seed)
{
	struct inode *n, *nx;

	rng_state = seed;
	for (n = all_head; n; n = n->next)
		n->pins++; /* nothing is freed while we walk */
	if (torn) {
		for (n = all_head; n; n = n->next) {
			if (S_ISREG(n->vm.mode) || S_ISREG(n->dm.mode))
				file_tear(n);
			else if (n->meta_dirty && coin())
				meta_copy(&n->dm, &n->vm);
			for (struct dent *e = n->chg; e; e = e->cnext)
				if (e->v != e->d && grp_survives(seed, e->grp))
					dent_commit(n, e);
		}
	}
	for (n = all_head; n; n = n->next) {
		inode_reboot(n);
		dir_reboot(n);
	}
	recount_subdirs();
	for (n = all_head; n; n = nx) {
		nx = n->next;
		n->pins--;
		/* freeing n frees only inodes below it in the tree: created later */
		maybe_free(n);
	}
	n_cuts++;
}

static void sync_all(void)
{
	struct inode *n;

	for (n = all_head; n; n = n->next)
		n->pins++;
	for (n = all_head; n; n = n->next) {
		if (S_ISREG(n->vm.mode))
			file_commit(n);
		dir_commit(n);
	}
	for (n = all_head; n; n = n->next)
		n->pins--;
}

static int stats_text(char *buf, size_t len)
{
	uint64_t bytes = 0, files = 0, ents = 0;

	for (struct inode *n = all_head; n; n = n->next) {
		uint64_t b = 0;
		for (size_t k = 0; k < n->ndirty; k++)
			b += (uint64_t)__builtin_popcount(n->mask[n->dirty[k]]) * SECT;
		bytes += b;
		files += b || n->meta_dirty || n->vsize != n->dsize;
		for (struct dent *e = n->chg; e; e = e->cnext)
			ents += e->v != e->d;
	}
	return snprintf(buf, len,
			"unsynced_bytes %" PRIu64 "\nunsynced_files %" PRIu64
			"\nunsynced_entries %" PRIu64 "\ncuts %" PRIu64 "\npages %" PRIu64 "\n",
			bytes, files, ents, n_cuts, n_pages);
}

/* "list": the unsynced entries and files, on stderr (inode numbers as ls -i shows) */
static void list_unsynced(void)
{
	for (struct inode *n = all_head; n; n = n->next) {
		for (struct dent *e = n->chg; e; e = e->cnext)
			if (e->v != e->d)
				fprintf(stderr, "cutfs: unsynced entry: folder %" PRIu64 ": '%s' -> %" PRIu64
						" (durable: %" PRIu64 ")\n",
					n->num, e->name, e->v ? e->v->num : 0, e->d ? e->d->num : 0);
		if (n->ndirty || n->meta_dirty || n->vsize != n->dsize)
			fprintf(stderr, "cutfs: unsynced inode %" PRIu64 ": %zu dirty pages, size %" PRIu64
					" (durable %" PRIu64 ")%s\n",
				n->num, n->ndirty, n->vsize, n->dsize, n->meta_dirty ? ", attributes" : "");
	}
}

static int ctl_command(const char *buf, size_t len)
{
	char cmd[128];
	unsigned long long seed;

	if (len >= sizeof(cmd))
		return -EINVAL;
	memcpy(cmd, buf, len);
	cmd[len] = 0;
	while (len && (cmd[len - 1] == '\n' || cmd[len - 1] == ' '))
		cmd[--len] = 0;
	if (!strcmp(cmd, "cut drop")) {
		cut(false, 0);
	} else if (sscanf(cmd, "cut torn %llu", &seed) == 1) {
		cut(true, (uint64_t)seed);
	} else if (!strcmp(cmd, "sync")) {
		sync_all();
	} else if (!strcmp(cmd, "list")) {
		list_unsynced();
	} else if (strcmp(cmd, "stats") != 0) {
		fprintf(stderr, "cutfs: unknown command '%s'\n", cmd);
		return -EINVAL;
	}
	fprintf(stderr, "cutfs: %s\n", cmd);
	return 0;
}

/* ================================================================ FUSE: lookup */

static void reply_entry(fuse_req_t req, struct inode *n)
{
	struct fuse_entry_param e = { 0 };

	n->nlookup++;
	e.ino = nodeid(n);
	e.generation = n->num;
	fill_stat(n, &e.attr);
	fuse_reply_entry(req, &e);
}

static struct inode *dir_of(fuse_ino_t ino, int *err)
{
	struct inode *d = I(ino);

	*err = 0;
	if (!S_ISDIR(d->vm.mode))
		*err = ENOTDIR;
	return d;
}

static void c_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dent *e;
	int err;
	struct inode *dir;

	pthread_mutex_lock(&big);
	dir = dir_of(parent, &err);
	if (!err && dir == &root_ino && !strcmp(name, CTL_NAME)) {
		reply_entry(req, &ctl_ino);
	} else if (!err && (e = dent_find(dir, name)) && e->v) {
		reply_entry(req, e->v);
	} else {
		fuse_reply_err(req, err ? err : ENOENT);
	}
	pthread_mutex_unlock(&big);
}

static void c_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct inode *n = I(ino);

	pthread_mutex_lock(&big);
	n->nlookup -= nlookup;
	maybe_free(n);
	pthread_mutex_unlock(&big);
	fuse_reply_none(req);
}

static void c_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	pthread_mutex_lock(&big);
	for (size_t k = 0; k < count; k++) {
		struct inode *n = I(f[k].ino);
		n->nlookup -= f[k].nlookup;
		maybe_free(n);
	}
	pthread_mutex_unlock(&big);
	fuse_reply_none(req);
}

static void c_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	pthread_mutex_lock(&big);
	fill_stat(I(ino), &st);
	pthread_mutex_unlock(&big);
	fuse_reply_attr(req, &st, 0);
}

static struct timespec set_time(const struct stat *a, bool is_now, bool atime)
{
	if (is_now)
		return now();
	return atime ? a->st_atim : a->st_mtim;
}

static int do_setattr(struct inode *n, struct stat *a, int to_set)
{
	int r;

	if (n == &ctl_ino)
		return to_set & FUSE_SET_ATTR_SIZE ? 0 : -EPERM;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (!S_ISREG(n->vm.mode))
			return -EINVAL;
		r = vtruncate(n, (uint64_t)a->st_size);
		if (r < 0)
			return r;
		touch(n, true);
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		n->vm.mode = (n->vm.mode & S_IFMT) | (a->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		n->vm.uid = a->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		n->vm.gid = a->st_gid;
	if (to_set & FUSE_SET_ATTR_ATIME)
		n->vm.atime = set_time(a, to_set & FUSE_SET_ATTR_ATIME_NOW, true);
	if (to_set & FUSE_SET_ATTR_MTIME)
		n->vm.mtime = set_time(a, to_set & FUSE_SET_ATTR_MTIME_NOW, false);
	n->vm.ctime = (to_set & FUSE_SET_ATTR_CTIME) ? a->st_ctim : now();
	n->meta_dirty = true;
	return 0;
}

static void c_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		      struct fuse_file_info *fi)
{
	struct inode *n = I(ino);
	struct stat st;
	int r;

	pthread_mutex_lock(&big);
	r = do_setattr(n, attr, to_set);
	fill_stat(n, &st);
	pthread_mutex_unlock(&big);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, 0);
}

static void c_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char *t;

	pthread_mutex_lock(&big);
	t = I(ino)->target ? strdup(I(ino)->target) : NULL;
	pthread_mutex_unlock(&big);
	if (t)
		fuse_reply_readlink(req, t);
	else
		fuse_reply_err(req, EINVAL);
	free(t);
}

/* ================================================================ FUSE: namespace */

/* Create an inode named @name in @parent; replies. */
static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      dev_t rdev, const char *target, struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct inode *dir, *n;
	struct dent *e;
	gid_t gid = ctx->gid;
	int err;

	pthread_mutex_lock(&big);
	dir = dir_of(parent, &err);
	if (!err && dir == &root_ino && !strcmp(name, CTL_NAME))
		err = EEXIST;
	if (!err && strlen(name) > NAME_MAX)
		err = ENAMETOOLONG;
	e = err ? NULL : dent_find(dir, name);
	if (!err && e && e->v)
		err = EEXIST;
	if (err)
		goto out;
	if (dir->vm.mode & S_ISGID) {
		gid = dir->vm.gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	n = inode_new(mode, ctx->uid, gid, rdev);
	e = n ? dent_get(dir, name) : NULL;
	if (n && target && !(n->target = strdup(target)))
		e = NULL;
	if (!e) {
		if (n)
			maybe_free(n);
		err = ENOMEM;
		goto out;
	}
	n->dm.mode = n->vm.mode;
	dent_set_v(dir, e, n, next_grp++);
	touch(dir, true);
	if (fi) {
		struct fuse_entry_param ep = { 0 };
		n->nopen++;
		n->nlookup++;
		ep.ino = nodeid(n);
		ep.generation = n->num;
		fill_stat(n, &ep.attr);
		fi->keep_cache = 0;
		fi->direct_io = 0;
		fuse_reply_create(req, &ep, fi);
	} else {
		reply_entry(req, n);
	}
out:
	if (err)
		fuse_reply_err(req, err);
	pthread_mutex_unlock(&big);
}

static void c_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	make_node(req, parent, name, mode, rdev, NULL, NULL);
}

static void c_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL, NULL);
}

static void c_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, 0, link, NULL);
}

static void c_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     struct fuse_file_info *fi)
{
	make_node(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, fi);
}

static bool dir_is_empty(const struct inode *d)
{
	for (size_t k = 0; k < d->tabcap; k++)
		for (const struct dent *e = d->tab[k]; e; e = e->next)
			if (e->v)
				return false;
	return true;
}

static int do_remove(fuse_ino_t parent, const char *name, bool isdir)
{
	struct inode *dir, *n;
	struct dent *e;
	int err;

	dir = dir_of(parent, &err);
	if (err)
		return -err;
	e = dent_find(dir, name);
	if (!e || !e->v)
		return -ENOENT;
	n = e->v;
	if (isdir && !S_ISDIR(n->vm.mode))
		return -ENOTDIR;
	if (!isdir && S_ISDIR(n->vm.mode))
		return -EISDIR;
	if (isdir && !dir_is_empty(n))
		return -ENOTEMPTY;
	n->pins++;
	dent_set_v(dir, e, NULL, next_grp++);
	touch(n, false);
	touch(dir, true);
	n->pins--;
	maybe_free(n);
	return 0;
}

static void c_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int r;

	pthread_mutex_lock(&big);
	r = do_remove(parent, name, false);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, -r);
}

static void c_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int r;

	pthread_mutex_lock(&big);
	r = do_remove(parent, name, true);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, -r);
}

static void c_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct inode *dir, *n = I(ino);
	struct dent *e;
	int err;

	pthread_mutex_lock(&big);
	dir = dir_of(parent, &err);
	if (!err && (S_ISDIR(n->vm.mode) || n == &ctl_ino))
		err = EPERM;
	if (!err && dir == &root_ino && !strcmp(name, CTL_NAME))
		err = EEXIST;
	e = err ? NULL : dent_get(dir, name);
	if (!err && !e)
		err = ENOMEM;
	if (!err && e->v)
		err = EEXIST;
	if (!err) {
		dent_set_v(dir, e, n, next_grp++);
		touch(n, false);
		touch(dir, true);
		reply_entry(req, n);
	} else {
		fuse_reply_err(req, err);
	}
	pthread_mutex_unlock(&big);
}

/* A rename's checks, after the kernel's (which keep a folder out of its own subtree). */
static int rename_check(struct inode *src, struct inode *dst, unsigned flags)
{
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && dst)
		return -EEXIST;
	if ((flags & RENAME_EXCHANGE) && !dst)
		return -ENOENT;
	if (!dst || (flags & RENAME_EXCHANGE))
		return 0;
	if (S_ISDIR(src->vm.mode) && !S_ISDIR(dst->vm.mode))
		return -ENOTDIR;
	if (!S_ISDIR(src->vm.mode) && S_ISDIR(dst->vm.mode))
		return -EISDIR;
	if (S_ISDIR(dst->vm.mode) && !dir_is_empty(dst))
		return -ENOTEMPTY;
	return 0;
}

static int do_rename(fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		     const char *newname, unsigned flags)
{
	struct inode *pd, *nd, *src, *dst;
	struct dent *e, *f;
	uint64_t grp;
	int err, r;

	pd = dir_of(parent, &err);
	if (!err)
		nd = dir_of(newparent, &err);
	if (err)
		return -err;
	if (nd == &root_ino && !strcmp(newname, CTL_NAME))
		return -EPERM;
	e = dent_find(pd, name);
	if (!e || !e->v)
		return -ENOENT;
	src = e->v;
	f = dent_get(nd, newname);
	if (!f)
		return -ENOMEM;
	e = dent_find(pd, name); /* dent_get may have rehashed (same folder) */
	dst = f->v;
	r = rename_check(src, dst, flags);
	if (r < 0 || (dst == src && !(flags & RENAME_EXCHANGE)))
		return r;
	grp = next_grp++;
	src->pins++;
	if (dst)
		dst->pins++;
	dent_set_v(nd, f, src, grp);
	dent_set_v(pd, e, (flags & RENAME_EXCHANGE) ? dst : NULL, grp);
	if (pd != nd) {
		unpin(e);
		unpin(f);
		e->pdir = nd;
		f->pdir = pd;
		nd->pins++;
		pd->pins++;
	}
	touch(src, false);
	if (dst)
		touch(dst, false);
	touch(pd, true);
	touch(nd, true);
	src->pins--;
	maybe_free(src);
	if (dst) {
		dst->pins--;
		maybe_free(dst);
	}
	return 0;
}

static void c_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		     const char *newname, unsigned int flags)
{
	int r;

	pthread_mutex_lock(&big);
	r = do_rename(parent, name, newparent, newname, flags);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, -r);
}

/* ================================================================ FUSE: files */

static void c_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct inode *n = I(ino);
	int r = 0;

	pthread_mutex_lock(&big);
	if (n != &ctl_ino && (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
		r = vtruncate(n, 0);
		if (r == 0)
			touch(n, true);
	}
	if (r == 0)
		n->nopen++;
	pthread_mutex_unlock(&big);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->keep_cache = 0;
	fi->direct_io = n == &ctl_ino;
	fuse_reply_open(req, fi);
}

static void c_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct inode *n = I(ino);

	pthread_mutex_lock(&big);
	n->nopen--;
	maybe_free(n);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, 0);
}

static void ctl_read(fuse_req_t req, size_t size, off_t off)
{
	char buf[512];
	int len = stats_text(buf, sizeof(buf));

	if (off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, buf + off, (size_t)(len - off) < size ? (size_t)(len - off) : size);
}

static void c_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct inode *n = I(ino);
	uint64_t end;
	char *buf;

	pthread_mutex_lock(&big);
	if (n == &ctl_ino) {
		ctl_read(req, size, off);
		goto out;
	}
	end = (uint64_t)off + size < n->vsize ? (uint64_t)off + size : n->vsize;
	if ((uint64_t)off >= end) {
		fuse_reply_buf(req, NULL, 0);
		goto out;
	}
	buf = malloc(end - (uint64_t)off);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		goto out;
	}
	for (uint64_t p = (uint64_t)off; p < end;) {
		size_t idx = (size_t)(p / PAGE);
		unsigned in = (unsigned)(p % PAGE);
		size_t k = end - p < PAGE - in ? (size_t)(end - p) : PAGE - in;
		if (idx < n->cap && n->vp[idx])
			memcpy(buf + (p - (uint64_t)off), n->vp[idx]->d + in, k);
		else
			memset(buf + (p - (uint64_t)off), 0, k);
		p += k;
	}
	fuse_reply_buf(req, buf, end - (uint64_t)off);
	free(buf);
out:
	pthread_mutex_unlock(&big);
}

static void c_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct inode *n = I(ino);
	int r;

	pthread_mutex_lock(&big);
	if (n == &ctl_ino) {
		r = ctl_command(buf, size);
	} else if ((uint64_t)off + size > (uint64_t)MAX_PAGES * PAGE) {
		r = -EFBIG;
	} else {
		r = vmodify(n, buf, (uint64_t)off, size);
		if (r == 0 && (uint64_t)off + size > n->vsize)
			n->vsize = (uint64_t)off + size;
		if (r == 0)
			touch(n, true);
	}
	pthread_mutex_unlock(&big);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

static void c_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void c_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct inode *n = I(ino);

	pthread_mutex_lock(&big);
	if (S_ISREG(n->vm.mode) && n != &ctl_ino)
		file_commit(n);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, 0);
}

static int do_fallocate(struct inode *n, int mode, uint64_t off, uint64_t len)
{
	uint64_t end = off + len, zend;
	int r = 0;

	if (!S_ISREG(n->vm.mode) || n == &ctl_ino)
		return -ENODEV;
	if (end > (uint64_t)MAX_PAGES * PAGE)
		return -EFBIG;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		zend = end < n->vsize ? end : n->vsize;
		if (off < zend)
			r = vmodify(n, NULL, off, zend - off);
	}
	if (r == 0 && !(mode & FALLOC_FL_KEEP_SIZE) && end > n->vsize)
		n->vsize = end;
	if (r == 0)
		touch(n, mode != 0);
	return r;
}

static void c_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			struct fuse_file_info *fi)
{
	int r;

	pthread_mutex_lock(&big);
	r = do_fallocate(I(ino), mode, (uint64_t)off, (uint64_t)len);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, -r);
}

/* ================================================================ FUSE: folders */

static void c_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirh *h = calloc(1, sizeof(*h));

	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&big);
	I(ino)->nopen++;
	pthread_mutex_unlock(&big);
	fi->fh = (uint64_t)(uintptr_t)h;
	fuse_reply_open(req, fi);
}

static void dirh_clear(struct dirh *h)
{
	for (size_t k = 0; k < h->n; k++)
		free(h->e[k].name);
	free(h->e);
	h->e = NULL;
	h->n = 0;
}

static int dirh_fill(struct dirh *h, struct inode *d)
{
	size_t n = 0;

	dirh_clear(h);
	h->e = calloc(d->nent + 2, sizeof(*h->e));
	if (!h->e)
		return -ENOMEM;
	h->e[n++] = (struct dent_copy){ strdup("."), d->num, S_IFDIR };
	h->e[n++] = (struct dent_copy){ strdup(".."), 1, S_IFDIR };
	for (size_t k = 0; k < d->tabcap; k++)
		for (struct dent *e = d->tab[k]; e; e = e->next)
			if (e->v)
				h->e[n++] = (struct dent_copy){ strdup(e->name), e->v->num,
								e->v->vm.mode };
	h->n = n;
	for (size_t k = 0; k < n; k++)
		if (!h->e[k].name)
			return -ENOMEM;
	return 0;
}

static void c_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct dirh *h = (struct dirh *)(uintptr_t)fi->fh;
	char *buf;
	size_t used = 0;
	int r = 0;

	if (off == 0) {
		pthread_mutex_lock(&big);
		r = dirh_fill(h, I(ino));
		pthread_mutex_unlock(&big);
	}
	buf = r == 0 ? malloc(size) : NULL;
	if (!buf) {
		fuse_reply_err(req, r ? -r : ENOMEM);
		return;
	}
	for (size_t k = (size_t)off; k < h->n; k++) {
		struct stat st = { .st_ino = h->e[k].num, .st_mode = h->e[k].mode };
		size_t l = fuse_add_direntry(req, buf + used, size - used, h->e[k].name, &st,
					     (off_t)k + 1);
		if (l > size - used)
			break;
		used += l;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void c_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirh *h = (struct dirh *)(uintptr_t)fi->fh;
	struct inode *n = I(ino);

	dirh_clear(h);
	free(h);
	pthread_mutex_lock(&big);
	n->nopen--;
	maybe_free(n);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, 0);
}

static void c_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct inode *n = I(ino);

	pthread_mutex_lock(&big);
	if (S_ISDIR(n->vm.mode))
		dir_commit(n);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, 0);
}

static void c_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs s = { 0 };
	uint64_t files = 0;

	pthread_mutex_lock(&big);
	for (struct inode *n = all_head; n; n = n->next)
		files++;
	s.f_bsize = s.f_frsize = PAGE;
	s.f_blocks = 1ull << 24; /* 64 GiB */
	s.f_bfree = s.f_bavail = n_pages < s.f_blocks ? s.f_blocks - n_pages : 0;
	s.f_files = 1ull << 24;
	s.f_ffree = s.f_favail = s.f_files - files;
	s.f_namemax = NAME_MAX;
	pthread_mutex_unlock(&big);
	fuse_reply_statfs(req, &s);
}

/* ================================================================ FUSE: xattrs */

static struct xattr **xattr_find(struct inode *n, const char *name)
{
	struct xattr **pp = &n->vm.x;

	while (*pp && strcmp((*pp)->name, name))
		pp = &(*pp)->next;
	return pp;
}

static int do_setxattr(struct inode *n, const char *name, const char *value, size_t size,
		       int flags)
{
	struct xattr **pp = xattr_find(n, name), *x = *pp;
	void *v;

	if (n == &ctl_ino)
		return -ENOTSUP;
	if (x && (flags & XATTR_CREATE))
		return -EEXIST;
	if (!x && (flags & XATTR_REPLACE))
		return -ENODATA;
	if (strlen(name) > XATTR_NAME_MAX || size > XATTR_SIZE_MAX)
		return -ERANGE;
	v = malloc(size ? size : 1);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, size);
	if (!x) {
		x = calloc(1, sizeof(*x));
		if (!x || !(x->name = strdup(name))) {
			free(x);
			free(v);
			return -ENOMEM;
		}
		*pp = x;
	}
	free(x->val);
	x->val = v;
	x->len = size;
	touch(n, false);
	return 0;
}

static void c_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		       size_t size, int flags)
{
	int r;

	pthread_mutex_lock(&big);
	r = do_setxattr(I(ino), name, value, size, flags);
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, -r);
}

static void c_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct xattr *x;

	pthread_mutex_lock(&big);
	x = *xattr_find(I(ino), name);
	if (!x)
		fuse_reply_err(req, ENODATA);
	else if (size == 0)
		fuse_reply_xattr(req, x->len);
	else if (size < x->len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, x->val, x->len);
	pthread_mutex_unlock(&big);
}

static void c_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf;
	size_t len = 0;

	pthread_mutex_lock(&big);
	for (struct xattr *x = I(ino)->vm.x; x; x = x->next)
		len += strlen(x->name) + 1;
	if (size == 0) {
		fuse_reply_xattr(req, len);
	} else if (size < len) {
		fuse_reply_err(req, ERANGE);
	} else if (!(buf = malloc(len ? len : 1))) {
		fuse_reply_err(req, ENOMEM);
	} else {
		size_t p = 0;
		for (struct xattr *x = I(ino)->vm.x; x; x = x->next) {
			memcpy(buf + p, x->name, strlen(x->name) + 1);
			p += strlen(x->name) + 1;
		}
		fuse_reply_buf(req, buf, len);
		free(buf);
	}
	pthread_mutex_unlock(&big);
}

static void c_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct inode *n;
	struct xattr **pp, *x;
	int err = 0;

	pthread_mutex_lock(&big);
	n = I(ino);
	pp = xattr_find(n, name);
	x = *pp;
	if (!x) {
		err = ENODATA;
	} else {
		*pp = x->next;
		x->next = NULL;
		xattrs_free(x);
		touch(n, false);
	}
	pthread_mutex_unlock(&big);
	fuse_reply_err(req, err);
}

/* ================================================================ main */

static void c_init(void *userdata, struct fuse_conn_info *conn)
{
	/* write through, no cached pages kept across opens, O_TRUNC as setattr */
	conn->want &= ~(unsigned)(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_ATOMIC_O_TRUNC |
				  FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_AUTO_INVAL_DATA);
}

static const struct fuse_lowlevel_ops ops = {
	.init = c_init,
	.lookup = c_lookup,
	.forget = c_forget,
	.forget_multi = c_forget_multi,
	.getattr = c_getattr,
	.setattr = c_setattr,
	.readlink = c_readlink,
	.mknod = c_mknod,
	.mkdir = c_mkdir,
	.unlink = c_unlink,
	.rmdir = c_rmdir,
	.symlink = c_symlink,
	.rename = c_rename,
	.link = c_link,
	.open = c_open,
	.read = c_read,
	.write = c_write,
	.flush = c_flush,
	.release = c_release,
	.fsync = c_fsync,
	.opendir = c_opendir,
	.readdir = c_readdir,
	.releasedir = c_releasedir,
	.fsyncdir = c_fsyncdir,
	.statfs = c_statfs,
	.setxattr = c_setxattr,
	.getxattr = c_getxattr,
	.listxattr = c_listxattr,
	.removexattr = c_removexattr,
	.create = c_create,
	.fallocate = c_fallocate,
};

static void init_roots(void)
{
	root_ino.num = 1;
	root_ino.vm.mode = S_IFDIR | 0755;
	root_ino.vm.uid = getuid();
	root_ino.vm.gid = getgid();
	root_ino.vm.atime = root_ino.vm.mtime = root_ino.vm.ctime = now();
	root_ino.dm = root_ino.vm;
	root_ino.pins = 1;
	all_head = all_tail = &root_ino;
	ctl_ino.num = (uint64_t)-2;
	ctl_ino.vm.mode = S_IFREG | 0600;
	ctl_ino.vm.uid = getuid();
	ctl_ino.vm.gid = getgid();
	ctl_ino.vm.atime = ctl_ino.vm.mtime = ctl_ino.vm.ctime = root_ino.vm.atime;
	ctl_ino.pins = 1; /* not on the list of all inodes: no state to cut */
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts o = { 0 };
	struct fuse_loop_config *cfg;
	struct fuse_session *se;
	int r = 1;

	umask(0);
	init_roots();
	if (fuse_parse_cmdline(&args, &o) != 0)
		return 2;
	if (!o.mountpoint) {
		fprintf(stderr, "usage: cutfs MOUNTPOINT [FUSE options...]\n");
		return 2;
	}
	fuse_opt_insert_arg(&args, 1, "-odefault_permissions,fsname=cutfs,subtype=cutfs");
	if (geteuid() == 0)
		fuse_opt_add_arg(&args, "-oallow_other");
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_destroy;
	if (fuse_session_mount(se, o.mountpoint) != 0)
		goto out_signals;
	cfg = fuse_loop_cfg_create();
	if (o.max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(cfg, o.max_idle_threads);
	r = fuse_session_loop_mt(se, cfg) ? 1 : 0;
	fuse_loop_cfg_destroy(cfg);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
out:
	free(o.mountpoint);
	fuse_opt_free_args(&args);
	return r;
}
