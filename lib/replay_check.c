/* SPDX-License-Identifier: MIT */
/*
 * replay_check.c - the checks every record passes before it is applied:
 * paths (relative, no "..", not the reserved .mirrorfs, within limits),
 * fields (modes, flags, sizes) and the record as a whole. Each field's
 * limit and rule, and a type's own rule over its fields, are rows of the
 * record type table (rectype.c); this file applies them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>

#include <liburing.h>

#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/path.h"
#include "mirrorfs/segment.h"
#include "mirrorfs/sigbus.h"
#include "replay_i.h"


/* ================================================================ checks */

/* Why @path is refused (NULL: it is not). */
static const char *path_why(const char *path)
{
	size_t n = strlen(RESERVED_NAME);

	if (!mfs_path_is_valid(path))
		return path[0] == '/' ? "absolute" : "not a clean relative path (empty, '.', '..', "
						     "'//' or a name over 255 bytes)";
	if (strncmp(path, RESERVED_NAME, n) == 0 && (path[n] == '\0' || path[n] == '/'))
		return "the reserved name '" RESERVED_NAME "'";
	return NULL;
}

static bool nsec_ok(uint32_t ns)
{
	return ns < 1000000000u || ns == UTIME_OMIT || ns == UTIME_NOW;
}

static bool range_ok(uint64_t off, uint64_t len)
{
	return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

/* Why field @f of @rec is refused, "problem" about the field f->what names (NULL: it is not). */
static const char *field_why(const struct mfs_rec *rec, const struct mfs_rec_field *f)
{
	const char *s = (const char *)rec + f->off;
	uint32_t ns;

	switch (f->kind) {
	case MFS_FLD_STR:
		if (f->rule == MFS_RULE_PATH)
			return path_why(s);
		return s[0] && strlen(s) <= f->max ? NULL : "empty or too long";
	case MFS_FLD_BLOB:
		if (rec->data_len > f->max || (!rec->data && rec->data_len))
			return "longer than the format allows";
		return NULL;
	case MFS_FLD_U64:
		if (f->rule == MFS_RULE_SIZE && mfs_rec_field_get(&rec->fields, f) > INT64_MAX)
			return "out of range";
		return NULL;
	case MFS_FLD_TIME:
		ns = *(const uint32_t *)(const void *)((const char *)rec + f->off2);
		return f->rule == MFS_RULE_NSEC && !nsec_ok(ns) ? "out of range" : NULL;
	default:
		return NULL;
	}
}

/*
 * Why the fields of @rec (after the path) are refused (NULL: they are
 * not): *ret_field names the field the reason is about, or is NULL when
 * the reason says it itself ("mode: ..."); *ret_path2 says it is path2.
 */
static const char *fields_why(const struct mfs_rec *rec, bool *ret_path2, const char **ret_field)
{
	const struct mfs_rec_type_info *ti = mfs_rec_type_info((uint32_t)rec->type);
	const char *why;

	for (const struct mfs_rec_field *f = ti->fields; f->kind; f++) {
		why = field_why(rec, f);
		if (why) {
			*ret_path2 = f->rule == MFS_RULE_PATH;
			*ret_field = f->what ?: f->label;
			return why;
		}
		if (f->rule == MFS_RULE_RANGE && !range_ok(rec->offset, rec->data_len))
			return "offset: out of range";
	}
	return ti->why ? ti->why(rec) : NULL;
}

/*
 * Why @rec is refused (NULL: it is not); @ret_path2 says the reason is
 * about path2, *ret_field names the field when the reason does not ("path").
 */
static const char *check_why(const struct mfs_rec *rec, bool *ret_path2, const char **ret_field)
{
	const struct mfs_rec_type_info *ti = rec ? mfs_rec_type_info((uint32_t)rec->type) : NULL;
	const char *why;

	*ret_path2 = false;
	*ret_field = NULL;
	if (!ti || (ti->flags & MFS_RT_TRAILER))
		return "type: not a record type to apply";
	if (ti->flags & MFS_RT_MARKER)
		return NULL;
	why = path_why(rec->path);
	if (why) {
		*ret_field = "path";
		return why;
	}
	return fields_why(rec, ret_path2, ret_field);
}

int mfs_replay_check(const struct mfs_rec *rec)
{
	const char *field;
	bool p2;

	return check_why(rec, &p2, &field) ? -EINVAL : 0;
}

/* "LSN 7 mknod 'dev/x'" into @buf. */
static void rec_name(const struct mfs_rec *rec, bool path2, char *buf, size_t size)
{
	snprintf(buf, size, "LSN %" PRIu64 " %s '%.200s'%s%.200s%s", rec->lsn,
		 mfs_rec_type_name(rec->type) ?: "?", rec->path, path2 ? " -> '" : "",
		 path2 ? rec->path2 : "", path2 ? "'" : "");
}

int mfs_replay_check_why(const struct mfs_rec *rec, char *buf, size_t size)
{
	char name[512];
	const char *why, *field;
	bool p2;

	why = check_why(rec, &p2, &field);
	if (!why)
		return 0;
	if (!rec) {
		snprintf(buf, size, "%s", why);
		return -EINVAL;
	}
	rec_name(rec, p2, name, sizeof(name));
	snprintf(buf, size, "%s: %s%s%s", name, field ?: "", field ? ": " : "", why);
	return -EINVAL;
}

/* The fields of @rec besides its path, "(offset 0, length 6)", into @buf ("" if none). */
void replay_rec_fields(const struct mfs_rec *rec, char *buf, size_t size)
{
	char f[256];

	mfs_rec_format_fields(rec, f, sizeof(f));
	if (f[0])
		snprintf(buf, size, " (%s)", f);
	else
		buf[0] = '\0';
}
