/* SPDX-License-Identifier: MIT */
/*
 * backup.c - `mirrorctl backup [--full] MOUNTPOINT SNAPSHOT s3://BUCKET/PREFIX/`:
 * a snapshot to object storage as a base image, or as the blocks changed
 * since the previous backup (keys and manifest: mirrorfs/backup.h).
 *
 * The tree is read through the snapshot's view MOUNTPOINT/.mirrorfs/
 * snapshots/NAME/ (the snapshot's contents and attributes, whatever
 * changed since). What changed comes from the previous backup's snapshot
 * OLD, still in the store DATADIR/.mirrorfs/snapshots/ (DATADIR from the
 * mount's status): a file that is the same inode in OLD's and NAME's
 * tree can only differ from OLD in the blocks OLD preserved before a
 * change (OLD/cow/INO.map; no map: no change), and in the blocks past
 * OLD's size. Those candidate blocks are read from both views and only
 * the ones that differ are uploaded; every other file is uploaded whole
 * (its zero blocks left out). Without OLD (deleted, recreated, broken) or
 * with --full, the backup is a full one, and says why.
 *
 * Data goes into packs of up to PACK_MAX bytes in a scratch file, each
 * uploaded (verified, never overwriting) when full; the manifest last.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "restore.h"

#include "cli.h"
#include "mirrorfs/backup.h"
#include "mirrorfs/cowmap.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/s3.h"
#include "mirrorfs/xattr.h"
#include "bkcommon.h"

#define BS MFS_COWMAP_BS
#define CHUNK_BLOCKS 256u /* 1 MiB reads */
#define PACK_MAX (64u << 20)

struct hlink {
	dev_t dev;
	ino_t ino;
	char *path;
};

struct bk {
	struct cli_bk_dest d;
	const char *mnt, *name;
	bool full;
	char *data_dir;
	int view_fd, tree_fd; /* the snapshot's view, and its tree in the store */
	struct mfs_bk_manifest m;
	char id[MFS_BK_ID_LEN + 1];
	char attempt[17];
	/* the previous backup (incremental when old_view_fd >= 0) */
	struct mfs_bk_manifest pm;
	char pid[MFS_BK_ID_LEN + 1];
	const struct mfs_bk_entry **pfiles; /* its regular files, by path */
	size_t n_pfiles;
	int old_view_fd, old_tree_fd, old_cow_fd;
	/* the open pack */
	char *scratch, *pack_path;
	int pack_fd;
	uint64_t pack_len;
	/* hard links seen */
	struct hlink *links;
	size_t n_links;
	char *buf, *obuf;
	uint64_t files, bytes, stored, uploaded, changed_files;
};

/* ================================================================ the snapshot */

/* The "data_dir" string of a status JSON (malloc'd), or NULL. */
static char *status_data_dir(const char *json)
{
	const char *p = strstr(json, "\"data_dir\":\"");
	char *out, *w;

	if (!p)
		return NULL;
	p += 12;
	out = w = malloc(strlen(p) + 1);
	if (!out)
		return NULL;
	for (; *p && *p != '"'; p++) {
		if (*p == '\\' && p[1] == 'u' && p[2] && p[3] && p[4] && p[5]) {
			*w++ = (char)strtol((char[]){ p[4], p[5], 0 }, NULL, 16);
			p += 5;
			continue;
		}
		if (*p == '\\' && p[1])
			p++;
		*w++ = *p;
	}
	*w = 0;
	return out;
}

/* Read NAME/meta of the store at @store_fd: lsn, time, data set. 0 or -errno. */
static int read_meta(int store_fd, const char *name, uint64_t *lsn, uint64_t *time_ns,
		     char dataset[37])
{
	_cleanup_free_ char *text = NULL, *path = NULL;
	struct mfs_snapmeta sm;
	const char *ds;
	int r;

	if (asprintf(&path, "%s/meta", name) < 0)
		return -ENOMEM;
	r = mfs_read_file(store_fd, path, 4096, &text, NULL);
	if (r < 0)
		return r;
	if (mfs_snapmeta_decode(text, &sm) < 0)
		return -EBADMSG;
	*lsn = sm.lsn;
	*time_ns = sm.time_ns;
	ds = strstr(text, "\ndataset=");
	snprintf(dataset, 37, "%.36s", ds ? ds + 9 : "-");
	return 0;
}

/* Open the view and the store's tree of snapshot @name. Returns 0, or 1 after a message. */
static int open_snapshot(struct bk *b, int store_fd, const char *name, int *view, int *tree)
{
	_cleanup_free_ char *v = NULL, *t = NULL;

	if (asprintf(&v, "%s/" MFS_SNAPSHOT_STORE "/%s", b->mnt, name) < 0 ||
	    asprintf(&t, "%s/tree", name) < 0)
		return cli_fail("out of memory");
	*view = cli_open_src(AT_FDCWD, v, O_DIRECTORY);
	if (*view < 0) {
		errno = -*view;
		return cli_fail("cannot open the snapshot '%s': %m", v);
	}
	*tree = openat(store_fd, t, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*tree < 0)
		return cli_fail("cannot open the store of snapshot '%s' in '%s': %m", name,
				b->data_dir);
	return 0;
}

static int by_path(const void *a, const void *b)
{
	return strcmp((*(const struct mfs_bk_entry *const *)a)->path,
		      (*(const struct mfs_bk_entry *const *)b)->path);
}

/*
 * The previous backup, when an incremental is possible: its manifest, and
 * its snapshot still in the store, the same one (LSN and time), not
 * broken. Else a full backup, saying why. Returns 0, or 1 after a message.
 */
static int find_parent(struct bk *b, int store_fd, const struct mfs_bk_info *v, size_t n)
{
	int i = b->m.lsn ? mfs_bk_pick(v, n, b->m.lsn - 1, UINT64_MAX) : -ENOENT;
	uint64_t lsn, t;
	char ds[37];
	struct stat st;
	_cleanup_free_ char *broken = NULL;

	if (b->full) {
		printf("full backup (--full)\n");
		return 0;
	}
	if (i < 0) {
		printf("full backup: no earlier backup under '%s'\n", b->d.url);
		return 0;
	}
	if (cli_bk_get_manifest(&b->d, &v[i], &b->pm))
		return 1;
	if (read_meta(store_fd, b->pm.snapshot, &lsn, &t, ds) < 0 || lsn != b->pm.lsn ||
	    t != b->pm.time_ns) {
		printf("full backup: the previous backup's snapshot '%s' (LSN %" PRIu64
		       ") is gone from '%s'\n",
		       b->pm.snapshot, b->pm.lsn, b->mnt);
		return 0;
	}
	if (asprintf(&broken, "%s/broken", b->pm.snapshot) < 0)
		return cli_fail("out of memory");
	if (fstatat(store_fd, broken, &st, 0) == 0 || strcmp(ds, b->m.dataset)) {
		printf("full backup: the previous backup's snapshot '%s' is broken or of another "
		       "data set\n",
		       b->pm.snapshot);
		return 0;
	}
	if (open_snapshot(b, store_fd, b->pm.snapshot, &b->old_view_fd, &b->old_tree_fd))
		return 1;
	broken[strlen(broken) - strlen("broken")] = 0; /* "NAME/" */
	b->old_cow_fd = openat(store_fd, strcat(broken, "cow"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->old_cow_fd < 0)
		return cli_fail("cannot open the copy-on-write maps of '%s': %m", b->pm.snapshot);
	b->pfiles = calloc(b->pm.n + 1, sizeof(*b->pfiles));
	if (!b->pfiles)
		return cli_fail("out of memory");
	for (size_t k = 0; k < b->pm.n; k++)
		if (b->pm.v[k].type == 'f')
			b->pfiles[b->n_pfiles++] = &b->pm.v[k];
	qsort(b->pfiles, b->n_pfiles, sizeof(*b->pfiles), by_path);
	memcpy(b->pid, v[i].id, sizeof(b->pid));
	memcpy(b->m.parent, v[i].id, sizeof(b->m.parent));
	printf("incremental backup on %s (snapshot '%s', LSN %" PRIu64 ")\n", b->pid,
	       b->pm.snapshot, b->pm.lsn);
	return 0;
}

/* ================================================================ packs */

/* Upload the open pack (if it holds anything) and start a new one. 0 or 1 after a message. */
static int pack_flush(struct bk *b)
{
	char name[64], *key = NULL;
	int r;

	if (!b->pack_len)
		return 0;
	snprintf(name, sizeof(name), "pack-%s-%06zu", b->attempt, b->m.n_packs);
	if (asprintf(&key, "%s%s/%s", b->d.bkprefix, b->id, name) < 0)
		return cli_fail("out of memory");
	r = mfs_s3_put_file(b->d.s3, b->d.bucket, key, b->pack_path);
	free(key);
	if (r < 0)
		return cli_fail("cannot upload %s/%s: %s", b->id, name, mfs_s3_error(b->d.s3));
	if (mfs_bk_pack_add(&b->m, name, b->pack_len) < 0)
		return cli_fail("out of memory");
	b->uploaded += b->pack_len;
	b->pack_len = 0;
	if (ftruncate(b->pack_fd, 0) < 0)
		return cli_fail("cannot truncate '%s': %m", b->pack_path);
	return 0;
}

/* Append @len bytes at file offset @foff of entry @e to the pack. 0 or 1 after a message. */
static int pack_add(struct bk *b, struct mfs_bk_entry *e, const char *data, size_t len,
		    uint64_t foff)
{
	int r;

	if (b->pack_len + len > PACK_MAX && pack_flush(b))
		return 1;
	r = mfs_pwrite_all(b->pack_fd, data, len, b->pack_len);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot write '%s': %m", b->pack_path);
	}
	if (mfs_bk_extent_add(e, (uint32_t)b->m.n_packs, b->pack_len, len, foff) < 0)
		return cli_fail("out of memory");
	b->pack_len += len;
	b->stored += len;
	return 0;
}

/* ================================================================ files */

static bool is_zero(const char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/*
 * The candidate blocks of a file that is inode @ino in OLD (size
 * *@old_size): NULL with *@all when every block is one (a full clone, or
 * the map unreadable: -errno), NULL without *@all when none of the first
 * ones is (no map: the file never changed), else the bitmap (malloc'd).
 */
static uint8_t *old_map(struct bk *b, uint64_t ino, uint64_t *old_size, bool *all)
{
	char name[64];
	uint8_t raw[MFS_COWMAP_HDR], *map;
	struct mfs_cowmap_hdr h;
	_cleanup_close_ int fd = -EBADF;
	size_t len;

	snprintf(name, sizeof(name), "%" PRIu64 ".map", ino);
	*all = false;
	fd = openat(b->old_cow_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*all = errno != ENOENT;
		return NULL;
	}
	*all = true;
	if (pread(fd, raw, sizeof(raw), 0) != (ssize_t)sizeof(raw) ||
	    mfs_cowmap_hdr_decode(raw, &h) < 0 || (h.flags & MFS_COWMAP_F_FULL) ||
	    h.size > MFS_COWMAP_SIZE_MAX)
		return NULL;
	len = mfs_cowmap_bytes(h.size);
	map = calloc(1, len);
	if (!map)
		return NULL;
	if (pread(fd, map, len, MFS_COWMAP_HDR) < 0) {
		free(map);
		return NULL;
	}
	*old_size = h.size; /* a short map: the missing bits read as 0 (calloc) */
	*all = false;
	return map;
}

/*
 * Store the blocks of [b0, b1) of @fd (size @size) that differ from @ofd's
 * (size @osize; -1: from zeros). Returns 0, or 1 after a message.
 */
static int store_run(struct bk *b, struct mfs_bk_entry *e, int fd, uint64_t size, int ofd,
		     uint64_t osize, uint64_t b0, uint64_t b1)
{
	for (uint64_t c = b0; c < b1; c += CHUNK_BLOCKS) {
		uint64_t off = c * BS;
		uint64_t n = MFS_MIN(MFS_MIN(b1 - c, (uint64_t)CHUNK_BLOCKS) * BS, size - off);
		ssize_t got = mfs_pread_all(fd, b->buf, n, off), ogot = 0;

		if (got != (ssize_t)n)
			return cli_fail("cannot read '%s' of snapshot '%s': %s", e->path, b->name,
					got < 0 ? strerror((int)-got) : "short read");
		memset(b->obuf, 0, n);
		if (ofd >= 0 && off < osize)
			ogot = mfs_pread_all(ofd, b->obuf, MFS_MIN(n, osize - off), off);
		if (ogot < 0)
			return cli_fail("cannot read '%s' of snapshot '%s': %s", e->path,
					b->pm.snapshot, strerror((int)-ogot));
		for (uint64_t k = 0; k < n; k += BS) {
			size_t len = (size_t)MFS_MIN((uint64_t)BS, n - k);
			bool same = ofd >= 0 ? !memcmp(b->buf + k, b->obuf + k, len)
					     : is_zero(b->buf + k, len);
			if (!same && pack_add(b, e, b->buf + k, len, off + k))
				return 1;
		}
	}
	return 0;
}

/* The parent's regular file at @path, or NULL. */
static const struct mfs_bk_entry *parent_file(struct bk *b, const char *path)
{
	struct mfs_bk_entry key = { .path = (char *)path };
	const struct mfs_bk_entry *kp = &key, **hit;

	if (!b->n_pfiles)
		return NULL;
	hit = bsearch(&kp, b->pfiles, b->n_pfiles, sizeof(*b->pfiles), by_path);
	return hit ? *hit : NULL;
}

/*
 * Whether @path is the same inode in OLD's tree and the new one (then
 * *@ino is it): only then can OLD's map say what changed.
 */
static bool same_inode(struct bk *b, const char *path, uint64_t *ino)
{
	struct stat a, c;

	if (b->old_tree_fd < 0 || !parent_file(b, path) ||
	    fstatat(b->old_tree_fd, path, &a, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstatat(b->tree_fd, path, &c, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	*ino = (uint64_t)c.st_ino;
	return a.st_ino == c.st_ino && a.st_dev == c.st_dev && S_ISREG(a.st_mode);
}

/* Blocks of @e (open at @fd) that OLD's @map names, or from OLD's last
 * partial block (@osize) on, and differ from OLD's (@ofd). 0 or 1. */
static int store_changed(struct bk *b, struct mfs_bk_entry *e, int fd, int ofd,
			 const uint8_t *map, uint64_t osize)
{
	uint64_t nb = mfs_cowmap_nblocks(e->size), full_below = osize / BS;

	for (uint64_t k = 0; k < nb;) {
		uint64_t end;
		if (k < full_below && !mfs_cowmap_test(map, k)) {
			k = mfs_cowmap_run_end(map, k, full_below, false);
			continue;
		}
		end = k < full_below ? mfs_cowmap_run_end(map, k, full_below, true) : nb;
		end = MFS_MIN(end, nb);
		if (store_run(b, e, fd, e->size, ofd, osize, k, end))
			return 1;
		k = end;
	}
	return 0;
}

/* A file OLD never saw change (no map): its attributes from the parent. 0 or 1. */
static int unchanged(struct bk *b, struct mfs_bk_entry *e)
{
	const struct mfs_bk_entry *pe = parent_file(b, e->path);

	if (e->size != pe->size)
		return cli_fail("'%s': no change recorded since '%s' but its size differs", e->path,
				b->pm.snapshot);
	for (size_t i = 0; i < pe->n_xa; i++)
		if (mfs_bk_xattr_add(e, pe->xa[i].name, pe->xa[i].value, pe->xa[i].len) < 0)
			return cli_fail("out of memory");
	return 0;
}

static int add_xattrs(struct mfs_bk_entry *e, int fd, bool top);

/*
 * Regular file @e, @name of folder @dfd: its extended attributes and data.
 * A file unchanged since OLD is not even opened. Returns 0, or 1 after a message.
 */
static int file_data(struct bk *b, struct mfs_bk_entry *e, int dfd, const char *name)
{
	uint64_t ino = 0, osize = 0;
	_cleanup_free_ uint8_t *map = NULL;
	_cleanup_close_ int fd = -EBADF, ofd = -EBADF;
	bool same = same_inode(b, e->path, &ino), all = true;
	int r;

	b->bytes += e->size;
	if (same) {
		map = old_map(b, ino, &osize, &all);
		e->other = strdup(e->path);
		if (!e->other)
			return cli_fail("out of memory");
		if (!map && !all)
			return unchanged(b, e);
	}
	fd = cli_open_src(dfd, name, 0);
	r = fd < 0 ? fd : add_xattrs(e, fd, false);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read '%s' of snapshot '%s': %m", e->path, b->name);
	}
	if (!same)
		return store_run(b, e, fd, e->size, -1, 0, 0, mfs_cowmap_nblocks(e->size));
	ofd = cli_open_src(b->old_view_fd, e->path, 0);
	if (ofd < 0) {
		errno = -ofd;
		return cli_fail("cannot open '%s' of snapshot '%s': %m", e->path, b->pm.snapshot);
	}
	b->changed_files++;
	if (all) { /* every block a candidate */
		struct stat st;
		osize = fstat(ofd, &st) == 0 ? (uint64_t)st.st_size : 0;
		return store_run(b, e, fd, e->size, ofd, osize, 0, mfs_cowmap_nblocks(e->size));
	}
	return store_changed(b, e, fd, ofd, map, osize);
}

/* Extended attributes of @fd onto @e (not the snapshot's own at the top). */
static int add_xattrs(struct mfs_bk_entry *e, int fd, bool top)
{
	_cleanup_free_ char *blob = NULL;
	struct mfs_xattr_ent x;
	size_t len = 0, pos = 0;
	int r = mfs_xattr_blob(fd, &blob, &len);

	if (r < 0)
		return r;
	while ((r = mfs_xattr_blob_next(blob, len, &pos, &x)) > 0) {
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)x.name_len, x.name);
		if (top && !strncmp(name, SNAP_XATTR_PREFIX, strlen(SNAP_XATTR_PREFIX)))
			continue;
		if (mfs_bk_xattr_add(e, name, x.value, x.value_len) < 0)
			return -ENOMEM;
	}
	return r;
}

static void set_attrs(struct mfs_bk_entry *e, const struct stat *st)
{
	e->mode = st->st_mode;
	e->uid = st->st_uid;
	e->gid = st->st_gid;
	e->atime_ns = (uint64_t)st->st_atim.tv_sec * 1000000000u + (uint64_t)st->st_atim.tv_nsec;
	e->mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
}

/* A hard link to a file already in the manifest: its 'h' entry. 1 if it was, 0, or -ENOMEM. */
static int hard_link(struct bk *b, const char *path, const struct stat *st)
{
	struct hlink *v;

	if (st->st_nlink < 2)
		return 0;
	for (size_t i = 0; i < b->n_links; i++)
		if (b->links[i].dev == st->st_dev && b->links[i].ino == st->st_ino) {
			struct mfs_bk_entry *e = mfs_bk_entry_add(&b->m, 'h', path);
			if (!e || !(e->other = strdup(b->links[i].path)))
				return -ENOMEM;
			return 1;
		}
	v = realloc(b->links, (b->n_links + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	b->links = v;
	v[b->n_links] = (struct hlink){ st->st_dev, st->st_ino, strdup(path) };
	return v[b->n_links++].path ? 0 : -ENOMEM;
}

static int walk(struct bk *b, int dfd, const char *rel, int depth);

/* One entry @name of folder @dfd, @path relative to the snapshot. 0 or 1 after a message. */
static int walk_entry(struct bk *b, int dfd, const char *name, const char *path, int depth)
{
	struct mfs_bk_entry *e;
	struct stat st;
	char target[4097];
	ssize_t n;
	int r;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return cli_fail("cannot stat '%s' of snapshot '%s': %m", path, b->name);
	if (S_ISDIR(st.st_mode))
		return walk(b, dfd, path, depth + 1);
	if (S_ISLNK(st.st_mode)) {
		n = readlinkat(dfd, name, target, sizeof(target) - 1);
		if (n < 0)
			return cli_fail("cannot read the link '%s': %m", path);
		target[n] = 0;
		e = mfs_bk_entry_add(&b->m, 'l', path);
		if (!e || !(e->other = strdup(target)))
			return cli_fail("out of memory");
		set_attrs(e, &st);
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		cli_warn("'%s' of snapshot '%s' is neither a file, a folder nor a link: not backed up",
			 path, b->name);
		return 0;
	}
	r = hard_link(b, path, &st);
	if (r)
		return r < 0 ? cli_fail("out of memory") : 0;
	e = mfs_bk_entry_add(&b->m, 'f', path);
	if (!e)
		return cli_fail("out of memory");
	set_attrs(e, &st);
	e->size = (uint64_t)st.st_size;
	b->files++;
	return file_data(b, e, dfd, name);
}

/* Folder @rel (open at @dfd's @rel, "." the root) and everything in it. */
static int walk(struct bk *b, int pfd, const char *rel, int depth)
{
	bool top = !strcmp(rel, ".");
	_cleanup_close_ int fd = -EBADF;
	struct mfs_bk_entry *e;
	struct stat st;
	char **names = NULL;
	size_t n = 0;
	int r;

	if (depth > 4096)
		return cli_fail("'%s': folders nested too deep", rel);
	fd = cli_open_src(pfd, top ? "." : strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel,
			  O_DIRECTORY | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		errno = fd < 0 ? -fd : errno;
		return cli_fail("cannot open '%s' of snapshot '%s': %m", rel, b->name);
	}
	e = mfs_bk_entry_add(&b->m, 'd', rel);
	if (!e)
		return cli_fail("out of memory");
	set_attrs(e, &st);
	r = add_xattrs(e, fd, top);
	if (r == 0)
		r = cli_list_names(fd, top, &names, &n);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read the folder '%s' of snapshot '%s': %m", rel, b->name);
	}
	for (size_t i = 0; i < n && !r; i++) {
		char *path = NULL;
		if (asprintf(&path, "%s%s%s", top ? "" : rel, top ? "" : "/", names[i]) < 0)
			r = cli_fail("out of memory");
		else
			r = walk_entry(b, fd, names[i], path, depth);
		free(path);
	}
	cli_free_names(names, n);
	return r;
}

/* ================================================================ the command */

static const char usage_text[] =
	"usage: mirrorctl backup [--full] [--s3-endpoint URL] MOUNTPOINT SNAPSHOT s3://BUCKET/PREFIX/\n";

static int parse_args(struct bk *b, int argc, char **argv)
{
	const char *pos[3];
	int np = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--full"))
			b->full = true;
		else if (!strcmp(argv[i], "--s3-endpoint") && i + 1 < argc)
			b->d.opts.endpoint = argv[++i];
		else if (argv[i][0] == '-' || np == 3)
			return fputs(usage_text, stderr), 2;
		else
			pos[np++] = argv[i];
	}
	if (np != 3)
		return fputs(usage_text, stderr), 2;
	b->mnt = pos[0];
	b->name = pos[1];
	b->d.url = pos[2];
	return 0;
}

/* The snapshot's identity and folders. Returns the store's fd, or -1 after a message. */
static int snapshot_setup(struct bk *b)
{
	_cleanup_free_ char *json = NULL, *st = NULL, *store = NULL;
	char ds[37];
	int r, store_fd;

	if (asprintf(&st, "%s/" MFS_STATUS_FILE, b->mnt) < 0)
		return -cli_fail("out of memory");
	r = mfs_read_file(AT_FDCWD, st, 1 << 22, &json, NULL);
	if (r < 0) {
		errno = -r;
		return -cli_fail("'%s' is not a mirrorfs mount (%s: %m)", b->mnt, st);
	}
	b->data_dir = status_data_dir(json);
	if (!b->data_dir)
		return -cli_fail("the status of '%s' names no data folder (mirrorfs too old?)",
				 b->mnt);
	if (asprintf(&store, "%s/" MFS_SNAPSHOT_STORE, b->data_dir) < 0)
		return -cli_fail("out of memory");
	store_fd = open(store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (store_fd < 0)
		return -cli_fail("cannot open the snapshot store '%s': %m", store);
	r = read_meta(store_fd, b->name, &b->m.lsn, &b->m.time_ns, ds);
	if (r < 0) {
		close(store_fd);
		errno = -r;
		return -cli_fail("no snapshot '%s' on '%s': %m", b->name, b->mnt);
	}
	b->m.snapshot = strdup(b->name);
	b->m.dataset = strdup(ds);
	if (!b->m.snapshot || !b->m.dataset || open_snapshot(b, store_fd, b->name, &b->view_fd, &b->tree_fd)) {
		close(store_fd);
		return -1;
	}
	mfs_bk_id_format(b->m.lsn, b->m.time_ns, b->id);
	return store_fd;
}

static int upload_manifest(struct bk *b)
{
	_cleanup_free_ char *text = NULL, *key = NULL, *path = NULL;
	_cleanup_close_ int fd = -EBADF;
	size_t len;
	int r;

	char rel[2 * MFS_BK_ID_LEN + 20];

	mfs_bk_manifest_key(b->id, b->m.parent, rel);
	if (mfs_bk_manifest_encode(&b->m, &text, &len) < 0 ||
	    asprintf(&key, "%s%s", b->d.bkprefix, rel) < 0 ||
	    asprintf(&path, "%s/manifest", b->scratch) < 0)
		return cli_fail("out of memory");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || mfs_write_all(fd, text, len) < 0)
		return cli_fail("cannot write '%s': %m", path);
	r = mfs_s3_put_file(b->d.s3, b->d.bucket, key, path);
	if (r == -EEXIST)
		return cli_fail("%s exists already with other contents: not overwritten", key);
	if (r < 0)
		return cli_fail("cannot upload %s: %s", key, mfs_s3_error(b->d.s3));
	b->uploaded += len;
	return 0;
}

static int run(struct bk *b)
{
	struct mfs_bk_info *v = NULL;
	_cleanup_close_ int store_fd = -EBADF;
	size_t n = 0;
	int at;

	store_fd = snapshot_setup(b);
	if (store_fd < 0)
		return 1;
	if (cli_bk_list(&b->d, &v, &n))
		return 1;
	at = mfs_bk_find(v, n, b->id);
	if (at >= 0 && v[at].complete) {
		free(v);
		printf("snapshot '%s' (LSN %" PRIu64 ") is backed up already: %s\n", b->name,
		       b->m.lsn, b->id);
		return 0;
	}
	if (find_parent(b, store_fd, v, n)) {
		free(v);
		return 1;
	}
	free(v);
	snprintf(b->attempt, sizeof(b->attempt), "%016" PRIx64, mfs_now_ns());
	if (walk(b, b->view_fd, ".", 0) || pack_flush(b) || upload_manifest(b))
		return 1;
	return 0;
}

static void done(struct bk *b)
{
	mfs_bk_manifest_done(&b->m);
	mfs_bk_manifest_done(&b->pm);
	free(b->pfiles);
	for (size_t i = 0; i < b->n_links; i++)
		free(b->links[i].path);
	free(b->links);
	free(b->buf);
	free(b->obuf);
	free(b->data_dir);
	free(b->pack_path);
	closep(&b->pack_fd);
	closep(&b->view_fd);
	closep(&b->tree_fd);
	closep(&b->old_view_fd);
	closep(&b->old_tree_fd);
	closep(&b->old_cow_fd);
	if (b->scratch && mfs_rm_tree(AT_FDCWD, b->scratch) < 0)
		cli_warn("cannot remove the scratch folder '%s'", b->scratch);
	free(b->scratch);
	cli_bk_dest_done(&b->d);
}

int cli_backup(int argc, char **argv)
{
	struct bk b = { .view_fd = -1, .tree_fd = -1, .old_view_fd = -1, .old_tree_fd = -1,
			.old_cow_fd = -1, .pack_fd = -1 };
	uint64_t t0 = mfs_mono_ns();
	int r;

	cli_set_prefix("mirrorctl backup");
	mfs_s3_opts_from_env(&b.d.opts);
	r = parse_args(&b, argc, argv);
	if (r)
		return r;
	if (cli_bk_dest_open(&b.d) || cli_bk_scratch(&b.scratch))
		return done(&b), 1;
	b.buf = malloc(CHUNK_BLOCKS * BS);
	b.obuf = malloc(CHUNK_BLOCKS * BS);
	if (!b.buf || !b.obuf || asprintf(&b.pack_path, "%s/pack", b.scratch) < 0)
		return done(&b), cli_fail("out of memory");
	b.pack_fd = open(b.pack_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (b.pack_fd < 0)
		return done(&b), cli_fail("cannot create '%s': %m", b.pack_path);
	r = run(&b);
	if (r == 0 && b.files + b.m.n)
		printf("backup %s of snapshot '%s' (LSN %" PRIu64 "): %s%s, %" PRIu64
		       " files (%" PRIu64 " bytes), %" PRIu64 " files changed, %" PRIu64
		       " bytes of data in %zu packs, %" PRIu64 " bytes uploaded in %.3f s\n",
		       b.id, b.name, b.m.lsn, b.m.parent[0] ? "incremental on " : "full",
		       b.m.parent, b.files, b.bytes, b.changed_files, b.stored, b.m.n_packs,
		       b.uploaded, (double)(mfs_mono_ns() - t0) / 1e9);
	done(&b);
	return r;
}
