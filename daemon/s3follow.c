/* SPDX-License-Identifier: MIT */
/*
 * s3follow.c - mirrord --incoming s3://BUCKET/PREFIX/: follow a bucket that
 * mirrorfs-ship fills. Each poll is one LIST of PREFIX/segments/ with
 * start-after the last key fetched (at most one page); the new segments are
 * downloaded (each checked against its ETag, lib/s3.c) into a local
 * incoming folder, where the ordinary machinery validates and applies them.
 *
 * The first poll lists from the start and skips the segments the state
 * already applied; after that the cost of a quiet bucket is one LIST per
 * poll. Any number of mirrors follow one bucket, each with its own state:
 * nothing is written to the bucket.
 */
#include "s3follow.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/applied.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/s3.h"
#include "mirrorfs/segment.h"

#define PAGE 1000 /* keys per poll: one LIST request */

struct mirror_s3 {
	struct mfs_s3 *s3;
	char *bucket, *prefix; /* prefix: PREFIX/segments/ */
	char *incoming;        /* local folder the segments go to */
	char *last_key;        /* start-after; NULL: the first poll */
	int state_fd;
	uint64_t polls, fetched;
};

int mirror_s3_new(const char *url, const char *endpoint, const char *incoming, int state_fd,
		  struct mirror_s3 **ret)
{
	struct mirror_s3 *f = calloc(1, sizeof(*f));
	struct mfs_s3_opts o;
	char *key = NULL, err[256];

	if (!f)
		return -ENOMEM;
	f->state_fd = state_fd;
	if (mfs_s3_parse_url(url, &f->bucket, &key) < 0) {
		log_error("--incoming '%s' is not s3://BUCKET/PREFIX/", url);
		free(f);
		return -EINVAL;
	}
	mfs_s3_opts_from_env(&o);
	if (endpoint)
		o.endpoint = endpoint;
	f->s3 = mfs_s3_new(&o, err, sizeof(err));
	if (!f->s3 || asprintf(&f->prefix, "%s%ssegments/", key, *key && key[strlen(key) - 1] != '/' ? "/" : "") < 0 ||
	    !(f->incoming = strdup(incoming))) {
		if (!f->s3)
			log_error("%s", err);
		free(key);
		mirror_s3_free(f);
		return -EINVAL;
	}
	free(key);
	*ret = f;
	return 0;
}

struct mirror_s3 *mirror_s3_free(struct mirror_s3 *f)
{
	if (!f)
		return NULL;
	mfs_s3_free(f->s3);
	free(f->bucket);
	free(f->prefix);
	free(f->incoming);
	free(f->last_key);
	free(f);
	return NULL;
}

/* Download one listed object unless the state already applied all of it. */
static int fetch_one(struct mirror_s3 *f, const struct mfs_s3_object *o, uint64_t applied)
{
	const char *name = o->key + strlen(f->prefix);
	uint64_t first, last;
	char *path = NULL;
	int r;

	if (!mfs_seg_name_parse(name, &first, &last) || last <= applied)
		return 0;
	if (asprintf(&path, "%s/%s", f->incoming, name) < 0)
		return -ENOMEM;
	if (faccessat(AT_FDCWD, path, F_OK, 0) == 0) {
		free(path);
		return 0;
	}
	r = mfs_s3_get_file(f->s3, f->bucket, o->key, path);
	free(path);
	if (r < 0) {
		log_error("cannot fetch s3://%s/%s: %s", f->bucket, o->key, mfs_s3_error(f->s3));
		return r;
	}
	log_debug("fetched s3://%s/%s", f->bucket, o->key);
	f->fetched++;
	return 1;
}

int mirror_s3_poll(struct mirror_s3 *f)
{
	struct mfs_s3_list l = { 0 };
	struct mfs_applied st = { 0 };
	int r, n = 0;

	if (mfs_applied_read(f->state_fd, &st) < 0)
		st.applied_lsn = 0;
	f->polls++;
	r = mfs_s3_list(f->s3, f->bucket, f->prefix, f->last_key, PAGE, &l);
	if (r < 0) {
		log_error("cannot list s3://%s/%s: %s", f->bucket, f->prefix, mfs_s3_error(f->s3));
		mfs_s3_list_done(&l);
		return r;
	}
	log_debug("LIST s3://%s/%s after '%s': %zu key(s)", f->bucket, f->prefix,
		  f->last_key ? f->last_key : "", l.n);
	for (size_t i = 0; i < l.n && i < PAGE; i++) {
		if (strncmp(l.v[i].key, f->prefix, strlen(f->prefix)))
			continue;
		r = fetch_one(f, &l.v[i], st.applied_lsn);
		if (r < 0)
			break; /* not past it: the next poll starts here again */
		n += r;
		free(f->last_key);
		f->last_key = strdup(l.v[i].key);
		if (!f->last_key) {
			r = -ENOMEM;
			break;
		}
	}
	mfs_s3_list_done(&l);
	if (n)
		log_info("fetched %d segment(s) from s3://%s/%s", n, f->bucket, f->prefix);
	return r < 0 ? r : n;
}
