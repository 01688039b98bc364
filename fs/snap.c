/* SPDX-License-Identifier: MIT */
/*
 * snap.c - frozen snapshots: create and delete, and the ctl commands
 * ("snapshot create NAME|delete NAME|list") and status JSON.
 *
 * Create takes the snapshot in a lock window (fs_lock_quiesce): the
 * journal switches segments at the snapshot's LSN and the hard-link farm
 * is built (snapfarm.c); after the window the farm, the meta file and the
 * journal's switch are made durable and .new-NAME is renamed to NAME
 * (create_durable()). Delete renames NAME to .del-NAME and removes it.
 * The store's layout and the module map: snap_i.h.
 */
#include "snap_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

struct create_ctx {
	struct fs *fs;
	struct fs_snap *s;
	struct mfs_segw *old; /* the segment to seal after the window */
	uint64_t window_ns;
};

struct durable_job {
	struct fs *fs;
	struct create_ctx *x;
	int meta_fd;
	const char *tmp;
};

static int journal_sync_job(void *arg)
{
	struct durable_job *d = arg;

	return fs_journal_snapshot_sync(d->fs, d->x->old);
}

static int farm_sync_job(void *arg)
{
	return fs_farm_sync(((struct durable_job *)arg)->x->s->tree_fd);
}

static int meta_sync_job(void *arg)
{
	return fsync(((struct durable_job *)arg)->meta_fd) < 0 ? -errno : 0;
}

/* The files the farm links hold changes not yet on disk (applied, never
 * fsynced): made durable now, with a mark at the snapshot's LSN. Else a
 * power cut could leave the snapshot's links on inodes whose contents were
 * lost, while recovery rebuilt the live files as new inodes (the replay of
 * a creation replaces what it finds): the snapshot showed empty files. */
static int mark_job(void *arg)
{
	struct durable_job *d = arg;

	return fs_journal_mark(d->fs, d->x->s->lsn);
}

static int folder_sync_job(void *arg)
{
	return fsync(((struct durable_job *)arg)->x->s->dirfd) < 0 ? -errno : 0;
}

static int journal_end_job(void *arg)
{
	struct durable_job *d = arg;

	return fs_journal_snapshot_end(d->fs, d->x->old);
}

static int publish_job(void *arg)
{
	struct durable_job *d = arg;
	int store_fd = d->fs->snaps->store_fd;

	int r;

	if (renameat(store_fd, d->tmp, store_fd, d->x->s->name) < 0)
		return -errno;
	r = mfs_fsync_dir(store_fd, NULL);
	if (r < 0) /* back to .new-NAME, which the failure removes */
		(void)renameat(store_fd, d->x->s->name, store_fd, d->tmp);
	return r;
}

/*
 * After the lock window (@r: how it went), make the snapshot durable and
 * publish it as NAME, in two rounds of fsyncs run at once (mfs_run_jobs:
 * their disk cache flushes merge; in turn, each one stalled the writers'
 * copy-on-write reads of blocks not in the page cache for as long as the
 * disk took to flush, 8 times per snapshot):
 *   1. the old segment's seal and the new one's header, the farm's
 *      folders, the meta file (written now), the snapshot's folder, and
 *      the backing files changed since the last checkpoint (mark_job);
 *   2. the sealed segment's move to closed/, and the rename of .new-NAME
 *      to NAME (only if round 1 all went well) with the store's fsync.
 * A crash at any point leaves .new-NAME, removed at mount, or NAME whole.
 * The journal's part runs in every case: it releases the checkpoint lock.
 */
static int create_durable(struct fs *fs, struct create_ctx *x, int r, const char *tmp,
			  const char *meta, size_t meta_len, bool crash)
{
	_cleanup_close_ int mfd = -EBADF;
	struct durable_job d = { fs, x, -1, tmp };
	struct mfs_job round1[] = { { journal_sync_job, &d, 0 },
				    { farm_sync_job, &d, 0 },
				    { meta_sync_job, &d, 0 },
				    { folder_sync_job, &d, 0 },
				    { mark_job, &d, 0 } };
	struct mfs_job round2[] = { { journal_end_job, &d, 0 }, { publish_job, &d, 0 } };
	int r2;

	if (r == 0) {
		mfd = openat(x->s->dirfd, META_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		r = mfd < 0 ? -errno : mfs_write_all(mfd, meta, meta_len);
		d.meta_fd = mfd;
	}
	/* a failed window: only the journal's part */
	r2 = mfs_run_jobs(round1, r == 0 ? ARRAY_SIZE(round1) : 1);
	r = r < 0 ? r : r2;
	if (crash) { /* MFS_FAULT_CRASH_IN_SNAPSHOT=sealed */
		log_warning("fault injection: crashing between a snapshot's two rounds of fsyncs");
		_exit(9);
	}
	r2 = mfs_run_jobs(round2, r == 0 ? ARRAY_SIZE(round2) : 1);
	return r < 0 ? r : r2;
}

/* Runs with every mutation held (fs_lock_quiesce): rotate, build the farm. */
static int create_locked(struct fs *fs, void *arg)
{
	struct create_ctx *x = arg;
	struct fs_snaps *S = fs->snaps;
	struct fs_snap *s = x->s;
	struct fs_farm fm = { .fs = fs, .s = s };
	_cleanup_close_ int src = -EBADF, dst = -EBADF;
	int r;

	/* writes still pending belong to the snapshot: apply them before the
	 * farm links their files (a flush only if some came in since the one
	 * before the window) */
	r = fs_journal_sync(fs, 0);
	if (r < 0)
		return r;
	r = fs_journal_snapshot_begin(fs, s->name, &s->lsn, &x->old);
	if (r < 0)
		return r;
	s->time_ns = mfs_now_ns();
	src = openat(fs->data_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dst = openat(s->tree_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src < 0 || dst < 0)
		return -errno;
	pthread_rwlock_wrlock(&S->rw);
	r = fs_farm_dir(&fm, src, dst, true, 0);
	if (r == 0) {
		struct stat st;
		fs_farm_copy_xattrs(src, dst);
		r = fstat(src, &st) < 0 ? -errno : fs_farm_copy_attrs(s->tree_fd, ".", &st, false);
	}
	if (r == 0)
		fs_snap_insert(S, s);
	else
		fs_cow_drop(S, s);
	pthread_rwlock_unlock(&S->rw);
	log_debug("snapshot '%s': %" PRIu64 " files, %" PRIu64 " folders linked", s->name,
		  fm.files, fm.dirs);
	return r;
}

static int snap_create(struct fs *fs, const char *name, char **ret)
{
	struct fs_snaps *S = fs->snaps;
	struct create_ctx x = { .fs = fs };
	char tmp[FS_SNAP_NAME_MAX + 8], meta[512], uuid[37];
	_cleanup_close_ int tdir = -EBADF;
	struct fs_snap *s;
	struct stat st;
	const char *crash;
	bool listed;
	int r, n;

	if (!fs_snap_name_ok(name))
		return mfs_ctl_err(ret, EINVAL,
				   "bad snapshot name '%s' (1-%d of A-Z a-z 0-9 . _ -, "
				   "not starting with '.')",
				   name, FS_SNAP_NAME_MAX);
	pthread_mutex_lock(&S->mu);
	r = fs_snap_store_open(fs, true);
	if (r < 0) {
		pthread_mutex_unlock(&S->mu);
		return mfs_ctl_errno(ret, -r, "cannot open the snapshot store");
	}
	if (fstatat(S->store_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		pthread_mutex_unlock(&S->mu);
		return mfs_ctl_err(ret, EEXIST, "snapshot '%s' exists", name);
	}
	snprintf(tmp, sizeof(tmp), ".new-%s", name);
	(void)mfs_rm_tree(S->store_fd, tmp);
	s = fs_snap_new(name);
	r = s ? 0 : -ENOMEM;
	if (r == 0 && mkdirat(S->store_fd, tmp, 0700) < 0)
		r = -errno;
	if (r == 0 && (tdir = openat(S->store_fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = -errno;
	if (r == 0 && (mkdirat(tdir, TREE_DIR, 0700) < 0 || mkdirat(tdir, COW_DIR, 0700) < 0))
		r = -errno;
	/* the unfinished snapshot's folders are durable before any link is
	 * made in them: after a power cut the mount finds .new-NAME and
	 * removes it, links and all (none left counted in a lost folder) */
	if (r == 0)
		r = mfs_fsync_dir(tdir, NULL);
	if (r == 0)
		r = mfs_fsync_dir(S->store_fd, NULL);
	if (r == 0) {
		s->dirfd = TAKE_FD(tdir);
		s->tree_fd = openat(s->dirfd, TREE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		s->cow_fd = openat(s->dirfd, COW_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->tree_fd < 0 || s->cow_fd < 0)
			r = -errno;
	}
	x.s = s;
	if (r == 0)
		r = fs_journal_sync(fs, 0); /* pending writes applied outside the window */
	if (r == 0)
		r = fs_lock_quiesce(fs, create_locked, &x, &x.window_ns);
	listed = r == 0;
	crash = x.old ? getenv("MFS_FAULT_CRASH_IN_SNAPSHOT") : NULL;
	if (crash && strcmp(crash, "sealed")) {
		log_warning("fault injection: crashing between segment switch and seal");
		_exit(9);
	}
	if (x.old) {
		fs_journal_uuid(fs, uuid);
		n = mfs_snapmeta_encode(&(struct mfs_snapmeta){ .name = name, .lsn = s->lsn,
								.time_ns = s->time_ns,
								.dataset = uuid },
					meta, sizeof(meta));
		r = create_durable(fs, &x, r, tmp, meta, (size_t)n, crash != NULL);
	}
	if (r < 0 && listed) {
		pthread_rwlock_wrlock(&S->rw);
		for (struct fs_snap **pp = &S->list; *pp; pp = &(*pp)->next)
			if (*pp == s) {
				*pp = s->next;
				atomic_fetch_sub(&S->count, 1);
				break;
			}
		fs_cow_drop(S, s);
		pthread_rwlock_unlock(&S->rw);
	}
	if (r < 0) {
		(void)mfs_rm_tree(S->store_fd, tmp);
		if (s)
			fs_snap_free(s);
		pthread_mutex_unlock(&S->mu);
		return mfs_ctl_errno(ret, -r, "cannot create snapshot '%s'", name);
	}
	pthread_mutex_unlock(&S->mu);
	log_info("snapshot '%s' at LSN %" PRIu64 ", writers held %" PRIu64 " us", name, s->lsn,
		 x.window_ns / 1000);
	return mfs_ctl_ok(ret, "%s %" PRIu64 " %" PRIu64, name, s->lsn, x.window_ns / 1000);
}

static int snap_delete(struct fs *fs, const char *name, char **ret)
{
	struct fs_snaps *S = fs->snaps;
	char tmp[FS_SNAP_NAME_MAX + 8];
	struct fs_snap *s = NULL;
	int r = 0;

	pthread_mutex_lock(&S->mu);
	pthread_rwlock_wrlock(&S->rw);
	for (struct fs_snap **pp = &S->list; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->name, name)) {
			s = *pp;
			*pp = s->next;
			atomic_fetch_sub(&S->count, 1);
			break;
		}
	if (s) {
		fs_cow_drop(S, s);
		s->dead = true;
		s->next = S->dead;
		S->dead = s;
	}
	pthread_rwlock_unlock(&S->rw);
	if (!s) {
		pthread_mutex_unlock(&S->mu);
		return mfs_ctl_err(ret, ENOENT, "no snapshot '%s'", name);
	}
	snprintf(tmp, sizeof(tmp), ".del-%s", name);
	if (renameat(S->store_fd, name, S->store_fd, tmp) < 0)
		r = -errno;
	if (r == 0)
		r = mfs_rm_tree(S->store_fd, tmp);
	if (r == 0)
		r = mfs_fsync_dir(S->store_fd, NULL);
	pthread_mutex_unlock(&S->mu);
	if (r < 0) {
		return mfs_ctl_errno(ret, -r, "snapshot '%s' is gone but its store was not removed",
				     name);
	}
	log_info("snapshot '%s' deleted", name);
	if (fs->se) /* the kernel forgets .mirrorfs/snapshots/NAME now */
		(void)fuse_lowlevel_notify_inval_entry(
			fs->se, (fuse_ino_t)(uintptr_t)fs->vnodes[FS_VK_SNAPS], name, strlen(name));
	return mfs_ctl_ok(ret, NULL);
}

/* The snapshots as a JSON array (malloc'd). */
int fs_snap_json(struct fs *fs, char **ret)
{
	struct fs_snaps *S = fs->snaps;
	size_t cap = 64, len = 0;
	char *out = malloc(cap);

	if (!out)
		return -ENOMEM;
	out[len++] = '[';
	if (S)
		pthread_rwlock_rdlock(&S->rw);
	for (struct fs_snap *s = S ? S->list : NULL; s; s = s->next) {
		char item[FS_SNAP_NAME_MAX + 160];
		int n = snprintf(item, sizeof(item),
				 "%s{\"name\":\"%s\",\"lsn\":%" PRIu64 ",\"time_ns\":%" PRIu64
				 ",\"preserved_bytes\":%" PRIu64 ",\"state\":\"%s\"}",
				 s == S->list ? "" : ",", s->name, s->lsn, s->time_ns,
				 atomic_load(&s->preserved),
				 atomic_load(&s->broken) ? "broken" : "ok");
		if (len + (size_t)n + 2 > cap) {
			char *nn = realloc(out, cap = (cap + (size_t)n) * 2);
			if (!nn) {
				free(out);
				out = NULL;
				break;
			}
			out = nn;
		}
		memcpy(out + len, item, (size_t)n);
		len += (size_t)n;
	}
	if (S)
		pthread_rwlock_unlock(&S->rw);
	if (!out)
		return -ENOMEM;
	out[len++] = ']';
	out[len] = 0;
	*ret = out;
	return 0;
}

int fs_snap_ctl(struct fs *fs, const char *cmd, char **ret)
{
	const char *arg = cmd + strlen("snapshot");

	if (!fs->snaps)
		return mfs_ctl_err(ret, ENOTSUP, "snapshots are unavailable");
	while (*arg == ' ')
		arg++;
	if (!strncmp(arg, "create ", 7)) {
		uint64_t t0 = mfs_mono_ns();
		int r = snap_create(fs, arg + 7, ret);

		atomic_store(&fs->metrics.snap_ns, mfs_mono_ns() - t0);
		return r;
	}
	if (!strncmp(arg, "delete ", 7))
		return snap_delete(fs, arg + 7, ret);
	if (!strcmp(arg, "list")) {
		_cleanup_free_ char *json = NULL;
		if (fs_snap_json(fs, &json) < 0)
			return mfs_ctl_err(ret, ENOMEM, "out of memory");
		return mfs_ctl_ok(ret, "%s", json);
	}
	return mfs_ctl_err(ret, EINVAL, "usage: snapshot create|delete NAME, snapshot list");
}
