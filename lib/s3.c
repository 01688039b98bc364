/* SPDX-License-Identifier: MIT */
/*
 * s3.c - the S3 client's object operations: HEAD, DELETE, bucket creation,
 * LIST (every page), PUT of a file (one request, or multipart above the
 * part size) and GET into a file. OpenSSL hashes what is sent and received
 * (Content-MD5, x-amz-content-sha256, ETags); the requests themselves go
 * through s3_http.c, the pure helpers are in s3_parse.c.
 *
 * Invariants: an object is never overwritten (put checks with HEAD first
 * and refuses a key that holds other bytes); an upload counts only when the
 * server's ETag equals the MD5 computed here (the server also checks the
 * body against Content-MD5); a download is written to a temporary beside
 * its target, its MD5 checked against the ETag (single-part objects), and
 * renamed only then.
 */
#include "mirrorfs/s3.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "mirrorfs/macro.h"

#include "s3_i.h"

int mfs_s3_head(struct mfs_s3 *s, const char *bucket, const char *key, struct mfs_s3_object *o)
{
	struct s3_req q = { .method = "HEAD", .bucket = bucket, .key = key, .out_fd = -1 };
	int r = s3_perform(s, &q);

	if (!r && q.status / 100 != 2)
		r = s3_http_fail(s, &q);
	if (!r) {
		memset(o, 0, sizeof(*o));
		o->size = q.length;
		snprintf(o->etag, sizeof(o->etag), "%s", q.etag);
	}
	s3_req_done(&q);
	return r;
}

int mfs_s3_delete(struct mfs_s3 *s, const char *bucket, const char *key)
{
	struct s3_req q = { .method = "DELETE", .bucket = bucket, .key = key, .out_fd = -1 };
	int r = s3_perform(s, &q);

	if (!r && q.status / 100 != 2)
		r = s3_http_fail(s, &q);
	s3_req_done(&q);
	return r;
}

int mfs_s3_make_bucket(struct mfs_s3 *s, const char *bucket)
{
	struct s3_req q = { .method = "PUT", .bucket = bucket, .out_fd = -1 };
	int r = s3_perform(s, &q);

	if (!r && q.status / 100 != 2)
		r = s3_http_fail(s, &q);
	s3_req_done(&q);
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
		struct s3_req q = { .method = "GET", .bucket = bucket, .out_fd = -1 };
		char *query = list_query(prefix, start_after, token);

		if (!query)
			return s3_fail(s, "out of memory");
		q.query = query;
		r = s3_perform(s, &q);
		if (!r && q.status / 100 != 2)
			r = s3_http_fail(s, &q);
		if (!r && mfs_s3_list_parse(q.body, q.body_len, l) < 0)
			r = s3_fail(s, "LIST s3://%s/%s: an answer that is not a ListBucketResult", bucket, prefix);
		s3_req_done(&q);
		free(query);
		free(token);
		token = NULL;
		if (r || !l->truncated || (max && l->n >= max))
			break;
		if (!l->next_token || !*l->next_token) {
			r = s3_fail(s, "LIST s3://%s/%s: truncated without a continuation token", bucket, prefix);
			break;
		}
		token = strdup(l->next_token);
		if (!token)
			r = s3_fail(s, "out of memory");
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
	struct s3_req q = { .method = "PUT", .bucket = bucket, .key = key, .query = query, .in_fd = fd,
			 .in_off = off, .in_len = len, .sha256 = sha, .md5_b64 = m64, .out_fd = -1,
			 .content_type = "application/octet-stream" };
	int r = hash_range(fd, off, len, md5, sha);

	if (r < 0)
		return s3_fail(s, "cannot read the file to upload: %s", strerror(-r));
	b64(md5, m64);
	r = s3_perform(s, &q);
	if (!r && q.status / 100 != 2)
		r = s3_http_fail(s, &q);
	mfs_s3_etag(md5, 0, want);
	if (!r && strcasecmp(q.etag, want))
		r = s3_fail(s, "PUT s3://%s/%s: the server's ETag '%s' is not the MD5 %s of what was sent", bucket,
			 key, q.etag, want);
	s3_req_done(&q);
	return r;
}

static int post_xml(struct mfs_s3 *s, struct s3_req *q, const char *xml)
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
	r = s3_perform(s, q);
	if (!r && q->status / 100 != 2)
		r = s3_http_fail(s, q);
	return r;
}

static char *xml_field(const struct s3_req *q, const char *root_name, const char *name)
{
	xmlDoc *doc = q->body ? xmlReadMemory(q->body, (int)q->body_len, "r.xml", NULL, XML_PARSE_NONET) : NULL;
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	char *v = NULL;

	if (root && !strcmp((const char *)root->name, root_name))
		v = s3_xml_text(root, name);
	xmlFreeDoc(doc);
	return v;
}

static int multipart_start(struct mfs_s3 *s, const char *bucket, const char *key, char **upload_id)
{
	struct s3_req q = { .method = "POST", .bucket = bucket, .key = key, .query = "uploads=", .out_fd = -1 };
	int r = post_xml(s, &q, "");

	if (!r) {
		*upload_id = xml_field(&q, "InitiateMultipartUploadResult", "UploadId");
		if (!*upload_id || !**upload_id)
			r = s3_fail(s, "POST s3://%s/%s?uploads=: no UploadId in the answer", bucket, key);
	}
	s3_req_done(&q);
	return r;
}

static void multipart_abort(struct mfs_s3 *s, const char *bucket, const char *key, const char *qid)
{
	char *query = NULL;
	char saved[sizeof(s->err)];

	memcpy(saved, s->err, sizeof(saved));
	if (asprintf(&query, "uploadId=%s", qid) >= 0) {
		struct s3_req q = { .method = "DELETE", .bucket = bucket, .key = key, .query = query, .out_fd = -1 };

		s3_perform(s, &q);
		s3_req_done(&q);
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
		return s3_fail(s, "out of memory");
	}
	len = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts; i++) {
		mfs_s3_etag(md5s + 16 * i, 0, want);
		len += (size_t)snprintf(xml + len, cap - len, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
					i + 1, want);
	}
	snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
	struct s3_req q = { .method = "POST", .bucket = bucket, .key = key, .query = query };
	r = post_xml(s, &q, xml);
	mfs_s3_etag(md5s, nparts, want);
	if (!r) {
		struct mfs_s3_object o = { 0 };
		char got[80] = "";

		/* RADOS Gateway 16 answers an empty <ETag>: then ask with HEAD */
		etag = xml_field(&q, "CompleteMultipartUploadResult", "ETag");
		s3_etag_copy(got, sizeof(got), etag ? etag : "");
		if (!*got && !(r = mfs_s3_head(s, bucket, key, &o)))
			snprintf(got, sizeof(got), "%s", o.etag);
		if (!r && strcasecmp(got, want))
			r = s3_fail(s, "multipart upload of s3://%s/%s: ETag '%s', expected %s", bucket, key, got, want);
	}
	free(etag);
	s3_req_done(&q);
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
		return s3_fail(s, "out of memory");
	r = multipart_start(s, bucket, key, &uid);
	if (!r && !(qid = mfs_s3_encode(uid, 0)))
		r = s3_fail(s, "out of memory");
	for (size_t i = 0; !r && i < nparts; i++) {
		char *query = NULL;
		off_t off = (off_t)(i * part);
		size_t len = (size_t)MFS_MIN((uint64_t)part, size - (uint64_t)off);

		if (asprintf(&query, "partNumber=%zu&uploadId=%s", i + 1, qid) < 0)
			r = s3_fail(s, "out of memory");
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
		s3_fail(s, "cannot open '%s': %s", path, strerror(-r));
		goto out;
	}
	r = mfs_s3_head(s, bucket, key, &o);
	if (r == 0) {
		/* written once: the same bytes are there already, or the key is taken */
		r = local_etag(s, fd, (uint64_t)st.st_size, mine);
		if (!r && (o.size != (uint64_t)st.st_size || strcasecmp(o.etag, mine))) {
			s3_fail(s, "s3://%s/%s exists with other content (size %llu, ETag %s; this file: %lld, %s): "
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
static int check_download(struct mfs_s3 *s, int fd, const struct s3_req *q, const char *key)
{
	char mine[48];
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		return s3_fail(s, "cannot stat the download of '%s': %s", key, strerror(errno));
	if (q->length && (uint64_t)st.st_size != q->length)
		return s3_fail(s, "GET %s: %lld bytes received, %llu announced", key, (long long)st.st_size,
			    (unsigned long long)q->length);
	r = local_etag(s, fd, (uint64_t)st.st_size, mine);
	if (r < 0)
		return s3_fail(s, "cannot read back the download of '%s': %s", key, strerror(-r));
	if (!strchr(q->etag, '-') && strcasecmp(q->etag, mine))
		return s3_fail(s, "GET %s: MD5 %s of what was received is not the ETag %s", key, mine, q->etag);
	return 0;
}

int mfs_s3_get_file(struct mfs_s3 *s, const char *bucket, const char *key, const char *path)
{
	char *tmp = NULL;
	int fd = -1, r;
	struct s3_req q = { .method = "GET", .bucket = bucket, .key = key };

	if (asprintf(&tmp, "%s.s3-XXXXXX", path) < 0)
		return s3_fail(s, "out of memory");
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = s3_fail(s, "cannot create '%s': %s", tmp, strerror(errno));
		free(tmp);
		return r;
	}
	q.out_fd = fd;
	r = s3_perform(s, &q);
	if (!r && q.out_fd < 0)
		r = s3_fail(s, "cannot rewind '%s' for a retry", tmp);
	if (!r && q.status / 100 != 2)
		r = s3_http_fail(s, &q);
	if (!r)
		r = check_download(s, fd, &q, key);
	if (!r && fsync(fd) < 0)
		r = s3_fail(s, "fsync '%s': %s", tmp, strerror(errno));
	if (!r && rename(tmp, path) < 0)
		r = s3_fail(s, "rename '%s' to '%s': %s", tmp, path, strerror(errno));
	close(fd);
	if (r)
		unlink(tmp);
	s3_req_done(&q);
	free(tmp);
	return r;
}
