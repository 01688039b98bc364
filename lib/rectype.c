/* SPDX-License-Identifier: MIT */
/*
 * rectype.c - the table of record types (rectype.h): one row per type,
 * its fields in payload order with their limits, checks, labels and
 * example values, and the rules a type keeps over its fields together.
 *
 * Numbers of the table are the format's (format.h): a row's field order
 * is its payload order, byte for byte.
 */
#include "mirrorfs/rectype.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/falloc.h>

#include "mirrorfs/macro.h"
#include "mirrorfs/record.h"

/* ================================================================ the rules */

static bool range_ok(uint64_t off, uint64_t len)
{
	return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

/*
 * The file types a MKNOD record may make: what mknod(2) makes, as the
 * primary accepted it. Device nodes are replicated (with their rdev): the
 * engine never opens anything but a regular file for writing, so a device
 * node cannot be used to write to a device.
 */
static bool mknod_type_ok(uint32_t type)
{
	return type == 0 || type == S_IFREG || type == S_IFIFO || type == S_IFSOCK ||
	       type == S_IFCHR || type == S_IFBLK;
}

static const char *mknod_why(const struct mfs_rec *rec)
{
	uint32_t type = rec->mode & S_IFMT;

	if (rec->mode & ~(S_IFMT | 07777u))
		return "mode: bits outside the file type and permissions";
	if (!mknod_type_ok(type))
		return "mode: not a file type mknod makes";
	if ((type == S_IFCHR || type == S_IFBLK) && rec->rdev != (uint64_t)(dev_t)rec->rdev)
		return "rdev: out of range";
	return NULL;
}

static const char *mkdir_why(const struct mfs_rec *rec)
{
	uint32_t type = rec->mode & S_IFMT;

	if (rec->mode & ~(S_IFMT | 07777u) || (type != 0 && type != S_IFDIR))
		return "mode: not a directory mode";
	return NULL;
}

static const char *fallocate_why(const struct mfs_rec *rec)
{
	const uint32_t fl_ok = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;

	if (rec->mode & ~fl_ok)
		return "mode: unknown or not idempotent (collapse/insert range)";
	if (rec->length == 0 || !range_ok(rec->offset, rec->length))
		return "offset/length: out of range";
	if ((rec->mode & FALLOC_FL_PUNCH_HOLE) && !(rec->mode & FALLOC_FL_KEEP_SIZE))
		return "mode: punch-hole without keep-size";
	return NULL;
}

static const char *rename_why(const struct mfs_rec *rec)
{
	if (rec->flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    rec->flags == (RENAME_NOREPLACE | RENAME_EXCHANGE))
		return "flags: unknown or contradictory";
	return NULL;
}

/* CHMOD needs no rule: only the permission bits are applied. */

/* ================================================================ the table */

/* One row a type, one entry a field: laid out by hand. */
/* clang-format off */
#define OFF(m) ((uint16_t)offsetof(struct mfs_rec, m))
#define NUM(k, m, sh, lbl, x) { .kind = (k), .show = (sh), .off = OFF(m), .label = (lbl), .ex = (x) }
#define U32(m, sh, lbl, x) NUM(MFS_FLD_U32, m, sh, lbl, x)
#define U64(m, lbl, x) NUM(MFS_FLD_U64, m, MFS_SHOW_DEC, lbl, x)
#define UID U32(uid, MFS_SHOW_DEC, "uid", 1000)
#define GID U32(gid, MFS_SHOW_DEC, "gid", 1000)
#define TIME(s, ns, lbl, x)                                                                        \
	{ .kind = MFS_FLD_TIME, .rule = MFS_RULE_NSEC, .off = OFF(s), .off2 = OFF(ns),            \
	  .label = (lbl), .what = "nanoseconds", .ex = (x) }
#define STR(mx, rl, lbl, wh, x)                                                                    \
	{ .kind = MFS_FLD_STR, .rule = (rl), .off = OFF(path2), .max = (mx), .label = (lbl),     \
	  .what = (wh), .example = (x) }
#define BLOB(mx, rl, wh, x)                                                                        \
	{ .kind = MFS_FLD_BLOB, .rule = (rl), .off = OFF(data), .max = (mx), .label = "length",  \
	  .what = (wh), .example = (x) }

static const struct mfs_rec_type_info types[] = {
	[MFS_REC_WRITE] = { "write", MFS_RT_DATA | MFS_RT_ZSTD, NULL,
			    { U64(offset, "offset", 8192),
			      BLOB(MFS_WRITE_MAX, MFS_RULE_RANGE, "data", "database page contents") } },
	[MFS_REC_TRUNCATE] = { "truncate", MFS_RT_DATA, NULL,
			       { { .kind = MFS_FLD_U64, .rule = MFS_RULE_SIZE, .off = OFF(length),
				   .label = "size", .ex = 4096 } } },
	[MFS_REC_FALLOCATE] = { "fallocate", MFS_RT_DATA, fallocate_why,
				{ U32(mode, MFS_SHOW_HEX, "mode", FALLOC_FL_KEEP_SIZE),
				  U64(offset, "offset", 8192), U64(length, "length", 4096) } },
	[MFS_REC_MKNOD] = { "mknod", MFS_RT_NAMES, mknod_why,
			    { U32(mode, MFS_SHOW_OCT, "mode", S_IFIFO | 0644), U64(rdev, "rdev", 0),
			      UID, GID } },
	[MFS_REC_MKDIR] = { "mkdir", MFS_RT_NAMES, mkdir_why,
			    { U32(mode, MFS_SHOW_OCT, "mode", 0755), UID, GID } },
	[MFS_REC_UNLINK] = { "unlink", MFS_RT_NAMES, NULL, { { 0 } } },
	[MFS_REC_RMDIR] = { "rmdir", MFS_RT_NAMES, NULL, { { 0 } } },
	[MFS_REC_RENAME] = { "rename", MFS_RT_NAMES, rename_why,
			     { STR(MFS_PATH_MAX, MFS_RULE_PATH, "to", "new path", "pg/base/new"),
			       U32(flags, MFS_SHOW_HEX, "flags", 0) } },
	[MFS_REC_LINK] = { "link", MFS_RT_NAMES, NULL,
			   { STR(MFS_PATH_MAX, MFS_RULE_PATH, "to", "new path", "pg/base/new") } },
	[MFS_REC_SYMLINK] = { "symlink", MFS_RT_NAMES, NULL,
			      { STR(MFS_PATH_MAX, MFS_RULE_NONE, "target", NULL, "../target"), UID,
				GID } },
	[MFS_REC_CHMOD] = { "chmod", 0, NULL, { U32(mode, MFS_SHOW_OCT, "mode", 0644) } },
	[MFS_REC_CHOWN] = { "chown", 0, NULL,
			    { U32(uid, MFS_SHOW_SIGNED, "uid", 1000),
			      U32(gid, MFS_SHOW_SIGNED, "gid", 1000) } },
	[MFS_REC_UTIMENS] = { "utimens", 0, NULL,
			      { TIME(atime_sec, atime_nsec, "atime", 1763900000),
				TIME(mtime_sec, mtime_nsec, "mtime", 1763900001) } },
	[MFS_REC_SETXATTR] = { "setxattr", 0, NULL,
			       { STR(MFS_XATTR_NAME_MAX, MFS_RULE_NONE, "name", "xattr name",
				     "user.comment"),
				 U32(flags, MFS_SHOW_HEX, "flags", 0),
				 BLOB(MFS_XATTR_VALUE_MAX, MFS_RULE_NONE, "value", "v") } },
	[MFS_REC_REMOVEXATTR] = { "removexattr", 0, NULL,
				  { STR(MFS_XATTR_NAME_MAX, MFS_RULE_NONE, "name", "xattr name",
					"user.comment") } },
	[MFS_REC_SNAPSHOT] = { "snapshot", MFS_RT_MARKER, NULL,
			       { STR(MFS_SNAPSHOT_NAME_MAX, MFS_RULE_NONE, "snapshot", NULL,
				     "nightly") } },
	[MFS_REC_CHECKPOINT] = { "checkpoint", MFS_RT_MARKER, NULL,
				 { U64(length, "durable_lsn", 16) } },
	[MFS_REC_SEG_CLOSED] = { "segment-closed", MFS_RT_MARKER | MFS_RT_TRAILER, NULL,
				 { { .kind = MFS_FLD_TRAILER, .off = OFF(trailer) } } },
};
/* clang-format on */

/* Numbers are read and written through struct mfs_rec_fields: the offsets must agree. */
_Static_assert(offsetof(struct mfs_rec, fields) == 0, "record fields first");
_Static_assert(offsetof(struct mfs_rec, mtime_nsec) == offsetof(struct mfs_rec_fields, mtime_nsec),
	       "record field offsets");

/* ================================================================ lookups */

const struct mfs_rec_type_info *mfs_rec_type_info(uint32_t type)
{
	if (type >= ARRAY_SIZE(types) || !types[type].name)
		return NULL;
	return &types[type];
}

uint32_t mfs_rec_type_next(uint32_t type)
{
	for (uint32_t t = type + 1; t < ARRAY_SIZE(types); t++)
		if (types[t].name)
			return t;
	return 0;
}

int mfs_rec_type_from_name(const char *name, uint32_t *ret_type)
{
	for (uint32_t t = mfs_rec_type_next(0); t; t = mfs_rec_type_next(t))
		if (!strcmp(types[t].name, name)) {
			*ret_type = t;
			return 0;
		}
	return -EINVAL;
}

/* The field of @type of kind @kind, or NULL. */
static const struct mfs_rec_field *find_kind(uint32_t type, unsigned kind)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info(type);

	for (const struct mfs_rec_field *f = ti ? ti->fields : NULL; f && f->kind; f++)
		if (f->kind == kind)
			return f;
	return NULL;
}

bool mfs_rec_type_has_blob(uint32_t type)
{
	return find_kind(type, MFS_FLD_BLOB);
}

bool mfs_rec_type_is_data(uint32_t type)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info(type);

	return ti && (ti->flags & MFS_RT_DATA);
}

bool mfs_rec_type_has_path2(uint32_t type)
{
	const struct mfs_rec_field *f = find_kind(type, MFS_FLD_STR);

	return f && f->rule == MFS_RULE_PATH;
}

bool mfs_rec_type_changes_names(uint32_t type)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info(type);

	return ti && (ti->flags & MFS_RT_NAMES);
}

/* ================================================================ values */

uint64_t mfs_rec_field_get(const struct mfs_rec_fields *rec, const struct mfs_rec_field *f)
{
	const char *p = (const char *)rec + f->off;

	switch (f->kind) {
	case MFS_FLD_U32:
		return *(const uint32_t *)(const void *)p;
	case MFS_FLD_U64:
		return *(const uint64_t *)(const void *)p;
	case MFS_FLD_TIME:
		return (uint64_t) * (const int64_t *)(const void *)p;
	default:
		return 0;
	}
}

void mfs_rec_field_set(struct mfs_rec_fields *rec, const struct mfs_rec_field *f, uint64_t v)
{
	char *p = (char *)rec + f->off;

	switch (f->kind) {
	case MFS_FLD_U32:
		*(uint32_t *)(void *)p = (uint32_t)v;
		break;
	case MFS_FLD_U64:
		*(uint64_t *)(void *)p = v;
		break;
	case MFS_FLD_TIME:
		*(int64_t *)(void *)p = (int64_t)v;
		break;
	default:
		break;
	}
}

uint64_t mfs_rec_end(const struct mfs_rec_fields *rec)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info(rec->type);
	uint64_t off = 0, len = 0;

	if (!ti || !(ti->flags & MFS_RT_DATA))
		return 0;
	for (const struct mfs_rec_field *f = ti->fields; f->kind; f++) {
		if (f->off == OFF(offset))
			off = rec->offset;
		else if (f->off == OFF(length))
			len = rec->length;
		else if (f->kind == MFS_FLD_BLOB)
			len = rec->data_len;
	}
	return len ? off + len : 0;
}

void mfs_rec_example(uint32_t type, struct mfs_rec *rec)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info(type);

	rec->type = (enum mfs_rec_type)type;
	for (const struct mfs_rec_field *f = ti ? ti->fields : NULL; f && f->kind; f++) {
		if (f->kind == MFS_FLD_STR) {
			snprintf(rec->path2, sizeof(rec->path2), "%s", f->example);
		} else if (f->kind == MFS_FLD_BLOB) {
			rec->data = f->example;
			rec->data_len = (uint32_t)strlen(f->example);
		} else if (f->kind == MFS_FLD_TIME) {
			mfs_rec_field_set(&rec->fields, f, f->ex);
			*(uint32_t *)(void *)((char *)rec + f->off2) = 5;
		} else {
			mfs_rec_field_set(&rec->fields, f, f->ex);
		}
	}
}
