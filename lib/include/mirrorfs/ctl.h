/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - the control file protocol between mirrorctl and mirrorfs.
 *
 * MOUNTPOINT/.mirrorfs/ctl is a virtual file. A client opens it O_RDWR,
 * writes one command line, then reads the reply from the same descriptor:
 *   "ok[ TEXT]\n"            success (TEXT e.g. the closed segment's name)
 *   "err ERRNO MESSAGE\n"    failure (ERRNO a positive errno number)
 * Commands: "rotate", "checkpoint", "lock [TIMEOUT_MS]", "unlock",
 * "snapshot create NAME", "snapshot delete NAME", "snapshot list".
 * A lock taken through a descriptor is released when that descriptor is
 * closed (so a lock whose holder dies is released). Only the mount's owner
 * and root may write commands; others get EPERM.
 */
#pragma once

#define MFS_CTL_DIR ".mirrorfs"
#define MFS_CTL_FILE ".mirrorfs/ctl"
#define MFS_STATUS_FILE ".mirrorfs/status"
/* The snapshot store in a data folder (fs/snap_i.h, formats in cowmap.h):
 * NAME/{meta,tree/,cow/,broken} */
#define MFS_SNAPSHOT_STORE ".mirrorfs/snapshots"
#define MFS_CTL_REPLY_MAX 65536

/*
 * The one writer of replies (mirrorfs): the reply line into *@ret
 * (malloc'd). mfs_ctl_ok: "ok\n" when @fmt is NULL, else "ok TEXT\n".
 * mfs_ctl_err: "err ERR MESSAGE\n" (@err a positive errno).
 * mfs_ctl_errno: "err ERR MESSAGE: DESCRIPTION\n", the description of
 * @err as strerror gives it ("err ERR DESCRIPTION\n" when @fmt is NULL).
 * Return 0 or -ENOMEM (*@ret untouched).
 */
int mfs_ctl_ok(char **ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int mfs_ctl_err(char **ret, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int mfs_ctl_errno(char **ret, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * The one reader of replies (mirrorctl): 0 for "ok", the positive errno of
 * an "err" reply (EIO if it names none), -EBADMSG for anything else. The
 * text after "ok " or after the errno number goes to *@ret_text (a
 * pointer into @reply, its final newline kept).
 */
int mfs_ctl_parse(const char *reply, const char **ret_text);
