/* SPDX-License-Identifier: MIT */
/*
 * test_s3.c - unit tests of lib/s3's pure parts: s3:// URLs, SigV4
 * percent-encoding, request URLs, ListObjectsV2 parsing (pages, entities,
 * refusals) and S3's ETags (single and multipart).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "mirrorfs/s3.h"
#include "tests.h"

static void test_parse_url(void)
{
	char *b = NULL, *k = NULL;

	CU_ASSERT_EQUAL(mfs_s3_parse_url("s3://bkt/a/b/", &b, &k), 0);
	CU_ASSERT_STRING_EQUAL(b, "bkt");
	CU_ASSERT_STRING_EQUAL(k, "a/b/");
	free(b);
	free(k);
	CU_ASSERT_EQUAL(mfs_s3_parse_url("s3://bkt", &b, &k), 0);
	CU_ASSERT_STRING_EQUAL(b, "bkt");
	CU_ASSERT_STRING_EQUAL(k, "");
	free(b);
	free(k);
	CU_ASSERT_EQUAL(mfs_s3_parse_url("s3://", &b, &k), -EINVAL);
	CU_ASSERT_EQUAL(mfs_s3_parse_url("s3:///key", &b, &k), -EINVAL);
	CU_ASSERT_EQUAL(mfs_s3_parse_url("/tmp/x", &b, &k), -EINVAL);
	CU_ASSERT_EQUAL(mfs_s3_parse_url("http://h/b", &b, &k), -EINVAL);
}

static void test_encode_and_url(void)
{
	char *e = mfs_s3_encode("a b/c~d_e.f-g+h=&%", 0), *u;

	CU_ASSERT_STRING_EQUAL(e, "a%20b%2Fc~d_e.f-g%2Bh%3D%26%25");
	free(e);
	e = mfs_s3_encode("p/segments/0001", 1);
	CU_ASSERT_STRING_EQUAL(e, "p/segments/0001");
	free(e);
	e = mfs_s3_encode("\xc3\xa9", 0);
	CU_ASSERT_STRING_EQUAL(e, "%C3%A9");
	free(e);
	u = mfs_s3_url("http://127.0.0.1:8000/", "bkt", "p/x y", "uploads=");
	CU_ASSERT_STRING_EQUAL(u, "http://127.0.0.1:8000/bkt/p/x%20y?uploads=");
	free(u);
	u = mfs_s3_url("https://s3.example", "bkt", NULL, NULL);
	CU_ASSERT_STRING_EQUAL(u, "https://s3.example/bkt");
	free(u);
	u = mfs_s3_url("https://s3.example", "bkt", "", "list-type=2&prefix=a%2F");
	CU_ASSERT_STRING_EQUAL(u, "https://s3.example/bkt?list-type=2&prefix=a%2F");
	free(u);
}

static const char page1[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
	"<Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
	"<NextContinuationToken>tok/1=</NextContinuationToken>"
	"<Contents><Key>p/a&amp;b</Key><Size>10</Size><ETag>&quot;0123abcd&quot;</ETag></Contents>"
	"<Contents><Key>p/c</Key><LastModified>2026-01-01T00:00:00Z</LastModified>"
	"<ETag>\"ff-2\"</ETag><Size>18446744073709551615</Size></Contents></ListBucketResult>";
static const char page2[] =
	"<ListBucketResult><IsTruncated>false</IsTruncated>"
	"<Contents><Key>p/d</Key><Size>0</Size></Contents></ListBucketResult>";

static void test_list_parse(void)
{
	struct mfs_s3_list l = { 0 };

	CU_ASSERT_EQUAL_FATAL(mfs_s3_list_parse(page1, sizeof(page1) - 1, &l), 0);
	CU_ASSERT_EQUAL_FATAL(l.n, 2);
	CU_ASSERT_STRING_EQUAL(l.v[0].key, "p/a&b");
	CU_ASSERT_EQUAL(l.v[0].size, 10);
	CU_ASSERT_STRING_EQUAL(l.v[0].etag, "0123abcd");
	CU_ASSERT_STRING_EQUAL(l.v[1].key, "p/c");
	CU_ASSERT_EQUAL(l.v[1].size, UINT64_MAX);
	CU_ASSERT_STRING_EQUAL(l.v[1].etag, "ff-2");
	CU_ASSERT_TRUE(l.truncated);
	CU_ASSERT_STRING_EQUAL(l.next_token, "tok/1=");
	CU_ASSERT_EQUAL_FATAL(mfs_s3_list_parse(page2, sizeof(page2) - 1, &l), 0);
	CU_ASSERT_EQUAL_FATAL(l.n, 3);
	CU_ASSERT_STRING_EQUAL(l.v[2].key, "p/d");
	CU_ASSERT_EQUAL(l.v[2].etag[0], 0);
	CU_ASSERT_FALSE(l.truncated);
	CU_ASSERT_PTR_NULL(l.next_token);
	mfs_s3_list_done(&l);
	CU_ASSERT_EQUAL(l.n, 0);
}

static void test_list_refused(void)
{
	static const char *bad[] = {
		"<Error><Code>AccessDenied</Code></Error>",
		"<ListBucketResult><Contents><Key>x</Key></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>x</Key><Size>12a</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>x</Key><Size></Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents>",
		"not xml at all",
		"",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mfs_s3_list l = { 0 };

		CU_ASSERT_EQUAL(mfs_s3_list_parse(bad[i], strlen(bad[i]), &l), -EINVAL);
		mfs_s3_list_done(&l);
	}
}

static void test_etag(void)
{
	unsigned char md5s[32];
	char out[48];

	/* MD5("") and MD5("a"): the plain ETags */
	EVP_Digest("", 0, md5s, NULL, EVP_md5(), NULL);
	EVP_Digest("a", 1, md5s + 16, NULL, EVP_md5(), NULL);
	mfs_s3_etag(md5s, 0, out);
	CU_ASSERT_STRING_EQUAL(out, "d41d8cd98f00b204e9800998ecf8427e");
	mfs_s3_etag(md5s + 16, 0, out);
	CU_ASSERT_STRING_EQUAL(out, "0cc175b9c0f1b6a831c399e269772661");
	/* two parts: MD5 of the two binary MD5s, then "-2" (checked with
	 * python3 -c 'import hashlib; a=hashlib.md5(b"").digest();
	 * b=hashlib.md5(b"a").digest(); print(hashlib.md5(a+b).hexdigest())') */
	mfs_s3_etag(md5s, 2, out);
	CU_ASSERT_STRING_EQUAL(out, "68083ea43d0307eecfa2b4749f19df15-2");
}

static CU_TestInfo tests[] = {
	{"parse_url", test_parse_url},
	{"encode_and_url", test_encode_and_url},
	{"list_parse", test_list_parse},
	{"list_refused", test_list_refused},
	{"etag", test_etag},
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_s3[] = {
	{"s3", NULL, NULL, NULL, NULL, tests},
	CU_SUITE_INFO_NULL,
};
