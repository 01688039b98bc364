/* SPDX-License-Identifier: MIT */
/*
 * jdir.c - the journal folder and its small files, and the listing of a
 * folder's closed segments.
 *
 * The state and promoted files are text, one "KEY=VALUE\n" line per field,
 * replaced durably and atomically (mfs_replace_file), so a reader sees the
 * old or the new file, never half of one:
 *
 *	state:    dataset=UUID checkpoint=N last=N segment=N [chain_lsn=N chain_tag=HEX64]
 *	promoted: dataset=UUID promoted_lsn=N time_ns=N
 *
 * mirrorfs writes state at every checkpoint and rotation and reads it at
 * mount; `mirrorctl promote` writes both; `mirrorctl rejoin` reads state;
 * mirrorfs reads promoted at mount (fs/snap.c: a snapshot older than the
 * promotion is broken). The reader trusts nothing: at most MAX_TEXT bytes,
 * every line ends with '\n', a key of [a-z_], a value without blanks,
 * numbers plain decimal within 64 bits, no key twice; unknown keys on
 * well-formed lines are skipped so that a newer writer can add a field.
 */
#include "mirrorfs/jdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

#define MAX_TEXT 4096
#define KEY_MAX 31
#define MAX_KEYS 6

/* ================================================================ KEY=VALUE files */

/* The fields of one file: keys[0] is "dataset" (a UUID), the rest numbers. */
struct kv_spec {
	const char *file;
	const char *keys[MAX_KEYS];
	unsigned n_keys;
	unsigned required; /* bit k: keys[k] must be present */
	unsigned tag_key;  /* non-zero: keys[tag_key] is a tag (64 hex digits), not a number */
};

struct kv_values {
	uint8_t uuid[16];
	uint64_t num[MAX_KEYS];
	uint8_t tag[MFS_TAG_SIZE];
	unsigned seen; /* bit k: keys[k] was read */
};

static int refuse(const struct kv_spec *spec, unsigned line, const char *why)
{
	log_debug("'%s': line %u: %s", spec->file, line, why);
	return -EBADMSG;
}

/* Plain decimal within 64 bits: no sign, no blank, at least one digit. */
static int parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return -EBADMSG;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -EBADMSG;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = v;
	return 0;
}

static int kv_line(const struct kv_spec *spec, char *line, unsigned no, struct kv_values *v)
{
	char *eq = strchr(line, '=');
	size_t klen = eq ? (size_t)(eq - line) : 0;

	if (!eq || klen == 0 || klen > KEY_MAX || strspn(line, "abcdefghijklmnopqrstuvwxyz_") != klen)
		return refuse(spec, no, "not KEY=VALUE");
	*eq++ = 0;
	for (const char *c = eq; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return refuse(spec, no, "a blank or control character in the value");
	for (unsigned k = 0; k < spec->n_keys; k++) {
		if (strcmp(line, spec->keys[k]))
			continue;
		if (v->seen & (1u << k))
			return refuse(spec, no, "a key given twice");
		if (k == 0		      ? mfs_uuid_parse(eq, v->uuid) < 0 || strlen(eq) != 36
		    : k == spec->tag_key ? mfs_auth_tag_parse(eq, v->tag) < 0
					  : parse_u64(eq, &v->num[k]) < 0)
			return refuse(spec, no, "a bad value");
		v->seen |= 1u << k;
	}
	return 0; /* an unknown key: a newer writer's */
}

static int kv_read(int dirfd, const struct kv_spec *spec, struct kv_values *ret)
{
	_cleanup_free_ char *text = NULL;
	struct kv_values v = { 0 };
	size_t len;
	unsigned no = 0;
	char *p, *nl;
	int r;

	r = mfs_read_file(dirfd, spec->file, MAX_TEXT, &text, &len);
	if (r == -EFBIG)
		return refuse(spec, 0, "too large");
	if (r < 0)
		return r;
	if (memchr(text, 0, len))
		return refuse(spec, 0, "a NUL byte");
	for (p = text; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			return refuse(spec, no + 1, "no newline at the end (truncated?)");
		*nl = 0;
		r = kv_line(spec, p, ++no, &v);
		if (r < 0)
			return r;
	}
	if ((v.seen & spec->required) != spec->required)
		return refuse(spec, no, "a required key is missing");
	*ret = v;
	return 0;
}

/* Write @uuid and the numbers @num; keys from spec->tag_key - 1 on (the
 * chain: its LSN and @tag) only when @tag is non-NULL. */
static int kv_write(int dirfd, const struct kv_spec *spec, const uint8_t uuid[16],
		    const uint64_t *num, const uint8_t *tag)
{
	char buf[MAX_TEXT], text[65];
	size_t len;

	mfs_uuid_format(uuid, text);
	len = (size_t)snprintf(buf, sizeof(buf), "%s=%s\n", spec->keys[0], text);
	for (unsigned k = 1; k < spec->n_keys; k++) {
		if (spec->tag_key && k + 1 >= spec->tag_key && !tag)
			break;
		if (k == spec->tag_key) {
			mfs_auth_tag_format(tag, text);
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s=%s\n",
						spec->keys[k], text);
		} else {
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s=%" PRIu64 "\n",
						spec->keys[k], num[k]);
		}
	}
	return mfs_replace_file(dirfd, spec->file, buf, len, 0600);
}

/* ================================================================ state, promoted */

static const struct kv_spec state_spec = {
	.file = MFS_JDIR_STATE,
	.keys = { "dataset", "checkpoint", "last", "segment", "chain_lsn", "chain_tag" },
	.n_keys = 6,
	.required = 1u << 0,
	.tag_key = 5,
};

static const struct kv_spec promoted_spec = {
	.file = MFS_JDIR_PROMOTED,
	.keys = { "dataset", "promoted_lsn", "time_ns" },
	.n_keys = 3,
	.required = 1u << 0 | 1u << 2,
};

int mfs_jstate_read(int jdirfd, struct mfs_jstate *ret)
{
	struct kv_values v;
	int r = kv_read(jdirfd, &state_spec, &v);

	if (r < 0)
		return r;
	*ret = (struct mfs_jstate){ .checkpoint = v.num[1], .last = v.num[2], .segment = v.num[3] };
	memcpy(ret->data_set, v.uuid, 16);
	if ((v.seen & (1u << 4 | 1u << 5)) == (1u << 4 | 1u << 5)) {
		ret->have_chain = true;
		ret->chain_lsn = v.num[4];
		memcpy(ret->chain_tag, v.tag, MFS_TAG_SIZE);
	}
	return 0;
}

int mfs_jstate_write(int jdirfd, const struct mfs_jstate *st)
{
	uint64_t num[] = { 0, st->checkpoint, st->last, st->segment, st->chain_lsn, 0 };

	return kv_write(jdirfd, &state_spec, st->data_set, num, st->have_chain ? st->chain_tag : NULL);
}

int mfs_jpromoted_read(int jdirfd, struct mfs_jpromoted *ret)
{
	struct kv_values v;
	int r = kv_read(jdirfd, &promoted_spec, &v);

	if (r < 0)
		return r;
	*ret = (struct mfs_jpromoted){ .promoted_lsn = v.num[1], .time_ns = v.num[2] };
	memcpy(ret->data_set, v.uuid, 16);
	return 0;
}

int mfs_jpromoted_write(int jdirfd, const struct mfs_jpromoted *p)
{
	uint64_t num[] = { 0, p->promoted_lsn, p->time_ns };

	return kv_write(jdirfd, &promoted_spec, p->data_set, num, NULL);
}

/* ================================================================ folders */

int mfs_jdir_open(const char *path, bool create, bool *ret_made)
{
	bool made = false;
	int fd, r;

	if (create) {
		if (mkdir(path, 0700) == 0)
			made = true;
		else if (errno != EEXIST)
			return -errno;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (made) { /* a power cut must not lose the journal folder itself */
		r = mfs_fsync_dir(fd, "..");
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	if (ret_made)
		*ret_made = made;
	return fd;
}

int mfs_jdir_open_sub(int jdirfd, const char *sub, bool create, bool *ret_made)
{
	bool made = false;
	int fd;

	if (create) {
		if (mkdirat(jdirfd, sub, 0700) == 0)
			made = true;
		else if (errno != EEXIST)
			return -errno;
	}
	fd = openat(jdirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ret_made)
		*ret_made = made;
	return fd;
}

bool mfs_jdir_is_open_name(const char *name)
{
	size_t n = strlen(name), p = strlen(MFS_JDIR_OPEN_PREFIX), s = strlen(MFS_SEG_SUFFIX);

	return n > p + s && !strncmp(name, MFS_JDIR_OPEN_PREFIX, p) &&
	       !strcmp(name + n - s, MFS_SEG_SUFFIX);
}

void mfs_jdir_open_name(uint64_t seg_no, char out[64])
{
	snprintf(out, 64, MFS_JDIR_OPEN_PREFIX "%020" PRIu64 MFS_SEG_SUFFIX, seg_no);
}

/* ================================================================ segment listing */

static int segent_cmp(const void *a, const void *b)
{
	const struct mfs_segent *x = a, *y = b;

	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return x->last < y->last ? -1 : x->last > y->last;
}

int mfs_segdir_list(int dirfd, struct mfs_segent **ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct mfs_segent *v = NULL, *nv;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;

	r = mfs_dir_open(dirfd, ".", &d); /* its own offset: @dirfd's is left alone */
	if (r < 0)
		return r;
	for (;;) {
		struct mfs_segent e;

		errno = 0;
		de = readdir(d);
		if (!de) {
			r = -errno;
			break;
		}
		if (strlen(de->d_name) != MFS_SEG_NAME_LEN ||
		    !mfs_seg_name_parse(de->d_name, &e.first, &e.last))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		memcpy(e.name, de->d_name, MFS_SEG_NAME_LEN + 1);
		v[n++] = e;
	}
	if (r < 0) {
		free(v);
		return r;
	}
	if (n)
		qsort(v, n, sizeof(*v), segent_cmp);
	*ret = v;
	*ret_n = n;
	return 0;
}
