/* SPDX-License-Identifier: MIT */
/*
 * verify.c - `mirrorctl verify [--times] DIR_A DIR_B`: are two data
 * directories identical? Compares the tree (names, types), permission bits,
 * owners, sizes, file contents, symlink targets, extended attributes and
 * hard-link structure; modification times only with --times. A top-level
 * `.mirrorfs` (mirrorfs's own folder) is ignored. Prints each difference
 * (up to 50) and exits 1 if there is any.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/macro.h"

#define MAX_REPORTS 50

struct link_ent {
	dev_t dev;
	ino_t ino_a, ino_b;
};

struct verify {
	bool times;
	unsigned diffs;
	struct link_ent *links; /* hard-linked inodes of A and their match in B */
	size_t nlinks, caplinks;
};

static void diff(struct verify *v, const char *path, const char *what)
{
	if (v->diffs++ < MAX_REPORTS)
		printf("differ: '%s': %s\n", path[0] ? path : ".", what);
}

/* At the top of a tree, mirrorfs's own folder is not compared. */
static bool not_ctl_dir(const char *name, void *arg)
{
	return strcmp(name, MFS_CTL_DIR) != 0;
}

/* Sorted entry names of a directory fd (without . and ..), malloc'd. Returns 0 or -errno. */
static int list_dir(int dfd, bool top, char ***ret, size_t *ret_n)
{
	return mfs_dir_list(dfd, ".", top ? not_ctl_dir : NULL, NULL, ret, ret_n);
}

static void free_names(char **names, size_t n)
{
	mfs_dir_names_free(names, n);
}

static bool same_content(int fa, int fb)
{
	static char ba[1 << 16], bb[1 << 16];
	ssize_t na, nb;

	for (;;) {
		na = read(fa, ba, sizeof(ba));
		nb = read(fb, bb, sizeof(bb));
		if (na < 0 || nb < 0 || na != nb)
			return false;
		if (na == 0)
			return true;
		if (memcmp(ba, bb, (size_t)na))
			return false;
	}
}

static void compare_file(struct verify *v, int da, int db, const char *name, const char *path)
{
	_cleanup_close_ int fa = openat(da, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_close_ int fb = openat(db, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fa < 0 || fb < 0)
		diff(v, path, "cannot open to compare content");
	else if (!same_content(fa, fb))
		diff(v, path, "content");
}

#define XATTR_BUF 65536

/*
 * The extended attributes of entry @name of @da and @db (not a symlink),
 * read through O_PATH descriptors (their /proc/self/fd link): no limit on
 * the length of the path, and the buffers on the heap (deep trees).
 */
static void compare_xattrs(struct verify *v, int da, int db, const char *name, const char *path)
{
	_cleanup_close_ int fa = openat(da, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_close_ int fb = openat(db, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_free_ char *buf = malloc(4 * XATTR_BUF);
	char pa[64], pb[64], *la, *lb, *va, *vb;
	ssize_t na, nb;
	int ca = 0, cb = 0;

	if (fa < 0 || fb < 0 || !buf) {
		diff(v, path, "cannot open to compare extended attributes");
		return;
	}
	la = buf, lb = buf + XATTR_BUF, va = buf + 2 * XATTR_BUF, vb = buf + 3 * XATTR_BUF;
	snprintf(pa, sizeof(pa), "/proc/self/fd/%d", fa);
	snprintf(pb, sizeof(pb), "/proc/self/fd/%d", fb);
	na = listxattr(pa, la, XATTR_BUF);
	nb = listxattr(pb, lb, XATTR_BUF);
	if (na < 0 || nb < 0) {
		if ((na < 0) != (nb < 0))
			diff(v, path, "extended attributes readable on one side only");
		return;
	}
	/* every name of A in B with the same value, and the same count */
	for (char *p = lb; p < lb + nb; p += strlen(p) + 1)
		cb++;
	for (char *p = la; p < la + na; p += strlen(p) + 1) {
		ssize_t xa = getxattr(pa, p, va, XATTR_BUF);
		ssize_t xb = getxattr(pb, p, vb, XATTR_BUF);
		ca++;
		if (xb < 0 || xa != xb || memcmp(va, vb, (size_t)(xa > 0 ? xa : 0))) {
			char what[300];
			snprintf(what, sizeof(what), "extended attribute '%.255s'", p);
			diff(v, path, what);
		}
	}
	if (ca != cb)
		diff(v, path, "number of extended attributes");
}

/* Hard links: the same inode of A must always pair with the same inode of B. */
static void check_link(struct verify *v, const struct stat *a, const struct stat *b,
		       const char *path)
{
	for (size_t i = 0; i < v->nlinks; i++) {
		if (v->links[i].ino_a == a->st_ino && v->links[i].dev == a->st_dev) {
			if (v->links[i].ino_b != b->st_ino)
				diff(v, path, "hard-link structure");
			return;
		}
	}
	if (v->nlinks == v->caplinks) {
		v->caplinks = v->caplinks ? 2 * v->caplinks : 64;
		v->links = realloc(v->links, v->caplinks * sizeof(*v->links));
		if (!v->links)
			abort();
	}
	v->links[v->nlinks++] = (struct link_ent){ a->st_dev, a->st_ino, b->st_ino };
}

static void compare_tree(struct verify *v, const char *ra, const char *rb, const char *rel,
			 int da, int db);

static void compare_entry(struct verify *v, const char *ra, const char *rb, const char *rel,
			  int da, int db, const char *name)
{
	_cleanup_free_ char *path = NULL; /* relative, any length (renames make deep paths) */
	struct stat a, b;

	if (asprintf(&path, "%s%s%s", rel, rel[0] ? "/" : "", name) < 0) {
		path = NULL;
		diff(v, rel, "out of memory");
		return;
	}
	if (fstatat(da, name, &a, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstatat(db, name, &b, AT_SYMLINK_NOFOLLOW) < 0) {
		diff(v, path, "cannot stat");
		return;
	}
	if ((a.st_mode & S_IFMT) != (b.st_mode & S_IFMT)) {
		diff(v, path, "file type");
		return;
	}
	if (!S_ISLNK(a.st_mode) && (a.st_mode & 07777) != (b.st_mode & 07777))
		diff(v, path, "permissions");
	if (a.st_uid != b.st_uid || a.st_gid != b.st_gid)
		diff(v, path, "owner");
	if (v->times && !S_ISDIR(a.st_mode) && !S_ISLNK(a.st_mode) &&
	    (a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec))
		diff(v, path, "modification time");
	if (!S_ISDIR(a.st_mode) && (a.st_nlink > 1 || b.st_nlink > 1)) {
		if (a.st_nlink != b.st_nlink)
			diff(v, path, "link count");
		check_link(v, &a, &b, path);
	}
	if (S_ISREG(a.st_mode)) {
		if (a.st_size != b.st_size)
			diff(v, path, "size");
		else
			compare_file(v, da, db, name, path);
	} else if (S_ISLNK(a.st_mode)) {
		char ta[4097], tb[4097];
		ssize_t na = readlinkat(da, name, ta, sizeof(ta) - 1);
		ssize_t nb = readlinkat(db, name, tb, sizeof(tb) - 1);
		if (na < 0 || na != nb || memcmp(ta, tb, (size_t)na))
			diff(v, path, "symlink target");
	} else if ((S_ISCHR(a.st_mode) || S_ISBLK(a.st_mode)) && a.st_rdev != b.st_rdev) {
		diff(v, path, "device number");
	}
	if (!S_ISLNK(a.st_mode))
		compare_xattrs(v, da, db, name, path);
	if (S_ISDIR(a.st_mode)) {
		_cleanup_close_ int sa = openat(da, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		_cleanup_close_ int sb = openat(db, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sa < 0 || sb < 0)
			diff(v, path, "cannot open directory");
		else
			compare_tree(v, ra, rb, path, sa, sb);
	}
}

static void compare_tree(struct verify *v, const char *ra, const char *rb, const char *rel,
			 int da, int db)
{
	char **na = NULL, **nb = NULL;
	size_t ca = 0, cb = 0, i = 0, j = 0;
	bool top = rel[0] == 0;

	if (list_dir(da, top, &na, &ca) < 0 || list_dir(db, top, &nb, &cb) < 0) {
		diff(v, rel, "cannot list directory");
		free_names(na, ca);
		return;
	}
	while (i < ca || j < cb) {
		int c = i >= ca ? 1 : j >= cb ? -1 : strcmp(na[i], nb[j]);
		char path[8192];
		if (c < 0) {
			snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", na[i++]);
			diff(v, path, "only in the first directory");
		} else if (c > 0) {
			snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", nb[j++]);
			diff(v, path, "only in the second directory");
		} else {
			compare_entry(v, ra, rb, rel, da, db, na[i]);
			i++;
			j++;
		}
	}
	free_names(na, ca);
	free_names(nb, cb);
}

int cli_verify(int argc, char **argv)
{
	struct verify v = { 0 };
	_cleanup_close_ int da = -EBADF, db = -EBADF;
	int i = 1;

	if (i < argc && !strcmp(argv[i], "--times")) {
		v.times = true;
		i++;
	}
	if (argc - i != 2) {
		fprintf(stderr, "usage: mirrorctl verify [--times] DIR_A DIR_B\n");
		return 2;
	}
	da = open(argv[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (da < 0)
		return cli_fail("cannot open '%s': %m", argv[i]);
	db = open(argv[i + 1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (db < 0)
		return cli_fail("cannot open '%s': %m", argv[i + 1]);
	compare_tree(&v, argv[i], argv[i + 1], "", da, db);
	free(v.links);
	if (v.diffs) {
		if (v.diffs > MAX_REPORTS)
			printf("... and %u more differences\n", v.diffs - MAX_REPORTS);
		fprintf(stderr, "mirrorctl: '%s' and '%s' differ (%u differences)\n", argv[i],
			argv[i + 1], v.diffs);
		return 1;
	}
	printf("identical\n");
	return 0;
}
