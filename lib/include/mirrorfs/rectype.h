/* SPDX-License-Identifier: MIT */
/*
 * rectype.h - the table of record types: for each type its name, the
 * fields its payload carries after the path (in payload order), their
 * limits and checks, how they are shown, and an example value.
 *
 * The codec encodes, decodes and formats every type from this table; the
 * replay checks, the preflight, the segment writer (which types carry a
 * blob, which may be compressed), crash recovery's redo pass (fs/redo.c:
 * which types change names), mirrorctl sample, the mkseg test helper and
 * the fuzz seeds read it too. Adding a record type is: its number in
 * format.h, its row in lib/rectype.c, what applying it means
 * (lib/replay_ops.c), the fs/ call site that journals it, the docs and
 * its tests. The table is not the format: the byte layout it produces is
 * format.h's, and must not change for an existing type.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mirrorfs/format.h"

struct mfs_rec;
struct mfs_rec_fields;

/* How a field is stored. */
enum mfs_fld_kind {
	MFS_FLD_END = 0, /* ends a type's field list */
	MFS_FLD_U32, /* u32 */
	MFS_FLD_U64, /* u64 */
	MFS_FLD_TIME, /* i64 seconds (at off), u32 nanoseconds (at off2) */
	MFS_FLD_STR, /* str16 of 1..max bytes without NUL, in rec->path2 */
	MFS_FLD_BLOB, /* blob32 of 0..max bytes: rec->data, rec->data_len; always last */
	MFS_FLD_TRAILER, /* struct mfs_seg_trailer: u64, u64, u32, u32 zero */
};

/* How dump (and a refusal) shows a number. */
enum mfs_fld_show {
	MFS_SHOW_DEC = 0, /* 42 */
	MFS_SHOW_SIGNED, /* -1 (a u32 as int32) */
	MFS_SHOW_OCT, /* 0644 */
	MFS_SHOW_HEX, /* 0x3 */
};

/* What the replay checks ask of a field beyond its kind's limits. */
enum mfs_fld_rule {
	MFS_RULE_NONE = 0,
	MFS_RULE_PATH, /* STR: a record path, checked like the path ("new path") */
	MFS_RULE_SIZE, /* U64: at most INT64_MAX */
	MFS_RULE_RANGE, /* BLOB: offset + data_len at most INT64_MAX */
	MFS_RULE_NSEC, /* TIME: nanoseconds below 10^9, or UTIME_NOW/UTIME_OMIT */
};

struct mfs_rec_field {
	uint8_t kind, show, rule; /* enum mfs_fld_kind, _show, _rule */
	uint16_t off, off2; /* offsetof(struct mfs_rec, ...); TIME: off2 = nanoseconds */
	uint32_t max; /* STR, BLOB: most bytes */
	const char *label; /* the key dump shows it under: "offset" */
	const char *what; /* how a refusal names it (NULL: label) */
	const char *example; /* STR, BLOB: an example value */
	uint64_t ex; /* numbers: an example value (TIME: the seconds) */
};

#define MFS_RT_MARKER (1u << 0) /* no path, changes no data (snapshot, checkpoint, trailer) */
#define MFS_RT_DATA (1u << 1) /* changes a regular file's bytes or size, up to mfs_rec_end() */
#define MFS_RT_ZSTD (1u << 2) /* format 2: its blob may be a zstd frame (MFS_REC_F_ZSTD) */
#define MFS_RT_TRAILER (1u << 3) /* a segment's trailer: never applied */
#define MFS_RT_NAMES (1u << 4) /* makes or removes a name: its parent directory changes */

#define MFS_REC_FIELDS_MAX 4

struct mfs_rec_type_info {
	const char *name; /* "write", as dump and mkseg spell it */
	uint32_t flags; /* MFS_RT_* */
	/* the type's own rule over its fields together, "field: problem" (NULL: none) */
	const char *(*why)(const struct mfs_rec *rec);
	struct mfs_rec_field fields[MFS_REC_FIELDS_MAX + 1]; /* payload order, then MFS_FLD_END */
};

/* The row of @type, or NULL if this version does not know it. */
const struct mfs_rec_type_info *mfs_rec_type_info(uint32_t type);

/* The known type after @type in number order (0: the first), or 0 after the last. */
uint32_t mfs_rec_type_next(uint32_t type);

/* The type named @name. Returns 0 on success, -EINVAL if there is none. */
int mfs_rec_type_from_name(const char *name, uint32_t *ret_type);

/* Whether @type's payload ends in a blob (rec->data). */
bool mfs_rec_type_has_blob(uint32_t type);

/* Whether @type changes a regular file's bytes or size (MFS_RT_DATA). */
bool mfs_rec_type_is_data(uint32_t type);

/* Whether @type carries a second record path (rename, link: path2 is checked as a path). */
bool mfs_rec_type_has_path2(uint32_t type);

/* Whether @type makes or removes a name (MFS_RT_NAMES): the directory holding
 * its path (and its second path, if it has one) changes. */
bool mfs_rec_type_changes_names(uint32_t type);

/* Field @f of @rec: as a number (TIME: the seconds; STR, BLOB: 0), or its string (NULL). */
uint64_t mfs_rec_field_get(const struct mfs_rec_fields *rec, const struct mfs_rec_field *f);
void mfs_rec_field_set(struct mfs_rec_fields *rec, const struct mfs_rec_field *f, uint64_t v);

/*
 * Where a data record (MFS_RT_DATA) ends: offset (if it has one) plus the
 * length or data it carries, 0 if that is 0. 0 for other types. The sum
 * may wrap: a caller comparing it with a limit also checks end >= offset.
 */
uint64_t mfs_rec_end(const struct mfs_rec_fields *rec);

/*
 * Set every field @type carries in @rec to the table's example value,
 * and rec->type (nothing else: path, LSN and time are the caller's). The
 * example passes the replay checks once a path is set.
 */
void mfs_rec_example(uint32_t type, struct mfs_rec *rec);
