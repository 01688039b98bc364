/* SPDX-License-Identifier: MIT */
/*
 * mirror.h - the modules of mirrord, the mirror daemon.
 *
 * main.c parses options and runs the loop; watch.c waits for segments
 * (inotify); mirror.c orders, validates, quarantines, applies, cascades
 * and retires them; state.c keeps the applied-LSN state and writes the
 * status and metrics files.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "mirrorfs/applied.h"
#include "mirrorfs/auth.h"

struct mirror_config {
	const char *incoming;   /* where segments arrive */
	const char *data;       /* the mirrored data directory */
	const char *state;      /* state folder (applied LSN, status.json) */
	const char *quarantine; /* refused segments and their reasons */
	const char *cascade;    /* NULL, or where to re-emit applied segments */
	const char *keep;       /* NULL (delete applied segments) or where to keep them */
	const char *metrics;    /* NULL, or a Prometheus textfile */
	const char *instance;   /* the metrics' instance label; NULL: the data folder's path */
	uint64_t max_segment;   /* largest segment read into memory (bytes) */
	unsigned max_alloc_pct; /* share of the free space one segment may fallocate */
	bool once, hold, naive;
	const struct mfs_keyring *keys; /* NULL or empty: segments are not authenticated */
};

/* ---------------------------------------------------------------- state.c */

/*
 * Load the applied state (STATE/applied, lib/applied.c) from @dirfd; a
 * missing file is the empty state. Returns 0, -EBADMSG for a malformed
 * file, or -errno.
 */
int mirror_state_load(int dirfd, struct mfs_applied *ret);

struct mirror_status {
	const struct mfs_applied *state;
	const char *instance;      /* the metrics' instance label */
	bool hold;
	bool auth;                 /* keys given: only authenticated segments are applied */
	uint64_t unauth_applied;   /* no keys: segments applied without authentication */
	unsigned waiting;          /* segments not yet applied */
	uint64_t gap_from, gap_to; /* missing LSNs (gap_from = 0: none) */
	char **quarantined;        /* names in the quarantine folder */
	unsigned n_quarantined;
	double last_bytes_per_sec; /* apply speed of the last segment */
	unsigned retries;          /* passes in a row that failed for a local reason */
	unsigned retry_ms;         /* the next one is in this long (0: none due) */
	const char *last_error;    /* NULL or one line */
};

/* Write STATE/status.json durably. Returns 0 or -errno. */
int mirror_status_write(int dirfd, const struct mirror_status *st);

/*
 * Write the Prometheus text-format metrics to @path durably, every series
 * labelled with the data set and the instance. Returns 0 or -errno.
 */
int mirror_metrics_write(const char *path, const struct mirror_status *st);

/* ---------------------------------------------------------------- watch.c */

/* inotify on @dir for arriving segments. Returns an fd or -errno. */
int mirror_watch_open(const char *dir);

/*
 * Consume pending events of @fd. Returns 1 if a rescan is due (a segment
 * name arrived, or the queue overflowed), 0 if not, -errno on failure.
 */
int mirror_watch_read(int fd);

/* ---------------------------------------------------------------- mirror.c */

struct mirror;

int mirror_new(const struct mirror_config *cfg, struct mirror **ret);
struct mirror *mirror_free(struct mirror *m);

/*
 * Scan the incoming folder and apply everything applicable, in LSN order.
 * @stop is polled between segments. Returns 0 when nothing is left waiting,
 * 1 when something waits (gap, hold mode, a segment still arriving) or a
 * segment was quarantined in this pass, -errno on a local failure (the
 * segment in hand stays in incoming for a retry).
 */
int mirror_pass(struct mirror *m, volatile const int *stop);

/*
 * After a pass that failed for a local reason (EIO, ENOSPC...): when to try
 * again, 1 s doubling up to 60 s with each failed pass in a row; 0 when the
 * last pass did not fail.
 */
unsigned mirror_retry_ms(const struct mirror *m);

/* One line, how the mirror stands (for the service manager's STATUS=). */
void mirror_describe(const struct mirror *m, char *buf, size_t size);
