/* SPDX-License-Identifier: MIT */
/*
 * snapstore.c - the snapshot store (layout in snap_i.h): open it, load
 * the snapshots at mount (removing unfinished ones, marking broken those
 * that cannot be kept), the list of snapshots, and what the views ask of
 * it (find, names, check, the view nodes' hash).
 */
#include "snap_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

bool fs_snap_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > FS_SNAP_NAME_MAX || name[0] == '.')
		return false;
	for (size_t k = 0; k < n; k++) {
		char c = name[k];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

void fs_snap_free(struct fs_snap *s)
{
	closep(&s->dirfd);
	closep(&s->tree_fd);
	closep(&s->cow_fd);
	free(s);
}

static int snap_open_dirs(struct fs_snaps *S, struct fs_snap *s)
{
	s->dirfd = openat(S->store_fd, s->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->dirfd < 0)
		return -errno;
	s->tree_fd = openat(s->dirfd, TREE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	s->cow_fd = openat(s->dirfd, COW_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return s->tree_fd < 0 || s->cow_fd < 0 ? -errno : 0;
}

struct fs_snap *fs_snap_new(const char *name)
{
	struct fs_snap *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	memcpy(s->name, name, strnlen(name, FS_SNAP_NAME_MAX)); /* names are checked */
	s->dirfd = s->tree_fd = s->cow_fd = -1;
	return s;
}

void fs_snap_insert(struct fs_snaps *S, struct fs_snap *s)
{
	struct fs_snap **pp = &S->list;

	while (*pp && (*pp)->lsn <= s->lsn)
		pp = &(*pp)->next;
	s->next = *pp;
	*pp = s;
	atomic_fetch_add(&S->count, 1);
}

/*
 * A snapshot older than the data folder's last promotion (mirrorctl
 * promote's .mirrorfs/promoted) was in a mirror's data folder in between,
 * where mirrord writes in place into the inodes its tree links: it may hold
 * later rows. rejoin and promote remove such snapshots; this catches a
 * store that came through by another way (an older rejoin).
 */
static int load_one(struct fs_snaps *S, const char *name, uint64_t promoted_ns)
{
	_cleanup_free_ char *meta = NULL;
	struct mfs_snapmeta m;
	struct fs_snap *s;
	struct stat st;
	size_t len;
	int r;

	s = fs_snap_new(name);
	if (!s)
		return -ENOMEM;
	r = snap_open_dirs(S, s);
	if (r == 0)
		r = mfs_read_file(s->dirfd, META_FILE, 4096, &meta, &len);
	if (r == -ENOENT) {
		fs_snap_free(s);
		log_warning("removing unfinished snapshot '%s'", name);
		return mfs_rm_tree(S->store_fd, name);
	}
	if (r == 0)
		r = mfs_snapmeta_decode(meta, &m);
	if (r == 0) {
		s->lsn = m.lsn;
		s->time_ns = m.time_ns;
	}
	if (r == 0)
		r = fs_farm_scan(S, s, s->tree_fd);
	if (r == 0)
		r = fs_cow_load(S, s);
	if (r < 0) {
		log_error_errno(r, "snapshot '%s' cannot be loaded, it is marked broken: %m", name);
		fs_snap_mark_broken(s, r, "cannot load");
	}
	if (fstatat(s->dirfd, BROKEN_FILE, &st, 0) == 0)
		atomic_store(&s->broken, true);
	else if (r == 0 && promoted_ns > s->time_ns)
		fs_snap_mark_broken(s, -ESTALE,
				    "the data folder was a mirror after it was taken (replay wrote "
				    "into the files it shares) and promoted since");
	fs_snap_insert(S, s);
	log_info("snapshot '%s' at LSN %" PRIu64 "%s", name, s->lsn,
		 atomic_load(&s->broken) ? " (broken)" : "");
	return 0;
}

/*
 * Open the store (@create: make it first): JOURNAL_DIR/snapshots when the
 * journal folder is on the data's filesystem (the default, DATADIR/.mirrorfs,
 * is), else DATADIR/.mirrorfs/snapshots - hard links need one filesystem.
 */
int fs_snap_store_open(struct fs *fs, bool create)
{
	struct fs_snaps *S = fs->snaps;
	struct stat jst;
	int base, r = 0;

	if (S->store_fd >= 0)
		return 0;
	if (fstat(fs_journal_dirfd(fs), &jst) == 0 && jst.st_dev == fs->root.dev) {
		base = fcntl(fs_journal_dirfd(fs), F_DUPFD_CLOEXEC, 3);
	} else {
		if (create && mkdirat(fs->data_fd, MFS_CTL_DIR, 0700) < 0 && errno != EEXIST)
			return log_error_errno(-errno, "cannot create '%s/%s': %m", fs->opt.data_dir,
					       MFS_CTL_DIR);
		base = openat(fs->data_fd, MFS_CTL_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (base < 0)
		return errno == ENOENT ? -ENOENT
				       : log_error_errno(-errno, "cannot open '%s/%s': %m",
							 fs->opt.data_dir, MFS_CTL_DIR);
	if (create && mkdirat(base, STORE_DIR, 0700) < 0 && errno != EEXIST)
		r = -errno;
	if (r == 0) {
		S->store_fd = openat(base, STORE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		r = S->store_fd < 0 ? -errno : 0;
	}
	close(base);
	if (r < 0 && r != -ENOENT)
		log_error_errno(r, "cannot open the snapshot store '%s/%s/%s': %m", fs->opt.data_dir,
				MFS_CTL_DIR, STORE_DIR);
	return r;
}

/*
 * time_ns of DATADIR/.mirrorfs/promoted (mirrorctl promote), 0 if none. One
 * that cannot be read says nothing of when: every snapshot is then taken as
 * older than the promotion (kept, marked broken), never served as current.
 */
static uint64_t promoted_time(struct fs *fs)
{
	_cleanup_close_ int cfd = openat(fs->data_fd, MFS_CTL_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct mfs_jpromoted p;
	int r = cfd < 0 ? -errno : mfs_jpromoted_read(cfd, &p);

	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		log_warning_errno(r, "cannot read '%s/" MFS_JDIR_PROMOTED "' (%m): every snapshot "
				  "is taken as older than the promotion", MFS_CTL_DIR);
		return UINT64_MAX;
	}
	return p.time_ns;
}

int fs_snap_open(struct fs *fs)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct fs_snaps *S = calloc(1, sizeof(*S));
	struct dirent *de;
	uint64_t promoted_ns = 0;
	int r = 0;

	if (!S)
		return -ENOMEM;
	fs->snaps = S;
	pthread_mutex_init(&S->mu, NULL);
	pthread_mutex_init(&S->sync_mu, NULL);
	pthread_rwlock_init(&S->rw, NULL);
	atomic_store(&S->reflink, -1);
	S->store_fd = -1;
	S->hash = calloc(N_BUCKETS, sizeof(*S->hash));
	if (!S->hash)
		return -ENOMEM;
	r = fs_snap_store_open(fs, false);
	if (r == -ENOENT)
		return 0; /* no snapshot was ever taken */
	if (r < 0)
		return r;
	promoted_ns = promoted_time(fs);
	r = mfs_dir_open(S->store_fd, ".", &d);
	if (r < 0)
		return r;
	while ((de = mfs_readdir(d))) {
		if (de->d_name[0] == '.') {
			if (!strncmp(de->d_name, ".del-", 5) || !strncmp(de->d_name, ".new-", 5))
				(void)mfs_rm_tree(S->store_fd, de->d_name);
			continue;
		}
		if (!fs_snap_name_ok(de->d_name))
			continue;
		r = load_one(S, de->d_name, promoted_ns);
		if (r < 0)
			return r;
	}
	return 0;
}

void fs_snap_close(struct fs *fs)
{
	struct fs_snaps *S = fs->snaps;

	if (!S)
		return;
	(void)fs_snap_sync(fs);
	if (S->hash) {
		for (struct fs_snap *s = S->list; s; s = s->next)
			fs_cow_drop(S, s);
	}
	while (S->list) {
		struct fs_snap *s = S->list;
		S->list = s->next;
		fs_snap_free(s);
	}
	while (S->dead) {
		struct fs_snap *s = S->dead;
		S->dead = s->next;
		fs_snap_free(s);
	}
	free(S->hash);
	closep(&S->store_fd);
	free(S);
	fs->snaps = NULL;
}

struct fs_snap *fs_snap_find(struct fs *fs, const char *name)
{
	struct fs_snaps *S = fs->snaps;
	struct fs_snap *s;

	if (!S)
		return NULL;
	pthread_rwlock_rdlock(&S->rw);
	for (s = S->list; s; s = s->next)
		if (!strcmp(s->name, name))
			break;
	pthread_rwlock_unlock(&S->rw);
	return s;
}

int fs_snap_names(struct fs *fs, char ***ret, size_t *ret_n)
{
	struct fs_snaps *S = fs->snaps;
	size_t n = 0, cap = S ? atomic_load(&S->count) + 1 : 1;
	char **names = calloc(cap, sizeof(*names));

	if (!names)
		return -ENOMEM;
	if (S) {
		pthread_rwlock_rdlock(&S->rw);
		for (struct fs_snap *s = S->list; s && n < cap; s = s->next)
			names[n++] = strdup(s->name);
		pthread_rwlock_unlock(&S->rw);
	}
	*ret = names;
	*ret_n = n;
	return 0;
}

int fs_snap_tree_fd(struct fs_snap *s)
{
	return s->tree_fd;
}

uint64_t fs_snap_lsn(struct fs_snap *s)
{
	return s->lsn;
}

int fs_snap_check(struct fs_snap *s)
{
	if (s->dead)
		return -ESTALE;
	return atomic_load(&s->broken) ? -EIO : 0;
}

