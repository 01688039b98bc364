/* SPDX-License-Identifier: MIT */
/*
 * progress.c - one progress line on a terminal (stderr), rewritten in
 * place at most 4 times a second: phase, bytes, total, rate and ETA.
 */
#include "restore.h"

#include <inttypes.h>
#include <stdio.h>

#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#define PROGRESS_NS (250000000ull) /* at most 4 updates a second */



void cli_progress_phase(struct cli_progress *p, const char *phase, uint64_t total)
{
	p->phase = phase;
	p->total = total;
	p->t0 = mfs_mono_ns();
}

/* "512 B", "3.1 kB", "12.0 MB", "1.5 GB" */
static void human(uint64_t bytes, char *out, size_t cap)
{
	static const char *const unit[] = {"kB", "MB", "GB", "TB"};
	double v = (double)bytes / 1000;
	size_t u = 0;

	if (bytes < 1000) {
		snprintf(out, cap, "%" PRIu64 " B", bytes);
		return;
	}
	for (; v >= 1000 && u + 1 < ARRAY_SIZE(unit); u++)
		v /= 1000;
	snprintf(out, cap, "%.1f %s", v, unit[u]);
}

void cli_progress_set(struct cli_progress *p, uint64_t done)
{
	char sdone[32], stotal[32], eta[80] = "";
	uint64_t now, left;
	double secs, rate;

	if (!p->on)
		return;
	now = mfs_mono_ns();
	if (p->shown && now - p->last_ns < PROGRESS_NS)
		return;
	p->last_ns = now;
	p->shown = true;
	secs = (double)(now - p->t0) / 1e9;
	rate = secs > 0 ? (double)done / secs : 0;
	human(done, sdone, sizeof(sdone));
	if (p->total && done <= p->total && rate > 0) {
		left = (uint64_t)((double)(p->total - done) / rate);
		human(p->total, stotal, sizeof(stotal));
		snprintf(eta, sizeof(eta), " of %s, ETA %" PRIu64 ":%02" PRIu64, stotal, left / 60,
			 left % 60);
	}
	fprintf(stderr, "\r%s: %s%s, %.1f MB/s\033[K", p->phase, sdone, eta, rate / 1e6);
}

void cli_progress_cb(void *arg, uint64_t bytes)
{
	cli_progress_set(arg, bytes);
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->shown)
		fputs("\r\033[K", stderr);
}
