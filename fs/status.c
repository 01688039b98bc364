/* SPDX-License-Identifier: MIT */
/*
 * status.c - the status JSON (.mirrorfs/status and ctl "status"): what
 * the journal (journal.c), the pending writes (pending.c), the lock
 * (lock.c) and the snapshots (snap.c) report, put together in one line.
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "mirrorfs/jdir.h"
#include "mirrorfs/json.h"
#include "mirrorfs/macro.h"

int fs_status_json(struct fs *fs, char **ret)
{
	struct fs_journal_info in;
	_cleanup_free_ char *snaps = NULL;
	char *out, lockjson[192], closed[PATH_MAX + 16], jpath[6 * (PATH_MAX + 16)],
	     dpath[6 * (PATH_MAX + 16)];
	int r;

	r = fs_journal_info(fs, &in);
	if (r < 0)
		return r;
	fs_lock_status(fs, lockjson, sizeof(lockjson));
	if (fs_snap_json(fs, &snaps) < 0)
		return -ENOMEM;
	/* the real closed-segments folder: a shipper can watch it with inotify
	 * (the kernel reports nothing for segments appearing on the mount) */
	snprintf(closed, sizeof(closed), "%s/" MFS_JDIR_CLOSED, in.path);
	mfs_json_str(closed, false, jpath, sizeof(jpath));
	/* the data folder: `mirrorctl backup` reads the snapshot store there */
	mfs_json_str(fs->opt.data_dir, false, dpath, sizeof(dpath));
	r = asprintf(&out,
		     "{\"dataset\":\"%s\",\"first_lsn\":%" PRIu64 ",\"last_lsn\":%" PRIu64
		     ",\"durable_lsn\":%" PRIu64 ",\"checkpoint_lsn\":%" PRIu64
		     ",\"open_segment\":\"%s\",\"open_segment_seq\":%" PRIu64
		     ",\"open_segment_first_lsn\":%" PRIu64 ",\"open_segment_size\":%" PRIu64
		     ",\"open_segment_records\":%" PRIu64 ",\"segments\":%zu,\"segments_bytes\":%" PRIu64
		     ",\"journal_syncs\":%" PRIu64 ",\"journal_sync_requests\":%" PRIu64
		     ",\"pending_bytes\":%" PRIu64
		     ",%s,\"failed\":%s,\"journal_path\":%s,\"data_dir\":%s"
		     ",\"snapshots\":%s"
		     ",\"format\":%u,\"auth_key_id\":\"%s\",\"encrypt_key_id\":\"%s\"}\n",
		     in.dataset, in.first_lsn, in.last_lsn, in.durable_lsn, in.checkpoint_lsn,
		     in.open_segment, in.open_segment_seq, in.open_segment_first_lsn,
		     in.open_segment_size, in.open_segment_records, in.segments, in.segments_bytes,
		     in.syncs, in.sync_requests, fs_pending_bytes(fs), lockjson,
		     atomic_load(&fs->failed) ? "true" : "false", jpath, dpath, snaps, in.format,
		     in.auth_key_id, in.encrypt_key_id);
	if (r < 0)
		return -ENOMEM;
	*ret = out;
	return 0;
}
