/* SPDX-License-Identifier: MIT */
/*
 * dump.c - `mirrorctl dump [--json] [--auth-key FILE]... SEGMENT...`: one
 * line per record and a
 * final verdict line per segment, like pg_waldump. Exit 1 when any segment
 * is not a valid closed one (an open segment is reported as a torn tail).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

#define LINE_MAX_LEN (7 * 4096 * 2)

struct dump_ctx {
	bool json;
	struct mfs_keyring keys; /* --auth-key: tags checked */
	char *line;
	bool first;
};

static int print_rec(const struct mfs_rec *rec, void *arg)
{
	struct dump_ctx *c = arg;

	if (c->json) {
		mfs_rec_format_json(rec, c->line, LINE_MAX_LEN);
		printf("%s%s", c->first ? "" : ",\n", c->line);
		c->first = false;
	} else {
		mfs_rec_format(rec, c->line, LINE_MAX_LEN);
		puts(c->line);
	}
	return 0;
}

/* "tags: key id X, checked" / "...not checked (no --auth-key)" / "no tags". */
static void auth_describe(const struct mfs_seg_info *i, const struct dump_ctx *c, char *out,
			  size_t cap)
{
	char id[17];

	if (!(i->seg_flags & MFS_SEG_F_AUTH)) {
		snprintf(out, cap, "no tags");
		return;
	}
	mfs_auth_id_format(i->key_id, id);
	snprintf(out, cap, "tagged with key id %s, %s", id,
		 i->authenticated ? "authenticated"
		 : c->keys.n == 0 ? "tags not checked (no --auth-key)"
				  : "NOT authenticated");
}

/* ", encrypted with key id X" or nothing. */
static void enc_describe(const struct mfs_seg_info *i, char *out, size_t cap)
{
	char id[17];

	out[0] = 0;
	if (!(i->seg_flags & MFS_SEG_F_ENC))
		return;
	mfs_auth_id_format(i->enc_key_id, id);
	snprintf(out, cap, ", encrypted with key id %s", id);
}

static int dump_one(const char *path, struct dump_ctx *c)
{
	_cleanup_close_ int fd = -EBADF;
	struct mfs_seg_info info;
	char verdict[256], uuid[37], auth[128], enc[64];
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli_fail("cannot open '%s': %m", path);
	if (c->json)
		printf("{\"segment\":\"%s\",\"records\":[\n", path);
	c->first = true;
	r = mfs_seg_scan_fd_opts(fd, &(struct mfs_segr_opts){ .keys = &c->keys }, print_rec, c,
				 &info);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read '%s': %m", path);
	}
	mfs_seg_verdict_format(&info, verdict, sizeof(verdict));
	mfs_uuid_format(info.uuid, uuid);
	auth_describe(&info, c, auth, sizeof(auth));
	enc_describe(&info, enc, sizeof(enc));
	if (c->json)
		printf("],\"verdict\":\"%s\",\"message\":\"%s\",\"dataset\":\"%s\",\"seg_no\":%" PRIu64
		       ",\"first_lsn\":%" PRIu64 ",\"last_lsn\":%" PRIu64 ",\"records\":%" PRIu64
		       ",\"bad_offset\":%" PRIu64 ",\"version\":%" PRIu32 ",\"auth\":\"%s\""
		       ",\"encrypted\":%s}\n",
		       mfs_seg_verdict_name(info.verdict), verdict, uuid, info.seg_no,
		       info.first_lsn, info.last_lsn, info.records, info.bad_offset, info.version,
		       auth, info.seg_flags & MFS_SEG_F_ENC ? "true" : "false");
	else if (info.header_valid)
		printf("# %s: data set %s, segment %" PRIu64 ", format %" PRIu32 ", %s%s, %s\n",
		       path, uuid, info.seg_no, info.version, auth, enc, verdict);
	else
		printf("# %s: %s\n", path, verdict);
	if (info.verdict != MFS_SEG_OK) {
		fprintf(stderr, "mirrorctl: '%s' is not a valid closed segment: %s\n", path,
			verdict);
		return 1;
	}
	return 0;
}

int cli_dump(int argc, char **argv)
{
	struct dump_ctx c = { 0 };
	int i = 1, ret = 0, count, k;

	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			c.json = true;
		else if ((k = cli_key_opt(&c.keys, argc, argv, &i)) < 0)
			return 1;
		else if (!k)
			break;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: mirrorctl dump [--json] [--auth-key FILE]... "
			"[--encrypt-key FILE]... SEGMENT...\n");
		return 2;
	}
	c.line = malloc(LINE_MAX_LEN);
	if (!c.line)
		return cli_fail("out of memory");
	count = argc - i;
	if (c.json && count > 1)
		printf("[\n");
	for (int first = i; i < argc; i++) {
		if (c.json && i > first)
			printf(",");
		ret |= dump_one(argv[i], &c);
	}
	if (c.json && count > 1)
		printf("]\n");
	free(c.line);
	return ret;
}
