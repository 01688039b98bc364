/* SPDX-License-Identifier: MIT */
/*
 * segment.h - writing and reading journal segment files.
 *
 * Writer: one open segment, appended to by many threads. Each append is
 * written to the file at once (a kill -9 loses nothing that was appended),
 * and mfs_segw_sync() makes it durable with group commit: concurrent
 * callers share one fdatasync. Space is reserved ahead with
 * fallocate(KEEP_SIZE) so that callers can check for ENOSPC before they
 * change anything (mfs_segw_reserve); an append that still runs out of
 * space (no fallocate on that file system) is cut back and refused with
 * -ENOSPC, leaving the file as it was.
 *
 * Reader: validates a segment from bytes that may be hostile. It never
 * reads outside the file, never allocates from an unchecked length, and
 * ends with exactly one verdict. Zeros end the records of an open
 * segment: a record that does not read is a torn tail when nothing but
 * zeros follows it, and corrupt when anything else does.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/record.h"

/* ---------------------------------------------------------------- writer */

struct mfs_segw;

/*
 * Create segment file @name in @dirfd (O_EXCL, mode 0600) and write its
 * header. The first record appended gets LSN @first_lsn.
 * Returns 0 on success, -errno on failure (-EEXIST, -ENOSPC, ...).
 */
int mfs_segw_create(int dirfd, const char *name, const uint8_t uuid[16], uint64_t seg_no,
		    uint64_t first_lsn, struct mfs_segw **ret);

/*
 * mfs_segw_create() with @flags. MFS_SEGW_LAZY: the header and the folder
 * entry are not made durable yet (a fast switch of segments); until
 * mfs_segw_establish() has done that, every mfs_segw_sync() waits, so no
 * record of it is ever reported durable too early.
 */
#define MFS_SEGW_LAZY 1u
int mfs_segw_create_flags(int dirfd, const char *name, const uint8_t uuid[16], uint64_t seg_no,
			  uint64_t first_lsn, unsigned flags, struct mfs_segw **ret);
/* Make a lazily created segment's header durable and let syncs go on.
 * Its folder entry is the caller's to make durable (an fsync of the
 * folder, which the caller may share with other changes to it). */
int mfs_segw_establish(struct mfs_segw *w);

/*
 * Options of a new segment. @key non-NULL: write format 2, authenticated
 * with @key, the chain continuing from @prev_tag (the last tag of the
 * segment before, mfs_segw_chain(); all zero at a chain's start).
 * NULL options: format 1.
 */
struct mfs_segw_opts {
	const struct mfs_auth_key *key;
	uint8_t prev_tag[MFS_TAG_SIZE];
	int zstd_level; /* non-zero: format 2, writes compressed at this zstd level */
	/* non-NULL: format 2, every record but the trailer sealed with this
	 * key (an entry of mfs_keyring.enc: the derived key, its file's id) */
	const struct mfs_auth_key *enc_key;
};

/*
 * Compress the data of the writes appended from now on at zstd @level
 * (0: stop). Returns 0, -EPROTO for a format-1 segment (reopened), which
 * cannot hold compressed records, -ENOMEM.
 */
int mfs_segw_set_compress(struct mfs_segw *w, int level);
int mfs_segw_create_opts(int dirfd, const char *name, const uint8_t uuid[16], uint64_t seg_no,
			 uint64_t first_lsn, unsigned flags, const struct mfs_segw_opts *opts,
			 struct mfs_segw **ret);

/*
 * Reopen an open (trailer-less) segment to continue appending after its
 * last valid record, cutting off anything after it (a torn tail). A
 * record that does not decode ends the segment even when bytes follow it:
 * after a power cut the unsynced tail may have reached the disk in any
 * order and torn (sectors of later records present, earlier ones not);
 * only what was synced is known to be whole, and that is a prefix.
 * Returns 0 on success, -EALREADY if the file already carries a valid
 * trailer (sealed but not yet renamed: close it again with a new writer is
 * not possible, rename it by its closed name), -EBADMSG if it is not a
 * valid open segment of data set @uuid, -errno on I/O failure. On success *ret_cut tells how many
 * bytes of torn tail were dropped (the zeros of the zeroed window after
 * them are dropped too, and not counted).
 */
int mfs_segw_reopen(int dirfd, const char *name, const uint8_t uuid[16], struct mfs_segw **ret,
		    uint64_t *ret_cut);
/* mfs_segw_reopen() of a segment that may be authenticated: its tags are
 * checked with @keys and appends go on with its key. -ENOKEY if it is
 * tagged with a key @keys lacks, -EBADMSG if a tag does not verify. */
int mfs_segw_reopen_keys(int dirfd, const char *name, const uint8_t uuid[16],
			 const struct mfs_keyring *keys, struct mfs_segw **ret, uint64_t *ret_cut);

/*
 * Make sure @bytes more can be appended without the file system running
 * out of space. Returns 0 or -ENOSPC / -errno.
 */
int mfs_segw_reserve(struct mfs_segw *w, uint64_t bytes);

/*
 * Append @rec (its lsn and time_ns are assigned here unless time_ns is
 * already set) and write it to the file. Thread-safe; records get
 * consecutive LSNs in the order their appends are serialised.
 * Returns 0 and the record's LSN in *ret_lsn, or -errno. After a failed
 * append the writer is broken (every later append fails with -EIO),
 * except after -ENOSPC/-EDQUOT: the record is then cut off again and the
 * writer goes on.
 */
int mfs_segw_append(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn);
/* mfs_segw_append(), storing the record's LSN into *@publish as soon as it
 * is assigned, before the record is written (an intent slot: see fs/). */
int mfs_segw_append_publish(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
			    _Atomic uint64_t *publish);
/* mfs_segw_append(); *ret_data_off: where in the file the write data of
 * @rec lies as it was given (for a reader of the file, as pread or
 * copy_file_range), or UINT64_MAX where it is not stored as it is (no
 * data, compressed, sealed). */
int mfs_segw_append_at(struct mfs_segw *w, struct mfs_rec *rec, uint64_t *ret_lsn,
		       uint64_t *ret_data_off);

/*
 * Take back the record @lsn, which must be the last one appended (the
 * caller journals first, then applies, and un-journals if applying failed;
 * it must hold its own lock so that nothing was appended in between).
 * Returns 0, -EBUSY if @lsn is not the last record (or was already taken
 * back), -errno if the file cannot be cut (the writer is then broken).
 */
int mfs_segw_unappend(struct mfs_segw *w, uint64_t lsn);

/*
 * Make every record up to @lsn durable (group commit). Returns 0 or -errno.
 */
int mfs_segw_sync(struct mfs_segw *w, uint64_t lsn);

/*
 * Write-behind: start writing out what was appended since the last call
 * (sync_file_range SYNC_FILE_RANGE_WRITE: no wait, no flush of the disk
 * cache, nothing becomes durable). A later mfs_segw_sync() then has little
 * left to write, so a sync (a snapshot, a checkpoint, a writer's fsync)
 * is not a burst of everything appended since the last one. Returns the
 * bytes submitted; errors are left for mfs_segw_sync() to report.
 */
uint64_t mfs_segw_writeback(struct mfs_segw *w);

/*
 * Cut the zeroed window (the written zeros kept after the last record,
 * see segment.c) off the file, as a clean unmount does; the next sync
 * refills it if appends go on. Returns 0 or -errno.
 */
int mfs_segw_trim(struct mfs_segw *w);

/*
 * Write the trailer and fdatasync, in place; no append may follow. Done
 * once: a later mfs_segw_seal() or mfs_segw_close() does not write it
 * again. Returns 0 or -errno (the writer is then broken).
 */
int mfs_segw_seal(struct mfs_segw *w);

/*
 * Seal (unless mfs_segw_seal() did), and rename the file to its closed
 * name in @dst_dirfd (-1: just seal in place), fsyncing both folders.
 * The closed name is returned in @ret_name (MFS_SEG_NAME_LEN + 1 bytes).
 * The writer is freed in every case. Returns 0 or -errno.
 */
int mfs_segw_close(struct mfs_segw *w, int dst_dirfd, char *ret_name);

/* Free without writing a trailer (the file stays an open segment). */
struct mfs_segw *mfs_segw_free(struct mfs_segw *w);

/* Counters of a writer. */
struct mfs_segw_stats {
	uint64_t seg_no;
	uint64_t first_lsn;
	uint64_t next_lsn;    /* LSN the next append gets */
	uint64_t durable_lsn; /* highest LSN known durable */
	uint64_t size;        /* bytes in the file */
	uint64_t records;
	uint64_t syncs; /* fdatasync calls issued */
	uint64_t sync_requests;
};
void mfs_segw_get_stats(struct mfs_segw *w, struct mfs_segw_stats *ret);

/* The fd of the segment file (for reading the open segment). */
int mfs_segw_fd(struct mfs_segw *w);

/* The chain value the next segment continues from: the last record's tag
 * (the header's previous tag if there is none; zeros if not authenticated). */
void mfs_segw_chain(struct mfs_segw *w, uint8_t ret[MFS_TAG_SIZE]);
bool mfs_segw_is_auth(struct mfs_segw *w);
/* The key id of an authenticated writer, or NULL. */
const uint8_t *mfs_segw_key_id(struct mfs_segw *w);
/* The encryption key id of a sealing writer, or NULL. */
const uint8_t *mfs_segw_enc_key_id(struct mfs_segw *w);

/* Name of a closed segment holding LSNs first..last ("%020lu-%020lu.mfsj"). */
void mfs_seg_name(uint64_t first_lsn, uint64_t last_lsn, char out[MFS_SEG_NAME_LEN + 1]);

/* Parse a closed segment name. Returns true and the range if it is one. */
bool mfs_seg_name_parse(const char *name, uint64_t *ret_first, uint64_t *ret_last);

/* ---------------------------------------------------------------- reader */

enum mfs_seg_verdict {
	MFS_SEG_OK = 0,      /* closed, trailer valid */
	MFS_SEG_TORN,        /* no (valid) trailer: torn tail at bad_offset after last_lsn */
	MFS_SEG_CORRUPT,     /* corrupt record at bad_offset */
	MFS_SEG_FOREIGN,     /* another data set's UUID */
	MFS_SEG_BAD_VERSION, /* a format version this reader does not know */
	MFS_SEG_NOT_SEGMENT, /* no segment magic */
	MFS_SEG_UNAUTH,      /* a reader with keys: no tags, unknown key, or a bad tag */
};

enum mfs_auth_fail {
	MFS_AUTH_NONE = 0,
	MFS_AUTH_NO_TAGS,     /* format 1, or format 2 without MFS_SEG_F_AUTH */
	MFS_AUTH_UNKNOWN_KEY, /* key id not in the reader's keyring */
	MFS_AUTH_BAD_TAG,     /* record auth_lsn at bad_offset: its tag does not verify */
	MFS_AUTH_NO_ENC_KEY,  /* sealed with a key (enc_key_id) not in the reader's keyring */
	MFS_AUTH_BAD_SEAL,    /* record auth_lsn at bad_offset does not open (its MAC) */
};

struct mfs_seg_info {
	enum mfs_seg_verdict verdict;
	uint32_t version;
	uint8_t uuid[16];
	uint64_t seg_no;
	uint64_t first_lsn;
	uint64_t created_ns;
	uint64_t last_lsn;   /* of the last valid record (first_lsn - 1 if none) */
	uint64_t records;    /* valid records, trailer excluded */
	uint64_t valid_end;  /* offset just past the last valid record */
	uint64_t bad_offset; /* TORN / CORRUPT: where reading stopped */
	uint64_t file_size;
	uint64_t zeros_from; /* TORN: where the zeros that end the file begin (file_size if
			      * none); == bad_offset when only zeros follow the last record
			      * (an open segment's zeroed window) */
	bool header_valid;
	uint32_t crc_valid_end; /* CRC32C of bytes [0, valid_end) */
	/* format 2 */
	uint32_t seg_flags;              /* MFS_SEG_F_* */
	uint8_t key_id[MFS_AUTH_KEY_ID_SIZE];
	uint8_t enc_key_id[MFS_AUTH_KEY_ID_SIZE]; /* MFS_SEG_F_ENC */
	uint8_t prev_tag[MFS_TAG_SIZE];  /* chain value before this segment */
	uint8_t last_tag[MFS_TAG_SIZE];  /* chain value after the last valid record */
	bool authenticated;              /* OK or TORN, and every valid record's tag checked */
	enum mfs_auth_fail auth_fail;    /* MFS_SEG_UNAUTH: why */
	uint64_t auth_lsn;               /* MFS_AUTH_BAD_TAG: the record's LSN */
};

/*
 * Reader options. @expect_uuid: NULL to accept any data set. @keys: NULL
 * or empty to read without checking tags (a tagged segment reads as
 * unauthenticated); else every segment must be tagged with one of them,
 * or the verdict is MFS_SEG_UNAUTH at the first record that fails.
 * Sealed segments (MFS_SEG_F_ENC) are opened with @keys->enc, whether or
 * not @keys->n is zero; without their key the verdict is MFS_SEG_UNAUTH
 * (MFS_AUTH_NO_ENC_KEY) and no record is returned.
 */
struct mfs_segr_opts {
	const uint8_t *expect_uuid;
	const struct mfs_keyring *keys;
};

struct mfs_segr;

/*
 * Open a reader over the file @fd (not taken over) or over memory.
 * @expect_uuid: NULL to accept any data set. Reads and checks the header;
 * a bad header is not an error here: the verdict says it and
 * mfs_segr_next() returns 0 at once.
 * Returns 0 on success, -ENOMEM / -errno on I/O failure.
 */
int mfs_segr_open_fd(int fd, const uint8_t *expect_uuid, struct mfs_segr **ret);
int mfs_segr_open_buf(const void *buf, size_t len, const uint8_t *expect_uuid,
		      struct mfs_segr **ret);
int mfs_segr_open_fd_opts(int fd, const struct mfs_segr_opts *o, struct mfs_segr **ret);
int mfs_segr_open_buf_opts(const void *buf, size_t len, const struct mfs_segr_opts *o,
			   struct mfs_segr **ret);

/*
 * Read the next record. Returns 1 with *rec filled (rec->data valid until
 * the next call), 0 at the end (verdict final in mfs_segr_info()), or
 * -errno on an I/O error. The trailer is checked, not returned.
 */
int mfs_segr_next(struct mfs_segr *r, struct mfs_rec *rec);

/* State so far; final once mfs_segr_next() returned 0. */
const struct mfs_seg_info *mfs_segr_info(struct mfs_segr *r);

struct mfs_segr *mfs_segr_free(struct mfs_segr *r);

/*
 * Read a whole segment to its verdict, calling @cb for each valid record
 * (stop early if it returns non-zero, which is then returned).
 * Returns 0 or the callback's value, -errno on I/O error; verdict in @ret.
 */
int mfs_seg_scan_fd(int fd, const uint8_t *expect_uuid,
		    int (*cb)(const struct mfs_rec *rec, void *arg), void *arg,
		    struct mfs_seg_info *ret);
int mfs_seg_scan_fd_opts(int fd, const struct mfs_segr_opts *o,
			 int (*cb)(const struct mfs_rec *rec, void *arg), void *arg,
			 struct mfs_seg_info *ret);

/* One line describing a verdict: "ok", "torn tail at byte X after LSN N", ... */
void mfs_seg_verdict_format(const struct mfs_seg_info *info, char *out, size_t cap);

/* Short machine name of a verdict: "ok", "torn", "corrupt", "foreign", ... */
const char *mfs_seg_verdict_name(enum mfs_seg_verdict v);
