/* SPDX-License-Identifier: MIT */
/*
 * snapwriter.c - test helper: K worker threads mutate a directory tree at
 * random for S seconds, or until SIGTERM/SIGINT, for the snapshot tests.
 *
 * usage: snapwriter [-k WORKERS] [-s SECONDS] [-S SEED] [-r OPS_PER_SEC]
 *                   [-m MAX_FILE_BYTES] [-n MAX_FILES] DIR
 *
 * Worker ID owns the names starting with "wID-" in DIR/d0..d3 and in the
 * folders it makes there, adopting what an earlier run left, so workers
 * never race on a name and every error is unexpected. Operations come from
 * a per-worker xorshift generator seeded from SEED and the worker's id (the
 * same seed gives the same sequence; only how far it gets depends on time):
 * overwrite at a random offset (4 KiB aligned, or odd sizes), append,
 * truncate (shrink or grow), create, rename (to a new name, or over an
 * existing file of the worker), unlink, symlink, mkdir, rmdir and rename of
 * a folder, chmod, utimens, fdatasync. SECONDS 0 runs until a signal;
 * OPS_PER_SEC (per worker) 0 runs flat out.
 *
 * Exits 0 when stopped cleanly, 1 on an unexpected error (printed with its
 * operation and path; all workers stop), 2 on bad usage. Prints one line of
 * counts per operation at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NTOP 4
#define MAX_WORKER_DIRS 6
#define BUF_MAX (64 * 1024)

enum op {
	OP_WRITE,
	OP_APPEND,
	OP_TRUNC,
	OP_CREATE,
	OP_RENAME,
	OP_UNLINK,
	OP_SYMLINK,
	OP_MKDIR,
	OP_RMDIR,
	OP_RENAMEDIR,
	OP_CHMOD,
	OP_UTIME,
	OP_SYNC,
	OP_MAX
};

static const struct {
	const char *name;
	unsigned weight;
} ops[OP_MAX] = {
	[OP_WRITE] = { "write", 30 },	 [OP_APPEND] = { "append", 12 },
	[OP_TRUNC] = { "truncate", 8 },	 [OP_CREATE] = { "create", 10 },
	[OP_RENAME] = { "rename", 8 },	 [OP_UNLINK] = { "unlink", 6 },
	[OP_SYMLINK] = { "symlink", 4 }, [OP_MKDIR] = { "mkdir", 2 },
	[OP_RMDIR] = { "rmdir", 1 },	 [OP_RENAMEDIR] = { "renamedir", 1 },
	[OP_CHMOD] = { "chmod", 3 },	 [OP_UTIME] = { "utime", 2 },
	[OP_SYNC] = { "fdatasync", 2 },
};

struct ent {
	char *path; /* relative to the root */
	bool is_link;
};

struct worker {
	pthread_t thread;
	int id;
	uint64_t rng;
	unsigned counter;
	char *dirs[MAX_WORKER_DIRS]; /* the worker's own folders, "dN/wID-..." */
	size_t ndirs;
	struct ent *ents; /* its files and symlinks */
	size_t nents, cap;
	uint64_t done[OP_MAX];
	unsigned char buf[BUF_MAX];
	int failed;
};

static int arg_workers = 4, arg_seconds = 10, arg_rate;
static uint64_t arg_seed = 1, arg_max_bytes = 1 << 20;
static size_t arg_max_files = 48;
static int root_fd = -EBADF;
static atomic_bool stop;

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rnd(struct worker *w)
{
	uint64_t x = w->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t below(struct worker *w, uint64_t n)
{
	return n ? rnd(w) % n : 0;
}

static void fill(struct worker *w, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = rnd(w);
		memcpy(w->buf + i, &x, len - i < 8 ? len - i : 8);
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		abort();
	return p;
}

/* Report an unexpected error (positive errno) and stop everything. */
static int failed(struct worker *w, const char *what, const char *path, int e)
{
	fprintf(stderr, "snapwriter: worker %d: %s '%s': %s\n", w->id, what, path, strerror(e));
	w->failed = 1;
	atomic_store(&stop, true);
	return -e;
}

static char *new_name(struct worker *w, const char *dir, char kind)
{
	char *p;

	if (asprintf(&p, "%s/w%d-%" PRIx64 "-%c%u", dir, w->id, arg_seed & 0xffff, kind,
		     w->counter++) < 0)
		abort();
	return p;
}

static const char *any_dir(struct worker *w)
{
	static const char *top[NTOP] = { "d0", "d1", "d2", "d3" };
	size_t k = below(w, NTOP + w->ndirs);

	return k < NTOP ? top[k] : w->dirs[k - NTOP];
}

static void ent_add(struct worker *w, char *path, bool is_link)
{
	if (w->nents == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->ents = realloc(w->ents, w->cap * sizeof(*w->ents));
		if (!w->ents)
			abort();
	}
	w->ents[w->nents++] = (struct ent){ path, is_link };
}

static void ent_del(struct worker *w, size_t k)
{
	free(w->ents[k].path);
	w->ents[k] = w->ents[--w->nents];
}

/* Index of a random entry (regular files only with @file), or -1. */
static ssize_t pick(struct worker *w, bool file)
{
	size_t n = 0, k;

	for (size_t i = 0; i < w->nents; i++)
		n += !file || !w->ents[i].is_link;
	if (!n)
		return -1;
	k = below(w, n);
	for (size_t i = 0; i < w->nents; i++)
		if ((!file || !w->ents[i].is_link) && k-- == 0)
			return (ssize_t)i;
	return -1;
}

static int write_all(struct worker *w, int fd, size_t len, int64_t off, const char *path)
{
	size_t done = 0;

	fill(w, len);
	while (done < len) {
		ssize_t n = off < 0 ? write(fd, w->buf + done, len - done)
				    : pwrite(fd, w->buf + done, len - done, off + (int64_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return failed(w, "write", path, n < 0 ? errno : EIO);
		done += (size_t)n;
	}
	return 0;
}

static int open_file(struct worker *w, const char *path, int flags, struct stat *st)
{
	int fd = openat(root_fd, path, flags | O_CLOEXEC);

	if (fd < 0)
		return failed(w, "open", path, errno);
	if (st && fstat(fd, st) < 0) {
		int e = errno;
		close(fd);
		return failed(w, "fstat", path, e);
	}
	return fd;
}

static int close_file(struct worker *w, int fd, const char *path)
{
	if (close(fd) < 0)
		return failed(w, "close", path, errno);
	return 0;
}

/* ---- operations ------------------------------------------------------------ */

static int do_create(struct worker *w)
{
	char *path = new_name(w, any_dir(w), 'f');
	int fd, r;

	fd = openat(root_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = failed(w, "create", path, errno);
		free(path);
		return r;
	}
	r = write_all(w, fd, below(w, 4) ? below(w, BUF_MAX) : 0, -1, path);
	if (close_file(w, fd, path) < 0)
		r = -1;
	ent_add(w, path, false);
	return r;
}

static int do_write(struct worker *w, struct ent *e)
{
	struct stat st;
	uint64_t len, off;
	int fd, r;

	fd = open_file(w, e->path, O_WRONLY, &st);
	if (fd < 0)
		return fd;
	if (below(w, 2)) {
		len = 4096 << below(w, 2);
		off = below(w, (uint64_t)st.st_size / 4096 + 2) * 4096;
	} else {
		len = 1 + below(w, 20000);
		off = below(w, (uint64_t)st.st_size + 4096);
	}
	if (off + len > arg_max_bytes)
		off = below(w, arg_max_bytes - len);
	r = write_all(w, fd, len, (int64_t)off, e->path);
	if (close_file(w, fd, e->path) < 0)
		r = -1;
	return r;
}

static int do_truncate_to(struct worker *w, struct ent *e, int fd, uint64_t size)
{
	if (ftruncate(fd, (off_t)size) < 0)
		return failed(w, "ftruncate", e->path, errno);
	return 0;
}

static int do_append(struct worker *w, struct ent *e)
{
	struct stat st;
	int fd, r;

	fd = open_file(w, e->path, O_WRONLY | O_APPEND, &st);
	if (fd < 0)
		return fd;
	if ((uint64_t)st.st_size + BUF_MAX > arg_max_bytes)
		r = do_truncate_to(w, e, fd, (uint64_t)st.st_size / 2);
	else
		r = write_all(w, fd, 1 + below(w, 9000), -1, e->path);
	if (close_file(w, fd, e->path) < 0)
		r = -1;
	return r;
}

static int do_trunc(struct worker *w, struct ent *e)
{
	struct stat st;
	uint64_t size;
	int fd, r;

	fd = open_file(w, e->path, O_WRONLY, &st);
	if (fd < 0)
		return fd;
	if (below(w, 2))
		size = below(w, (uint64_t)st.st_size + 1); /* shrink */
	else
		size = (uint64_t)st.st_size + 1 + below(w, 3 * BUF_MAX); /* grow: a hole */
	if (size > arg_max_bytes)
		size = arg_max_bytes / 2;
	r = do_truncate_to(w, e, fd, size);
	if (close_file(w, fd, e->path) < 0)
		r = -1;
	return r;
}

static int do_rename(struct worker *w, size_t a)
{
	ssize_t b = pick(w, false);
	char *to;

	if (b >= 0 && (size_t)b != a && below(w, 2)) {
		/* over an existing file or symlink of ours */
		if (renameat(root_fd, w->ents[a].path, root_fd, w->ents[b].path) < 0)
			return failed(w, "rename over", w->ents[a].path, errno);
		free(w->ents[a].path);
		w->ents[a].path = w->ents[b].path;
		w->ents[b].path = NULL;
		w->ents[b] = w->ents[--w->nents];
		return 0;
	}
	to = new_name(w, any_dir(w), w->ents[a].is_link ? 'l' : 'f');
	if (renameat(root_fd, w->ents[a].path, root_fd, to) < 0) {
		int r = failed(w, "rename", w->ents[a].path, errno);
		free(to);
		return r;
	}
	free(w->ents[a].path);
	w->ents[a].path = to;
	return 0;
}

static int do_unlink(struct worker *w, size_t k)
{
	if (unlinkat(root_fd, w->ents[k].path, 0) < 0)
		return failed(w, "unlink", w->ents[k].path, errno);
	ent_del(w, k);
	return 0;
}

static int do_symlink(struct worker *w)
{
	ssize_t k = pick(w, true);
	char *path = new_name(w, any_dir(w), 'l'), target[300];
	const char *base;

	if (k >= 0 && below(w, 2)) {
		base = strrchr(w->ents[k].path, '/');
		snprintf(target, sizeof(target), "%s", base ? base + 1 : w->ents[k].path);
	} else {
		snprintf(target, sizeof(target), "../nowhere-%" PRIu64, below(w, 100000));
	}
	if (symlinkat(target, root_fd, path) < 0) {
		int r = failed(w, "symlink", path, errno);
		free(path);
		return r;
	}
	ent_add(w, path, true);
	return 0;
}

static int do_mkdir(struct worker *w)
{
	static const char *top[NTOP] = { "d0", "d1", "d2", "d3" };
	char *path;

	if (w->ndirs >= MAX_WORKER_DIRS)
		return 0;
	path = new_name(w, top[below(w, NTOP)], 'd');
	if (mkdirat(root_fd, path, 0755) < 0) {
		int r = failed(w, "mkdir", path, errno);
		free(path);
		return r;
	}
	w->dirs[w->ndirs++] = path;
	return 0;
}

static bool in_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(path, dir, n) && path[n] == '/';
}

/* Empty one of the worker's folders, then remove it. */
static int do_rmdir(struct worker *w)
{
	size_t d;

	if (!w->ndirs)
		return 0;
	d = below(w, w->ndirs);
	for (size_t i = w->nents; i-- > 0;)
		if (in_dir(w->ents[i].path, w->dirs[d]) && do_unlink(w, i) < 0)
			return -1;
	if (unlinkat(root_fd, w->dirs[d], AT_REMOVEDIR) < 0)
		return failed(w, "rmdir", w->dirs[d], errno);
	free(w->dirs[d]);
	w->dirs[d] = w->dirs[--w->ndirs];
	return 0;
}

/* Move one of the worker's folders (and what it holds) under another top folder. */
static int do_renamedir(struct worker *w)
{
	static const char *top[NTOP] = { "d0", "d1", "d2", "d3" };
	size_t d, n;
	char *to, *p;

	if (!w->ndirs)
		return 0;
	d = below(w, w->ndirs);
	to = new_name(w, top[below(w, NTOP)], 'd');
	if (renameat(root_fd, w->dirs[d], root_fd, to) < 0) {
		int r = failed(w, "rename folder", w->dirs[d], errno);
		free(to);
		return r;
	}
	n = strlen(w->dirs[d]);
	for (size_t i = 0; i < w->nents; i++) {
		if (!in_dir(w->ents[i].path, w->dirs[d]))
			continue;
		if (asprintf(&p, "%s%s", to, w->ents[i].path + n) < 0)
			abort();
		free(w->ents[i].path);
		w->ents[i].path = p;
	}
	free(w->dirs[d]);
	w->dirs[d] = to;
	return 0;
}

static int do_chmod(struct worker *w, struct ent *e)
{
	static const mode_t modes[] = { 0600, 0640, 0644, 0664, 0755, 0700 };

	if (fchmodat(root_fd, e->path, modes[below(w, 6)], 0) < 0)
		return failed(w, "chmod", e->path, errno);
	return 0;
}

static int do_utime(struct worker *w, struct ent *e)
{
	struct timespec ts[2] = {
		{ .tv_sec = 1500000000 + (time_t)below(w, 100000000), .tv_nsec = (long)below(w, 1000000000) },
		{ .tv_sec = 1500000000 + (time_t)below(w, 100000000), .tv_nsec = (long)below(w, 1000000000) },
	};

	if (utimensat(root_fd, e->path, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return failed(w, "utimensat", e->path, errno);
	return 0;
}

static int do_sync(struct worker *w, struct ent *e)
{
	int fd = open_file(w, e->path, O_WRONLY, NULL), r = 0;

	if (fd < 0)
		return fd;
	if (fdatasync(fd) < 0)
		r = failed(w, "fdatasync", e->path, errno);
	if (close_file(w, fd, e->path) < 0)
		r = -1;
	return r;
}

static enum op choose(struct worker *w)
{
	unsigned total = 0, k;

	for (int i = 0; i < OP_MAX; i++)
		total += ops[i].weight;
	k = (unsigned)below(w, total);
	for (int i = 0; i < OP_MAX; i++) {
		if (k < ops[i].weight)
			return (enum op)i;
		k -= ops[i].weight;
	}
	return OP_WRITE;
}

static int one_op(struct worker *w)
{
	enum op op = choose(w);
	bool needs_file = op == OP_WRITE || op == OP_APPEND || op == OP_TRUNC ||
			  op == OP_CHMOD || op == OP_UTIME || op == OP_SYNC;
	bool needs_ent = op == OP_RENAME || op == OP_UNLINK;
	ssize_t k = needs_file ? pick(w, true) : needs_ent ? pick(w, false) : -1;

	if ((needs_file || needs_ent) && k < 0)
		op = OP_CREATE;
	if (op == OP_CREATE && w->nents >= arg_max_files) {
		op = OP_UNLINK;
		k = pick(w, false);
	}
	w->done[op]++;
	switch (op) {
	case OP_WRITE: return do_write(w, &w->ents[k]);
	case OP_APPEND: return do_append(w, &w->ents[k]);
	case OP_TRUNC: return do_trunc(w, &w->ents[k]);
	case OP_CREATE: return do_create(w);
	case OP_RENAME: return do_rename(w, (size_t)k);
	case OP_UNLINK: return do_unlink(w, (size_t)k);
	case OP_SYMLINK: return do_symlink(w);
	case OP_MKDIR: return do_mkdir(w);
	case OP_RMDIR: return do_rmdir(w);
	case OP_RENAMEDIR: return do_renamedir(w);
	case OP_CHMOD: return do_chmod(w, &w->ents[k]);
	case OP_UTIME: return do_utime(w, &w->ents[k]);
	case OP_SYNC: return do_sync(w, &w->ents[k]);
	default: return 0;
	}
}

/* ---- adoption of an earlier run's names ------------------------------------ */

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const struct ent *)a)->path, ((const struct ent *)b)->path);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add the worker's entries of folder @dir; its folders too when @top. */
static int adopt_dir(struct worker *w, const char *dir, bool top)
{
	char prefix[32], *p;
	struct dirent *de;
	DIR *d;
	int fd;

	snprintf(prefix, sizeof(prefix), "w%d-", w->id);
	fd = openat(root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd)))
		return failed(w, "open folder", dir, errno);
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0)
			abort();
		if (de->d_type == DT_DIR && top && w->ndirs < MAX_WORKER_DIRS)
			w->dirs[w->ndirs++] = p;
		else if (de->d_type == DT_REG || de->d_type == DT_LNK)
			ent_add(w, p, de->d_type == DT_LNK);
		else
			free(p); /* a folder over the limit is left alone */
	}
	closedir(d);
	return 0;
}

static int adopt(struct worker *w)
{
	static const char *top[NTOP] = { "d0", "d1", "d2", "d3" };

	for (int i = 0; i < NTOP; i++)
		if (adopt_dir(w, top[i], true) < 0)
			return -1;
	qsort(w->dirs, w->ndirs, sizeof(*w->dirs), cmp_str);
	for (size_t i = 0; i < w->ndirs; i++)
		if (adopt_dir(w, w->dirs[i], false) < 0)
			return -1;
	qsort(w->ents, w->nents, sizeof(*w->ents), cmp_ent);
	return 0;
}

/* ---- main ------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pace(uint64_t start, uint64_t n)
{
	uint64_t due = start + n * 1000000000u / (uint64_t)arg_rate, t = now_ns();
	struct timespec ts;

	if (due <= t)
		return;
	ts.tv_sec = (time_t)((due - t) / 1000000000u);
	ts.tv_nsec = (long)((due - t) % 1000000000u);
	(void)nanosleep(&ts, NULL);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint64_t start = now_ns(), n = 0;

	if (adopt(w) < 0)
		return NULL;
	while (!atomic_load(&stop)) {
		if (one_op(w) < 0)
			break;
		if (arg_rate)
			pace(start, ++n);
	}
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: snapwriter [-k WORKERS] [-s SECONDS] [-S SEED] [-r OPS_PER_SEC]\n"
			"                  [-m MAX_FILE_BYTES] [-n MAX_FILES] DIR\n");
	return 2;
}

static int parse_args(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "k:s:S:r:m:n:")) != -1) {
		switch (c) {
		case 'k': arg_workers = atoi(optarg); break;
		case 's': arg_seconds = atoi(optarg); break;
		case 'S': arg_seed = strtoull(optarg, NULL, 0); break;
		case 'r': arg_rate = atoi(optarg); break;
		case 'm': arg_max_bytes = strtoull(optarg, NULL, 0); break;
		case 'n': arg_max_files = strtoull(optarg, NULL, 0); break;
		default: return -EINVAL;
		}
	}
	if (optind != argc - 1 || arg_workers < 1 || arg_workers > 64 || arg_seconds < 0 ||
	    arg_rate < 0 || arg_max_bytes < 2 * BUF_MAX || arg_max_files < 1)
		return -EINVAL;
	return 0;
}

/* Wait for the deadline or SIGTERM/SIGINT (blocked in every thread). */
static void wait_stop(const sigset_t *set)
{
	uint64_t end = now_ns() + (uint64_t)arg_seconds * 1000000000u;
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 100000000 };

	while (!atomic_load(&stop)) {
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (arg_seconds && now_ns() >= end)
			break;
	}
	atomic_store(&stop, true);
}

static void print_counts(struct worker *ws)
{
	uint64_t total = 0, per[OP_MAX] = { 0 };

	for (int i = 0; i < arg_workers; i++)
		for (int o = 0; o < OP_MAX; o++)
			per[o] += ws[i].done[o];
	for (int o = 0; o < OP_MAX; o++)
		total += per[o];
	printf("snapwriter: %d workers, seed %" PRIu64 ", %" PRIu64 " ops:", arg_workers, arg_seed,
	       total);
	for (int o = 0; o < OP_MAX; o++)
		printf(" %s=%" PRIu64, ops[o].name, per[o]);
	printf("\n");
}

int main(int argc, char **argv)
{
	static const char *top[NTOP] = { "d0", "d1", "d2", "d3" };
	struct worker *ws;
	sigset_t set;
	int bad = 0;

	if (parse_args(argc, argv) < 0)
		return usage();
	root_fd = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		fprintf(stderr, "snapwriter: cannot open '%s': %s\n", argv[optind], strerror(errno));
		return 1;
	}
	for (int i = 0; i < NTOP; i++)
		if (mkdirat(root_fd, top[i], 0755) < 0 && errno != EEXIST) {
			fprintf(stderr, "snapwriter: mkdir '%s': %s\n", top[i], strerror(errno));
			return 1;
		}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by the workers */
	ws = xmalloc((size_t)arg_workers * sizeof(*ws));
	for (int i = 0; i < arg_workers; i++) {
		memset(&ws[i], 0, sizeof(ws[i]));
		ws[i].id = i;
		ws[i].rng = (arg_seed + 1) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(i + 1) * 0xD1B54A32D192ED03ULL;
		if (!ws[i].rng)
			ws[i].rng = 1;
		if (pthread_create(&ws[i].thread, NULL, run, &ws[i]) != 0)
			abort();
	}
	wait_stop(&set);
	for (int i = 0; i < arg_workers; i++) {
		pthread_join(ws[i].thread, NULL);
		bad |= ws[i].failed;
		for (size_t k = 0; k < ws[i].nents; k++)
			free(ws[i].ents[k].path);
		free(ws[i].ents);
		for (size_t k = 0; k < ws[i].ndirs; k++)
			free(ws[i].dirs[k]);
	}
	print_counts(ws);
	free(ws);
	close(root_fd);
	return bad ? 1 : 0;
}
