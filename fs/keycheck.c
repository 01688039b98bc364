/* SPDX-License-Identifier: MIT */
/*
 * keycheck.c - the keyed mount's checks of the journal folder, run by
 * recovery (recover.c) when mirrorfs is given keys.
 *
 * Before the redo pass replays anything (and before a shipper takes a
 * segment), every closed segment must authenticate with one of the keys
 * and continue the chain of the one before it, so a segment altered at
 * rest stops the mount with its path and LSN; untagged history from before
 * the primary was keyed, and an old key's leftovers already applied, are
 * let through. After recovery the first new segment continues the chain
 * from the last closed one (or the promoted mirror's), and an open segment
 * continued with another key, encryption key or compression than the
 * options say is closed so every new record follows them.
 */
#include "journal_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

static bool tag_zero(const uint8_t *t)
{
	for (size_t i = 0; i < MFS_TAG_SIZE; i++)
		if (t[i])
			return false;
	return true;
}

/*
 * The chain value at LSN @last from the closed segment that ends there,
 * when it is authenticated with one of our keys; zeros otherwise (the
 * chain starts again: a new data set, a promoted mirror, an earlier
 * unauthenticated journal).
 */
static void closed_chain(struct fs_journal *j, uint64_t last, uint8_t ret[MFS_TAG_SIZE])
{
	struct mfs_segr_opts o = { .expect_uuid = j->uuid, .keys = j->keys };
	_cleanup_free_ struct mfs_segent *segs = NULL;
	size_t n = 0;
	struct mfs_seg_info info;
	int fd;

	memset(ret, 0, MFS_TAG_SIZE);
	if (!j->keys->n || mfs_segdir_list(j->closed_dirfd, &segs, &n) < 0 || n == 0 ||
	    segs[n - 1].last != last)
		goto out;
	fd = openat(j->closed_dirfd, segs[n - 1].name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && mfs_seg_scan_fd_opts(fd, &o, NULL, NULL, &info) == 0 &&
	    info.verdict == MFS_SEG_OK && info.authenticated)
		memcpy(ret, info.last_tag, MFS_TAG_SIZE);
	if (fd >= 0)
		close(fd);
out:
	if (j->keys->n && tag_zero(ret))
		log_notice("the authenticated chain starts again at LSN %" PRIu64, last + 1);
}

void fs_journal_start_chain(struct fs_journal *j, const struct mfs_jstate *st, uint64_t last,
			    uint8_t ret[MFS_TAG_SIZE])
{
	closed_chain(j, last, ret);
	if (tag_zero(ret) && j->keys->n && st->have_chain && st->chain_lsn == last) {
		/* a promoted mirror's first segment: the chain it verified */
		memcpy(ret, st->chain_tag, MFS_TAG_SIZE);
		log_notice("the authenticated chain continues from the promoted mirror's "
			   "at LSN %" PRIu64, last);
	}
}

/*
 * The open segment continued after recovery is authenticated with another
 * key than keys[0] (or at all when it should not be): close it (an empty
 * one is removed) and start a new one, so that every new record is tagged
 * as the options say.
 */
int fs_journal_switch_auth(struct fs_journal *j)
{
	struct mfs_segw_stats s;
	const uint8_t *id = mfs_segw_key_id(j->w), *eid = mfs_segw_enc_key_id(j->w);
	uint8_t chain[MFS_TAG_SIZE];
	char closed[MFS_SEG_NAME_LEN + 1], old[256];
	int r;

	if ((j->keys->n ? id && !memcmp(id, j->keys->keys[0].id, MFS_AUTH_KEY_ID_SIZE) : !id) &&
	    (j->keys->n_enc ? eid && !memcmp(eid, j->keys->enc[0].id, MFS_AUTH_KEY_ID_SIZE)
			    : !eid) &&
	    mfs_segw_set_compress(j->w, j->zstd_level) == 0)
		return 0; /* a format-1 segment cannot hold compressed writes: a new one */
	mfs_segw_get_stats(j->w, &s);
	mfs_segw_chain(j->w, chain);
	snprintf(old, sizeof(old), "%s", j->open_name);
	if (s.records == 0) {
		j->w = mfs_segw_free(j->w);
		r = unlinkat(j->open_dirfd, old, 0) < 0 ? -errno : mfs_fsync_dir(j->open_dirfd, NULL);
	} else {
		r = mfs_segw_close(j->w, j->closed_dirfd, closed);
		j->w = NULL;
	}
	if (r < 0)
		return log_error_errno(r, "cannot close segment '%s/" MFS_JDIR_OPEN "/%s' to change its "
				       "key: %m", j->path, old);
	log_notice("segment '%s' closed: new segments are %s%s%s", old,
		   j->keys->n ? "authenticated with the given key" : "not authenticated",
		   j->keys->n_enc ? ", encrypted with the given key" : "",
		   j->zstd_level ? ", compressed" : "");
	r = fs_journal_new_segment(j, s.seg_no + 1, s.next_lsn, chain);
	if (r < 0)
		return log_error_errno(r, "cannot create a segment in '%s/" MFS_JDIR_OPEN "': %m",
				       j->path);
	return 0;
}

/* What fs_journal_verify_closed() carries from one closed segment to the next. */
struct verify_ctx {
	uint64_t after;      /* the checkpoint: segments past it are replayed */
	bool tagged;         /* a tagged segment came before */
	bool have_chain;     /* chain_tag is the chain value at chain_lsn */
	uint64_t chain_lsn;
	uint8_t chain_tag[MFS_TAG_SIZE];
	uint64_t checked, untagged, bytes;
};

/*
 * Check closed segment @name with our keys. A segment that is tagged must
 * authenticate whole and continue the chain of the one before it; an
 * untagged one (written before the primary was keyed) is accepted unless
 * a tagged one came before it and it is to be replayed; one tagged with a
 * key not given is checked only if it is to be replayed (else a notice:
 * an old key's leftovers after a key change). Returns 0 or -EBADMSG,
 * -ENOKEY (logged with the LSN, the record and the path).
 */
static int verify_one(struct fs_journal *j, const char *name, struct verify_ctx *v)
{
	struct mfs_segr_opts o = { .expect_uuid = j->uuid, .keys = j->keys };
	_cleanup_close_ int fd = openat(j->closed_dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct mfs_seg_info info;
	char why[320];
	int r;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open segment '%s/" MFS_JDIR_CLOSED "/%s': %m",
				       j->path, name);
	r = mfs_seg_scan_fd_opts(fd, &o, NULL, NULL, &info);
	if (r < 0)
		return log_error_errno(r, "cannot read segment '%s/" MFS_JDIR_CLOSED "/%s': %m", j->path,
				       name);
	v->bytes += info.file_size;
	mfs_seg_verdict_format(&info, why, sizeof(why));
	if (info.verdict == MFS_SEG_UNAUTH && info.auth_fail != MFS_AUTH_BAD_TAG &&
	    info.last_lsn <= v->after) {
		/* not replayed here: untagged history, or an old key's leftovers */
		v->untagged++;
		v->have_chain = false;
		return 0;
	}
	if (info.verdict == MFS_SEG_UNAUTH && info.auth_fail == MFS_AUTH_NO_TAGS && !v->tagged) {
		v->untagged++;
		return 0;
	}
	if (info.verdict != MFS_SEG_OK || !info.authenticated)
		return log_error_errno(info.auth_fail == MFS_AUTH_UNKNOWN_KEY ? -ENOKEY : -EBADMSG,
				       "closed segment '%s/" MFS_JDIR_CLOSED "/%s' (LSN %" PRIu64 "..) "
				       "fails its check: %s; refusing to mount", j->path, name,
				       info.first_lsn, why);
	if (v->have_chain && v->chain_lsn + 1 == info.first_lsn && !tag_zero(info.prev_tag) &&
	    !mfs_auth_tag_equal(info.prev_tag, v->chain_tag))
		return log_error_errno(-EBADMSG, "closed segment '%s/" MFS_JDIR_CLOSED "/%s' does not "
				       "continue the chain: the previous tag in its header is not "
				       "the tag of LSN %" PRIu64 " (the last record of the segment "
				       "before); refusing to mount", j->path, name, v->chain_lsn);
	v->tagged = true;
	v->have_chain = true;
	v->chain_lsn = info.last_lsn;
	memcpy(v->chain_tag, info.last_tag, MFS_TAG_SIZE);
	v->checked++;
	return 0;
}

/*
 * With keys: check the tags of every closed segment in the journal folder
 * before recovery replays any of them (and before a shipper takes them), so
 * a segment altered at rest stops the mount with its path and LSN.
 */
int fs_journal_verify_closed(struct fs_journal *j, uint64_t checkpoint)
{
	struct verify_ctx v = { .after = checkpoint };
	uint64_t t0 = mfs_mono_ns();
	_cleanup_free_ struct mfs_segent *segs = NULL;
	size_t n = 0;
	int r;

	if (!j->keys->n)
		return 0;
	r = mfs_segdir_list(j->closed_dirfd, &segs, &n);
	if (r < 0)
		return log_error_errno(r, "cannot list '%s/" MFS_JDIR_CLOSED "': %m", j->path);
	for (size_t k = 0; k < n && r == 0; k++)
		r = verify_one(j, segs[k].name, &v);
	if (r == 0 && n)
		log_info("recovery: %" PRIu64 " closed segments authenticated, %" PRIu64
			 " not checked (untagged or an old key's, already applied), %.1f MiB in "
			 "%.3f s", v.checked, v.untagged, (double)v.bytes / 1048576.0,
			 (double)(mfs_mono_ns() - t0) / 1e9);
	return r;
}
