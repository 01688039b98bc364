/* SPDX-License-Identifier: MIT */
/*
 * replay_check.c - the checks every record passes before it is applied:
 * paths (relative, no "..", not the reserved .mirrorfs, within limits),
 * fields (modes, flags, sizes) and the record as a whole.
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

/*
 * The file types a MKNOD record may make: what mknod(2) makes, as the
 * primary accepted it. Device nodes are replicated (with their rdev): the
 * engine never opens anything but a regular file for writing (file_get),
 * so a device node cannot be used to write to a device.
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

/* Why the fields of @rec (after the path) are refused, as "field: problem" (NULL: they are not). */
static const char *fields_why(const struct mfs_rec *rec)
{
	switch (rec->type) {
	case MFS_REC_WRITE:
		if (rec->data_len > MFS_WRITE_MAX || (!rec->data && rec->data_len))
			return "data: longer than the format allows";
		return range_ok(rec->offset, rec->data_len) ? NULL : "offset: out of range";
	case MFS_REC_TRUNCATE:
		return rec->length <= (uint64_t)INT64_MAX ? NULL : "size: out of range";
	case MFS_REC_FALLOCATE:
		return fallocate_why(rec);
	case MFS_REC_MKNOD:
		return mknod_why(rec);
	case MFS_REC_MKDIR:
		return !(rec->mode & ~(S_IFMT | 07777u)) &&
				       ((rec->mode & S_IFMT) == 0 || (rec->mode & S_IFMT) == S_IFDIR) ?
			       NULL :
			       "mode: not a directory mode";
	case MFS_REC_RENAME:
		if (path_why(rec->path2))
			return "new path: refused";
		return !(rec->flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) &&
				       rec->flags != (RENAME_NOREPLACE | RENAME_EXCHANGE) ?
			       NULL :
			       "flags: unknown or contradictory";
	case MFS_REC_LINK:
		return path_why(rec->path2) ? "new path: refused" : NULL;
	case MFS_REC_SYMLINK:
		return rec->path2[0] != '\0' && strlen(rec->path2) <= MFS_PATH_MAX ?
			       NULL :
			       "target: empty or too long";
	case MFS_REC_UTIMENS:
		return nsec_ok(rec->atime_nsec) && nsec_ok(rec->mtime_nsec) ?
			       NULL :
			       "nanoseconds: out of range";
	case MFS_REC_SETXATTR:
		if (rec->data_len > MFS_XATTR_VALUE_MAX || (!rec->data && rec->data_len))
			return "value: longer than the format allows";
		return NULL;
	default:
		return NULL; /* CHMOD: only the permission bits are applied */
	}
}

/*
 * Why @rec is refused (NULL: it is not); @ret_path2 says the reason is
 * about path2, *ret_field names the field when the reason does not ("path").
 */
static const char *check_why(const struct mfs_rec *rec, bool *ret_path2, const char **ret_field)
{
	const char *why;

	*ret_path2 = false;
	*ret_field = NULL;
	if (!rec || !mfs_rec_type_is_valid((uint32_t)rec->type) || rec->type == MFS_REC_SEG_CLOSED)
		return "type: not a record type to apply";
	if (mfs_rec_type_is_marker(rec->type))
		return NULL;
	why = path_why(rec->path);
	if (why) {
		*ret_field = "path: ";
		return why;
	}
	if ((rec->type == MFS_REC_SETXATTR || rec->type == MFS_REC_REMOVEXATTR) &&
	    (rec->path2[0] == '\0' || strlen(rec->path2) > MFS_XATTR_NAME_MAX))
		return "xattr name: empty or too long";
	why = fields_why(rec);
	*ret_path2 = why && (rec->type == MFS_REC_RENAME || rec->type == MFS_REC_LINK) &&
		     !strncmp(why, "new path", 8);
	if (*ret_path2) {
		why = path_why(rec->path2);
		*ret_field = "new path: ";
	}
	return why;
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
	snprintf(buf, size, "%s: %s%s", name, field ?: "", why);
	return -EINVAL;
}

/* The fields of @rec besides its path, "(offset 0, length 6)", into @buf ("" if none). */
void replay_rec_fields(const struct mfs_rec *rec, char *buf, size_t size)
{
	switch (rec->type) {
	case MFS_REC_WRITE:
		snprintf(buf, size, " (offset %" PRIu64 ", length %" PRIu32 ")", rec->offset,
			 rec->data_len);
		break;
	case MFS_REC_TRUNCATE:
		snprintf(buf, size, " (size %" PRIu64 ")", rec->length);
		break;
	case MFS_REC_FALLOCATE:
		snprintf(buf, size, " (mode 0x%" PRIx32 ", offset %" PRIu64 ", length %" PRIu64 ")",
			 rec->mode, rec->offset, rec->length);
		break;
	case MFS_REC_MKNOD:
	case MFS_REC_MKDIR:
	case MFS_REC_CHMOD:
		snprintf(buf, size, " (mode 0%" PRIo32 ")", rec->mode);
		break;
	case MFS_REC_CHOWN:
		snprintf(buf, size, " (uid %" PRIu32 ", gid %" PRIu32 ")", rec->uid, rec->gid);
		break;
	case MFS_REC_RENAME:
	case MFS_REC_LINK:
		snprintf(buf, size, " (new path '%.200s')", rec->path2);
		break;
	case MFS_REC_SYMLINK:
		snprintf(buf, size, " (target '%.200s')", rec->path2);
		break;
	case MFS_REC_SETXATTR:
		snprintf(buf, size, " (name '%.200s', value %" PRIu32 " bytes)", rec->path2,
			 rec->data_len);
		break;
	case MFS_REC_REMOVEXATTR:
		snprintf(buf, size, " (name '%.200s')", rec->path2);
		break;
	default:
		buf[0] = '\0';
	}
}
