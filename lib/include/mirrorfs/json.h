/* SPDX-License-Identifier: MIT */
/*
 * json.h - the one JSON string escaper, for every status, dump and ctl
 * reply that puts a name or a path into JSON.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Write @s as a JSON string, quotes included, into @out (@cap bytes, always
 * NUL-terminated when @cap > 0): '"' and '\' get a backslash, control
 * characters (below 0x20, and 0x7f) become \u00XX; with @ascii, so do the
 * bytes from 0x80 (each on its own, as Latin-1: the output is then plain
 * ASCII whatever the input). Without @ascii those bytes pass unchanged
 * (valid JSON when @s is UTF-8). A string that does not fit is cut short at
 * a character boundary of the output, which is still a valid JSON string.
 * Returns the length written (without the NUL), 0 when @cap < 3.
 */
size_t mfs_json_str(const char *s, bool ascii, char *out, size_t cap);

/* The same to stream @f, never cut short (no @ascii: bytes from 0x80 pass). */
void mfs_json_fputs(FILE *f, const char *s);
