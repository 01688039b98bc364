/* SPDX-License-Identifier: MIT */
/*
 * s3_http.c - the S3 client and its transport: one request signed by
 * libcurl (CURLOPT_AWS_SIGV4) with the x-amz-content-sha256 header libcurl
 * 7.88 does not compute, its body read from a file range or memory, its
 * answer into a file or a bounded memory buffer, and its error turned into
 * one line and an errno. The object operations (s3.c) build on
 * s3_perform().
 *
 * Invariants: every request is bounded in time (a connect timeout, a 30 s
 * stall timeout) and in attempts (network errors, 5xx, 408 and 429 are
 * retried with exponential backoff, nothing else); an answer written to a
 * file is truncated before each retry, or the file is dropped from the
 * request (out_fd -1) when it cannot be rewound.
 */
#include "mirrorfs/s3.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#include "s3_i.h"

/* ------------------------------------------------------------ the client */

struct mfs_s3 *mfs_s3_new(const struct mfs_s3_opts *o, char *err, size_t errlen)
{
	struct mfs_s3 *s;

	if (!o->endpoint || !*o->endpoint) {
		snprintf(err, errlen, "no S3 endpoint (AWS_ENDPOINT_URL or --s3-endpoint)");
		return NULL;
	}
	if (strncmp(o->endpoint, "http://", 7) && strncmp(o->endpoint, "https://", 8)) {
		snprintf(err, errlen, "S3 endpoint '%s' is not http:// or https://", o->endpoint);
		return NULL;
	}
	if (!o->access_key || !*o->access_key || !o->secret_key || !*o->secret_key) {
		snprintf(err, errlen, "no S3 credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
		return NULL;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	s = calloc(1, sizeof(*s));
	if (!s || !(s->curl = curl_easy_init()) || !(s->endpoint = strdup(o->endpoint)) ||
	    asprintf(&s->sigv4, "aws:amz:%s:s3", o->region) < 0 ||
	    asprintf(&s->userpwd, "%s:%s", o->access_key, o->secret_key) < 0 ||
	    asprintf(&s->agent, "mirrorfs (%s)", program_invocation_short_name) < 0) {
		snprintf(err, errlen, "out of memory");
		return mfs_s3_free(s);
	}
	s->bwlimit = o->bwlimit_kib;
	s->attempts = o->attempts > 0 ? o->attempts : 1;
	s->part_size = o->part_size < S3_SMALLEST_PART ? S3_SMALLEST_PART : o->part_size;
	return s;
}

struct mfs_s3 *mfs_s3_free(struct mfs_s3 *s)
{
	if (!s)
		return NULL;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	free(s->endpoint);
	free(s->sigv4);
	free(s->agent);
	if (s->userpwd)
		explicit_bzero(s->userpwd, strlen(s->userpwd));
	free(s->userpwd);
	free(s);
	return NULL;
}

const char *mfs_s3_error(const struct mfs_s3 *s)
{
	return s->err;
}

void mfs_s3_counters(const struct mfs_s3 *s, uint64_t *requests, uint64_t *sent, uint64_t *received)
{
	*requests = s->requests;
	*sent = s->sent;
	*received = s->received;
}

int s3_fail(struct mfs_s3 *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return -EIO;
}

/* ------------------------------------------------------------ one request */

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t want = MFS_MIN(size * n, q->in_len - q->in_pos);
	ssize_t got;

	if (!want)
		return 0;
	if (q->in_mem) {
		memcpy(buf, q->in_mem + q->in_pos, want);
		got = (ssize_t)want;
	} else {
		got = pread(q->in_fd, buf, want, q->in_off + (off_t)q->in_pos);
		if (got <= 0)
			return CURL_READFUNC_ABORT;
	}
	q->in_pos += (size_t)got;
	return (size_t)got;
}

static size_t on_write(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t len = size * n;

	if (q->out_fd >= 0 && q->status / 100 == 2)
		return mfs_write_all(q->out_fd, buf, len) < 0 ? 0 : len;
	if (q->body_len + len > (64u << 20))
		return 0;
	char *b = realloc(q->body, q->body_len + len + 1);
	if (!b)
		return 0;
	memcpy(b + q->body_len, buf, len);
	q->body = b;
	q->body_len += len;
	b[q->body_len] = 0;
	return len;
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t len = size * n;
	char line[256];

	if (len >= sizeof(line))
		return len;
	memcpy(line, buf, len);
	line[len] = 0;
	line[strcspn(line, "\r\n")] = 0;
	if (!strncmp(line, "HTTP/", 5)) {
		const char *sp = strchr(line, ' ');
		q->status = sp ? strtol(sp + 1, NULL, 10) : 0;
	} else if (!strncasecmp(line, "etag:", 5)) {
		s3_etag_copy(q->etag, sizeof(q->etag), line + 5 + strspn(line + 5, " "));
	} else if (!strncasecmp(line, "content-length:", 15)) {
		q->length = strtoull(line + 15, NULL, 10);
	}
	return len;
}

/* The S3 error code of an answer body (<Error><Code>), or "". */
static void error_code(const struct s3_req *q, char *code, size_t len)
{
	xmlDoc *doc = q->body ? xmlReadMemory(q->body, (int)q->body_len, "err.xml", NULL,
					      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
			      : NULL;
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	char *c = root ? s3_xml_text(root, "Code") : NULL;

	snprintf(code, len, "%s", c ? c : "");
	free(c);
	xmlFreeDoc(doc);
}

static struct curl_slist *headers_of(const struct s3_req *q)
{
	struct curl_slist *h = NULL, *t;
	char line[160];

	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", q->sha256 ? q->sha256 : S3_EMPTY_SHA256);
	h = curl_slist_append(h, line);
	if (h && q->md5_b64) {
		snprintf(line, sizeof(line), "Content-MD5: %s", q->md5_b64);
		t = curl_slist_append(h, line);
		h = t ? t : (curl_slist_free_all(h), NULL);
	}
	if (h && q->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", q->content_type);
		t = curl_slist_append(h, line);
		h = t ? t : (curl_slist_free_all(h), NULL);
	}
	return h;
}

static void setup_curl(struct mfs_s3 *s, struct s3_req *q, const char *url, struct curl_slist *h)
{
	CURL *c = s->curl;
	bool upload = q->in_len > 0 || !strcmp(q->method, "PUT") || !strcmp(q->method, "POST");

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(c, CURLOPT_USERPWD, s->userpwd);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_USERAGENT, s->agent);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* stalled 30 s: give up */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, q);
	if (s->bwlimit > 0) {
		curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)s->bwlimit * 1024);
		curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)s->bwlimit * 1024);
	}
	if (!strcmp(q->method, "HEAD")) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (upload) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, q);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->in_len);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
	} else if (strcmp(q->method, "GET")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
	}
}

static bool retryable(CURLcode rc, long status)
{
	if (rc != CURLE_OK)
		return rc != CURLE_WRITE_ERROR && rc != CURLE_ABORTED_BY_CALLBACK &&
		       rc != CURLE_READ_ERROR && rc != CURLE_OUT_OF_MEMORY;
	return status >= 500 || status == 429 || status == 408;
}

static void backoff(int attempt)
{
	long ms = 250L << (attempt < 5 ? attempt : 5); /* 0.25 s .. 8 s */
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void req_reset(struct s3_req *q)
{
	free(q->body);
	q->body = NULL;
	q->body_len = 0;
	q->status = 0;
	q->etag[0] = 0;
	q->length = 0;
	q->in_pos = 0;
	if (q->out_fd >= 0 && (ftruncate(q->out_fd, 0) < 0 || lseek(q->out_fd, 0, SEEK_SET) < 0))
		q->out_fd = -1;
}

/* Run @q with retries. 0 with q->status set (any HTTP answer that is not
 * worth a retry, 2xx or not), or -EIO after a message. */
int s3_perform(struct mfs_s3 *s, struct s3_req *q)
{
	char *url = mfs_s3_url(s->endpoint, q->bucket, q->key, q->query);
	struct curl_slist *h = headers_of(q);
	CURLcode rc = CURLE_OK;
	int r = 0;

	if (!url || !h) {
		r = s3_fail(s, "out of memory");
		goto out;
	}
	for (int attempt = 0; attempt < s->attempts; attempt++) {
		if (attempt)
			backoff(attempt - 1);
		req_reset(q);
		setup_curl(s, q, url, h);
		rc = curl_easy_perform(s->curl);
		s->requests++;
		s->sent += q->in_pos;
		s->received += q->body_len;
		if (!retryable(rc, q->status))
			break;
	}
	if (rc != CURLE_OK)
		r = s3_fail(s, "%s %s: %s", q->method, url, curl_easy_strerror(rc));
	else if (retryable(rc, q->status))
		r = s3_fail(s, "%s %s: HTTP %ld after %d attempts", q->method, url, q->status, s->attempts);
out:
	curl_slist_free_all(h);
	free(url);
	return r;
}

int s3_http_fail(struct mfs_s3 *s, struct s3_req *q)
{
	char code[64];

	error_code(q, code, sizeof(code));
	s3_fail(s, "%s s3://%s/%s%s%s: HTTP %ld%s%s", q->method, q->bucket, q->key ? q->key : "",
	     q->query ? "?" : "", q->query ? q->query : "", q->status, *code ? " " : "", code);
	if (q->status == 404)
		return -ENOENT;
	if (q->status == 403)
		return -EACCES;
	return -EIO;
}

void s3_req_done(struct s3_req *q)
{
	free(q->body);
	q->body = NULL;
}
