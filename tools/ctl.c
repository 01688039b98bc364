/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - the commands that talk to a mounted mirrorfs through its control
 * file (protocol in mirrorfs/ctl.h), and `status` for a mount or a mirror's
 * state folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

/* Open the control file of mount @mnt. Returns fd or -1 after a message. */
static int ctl_open(const char *mnt)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", mnt, MFS_CTL_FILE);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			cli_fail("'%s' is not a mirrorfs mount point", mnt);
		else
			cli_fail("cannot open '%s': %m", path);
	}
	return fd;
}

/*
 * Send @cmd on @fd and read the reply into @reply. Returns 0 on "ok",
 * the positive errno of an "err" reply, or -1 on a transport failure.
 */
static int ctl_call(int fd, const char *cmd, char *reply, size_t cap)
{
	const char *text;
	ssize_t n;
	int r;

	r = mfs_write_all(fd, cmd, strlen(cmd));
	if (r < 0) {
		errno = -r;
		cli_fail("cannot send '%s': %m", cmd);
		return -1;
	}
	n = pread(fd, reply, cap - 1, 0);
	if (n < 0) {
		cli_fail("cannot read the reply to '%s': %m", cmd);
		return -1;
	}
	reply[n] = 0;
	r = mfs_ctl_parse(reply, &text);
	if (r < 0) {
		cli_fail("unexpected reply to '%s': %s", cmd, reply);
		return -1;
	}
	memmove(reply, text, strlen(text) + 1);
	return r;
}

/*
 * One command, its reply on stdout. An empty reply prints nothing on stdout,
 * and @if_empty (when not NULL) on stderr. Returns the exit status.
 */
static int ctl_simple(const char *mnt, const char *cmd, const char *if_empty)
{
	_cleanup_close_ int fd = ctl_open(mnt);
	char reply[MFS_CTL_REPLY_MAX];
	int r;

	if (fd < 0)
		return 1;
	r = ctl_call(fd, cmd, reply, sizeof(reply));
	if (r < 0)
		return 1;
	reply[strcspn(reply, "\n")] = r ? 0 : reply[strcspn(reply, "\n")];
	if (r) {
		errno = r;
		return cli_fail("%s failed on '%s': %s (%m)", cmd, mnt, reply);
	}
	if (!reply[strspn(reply, "\n")]) {
		if (if_empty)
			cli_warn("%s on '%s'", if_empty, mnt);
		return 0;
	}
	fputs(reply, stdout);
	if (reply[strlen(reply) - 1] != '\n')
		putchar('\n');
	return 0;
}

static int need_mount(int argc, char **argv, const char *usage)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mirrorctl %s\n", usage);
		return 2;
	}
	return 0;
}

int cli_rotate(int argc, char **argv)
{
	static const char *const empty = "nothing to close (the open segment is empty)";

	return need_mount(argc, argv, "rotate MOUNTPOINT") ?: ctl_simple(argv[1], "rotate", empty);
}

int cli_checkpoint(int argc, char **argv)
{
	return need_mount(argc, argv, "checkpoint MOUNTPOINT")
		       ?: ctl_simple(argv[1], "checkpoint", NULL);
}

int cli_unlock(int argc, char **argv)
{
	return need_mount(argc, argv, "unlock MOUNTPOINT") ?: ctl_simple(argv[1], "unlock", NULL);
}

/* ================================================================ status */

/* Print a JSON value compactly, without quotes (nested objects and lists). */
static void print_compact(const char *v, size_t n)
{
	bool in_str = false;

	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (in_str) {
			if (c == '\\' && i + 1 < n)
				putchar(v[++i]);
			else if (c == '"')
				in_str = false;
			else
				putchar(c);
		} else if (c == '"') {
			in_str = true;
		} else if (c == ',') {
			fputs(", ", stdout);
		} else if (c != ' ' && c != '\n' && c != '\t') {
			putchar(c);
		}
	}
}

/* The end of the JSON value at @p: the ',' or '}' after it, or the NUL. */
static const char *value_end(const char *p)
{
	int depth = 0;
	bool in_str = false;

	for (; *p; p++) {
		if (in_str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_str = false;
			continue;
		}
		if (*p == '"')
			in_str = true;
		else if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
			depth--;
		if (depth < 0 || (depth == 0 && *p == ','))
			return p;
	}
	return p;
}

/* A size in B, KiB, MiB, GiB or TiB. */
static void print_size(uint64_t b)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b / 1024;
	unsigned u = 0;

	if (b < 1024) {
		printf("%" PRIu64 " B", b);
		return;
	}
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	printf("%.1f %s", v, unit[u]);
}

/* An epoch time (ns) as ISO 8601 UTC and how long ago. */
static void print_time_ns(uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	uint64_t now = mfs_now_ns();
	char buf[32];
	struct tm tm;

	if (!ns) {
		fputs("never", stdout);
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	if (now >= ns)
		printf("%s (%.0f s ago)", buf, (double)(now - ns) / 1e9);
	else
		fputs(buf, stdout);
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && !memcmp(s + n - k, suffix, k);
}

/* One "key: value" line of the human status, the value in human units. */
static void print_item(const char *k, size_t kn, const char *v, size_t vn)
{
	uint64_t num = strtoull(v, NULL, 10);
	bool is_num = vn && v[0] >= '0' && v[0] <= '9';
	int n = (int)kn;

	if (is_num && ends_with(k, kn, "_ns") && strncmp(k, "lock_", 5)) {
		printf("%.*s: ", n - 3, k);
		print_time_ns(num);
	} else if (is_num && kn == 4 && !memcmp(k, "time", 4)) {
		fputs("time: ", stdout);
		print_time_ns(num * 1000000000u);
	} else if (is_num && ends_with(k, kn, "_bytes_per_sec")) {
		printf("%.*s: ", n, k);
		print_size(num);
		fputs("/s", stdout);
	} else if (is_num && (ends_with(k, kn, "_bytes") || ends_with(k, kn, "_size"))) {
		printf("%.*s: ", n, k);
		print_size(num);
	} else if (is_num && ends_with(k, kn, "_seconds")) {
		printf("%.*s: %.*s s", n - 8, k, (int)vn, v);
	} else {
		printf("%.*s: ", n, k);
		print_compact(v, vn);
	}
	putchar('\n');
}

/*
 * Print a status JSON object one item a line, in human units: times as ISO
 * 8601 and "N s ago", sizes in KiB/MiB, the lag in seconds. The old key
 * data_set (mirrord's, kept for one release) is not repeated beside dataset.
 */
static void print_human(const char *json)
{
	const char *p = strchr(json, '{');

	if (!p)
		return;
	p++;
	for (;;) {
		const char *k, *ke, *v, *ve;

		while (*p == ' ' || *p == ',' || *p == '\n')
			p++;
		if (*p != '"')
			break;
		k = ++p;
		ke = strchr(k, '"');
		if (!ke || ke[1] != ':')
			break;
		v = ke + 2;
		ve = value_end(v);
		if (ke - k != 8 || memcmp(k, "data_set", 8) || !strstr(json, "\"dataset\":"))
			print_item(k, (size_t)(ke - k), v, (size_t)(ve - v));
		if (*ve != ',')
			break;
		p = ve;
	}
}

/* Append @what to the attention line @buf (of @cap) when @cond holds. */
static void say(bool cond, const char *what, char *buf, size_t cap)
{
	size_t n = strlen(buf);

	if (cond)
		snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", what);
}

/*
 * What needs attention in a status, as one line in @buf (empty: nothing):
 * mirrorfs failed; a mirror's quarantine, gap, or retries after local
 * failures; a shipper whose source is down, that is not running, or with a
 * failing destination.
 */
static void attention(const char *json, char *buf, size_t cap)
{
	bool ship = strstr(json, "\"source_up\":");

	buf[0] = 0;
	say(strstr(json, "\"failed\":true"), "failed (writes refused)", buf, cap);
	say(strstr(json, "\"quarantined\":[\""), "quarantined segments", buf, cap);
	say(strstr(json, "\"gap\":{"), "gap", buf, cap);
	say(strstr(json, "\"retry\":{"), "retrying after a local failure", buf, cap);
	say(ship && strstr(json, "\"source_up\":false"), "shipper source down", buf, cap);
	say(ship && !strstr(json, "\"state\":\"running\""), "shipper not running", buf, cap);
	say(ship && strstr(json, "\"up\":false"), "a destination fails", buf, cap);
}

int cli_status(int argc, char **argv)
{
	_cleanup_free_ char *json = NULL;
	const char *where;
	bool as_json = false;
	char path[4096], why[256];
	struct stat st;
	int r;

	if (argc == 3 && !strcmp(argv[1], "--json")) {
		as_json = true;
		where = argv[2];
	} else if (argc == 2) {
		where = argv[1];
	} else {
		fprintf(stderr, "usage: mirrorctl status [--json] MOUNTPOINT|STATEDIR|STATUSFILE\n");
		return 2;
	}
	/* a status file (mirrorfs-ship --status), a mount point, a mirror
	 * state folder */
	if (stat(where, &st) == 0 && S_ISREG(st.st_mode))
		snprintf(path, sizeof(path), "%s", where);
	else
		snprintf(path, sizeof(path), "%s/%s", where, MFS_STATUS_FILE);
	r = mfs_read_file(AT_FDCWD, path, 1 << 20, &json, NULL);
	if (r == -ENOENT) {
		snprintf(path, sizeof(path), "%s/status.json", where);
		r = mfs_read_file(AT_FDCWD, path, 1 << 20, &json, NULL);
	}
	if (r < 0) {
		errno = -r;
		return cli_fail("no status in '%s' (neither a mirrorfs mount nor a mirrord state folder): %m",
				where);
	}
	attention(json, why, sizeof(why));
	if (as_json) {
		fputs(json, stdout);
	} else {
		print_human(json);
		printf("attention: %s\n", why[0] ? why : "none");
	}
	return why[0] ? CLI_EXIT_ATTENTION : 0;
}

/* The value of "key": in one JSON object @obj (numbers and plain strings). */
static void json_field(const char *obj, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	out[0] = 0;
	p = strstr(obj, pat);
	if (!p)
		return;
	p += strlen(pat);
	if (*p == '"')
		p++;
	while (p[n] && p[n] != '"' && p[n] != ',' && p[n] != '}' && n + 1 < cap)
		n++;
	memcpy(out, p, n);
	out[n] = 0;
}

static void print_snapshots(const char *json)
{
	const char *p = json;

	printf("%-24s %12s  %-19s %14s  %s\n", "NAME", "LSN", "TAKEN", "PRESERVED", "STATE");
	while ((p = strchr(p, '{'))) {
		char name[80], lsn[24], t[24], bytes[24], state[16], when[32] = "?";
		const char *end = strchr(p, '}');
		char obj[512];
		time_t secs;
		struct tm tm;

		if (!end || (size_t)(end - p) >= sizeof(obj))
			break;
		memcpy(obj, p, (size_t)(end - p + 1));
		obj[end - p + 1] = 0;
		json_field(obj, "name", name, sizeof(name));
		json_field(obj, "lsn", lsn, sizeof(lsn));
		json_field(obj, "time_ns", t, sizeof(t));
		json_field(obj, "preserved_bytes", bytes, sizeof(bytes));
		json_field(obj, "state", state, sizeof(state));
		secs = (time_t)(strtoull(t, NULL, 10) / 1000000000ull);
		if (localtime_r(&secs, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		printf("%-24s %12s  %-19s %14s  %s\n", name, lsn, when, bytes, state);
		p = end + 1;
	}
}

int cli_snapshot(int argc, char **argv)
{
	_cleanup_free_ char *reply = NULL;
	_cleanup_close_ int fd = -EBADF;
	const char *act, *mnt, *name = NULL;
	bool json = false;
	char cmd[512];
	int r;

	for (int k = 2; argc >= 3 && !strcmp(argv[1], "list") && k < argc; k++)
		if (!strcmp(argv[k], "--json")) { /* list --json MNT, list MNT --json */
			json = true;
			memmove(argv + k, argv + k + 1, (size_t)(argc - k) * sizeof(*argv));
			argc--;
			break;
		}
	if (argc < 3 || (strcmp(argv[1], "list") && argc != 4) ||
	    (!strcmp(argv[1], "list") && argc != 3)) {
		fprintf(stderr, "usage: mirrorctl snapshot create|delete MOUNTPOINT NAME\n"
				"       mirrorctl snapshot list [--json] MOUNTPOINT\n");
		return 2;
	}
	act = argv[1];
	mnt = argv[2];
	if (strcmp(act, "create") && strcmp(act, "delete") && strcmp(act, "list")) {
		cli_warn("unknown snapshot action '%s' (create, list or delete)", act);
		return 2;
	}
	if (argc == 4)
		name = argv[3];
	snprintf(cmd, sizeof(cmd), "snapshot %s%s%s", act, name ? " " : "", name ? name : "");
	fd = ctl_open(mnt);
	if (fd < 0)
		return 1;
	reply = malloc(1u << 20);
	if (!reply)
		return cli_fail("out of memory");
	r = ctl_call(fd, cmd, reply, 1u << 20);
	if (r < 0)
		return 1;
	reply[strcspn(reply, "\n")] = 0;
	if (r) {
		errno = r;
		return cli_fail("snapshot %s failed on '%s': %s (%m)", act, mnt, reply);
	}
	if (!strcmp(act, "create")) {
		char n[80] = "", lsn[24] = "", us[24] = "";
		if (sscanf(reply, "%79s %23s %23s", n, lsn, us) != 3)
			return cli_fail("unexpected reply '%s'", reply);
		printf("%s lsn=%s window_us=%s\n", n, lsn, us);
	} else if (!strcmp(act, "list")) {
		if (json)
			printf("%s\n", reply);
		else
			print_snapshots(reply);
	}
	return 0;
}

/* Whether the status file of @mnt still says it is locked. */
static bool still_locked(const char *mnt)
{
	_cleanup_free_ char *json = NULL;
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", mnt, MFS_STATUS_FILE);
	if (mfs_read_file(AT_FDCWD, path, 1 << 20, &json, NULL) < 0)
		return false;
	return strstr(json, "\"locked\":true") || strstr(json, "\"locked\": true");
}

/* Run COMMAND while holding the lock; its exit status is ours. */
static int lock_around(int fd, char **cmd)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return cli_fail("cannot fork: %m");
	if (pid == 0) {
		execvp(cmd[0], cmd);
		fprintf(stderr, "mirrorctl: cannot run '%s': %m\n", cmd[0]);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return cli_fail("waitpid: %m");
	close(fd); /* releases the lock */
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

/*
 * No COMMAND: a background holder keeps the control descriptor (and so the
 * lock) until `mirrorctl unlock` or the timeout; we return once it holds it.
 */
static int lock_detached(const char *mnt, const char *cmd, unsigned timeout_s)
{
	int pfd[2];
	char ok = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cli_fail("pipe: %m");
	pid = fork();
	if (pid < 0)
		return cli_fail("cannot fork: %m");
	if (pid == 0) {
		char reply[MFS_CTL_REPLY_MAX];
		int fd, r;
		uint64_t end;

		close(pfd[0]);
		setsid();
		fd = ctl_open(mnt);
		r = fd < 0 ? -1 : ctl_call(fd, cmd, reply, sizeof(reply));
		if (r != 0) {
			if (r > 0) {
				errno = r;
				cli_fail("lock failed on '%s': %s", mnt, reply);
			}
			_exit(1);
		}
		ok = 1;
		(void)!write(pfd[1], &ok, 1);
		close(pfd[1]);
		/* let $(mirrorctl lock MNT) and pipes finish: keep no caller's output open */
		(void)!freopen("/dev/null", "w", stdout);
		(void)!freopen("/dev/null", "w", stderr);
		end = mfs_mono_ns() + (uint64_t)timeout_s * 1000000000u;
		while (mfs_mono_ns() < end && still_locked(mnt))
			usleep(100000);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], &ok, 1) != 1 || !ok) {
		int status;
		waitpid(pid, &status, 0);
		close(pfd[0]);
		return 1;
	}
	close(pfd[0]);
	printf("locked '%s' (holder pid %d, timeout %u s)\n", mnt, (int)pid, timeout_s);
	return 0;
}

int cli_lock(int argc, char **argv)
{
	unsigned timeout_s = 60;
	char cmd[64], reply[MFS_CTL_REPLY_MAX];
	int i = 1, fd, r;

	if (i + 1 < argc && !strcmp(argv[i], "--timeout")) {
		char *end;
		timeout_s = (unsigned)strtoul(argv[i + 1], &end, 10);
		if (*end || !timeout_s)
			return cli_fail("bad --timeout '%s'", argv[i + 1]);
		i += 2;
	}
	if (i >= argc || (i + 1 < argc && (strcmp(argv[i + 1], "--") || i + 2 >= argc))) {
		fprintf(stderr, "usage: mirrorctl lock [--timeout S] MOUNTPOINT [-- COMMAND...]\n");
		return 2;
	}
	snprintf(cmd, sizeof(cmd), "lock %llu", (unsigned long long)timeout_s * 1000ull);
	if (i + 1 >= argc)
		return lock_detached(argv[i], cmd, timeout_s);
	fd = ctl_open(argv[i]);
	if (fd < 0)
		return 1;
	r = ctl_call(fd, cmd, reply, sizeof(reply));
	if (r != 0) {
		close(fd);
		if (r > 0) {
			errno = r;
			return cli_fail("lock failed on '%s': %s", argv[i], reply);
		}
		return 1;
	}
	return lock_around(fd, argv + i + 2);
}
