/* SPDX-License-Identifier: MIT */
/*
 * s3.c - a small S3 client: libcurl signs (CURLOPT_AWS_SIGV4), OpenSSL
 * hashes (the x-amz-content-sha256 header libcurl 7.88 does not compute,
 * Content-MD5, ETags), libxml2 parses the XML answers.
 *
 * Invariants: an object is never overwritten (put checks with HEAD first
 * and refuses a key that holds other bytes); an upload counts only when the
 * server's ETag equals the MD5 computed here (the server also checks the
 * body against Content-MD5); a download is written to a temporary beside
 * its target, its MD5 checked against the ETag (single-part objects), and
 * renamed only then. Every request is bounded in time and in attempts.
 */
#include "mirrorfs/s3.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

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

/* ------------------------------------------------------------ pure helpers */

int mfs_s3_parse_url(const char *url, char **bucket, char **key)
{
	const char *b, *slash;

	if (strncmp(url, "s3://", 5))
		return -EINVAL;
	b = url + 5;
	slash = strchr(b, '/');
	if (slash == b || !*b)
		return -EINVAL;
	*bucket = slash ? strndup(b, (size_t)(slash - b)) : strdup(b);
	*key = strdup(slash ? slash + 1 : "");
	if (!*bucket || !*key) {
		free(*bucket);
		free(*key);
		return -ENOMEM;
	}
	return 0;
}

char *mfs_s3_encode(const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *p = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && keep_slash)) {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = 0;
	return out;
}

char *mfs_s3_url(const char *endpoint, const char *bucket, const char *key, const char *query)
{
	char *k = mfs_s3_encode(key ? key : "", 1), *out = NULL;
	size_t el = strlen(endpoint);

	if (!k)
		return NULL;
	while (el > 0 && endpoint[el - 1] == '/')
		el--;
	if (asprintf(&out, "%.*s/%s%s%s%s%s", (int)el, endpoint, bucket, key && *key ? "/" : "", k,
		     query && *query ? "?" : "", query ? query : "") < 0)
		out = NULL;
	free(k);
	return out;
}

void mfs_s3_etag(const unsigned char *md5s, size_t nparts, char *out)
{
	unsigned char d[16];
	unsigned int dl = 0;
	const unsigned char *h = md5s;

	if (nparts) {
		EVP_Digest(md5s, nparts * 16, d, &dl, EVP_md5(), NULL);
		h = d;
	}
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", h[i]);
	if (nparts)
		sprintf(out + 32, "-%zu", nparts);
}

void mfs_s3_list_done(struct mfs_s3_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].key);
	free(l->v);
	free(l->next_token);
	memset(l, 0, sizeof(*l));
}

static xmlNode *child(xmlNode *n, const char *name)
{
	for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
			return c;
	return NULL;
}

/* The text of @n's child @name, malloc'd, or NULL. */
static char *child_text(xmlNode *n, const char *name)
{
	xmlNode *c = child(n, name);
	xmlChar *t;
	char *out;

	if (!c)
		return NULL;
	t = xmlNodeGetContent(c);
	out = strdup(t ? (const char *)t : "");
	xmlFree(t);
	return out;
}

static void etag_copy(char *dst, size_t len, const char *src)
{
	size_t n;

	if (*src == '"')
		src++;
	n = strlen(src);
	if (n > 0 && src[n - 1] == '"')
		n--;
	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = 0;
}

static int list_add(struct mfs_s3_list *l, xmlNode *c)
{
	struct mfs_s3_object *o;
	char *key = child_text(c, "Key"), *size = child_text(c, "Size"), *etag = child_text(c, "ETag");
	char *end = NULL;
	int r = -EINVAL;

	if (!key || !size)
		goto out;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		void *v = realloc(l->v, cap * sizeof(*l->v));

		if (!v) {
			r = -ENOMEM;
			goto out;
		}
		l->v = v;
		l->cap = cap;
	}
	o = &l->v[l->n];
	memset(o, 0, sizeof(*o));
	o->size = strtoull(size, &end, 10);
	if (!*size || *end)
		goto out;
	etag_copy(o->etag, sizeof(o->etag), etag ? etag : "");
	o->key = key;
	key = NULL;
	l->n++;
	r = 0;
out:
	free(key);
	free(size);
	free(etag);
	return r;
}

int mfs_s3_list_parse(const char *xml, size_t len, struct mfs_s3_list *l)
{
	xmlDoc *doc = xmlReadMemory(xml, (int)len, "list.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	char *trunc;
	int r = 0;

	if (!root || strcmp((const char *)root->name, "ListBucketResult")) {
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	for (xmlNode *c = root->children; c && !r; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "Contents"))
			r = list_add(l, c);
	trunc = child_text(root, "IsTruncated");
	l->truncated = trunc && !strcmp(trunc, "true");
	free(trunc);
	free(l->next_token);
	l->next_token = child_text(root, "NextContinuationToken");
	xmlFreeDoc(doc);
	return r;
}

/* ------------------------------------------------------------ the client */

void mfs_s3_opts_from_env(struct mfs_s3_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->endpoint = getenv("AWS_ENDPOINT_URL");
	o->region = getenv("AWS_REGION");
	if (!o->region || !*o->region)
		o->region = getenv("AWS_DEFAULT_REGION");
	if (!o->region || !*o->region)
		o->region = "us-east-1";
	o->access_key = getenv("AWS_ACCESS_KEY_ID");
	o->secret_key = getenv("AWS_SECRET_ACCESS_KEY");
	o->attempts = 5;
	o->part_size = 16u << 20;
}

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

__attribute__((format(printf, 2, 3))) static int fail(struct mfs_s3 *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return -EIO;
}

/* One request: a body read from @in_fd at [in_off, in_off + in_len) or from
 * @in_mem, an answer into @out_fd (rewound on a retry) or a memory buffer. */
struct req {
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

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
	struct req *q = arg;
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
	struct req *q = arg;
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
	struct req *q = arg;
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
		etag_copy(q->etag, sizeof(q->etag), line + 5 + strspn(line + 5, " "));
	} else if (!strncasecmp(line, "content-length:", 15)) {
		q->length = strtoull(line + 15, NULL, 10);
	}
	return len;
}

/* The S3 error code of an answer body (<Error><Code>), or "". */
static void error_code(const struct req *q, char *code, size_t len)
{
	xmlDoc *doc = q->body ? xmlReadMemory(q->body, (int)q->body_len, "err.xml", NULL,
					      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
			      : NULL;
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	char *c = root ? child_text(root, "Code") : NULL;

	snprintf(code, len, "%s", c ? c : "");
	free(c);
	xmlFreeDoc(doc);
}

static struct curl_slist *headers_of(const struct req *q)
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

static void setup_curl(struct mfs_s3 *s, struct req *q, const char *url, struct curl_slist *h)
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

static void req_reset(struct req *q)
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
static int perform(struct mfs_s3 *s, struct req *q)
{
	char *url = mfs_s3_url(s->endpoint, q->bucket, q->key, q->query);
	struct curl_slist *h = headers_of(q);
	CURLcode rc = CURLE_OK;
	int r = 0;

	if (!url || !h) {
		r = fail(s, "out of memory");
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
		r = fail(s, "%s %s: %s", q->method, url, curl_easy_strerror(rc));
	else if (retryable(rc, q->status))
		r = fail(s, "%s %s: HTTP %ld after %d attempts", q->method, url, q->status, s->attempts);
out:
	curl_slist_free_all(h);
	free(url);
	return r;
}

static int http_fail(struct mfs_s3 *s, struct req *q)
{
	char code[64];

	error_code(q, code, sizeof(code));
	fail(s, "%s s3://%s/%s%s%s: HTTP %ld%s%s", q->method, q->bucket, q->key ? q->key : "",
	     q->query ? "?" : "", q->query ? q->query : "", q->status, *code ? " " : "", code);
	if (q->status == 404)
		return -ENOENT;
	if (q->status == 403)
		return -EACCES;
	return -EIO;
}

static void req_done(struct req *q)
{
	free(q->body);
	q->body = NULL;
}

/* ------------------------------------------------------------ operations */

int mfs_s3_head(struct mfs_s3 *s, const char *bucket, const char *key, struct mfs_s3_object *o)
{
	struct req q = { .method = "HEAD", .bucket = bucket, .key = key, .out_fd = -1 };
	int r = perform(s, &q);

	if (!r && q.status / 100 != 2)
		r = http_fail(s, &q);
	if (!r) {
		memset(o, 0, sizeof(*o));
		o->size = q.length;
		snprintf(o->etag, sizeof(o->etag), "%s", q.etag);
	}
	req_done(&q);
	return r;
}

int mfs_s3_delete(struct mfs_s3 *s, const char *bucket, const char *key)
{
	struct req q = { .method = "DELETE", .bucket = bucket, .key = key, .out_fd = -1 };
	int r = perform(s, &q);

	if (!r && q.status / 100 != 2)
		r = http_fail(s, &q);
	req_done(&q);
	return r;
}

int mfs_s3_make_bucket(struct mfs_s3 *s, const char *bucket)
{
	struct req q = { .method = "PUT", .bucket = bucket, .out_fd = -1 };
	int r = perform(s, &q);

	if (!r && q.status / 100 != 2)
		r = http_fail(s, &q);
	req_done(&q);
	return r;
}

static char *list_query(const char *prefix, const char *start_after, const char *token)
{
	char *p = mfs_s3_encode(prefix ? prefix : "", 0);
	char *a = mfs_s3_encode(start_after ? start_after : "", 0);
	char *t = mfs_s3_encode(token ? token : "", 0);
	char *q = NULL;

	/* SigV4 wants the parameters sorted: libcurl 7.88 signs them as given */
	if (p && a && t &&
	    asprintf(&q, "%s%s%slist-type=2&prefix=%s%s%s", token ? "continuation-token=" : "", token ? t : "",
		     token ? "&" : "", p, start_after && *start_after ? "&start-after=" : "",
		     start_after && *start_after ? a : "") < 0)
		q = NULL;
	free(p);
	free(a);
	free(t);
	return q;
}

int mfs_s3_list(struct mfs_s3 *s, const char *bucket, const char *prefix, const char *start_after,
		size_t max, struct mfs_s3_list *l)
{
	char *token = NULL;
	int r = 0;

	for (int page = 0; page < 1000000 && !r; page++) {
		struct req q = { .method = "GET", .bucket = bucket, .out_fd = -1 };
		char *query = list_query(prefix, start_after, token);

		if (!query)
			return fail(s, "out of memory");
		q.query = query;
		r = perform(s, &q);
		if (!r && q.status / 100 != 2)
			r = http_fail(s, &q);
		if (!r && mfs_s3_list_parse(q.body, q.body_len, l) < 0)
			r = fail(s, "LIST s3://%s/%s: an answer that is not a ListBucketResult", bucket, prefix);
		req_done(&q);
		free(query);
		free(token);
		token = NULL;
		if (r || !l->truncated || (max && l->n >= max))
			break;
		if (!l->next_token || !*l->next_token) {
			r = fail(s, "LIST s3://%s/%s: truncated without a continuation token", bucket, prefix);
			break;
		}
		token = strdup(l->next_token);
		if (!token)
			r = fail(s, "out of memory");
	}
	free(token);
	return r;
}

/* MD5 and SHA-256 of [off, off + len) of @fd. */
static int hash_range(int fd, off_t off, size_t len, unsigned char md5[16], char sha_hex[65])
{
	EVP_MD_CTX *m = EVP_MD_CTX_new(), *h = EVP_MD_CTX_new();
	unsigned char buf[1 << 16], sha[32];
	size_t done = 0;
	int r = 0;

	if (!m || !h || !EVP_DigestInit_ex(m, EVP_md5(), NULL) || !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
		r = -ENOMEM;
	while (!r && done < len) {
		ssize_t n = pread(fd, buf, MFS_MIN(sizeof(buf), len - done), off + (off_t)done);

		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		EVP_DigestUpdate(m, buf, (size_t)n);
		EVP_DigestUpdate(h, buf, (size_t)n);
		done += (size_t)n;
	}
	if (!r) {
		EVP_DigestFinal_ex(m, md5, NULL);
		EVP_DigestFinal_ex(h, sha, NULL);
		for (int i = 0; i < 32; i++)
			sprintf(sha_hex + 2 * i, "%02x", sha[i]);
	}
	EVP_MD_CTX_free(m);
	EVP_MD_CTX_free(h);
	return r;
}

static void b64(const unsigned char md5[16], char out[32])
{
	EVP_EncodeBlock((unsigned char *)out, md5, 16);
}

/* PUT [off, off+len) of @fd (a whole object, or one part with @query). */
static int put_range(struct mfs_s3 *s, const char *bucket, const char *key, const char *query, int fd,
		     off_t off, size_t len, unsigned char md5[16])
{
	char sha[65], m64[32], want[48];
	struct req q = { .method = "PUT", .bucket = bucket, .key = key, .query = query, .in_fd = fd,
			 .in_off = off, .in_len = len, .sha256 = sha, .md5_b64 = m64, .out_fd = -1,
			 .content_type = "application/octet-stream" };
	int r = hash_range(fd, off, len, md5, sha);

	if (r < 0)
		return fail(s, "cannot read the file to upload: %s", strerror(-r));
	b64(md5, m64);
	r = perform(s, &q);
	if (!r && q.status / 100 != 2)
		r = http_fail(s, &q);
	mfs_s3_etag(md5, 0, want);
	if (!r && strcasecmp(q.etag, want))
		r = fail(s, "PUT s3://%s/%s: the server's ETag '%s' is not the MD5 %s of what was sent", bucket,
			 key, q.etag, want);
	req_done(&q);
	return r;
}

static int post_xml(struct mfs_s3 *s, struct req *q, const char *xml)
{
	unsigned char md5[16], sha[32];
	char sha_hex[65], m64[32];
	int r;

	q->in_mem = xml;
	q->in_len = strlen(xml);
	q->out_fd = -1;
	EVP_Digest(xml, q->in_len, md5, NULL, EVP_md5(), NULL);
	EVP_Digest(xml, q->in_len, sha, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(sha_hex + 2 * i, "%02x", sha[i]);
	b64(md5, m64);
	q->sha256 = sha_hex;
	q->md5_b64 = m64;
	q->content_type = "application/xml";
	r = perform(s, q);
	if (!r && q->status / 100 != 2)
		r = http_fail(s, q);
	return r;
}

static char *xml_field(const struct req *q, const char *root_name, const char *name)
{
	xmlDoc *doc = q->body ? xmlReadMemory(q->body, (int)q->body_len, "r.xml", NULL, XML_PARSE_NONET) : NULL;
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	char *v = NULL;

	if (root && !strcmp((const char *)root->name, root_name))
		v = child_text(root, name);
	xmlFreeDoc(doc);
	return v;
}

static int multipart_start(struct mfs_s3 *s, const char *bucket, const char *key, char **upload_id)
{
	struct req q = { .method = "POST", .bucket = bucket, .key = key, .query = "uploads=", .out_fd = -1 };
	int r = post_xml(s, &q, "");

	if (!r) {
		*upload_id = xml_field(&q, "InitiateMultipartUploadResult", "UploadId");
		if (!*upload_id || !**upload_id)
			r = fail(s, "POST s3://%s/%s?uploads=: no UploadId in the answer", bucket, key);
	}
	req_done(&q);
	return r;
}

static void multipart_abort(struct mfs_s3 *s, const char *bucket, const char *key, const char *qid)
{
	char *query = NULL;
	char saved[sizeof(s->err)];

	memcpy(saved, s->err, sizeof(saved));
	if (asprintf(&query, "uploadId=%s", qid) >= 0) {
		struct req q = { .method = "DELETE", .bucket = bucket, .key = key, .query = query, .out_fd = -1 };

		perform(s, &q);
		req_done(&q);
	}
	free(query);
	memcpy(s->err, saved, sizeof(saved));
}

static int multipart_finish(struct mfs_s3 *s, const char *bucket, const char *key, const char *qid,
			    const unsigned char *md5s, size_t nparts)
{
	size_t cap = 128 + nparts * 96;
	char *xml = malloc(cap), *query = NULL, *etag = NULL, want[48];
	size_t len;
	int r;

	if (!xml || asprintf(&query, "uploadId=%s", qid) < 0) {
		free(xml);
		return fail(s, "out of memory");
	}
	len = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts; i++) {
		mfs_s3_etag(md5s + 16 * i, 0, want);
		len += (size_t)snprintf(xml + len, cap - len, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
					i + 1, want);
	}
	snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
	struct req q = { .method = "POST", .bucket = bucket, .key = key, .query = query };
	r = post_xml(s, &q, xml);
	mfs_s3_etag(md5s, nparts, want);
	if (!r) {
		struct mfs_s3_object o = { 0 };
		char got[80] = "";

		/* RADOS Gateway 16 answers an empty <ETag>: then ask with HEAD */
		etag = xml_field(&q, "CompleteMultipartUploadResult", "ETag");
		etag_copy(got, sizeof(got), etag ? etag : "");
		if (!*got && !(r = mfs_s3_head(s, bucket, key, &o)))
			snprintf(got, sizeof(got), "%s", o.etag);
		if (!r && strcasecmp(got, want))
			r = fail(s, "multipart upload of s3://%s/%s: ETag '%s', expected %s", bucket, key, got, want);
	}
	free(etag);
	req_done(&q);
	free(query);
	free(xml);
	return r;
}

static int put_multipart(struct mfs_s3 *s, const char *bucket, const char *key, int fd, uint64_t size)
{
	size_t part = s->part_size, nparts;
	unsigned char *md5s;
	char *uid = NULL, *qid = NULL;
	int r;

	while ((size + part - 1) / part > S3_MAX_PARTS)
		part *= 2;
	nparts = (size_t)((size + part - 1) / part);
	md5s = malloc(nparts * 16);
	if (!md5s)
		return fail(s, "out of memory");
	r = multipart_start(s, bucket, key, &uid);
	if (!r && !(qid = mfs_s3_encode(uid, 0)))
		r = fail(s, "out of memory");
	for (size_t i = 0; !r && i < nparts; i++) {
		char *query = NULL;
		off_t off = (off_t)(i * part);
		size_t len = (size_t)MFS_MIN((uint64_t)part, size - (uint64_t)off);

		if (asprintf(&query, "partNumber=%zu&uploadId=%s", i + 1, qid) < 0)
			r = fail(s, "out of memory");
		else
			r = put_range(s, bucket, key, query, fd, off, len, md5s + 16 * i);
		free(query);
	}
	if (!r)
		r = multipart_finish(s, bucket, key, qid, md5s, nparts);
	if (r && qid)
		multipart_abort(s, bucket, key, qid);
	free(uid);
	free(qid);
	free(md5s);
	return r;
}

/* The MD5-based ETag @fd would get as an upload with @s's part size. */
static int local_etag(struct mfs_s3 *s, int fd, uint64_t size, char *out)
{
	size_t part = s->part_size, nparts;
	unsigned char *md5s;
	char sha[65];
	int r = 0;

	if (size <= part) {
		unsigned char md5[16];

		r = hash_range(fd, 0, (size_t)size, md5, sha);
		if (!r)
			mfs_s3_etag(md5, 0, out);
		return r;
	}
	while ((size + part - 1) / part > S3_MAX_PARTS)
		part *= 2;
	nparts = (size_t)((size + part - 1) / part);
	md5s = malloc(nparts * 16);
	for (size_t i = 0; md5s && !r && i < nparts; i++)
		r = hash_range(fd, (off_t)(i * part), (size_t)MFS_MIN((uint64_t)part, size - i * part),
			       md5s + 16 * i, sha);
	if (!md5s)
		r = -ENOMEM;
	if (!r)
		mfs_s3_etag(md5s, nparts, out);
	free(md5s);
	return r;
}

int mfs_s3_put_file(struct mfs_s3 *s, const char *bucket, const char *key, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct mfs_s3_object o;
	struct stat st;
	char mine[48];
	unsigned char md5[16];
	int r;

	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		fail(s, "cannot open '%s': %s", path, strerror(-r));
		goto out;
	}
	r = mfs_s3_head(s, bucket, key, &o);
	if (r == 0) {
		/* written once: the same bytes are there already, or the key is taken */
		r = local_etag(s, fd, (uint64_t)st.st_size, mine);
		if (!r && (o.size != (uint64_t)st.st_size || strcasecmp(o.etag, mine))) {
			fail(s, "s3://%s/%s exists with other content (size %llu, ETag %s; this file: %lld, %s): "
				"never overwritten", bucket, key, (unsigned long long)o.size, o.etag,
			     (long long)st.st_size, mine);
			r = -EEXIST;
		} else if (!r) {
			r = 1;
		}
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	if ((uint64_t)st.st_size > s->part_size)
		r = put_multipart(s, bucket, key, fd, (uint64_t)st.st_size);
	else
		r = put_range(s, bucket, key, NULL, fd, 0, (size_t)st.st_size, md5);
out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* Check a downloaded file against the object's ETag: single-part ETags are
 * the MD5; a multipart ETag is checked when the part size matches ours. */
static int check_download(struct mfs_s3 *s, int fd, const struct req *q, const char *key)
{
	char mine[48];
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		return fail(s, "cannot stat the download of '%s': %s", key, strerror(errno));
	if (q->length && (uint64_t)st.st_size != q->length)
		return fail(s, "GET %s: %lld bytes received, %llu announced", key, (long long)st.st_size,
			    (unsigned long long)q->length);
	r = local_etag(s, fd, (uint64_t)st.st_size, mine);
	if (r < 0)
		return fail(s, "cannot read back the download of '%s': %s", key, strerror(-r));
	if (!strchr(q->etag, '-') && strcasecmp(q->etag, mine))
		return fail(s, "GET %s: MD5 %s of what was received is not the ETag %s", key, mine, q->etag);
	return 0;
}

int mfs_s3_get_file(struct mfs_s3 *s, const char *bucket, const char *key, const char *path)
{
	char *tmp = NULL;
	int fd = -1, r;
	struct req q = { .method = "GET", .bucket = bucket, .key = key };

	if (asprintf(&tmp, "%s.s3-XXXXXX", path) < 0)
		return fail(s, "out of memory");
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = fail(s, "cannot create '%s': %s", tmp, strerror(errno));
		free(tmp);
		return r;
	}
	q.out_fd = fd;
	r = perform(s, &q);
	if (!r && q.out_fd < 0)
		r = fail(s, "cannot rewind '%s' for a retry", tmp);
	if (!r && q.status / 100 != 2)
		r = http_fail(s, &q);
	if (!r)
		r = check_download(s, fd, &q, key);
	if (!r && fsync(fd) < 0)
		r = fail(s, "fsync '%s': %s", tmp, strerror(errno));
	if (!r && rename(tmp, path) < 0)
		r = fail(s, "rename '%s' to '%s': %s", tmp, path, strerror(errno));
	close(fd);
	if (r)
		unlink(tmp);
	req_done(&q);
	free(tmp);
	return r;
}
