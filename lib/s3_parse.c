/* SPDX-License-Identifier: MIT */
/*
 * s3_parse.c - the S3 client's pure helpers, no network: s3:// URLs parsed,
 * keys percent-encoded the way SigV4 signs them, request URLs built, the
 * ETag an upload gets computed from its parts' MD5s, ListObjectsV2 answers
 * parsed, and the endpoint and credentials read from the AWS environment
 * variables. Everything here is unit-tested (tests/unit/test_s3.c).
 */
#include "mirrorfs/s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "s3_i.h"

/* ------------------------------------------------------------ URLs, ETags */

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

/* ------------------------------------------------------------ LIST answers */

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

char *s3_xml_text(xmlNode *n, const char *name)
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

void s3_etag_copy(char *dst, size_t len, const char *src)
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
	char *key = s3_xml_text(c, "Key"), *size = s3_xml_text(c, "Size"), *etag = s3_xml_text(c, "ETag");
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
	s3_etag_copy(o->etag, sizeof(o->etag), etag ? etag : "");
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
	trunc = s3_xml_text(root, "IsTruncated");
	l->truncated = trunc && !strcmp(trunc, "true");
	free(trunc);
	free(l->next_token);
	l->next_token = s3_xml_text(root, "NextContinuationToken");
	xmlFreeDoc(doc);
	return r;
}

/* ------------------------------------------------------------ the environment */

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
