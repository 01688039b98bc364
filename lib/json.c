/* SPDX-License-Identifier: MIT */
/*
 * json.c - the one JSON string escaper (see json.h): a name or a path,
 * which may hold any byte but NUL, as a valid JSON string.
 */
#include "mirrorfs/json.h"

#include <stdio.h>

/* The escape of byte @ch into @buf (at most 7 bytes + NUL); its length, 0: none needed. */
static size_t escape(unsigned char ch, bool ascii, char buf[8])
{
	if (ch == '"' || ch == '\\')
		return (size_t)snprintf(buf, 8, "\\%c", ch);
	if (ch < 0x20 || ch == 0x7f || (ascii && ch >= 0x80))
		return (size_t)snprintf(buf, 8, "\\u%04x", ch);
	return 0;
}

size_t mfs_json_str(const char *s, bool ascii, char *out, size_t cap)
{
	size_t o = 0;
	char e[8];

	if (cap < 3) {
		if (cap)
			out[0] = 0;
		return 0;
	}
	out[o++] = '"';
	for (; *s; s++) {
		size_t n = escape((unsigned char)*s, ascii, e);

		if (o + (n ? n : 1) + 2 > cap) /* room for the closing quote and the NUL */
			break;
		if (n) {
			for (size_t k = 0; k < n; k++)
				out[o++] = e[k];
		} else {
			out[o++] = *s;
		}
	}
	out[o++] = '"';
	out[o] = 0;
	return o;
}

void mfs_json_fputs(FILE *f, const char *s)
{
	char e[8];

	fputc('"', f);
	for (; *s; s++) {
		if (escape((unsigned char)*s, false, e))
			fputs(e, f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}
