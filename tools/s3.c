/* SPDX-License-Identifier: MIT */
/*
 * s3.c - mirrorctl s3: the object-storage operations mirrorfs-ship and the
 * tests use (lib/s3.c does the work). Credentials and endpoint the AWS way
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION)
 * or --s3-endpoint/--region. Every upload is verified, never overwrites.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mirrorfs/s3.h"

#define S3_USAGE                                                                                        \
	"usage: mirrorctl s3 [--s3-endpoint URL] [--region R] [--bwlimit KIB/S] [--part-size MIB]\n"  \
	"                    [--attempts N] COMMAND ...\n"                                              \
	"  mb s3://BUCKET                       create a bucket\n"                                   \
	"  put FILE s3://BUCKET/KEY             upload (verified; never overwrites other bytes)\n"   \
	"  put FILE... s3://BUCKET/PREFIX/      upload each FILE as PREFIX/NAME, in order\n"         \
	"  get s3://BUCKET/KEY FILE             download (verified)\n"                               \
	"  head s3://BUCKET/KEY                 size and ETag\n"                                      \
	"  ls [--start-after KEY] [--max N] s3://BUCKET/PREFIX   keys, sizes, ETags\n"              \
	"  rm s3://BUCKET/KEY...                delete\n"

static int parse_target(const char *url, char **bucket, char **key)
{
	if (mfs_s3_parse_url(url, bucket, key) < 0)
		return cli_fail("s3: '%s' is not s3://BUCKET[/KEY]", url);
	return 0;
}

static int s3_put(struct mfs_s3 *s, int argc, char **argv)
{
	char *bucket = NULL, *key = NULL;
	const char *dest = argv[argc - 1];
	int rc = 0;

	if (argc < 3)
		return cli_fail("s3 put: want FILE... s3://BUCKET/KEY|PREFIX/");
	if (parse_target(dest, &bucket, &key))
		return 1;
	if (argc > 3 && (!*key || key[strlen(key) - 1] != '/')) {
		free(bucket);
		free(key);
		return cli_fail("s3 put: several files go under a PREFIX/ (ending in '/')");
	}
	for (int i = 1; i < argc - 1 && !rc; i++) {
		const char *base = strrchr(argv[i], '/');
		char *k = NULL;
		int r;

		base = base ? base + 1 : argv[i];
		if (asprintf(&k, "%s%s", key, (!*key || key[strlen(key) - 1] == '/') ? base : "") < 0)
			return cli_fail("out of memory");
		r = mfs_s3_put_file(s, bucket, k, argv[i]);
		if (r < 0)
			rc = cli_fail("s3 put '%s': %s", argv[i], mfs_s3_error(s));
		else
			printf("%s %s\n", k, r == 1 ? "present" : "uploaded");
		fflush(stdout);
		free(k);
	}
	free(bucket);
	free(key);
	return rc;
}

static int s3_ls(struct mfs_s3 *s, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "start-after", required_argument, NULL, 'a' },
		{ "max", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	const char *after = NULL;
	struct mfs_s3_list l = { 0 };
	char *bucket = NULL, *prefix = NULL;
	size_t max = 0;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'a')
			after = optarg;
		else if (c == 'm')
			max = strtoul(optarg, NULL, 10);
		else
			return 2;
	}
	if (optind != argc - 1)
		return cli_fail("s3 ls: want [--start-after KEY] [--max N] s3://BUCKET/PREFIX");
	if (parse_target(argv[optind], &bucket, &prefix))
		return 1;
	if (mfs_s3_list(s, bucket, prefix, after, max, &l) < 0)
		rc = cli_fail("s3 ls: %s", mfs_s3_error(s));
	for (size_t i = 0; !rc && i < l.n && (!max || i < max); i++)
		printf("%s %llu %s\n", l.v[i].key, (unsigned long long)l.v[i].size, l.v[i].etag);
	mfs_s3_list_done(&l);
	free(bucket);
	free(prefix);
	return rc;
}

static int s3_one(struct mfs_s3 *s, const char *cmd, int argc, char **argv)
{
	char *bucket = NULL, *key = NULL;
	struct mfs_s3_object o;
	int rc = 0, r;

	if (argc != (strcmp(cmd, "get") ? 2 : 3))
		return cli_fail("s3 %s: wrong arguments (try mirrorctl s3 --help)", cmd);
	if (parse_target(argv[1], &bucket, &key))
		return 1;
	if (!strcmp(cmd, "mb")) {
		r = mfs_s3_make_bucket(s, bucket);
	} else if (!*key) {
		r = 0;
		rc = cli_fail("s3 %s: '%s' names no key", cmd, argv[1]);
	} else if (!strcmp(cmd, "get")) {
		r = mfs_s3_get_file(s, bucket, key, argv[2]);
	} else {
		r = mfs_s3_head(s, bucket, key, &o);
		if (!r)
			printf("%llu %s\n", (unsigned long long)o.size, o.etag);
	}
	if (r < 0)
		rc = r == -ENOENT ? (cli_fail("s3 %s: %s", cmd, mfs_s3_error(s)), 4)
				  : cli_fail("s3 %s: %s", cmd, mfs_s3_error(s));
	free(bucket);
	free(key);
	return rc;
}

static int s3_rm(struct mfs_s3 *s, int argc, char **argv)
{
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		char *bucket = NULL, *key = NULL;

		if (parse_target(argv[i], &bucket, &key))
			return 1;
		if (!*key || mfs_s3_delete(s, bucket, key) < 0)
			rc = cli_fail("s3 rm '%s': %s", argv[i], *key ? mfs_s3_error(s) : "no key");
		free(bucket);
		free(key);
	}
	return rc;
}

static int parse_opts(int argc, char **argv, struct mfs_s3_opts *o)
{
	static const struct option opts[] = {
		{ "s3-endpoint", required_argument, NULL, 'e' },
		{ "region", required_argument, NULL, 'r' },
		{ "bwlimit", required_argument, NULL, 'b' },
		{ "part-size", required_argument, NULL, 'p' },
		{ "attempts", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	mfs_s3_opts_from_env(o);
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		long v = 0;

		if (c == 'e') {
			o->endpoint = optarg;
			continue;
		}
		if (c == 'r') {
			o->region = optarg;
			continue;
		}
		if (c == 'h') {
			fputs(S3_USAGE, stdout);
			exit(0);
		}
		if (c == '?')
			return -1;
		errno = 0;
		v = strtol(optarg, &end, 10);
		if (errno || *end || v < 0 || (c != 'b' && v == 0) || v > 1000000)
			return cli_fail("s3: bad value '%s'", optarg), -1;
		if (c == 'b')
			o->bwlimit_kib = v;
		else if (c == 'p')
			o->part_size = (size_t)v << 20;
		else
			o->attempts = (int)v;
	}
	return optind;
}

int cli_s3(int argc, char **argv)
{
	struct mfs_s3_opts o;
	struct mfs_s3 *s;
	char err[256];
	const char *cmd;
	int i = parse_opts(argc, argv, &o), rc;

	if (i < 0)
		return 2;
	if (i >= argc) {
		fputs(S3_USAGE, stderr);
		return 2;
	}
	cmd = argv[i];
	if (strcmp(cmd, "mb") && strcmp(cmd, "put") && strcmp(cmd, "get") && strcmp(cmd, "head") &&
	    strcmp(cmd, "ls") && strcmp(cmd, "rm"))
		return cli_fail("s3: unknown command '%s' (try mirrorctl s3 --help)", cmd), 2;
	s = mfs_s3_new(&o, err, sizeof(err));
	if (!s)
		return cli_fail("s3: %s", err);
	argc -= i;
	argv += i;
	if (!strcmp(cmd, "put"))
		rc = s3_put(s, argc, argv);
	else if (!strcmp(cmd, "ls"))
		rc = s3_ls(s, argc, argv);
	else if (!strcmp(cmd, "rm"))
		rc = s3_rm(s, argc, argv);
	else
		rc = s3_one(s, cmd, argc, argv);
	mfs_s3_free(s);
	return rc;
}
