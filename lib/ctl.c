/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - the control file's reply lines (protocol in ctl.h): one writer,
 * used by every mirrorfs command, and one reader, used by mirrorctl.
 */
#include "mirrorfs/ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "PREFIX" + formatted @fmt + "SUFFIX\n" into *ret. */
static int reply(char **ret, const char *prefix, const char *suffix, const char *fmt, va_list ap)
{
	char *text = NULL, *out;

	if (fmt && vasprintf(&text, fmt, ap) < 0)
		return -ENOMEM;
	if (asprintf(&out, "%s%s%s\n", prefix, text ? text : "", suffix) < 0) {
		free(text);
		return -ENOMEM;
	}
	free(text);
	*ret = out;
	return 0;
}

int mfs_ctl_ok(char **ret, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = reply(ret, fmt ? "ok " : "ok", "", fmt, ap);
	va_end(ap);
	return r;
}

int mfs_ctl_err(char **ret, int err, const char *fmt, ...)
{
	char prefix[32];
	va_list ap;
	int r;

	snprintf(prefix, sizeof(prefix), "err %d ", err);
	va_start(ap, fmt);
	r = reply(ret, prefix, "", fmt, ap);
	va_end(ap);
	return r;
}

int mfs_ctl_errno(char **ret, int err, const char *fmt, ...)
{
	char prefix[32], desc[128], suffix[160];
	const char *d = strerror_r(err, desc, sizeof(desc));
	va_list ap;
	int r;

	snprintf(prefix, sizeof(prefix), "err %d %s", err, fmt ? "" : d);
	snprintf(suffix, sizeof(suffix), "%s%s", fmt ? ": " : "", fmt ? d : "");
	va_start(ap, fmt);
	r = reply(ret, prefix, suffix, fmt, ap);
	va_end(ap);
	return r;
}

int mfs_ctl_parse(const char *reply, const char **ret_text)
{
	char *msg;
	long err;

	if (!strncmp(reply, "ok", 2)) {
		*ret_text = reply + (reply[2] == ' ' ? 3 : 2);
		return 0;
	}
	if (strncmp(reply, "err ", 4))
		return -EBADMSG;
	err = strtol(reply + 4, &msg, 10);
	*ret_text = msg + (*msg == ' ');
	return (int)err > 0 ? (int)err : EIO;
}
