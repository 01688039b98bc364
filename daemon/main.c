/* SPDX-License-Identifier: MIT */
/*
 * main.c - mirrord, the mirror daemon: options, signals and the loop.
 *
 * mirrord --incoming DIR --data DIR [--state DIR] [--quarantine DIR]
 *         [--once] [--no-apply] [--cascade DIR] [--keep DIR]
 *         [--metrics FILE] [--max-segment SIZE] [--max-alloc PERCENT]
 *         [--syslog] [--naive] [-v]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "mirror.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/format.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/notify.h"
#include "mirrorfs/replay.h"
#include "s3follow.h"

#define IDLE_RESCAN_MS 10000 /* safety net when nothing waits */
#define RETRY_MS 1000        /* something waits: look again soon */
/*
 * Default limits, side by side with what a default primary makes (see
 * mirrord(8), "LIMITS"): mirrorfs closes a segment once it reaches
 * rotate_size (64 MiB by default), so a segment holds at most rotate_size
 * plus one record (MFS_REC_MAX: a 64 MiB write and its header) plus the
 * segment header and trailer. The default --max-segment takes that with a
 * wide margin (a primary with rotate_size up to 1G - 64M takes it too).
 */
#define PRIMARY_ROTATE_SIZE (64ull << 20)
#define SEGMENT_MAX_FOR(rotate) ((rotate) + MFS_REC_MAX + MFS_SEG_HEADER_SIZE + 64u)
#define DEFAULT_MAX_SEGMENT (1ull << 30)
_Static_assert(DEFAULT_MAX_SEGMENT >= SEGMENT_MAX_FOR(PRIMARY_ROTATE_SIZE),
	       "mirrord's default --max-segment must take a default primary's segments");

static struct mirror_config arg_cfg;
static struct mfs_keyring arg_keys;
static bool arg_syslog;
static volatile int stop_requested;
static char *state_default, *quarantine_default;
/* --incoming s3://BUCKET/PREFIX/: segments are fetched into STATE/s3-incoming */
static const char *arg_s3_url, *arg_s3_endpoint;
static unsigned arg_s3_poll_ms = 2000;
static char *s3_incoming;
static struct mirror_s3 *follow;
static uint64_t next_poll_ns;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mirrord --incoming DIR --data DIR [OPTIONS]\n"
		   "\n"
		   "Validate and apply the segments arriving in --incoming to --data.\n"
		   "\n"
		   "options:\n"
		   "  --incoming DIR      where segments arrive (the rsync destination), or\n"
		   "                      s3://BUCKET/PREFIX/: follow a bucket (needs --state)\n"
		   "  --s3-endpoint URL   the S3 server (default: AWS_ENDPOINT_URL)\n"
		   "  --s3-poll S         look for new segments in the bucket every S seconds\n"
		   "                      (default 2; one LIST request when nothing is new)\n"
		   "  --data DIR          the mirrored data directory\n"
		   "  --state DIR         applied LSN, status.json (default INCOMING/.mirrord)\n"
		   "  --quarantine DIR    where refused segments go (default STATE/quarantine)\n"
		   "  --cascade DIR       re-emit applied segments there for a further mirror\n"
		   "  --keep DIR          move applied segments there instead of deleting them\n"
		   "  --metrics FILE      also write the status as Prometheus text metrics\n"
		   "  --metrics-instance NAME  the metrics' instance label (default: the\n"
		   "                      data folder's path)\n"
		   "  --once              apply what is applicable, then exit (0: all applied)\n"
		   "  --no-apply          hold: validate and keep segments, apply nothing\n"
		   "  --naive             the benchmark's baseline: stream each segment twice,\n"
		   "                      one pwrite per write record\n"
		   "  --max-segment SIZE  quarantine larger segments (default 1G)\n"
		   "  --max-alloc PERCENT  share of the free space one segment may fallocate\n"
		   "                      (default 50)\n"
		   "  --auth-key FILE     apply only segments authenticated with this key\n"
		   "                      (twice: new and old key, during a key change)\n"
		   "  --encrypt-key FILE  decrypt segments encrypted with this key (twice: likewise)\n"
		   "  --syslog            log to syslog instead of stderr\n"
		   "  -v, --verbose       log debug messages too\n"
		   "  -h, --help          print this text and exit\n"
		   "  --version           print the version and exit\n");
}

static int set_quarantine_default(void)
{
	if (!arg_cfg.quarantine) {
		if (asprintf(&quarantine_default, "%s/quarantine", arg_cfg.state) < 0)
			return -ENOMEM;
		arg_cfg.quarantine = quarantine_default;
	}
	return 0;
}

/* --incoming s3://: the state folder (required) gets the local incoming folder. */
static int s3_incoming_setup(void)
{
	arg_s3_url = arg_cfg.incoming;
	if (!arg_cfg.state) {
		log_error("--incoming %s needs --state DIR (where the segments are fetched to)",
			  arg_s3_url);
		return -EINVAL;
	}
	if (asprintf(&s3_incoming, "%s/s3-incoming", arg_cfg.state) < 0)
		return -ENOMEM;
	if ((mkdir(arg_cfg.state, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(s3_incoming, 0700) < 0 && errno != EEXIST)) {
		log_error("cannot create '%s': %m", s3_incoming);
		return -errno;
	}
	arg_cfg.incoming = s3_incoming;
	return set_quarantine_default();
}

static int parse_argv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "incoming", required_argument, NULL, 'i' },
		{ "data", required_argument, NULL, 'd' },
		{ "state", required_argument, NULL, 's' },
		{ "quarantine", required_argument, NULL, 'q' },
		{ "cascade", required_argument, NULL, 'c' },
		{ "keep", required_argument, NULL, 'k' },
		{ "metrics", required_argument, NULL, 'm' },
		{ "metrics-instance", required_argument, NULL, 'I' },
		{ "once", no_argument, NULL, 'o' },
		{ "no-apply", no_argument, NULL, 'n' },
		{ "naive", no_argument, NULL, 'N' },
		{ "max-segment", required_argument, NULL, 'M' },
		{ "max-alloc", required_argument, NULL, 'A' },
		{ "syslog", no_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "auth-key", required_argument, NULL, 'K' },
		{ "s3-endpoint", required_argument, NULL, 'E' },
		{ "s3-poll", required_argument, NULL, 'P' },
		{ "encrypt-key", required_argument, NULL, 'X' },
		{}
	};
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "v", opts, NULL)) >= 0) {
		switch (c) {
		case 'i': arg_cfg.incoming = optarg; break;
		case 'd': arg_cfg.data = optarg; break;
		case 's': arg_cfg.state = optarg; break;
		case 'q': arg_cfg.quarantine = optarg; break;
		case 'c': arg_cfg.cascade = optarg; break;
		case 'k': arg_cfg.keep = optarg; break;
		case 'm': arg_cfg.metrics = optarg; break;
		case 'I': arg_cfg.instance = optarg; break;
		case 'o': arg_cfg.once = true; break;
		case 'n': arg_cfg.hold = true; break;
		case 'N': arg_cfg.naive = true; break;
		case 'M':
			if (mfs_parse_size(optarg, &arg_cfg.max_segment) < 0 || !arg_cfg.max_segment) {
				log_error("bad --max-segment '%s'", optarg);
				return -EINVAL;
			}
			break;
		case 'A':
			arg_cfg.max_alloc_pct = (unsigned)strtoul(optarg, &end, 10);
			if (*end || arg_cfg.max_alloc_pct < 1 || arg_cfg.max_alloc_pct > 100) {
				log_error("bad --max-alloc '%s' (a percentage, 1..100)", optarg);
				return -EINVAL;
			}
			break;
		case 'K':
			c = mfs_keyring_add_file(&arg_keys, optarg);
			if (c < 0) {
				log_error("cannot use key file '%s': %s", optarg, mfs_auth_key_error(c));
				return -EINVAL;
			}
			arg_cfg.keys = &arg_keys;
			break;
		case 'X':
			c = mfs_keyring_add_enc_file(&arg_keys, optarg);
			if (c < 0) {
				log_error("cannot use key file '%s': %s", optarg, mfs_auth_key_error(c));
				return -EINVAL;
			}
			arg_cfg.keys = &arg_keys;
			break;
		case 'S': arg_syslog = true; break;
		case 'E': arg_s3_endpoint = optarg; break;
		case 'P': {
			double s = strtod(optarg, &end);

			if (*end || !(s >= 0.05 && s <= 86400)) {
				log_error("bad --s3-poll '%s' (seconds, 0.05..86400)", optarg);
				return -EINVAL;
			}
			arg_s3_poll_ms = (unsigned)(s * 1000);
			break;
		}
		case 'v': mfs_log_max_level = LOG_DEBUG; break;
		case 'h': usage(stdout); exit(EXIT_SUCCESS);
		case 'V': printf("mirrord %s\n", PACKAGE_VERSION); exit(EXIT_SUCCESS);
		default: usage(stderr); return -EINVAL;
		}
	}
	if (!arg_cfg.max_segment)
		arg_cfg.max_segment = DEFAULT_MAX_SEGMENT;
	if (!arg_cfg.max_alloc_pct)
		arg_cfg.max_alloc_pct = MFS_REPLAY_ALLOC_PCT;
	if (optind < argc || !arg_cfg.incoming || !arg_cfg.data) {
		usage(stderr);
		return -EINVAL;
	}
	if (!strncmp(arg_cfg.incoming, "s3://", 5))
		return s3_incoming_setup();
	if (!arg_cfg.state) {
		if (asprintf(&state_default, "%s/.mirrord", arg_cfg.incoming) < 0)
			return -ENOMEM;
		arg_cfg.state = state_default;
	}
	if (!arg_cfg.quarantine) {
		if (asprintf(&quarantine_default, "%s/quarantine", arg_cfg.state) < 0)
			return -ENOMEM;
		arg_cfg.quarantine = quarantine_default;
	}
	return 0;
}

static void setup_process(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* How long to wait before the next pass: a failed pass's backoff runs to its deadline. */
static int wait_ms(int pending, uint64_t retry_at)
{
	uint64_t now = mfs_mono_ns();

	if (pending < 0)
		return retry_at > now ? (int)((retry_at - now + 999999) / 1000000) : 0;
	return pending != 0 ? RETRY_MS : IDLE_RESCAN_MS;
}

/* --incoming s3://: poll the bucket when it is due (downloads wake the watch). */
static void follow_poll(void)
{
	uint64_t now = mfs_mono_ns();

	if (!follow || now < next_poll_ns)
		return;
	next_poll_ns = now + (uint64_t)arg_s3_poll_ms * 1000000ull;
	(void)mirror_s3_poll(follow);
}

/* @ms, but not past the next poll of the bucket. */
static int follow_ms(int ms)
{
	uint64_t now = mfs_mono_ns(), left;

	if (!follow)
		return ms;
	left = next_poll_ns > now ? (next_poll_ns - now + 999999) / 1000000 : 0;
	return ms < 0 || (uint64_t)ms > left ? (int)left : ms;
}

/* Tell systemd how the mirror stands (STATUS=), after @extra ("READY=1\n" or ""), if it changed. */
static void notify_status(struct mirror *m, const char *extra)
{
	static char last[640];
	char line[640];

	mirror_describe(m, line, sizeof(line));
	if (!*extra && !strcmp(line, last))
		return;
	memcpy(last, line, sizeof(last));
	(void)mfs_notifyf("%sSTATUS=%s", extra, line);
}

/* @ms, but short enough for the watchdog (@wd_usec, 0: none) to be fed twice per interval. */
static int watchdog_ms(int ms, uint64_t wd_usec)
{
	int half = wd_usec ? (int)(wd_usec / 2000 > 0 ? wd_usec / 2000 : 1) : -1;

	return half > 0 && (ms < 0 || ms > half) ? half : ms;
}

/*
 * Continuous mode: rescan on inotify events, retry while something waits;
 * after a pass that failed for a local reason, not before its backoff.
 * systemd hears READY=1 once the first pass is done, WATCHDOG=1 from every
 * round of the loop (when it asks for it) and a STATUS= line when it changes.
 */
static int run_loop(struct mirror *m)
{
	_cleanup_close_ int wfd = -EBADF;
	uint64_t retry_at = 0, wd_usec = mfs_notify_watchdog_usec();
	int r, pending;

	wfd = mirror_watch_open(arg_cfg.incoming);
	if (wfd < 0)
		return log_error_errno(wfd, "Failed to watch '%s': %m", arg_cfg.incoming);
	follow_poll();
	pending = mirror_pass(m, &stop_requested);
	notify_status(m, "READY=1\n");
	while (!stop_requested) {
		struct pollfd p = { .fd = wfd, .events = POLLIN };

		if (wd_usec)
			(void)mfs_notify("WATCHDOG=1");
		notify_status(m, "");
		if (pending < 0 && !retry_at)
			retry_at = mfs_mono_ns() + (uint64_t)mirror_retry_ms(m) * 1000000ull;
		r = poll(&p, 1, watchdog_ms(follow_ms(wait_ms(pending, retry_at)), wd_usec));
		if (r < 0 && errno != EINTR)
			return log_error_errno(-errno, "poll failed: %m");
		if (stop_requested)
			break;
		follow_poll();
		if (r > 0) {
			r = mirror_watch_read(wfd);
			if (r < 0)
				return log_error_errno(r, "Failed to read inotify events of '%s': %m",
						       arg_cfg.incoming);
			if (r == 0 && pending == 0)
				continue;
		}
		if (pending < 0 && mfs_mono_ns() < retry_at)
			continue; /* a local failure: its backoff first */
		retry_at = 0;
		pending = mirror_pass(m, &stop_requested);
	}
	(void)mfs_notify("STOPPING=1");
	log_info("stopping");
	return 0;
}

static int s3_follow_start(void)
{
	static int state_fd = -1;
	int r;

	state_fd = open(arg_cfg.state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (state_fd < 0)
		return log_error_errno(-errno, "cannot open '%s': %m", arg_cfg.state);
	r = mirror_s3_new(arg_s3_url, arg_s3_endpoint, s3_incoming, state_fd, &follow);
	if (r < 0)
		return r;
	log_info("following %s every %u ms", arg_s3_url, arg_s3_poll_ms);
	return 0;
}

int main(int argc, char **argv)
{
	struct mirror *m = NULL;
	int r;

	mfs_log_set_ident("mirrord");
	mfs_log_set_stamps(true);
	r = parse_argv(argc, argv);
	if (r < 0)
		return 2;
	if (arg_syslog)
		mfs_log_use_syslog("mirrord");
	setup_process();
	r = mirror_new(&arg_cfg, &m);
	if (r < 0)
		return EXIT_FAILURE;
	if (arg_s3_url && s3_follow_start() < 0) {
		mirror_free(m);
		return EXIT_FAILURE;
	}
	if (arg_cfg.once) {
		while (follow && mirror_s3_poll(follow) > 0)
			; /* everything new, a page per poll */
		r = mirror_pass(m, &stop_requested);
		if (r > 0)
			log_error("not everything could be applied (see '%s/status.json')",
				  arg_cfg.state);
	} else {
		r = run_loop(m);
	}
	mirror_free(m);
	follow = mirror_s3_free(follow);
	free(s3_incoming);
	free(state_default);
	free(quarantine_default);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
