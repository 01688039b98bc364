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
/* The snapshot store in a data folder (fs/snap.c): NAME/{meta,tree/,cow/,broken} */
#define MFS_SNAPSHOT_STORE ".mirrorfs/snapshots"
#define MFS_CTL_REPLY_MAX 65536
