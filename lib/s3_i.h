/* SPDX-License-Identifier: MIT */
/*
 * s3_i.h - what the S3 client's files share: the client (struct mfs_s3)
 * and one request (struct s3_req), made and run with retries by
 * s3_http.c, used by the object operations in s3.c; and the two XML and
 * ETag helpers of s3_parse.c the other two need.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <libxml/tree.h>

#define S3_SMALLEST_PART (5u << 20)
#define S3_MAX_PARTS 10000
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct mfs_s3 {
	CURL *curl;
	char *endpoint, *sigv4, *userpwd;
	char *agent; /* User-Agent: "mirrorfs (PROGRAM)", so a server's log tells who asked */
	long bwlimit;
	int attempts;
	size_t part_size;
	uint64_t requests, sent, received;
	char err[512];
};

/* One request: a body read from @in_fd at [in_off, in_off + in_len) or from
 * @in_mem, an answer into @out_fd (rewound on a retry) or a memory buffer. */
struct s3_req {
	const char *method, *bucket, *key, *query;
	int in_fd;
	off_t in_off;
	size_t in_len;
	const char *in_mem;
	const char *sha256;     /* hex, of the body */
	const char *md5_b64;    /* Content-MD5, or NULL */
	const char *content_type;
	int out_fd;
	/* results */
	long status;
	char *body;
	size_t body_len;
	char etag[80];
	uint64_t length;
	size_t in_pos;
};

/* Set @s's error message (printf @fmt); returns -EIO. */
__attribute__((format(printf, 2, 3))) int s3_fail(struct mfs_s3 *s, const char *fmt, ...);

/* Run @q with retries. 0 with q->status set (any HTTP answer that is not
 * worth a retry, 2xx or not), or -EIO after a message. */
int s3_perform(struct mfs_s3 *s, struct s3_req *q);

/* The error message of a non-2xx answer; returns -ENOENT (404), -EACCES
 * (403) or -EIO. */
int s3_http_fail(struct mfs_s3 *s, struct s3_req *q);

/* Free what s3_perform() left in @q (the answer body). */
void s3_req_done(struct s3_req *q);

/* The text of @n's child @name, malloc'd, or NULL. */
char *s3_xml_text(xmlNode *n, const char *name);

/* @src without its surrounding quotes into @dst (@len bytes, truncated). */
void s3_etag_copy(char *dst, size_t len, const char *src);
