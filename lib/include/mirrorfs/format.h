/* SPDX-License-Identifier: MIT */
/*
 * format.h - the on-disk journal layout, versions 1 and 2.
 *
 * Everything mirrorfs writes that another program reads is defined here;
 * docs/journal-format.md is the prose version. Change both together and
 * bump MFS_FORMAT_VERSION.
 *
 * All integers are little-endian. A segment file is
 *
 *     header (128 bytes) | record | record | ... | [trailer record]
 *
 * Segment header (struct mfs_seg_header, 128 bytes):
 *
 *     0   8  magic "MFSJRNL\n"
 *     8   4  format version (1 or 2)
 *    12   4  header size (128)
 *    16  16  data-set UUID (raw bytes)
 *    32   8  segment sequence number (1, 2, ...)
 *    40   8  first LSN of this segment
 *    48   8  creation time, ns since the Unix epoch
 *    56  68  reserved, zero (version 1)
 *   124   4  CRC32C of bytes 0..123
 *
 * Version 2 gives bytes 56..123 a meaning:
 *
 *    56   4  segment flags (MFS_SEG_F_*), unknown bits rejected
 *    60   4  reserved, zero
 *    64   8  key id (MFS_SEG_F_AUTH), else zero
 *    72  32  previous tag: the tag of the last record before this segment
 *            (the chain value at LSN first-1), zero at a chain's start
 *   104   8  encryption key id (MFS_SEG_F_ENC: the id of the key file), else zero
 *   112  12  reserved, zero
 *
 * Record (struct mfs_rec_header, 32 bytes, then the payload):
 *
 *     0   4  total length, header included (32 .. MFS_REC_MAX)
 *     4   2  type (enum mfs_rec_type)
 *     6   2  flags, zero in version 1; MFS_REC_F_TAG in version 2 when the
 *            segment has MFS_SEG_F_AUTH (and only then)
 *     8   8  LSN
 *    16   8  time, ns since the Unix epoch
 *    24   4  reserved, zero
 *    28   4  CRC32C of bytes 0..27 of the header followed by the payload
 *
 * A tagged record (version 2, MFS_SEG_F_AUTH) ends in a 32-byte tag,
 * counted in its length and covered by its CRC:
 *
 *     tag = BLAKE2b-256(key, 0x02 | chain | bytes 0..27 | bytes 32..len-33)
 *
 * where chain is the previous record's tag, or for a segment's first
 * record (the trailer of an empty one) the seed
 * BLAKE2b-256(key, 0x01 | header bytes 0..123) (which covers the previous
 * segment's last tag). The trailer is tagged too, but the chain value a
 * segment hands on is its last record's tag (prev tag if it has none).
 *
 * A sealed record (MFS_SEG_F_ENC; every record but the trailer) has flag
 * MFS_REC_F_ENC and, in place of its payload P (as it would be unsealed,
 * a ZSTD write's frame included), nonce | ciphertext | MAC:
 *
 *     XChaCha20-Poly1305-IETF(ekey, nonce, P, ad = bytes 0..27 | data-set id)
 *
 * with ekey = BLAKE2b-256(key file's key, 0x03 "mirrorfs encryption key")
 * and a random 24-byte nonce per record (never derived from the LSN or the
 * offset: a record cut off as a torn tail or taken back may be written
 * again with the same LSN at the same offset). Length, CRC and tag cover
 * the sealed bytes (compress, then seal, then tag).
 *
 * The last record of a closed segment is MFS_REC_SEG_CLOSED (the trailer).
 * Its LSN field is the segment's last LSN; it does not consume an LSN.
 * Its payload is struct mfs_seg_trailer: last LSN, record count (trailer
 * excluded) and the CRC32C of every byte of the file before the trailer.
 * Nothing may follow the trailer. A segment without a trailer is the open
 * segment or a torn one.
 *
 * Payload fields (per type: the table in rectype.c, which codec.c encodes
 * and decodes from; docs/journal-format.md):
 *   str16 = u16 length + bytes (no NUL), blob32 = u32 length + bytes.
 */
#pragma once

#include <stdint.h>

#define MFS_SEG_MAGIC "MFSJRNL\n"
#define MFS_SEG_MAGIC_LEN 8
#define MFS_FORMAT_VERSION 1u   /* what a writer writes without version-2 features */
#define MFS_FORMAT_VERSION_2 2u /* authenticated segments */
#define MFS_FORMAT_VERSION_MAX 2u
#define MFS_SEG_F_AUTH (1u << 0) /* version 2: every record is tagged */
#define MFS_SEG_F_ENC (1u << 1)  /* version 2: every record but the trailer is sealed */
#define MFS_SEG_F_KNOWN (MFS_SEG_F_AUTH | MFS_SEG_F_ENC)
#define MFS_REC_F_TAG (1u << 0)  /* version 2: the record ends in a tag */
#define MFS_REC_F_ZSTD (1u << 1) /* version 2, writes: u32 size, blob32 zstd frame */
#define MFS_REC_F_ENC (1u << 2)  /* version 2, MFS_SEG_F_ENC: the payload is sealed */
#define MFS_TAG_SIZE 32u
#define MFS_SEG_HEADER_SIZE 128u
#define MFS_REC_HEADER_SIZE 32u

/* Largest record accepted, header included: a reader never allocates more. */
#define MFS_REC_MAX (64u * 1024u * 1024u + 8192u)
/* Largest data payload of one write record. */
#define MFS_WRITE_MAX (64u * 1024u * 1024u)
/* Longest path in a record (bytes, no NUL), and longest component. */
#define MFS_PATH_MAX 4095u
#define MFS_NAME_MAX 255u
#define MFS_XATTR_NAME_MAX 255u
#define MFS_XATTR_VALUE_MAX 65536u
#define MFS_SNAPSHOT_NAME_MAX 128u

/* Suffix of a closed segment: NNNNNNNNNNNNNNNNNNNN-NNNNNNNNNNNNNNNNNNNN.mfsj
 * (first LSN, last LSN, 20 decimal digits each). */
#define MFS_SEG_SUFFIX ".mfsj"
#define MFS_SEG_NAME_LEN (20 + 1 + 20 + 5)

struct mfs_seg_header {
	uint8_t magic[8];
	uint32_t version;
	uint32_t header_size;
	uint8_t uuid[16];
	uint64_t seg_no;
	uint64_t first_lsn;
	uint64_t created_ns;
	uint8_t reserved[68];
	uint32_t crc;
};
_Static_assert(sizeof(struct mfs_seg_header) == MFS_SEG_HEADER_SIZE, "segment header size");

struct mfs_rec_header {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint64_t lsn;
	uint64_t time_ns;
	uint32_t reserved;
	uint32_t crc;
};
_Static_assert(sizeof(struct mfs_rec_header) == MFS_REC_HEADER_SIZE, "record header size");

struct mfs_seg_trailer {
	uint64_t last_lsn;
	uint64_t rec_count;
	uint32_t seg_crc;
	uint32_t reserved;
};
_Static_assert(sizeof(struct mfs_seg_trailer) == 24, "trailer size");

/* Record types. Numbers are part of the format: never renumber. */
enum mfs_rec_type {
	MFS_REC_WRITE = 1,	 /* path, u64 offset, blob32 data */
	MFS_REC_TRUNCATE = 2,	 /* path, u64 size */
	MFS_REC_FALLOCATE = 3,	 /* path, u32 mode (FALLOC_FL_*), u64 offset, u64 length */
	MFS_REC_MKNOD = 4,	 /* path, u32 mode (with S_IFMT), u64 rdev, u32 uid, u32 gid */
	MFS_REC_MKDIR = 5,	 /* path, u32 mode, u32 uid, u32 gid */
	MFS_REC_UNLINK = 6,	 /* path */
	MFS_REC_RMDIR = 7,	 /* path */
	MFS_REC_RENAME = 8,	 /* path, path2 (new), u32 flags (RENAME_*) */
	MFS_REC_LINK = 9,	 /* path (existing), path2 (new name) */
	MFS_REC_SYMLINK = 10,	 /* path (the link), str16 target, u32 uid, u32 gid */
	MFS_REC_CHMOD = 11,	 /* path, u32 mode (permission bits) */
	MFS_REC_CHOWN = 12,	 /* path, u32 uid, u32 gid ((u32)-1 = unchanged) */
	MFS_REC_UTIMENS = 13,	 /* path, i64 atime s, u32 ns, i64 mtime s, u32 ns (UTIME_OMIT kept) */
	MFS_REC_SETXATTR = 14,	 /* path, str16 name, u32 flags (XATTR_*), blob32 value */
	MFS_REC_REMOVEXATTR = 15, /* path, str16 name */
	MFS_REC_SNAPSHOT = 64,	 /* marker: str16 snapshot name */
	MFS_REC_CHECKPOINT = 65, /* marker: u64 LSN up to which backing files are durable */
	MFS_REC_SEG_CLOSED = 66, /* trailer: struct mfs_seg_trailer, always last */
};
