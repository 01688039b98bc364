/* SPDX-License-Identifier: MIT */
/*
 * lock.c - flush-and-lock: the ctl commands "lock [TIMEOUT_MS]" and
 * "unlock" (mirrorfs/ctl.h), the internal quiesce of snapshots, and the
 * lock's status. While locked, mutations are parked (park.c).
 *
 * Locking first flushes with writers still running (so that the flush
 * under the lock is short), then closes the gate, waits until no mutation
 * is in flight (every wrapper that got through has returned, so it has
 * replied and its change is applied and journaled), then checkpoints:
 * ns_lock barrier, journal sync, fsync of what changed. The lock belongs to the
 * ctl handle that took it: "unlock" on any ctl handle, the release of that
 * handle (its holder exited or died) or the timeout releases it.
 */
#include "lock_i.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void fs_lock_release_locked(struct fs_lock *lk, const char *why)
{
	log_info("lock released (%s) after %" PRIu64 " ms, %zu parked requests resume", why,
		 (realtime_ns() - lk->since_ns) / NS_PER_MS, lk->n_parked);
	lk->locked = false;
	lk->owner = NULL;
	if (!lk->head)
		atomic_store(&lk->closed, false);
	pthread_cond_signal(&lk->wake);
}

static bool is_locked(struct fs_lock *lk)
{
	bool locked;

	pthread_mutex_lock(&lk->mu);
	locked = lk->locked;
	pthread_mutex_unlock(&lk->mu);
	return locked;
}

/*
 * Flush while writers still run (errors are caught by the checkpoint under
 * the lock): the flush inside the lock window then only has what was
 * written meanwhile, which keeps that window short.
 */
static void preflush(struct fs *fs)
{
	(void)fs_journal_checkpoint(fs, NULL); /* what mirrorfs changed, not syncfs */
}

/* Returns 0 once locked and flushed, -EBUSY if already locked, -errno. */
static int lock_take(struct fs *fs, const void *owner, uint64_t timeout_ms)
{
	struct fs_lock *lk = fs->lock;
	int r;

	if (is_locked(lk))
		return -EBUSY;
	preflush(fs);
	pthread_mutex_lock(&lk->mu);
	if (lk->locked) {
		pthread_mutex_unlock(&lk->mu);
		return -EBUSY;
	}
	lk->locked = true;
	lk->owner = owner;
	lk->timeout_ms = timeout_ms;
	lk->since_ns = realtime_ns();
	lk->deadline_ns = mfs_mono_ns() + timeout_ms * NS_PER_MS;
	atomic_store(&lk->closed, true);
	while (atomic_load(&lk->inflight) > 0)
		pthread_cond_wait(&lk->idle, &lk->mu);
	pthread_cond_signal(&lk->wake); /* new deadline */
	pthread_mutex_unlock(&lk->mu);

	r = fs_journal_checkpoint(fs, NULL); /* barrier, journal sync, fsync of what changed */
	if (r == 0)
		r = fs_journal_sync(fs, 0);
	if (r < 0) {
		pthread_mutex_lock(&lk->mu);
		if (lk->locked && lk->owner == owner)
			fs_lock_release_locked(lk, "flush failed");
		pthread_mutex_unlock(&lk->mu);
		return r;
	}
	log_info("locked for at most %" PRIu64 " ms", timeout_ms);
	return 0;
}

int fs_lock_quiesce(struct fs *fs, int (*fn)(struct fs *fs, void *arg), void *arg,
		    uint64_t *ret_ns)
{
	struct fs_lock *lk = fs->lock;
	uint64_t t0;
	int r;

	*ret_ns = 0;
	if (!lk)
		return -ENOTSUP;
	/* No flush first: @fn does not sync (see snap.c, create_durable()), and every disk
	 * cache flush stalls the writers on a busy disk, also outside the
	 * window. */
	pthread_mutex_lock(&lk->mu);
	if (lk->locked) {
		/* an operator's lock: nothing runs, and unlock waits for lk->mu */
		r = lk->internal ? -EBUSY : fn(fs, arg);
		pthread_mutex_unlock(&lk->mu);
		return r;
	}
	t0 = mfs_mono_ns();
	lk->locked = true;
	lk->internal = true;
	lk->owner = NULL;
	lk->since_ns = realtime_ns();
	lk->timeout_ms = 0;
	atomic_store(&lk->closed, true);
	while (atomic_load(&lk->inflight) > 0)
		pthread_cond_wait(&lk->idle, &lk->mu);
	pthread_mutex_unlock(&lk->mu);

	r = fn(fs, arg);

	pthread_mutex_lock(&lk->mu);
	lk->internal = false;
	lk->locked = false;
	if (!lk->head)
		atomic_store(&lk->closed, false);
	pthread_cond_signal(&lk->wake);
	*ret_ns = mfs_mono_ns() - t0;
	pthread_mutex_unlock(&lk->mu);
	return r;
}

/* Release the lock if @owner (NULL: anyone) holds it. Returns 0 or -EINVAL. */
int fs_lock_drop(struct fs *fs, const void *owner, const char *why)
{
	struct fs_lock *lk = fs->lock;
	int r = -EINVAL;

	pthread_mutex_lock(&lk->mu);
	if (lk->locked && !lk->internal && (!owner || lk->owner == owner)) {
		fs_lock_release_locked(lk, why);
		r = 0;
	}
	pthread_mutex_unlock(&lk->mu);
	return r;
}

static int parse_timeout(const char *arg, uint64_t *ret_ms)
{
	char *end;
	unsigned long long v;

	while (*arg == ' ')
		arg++;
	if (!*arg) {
		*ret_ms = LOCK_TIMEOUT_DEFAULT_MS;
		return 0;
	}
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno || *end || arg[0] == '-' || v > LOCK_TIMEOUT_MAX_MS)
		return -EINVAL;
	*ret_ms = v ? v : LOCK_TIMEOUT_DEFAULT_MS;
	return 0;
}

int fs_lock_ctl(struct fs *fs, struct fs_file *f, const char *cmd, char **ret)
{
	uint64_t timeout_ms;
	int r;

	if (!fs->lock)
		return mfs_ctl_err(ret, ENOMEM, "lock is unavailable");
	if (!strcmp(cmd, "unlock")) {
		r = fs_lock_drop(fs, NULL, "unlock");
		if (r < 0)
			return mfs_ctl_err(ret, -r, "not locked");
		return mfs_ctl_ok(ret, NULL);
	}
	if (strncmp(cmd, "lock", 4) || (cmd[4] && cmd[4] != ' '))
		return mfs_ctl_err(ret, EINVAL, "unknown command '%s'", cmd);
	if (parse_timeout(cmd + 4, &timeout_ms) < 0)
		return mfs_ctl_err(ret, EINVAL, "bad timeout '%s'", cmd + 4);
	r = lock_take(fs, f, timeout_ms);
	if (r == -EBUSY)
		return mfs_ctl_err(ret, EBUSY, "already locked");
	if (r < 0)
		return mfs_ctl_errno(ret, -r, NULL);
	return mfs_ctl_ok(ret, NULL);
}

int fs_lock_status(struct fs *fs, char *buf, size_t cap)
{
	struct fs_lock *lk = fs->lock;
	bool locked = false;
	uint64_t since = 0, timeout = 0;
	size_t parked = 0;

	if (lk) {
		pthread_mutex_lock(&lk->mu);
		locked = lk->locked;
		since = locked ? lk->since_ns : 0;
		timeout = locked ? lk->timeout_ms : 0;
		parked = lk->n_parked;
		pthread_mutex_unlock(&lk->mu);
	}
	return snprintf(buf, cap,
			"\"locked\":%s,\"lock_since_ns\":%" PRIu64 ",\"lock_timeout_ms\":%" PRIu64
			",\"parked\":%zu",
			locked ? "true" : "false", since, timeout, parked);
}
