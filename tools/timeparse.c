/* SPDX-License-Identifier: MIT */
/*
 * timeparse.c - the times `mirrorctl restore --until` takes: ISO 8601
 * ("YYYY-MM-DDTHH:MM:SS[.frac][Z|+HH:MM]", local time without a zone) or
 * "@SECONDS[.frac]", and the ISO form of a record's time.
 */
#include "restore.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* All digits, no overflow. */
bool cli_parse_lsn(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = v;
	return true;
}

static bool is_digit(char c)
{
	return isdigit((unsigned char)c);
}

/* An optional ".digits" at *p: nanoseconds (digits past the 9th are dropped). */
static bool parse_frac(const char **p, uint64_t *ret_ns)
{
	const char *s = *p;
	uint64_t ns = 0, scale = 100000000;

	*ret_ns = 0;
	if (*s != '.')
		return true;
	if (!is_digit(*++s))
		return false;
	for (; is_digit(*s); s++, scale /= 10)
		ns += (uint64_t)(*s - '0') * scale;
	*p = s;
	*ret_ns = ns;
	return true;
}

/* "Z", "+HH:MM", "-HHMM", "+HH": seconds east of UTC. */
static bool parse_zone(const char *z, int64_t *ret_off)
{
	int sign, h, m = 0;

	if (z[0] == 'Z' && !z[1]) {
		*ret_off = 0;
		return true;
	}
	if ((*z != '+' && *z != '-') || !is_digit(z[1]) || !is_digit(z[2]))
		return false;
	sign = *z == '-' ? -1 : 1;
	h = (z[1] - '0') * 10 + (z[2] - '0');
	z += 3;
	if (*z == ':')
		z++;
	if (*z) {
		if (!is_digit(z[0]) || !is_digit(z[1]) || z[2])
			return false;
		m = (z[0] - '0') * 10 + (z[1] - '0');
	}
	if (h > 23 || m > 59)
		return false;
	*ret_off = sign * (h * 3600 + m * 60);
	return true;
}

/* "YYYY-MM-DDTHH:MM:SS[.frac][Z|±HH:MM]" (local time without a zone): seconds, ns. */
static int parse_iso(const char *s, int64_t *ret_sec, uint64_t *ret_ns)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd";
	struct tm tm = {0};
	const char *p = s + sizeof(pattern) - 1;
	int64_t off;
	time_t t;
	int mday, mon;

	for (size_t i = 0; i < sizeof(pattern) - 1; i++)
		if (pattern[i] == 'd' ? !is_digit(s[i]) : s[i] != pattern[i])
			return -EINVAL;
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = mon = atoi(s + 5) - 1;
	tm.tm_mday = mday = atoi(s + 8);
	tm.tm_hour = atoi(s + 11);
	tm.tm_min = atoi(s + 14);
	tm.tm_sec = atoi(s + 17);
	if (mon > 11 || mday < 1 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 ||
	    !parse_frac(&p, ret_ns))
		return -EINVAL;
	if (!*p) {
		tm.tm_isdst = -1;
		t = mktime(&tm);
		off = 0;
	} else {
		if (!parse_zone(p, &off))
			return -EINVAL;
		t = timegm(&tm);
	}
	if (t == (time_t)-1 || tm.tm_mday != mday || tm.tm_mon != mon) /* e.g. February 30 */
		return -EINVAL;
	*ret_sec = (int64_t)t - off;
	return 0;
}

/* An ISO 8601 time or "@SECONDS[.frac]": ns since the epoch. Returns 0 or -EINVAL. */
int cli_parse_time(const char *s, uint64_t *ret)
{
	uint64_t ns = 0;
	int64_t sec;

	if (*s == '@') {
		const char *p = s + 1;
		char *end;

		if (!is_digit(*p))
			return -EINVAL;
		errno = 0;
		sec = (int64_t)strtoll(p, &end, 10);
		p = end;
		if (errno || !parse_frac(&p, &ns) || *p)
			return -EINVAL;
	} else if (parse_iso(s, &sec, &ns) < 0) {
		return -EINVAL;
	}
	if (sec < 0 || (uint64_t)sec >= UINT64_MAX / 1000000000u - 1)
		return -EINVAL;
	*ret = (uint64_t)sec * 1000000000u + ns;
	return 0;
}

/* "2026-03-01T09:59:00.123456789Z" */
void cli_iso_time(uint64_t ns, char *out, size_t cap)
{
	time_t sec = (time_t)(ns / 1000000000u);
	struct tm tm;

	gmtime_r(&sec, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + strlen(out), cap - strlen(out), ".%09uZ", (unsigned)(ns % 1000000000u));
}
