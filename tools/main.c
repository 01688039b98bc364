/* SPDX-License-Identifier: MIT */
/*
 * main.c - mirrorctl, the operator's command-line tool: dispatch only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "config.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/log.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
} commands[] = {
	{ "rotate", cli_rotate, "rotate MOUNTPOINT            close the open segment, print its name" },
	{ "status", cli_status, "status [--json] MOUNTPOINT|STATEDIR|STATUSFILE" },
	{ "checkpoint", cli_checkpoint, "checkpoint MOUNTPOINT        sync backing files, mark it" },
	{ "lock", cli_lock, "lock [--timeout S] MOUNTPOINT [-- COMMAND...]" },
	{ "unlock", cli_unlock, "unlock MOUNTPOINT" },
	{ "snapshot", cli_snapshot, "snapshot create|list|delete MOUNTPOINT [NAME]" },
	{ "dump", cli_dump, "dump [--json] [--auth-key FILE]... [--encrypt-key FILE]... SEGMENT...  records and verdict" },
	{ "verify", cli_verify, "verify DIR_A DIR_B            are two data directories identical?" },
	{ "replay", cli_replay, "replay [--auth-key FILE]... [--encrypt-key FILE]... --to DIR [--after LSN] [--until LSN] SEGMENT..." },
	{ "promote", cli_promote, "promote [--dry-run] --data DIR --state STATEDIR [--incoming DIR] [--current FILE] [--auth-key FILE]... [--encrypt-key FILE]..." },
	{ "restore", cli_restore, "restore [--dry-run] --snapshot PATH [--lsn N] [--until LSN|TIME|latest] [--auth-key FILE]... [--encrypt-key FILE]... --segments DIR|--from s3://BUCKET/PREFIX/ --to DIR" },
	{ "rejoin", cli_rejoin, "rejoin [--dry-run] --data DIR --state STATEDIR --incoming DIR [--auth-key FILE]... [--encrypt-key FILE]...  old primary -> mirror" },
	{ "sample", cli_sample, "sample FILE                   write a sample segment (for tests)" },
	{ "backup", cli_backup, "backup [--full] MOUNTPOINT SNAPSHOT s3://BUCKET/PREFIX/  a snapshot to object storage, incremental" },
	{ "prune", cli_prune, "prune [--dry-run] s3://BUCKET/PREFIX/ --keep-backups N|--keep-within DURATION" },
	{ "s3", cli_s3, "s3 [--s3-endpoint URL] mb|put|get|head|ls|rm ...  object storage (see s3 --help)" },
	{ "keygen", cli_keygen, "keygen FILE                   a new 256-bit key for authenticated segments" },
};

static const char *fail_prefix = "mirrorctl";

int cli_auth_key_add(struct mfs_keyring *kr, const char *file)
{
	int r = mfs_keyring_add_file(kr, file);

	if (r < 0)
		return cli_fail("cannot use key file '%s': %s", file, mfs_auth_key_error(r));
	return 0;
}

int cli_encrypt_key_add(struct mfs_keyring *kr, const char *file)
{
	int r = mfs_keyring_add_enc_file(kr, file);

	if (r < 0)
		return cli_fail("cannot use key file '%s': %s", file, mfs_auth_key_error(r));
	return 0;
}

int cli_key_opt(struct mfs_keyring *kr, int argc, char **argv, int *i)
{
	bool auth = !strcmp(argv[*i], "--auth-key");

	if ((!auth && strcmp(argv[*i], "--encrypt-key")) || *i + 1 >= argc)
		return 0;
	*i += 1;
	if (auth ? cli_auth_key_add(kr, argv[*i]) : cli_encrypt_key_add(kr, argv[*i]))
		return -1;
	return 1;
}

int cli_keygen(int argc, char **argv)
{
	struct mfs_auth_key k;
	char id[17];
	int r;

	if (argc != 2) {
		fprintf(stderr, "usage: mirrorctl keygen FILE\n");
		return 2;
	}
	r = mfs_auth_key_generate(argv[1]);
	if (r == -EEXIST)
		return cli_fail("'%s' exists: refusing to overwrite a key", argv[1]);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot write key file '%s': %m", argv[1]);
	}
	r = mfs_auth_key_load(argv[1], &k);
	if (r < 0)
		return cli_fail("cannot read back '%s': %s", argv[1], mfs_auth_key_error(r));
	mfs_auth_id_format(k.id, id);
	explicit_bzero(&k, sizeof(k));
	printf("%s: key id %s\n", argv[1], id);
	return 0;
}

void cli_set_prefix(const char *prefix)
{
	fail_prefix = prefix;
}

static void vline(const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", fail_prefix);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(fmt, ap);
	va_end(ap);
	return 1;
}

void cli_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(fmt, ap);
	va_end(ap);
}

static int usage(FILE *f)
{
	fprintf(f, "usage: mirrorctl COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %s\n", commands[i].usage);
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	mfs_log_set_ident("mirrorctl");
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return usage(stdout);
	if (!strcmp(argv[1], "--version")) {
		printf("mirrorctl %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		if (argc >= 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
			printf("usage: mirrorctl %s\n", commands[i].usage);
			return 0;
		}
		return commands[i].run(argc - 1, argv + 1);
	}
	cli_fail("unknown command '%s' (try --help)", argv[1]);
	return 2;
}
