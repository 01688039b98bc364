/* SPDX-License-Identifier: MIT */
/*
 * s3.h - a small S3 client over libcurl (AWS Signature V4 by libcurl),
 * enough for shipping segments to, and restoring them from, an
 * S3-compatible object store: PUT (multipart for large files) verified by
 * Content-MD5 and the returned ETag, GET verified the same way, HEAD, LIST
 * (prefix, start-after, every page), DELETE, bucket creation.
 *
 * Addressing is path-style (ENDPOINT/BUCKET/KEY), which every S3-compatible
 * server accepts. Every request is bounded: a connect timeout, a stall
 * timeout, and a bounded number of attempts with exponential backoff for
 * network errors, 5xx and 429 answers. Requests carry the User-Agent
 * "mirrorfs (PROGRAM)", so that the server's access log tells which
 * program made each one (tests/bench/s3 counts them there).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct mfs_s3;

struct mfs_s3_opts {
	const char *endpoint;   /* http(s)://HOST[:PORT] (no trailing path) */
	const char *region;     /* signing region, e.g. "us-east-1" */
	const char *access_key;
	const char *secret_key;
	long bwlimit_kib;       /* KiB/s each way, 0 = unlimited */
	int attempts;           /* tries per request (>= 1) */
	size_t part_size;       /* multipart above this size (>= 5 MiB) */
};

struct mfs_s3_object {
	char *key;
	uint64_t size;
	char etag[80];          /* without quotes */
};

struct mfs_s3_list {
	struct mfs_s3_object *v;
	size_t n, cap;
	int truncated;          /* one page: more after this one */
	char *next_token;       /* one page: NextContinuationToken */
};

/* Fill @o from AWS_ENDPOINT_URL, AWS_REGION (or AWS_DEFAULT_REGION, else
 * us-east-1), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, with defaults
 * (5 attempts, 16 MiB parts); fields stay borrowed from the environment. */
void mfs_s3_opts_from_env(struct mfs_s3_opts *o);

/* A client, or NULL with a reason in @err (missing endpoint or keys). */
struct mfs_s3 *mfs_s3_new(const struct mfs_s3_opts *o, char *err, size_t errlen);
struct mfs_s3 *mfs_s3_free(struct mfs_s3 *s);

/* The last error of @s, one line. */
const char *mfs_s3_error(const struct mfs_s3 *s);

/* Requests made and bytes sent/received so far (the bill). */
void mfs_s3_counters(const struct mfs_s3 *s, uint64_t *requests, uint64_t *sent, uint64_t *received);

/* Upload @path as @key unless an object with the same size and MD5 is
 * already there. 0 uploaded and verified, 1 already there, -EEXIST another
 * object holds the key (never overwritten), other <0 error. */
int mfs_s3_put_file(struct mfs_s3 *s, const char *bucket, const char *key, const char *path);

/* Download @key into @path (a temporary beside it, verified, renamed). */
int mfs_s3_get_file(struct mfs_s3 *s, const char *bucket, const char *key, const char *path);

/* HEAD: 0 and @o filled (o->key NULL), -ENOENT, or <0. */
int mfs_s3_head(struct mfs_s3 *s, const char *bucket, const char *key, struct mfs_s3_object *o);

/* Every key under @prefix after @start_after (NULL: from the start), in
 * key order, appended to @l (all pages, at most @max keys; 0 = no limit). */
int mfs_s3_list(struct mfs_s3 *s, const char *bucket, const char *prefix, const char *start_after,
		size_t max, struct mfs_s3_list *l);

int mfs_s3_delete(struct mfs_s3 *s, const char *bucket, const char *key);
int mfs_s3_make_bucket(struct mfs_s3 *s, const char *bucket);

/* ---- pure helpers (unit-tested) */

/* s3://BUCKET[/KEY]: 0 with malloc'd @bucket and @key ("" when absent), or -EINVAL. */
int mfs_s3_parse_url(const char *url, char **bucket, char **key);

/* RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept,
 * '/' kept when @keep_slash. malloc'd. */
char *mfs_s3_encode(const char *s, int keep_slash);

/* ENDPOINT/BUCKET[/KEY][?QUERY], the key encoded. malloc'd. */
char *mfs_s3_url(const char *endpoint, const char *bucket, const char *key, const char *query);

/* Parse one ListObjectsV2 answer into @l (appends). 0 or -EINVAL. */
int mfs_s3_list_parse(const char *xml, size_t len, struct mfs_s3_list *l);
void mfs_s3_list_done(struct mfs_s3_list *l);

/* The ETag S3 gives an upload of @nparts parts whose MD5s are @md5s
 * (16 bytes each): hex MD5 for one plain PUT (@nparts 0), else
 * hex(MD5(md5s...))-N. @out has room for 48 bytes. */
void mfs_s3_etag(const unsigned char *md5s, size_t nparts, char *out);
