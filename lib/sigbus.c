/* SPDX-License-Identifier: MIT */
/*
 * sigbus.c - read a mapped file without dying of SIGBUS.
 *
 * The replay engine validates each segment through a read-only mapping of
 * a file that arrived over the network. When a page of it cannot be read
 * (an I/O error of the disk or network file system under the incoming
 * folder, or the file truncated in place), touching it raises SIGBUS, and
 * the default action kills mirrord. So a thread arms a guard over its
 * mapping around the validation pass. The handler, on a fault inside the
 * calling thread's armed range, maps a zero page over the page that failed
 * (MAP_FIXED, within the process's own mapping), counts the fault and
 * returns: the load is retried, reads zeros, and the pass goes on to a bad
 * CRC. Disarming reports the fault, and the caller returns -EIO instead of
 * any verdict, so the segment is neither applied nor quarantined for a
 * fault of the reader's disk. A fault outside an armed range (the same
 * thing while a segment is applied) cannot be turned into zeros safely:
 * the handler says why on stderr and restores the previous action, and the
 * retried load takes it (a restart resumes from the last applied LSN).
 *
 * Invariants: the guard pointer is thread-local (initial-exec, safe in a
 * handler) and set only by its own thread; the handler calls only
 * async-signal-safe system calls (mmap, write, sigaction).
 */
#include "mirrorfs/sigbus.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static __thread struct mfs_bus_guard *armed __attribute__((tls_model("initial-exec")));
static struct sigaction previous;
static uintptr_t page_mask;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	static const char msg[] = "SIGBUS: a mapped segment could not be read "
				  "(I/O error, or truncated while in use); stopping\n";
	struct mfs_bus_guard *g = armed;
	const char *a = si->si_addr;
	int saved = errno;

	(void)sig;
	(void)ctx;
	if (g && a >= g->lo && a < g->hi) {
		void *page = (void *)((uintptr_t)a & ~page_mask);

		if (mmap(page, page_mask + 1, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			 -1, 0) != MAP_FAILED) {
			g->faults++;
			errno = saved;
			return;
		}
	}
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)sigaction(SIGBUS, &previous, NULL);
	errno = saved;
}

static void install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	page_mask = (uintptr_t)sysconf(_SC_PAGESIZE) - 1;
	(void)sigaction(SIGBUS, &sa, &previous);
}

void mfs_bus_guard_arm(struct mfs_bus_guard *g, const void *p, size_t len)
{
	pthread_once(&install_once, install);
	g->lo = p;
	g->hi = (const char *)p + len;
	g->faults = 0;
	armed = g;
	atomic_signal_fence(memory_order_seq_cst); /* armed before the first read */
}

int mfs_bus_guard_disarm(struct mfs_bus_guard *g)
{
	atomic_signal_fence(memory_order_seq_cst); /* after the last read */
	armed = NULL;
	return g->faults ? -EIO : 0;
}
