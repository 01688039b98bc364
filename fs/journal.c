/* SPDX-License-Identifier: MIT */
/*
 * journal.c - the journal of a mounted data set: its folder, the open
 * segment, checkpoints, rotation and crash recovery.
 *
 * Journal folder (-o journal_dir=DIR, default DATADIR/.mirrorfs):
 *
 *   lock                 flock()ed while mounted: one mirrorfs per data set
 *   state                "dataset=UUID\ncheckpoint=N\nlast=N\nsegment=N\n",
 *                        replaced atomically (mfs_replace_file): backing
 *                        files are durable up to LSN checkpoint; last is the
 *                        last LSN known at that time; segment the open
 *                        segment's sequence number
 *   open/open-SEQ.mfsj   the one open segment (no trailer yet), mode 0600
 *   journal/FIRST-LAST.mfsj  closed segments (mfs_seg_name), mode 0600; a
 *                        segment is sealed in open/ and renamed here, so it
 *                        appears whole and at once
 *
 * Write-ahead order. A mutation that rarely fails (write, truncate, the
 * namespace operations after their checks) is appended to the journal
 * first and applied to the backing file second, under fs->ns_lock (shared
 * for data, exclusive for the namespace) and the inode's lock: a kill -9
 * between the two leaves a record that recovery applies, never an applied
 * change without a record. ENOSPC on the journal fails the mutation before
 * anything is touched. Operations whose failure is common and harmless
 * (xattrs, chmod/chown/utimens, fallocate) are applied first and appended
 * after success. An append that fails after an apply, or an apply that
 * fails after its append and cannot be compensated, puts the file system
 * in the failed state: every later mutation gets EIO.
 *
 * Checkpoint: under fs->ns_lock held exclusively (a barrier: every record
 * appended so far is applied) read the last LSN L; syncfs(DATADIR); append
 * MFS_REC_CHECKPOINT(L); make the journal durable; write state. Recovery on
 * mount replays every record after the state's checkpoint into DATADIR,
 * from the closed segments and the open one (whose torn tail is cut).
 */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

#define STATE_FILE "state"
#define LOCK_FILE "lock"
#define OPEN_DIR "open"
#define CLOSED_DIR "journal"
#define NS_PER_S 1000000000ull
/* Every this many bytes appended, the timer thread starts writing the open
 * segment out (mfs_segw_writeback): a snapshot's or a checkpoint's sync
 * then flushes a little, not a burst of everything since the last one. */
#define WRITEBEHIND_CHUNK (2ull << 20)

struct fs_journal {
	int dirfd;
	int open_dirfd;
	int closed_dirfd;
	int lock_fd;
	char *path;
	uint8_t uuid[16];
	char uuid_text[37];

	pthread_rwlock_t seg_lock; /* appends/syncs shared, segment switch exclusive */
	struct mfs_segw *w;        /* protected by seg_lock; NULL after a fatal error */
	char open_name[256];       /* protected by seg_lock */
	uint64_t seg_no;           /* protected by seg_lock */
	_Atomic uint64_t seg_bytes; /* appended to the open segment (approximate) */

	pthread_mutex_t ckpt_lock; /* serialises checkpoints, rotations, trims */
	_Atomic uint64_t checkpoint_lsn;
	uint64_t last_rotate_ns; /* CLOCK_MONOTONIC; ckpt_lock */
	uint64_t last_ckpt_ns;   /* ckpt_lock */

	/* intents (see "In-flight records" below) */
	_Atomic uint64_t *slots; /* mmap of INFLIGHT_FILE after its header */
	uint8_t *imap;
	size_t imap_len;
	pthread_mutex_t ilock;  /* free slots */
	uint32_t *ifree;
	size_t n_ifree;
	pthread_key_t ikey;
	bool ikey_ok;

	pthread_mutex_t tlock; /* lock order: ckpt_lock -> ns_lock -> tlock */
	pthread_cond_t tcond;
	pthread_t timer;
	bool timer_started;
	bool stop;        /* tlock */
	bool want_rotate; /* tlock */
	bool want_wb;     /* tlock: write-behind of the open segment is due */
};

void fs_fail(struct fs *fs, int r, const char *what)
{
	int expected = 0;

	if (atomic_compare_exchange_strong(&fs->failed, &expected, r ? r : -EIO))
		log_error_errno(r, "FATAL: %s: %m; the journal and the backing files may disagree, "
				   "every further change fails with EIO; unmount and mount again to "
				   "recover", what);
}

/* ================================================================ state */

struct jstate {
	uint64_t checkpoint, last, segment;
	bool have_uuid;
	uint8_t uuid[16];
};

static int state_read(struct fs_journal *j, struct jstate *st)
{
	_cleanup_free_ char *text = NULL;
	char *save = NULL;
	int r;

	memset(st, 0, sizeof(*st));
	r = mfs_read_file(j->dirfd, STATE_FILE, 4096, &text, NULL);
	if (r < 0)
		return r;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq++ = 0;
		if (!strcmp(line, "dataset")) {
			if (mfs_uuid_parse(eq, st->uuid) < 0)
				return -EBADMSG;
			st->have_uuid = true;
		} else if (!strcmp(line, "checkpoint")) {
			st->checkpoint = strtoull(eq, NULL, 10);
		} else if (!strcmp(line, "last")) {
			st->last = strtoull(eq, NULL, 10);
		} else if (!strcmp(line, "segment")) {
			st->segment = strtoull(eq, NULL, 10);
		}
	}
	return st->have_uuid ? 0 : -EBADMSG;
}

static int state_write(struct fs_journal *j, uint64_t last)
{
	char buf[256];
	int len;

	len = snprintf(buf, sizeof(buf),
		       "dataset=%s\ncheckpoint=%" PRIu64 "\nlast=%" PRIu64 "\nsegment=%" PRIu64 "\n",
		       j->uuid_text, atomic_load(&j->checkpoint_lsn), last, j->seg_no);
	return mfs_replace_file(j->dirfd, STATE_FILE, buf, (size_t)len, 0600);
}

/* ================================================================ writer */

static void open_name(uint64_t seg_no, char out[64])
{
	snprintf(out, 64, "open-%020" PRIu64 MFS_SEG_SUFFIX, seg_no);
}

static int new_segment(struct fs_journal *j, uint64_t seg_no, uint64_t first_lsn)
{
	char name[64];
	int r;

	open_name(seg_no, name);
	r = mfs_segw_create(j->open_dirfd, name, j->uuid, seg_no, first_lsn, &j->w);
	if (r < 0)
		return r;
	snprintf(j->open_name, sizeof(j->open_name), "%s", name);
	j->seg_no = seg_no;
	atomic_store(&j->seg_bytes, 0);
	return 0;
}

static uint64_t next_lsn_locked(struct fs_journal *j)
{
	struct mfs_segw_stats s;

	if (!j->w)
		return 0;
	mfs_segw_get_stats(j->w, &s);
	return s.next_lsn;
}

/*
 * In-flight records. A mutation journaled before it is applied (write,
 * truncate, the namespace operations) publishes its LSN in the calling
 * thread's slot of INFLIGHT_FILE (mmap'ed, so it survives a kill -9 in the
 * page cache) as soon as the LSN is assigned, and clears it once applied.
 * After a crash of mirrorfs alone (same boot: the backing files' page
 * cache survived, so every applied change is there), recovery re-applies
 * only the records still in a slot. Re-applying every record after the
 * checkpoint on top of the final state would not be idempotent as a
 * sequence (a write re-applied after a later rename over its file lands in
 * the wrong file). After a reboot, or without a valid intent file, every
 * record after the checkpoint is replayed.
 */
#define INFLIGHT_FILE "inflight"
#define INFLIGHT_MAGIC "MFSINFL1"
#define INFLIGHT_HDR 64
#define INFLIGHT_SLOTS 4096
#define INFLIGHT_UNTRACKED 1u /* header flag: a thread had no slot */

static int journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn,
			  _Atomic uint64_t *slot);
static __thread _Atomic uint64_t *tls_slot;
static __thread struct fs_journal *tls_slot_j;

static void slot_release(void *arg)
{
	struct fs_journal *j = tls_slot_j;
	uint32_t idx = (uint32_t)(uintptr_t)arg - 1;

	if (!j || !j->slots)
		return;
	atomic_store(&j->slots[idx], 0);
	pthread_mutex_lock(&j->ilock);
	j->ifree[j->n_ifree++] = idx;
	pthread_mutex_unlock(&j->ilock);
}

static _Atomic uint64_t *my_slot(struct fs_journal *j)
{
	if (tls_slot && tls_slot_j == j)
		return tls_slot;
	if (!j->slots)
		return NULL;
	pthread_mutex_lock(&j->ilock);
	if (j->n_ifree) {
		uint32_t idx = j->ifree[--j->n_ifree];
		tls_slot = &j->slots[idx];
		tls_slot_j = j;
		if (j->ikey_ok)
			(void)pthread_setspecific(j->ikey, (void *)(uintptr_t)(idx + 1));
	} else if (!(j->imap[8] & INFLIGHT_UNTRACKED)) {
		j->imap[8] |= INFLIGHT_UNTRACKED; /* recovery must replay everything */
		log_warning("more than %d threads mutate at once: crash recovery will replay "
			    "every record after the checkpoint",
			    INFLIGHT_SLOTS);
	}
	pthread_mutex_unlock(&j->ilock);
	return tls_slot_j == j ? tls_slot : NULL;
}

void fs_journal_intent_done(struct fs *fs)
{
	if (tls_slot && tls_slot_j == fs->j)
		atomic_store(tls_slot, 0);
}

static int boot_id(char out[37])
{
	_cleanup_free_ char *b = NULL;
	size_t len;
	int r = mfs_read_file(AT_FDCWD, "/proc/sys/kernel/random/boot_id", 64, &b, &len);

	if (r < 0 || len < 36)
		return r < 0 ? r : -EBADMSG;
	memcpy(out, b, 36);
	out[36] = 0;
	return 0;
}

/*
 * Map the intent file. *ret_set gets the LSNs of the records in flight
 * when the last mount ended (sorted, malloc'd) and returns 1 if that list
 * can be trusted (same boot, file valid, nothing untracked), else 0.
 */
static int intent_open(struct fs *fs, struct fs_journal *j, uint64_t **ret_set, size_t *ret_n)
{
	char now[37], then[37];
	struct stat st;
	size_t n = 0;
	uint64_t *set;
	int fd, trusted;

	*ret_set = NULL;
	*ret_n = 0;
	j->imap_len = INFLIGHT_HDR + INFLIGHT_SLOTS * sizeof(uint64_t);
	fd = openat(j->dirfd, INFLIGHT_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s/" INFLIGHT_FILE "': %m", j->path);
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != j->imap_len) {
		/* written, not sparse: a store into the mapping must never need a
		 * block the filesystem does not have (that would be a SIGBUS) */
		void *zero = calloc(1, j->imap_len);
		int r = zero ? mfs_pwrite_all(fd, zero, j->imap_len, 0) : -ENOMEM;
		free(zero);
		if (r == 0 && fsync(fd) < 0)
			r = -errno;
		if (r < 0) {
			close(fd);
			return log_error_errno(r, "journal folder '%s' has no room for '" INFLIGHT_FILE
						  "': %m",
					       j->path);
		}
	}
	j->imap = mmap(NULL, j->imap_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (j->imap == MAP_FAILED) {
		j->imap = NULL;
		return log_error_errno(-errno, "cannot map '%s/" INFLIGHT_FILE "': %m", j->path);
	}
	j->slots = (_Atomic uint64_t *)(void *)(j->imap + INFLIGHT_HDR);
	memcpy(then, j->imap + 16, 36);
	then[36] = 0;
	trusted = boot_id(now) == 0 && !memcmp(j->imap, INFLIGHT_MAGIC, 8) &&
		  !(j->imap[8] & INFLIGHT_UNTRACKED) && !strcmp(now, then) &&
		  !fs->opt.skip_backing_sync;
	set = calloc(INFLIGHT_SLOTS, sizeof(*set));
	if (!set)
		return -ENOMEM;
	for (size_t k = 0; trusted && k < INFLIGHT_SLOTS; k++) {
		uint64_t v = atomic_load(&j->slots[k]);
		if (v)
			set[n++] = v;
	}
	for (size_t a = 1; a < n; a++) /* insertion sort: a handful of entries */
		for (size_t b = a; b > 0 && set[b - 1] > set[b]; b--) {
			uint64_t t = set[b];
			set[b] = set[b - 1];
			set[b - 1] = t;
		}
	*ret_set = set;
	*ret_n = n;
	return trusted;
}

/* After recovery: a fresh header for this boot, every slot free. */
static int intent_reset(struct fs_journal *j)
{
	char now[37] = "";

	(void)boot_id(now);
	for (size_t k = 0; k < INFLIGHT_SLOTS; k++)
		atomic_store(&j->slots[k], 0);
	memset(j->imap, 0, INFLIGHT_HDR);
	memcpy(j->imap, INFLIGHT_MAGIC, 8);
	memcpy(j->imap + 16, now, 36);
	j->ifree = calloc(INFLIGHT_SLOTS, sizeof(*j->ifree));
	if (!j->ifree)
		return -ENOMEM;
	for (uint32_t k = 0; k < INFLIGHT_SLOTS; k++)
		j->ifree[j->n_ifree++] = INFLIGHT_SLOTS - 1 - k;
	j->ikey_ok = pthread_key_create(&j->ikey, slot_release) == 0;
	return msync(j->imap, j->imap_len, MS_SYNC) < 0 ? -errno : 0;
}

int fs_journal_append_intent(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	return journal_append(fs, rec, ret_lsn, my_slot(fs->j));
}

int fs_journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	return journal_append(fs, rec, ret_lsn, NULL);
}

/* Ask the timer thread for the work behind @flag (a tlock field). */
static void timer_want(struct fs_journal *j, bool *flag)
{
	pthread_mutex_lock(&j->tlock);
	if (!*flag) {
		*flag = true;
		pthread_cond_signal(&j->tcond);
	}
	pthread_mutex_unlock(&j->tlock);
}

static int journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn,
			  _Atomic uint64_t *slot)
{
	struct fs_journal *j = fs->j;
	uint64_t lsn = 0, bytes, add;
	int r;

	r = fs_check_failed(fs);
	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&j->seg_lock);
	r = j->w ? mfs_segw_append_publish(j->w, rec, &lsn, slot) : -EIO;
	pthread_rwlock_unlock(&j->seg_lock);
	if (r < 0 && slot)
		atomic_store(slot, 0); /* nothing written: its LSN goes to the next record */
	if (r == -ENOSPC || r == -EDQUOT) {
		log_warning("journal full: a change was refused with ENOSPC");
		return r;
	}
	if (r < 0) {
		fs_fail(fs, r, "cannot append to the journal");
		return -EIO;
	}
	add = mfs_rec_head_size(rec) + rec->data_len;
	bytes = atomic_fetch_add(&j->seg_bytes, add) + add;
	if (fs->opt.rotate_size && bytes >= fs->opt.rotate_size)
		timer_want(j, &j->want_rotate);
	else if ((bytes - add) / WRITEBEHIND_CHUNK != bytes / WRITEBEHIND_CHUNK)
		timer_want(j, &j->want_wb);
	if (ret_lsn)
		*ret_lsn = lsn;
	return 0;
}

int fs_journal_sync(struct fs *fs, uint64_t lsn)
{
	struct fs_journal *j = fs->j;
	int r;

	pthread_rwlock_rdlock(&j->seg_lock);
	if (!j->w) {
		r = -EIO;
	} else {
		if (lsn == 0 || lsn >= next_lsn_locked(j))
			lsn = next_lsn_locked(j) - 1;
		r = mfs_segw_sync(j->w, lsn);
	}
	pthread_rwlock_unlock(&j->seg_lock);
	if (r < 0 && r != -EIO)
		fs_fail(fs, r, "cannot sync the journal");
	return r < 0 ? -EIO : 0;
}

/* ================================================================ checkpoint */

static uint64_t last_lsn(struct fs_journal *j)
{
	uint64_t n;

	pthread_rwlock_rdlock(&j->seg_lock);
	n = next_lsn_locked(j);
	pthread_rwlock_unlock(&j->seg_lock);
	return n ? n - 1 : 0;
}

static int checkpoint_locked(struct fs *fs, uint64_t *ret_lsn)
{
	struct fs_journal *j = fs->j;
	struct mfs_rec *rec;
	uint64_t l, m;
	int r;

	if (fs->opt.ckpt_delay_ms) /* with ckpt_lock held: see timer_main() */
		usleep(fs->opt.ckpt_delay_ms * 1000u);
	pthread_rwlock_wrlock(&fs->ns_lock); /* barrier: all appended records are applied */
	l = last_lsn(j);
	pthread_rwlock_unlock(&fs->ns_lock);
	j->last_ckpt_ns = mfs_mono_ns();
	if (l <= atomic_load(&j->checkpoint_lsn)) {
		if (ret_lsn)
			*ret_lsn = atomic_load(&j->checkpoint_lsn);
		return 0;
	}
	if (!fs->opt.skip_backing_sync && syncfs(fs->sync_fd) < 0)
		return log_error_errno(-errno, "cannot sync the backing files: %m");
	rec = fs_rec_new(MFS_REC_CHECKPOINT);
	if (!rec)
		return -ENOMEM;
	rec->length = l;
	r = fs_journal_append(fs, rec, &m);
	free(rec);
	if (r < 0)
		return r;
	r = fs_journal_sync(fs, m);
	if (r < 0)
		return r;
	atomic_store(&j->checkpoint_lsn, l);
	r = state_write(j, m);
	if (r < 0)
		return log_error_errno(r, "cannot write the journal state: %m");
	log_debug("checkpoint at LSN %" PRIu64, l);
	if (ret_lsn)
		*ret_lsn = l;
	return 0;
}

int fs_journal_checkpoint(struct fs *fs, uint64_t *ret_lsn)
{
	int r;

	pthread_mutex_lock(&fs->j->ckpt_lock);
	r = checkpoint_locked(fs, ret_lsn);
	pthread_mutex_unlock(&fs->j->ckpt_lock);
	return r;
}

/* ================================================================ rotation */

/* Seal a left-over open segment that already has a trailer into journal/. */
static int move_sealed(struct fs_journal *j, const char *name)
{
	_cleanup_close_ int fd = openat(j->open_dirfd, name, O_RDONLY | O_CLOEXEC);
	struct mfs_seg_info info;
	char closed[MFS_SEG_NAME_LEN + 1];
	int r;

	if (fd < 0)
		return -errno;
	r = mfs_seg_scan_fd(fd, j->uuid, NULL, NULL, &info);
	if (r < 0)
		return r;
	if (info.verdict != MFS_SEG_OK)
		return -EBADMSG;
	mfs_seg_name(info.first_lsn, info.last_lsn, closed);
	if (renameat2(j->open_dirfd, name, j->closed_dirfd, closed, RENAME_NOREPLACE) < 0)
		return -errno;
	log_info("sealed segment '%s' moved to '%s'", name, closed);
	(void)mfs_fsync_dir(j->closed_dirfd, NULL);
	return mfs_fsync_dir(j->open_dirfd, NULL);
}

static int rotate_locked(struct fs *fs, char ret_name[MFS_SEG_NAME_LEN + 1], bool ckpt)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s;
	char old[256];
	int r;

	ret_name[0] = 0;
	pthread_rwlock_rdlock(&j->seg_lock);
	if (j->w)
		mfs_segw_get_stats(j->w, &s);
	pthread_rwlock_unlock(&j->seg_lock);
	if (!j->w)
		return -EIO;
	j->last_rotate_ns = mfs_mono_ns();
	if (s.records == 0)
		return 0;
	r = ckpt ? checkpoint_locked(fs, NULL) : 0;
	if (r < 0)
		return r;

	pthread_rwlock_wrlock(&j->seg_lock);
	mfs_segw_get_stats(j->w, &s);
	snprintf(old, sizeof(old), "%s", j->open_name);
	r = mfs_segw_close(j->w, j->closed_dirfd, ret_name);
	j->w = NULL;
	if (r < 0) {
		log_error_errno(r, "cannot close segment '%s': %m", old);
		if (mfs_segw_reopen(j->open_dirfd, old, j->uuid, &j->w, NULL) == -EALREADY)
			(void)move_sealed(j, old);
	}
	if (!j->w) {
		int r2 = new_segment(j, s.seg_no + 1, s.next_lsn);
		if (r2 < 0)
			fs_fail(fs, r2, "cannot create a new journal segment");
		r = r < 0 ? r : r2;
	}
	pthread_rwlock_unlock(&j->seg_lock);
	if (r == 0) {
		(void)state_write(j, s.next_lsn - 1);
		log_info("closed segment '%s'", ret_name);
	}
	return r;
}

int fs_journal_rotate(struct fs *fs, char ret_name[MFS_SEG_NAME_LEN + 1])
{
	int r;

	pthread_mutex_lock(&fs->j->ckpt_lock);
	r = rotate_locked(fs, ret_name, true);
	pthread_mutex_unlock(&fs->j->ckpt_lock);
	return r;
}

int fs_journal_snapshot_begin(struct fs *fs, const char *name, uint64_t *ret_lsn,
			      struct mfs_segw **ret_old)
{
	struct fs_journal *j = fs->j;
	struct mfs_rec *rec = fs_rec_new(MFS_REC_SNAPSHOT);
	struct mfs_segw_stats s;
	struct mfs_segw *old;
	uint64_t lsn;
	char nname[64];
	int r;

	if (!rec)
		return -ENOMEM;
	snprintf(rec->path2, sizeof(rec->path2), "%s", name);
	pthread_mutex_lock(&j->ckpt_lock);
	r = fs_journal_append(fs, rec, &lsn);
	free(rec);
	if (r < 0) {
		pthread_mutex_unlock(&j->ckpt_lock);
		return r;
	}
	pthread_rwlock_wrlock(&j->seg_lock);
	old = j->w;
	mfs_segw_get_stats(old, &s);
	open_name(s.seg_no + 1, nname);
	r = mfs_segw_create_flags(j->open_dirfd, nname, j->uuid, s.seg_no + 1, s.next_lsn,
				  MFS_SEGW_LAZY, &j->w);
	if (r < 0) {
		j->w = old;
		pthread_rwlock_unlock(&j->seg_lock);
		pthread_mutex_unlock(&j->ckpt_lock);
		return r;
	}
	snprintf(j->open_name, sizeof(j->open_name), "%s", nname);
	j->seg_no = s.seg_no + 1;
	atomic_store(&j->seg_bytes, 0);
	j->last_rotate_ns = mfs_mono_ns();
	pthread_rwlock_unlock(&j->seg_lock);
	*ret_lsn = s.next_lsn - 1;
	*ret_old = old;
	return 0; /* ckpt_lock stays held until fs_journal_snapshot_end() */
}

struct seal_job {
	struct fs_journal *j;
	struct mfs_segw *old;
};

static int seal_old_job(void *arg)
{
	return mfs_segw_seal(((struct seal_job *)arg)->old);
}

static int establish_new_job(void *arg)
{
	struct fs_journal *j = ((struct seal_job *)arg)->j;
	int r;

	pthread_rwlock_rdlock(&j->seg_lock);
	r = j->w ? mfs_segw_establish(j->w) : -EIO;
	pthread_rwlock_unlock(&j->seg_lock);
	return r;
}

int fs_journal_snapshot_sync(struct fs *fs, struct mfs_segw *old)
{
	struct seal_job x = { fs->j, old };
	struct mfs_job jobs[] = { { seal_old_job, &x, 0 }, { establish_new_job, &x, 0 } };

	/* The old segment's trailer and the new one's header at once (their
	 * flushes merge). Whichever reaches the disk first, a crash leaves
	 * two open segments, which recovery joins, or sets the newer aside if
	 * the older lost its tail (none of its records was reported durable:
	 * writers' syncs wait for the establishment). */
	(void)mfs_run_jobs(jobs, ARRAY_SIZE(jobs));
	if (jobs[0].r < 0)
		fs_fail(fs, jobs[0].r, "cannot seal the segment before a snapshot");
	if (jobs[1].r < 0)
		fs_fail(fs, jobs[1].r, "cannot make the new journal segment durable");
	return jobs[0].r < 0 ? jobs[0].r : jobs[1].r;
}

int fs_journal_snapshot_end(struct fs *fs, struct mfs_segw *old)
{
	struct fs_journal *j = fs->j;
	char closed[MFS_SEG_NAME_LEN + 1];
	int r;

	/* After fs_journal_snapshot_sync(): move the sealed segment to
	 * closed/ (a crash before that leaves a sealed one in open/, which
	 * recovery moves), fsyncing both folders; the fsync of open/ also
	 * makes the new segment's entry durable. */
	r = mfs_segw_close(old, j->closed_dirfd, closed);
	if (r < 0) {
		fs_fail(fs, r, "cannot close the segment before a snapshot");
		(void)mfs_fsync_dir(j->open_dirfd, NULL); /* the new segment's entry */
	}
	/* No state_write(): its "segment" and "last" only matter to a mount
	 * that finds no open segment, and the new one is durable now. */
	if (r == 0)
		log_info("closed segment '%s'", closed);
	pthread_mutex_unlock(&j->ckpt_lock);
	return r;
}

void fs_journal_uuid(struct fs *fs, char out[37])
{
	memcpy(out, fs->j->uuid_text, 37);
}

int fs_journal_trim(struct fs *fs, const char *name)
{
	struct fs_journal *j = fs->j;
	uint64_t first, last;
	int r = 0;

	if (!mfs_seg_name_parse(name, &first, &last))
		return -ENOENT;
	pthread_mutex_lock(&j->ckpt_lock);
	if (last > atomic_load(&j->checkpoint_lsn))
		r = checkpoint_locked(fs, NULL); /* recovery must not need it any more */
	if (r == 0 && unlinkat(j->closed_dirfd, name, 0) < 0)
		r = -errno;
	pthread_mutex_unlock(&j->ckpt_lock);
	if (r == 0) {
		(void)mfs_fsync_dir(j->closed_dirfd, NULL);
		log_debug("trimmed segment '%s'", name);
	}
	return r;
}

/* ================================================================ timer */

static void timer_tick(struct fs *fs, bool want_rotate)
{
	struct fs_journal *j = fs->j;
	char name[MFS_SEG_NAME_LEN + 1];
	uint64_t now = mfs_mono_ns();
	bool rotate = want_rotate;

	pthread_mutex_lock(&j->ckpt_lock);
	if (fs->opt.rotate_interval &&
	    now - j->last_rotate_ns >= fs->opt.rotate_interval * NS_PER_S)
		rotate = true;
	if (rotate)
		(void)rotate_locked(fs, name, true);
	else if (fs->opt.checkpoint_interval &&
		 now - j->last_ckpt_ns >= fs->opt.checkpoint_interval * NS_PER_S)
		(void)checkpoint_locked(fs, NULL);
	pthread_mutex_unlock(&j->ckpt_lock);
}

/* How long the timer may sleep: until the next rotation or checkpoint is
 * due (a fixed 1 s tick would let rotate_interval=1 close segments every
 * 2 s), at most 1 s, at least 5 ms. */
static uint64_t timer_wait_ns(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	uint64_t now = mfs_mono_ns(), due = now + NS_PER_S;

	pthread_mutex_lock(&j->ckpt_lock);
	if (fs->opt.rotate_interval)
		due = MFS_MIN(due, j->last_rotate_ns + fs->opt.rotate_interval * NS_PER_S);
	if (fs->opt.checkpoint_interval)
		due = MFS_MIN(due, j->last_ckpt_ns + fs->opt.checkpoint_interval * NS_PER_S);
	pthread_mutex_unlock(&j->ckpt_lock);
	return due > now + 5000000ull ? due - now : 5000000ull;
}

static void *timer_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_journal *j = fs->j;

	for (;;) {
		struct timespec ts;
		/* Not under tlock: timer_wait_ns() takes ckpt_lock, and the
		 * lock order is ckpt_lock -> ns_lock (a checkpoint's barrier)
		 * -> tlock (journal_append(), in a mutation that holds ns_lock).
		 * Taking ckpt_lock under tlock deadlocked a writer, a segment
		 * trim and this thread. */
		uint64_t wait = timer_wait_ns(fs);
		bool want, wb;
		int w = 0;

		pthread_mutex_lock(&j->tlock);
		if (j->stop)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(wait / NS_PER_S);
		ts.tv_nsec += (long)(wait % NS_PER_S);
		if (ts.tv_nsec >= (long)NS_PER_S) {
			ts.tv_sec++;
			ts.tv_nsec -= (long)NS_PER_S;
		}
		if (!j->want_rotate && !j->want_wb)
			w = pthread_cond_timedwait(&j->tcond, &j->tlock, &ts);
		if (j->stop)
			break;
		want = j->want_rotate;
		wb = j->want_wb;
		j->want_rotate = j->want_wb = false;
		pthread_mutex_unlock(&j->tlock);
		if (wb && !atomic_load(&fs->failed)) {
			pthread_rwlock_rdlock(&j->seg_lock);
			if (j->w)
				(void)mfs_segw_writeback(j->w);
			pthread_rwlock_unlock(&j->seg_lock);
		}
		if ((want || w == ETIMEDOUT) && !atomic_load(&fs->failed))
			timer_tick(fs, want);
	}
	pthread_mutex_unlock(&j->tlock);
	return NULL;
}

int fs_journal_start(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	int r;

	j->last_rotate_ns = j->last_ckpt_ns = mfs_mono_ns();
	r = pthread_create(&j->timer, NULL, timer_main, fs);
	if (r)
		return log_error_errno(-r, "cannot start the timer thread: %m");
	j->timer_started = true;
	return 0;
}

/* ================================================================ recovery */

struct replay_ctx {
	struct mfs_replay *engine;
	uint64_t after;
	uint64_t applied, failed, last;
	const uint64_t *only; /* sorted; with n_only: apply just these LSNs */
	size_t n_only;
	bool filter;
};

static bool wanted(const struct replay_ctx *c, uint64_t lsn)
{
	size_t lo = 0, hi = c->n_only;

	if (!c->filter)
		return true;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c->only[mid] == lsn)
			return true;
		if (c->only[mid] < lsn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static int replay_one(const struct mfs_rec *rec, void *arg)
{
	struct replay_ctx *c = arg;
	int r;

	if (rec->lsn <= c->after)
		return 0;
	c->last = rec->lsn;
	if (mfs_rec_type_is_marker(rec->type) || !wanted(c, rec->lsn))
		return 0;
	r = mfs_replay_apply(c->engine, rec);
	if (r < 0) {
		char line[512];
		mfs_rec_format(rec, line, sizeof(line));
		log_warning_errno(r, "recovery: LSN %" PRIu64 " (%s) failed, ignoring: %m",
				  rec->lsn, line);
		c->failed++;
	} else {
		c->applied++;
	}
	return 0;
}

static int replay_file(struct fs_journal *j, int dirfd, const char *name, bool closed,
		       struct replay_ctx *c)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct mfs_seg_info info;
	char verdict[256];
	int r;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open segment '%s': %m", name);
	r = mfs_seg_scan_fd(fd, j->uuid, replay_one, c, &info);
	if (r < 0)
		return log_error_errno(r, "cannot read segment '%s': %m", name);
	if (info.verdict != MFS_SEG_OK && (closed || info.verdict != MFS_SEG_TORN)) {
		mfs_seg_verdict_format(&info, verdict, sizeof(verdict));
		return log_error_errno(-EBADMSG, "segment '%s' is damaged: %s", name, verdict);
	}
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Closed segment names, sorted (apply order). */
static int list_closed(struct fs_journal *j, char ***ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd;

	fd = openat(j->closed_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		uint64_t a, b;
		if (!mfs_seg_name_parse(de->d_name, &a, &b))
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*names));
			if (!nn)
				goto out_nomem;
			names = nn;
		}
		names[n] = strdup(de->d_name);
		if (!names[n])
			goto out_nomem;
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	*ret = names;
	*ret_n = n;
	return 0;
out_nomem:
	while (n)
		free(names[--n]);
	free(names);
	return -ENOMEM;
}

static void free_names(char **names, size_t n)
{
	while (n)
		free(names[--n]);
	free(names);
}

static int replay_tail(struct fs *fs, uint64_t after, const uint64_t *only, size_t n_only,
		       bool filter, uint64_t *ret_last)
{
	struct fs_journal *j = fs->j;
	struct replay_ctx c = { .after = after, .only = only, .n_only = n_only, .filter = filter };
	char **names = NULL;
	size_t n = 0;
	int r;

	r = list_closed(j, &names, &n);
	if (r < 0)
		return log_error_errno(r, "cannot list '%s/" CLOSED_DIR "': %m", j->path);
	r = mfs_replay_new(fs->sync_fd, MFS_REPLAY_F_NO_SYNC, &c.engine);
	if (r < 0) {
		free_names(names, n);
		return log_error_errno(r, "cannot start the replay engine: %m");
	}
	for (size_t k = 0; k < n && r == 0; k++) {
		uint64_t first, last;
		(void)mfs_seg_name_parse(names[k], &first, &last);
		if (last > after)
			r = replay_file(j, j->closed_dirfd, names[k], true, &c);
	}
	if (r == 0 && j->w)
		r = replay_file(j, j->open_dirfd, j->open_name, false, &c);
	if (r == 0) {
		int r2 = mfs_replay_finish(c.engine);
		if (r2 < 0)
			log_warning_errno(r2, "recovery: replay finished with an error, ignoring: %m");
	}
	mfs_replay_free(c.engine);
	free_names(names, n);
	if (r == 0 && (c.applied || c.failed))
		log_notice("recovery: replayed %" PRIu64 " records after checkpoint LSN %" PRIu64
			   " up to LSN %" PRIu64 " (%" PRIu64 " failed)%s",
			   c.applied, after, c.last, c.failed,
			   filter ? ", only those in flight at the crash" : "");
	*ret_last = c.last;
	return r;
}

/* The data-set UUID and sequence number from a segment's header. */
static int peek_header(int dirfd, const char *name, uint8_t uuid[16], uint64_t *ret_seg_no)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct mfs_segr *rd = NULL;
	const struct mfs_seg_info *info;
	int r;

	if (fd < 0)
		return -errno;
	r = mfs_segr_open_fd(fd, NULL, &rd);
	if (r < 0)
		return r;
	info = mfs_segr_info(rd);
	r = info->header_valid ? 0 : -EBADMSG;
	if (r == 0) {
		memcpy(uuid, info->uuid, 16);
		*ret_seg_no = info->seg_no;
	}
	mfs_segr_free(rd);
	return r;
}

struct open_seg {
	uint64_t seg_no;
	char name[256];
};

static int open_seg_cmp(const void *a, const void *b)
{
	const struct open_seg *x = a, *y = b;

	return x->seg_no < y->seg_no ? -1 : x->seg_no > y->seg_no;
}

/*
 * Find the open segment in open/ and continue it (cutting a torn tail).
 * Two open segments are left by a crash right after a snapshot switched
 * segments (fs_journal_snapshot_begin): the older is sealed into journal/
 * up to its last valid record, and the newer continues it - unless a torn
 * tail of the older left a gap, in which case the newer (whose records
 * were never reported durable: syncs wait for the older's seal) is set
 * aside as lost-NAME.
 */
static int recover_open(struct fs_journal *j, bool have_uuid)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct open_seg segs[8];
	struct dirent *de;
	size_t n = 0;
	uint64_t prev_last = 0;
	int fd, r = 0;

	fd = openat(j->open_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		uint64_t seg_no;
		uint8_t uuid[16];

		if (strncmp(de->d_name, "open-", 5) || !strstr(de->d_name, MFS_SEG_SUFFIX))
			continue;
		if (peek_header(j->open_dirfd, de->d_name, uuid, &seg_no) < 0) {
			log_notice("removing '%s/" OPEN_DIR "/%s': its header was never completed",
				   j->path, de->d_name);
			(void)unlinkat(j->open_dirfd, de->d_name, 0);
			continue;
		}
		if (!have_uuid) {
			memcpy(j->uuid, uuid, 16);
			have_uuid = true;
		}
		if (n == ARRAY_SIZE(segs) || strlen(de->d_name) >= sizeof(segs[0].name))
			return log_error_errno(-EEXIST, "too many open segments in '%s/" OPEN_DIR "'",
					       j->path);
		segs[n].seg_no = seg_no;
		snprintf(segs[n].name, sizeof(segs[n].name), "%s", de->d_name);
		n++;
	}
	if (n > 2)
		return log_error_errno(-EEXIST, "%zu open segments in '%s/" OPEN_DIR "'", n, j->path);
	qsort(segs, n, sizeof(segs[0]), open_seg_cmp);
	for (size_t k = 0; k < n && r == 0; k++) {
		struct mfs_segw_stats st;
		uint64_t cut = 0;
		const char *name = segs[k].name;

		r = mfs_segw_reopen(j->open_dirfd, name, j->uuid, &j->w, &cut);
		if (r == -EALREADY) {
			r = move_sealed(j, name);
			continue;
		}
		if (r < 0)
			return log_error_errno(r, "cannot reopen segment '%s/" OPEN_DIR "/%s': %m",
					       j->path, name);
		if (cut)
			log_notice("segment '%s': cut a torn tail of %" PRIu64 " bytes", name, cut);
		mfs_segw_get_stats(j->w, &st);
		if (k > 0 && prev_last && st.first_lsn != prev_last + 1) {
			char lost[300];
			mfs_segw_free(j->w);
			j->w = NULL;
			snprintf(lost, sizeof(lost), "lost-%s", name);
			log_error("segment '%s' starts at LSN %" PRIu64 " but the one before ends at %" PRIu64
				  " (torn by a crash): set aside as '%s/" OPEN_DIR "/%s'; none of its "
				  "records was reported durable",
				  name, st.first_lsn, prev_last, j->path, lost);
			if (renameat(j->open_dirfd, name, j->open_dirfd, lost) < 0)
				return -errno;
			continue;
		}
		if (k + 1 < n && st.records == 0) { /* the older one, empty */
			prev_last = st.first_lsn - 1;
			mfs_segw_free(j->w);
			j->w = NULL;
			(void)unlinkat(j->open_dirfd, name, 0);
			continue;
		}
		if (k + 1 < n) { /* the older one of two: seal it */
			char closed[MFS_SEG_NAME_LEN + 1];
			prev_last = st.next_lsn - 1;
			r = mfs_segw_close(j->w, j->closed_dirfd, closed);
			j->w = NULL;
			if (r < 0)
				return log_error_errno(r, "cannot seal segment '%s': %m", name);
			log_notice("sealed segment '%s' left open by a crash as '%s'", name, closed);
			continue;
		}
		snprintf(j->open_name, sizeof(j->open_name), "%s", name);
		j->seg_no = segs[k].seg_no;
	}
	return r;
}

static int open_dirs(struct fs *fs, struct fs_journal *j)
{
	const char *sub[] = { OPEN_DIR, CLOSED_DIR };
	int *fds[] = { &j->open_dirfd, &j->closed_dirfd };

	if (mkdir(j->path, 0700) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create journal folder '%s': %m", j->path);
	j->dirfd = open(j->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dirfd < 0)
		return log_error_errno(-errno, "cannot open journal folder '%s': %m", j->path);
	j->lock_fd = openat(j->dirfd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->lock_fd < 0)
		return log_error_errno(-errno, "journal folder '%s' is not writable: %m", j->path);
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return log_error_errno(-EBUSY, "'%s' is already mounted (journal '%s' is "
						       "locked by another mirrorfs)",
					       fs->opt.data_dir, j->path);
		return log_error_errno(-errno, "cannot lock '%s/" LOCK_FILE "': %m", j->path);
	}
	for (size_t k = 0; k < ARRAY_SIZE(sub); k++) {
		if (mkdirat(j->dirfd, sub[k], 0700) < 0 && errno != EEXIST)
			return log_error_errno(-errno, "cannot create '%s/%s': %m", j->path, sub[k]);
		*fds[k] = openat(j->dirfd, sub[k], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (*fds[k] < 0)
			return log_error_errno(-errno, "cannot open '%s/%s': %m", j->path, sub[k]);
	}
	return 0;
}

/* Sequence number and last LSN after the closed segments. */
static int closed_tail(struct fs_journal *j, uint64_t *seg_no, uint64_t *last)
{
	char **names = NULL;
	size_t n = 0;
	uint64_t first, l, no;
	uint8_t uuid[16];
	int r;

	r = list_closed(j, &names, &n);
	if (r < 0 || n == 0) {
		free_names(names, n);
		return r;
	}
	(void)mfs_seg_name_parse(names[n - 1], &first, &l);
	*last = MFS_MAX(*last, l);
	if (peek_header(j->closed_dirfd, names[n - 1], uuid, &no) == 0)
		*seg_no = MFS_MAX(*seg_no, no);
	free_names(names, n);
	return 0;
}

static int journal_recover(struct fs *fs, struct fs_journal *j)
{
	struct jstate st;
	uint64_t seg_no, last, replayed;
	bool fresh = false;
	int r;

	r = state_read(j, &st);
	if (r < 0 && r != -ENOENT)
		return log_error_errno(r, "cannot read '%s/" STATE_FILE "': %m", j->path);
	if (st.have_uuid)
		memcpy(j->uuid, st.uuid, 16);
	r = recover_open(j, st.have_uuid);
	if (r < 0)
		return r;
	if (!st.have_uuid && !j->w) {
		uint64_t dummy = 0, l = 0;
		closed_tail(j, &dummy, &l);
		fresh = (l == 0);
		if (fresh) {
			r = mfs_uuid_generate(j->uuid);
			if (r < 0)
				return log_error_errno(r, "cannot generate a data-set id: %m");
		} else {
			return log_error_errno(-EBADMSG, "'%s' has segments but no state file",
					       j->path);
		}
	}
	mfs_uuid_format(j->uuid, j->uuid_text);
	atomic_store(&j->checkpoint_lsn, st.checkpoint);
	if (j->w) {
		/* an open segment that ends before the checkpoint was left by an
		 * earlier life of this data directory (a primary that became a
		 * mirror and was promoted again): continuing it would reuse LSNs */
		struct mfs_segw_stats s;
		mfs_segw_get_stats(j->w, &s);
		if (s.next_lsn - 1 < st.checkpoint) {
			char stale[300];
			snprintf(stale, sizeof(stale), "stale-%s", j->open_name);
			log_warning("open segment '%s' ends at LSN %" PRIu64 ", before the checkpoint "
				    "at LSN %" PRIu64 " (left by an earlier life of this data "
				    "directory): set aside as '%s/" OPEN_DIR "/%s'",
				    j->open_name, s.next_lsn - 1, st.checkpoint, j->path, stale);
			j->w = mfs_segw_free(j->w);
			if (renameat(j->open_dirfd, j->open_name, j->open_dirfd, stale) < 0)
				return log_error_errno(-errno, "cannot set '%s' aside: %m", j->open_name);
			j->open_name[0] = 0;
		}
	}

	{
		_cleanup_free_ uint64_t *set = NULL;
		size_t n_set = 0;
		int trusted = intent_open(fs, j, &set, &n_set);
		if (trusted < 0)
			return trusted;
		r = replay_tail(fs, st.checkpoint, set, n_set, trusted > 0, &replayed);
		if (r < 0)
			return r;
		r = intent_reset(j);
		if (r < 0)
			return log_error_errno(r, "cannot reset '%s/" INFLIGHT_FILE "': %m", j->path);
	}
	if (!j->w) {
		seg_no = st.segment;
		last = MFS_MAX(st.last, st.checkpoint);
		closed_tail(j, &seg_no, &last);
		r = new_segment(j, seg_no + 1, last + 1);
		if (r < 0)
			return log_error_errno(r, "cannot create a segment in '%s/" OPEN_DIR "': %m",
					       j->path);
	}
	r = mfs_segw_reserve(j->w, 1u << 20);
	if (r < 0)
		return log_error_errno(r, "journal folder '%s' has no room: %m", j->path);
	if (fresh) {
		r = state_write(j, 0);
		if (r < 0)
			return log_error_errno(r, "cannot write '%s/" STATE_FILE "': %m", j->path);
		log_info("new data set %s in '%s'", j->uuid_text, j->path);
	}
	if (!fs->opt.skip_backing_sync && syncfs(fs->sync_fd) < 0)
		return log_error_errno(-errno, "cannot sync '%s': %m", fs->opt.data_dir);
	return checkpoint_locked(fs, NULL);
}

int fs_journal_open(struct fs *fs)
{
	struct fs_journal *j = calloc(1, sizeof(*j));
	char path[PATH_MAX];
	int r;

	if (!j)
		return -ENOMEM;
	j->dirfd = j->open_dirfd = j->closed_dirfd = j->lock_fd = -EBADF;
	pthread_rwlock_init(&j->seg_lock, NULL);
	pthread_mutex_init(&j->ckpt_lock, NULL);
	pthread_mutex_init(&j->ilock, NULL);
	pthread_mutex_init(&j->tlock, NULL);
	pthread_cond_init(&j->tcond, NULL);
	fs->j = j;
	if (fs->opt.journal_dir)
		snprintf(path, sizeof(path), "%s", fs->opt.journal_dir);
	else
		snprintf(path, sizeof(path), "%s/" MFS_CTL_DIR, fs->opt.data_dir);
	j->path = strdup(path);
	if (!j->path)
		return -ENOMEM;
	r = open_dirs(fs, j);
	if (r < 0)
		return r;
	r = journal_recover(fs, j);
	if (r == 0)
		r = fs_snap_open(fs); /* after recovery: see snap.c, "Ordering" */
	return r;
}

void fs_journal_close(struct fs *fs)
{
	struct fs_journal *j = fs->j;

	if (!j)
		return;
	if (j->timer_started) {
		pthread_mutex_lock(&j->tlock);
		j->stop = true;
		pthread_cond_signal(&j->tcond);
		pthread_mutex_unlock(&j->tlock);
		pthread_join(j->timer, NULL);
	}
	if (j->w && !atomic_load(&fs->failed)) {
		int r = fs_journal_checkpoint(fs, NULL);
		if (r < 0)
			log_error_errno(r, "final checkpoint failed: %m");
	}
	fs_snap_close(fs);
	mfs_segw_free(j->w);
	if (j->imap) {
		/* every mutation has returned: nothing is in flight any more */
		for (size_t k = 0; k < INFLIGHT_SLOTS; k++)
			atomic_store(&j->slots[k], 0);
		munmap(j->imap, j->imap_len);
		j->imap = NULL;
		j->slots = NULL;
	}
	if (j->ikey_ok)
		pthread_key_delete(j->ikey);
	free(j->ifree);
	closep(&j->dirfd);
	closep(&j->open_dirfd);
	closep(&j->closed_dirfd);
	closep(&j->lock_fd); /* releases the flock */
	free(j->path);
	free(j);
	fs->j = NULL;
}

/* ================================================================ virtual tree support */

int fs_journal_dirfd(struct fs *fs)
{
	return fs->j->dirfd;
}

int fs_journal_closed_dirfd(struct fs *fs)
{
	return fs->j->closed_dirfd;
}

int fs_journal_open_current(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	int fd;

	pthread_rwlock_rdlock(&j->seg_lock);
	fd = openat(j->open_dirfd, j->open_name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	pthread_rwlock_unlock(&j->seg_lock);
	return fd;
}

uint64_t fs_journal_current_size(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s = { 0 };

	pthread_rwlock_rdlock(&j->seg_lock);
	if (j->w)
		mfs_segw_get_stats(j->w, &s);
	pthread_rwlock_unlock(&j->seg_lock);
	return s.size;
}

int fs_journal_status(struct fs *fs, char **ret)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s = { 0 };
	char **names = NULL, name[256] = "";
	size_t n = 0;
	uint64_t bytes = 0, first = 0, a, b;
	char *out, lockjson[192], jpath[2 * PATH_MAX];
	size_t jp = 0;
	_cleanup_free_ char *snaps = NULL;
	int r;

	pthread_rwlock_rdlock(&j->seg_lock);
	if (j->w)
		mfs_segw_get_stats(j->w, &s);
	snprintf(name, sizeof(name), "%s", j->open_name);
	pthread_rwlock_unlock(&j->seg_lock);
	r = list_closed(j, &names, &n);
	if (r < 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		struct stat st;
		if (fstatat(j->closed_dirfd, names[k], &st, 0) == 0)
			bytes += (uint64_t)st.st_size;
	}
	first = s.first_lsn;
	if (n && mfs_seg_name_parse(names[0], &a, &b))
		first = a;
	free_names(names, n);
	fs_lock_status(fs, lockjson, sizeof(lockjson));
	if (fs_snap_json(fs, &snaps) < 0)
		return -ENOMEM;
	/* the real closed-segments folder: a shipper can watch it with inotify
	 * (the kernel reports nothing for segments appearing on the mount) */
	for (const char *c = j->path; *c && jp < sizeof(jpath) - 8; c++) {
		if (*c == '"' || *c == '\\')
			jpath[jp++] = '\\';
		if ((unsigned char)*c >= 0x20)
			jpath[jp++] = *c;
	}
	jpath[jp] = 0;
	r = asprintf(&out,
		     "{\"dataset\":\"%s\",\"first_lsn\":%" PRIu64 ",\"last_lsn\":%" PRIu64
		     ",\"durable_lsn\":%" PRIu64 ",\"checkpoint_lsn\":%" PRIu64
		     ",\"open_segment\":\"%s\",\"open_segment_seq\":%" PRIu64
		     ",\"open_segment_first_lsn\":%" PRIu64 ",\"open_segment_size\":%" PRIu64
		     ",\"open_segment_records\":%" PRIu64 ",\"segments\":%zu,\"segments_bytes\":%" PRIu64
		     ",\"journal_syncs\":%" PRIu64 ",\"journal_sync_requests\":%" PRIu64
		     ",%s,\"failed\":%s,\"journal_path\":\"%s/" CLOSED_DIR "\",\"snapshots\":%s}\n",
		     j->uuid_text, first, s.next_lsn ? s.next_lsn - 1 : 0, s.durable_lsn,
		     atomic_load(&j->checkpoint_lsn), name, s.seg_no, s.first_lsn, s.size,
		     s.records, n, bytes, s.syncs, s.sync_requests, lockjson,
		     atomic_load(&fs->failed) ? "true" : "false", jpath, snaps);
	if (r < 0)
		return -ENOMEM;
	*ret = out;
	return 0;
}
