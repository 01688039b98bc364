/* SPDX-License-Identifier: MIT */
/*
 * fs.h - internal interfaces of mirrorfs, the journaling FUSE filesystem.
 *
 * Modules, top layer first: a module calls only those listed below it
 * (tools/fs-callgraph.py --layers checks). What the journal and the inode
 * table report upward goes through fs->hooks; virtual and snapshot nodes
 * are reached through their operations (struct fs_node_ops).
 *
 *   main.c      options, bring-up, session loop, teardown
 *   ops.c       the FUSE ops table; init, lookup, forget, readlink, statfs
 *   attr.c      getattr, setattr
 *   names.c     mknod, mkdir, symlink, unlink, rmdir, rename, link
 *   dir.c       opendir, readdir(plus), releasedir, fsyncdir
 *   xattr.c     get/list/set/removexattr
 *   data.c      open files: open/create, read, write, fsync, fallocate, copy
 *   stat.c      the attributes a live node shows, in getattr and entries
 *   vtree.c     the virtual .mirrorfs/ tree (journal/, current, status, ctl)
 *   snapview.c  the read-only views .mirrorfs/snapshots/NAME/
 *   cowread.c   a preserved file as a snapshot view reads it
 *   ctl.c       the ctl commands (reply lines: lib/ctl.c)
 *   status.c    the status JSON
 *   metrics.c   the Prometheus textfile (-o metrics=)
 *   snap.c      snapshots: create/delete, their ctl commands (private
 *               interfaces of the snapshot modules: snap_i.h)
 *   snapstore.c the snapshot store: load at mount, the list
 *   snapfarm.c  a snapshot's hard-link farm: build, fsync, scan
 *   park.c      mutations parked while locked (the wrapped ops table)
 *   lock.c      flush-and-lock (lock_i.h)
 *   mutate.c    the write-ahead protocol every mutation follows: checks,
 *               record, apply, compensation, failure
 *   recover.c   opening the journal, crash recovery, closing it
 *   keycheck.c  the keyed mount's checks: closed segments, chain, key switch
 *   redo.c      recovery's redo pass: the records after the checkpoint
 *   rotate.c    rotation, a snapshot's segment switch, trims, the timer
 *   journal.c   the segment writer, group commit, checkpoints, fences
 *               (journal_i.h)
 *   cow.c       copy-on-write before a change, its durability, live link counts
 *   pending.c   writes journaled, not yet applied (write-ahead); the dirty set
 *   inode.c     inode table (backing O_PATH fds), names per inode, paths
 *   places.c    refuses a DATADIR and MOUNTPOINT that cannot be meant
 *
 * Lock order (left before right):
 *   snaps->mu (snapshot create/delete) -> the lock's lk->mu (lock.c; held
 *   around a snapshot's window under an operator's lock) -> j->ckpt_lock
 *   (checkpoints, rotations, trims, a snapshot's window) -> fs->ns_lock
 *   (rwlock: namespace ops exclusive, data ops shared; a checkpoint's
 *   barrier) -> inode->lock (data mutations of one inode) -> the
 *   copy-on-write locks (snap_i.h: sync_mu -> snaps->rw -> entry->mu) ->
 *   j->dsync_lock (a checkpoint mark) -> j->seg_lock (the open segment) ->
 *   j->tlock (the timer's requests) -> fs->pend.alock -> inode->plock ->
 *   fs->pend.lock -> fs->itable_lock (inode table and name lists, held
 *   briefly). j->state_lock, fs->vlock and the view nodes' lock are leaves.
 */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/format.h"
#include "mirrorfs/record.h"

/* Virtual node kinds; FS_VK_NONE is a real (backing) inode. */
enum fs_vkind {
	FS_VK_NONE = 0,
	FS_VK_DIR,     /* .mirrorfs/ */
	FS_VK_JOURNAL, /* .mirrorfs/journal/ */
	FS_VK_SNAPS,   /* .mirrorfs/snapshots/ */
	FS_VK_CURRENT, /* .mirrorfs/current */
	FS_VK_STATUS,  /* .mirrorfs/status */
	FS_VK_CTL,     /* .mirrorfs/ctl */
	FS_VK_SEGMENT, /* .mirrorfs/journal/NAME */
	FS_VK_SNAP,    /* anything in .mirrorfs/snapshots/NAME/ (snapview.c) */
	FS_VK_COUNT,
};

struct fs;
struct fs_file;
struct fs_inode;

/*
 * What a node that is not a backing file does (inode->ops): vtree.c's
 * operations for .mirrorfs/ and its entries, snapview.c's for the views
 * of the snapshots. The live nodes (ops NULL) are served by attr.c,
 * names.c, dir.c, xattr.c and data.c, which hand any other node to its
 * operations. Each replies to @req.
 */
struct fs_node_ops {
	bool cached; /* never changes: the kernel may keep its attributes */
	void (*lookup)(fuse_req_t req, struct fs_inode *parent, const char *name);
	void (*forget)(struct fs *fs, struct fs_inode *i, uint64_t n);
	int (*stat)(struct fs *fs, struct fs_inode *i, struct stat *st); /* 0 or -errno */
	void (*setattr)(fuse_req_t req, struct fs_inode *i, int valid);
	void (*open)(fuse_req_t req, struct fs_inode *i, struct fuse_file_info *fi);
	void (*read)(fuse_req_t req, struct fs_inode *i, size_t size, off_t off,
		     struct fs_file *f);
	void (*write)(fuse_req_t req, struct fs_inode *i, const char *buf, size_t size,
		      struct fs_file *f);
	void (*unlink)(fuse_req_t req, struct fs_inode *parent, const char *name);
	void (*getxattr)(fuse_req_t req, struct fs_inode *i, const char *name, size_t size);
	void (*listxattr)(fuse_req_t req, struct fs_inode *i, size_t size);
};

/* One name of an inode: (parent, name). Holds a reference on parent. */
struct fs_link {
	struct fs_link *next;
	struct fs_inode *parent;
	char name[];
};

struct fs_inode {
	struct fs_inode *hnext; /* protected by fs->itable_lock */
	int fd;                 /* O_PATH fd of the backing file, -1 if virtual */
	dev_t dev;
	ino_t ino;
	mode_t type; /* S_IFMT bits */
	enum fs_vkind vkind;
	uint64_t nlookup;      /* kernel lookups; protected by fs->itable_lock */
	uint64_t refs;         /* child links and open handles; fs->itable_lock */
	struct fs_link *links; /* known names; fs->itable_lock (changed under ns_lock) */
	pthread_mutex_t lock;  /* serialises data mutations; after fs->ns_lock */
	_Atomic uint64_t last_lsn; /* last journal record touching this inode */
	/*
	 * The kernel asks for security.capability before every write (libfuse
	 * 3.14 cannot negotiate FUSE_HANDLE_KILLPRIV_V2, which would let it
	 * cache the answer). xattr_gen is odd while an xattr change of this
	 * inode is under way; nocaps_gen == xattr_gen (even) means the backing
	 * file was seen without one since the last change. nocaps_gen starts
	 * at FS_NOCAPS_UNKNOWN (odd: never equal), so that a file is asked
	 * once before its absence is trusted.
	 */
	_Atomic uint64_t xattr_gen, nocaps_gen;
	/* pending.c: writes journaled but not yet applied */
	pthread_mutex_t plock;
	struct fs_pwrite *phead, *ptail; /* plock */
	uint64_t pend;                   /* plock: the end of the furthest one */
	int pfd;         /* plock: where they go (kept while open or pending), -1 */
	unsigned nopen;  /* plock: open files of the inode (data.c) */
	bool in_plist, dirty;            /* fs->pend.lock */
	struct fs_inode *pnext, *dnext;  /* fs->pend.lock */
	const struct fs_node_ops *ops; /* a virtual or snapshot node's; NULL: a live one */
	char *vname;               /* FS_VK_SEGMENT: segment file name; FS_VK_SNAP: set on a
				      snapshot's root (its name) */
	struct fs_snap *snap;      /* FS_VK_SNAP: the snapshot */
};

#define FS_NOCAPS_UNKNOWN 1u

/* @i was just made (create, mknod, mkdir, symlink): it has no
 * security.capability, and the kernel's question before its first write
 * is answered without asking the backing file. */
static inline void fs_inode_new_nocaps(struct fs_inode *i)
{
	uint64_t gen = atomic_load(&i->xattr_gen);

	if (!(gen & 1))
		atomic_store(&i->nocaps_gen, gen);
}

struct fs_dirent {
	char *name;
	ino_t ino;
	mode_t type; /* S_IFMT bits, 0 if unknown */
	bool virt;   /* the .mirrorfs entry, or an entry of a virtual directory */
};

/* An open file or directory (fi->fh). */
struct fs_file {
	struct fs_inode *inode;
	int fd; /* backing fd (regular files), or -1 */
	/* directories: a listing taken at offset 0 */
	struct fs_dirent *ents;
	size_t n_ents;
	/* virtual files: generated contents (status) or the ctl reply */
	char *buf;
	size_t len;
	/* snapshot views: end of what was announced to the kernel for read-ahead */
	_Atomic uint64_t ra_end;
};

struct fs_journal;

/* rotate_size when none is given: a default mirror accepts such segments
 * (mirrord --max-segment, 1G, leaves room for one largest record more). */
#define FS_ROTATE_SIZE_DEFAULT (64ull << 20)

struct fs_options {
	const char *data_dir;
	const char *journal_dir; /* NULL: DATADIR/.mirrorfs */
	uint64_t rotate_size;    /* FS_ROTATE_SIZE_DEFAULT unless given */
	unsigned rotate_interval;     /* seconds, 0: never by time */
	unsigned checkpoint_interval; /* seconds */
	bool skip_backing_sync;       /* fault injection: simulate lost page cache */
	unsigned ckpt_delay_ms;       /* fault injection: a checkpoint waits first */
	const char *metrics;          /* NULL, or a Prometheus textfile (-o metrics=) */
	/* auth_key: keys[0] tags new segments; auth_key_old adds keys[1], to
	 * close an open segment tagged before a key change. n = 0: format 1. */
	struct mfs_keyring keys;
	int zstd_level; /* compress=zstd[:N]: writes compressed (format 2); 0: off */
};

#define FS_METRICS_BUCKETS 8

/* Counters for the metrics file (metrics.c): bumped with relaxed atomics on
 * the write path, read by the timer thread. */
struct fs_metrics {
	_Atomic uint64_t records, bytes; /* journaled since the mount */
	_Atomic uint64_t fsyncs, fsync_ns; /* group-commit fsyncs and their total time */
	_Atomic uint64_t fsync_bucket[FS_METRICS_BUCKETS + 1]; /* not cumulative; last: +Inf */
	_Atomic uint64_t ckpt_ns, snap_ns; /* duration of the last checkpoint, snapshot */
	uint64_t last_write_ns; /* timer thread only */
	bool warned;            /* timer thread only */
};

struct fs;
/* What the journal and the inode table report to the modules above them,
 * without calling them: main.c points these at metrics.c and pending.c.
 * NULL members are skipped. */
struct fs_hooks {
	/* the timer thread, about once a second (@force: now, at start) */
	void (*tick)(struct fs *fs, bool force);
	/* a group commit's fsync took @ns */
	void (*fsync)(struct fs *fs, uint64_t ns);
	/* inode.c made live inode @i, or is about to free it: the state the
	 * modules above keep in it. Called with fs->itable_lock held (take
	 * no lock). */
	void (*inode_init)(struct fs_inode *i);
	void (*inode_done)(struct fs_inode *i);
};

struct fs {
	const char *mountpoint; /* as given, for messages */
	int data_fd; /* DATADIR, O_PATH | O_DIRECTORY */
	int sync_fd; /* DATADIR, O_RDONLY, for syncfs() */
	struct fs_options opt;
	struct fs_inode root;
	double timeout;
	uid_t owner;
	gid_t egid; /* the group what the daemon makes gets, but in a set-group-ID folder */
	bool is_root;

	pthread_rwlock_t ns_lock; /* take before inode->lock */
	pthread_mutex_t itable_lock;
	struct fs_inode **itable; /* protected by itable_lock */
	size_t n_buckets;

	struct fs_journal *j;
	struct {
		pthread_mutex_t lock;   /* plist, dlist */
		pthread_mutex_t alock;  /* one apply pass at a time */
		struct fs_inode *plist; /* inodes with pending writes (a reference each) */
		struct fs_inode *dlist; /* changed since the last checkpoint (a reference each) */
		_Atomic uint64_t bytes; /* pending */
		atomic_bool sync_writes; /* fs_pending_sync_writes() */
	} pend;
	atomic_int failed; /* 0 or the first fatal error (negative errno) */
	struct fs_metrics metrics;
	struct fs_hooks hooks; /* set by main.c before the inode table and journal start */

	struct fs_inode *vnodes[FS_VK_COUNT]; /* static virtual nodes */
	pthread_mutex_t vlock;
	struct fs_inode *segnodes; /* FS_VK_SEGMENT nodes, chained by hnext; vlock */

	struct fs_lock *lock; /* lock.c; set in init, freed in destroy */
	struct fs_snaps *snaps; /* snapstore.c */
	struct fs_views *views; /* snapview.c: the view nodes */
	struct fuse_session *se; /* for notifications; set once mounted */
};

/* ---------------------------------------------------------------- stat.c */

/* The attributes live node @i shows, from its backing file's (@st): the
 * link count without the snapshots' links, the size with the pending
 * writes. */
void fs_stat_fix(struct fs *fs, struct fs_inode *i, struct stat *st);
/* fs_inode_lookup(), with the attributes @i shows in @e (fs_stat_fix). */
int fs_stat_lookup(struct fs *fs, struct fs_inode *parent, const char *name,
		   struct fuse_entry_param *e);

/* ---------------------------------------------------------------- metrics.c */

/* Count one group-commit fsync that took @ns. */
void fs_metrics_fsync(struct fs *fs, uint64_t ns);

/* Rewrite the -o metrics file if about a second passed since the last time
 * (or @force); failures are logged once and otherwise ignored. Timer thread. */
void fs_metrics_write(struct fs *fs, bool force);

/* ---------------------------------------------------------------- inode.c */

static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}
/* Reply @e, or the error @r; forgets the lookup if the kernel refused it. */
void fs_reply_entry_or_err(fuse_req_t req, int r, struct fuse_entry_param *e);

int fs_itable_init(struct fs *fs);
void fs_itable_done(struct fs *fs);
struct fs_inode *fs_inode(fuse_req_t req, fuse_ino_t ino);
/* Look up @name in @parent on the backing fs; adds a kernel lookup reference
 * and the name. @e->attr is the backing file's (fs_stat_lookup() gives what
 * mirrorfs shows). Returns 0 or -errno. */
int fs_inode_lookup(struct fs *fs, struct fs_inode *parent, const char *name,
		    struct fuse_entry_param *e);
void fs_inode_forget(struct fs *fs, struct fs_inode *i, uint64_t n);
void fs_inode_ref(struct fs *fs, struct fs_inode *i);
void fs_inode_unref(struct fs *fs, struct fs_inode *i);
/* The table's inode for (dev, ino), or NULL. Caller holds ns_lock. */
struct fs_inode *fs_inode_find(struct fs *fs, dev_t dev, ino_t ino);
void fs_link_add(struct fs *fs, struct fs_inode *i, struct fs_inode *parent, const char *name);
void fs_link_remove(struct fs *fs, struct fs_inode *i, struct fs_inode *parent, const char *name);
void fs_link_move(struct fs *fs, struct fs_inode *i, struct fs_inode *oldp, const char *oldname,
		  struct fs_inode *newp, const char *newname);
/* Path of @i relative to DATADIR into @buf (root: ""). Returns 0, -ENOENT
 * when it has no known name (deleted), -ENAMETOOLONG. Caller holds ns_lock. */
int fs_inode_path(struct fs *fs, struct fs_inode *i, char *buf, size_t cap);
int fs_entry_path(struct fs *fs, struct fs_inode *parent, const char *name, char *buf,
		  size_t cap);
bool fs_inode_has_name(struct fs *fs, struct fs_inode *i);
/* The journal path of @i into @buf (MFS_PATH_MAX + 1 bytes): 1 if it has
 * one, 0 if it is not journaled (no name left, or the root), -errno. */
int fs_inode_jpath(struct fs *fs, struct fs_inode *i, char *buf);
/* "/proc/self/fd/N" of an inode's O_PATH fd. */
void fs_proc_path(int fd, char buf[64]);

/* ---------------------------------------------------------------- pending.c */

/* A writer commits itself past this many pending bytes. */
#define FS_PENDING_MAX (64u << 20)
/* The timer commits pending writes at least this often. */
#define FS_PENDING_DELAY_MS 200u
/* fs->pend's locks; main.c, before the inode table. */
void fs_pending_init(struct fs *fs);
/* A live inode's pending state: fs->hooks.inode_init and inode_done. */
void fs_pending_inode_init(struct fs_inode *i);
void fs_pending_inode_done(struct fs_inode *i);
/* Writes up to this size are kept in memory; a larger one is read back
 * from the journal (its segment's fd and offset), not copied. */
#define FS_PENDING_COPY_MAX (64u << 10)
/* Keep a journaled write (LSN @lsn) of @i until its record is durable;
 * @fd: the open file it came through; @jfd >= 0: its data lies at @joff
 * of that journal segment, not copied, and on success the fd is the
 * list's (closed once applied). Caller holds i->lock. Returns 0 or -errno
 * (nothing kept). */
int fs_pending_add(struct fs *fs, struct fs_inode *i, int fd, uint64_t lsn, const void *data,
		   size_t len, uint64_t off, int jfd, uint64_t joff);
bool fs_pending_has(struct fs_inode *i);
/* An open file of @i was made, or released: the fd that applies @i's
 * pending writes is kept while @i has open files or pending writes, so
 * that a commit costs no dup and close of it. */
void fs_pending_open(struct fs_inode *i);
void fs_pending_release(struct fs_inode *i);
/* st_size of a regular file with its pending writes. */
void fs_pending_fix_stat(struct fs_inode *i, struct stat *st);
/* pread of @i's backing @fd with the pending writes laid over it. Returns
 * the bytes read (short at the end of the file) or -errno. */
ssize_t fs_pending_read(struct fs_inode *i, int fd, char *buf, size_t size, uint64_t off);
uint64_t fs_pending_bytes(struct fs *fs);
/* Whether writes must be applied at once (the backing file system is
 * nearly full: an apply failing later could not be reported). */
bool fs_pending_sync_writes(struct fs *fs);
/* The timer's check of free space on the backing file system. */
void fs_pending_check_space(struct fs *fs);
/* Apply every pending write up to LSN @durable (whose record is durable).
 * Returns 0 or the first -errno (the writes that failed stay pending). */
int fs_pending_apply(struct fs *fs, uint64_t durable);
/* @i's backing file or folder changed: the next checkpoint fsyncs it. */
void fs_dirty_add(struct fs *fs, struct fs_inode *i);
/* fsync everything changed since the last call. Returns 0 or -errno (then
 * the set is kept for the next call, and @ret_path, if not NULL and empty,
 * names the backing file that failed, truncated to @size). */
int fs_dirty_sync(struct fs *fs, char *ret_path, size_t size);

/* ---------------------------------------------------------------- places.c */

/* Refuse a DATADIR and MOUNTPOINT that cannot be meant (stacked on mirrorfs,
 * swapped): see places.c. Errors are logged. Returns 0 or -errno. */
int fs_check_places(const char *data_arg, const char *mnt_arg);

/* ------------------------------------------ journal.c rotate.c recover.c redo.c keycheck.c */

/* Open the journal dir, lock it, recover (replay the tail after the last
 * checkpoint into DATADIR). Errors are logged. Returns 0 or -errno. */
int fs_journal_open(struct fs *fs);

/* Write this process's PID into the locks (after fuse_daemonize forked).
 * Returns 0 or -errno (logged, naming the lock file). */
int fs_journal_lock_refresh(struct fs *fs);
/* Start the timer thread (rotation, periodic checkpoints). */
int fs_journal_start(struct fs *fs);
/* Stop the timer and checkpoint a last time. */
void fs_journal_stop(struct fs *fs);
/* Release the journal (its locks too). */
void fs_journal_close(struct fs *fs);
/* Append @rec; sets rec->lsn. Returns 0 or -errno (nothing written). */
int fs_journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn);
/* fs_journal_append() of a write, saying where its data lies in the
 * journal as given: *ret_fd an fd of the segment (the caller's to close)
 * and *ret_off the offset there, or *ret_fd -1 (not stored as given:
 * compressed, sealed). */
int fs_journal_append_at(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn, int *ret_fd,
			 uint64_t *ret_off);
/* Make records up to @lsn durable (0: everything appended so far) and
 * apply the pending writes they hold (group commit). */
int fs_journal_sync(struct fs *fs, uint64_t lsn);
/* Append @rec and make it durable: then, and only then, its change may be
 * applied (the write-ahead rule). Returns 0 or -errno (not applied). */
int fs_journal_append_durable(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn);
/*
 * A fence: make every change journaled so far durable on the backing files
 * (the changed ones, fsynced) and mark it in the journal, so that recovery
 * never replays a record across it. Namespace operations that remove a
 * name (unlink, rmdir, rename; not the unlink of a file's last name) run
 * after a fence, a rename also before a second one (mutate.c), with
 * fs->ns_lock held exclusively: replaying the
 * records after a mark onto a tree that already has some of them then
 * gives the same tree (journal.c). @durable: also sync the mark itself.
 * Returns 0 or -errno.
 */
int fs_journal_fence(struct fs *fs, bool durable);
/* Every change up to LSN @l is applied: fsync what changed (the dirty set)
 * and append a checkpoint mark for @l (journal.c, mark_checkpoint). */
int fs_journal_mark(struct fs *fs, uint64_t l);
/* Sync backing files and mark a checkpoint. Returns 0 and its LSN. */
int fs_journal_checkpoint(struct fs *fs, uint64_t *ret_lsn);
/* Close the open segment if it is not empty; @ret_name gets its name or "". */
int fs_journal_rotate(struct fs *fs, char ret_name[MFS_SEG_NAME_LEN + 1]);
/* In a snapshot's lock window: append its marker and switch to a new
 * segment without syncing anything (mfs_segw_create_flags, MFS_SEGW_LAZY).
 * *ret_lsn: the old segment's last LSN; *ret_old: the old writer. Returns
 * with the checkpoint lock held. After the window, in two steps that can
 * each run alongside other fsyncs: fs_journal_snapshot_sync() seals the old
 * segment and establishes the new one (durable), then
 * fs_journal_snapshot_end() moves the old one to closed/ and releases the
 * lock; call it also when the sync failed. */
struct mfs_segw;
int fs_journal_snapshot_begin(struct fs *fs, const char *name, uint64_t *ret_lsn,
			      struct mfs_segw **ret_old);
int fs_journal_snapshot_sync(struct fs *fs, struct mfs_segw *old);
int fs_journal_snapshot_end(struct fs *fs, struct mfs_segw *old);
/* The data set's UUID as text. */
void fs_journal_uuid(struct fs *fs, char out[37]);
/* Delete a closed segment (checkpointing first if it still matters). */
int fs_journal_trim(struct fs *fs, const char *name);
/* fd of the journal folder (borrowed). */
int fs_journal_dirfd(struct fs *fs);
/* fd of the closed segments folder (borrowed). */
int fs_journal_closed_dirfd(struct fs *fs);
/* A new read-only fd on the open segment. */
int fs_journal_open_current(struct fs *fs);
uint64_t fs_journal_current_size(struct fs *fs);

struct fs_journal_gauges {
	uint64_t last_lsn, checkpoint_lsn, open_segment_bytes;
};
/* The journal's values for the metrics file (as in the status JSON). */
void fs_journal_gauges(struct fs *fs, struct fs_journal_gauges *ret);
/* What the status JSON says of the journal (status.c). */
struct fs_journal_info {
	char dataset[37];
	uint64_t first_lsn, last_lsn, durable_lsn, checkpoint_lsn;
	char open_segment[256];
	uint64_t open_segment_seq, open_segment_first_lsn, open_segment_size;
	uint64_t open_segment_records;
	size_t segments; /* closed ones */
	uint64_t segments_bytes;
	uint64_t syncs, sync_requests;
	const char *path; /* the journal folder (borrowed) */
	unsigned format;  /* of new segments */
	char auth_key_id[17]; /* "" when not authenticated */
	char encrypt_key_id[17]; /* "" when not encrypted */
};
/* Fill *ret (lists the closed segments). Returns 0 or -errno. */
int fs_journal_info(struct fs *fs, struct fs_journal_info *ret);
/* Enter the failed state: every later mutation gets EIO. */
void fs_fail(struct fs *fs, int r, const char *what);
static inline int fs_check_failed(struct fs *fs)
{
	return atomic_load(&fs->failed) ? -EIO : 0;
}

/* ---------------------------------------------------------------- vtree.c */

int fs_vtree_init(struct fs *fs);
void fs_vtree_done(struct fs *fs);
bool fs_is_reserved(struct fs *fs, struct fs_inode *parent, const char *name);
/* Lookup in a virtual directory, or of .mirrorfs in the root. */
void fs_vtree_lookup(fuse_req_t req, struct fs_inode *parent, const char *name);
/* Names of a virtual directory's entries (malloc'd array of strings). */
int fs_vtree_list(struct fs *fs, struct fs_inode *i, char ***ret, size_t *ret_n);
/* The st_ino of virtual entry @name in @dir (the root for .mirrorfs). */
ino_t fs_vtree_ino(struct fs *fs, struct fs_inode *dir, const char *name);

/* ---------------------------------------------------------------- data.c */

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void fs_op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
		     struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi);
void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			   struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			   struct fuse_file_info *fi_out, size_t len, int flags);
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		 struct fuse_file_info *fi);
/* Truncate inode @i (open file @fd or -1) to @size, journaled. Caller holds
 * ns_lock shared and i->lock. */
int fs_data_truncate(struct fs *fs, struct fs_inode *i, int fd, uint64_t size);

/* ---------------------------------------------------------------- mutate.c */

/* A zeroed record of @type (heap: struct mfs_rec is large). */
static inline struct mfs_rec *fs_rec_new(enum mfs_rec_type type)
{
	struct mfs_rec *rec = calloc(1, sizeof(*rec));

	if (rec)
		rec->type = type;
	return rec;
}
/* The start of every mutation of an existing node @i: the failed check
 * (-EIO), then @i's journal path into @path (MFS_PATH_MAX + 1 bytes).
 * Returns 1 if the change is to be journaled, 0 if not (@i has no name
 * left, or is the root), or -errno with nothing to do. */
int fs_mutate_begin(struct fs *fs, struct fs_inode *i, char *path);
/* Journal @rec durably (unless the fs failed): sets *lsn and returns 0,
 * or -errno with nothing to apply. */
int fs_journal_first(struct fs *fs, struct mfs_rec *rec, uint64_t *lsn);
/* Journal a change already applied; fails the fs if that fails. */
int fs_append_after(struct fs *fs, struct fs_inode *i, struct mfs_rec *rec);
/* Journal the compensation of a failed apply (or fail the fs). */
void fs_compensate(struct fs *fs, struct mfs_rec *undo, const char *what);
/* Journal @rec (durably) if @journaled, then apply it with @apply; a
 * failed apply journals the attributes the file really has. */
int fs_attr_change(struct fs *fs, struct fs_inode *i, struct mfs_rec *rec, bool journaled,
		   int (*apply)(struct fs_inode *i, int fd, const struct mfs_rec *rec), int fd);
/* A failed xattr change after its record @rec: journal the attribute as
 * the file (@proc) has it, or fail the fs. */
void fs_compensate_xattr(struct fs *fs, const char *proc, struct mfs_rec *rec);
/* Whether the removal of a name of @st needs no fence before it: the
 * unlink of a non-folder's last name (why: mutate.c). */
bool fs_remove_is_unfenced(bool dir, const struct stat *st);
/* After a rename was applied: the second fence (or fail the fs). */
void fs_fence_after(struct fs *fs, bool durable);
/* After creating @name in @p (record @rec, LSN @lsn): chown, lookup into
 * @e (the backing file's attributes: the caller fixes them up,
 * fs_stat_fix), and journal mode/owner fix-ups. */
int fs_finish_new(struct fs *fs, struct fs_inode *p, const char *name, struct mfs_rec *rec,
		  uint64_t lsn, struct fuse_entry_param *e);

/* ---------------------------------------------------------------- attr.c names.c dir.c xattr.c */

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* Clear a regular file's suid bit, and its sgid bit if it is group
 * executable or @req's caller is not in its group, as a journaled mode
 * change (what a write, truncate or chown by a caller without CAP_FSETID
 * does to a file). Caller holds ns_lock (read) and @i's lock; @fd an open
 * fd of it or -1. */
int fs_attr_kill_suidgid(struct fs *fs, struct fs_inode *i, int fd, fuse_req_t req);
/* killpriv.c: read and write /dev/fuse through hooks that negotiate
 * FUSE_HANDLE_KILLPRIV_V2 with the kernel when it offers it. */
void fs_killpriv_attach(struct fuse_session *se);
/* Whether the request this thread handles asks for suid/sgid to be
 * killed (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID,
 * FUSE_OPEN_KILL_SUIDGID). */
bool fs_killpriv_asked(void);
/* For copy_file_range and fallocate, which carry no flag: whether the
 * kernel took FUSE_HANDLE_KILLPRIV_V2 and @req's caller is not root. */
bool fs_killpriv_unflagged(fuse_req_t req);
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		   struct fuse_file_info *fi);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* ---------------------------------------------------------------- ops.c */

extern const struct fuse_lowlevel_ops fs_ops;

/* ---------------------------------------------------------------- lock.c park.c */

struct fs_lock;
/* @ops with its mutating entries wrapped to park requests while locked,
 * and init/destroy/release hooked (static storage: one table per process). */
const struct fuse_lowlevel_ops *fs_lock_wrap_ops(const struct fuse_lowlevel_ops *ops);
/* ctl "lock [TIMEOUT_MS]" (owned by ctl handle @f) and "unlock": the reply
 * line into *ret (malloc'd). Returns 0 or -ENOMEM. */
int fs_lock_ctl(struct fs *fs, struct fs_file *f, const char *cmd, char **ret);
/* The lock's status JSON members ("locked":...,"parked":N) into @buf. */
int fs_lock_status(struct fs *fs, char *buf, size_t cap);
/* Hold every mutation (as a lock does), run @fn, release; *ret_ns gets how
 * long mutations were held (0 if a lock was already held, which also
 * quiesces). Returns what @fn returns, or -EBUSY/-ENOTSUP. */
int fs_lock_quiesce(struct fs *fs, int (*fn)(struct fs *fs, void *arg), void *arg,
		    uint64_t *ret_ns);

/* ---------------------------------------------------------- snap.c snapstore.c cow.c cowread.c */

#define FS_SNAP_NAME_MAX 64
struct fs_snap;
/* Open the store and load the snapshots (after journal recovery). */
int fs_snap_open(struct fs *fs);
void fs_snap_close(struct fs *fs);
/* fdatasync the preserved data. */
int fs_snap_sync(struct fs *fs);
/* fs_snap_sync() if anything was preserved since the last one. */
int fs_snap_sync_dirty(struct fs *fs);
bool fs_snap_name_ok(const char *name);
/* Before inode @i changes: preserve [off, off+len) (UINT64_MAX: to the end;
 * 0: attributes only) for every live snapshot that holds it. Never fails
 * the change: a snapshot that cannot be kept is marked broken. Caller
 * holds i->lock. */
void fs_snap_cow(struct fs *fs, struct fs_inode *i, uint64_t off, uint64_t len);
/* ctl "snapshot create NAME|delete NAME|list": the reply (malloc'd).
 * Returns 0 or -ENOMEM. */
int fs_snap_ctl(struct fs *fs, const char *cmd, char **ret);
int fs_snap_json(struct fs *fs, char **ret);
struct fs_snap *fs_snap_find(struct fs *fs, const char *name);
int fs_snap_names(struct fs *fs, char ***ret, size_t *ret_n);
int fs_snap_tree_fd(struct fs_snap *s);
uint64_t fs_snap_lsn(struct fs_snap *s);
/* 0, -ESTALE (deleted) or -EIO (broken). */
int fs_snap_check(struct fs_snap *s);
int fs_snap_file_stat(struct fs *fs, struct fs_snap *s, struct stat *st);
/* @ra_end: the open file's read-ahead mark (see cowread.c), or NULL */
ssize_t fs_snap_file_read(struct fs *fs, struct fs_snap *s, ino_t ino, int fd, char *buf,
			  size_t size, uint64_t off, _Atomic uint64_t *ra_end);
int fs_snap_file_reply(struct fs *fs, struct fs_snap *s, ino_t ino, int fd, fuse_req_t req,
		       size_t size, off_t off);
ssize_t fs_snap_file_xattr(struct fs *fs, struct fs_snap *s, ino_t ino, const char *name,
			   char *buf, size_t size);
/* A live file's link count without the snapshots' links to it. */
void fs_snap_fix_nlink(struct fs *fs, struct stat *st);

/* ---------------------------------------------------------------- status.c */

/* The status JSON, one line with its newline (malloc'd): the journal, the
 * pending writes, the lock, the failed state, the snapshots. Returns 0 or
 * -errno. */
int fs_status_json(struct fs *fs, char **ret);

/* ---------------------------------------------------------------- ctl.c */

/* Run ctl command @cmd written through handle @f: the reply line into
 * *@ret (malloc'd). Returns 0 or -ENOMEM. */
int fs_ctl_exec(struct fs *fs, struct fs_file *f, const char *cmd, char **ret);

/* ---------------------------------------------------------------- snapview.c */

/* Node of @name in snapshot directory @parent (FS_VK_SNAPS: a snapshot's
 * root), with a kernel lookup reference, into *@ret. Returns 0 or -errno
 * (-ENOENT: no such entry or snapshot; -ESTALE, -EIO: see fs_snap_check). */
int fs_snapview_child(struct fs *fs, struct fs_inode *parent, const char *name,
		      struct fs_inode **ret);
/* The view nodes' table: made by fs_vtree_init; fs_snapview_done frees
 * it with the nodes the kernel never forgot (unmount). */
int fs_snapview_init(struct fs *fs);
void fs_snapview_done(struct fs *fs);
