/* SPDX-License-Identifier: MIT */
/*
 * record.h - journal records in memory, and their encoding.
 *
 * A struct mfs_rec is the decoded form of one record. Strings are copied
 * into the struct and NUL-terminated; data and xattr values point into the
 * buffer they were decoded from and stay valid as long as it does.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mirrorfs/format.h"
#include "mirrorfs/rectype.h"

/*
 * The fixed-size fields of a record. A new field of a record goes here
 * (unless it is a string or a pointer): every copy of a record's fields,
 * such as the replay engine's compact loaded records (lib/replay_i.h),
 * copies the group whole (rec->fields), so none can be forgotten.
 */
#define MFS_REC_FIELDS                                                                           \
	enum mfs_rec_type type;                                                                  \
	uint64_t lsn;                                                                            \
	uint64_t time_ns;                                                                        \
	uint64_t offset;              /* write, fallocate */                                     \
	uint64_t length;              /* fallocate length, truncate size, checkpoint LSN */      \
	uint64_t rdev;                /* mknod */                                                \
	uint32_t mode;                /* mknod, mkdir, chmod, fallocate mode */                  \
	uint32_t uid, gid;            /* mknod, mkdir, symlink, chown */                         \
	uint32_t flags;               /* rename, setxattr */                                     \
	int64_t atime_sec, mtime_sec; /* utimens */                                              \
	uint32_t atime_nsec, mtime_nsec;                                                         \
	uint32_t data_len; /* of the data itself (uncompressed) */

/* The fields by name (rec->lsn) and as one struct (rec->fields), as the kernel's struct_group(). */
#define MFS_REC_FIELDS_GROUP                                                                     \
	union {                                                                                  \
		struct {                                                                         \
			MFS_REC_FIELDS                                                           \
		};                                                                               \
		struct mfs_rec_fields fields;                                                    \
	}

struct mfs_rec_fields {
	MFS_REC_FIELDS
};

struct mfs_rec {
	MFS_REC_FIELDS_GROUP;
	char path[MFS_PATH_MAX + 1];  /* every mutation; empty for markers */
	char path2[MFS_PATH_MAX + 1]; /* rename/link new name, symlink target, xattr or snapshot name */
	const void *data; /* write data, xattr value (not copied) */
	/* format 2, MFS_REC_F_ZSTD (writes only): non-zero while @data holds
	 * a zstd frame of zstd_len bytes that expands to data_len bytes (as
	 * encoded, and as decoded until the reader expands it) */
	uint32_t zstd_len;
	uint32_t was_zstd_len; /* set by the reader once expanded: the frame's size */
	bool decrypted; /* set by the reader: sealed (MFS_REC_F_ENC); @data lies in the
			 * reader's buffer, valid until its next record */
	struct mfs_seg_trailer trailer; /* MFS_REC_SEG_CLOSED */
};

/* Name of a record type ("write", "rename", ...), or NULL if unknown. */
const char *mfs_rec_type_name(enum mfs_rec_type type);

/* Whether a type number is one this version knows. */
bool mfs_rec_type_is_valid(uint32_t type);

/* Whether a record type is a marker (no path, does not change data). */
bool mfs_rec_type_is_marker(enum mfs_rec_type type);

/*
 * Encode everything of @rec except the write data / xattr value into @buf
 * (header + fixed payload), and say where the variable blob goes.
 *
 * The encoded record is buf[0..*ret_head) followed by rec->data_len bytes
 * of rec->data. The CRC in the header already covers the data.
 * @cap must be at least mfs_rec_head_size(rec).
 * Returns 0 on success, -EINVAL for a malformed record (bad type, path too
 * long, data too large), -ENOBUFS if @cap is too small.
 */
int mfs_rec_encode(const struct mfs_rec *rec, void *buf, size_t cap, size_t *ret_head);

/*
 * mfs_rec_encode() for a format-2 segment whose records end in a tag of
 * @tag_len bytes (0: none): the length field counts it and the flags say
 * MFS_REC_F_TAG. The CRC in the header covers everything but the tag,
 * which the caller appends and folds into the CRC (mfs_crc32c() continued
 * over the tag from the CRC written here).
 */
int mfs_rec_encode_ext(const struct mfs_rec *rec, uint32_t tag_len, void *buf, size_t cap,
		       size_t *ret_head);

/* Bytes of header and fixed payload for @rec (without the data blob). */
size_t mfs_rec_head_size(const struct mfs_rec *rec);

/*
 * Decode the record in buf[0..len). @len must be exactly the record's
 * length field. Verifies CRC, type, every length and that the payload is
 * consumed exactly. Strings must not contain NUL.
 * Returns 0 on success, -EBADMSG on any malformation.
 */
int mfs_rec_decode(const void *buf, size_t len, struct mfs_rec *ret);

/*
 * mfs_rec_decode() that, on success, also continues the CRC32C *@seg_crc
 * over all len bytes of the record (a segment's running CRC), reading the
 * bytes once for both CRCs. On failure *@seg_crc is unchanged.
 */
int mfs_rec_decode_seg(const void *buf, size_t len, struct mfs_rec *ret, uint32_t *seg_crc);

/*
 * mfs_rec_decode_seg() for records ending in a @tag_len-byte tag (format
 * 2, MFS_REC_F_TAG; 0: no tag, flags must be zero). The CRC covers the
 * tag; the payload ends where the tag starts. The tag itself is not
 * checked here (the reader checks it: segread.c).
 */
int mfs_rec_decode_ext(const void *buf, size_t len, uint32_t tag_len, struct mfs_rec *ret,
		       uint32_t *seg_crc);

/*
 * mfs_rec_decode_ext() for a format-2 segment: a write may also carry
 * MFS_REC_F_ZSTD (its data then stays a frame: rec->zstd_len, see above;
 * mfs_rec_expand() makes it the data).
 */
int mfs_rec_decode_v2(const void *buf, size_t len, uint32_t tag_len, struct mfs_rec *ret,
		      uint32_t *seg_crc);

/*
 * Expand the zstd frame of a decoded write into @buf (@cap >= data_len
 * bytes): rec->data then points there and rec->zstd_len is 0
 * (rec->was_zstd_len keeps the frame's size). The frame must expand to
 * exactly data_len bytes. Returns 0, -EBADMSG if it does not.
 */
int mfs_rec_expand(struct mfs_rec *rec, void *buf, size_t cap);

/*
 * Compress the data of write @rec at zstd level @level into @buf (@cap
 * bytes) when that makes it smaller: rec->data and rec->zstd_len then say
 * so (the caller restores them). Returns 1 compressed, 0 left as it is,
 * -errno.
 */
struct ZSTD_CCtx_s;
int mfs_rec_compress(struct mfs_rec *rec, struct ZSTD_CCtx_s *cctx, int level, void *buf,
		     size_t cap);

/* Format one record as a human-readable line (no newline) into @out. */
void mfs_rec_format(const struct mfs_rec *rec, char *out, size_t cap);

/*
 * The fields of @rec after its path, as a refusal names them, into @out:
 * "offset 0, length 6", "new path 'b', flags 0x0" ("" if none).
 */
void mfs_rec_format_fields(const struct mfs_rec *rec, char *out, size_t cap);

/* Format one record as a JSON object (no newline) into @out. */
void mfs_rec_format_json(const struct mfs_rec *rec, char *out, size_t cap);
