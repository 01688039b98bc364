/* SPDX-License-Identifier: MIT */
/*
 * watch.c - wait for segments arriving in the incoming folder.
 *
 * rsync writes ".name.XXXXXX" and renames it in place (IN_MOVED_TO);
 * other copiers close the file they wrote (IN_CLOSE_WRITE). Only names of
 * closed segments trigger a rescan; IN_Q_OVERFLOW (events lost) always
 * does. The folder itself is rescanned in full at start by the caller.
 */
#include <errno.h>
#include <stdbool.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "mirror.h"
#include "mirrorfs/segment.h"

int mirror_watch_open(const char *dir)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
		int e = -errno;

		(void)close(fd);
		return e;
	}
	return fd;
}

int mirror_watch_read(int fd)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool rescan = false;
	uint64_t a, b;

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return -errno;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				rescan = true;
			else if (ev->len && mfs_seg_name_parse(ev->name, &a, &b))
				rescan = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	return rescan;
}
