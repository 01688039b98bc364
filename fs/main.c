/* SPDX-License-Identifier: MIT */
/*
 * main.c - mirrorfs [-f] [-d] [-o opt,...] DATADIR MOUNTPOINT
 *
 * Parses options, opens DATADIR and the journal (recovering it), mounts,
 * runs the multithreaded session loop, and on unmount checkpoints and
 * releases everything. Nothing is mounted unless the journal is usable.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "config.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/notify.h"

struct cli {
	char *data_dir;
	char *journal_dir;
	char *rotate_size;
	char *metrics;
	char *auth_key, *auth_key_old;
	char *encrypt_key, *encrypt_key_old;
	char *compress;
	unsigned rotate_interval;
	unsigned checkpoint_interval;
	int notify_fd;
	int show_help;
};

#define CLI_OPT(t, p) { t, offsetof(struct cli, p), 0 }
static const struct fuse_opt cli_opts[] = {
	CLI_OPT("journal_dir=%s", journal_dir),
	CLI_OPT("rotate_size=%s", rotate_size),
	CLI_OPT("auth_key=%s", auth_key),
	CLI_OPT("auth_key_old=%s", auth_key_old),
	CLI_OPT("encrypt_key=%s", encrypt_key),
	CLI_OPT("encrypt_key_old=%s", encrypt_key_old),
	CLI_OPT("compress=%s", compress),
	CLI_OPT("rotate_interval=%u", rotate_interval),
	CLI_OPT("checkpoint_interval=%u", checkpoint_interval),
	CLI_OPT("notify_fd=%d", notify_fd),
	CLI_OPT("metrics=%s", metrics),
	FUSE_OPT_END
};

static void usage(void)
{
	printf("usage: mirrorfs [-f] [-d] [-o opt,...] DATADIR MOUNTPOINT\n\n"
	       "mirrorfs options:\n"
	       "    -o journal_dir=DIR        segments folder (default DATADIR/.mirrorfs)\n"
	       "    -o rotate_size=SIZE       close a segment when it reaches SIZE (default 64M)\n"
	       "    -o rotate_interval=SECS   close a non-empty segment every SECS seconds\n"
	       "    -o checkpoint_interval=SECS  sync backing files every SECS (default 30)\n"
	       "    -o notify_fd=N            write one byte to fd N once mounted\n"
	       "    -o metrics=FILE           write Prometheus text metrics to FILE every second\n"
	       "    -o auth_key=FILE          authenticate segments (format 2) with this key\n"
	       "    -o auth_key_old=FILE      the key before a key change (to close its open segment)\n"
	       "    -o encrypt_key=FILE       encrypt segments (format 2, XChaCha20-Poly1305) with this key\n"
	       "    -o encrypt_key_old=FILE   the encryption key before a key change\n"
	       "    -o compress=zstd[:LEVEL]  compress written data in the journal (format 2; LEVEL 1..19, default 3)\n\n");
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cli *c = data;

	if (key == FUSE_OPT_KEY_NONOPT && !c->data_dir) {
		c->data_dir = strdup(arg);
		return 0;
	}
	if (key == FUSE_OPT_KEY_OPT && (!strcmp(arg, "-h") || !strcmp(arg, "--help")))
		c->show_help = 1;
	return 1;
}

/*
 * libfuse sometimes logs one line in pieces (its "unknown option(s): `-o
 * x'" is three calls): keep a piece that lacks its newline and log the
 * line once it is complete, so the message reads as one line.
 */
static void fuse_log_sink(enum fuse_log_level level, const char *fmt, va_list ap)
{
	static _Thread_local char buf[1024];
	static _Thread_local size_t len;

	if ((int)level > mfs_log_max_level)
		return;
	vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
	len = strlen(buf);
	if (len && buf[len - 1] != '\n' && len < sizeof(buf) - 1)
		return;
	while (len && buf[len - 1] == '\n')
		buf[--len] = 0;
	mfs_log((int)level, "%s", buf);
	len = 0;
	buf[0] = 0;
}

/* Whether @inner is @outer or beneath it (both canonical). */
static bool path_within(const char *inner, const char *outer)
{
	size_t n = strlen(outer);

	return !strncmp(inner, outer, n) && (inner[n] == 0 || inner[n] == '/');
}

static int check_journal_dir(struct fs *fs, const char *data)
{
	char buf[PATH_MAX], resolved[PATH_MAX + NAME_MAX + 2], hidden[PATH_MAX + 16];

	if (!fs->opt.journal_dir)
		return 0;
	snprintf(buf, sizeof(buf), "%s", fs->opt.journal_dir);
	if (!realpath(buf, resolved)) {
		/* not there yet: judge by its parent */
		char *slash = strrchr(buf, '/');
		char parent[PATH_MAX];
		if (slash)
			*slash = 0;
		if (!realpath(slash ? (buf[0] ? buf : "/") : ".", parent))
			return log_error_errno(-errno, "journal folder '%s' is not reachable: %m",
					       fs->opt.journal_dir);
		if (snprintf(resolved, sizeof(resolved), "%s/%s", parent,
			     slash ? slash + 1 : fs->opt.journal_dir) >= (int)sizeof(resolved))
			return log_error_errno(-ENAMETOOLONG, "journal folder name '%s/%s' is too long",
					       parent, slash ? slash + 1 : fs->opt.journal_dir);
	}
	snprintf(hidden, sizeof(hidden), "%s/" MFS_CTL_DIR, data);
	if (path_within(resolved, data) && !path_within(resolved, hidden))
		return log_error_errno(-EINVAL, "journal folder '%s' is inside the data folder "
						"'%s' (only '%s' is hidden there)",
				       fs->opt.journal_dir, data, hidden);
	fs->opt.journal_dir = strdup(resolved);
	return fs->opt.journal_dir ? 0 : -ENOMEM;
}

/* Every known inode holds an O_PATH fd: allow as many as we may. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warning("cannot raise the open file limit, ignoring: %m");
	}
}

/*
 * -o metrics=FILE: its folder must exist and FILE must not be a folder;
 * made absolute, since mirrorfs in the background runs in '/'.
 */
static int check_metrics(struct fs *fs, const char *path)
{
	static char full[PATH_MAX + NAME_MAX + 2];
	char dir[PATH_MAX], rdir[PATH_MAX];
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	struct stat st;

	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return log_error_errno(-EISDIR, "metrics file '%s' names a folder", path);
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (!realpath(dir, rdir))
		return log_error_errno(-errno, "metrics file '%s' cannot be used: %m", path);
	snprintf(full, sizeof(full), "%s/%s", strcmp(rdir, "/") ? rdir : "", base);
	if (stat(full, &st) == 0 && S_ISDIR(st.st_mode))
		return log_error_errno(-EISDIR, "metrics file '%s' is a folder", path);
	fs->opt.metrics = full;
	return 0;
}

/* -o NAME=FILE and NAME_old=FILE (@old: the key before a key change) into
 * fs's keyring: its encryption keys with @enc, else its authentication keys. */
static int load_key_pair(struct fs *fs, const char *name, const char *file, const char *old, bool enc)
{
	const char *files[] = { file, old };
	int r;

	if (old && !file)
		return log_error_errno(-EINVAL, "%s_old needs %s (the new key)", name, name);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		if (!files[i])
			continue;
		r = enc ? mfs_keyring_add_enc_file(&fs->opt.keys, files[i])
			: mfs_keyring_add_file(&fs->opt.keys, files[i]);
		if (r < 0)
			return log_error_errno(-EINVAL, "cannot use key file '%s': %s", files[i],
					       mfs_auth_key_error(r));
	}
	return 0;
}

/* -o auth_key=FILE (keys[0], tags new segments), auth_key_old=FILE (keys[1]);
 * -o encrypt_key=FILE (enc[0], seals new segments), encrypt_key_old=FILE (enc[1]). */
static int load_keys(struct fs *fs, struct cli *c)
{
	char id[17];
	int r;

	r = load_key_pair(fs, "auth_key", c->auth_key, c->auth_key_old, false);
	if (r < 0)
		return r;
	r = load_key_pair(fs, "encrypt_key", c->encrypt_key, c->encrypt_key_old, true);
	if (r < 0)
		return r;
	if (c->auth_key) {
		mfs_auth_id_format(fs->opt.keys.keys[0].id, id);
		log_info("segments are authenticated with key id %s", id);
	}
	if (c->encrypt_key) {
		mfs_auth_id_format(fs->opt.keys.enc[0].id, id);
		log_info("segments are encrypted with key id %s", id);
	}
	return 0;
}

/* -o compress=zstd[:LEVEL] */
static int parse_compress(struct fs *fs, const char *v)
{
	char *end;
	long level = 3;

	if (!v)
		return 0;
	if (strncmp(v, "zstd", 4) || (v[4] && v[4] != ':'))
		return log_error_errno(-EINVAL, "bad compress '%s' (zstd or zstd:LEVEL)", v);
	if (v[4] == ':') {
		errno = 0;
		level = strtol(v + 5, &end, 10);
		if (errno || end == v + 5 || *end || level < 1 || level > 19)
			return log_error_errno(-EINVAL, "bad compress level in '%s' (1..19)", v);
	}
	fs->opt.zstd_level = (int)level;
	log_info("written data is compressed in the journal (zstd level %ld)", level);
	return 0;
}

static int fs_setup(struct fs *fs, struct cli *c)
{
	static char data[PATH_MAX];
	const char *delay;
	pthread_rwlockattr_t attr;
	struct stat st;
	uint64_t size = FS_ROTATE_SIZE_DEFAULT;
	int r;

	if (!realpath(c->data_dir, data))
		return log_error_errno(-errno, "data folder '%s' cannot be used: %m", c->data_dir);
	if (stat(data, &st) < 0 || !S_ISDIR(st.st_mode))
		return log_error_errno(-ENOTDIR, "data folder '%s' is not a directory",
				       c->data_dir);
	if (c->rotate_size && (mfs_parse_size(c->rotate_size, &size) < 0 || size == 0))
		return log_error_errno(-EINVAL, "bad rotate_size '%s'", c->rotate_size);
	fs->opt.data_dir = data;
	fs->opt.journal_dir = c->journal_dir;
	fs->opt.rotate_size = size;
	fs->opt.rotate_interval = c->rotate_interval;
	fs->opt.checkpoint_interval = c->checkpoint_interval ? c->checkpoint_interval : 30;
	fs->opt.skip_backing_sync = getenv("MFS_FAULT_SKIP_BACKING_SYNC") != NULL;
	if (fs->opt.skip_backing_sync)
		log_warning("fault injection: backing files are never synced");
	delay = getenv("MFS_FAULT_CHECKPOINT_DELAY_MS");
	if (delay) {
		fs->opt.ckpt_delay_ms = (unsigned)strtoul(delay, NULL, 10);
		log_warning("fault injection: checkpoints wait %u ms first", fs->opt.ckpt_delay_ms);
	}
	r = check_journal_dir(fs, data);
	if (r == 0 && c->metrics)
		r = check_metrics(fs, c->metrics);
	if (r < 0)
		return r;
	r = load_keys(fs, c);
	if (r < 0)
		return r;
	r = parse_compress(fs, c->compress);
	if (r < 0)
		return r;
	raise_nofile();
	fs->owner = getuid();
	fs->is_root = geteuid() == 0;
	fs->egid = getegid();
	fs->timeout = 1.0;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fs->ns_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	fs->hooks.tick = fs_metrics_write;
	fs->hooks.fsync = fs_metrics_fsync;
	fs->hooks.inode_init = fs_pending_inode_init;
	fs->hooks.inode_done = fs_pending_inode_done;
	fs_pending_init(fs);
	r = fs_itable_init(fs);
	if (r == 0)
		r = fs_vtree_init(fs);
	if (r < 0)
		return log_error_errno(r, "cannot allocate: %m");
	fs->root.fd = open(data, O_PATH | O_DIRECTORY | O_CLOEXEC);
	fs->sync_fd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->root.fd < 0 || fs->sync_fd < 0 || fstat(fs->root.fd, &st) < 0)
		return log_error_errno(-errno, "cannot open data folder '%s': %m", data);
	fs->root.dev = st.st_dev;
	fs->root.ino = st.st_ino;
	fs->data_fd = fs->root.fd;
	r = fs_journal_open(fs);
	if (r == 0)
		r = fs_snap_open(fs); /* after recovery: see cow.c, "Ordering" */
	return r;
}

/* The snapshots close between the journal's last checkpoint and the
 * release of its locks. */
static void fs_teardown(struct fs *fs)
{
	fs_journal_stop(fs);
	fs_snap_close(fs);
	fs_journal_close(fs);
	fs_vtree_done(fs);
	fs_itable_done(fs);
	closep(&fs->root.fd);
	closep(&fs->sync_fd);
}

/* Mount, serve until unmounted, unmount. Takes @se. */
static int run(struct fs *fs, struct fuse_session *se, struct fuse_cmdline_opts *o,
	       struct cli *c)
{
	struct fuse_loop_config *cfg;
	int r = 1;

	fs->se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_destroy;
	if (fuse_session_mount(se, o->mountpoint) != 0)
		goto out_signals;
	fs_killpriv_attach(se);
	fuse_daemonize(o->foreground);
	if (!o->foreground)
		mfs_log_use_syslog("mirrorfs");
	(void)fs_journal_lock_refresh(fs); /* the PID others are told about; logged */
	r = 1;
	if (fs_journal_start(fs) < 0)
		goto out_unmount;
	if (c->notify_fd > 0) {
		char ok = 1;
		(void)!write(c->notify_fd, &ok, 1);
		close(c->notify_fd);
	}
	/* systemd's Type=notify: mounted, served from here on. Daemonized, this
	 * is not the process systemd started: it names itself as the main one
	 * (the unit needs NotifyAccess=all for that) */
	if (o->foreground)
		(void)mfs_notify("READY=1");
	else
		(void)mfs_notifyf("MAINPID=%ld\nREADY=1", (long)getpid());
	if (o->singlethread) {
		r = fuse_session_loop(se);
	} else {
		cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, o->clone_fd);
		if (o->max_threads > 0 && o->max_threads <= 100000)
			fuse_loop_cfg_set_max_threads(cfg, o->max_threads);
		if (o->max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(cfg, o->max_idle_threads);
		r = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	(void)mfs_notify("STOPPING=1");
out_unmount:
	fs->se = NULL;
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
	return r ? 1 : 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts o = { 0 };
	struct cli c = { .notify_fd = -1 };
	static struct fs fs = { .data_fd = -1, .sync_fd = -1, .root = { .fd = -1 } };
	struct fuse_session *se;
	int r = 1;

	umask(0); /* the kernel applied the caller's umask already */
	mfs_log_set_ident("mirrorfs");
	mfs_log_set_stamps(true);
	fuse_set_log_func(fuse_log_sink);
	if (fuse_opt_parse(&args, &c, cli_opts, opt_proc) != 0)
		return 1;
	if (fuse_parse_cmdline(&args, &o) != 0)
		return 1;
	if (o.show_help || c.show_help) {
		usage();
		fuse_cmdline_help();
		fuse_lowlevel_help();
		r = 0;
		goto out;
	}
	if (o.show_version) {
		printf("mirrorfs %s (FUSE %s)\n", PACKAGE_VERSION, fuse_pkgversion());
		r = 0;
		goto out;
	}
	if (!c.data_dir || !o.mountpoint) {
		fprintf(stderr, "usage: mirrorfs [-f] [-d] [-o opt,...] DATADIR MOUNTPOINT\n");
		r = 2;
		goto out;
	}
	fs.mountpoint = o.mountpoint;
	if (o.debug)
		mfs_log_max_level = LOG_DEBUG;
	/* before the user's options, so that an fsname= given there wins: an
	 * fstab line with fsname=DATADIR is then seen as mounted by mount -a */
	fuse_opt_insert_arg(&args, 1, "-odefault_permissions,fsname=mirrorfs,subtype=mirrorfs");
	if (geteuid() == 0)
		fuse_opt_add_arg(&args, "-oallow_other");
	/* the session parses the FUSE options: a mistyped -o fails here, before
	 * anything is created in DATADIR */
	se = fuse_session_new(&args, fs_lock_wrap_ops(&fs_ops), sizeof(fs_ops), &fs);
	if (!se)
		goto out;
	if (fs_check_places(c.data_dir, o.mountpoint) == 0 && fs_setup(&fs, &c) == 0)
		r = run(&fs, se, &o, &c);
	else
		fuse_session_destroy(se);
	fs_teardown(&fs);
out:
	free(o.mountpoint);
	free(c.data_dir);
	fuse_opt_free_args(&args);
	return r;
}
