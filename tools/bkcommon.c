/* SPDX-License-Identifier: MIT */
/*
 * bkcommon.c - a backup destination s3://BUCKET/PREFIX/ as backup,
 * restore and prune see it: one LIST of PREFIX/backups/ tells every
 * backup, whether it is complete (its manifest key exists) and its parent
 * (named in that key); a manifest is downloaded only when needed.
 *
 * Rebuilding a backup applies its chain oldest first, each layer in a
 * folder of its own: a file the layer inherits is renamed from the layer
 * before (never copied), then resized and its extents written; the rest
 * of the layer before is removed. Attributes are set once, from the last
 * manifest, children before their folder (so folder times stick).
 */
#include "bkcommon.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#define MANIFEST_MAX (1u << 30)

int cli_bk_scratch(char **ret)
{
	const char *tmp = getenv("TMPDIR");
	char *s = NULL;

	if (asprintf(&s, "%s/mirrorctl-backup.XXXXXX", tmp && *tmp ? tmp : "/var/tmp") < 0)
		return cli_fail("out of memory");
	if (!mkdtemp(s)) {
		cli_fail("cannot create a scratch folder '%s': %m", s);
		free(s);
		return 1;
	}
	*ret = s;
	return 0;
}

int cli_bk_dest_open(struct cli_bk_dest *d)
{
	char err[256];
	size_t pl;

	if (mfs_s3_parse_url(d->url, &d->bucket, &d->prefix) < 0)
		return cli_fail("'%s' is not s3://BUCKET/PREFIX/", d->url);
	pl = strlen(d->prefix);
	if (pl && d->prefix[pl - 1] != '/') {
		char *p = NULL;
		if (asprintf(&p, "%s/", d->prefix) < 0)
			return cli_fail("out of memory");
		free(d->prefix);
		d->prefix = p;
	}
	if (asprintf(&d->bkprefix, "%s" MFS_BK_DIR, d->prefix) < 0 ||
	    asprintf(&d->segprefix, "%ssegments/", d->prefix) < 0)
		return cli_fail("out of memory");
	d->s3 = mfs_s3_new(&d->opts, err, sizeof(err));
	if (!d->s3)
		return cli_fail("%s", err);
	return d->no_scratch ? 0 : cli_bk_scratch(&d->scratch);
}

void cli_bk_dest_done(struct cli_bk_dest *d)
{
	if (d->scratch && mfs_rm_tree(AT_FDCWD, d->scratch) < 0)
		cli_warn("cannot remove the scratch folder '%s'", d->scratch);
	free(d->scratch);
	mfs_s3_list_done(&d->keys);
	mfs_s3_free(d->s3);
	free(d->bucket);
	free(d->prefix);
	free(d->bkprefix);
	free(d->segprefix);
	*d = (struct cli_bk_dest){ 0 };
}

int cli_bk_list(struct cli_bk_dest *d, struct mfs_bk_info **ret, size_t *ret_n)
{
	mfs_s3_list_done(&d->keys);
	d->keys = (struct mfs_s3_list){ 0 };
	if (mfs_s3_list(d->s3, d->bucket, d->bkprefix, NULL, 0, &d->keys) < 0)
		return cli_fail("cannot list '%s%s': %s", d->url, MFS_BK_DIR, mfs_s3_error(d->s3));
	return cli_bk_parse(d, ret, ret_n);
}

int cli_bk_parse(struct cli_bk_dest *d, struct mfs_bk_info **ret, size_t *ret_n)
{
	struct mfs_bk_info *v = NULL;
	size_t n = 0, pl = strlen(d->bkprefix);

	for (size_t i = 0; i < d->keys.n; i++) {
		char id[MFS_BK_ID_LEN + 1], parent[MFS_BK_ID_LEN + 1];
		bool man;
		struct mfs_bk_info *b;

		if (strncmp(d->keys.v[i].key, d->bkprefix, pl) ||
		    !mfs_bk_key_parse(d->keys.v[i].key + pl, id, &man, parent))
			continue;
		if (!n || strcmp(v[n - 1].id, id)) { /* keys come sorted: one run per ID */
			b = realloc(v, (n + 1) * sizeof(*v));
			if (!b) {
				free(v);
				return cli_fail("out of memory");
			}
			v = b;
			v[n] = (struct mfs_bk_info){ 0 };
			memcpy(v[n].id, id, sizeof(id));
			mfs_bk_id_parse(id, &v[n].lsn, &v[n].time_ns);
			n++;
		}
		if (man) {
			v[n - 1].complete = true;
			memcpy(v[n - 1].parent, parent, sizeof(parent));
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int cli_bk_get_manifest(struct cli_bk_dest *d, const struct mfs_bk_info *b,
			struct mfs_bk_manifest *ret)
{
	char rel[2 * MFS_BK_ID_LEN + 20];
	_cleanup_free_ char *key = NULL, *path = NULL, *text = NULL;
	size_t len;
	int r;

	mfs_bk_manifest_key(b->id, b->parent, rel);
	if (asprintf(&key, "%s%s", d->bkprefix, rel) < 0 ||
	    asprintf(&path, "%s/manifest-%s", d->scratch, b->id) < 0)
		return cli_fail("out of memory");
	r = mfs_s3_get_file(d->s3, d->bucket, key, path);
	if (r < 0)
		return cli_fail("cannot download %s: %s", key, mfs_s3_error(d->s3));
	r = mfs_read_file(AT_FDCWD, path, MANIFEST_MAX, &text, &len);
	(void)unlink(path);
	if (r == 0)
		r = mfs_bk_manifest_decode(text, len, ret);
	if (r < 0) {
		errno = -r;
		return cli_fail("manifest %s: %m", key);
	}
	if (ret->lsn != b->lsn || ret->time_ns != b->time_ns || strcmp(ret->parent, b->parent)) {
		mfs_bk_manifest_done(ret);
		return cli_fail("manifest %s does not match its key (LSN, time or parent)", key);
	}
	return 0;
}

/* ================================================================ parallel downloads */

struct dl {
	struct cli_bk_dest *d;
	char **keys, **paths;
	size_t n, next;
	uint64_t bytes;
	pthread_mutex_t lock;
	int failed;
	char err[512];
};

static void *dl_worker(void *arg)
{
	struct dl *f = arg;
	char err[256];
	struct mfs_s3 *s = mfs_s3_new(&f->d->opts, err, sizeof(err));

	for (;;) {
		size_t i;
		int r;
		struct stat st;

		pthread_mutex_lock(&f->lock);
		if (!s && !f->failed)
			f->failed = 1, snprintf(f->err, sizeof(f->err), "%s", err);
		i = f->next < f->n && !f->failed ? f->next++ : SIZE_MAX;
		pthread_mutex_unlock(&f->lock);
		if (i == SIZE_MAX)
			break;
		r = mfs_s3_get_file(s, f->d->bucket, f->keys[i], f->paths[i]);
		pthread_mutex_lock(&f->lock);
		if (r < 0 && !f->failed)
			f->failed = 1, snprintf(f->err, sizeof(f->err), "%s: %s", f->keys[i],
						mfs_s3_error(s));
		if (r == 0 && stat(f->paths[i], &st) == 0)
			f->bytes += (uint64_t)st.st_size;
		pthread_mutex_unlock(&f->lock);
	}
	mfs_s3_free(s);
	return NULL;
}

void cli_bk_workers(void *(*fn)(void *), void *arg, size_t n)
{
	pthread_t tid[64];
	size_t k = 0;

	for (; k < n && k < 64; k++)
		if (pthread_create(&tid[k], NULL, fn, arg))
			break;
	if (!k)
		fn(arg);
	for (size_t i = 0; i < k; i++)
		pthread_join(tid[i], NULL);
}

/* Download @f->n keys with @jobs threads. 0, or 1 after a message. */
static int dl_run(struct dl *f, int jobs)
{
	cli_bk_workers(dl_worker, f, MFS_MIN((size_t)jobs, f->n));
	if (f->failed)
		return cli_fail("download from '%s' failed: %s", f->d->url, f->err);
	return 0;
}

/* ================================================================ rebuild */

struct layer {
	const struct mfs_bk_manifest *m;
	int dirfd, prevfd; /* this layer's folder, the one before (-1: none) */
	int *packs;        /* fds of the downloaded packs */
	const char *id;
};

static int write_extents(const struct layer *L, const struct mfs_bk_entry *e, int fd, char *buf)
{
	for (size_t i = 0; i < e->n_ext; i++) {
		const struct mfs_bk_extent *x = &e->ext[i];
		for (uint64_t done = 0; done < x->len;) {
			size_t n = (size_t)MFS_MIN(x->len - done, (uint64_t)(1u << 20));
			ssize_t got = mfs_pread_all(L->packs[x->pack], buf, n, x->pack_off + done);
			int r;
			if (got != (ssize_t)n)
				return got < 0 ? (int)got : -EBADMSG;
			r = mfs_pwrite_all(fd, buf, n, x->file_off + done);
			if (r < 0)
				return r;
			done += n;
		}
	}
	return 0;
}

/* Regular file @e of layer @L. 0 or -errno. */
static int build_file(const struct layer *L, const struct mfs_bk_entry *e, char *buf)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (e->other) {
		if (L->prevfd < 0)
			return -EBADMSG;
		if (renameat(L->prevfd, e->other, L->dirfd, e->path) < 0)
			return -errno;
		fd = openat(L->dirfd, e->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	} else {
		fd = openat(L->dirfd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
	}
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)e->size) < 0)
		return -errno;
	r = write_extents(L, e, fd, buf);
	return r;
}

static int build_layer(const struct layer *L, char *buf)
{
	for (size_t i = 0; i < L->m->n; i++) {
		const struct mfs_bk_entry *e = &L->m->v[i];
		int r = 0;

		switch (e->type) {
		case 'd':
			if (strcmp(e->path, ".") && mkdirat(L->dirfd, e->path, 0700) < 0)
				r = -errno;
			break;
		case 'f':
			r = build_file(L, e, buf);
			break;
		case 'l':
			r = symlinkat(e->other, L->dirfd, e->path) < 0 ? -errno : 0;
			break;
		case 'h':
			r = linkat(L->dirfd, e->other, L->dirfd, e->path, 0) < 0 ? -errno : 0;
			break;
		}
		if (r < 0) {
			errno = -r;
			return cli_fail("backup %s: cannot rebuild '%s'%s%s: %m", L->id, e->path,
					e->other && e->type == 'f' ? " from the backup before's " : "",
					e->other && e->type == 'f' ? e->other : "");
		}
	}
	return 0;
}

/* Attributes of @e under @dirfd (path @root/...), the last layer. 0 or -errno. */
static int set_attrs(int dirfd, const struct mfs_bk_entry *e, bool owners)
{
	const struct timespec ts[2] = {
		{ (time_t)(e->atime_ns / 1000000000u), (long)(e->atime_ns % 1000000000u) },
		{ (time_t)(e->mtime_ns / 1000000000u), (long)(e->mtime_ns % 1000000000u) },
	};
	_cleanup_close_ int fd = -EBADF;

	if (e->type == 'h')
		return 0;
	if (e->type == 'l') {
		if (owners && fchownat(dirfd, e->path, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		return utimensat(dirfd, e->path, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	}
	fd = openat(dirfd, e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < e->n_xa; i++)
		if (fsetxattr(fd, e->xa[i].name, e->xa[i].value, e->xa[i].len, 0) < 0 &&
		    (errno != EPERM || owners))
			return -errno;
	if (owners && fchown(fd, e->uid, e->gid) < 0)
		return -errno;
	if (fchmod(fd, e->mode & 07777) < 0 || futimens(fd, ts) < 0)
		return -errno;
	return 0;
}

/* Download the packs of @m into @dir, opened into @L->packs. 0, or 1 after a message. */
static int fetch_packs(struct cli_bk_dest *d, const char *id, const struct mfs_bk_manifest *m,
		       const char *dir, int jobs, struct layer *L, uint64_t *bytes)
{
	struct dl f = { .d = d, .n = m->n_packs, .lock = PTHREAD_MUTEX_INITIALIZER };
	int r = 0;

	f.keys = calloc(m->n_packs + 1, sizeof(char *));
	f.paths = calloc(m->n_packs + 1, sizeof(char *));
	L->packs = calloc(m->n_packs + 1, sizeof(int));
	if (!f.keys || !f.paths || !L->packs)
		r = cli_fail("out of memory");
	for (size_t i = 0; !r && i < m->n_packs; i++)
		if (asprintf(&f.keys[i], "%s%s/%s", d->bkprefix, id, m->packs[i]) < 0 ||
		    asprintf(&f.paths[i], "%s/%s", dir, m->packs[i]) < 0)
			r = cli_fail("out of memory");
	if (!r)
		r = dl_run(&f, jobs);
	*bytes += f.bytes;
	for (size_t i = 0; !r && i < m->n_packs; i++) {
		struct stat st;
		L->packs[i] = open(f.paths[i], O_RDONLY | O_CLOEXEC);
		if (L->packs[i] < 0 || fstat(L->packs[i], &st) < 0 ||
		    (uint64_t)st.st_size != m->pack_size[i])
			r = cli_fail("backup %s: pack %s is not the size its manifest says", id,
				     m->packs[i]);
	}
	for (size_t i = 0; i < m->n_packs && f.keys; i++) {
		free(f.keys[i]);
		free(f.paths ? f.paths[i] : NULL);
	}
	free(f.keys);
	free(f.paths);
	return r;
}

static void layer_close(struct layer *L)
{
	for (size_t i = 0; L->packs && i < L->m->n_packs; i++)
		if (L->packs[i] > 0)
			close(L->packs[i]);
	free(L->packs);
	L->packs = NULL;
}

/* One layer: packs, the folder @to (created), the layer before removed. 0 or 1. */
static int apply_layer(struct cli_bk_dest *d, const struct mfs_bk_info *b,
		       const struct mfs_bk_manifest *m, const char *prev, const char *to, int jobs,
		       uint64_t *bytes, char *buf)
{
	struct layer L = { .m = m, .dirfd = -1, .prevfd = -1, .id = b->id };
	_cleanup_free_ char *pdir = NULL;
	int r;

	if (asprintf(&pdir, "%s/packs-%s", d->scratch, b->id) < 0)
		return cli_fail("out of memory");
	if (mkdir(pdir, 0700) < 0 || mkdir(to, 0700) < 0)
		return cli_fail("cannot create '%s': %m", to);
	r = fetch_packs(d, b->id, m, pdir, jobs, &L, bytes);
	L.dirfd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (prev)
		L.prevfd = open(prev, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!r && (L.dirfd < 0 || (prev && L.prevfd < 0)))
		r = cli_fail("cannot open '%s': %m", L.dirfd < 0 ? to : prev);
	if (!r)
		r = build_layer(&L, buf);
	layer_close(&L);
	closep(&L.dirfd);
	closep(&L.prevfd);
	(void)mfs_rm_tree(AT_FDCWD, pdir);
	if (prev)
		(void)mfs_rm_tree(AT_FDCWD, prev);
	return r;
}

int cli_bk_rebuild(struct cli_bk_dest *d, const struct mfs_bk_info *v, size_t n, size_t at,
		   const char *to, int jobs, uint64_t *ret_bytes)
{
	size_t chain[256], k = 0;
	struct mfs_bk_manifest m = { 0 };
	_cleanup_free_ char *buf = malloc(1u << 20), *prev = NULL;
	_cleanup_close_ int fd = -EBADF;
	bool owners = geteuid() == 0;
	int r = 0;

	if (!buf)
		return cli_fail("out of memory");
	for (int i = (int)at; i >= 0; i = v[i].parent[0] ? mfs_bk_find(v, n, v[i].parent) : -1) {
		if (k == ARRAY_SIZE(chain))
			return cli_fail("backup %s: a chain of over %zu backups", v[at].id, k);
		chain[k++] = (size_t)i;
	}
	*ret_bytes = 0;
	while (k-- > 0 && !r) {
		const struct mfs_bk_info *b = &v[chain[k]];
		char *dir = NULL;

		mfs_bk_manifest_done(&m);
		if (cli_bk_get_manifest(d, b, &m))
			return free(prev), prev = NULL, 1;
		if (!k)
			dir = strdup(to);
		else if (asprintf(&dir, "%s/layer-%s", d->scratch, b->id) < 0)
			dir = NULL;
		r = dir ? apply_layer(d, b, &m, prev, dir, jobs, ret_bytes, buf)
			: cli_fail("out of memory");
		free(prev);
		prev = dir;
	}
	fd = r ? -1 : open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = m.n; !r && i-- > 0;) {
		int e = fd < 0 ? -errno : set_attrs(fd, &m.v[i], owners);
		if (e < 0) {
			errno = -e;
			r = cli_fail("cannot set the attributes of '%s/%s': %m", to, m.v[i].path);
		}
	}
	mfs_bk_manifest_done(&m);
	return r;
}
