/* SPDX-License-Identifier: MIT */
/*
 * cli.h - the subcommands of mirrorctl. Each takes argv after its own name
 * and returns the process exit status.
 */
#pragma once

#include <stdbool.h>

int cli_dump(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_replay(int argc, char **argv);
int cli_sample(int argc, char **argv);
int cli_rotate(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_lock(int argc, char **argv);
int cli_unlock(int argc, char **argv);
int cli_snapshot(int argc, char **argv);
int cli_checkpoint(int argc, char **argv);
int cli_promote(int argc, char **argv);
int cli_rejoin(int argc, char **argv);
int cli_restore(int argc, char **argv);
int cli_s3(int argc, char **argv);
int cli_backup(int argc, char **argv);
int cli_prune(int argc, char **argv);

/* ---------------------------------------------------------------- s3fetch.c */

/* `restore --from s3://BUCKET/PREFIX/`: is --from among the arguments? */
bool cli_restore_wants_s3(int argc, char **argv);

/* Download the bucket's segments into a scratch folder, run cli_restore()
 * on it (from an empty base unless --snapshot), remove the folder. */
int cli_restore_s3(int argc, char **argv);

/* `status`: the status was read and something needs attention (quarantine,
 * gap, failed state, shipper down). */
#define CLI_EXIT_ATTENTION 3

/* Print "mirrorctl: MESSAGE" on stderr and return 1 (usage errors: 2). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --auth-key FILE: add the key to @kr. Returns 0, or 1 after a message. */
struct mfs_keyring;
int cli_auth_key_add(struct mfs_keyring *kr, const char *file);
/* --encrypt-key FILE: add it to @kr's encryption keys, or fail with a message. */
int cli_encrypt_key_add(struct mfs_keyring *kr, const char *file);
/* argv[*i] is --auth-key FILE or --encrypt-key FILE: add the key to @kr and
 * step *i over FILE. Returns 1 when it was one, 0 when it is another
 * argument, -1 after a message when the key cannot be used. */
int cli_key_opt(struct mfs_keyring *kr, int argc, char **argv, int *i);

/* mirrorctl keygen FILE */
int cli_keygen(int argc, char **argv);

/* The same line for a warning that does not stop the command. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Start cli_fail()/cli_warn() lines with @prefix instead of "mirrorctl" (borrowed). */
void cli_set_prefix(const char *prefix);

/* ---------------------------------------------------------------- guard.c */

/* Non-zero (after a message) when @path is on a mirrorfs mount: commands
 * that write a data folder want the folder behind the mount. */
int cli_refuse_mount(const char *path);

/* Take the data folder's lock (DATADIR/.mirrorfs/lock) as @role for the
 * life of the returned fd; -1 after a message naming the holder's PID. */
int cli_lock_data(const char *path, int datafd, const char *role);

/* Non-zero (after a message naming the holder's PID) when the data folder's
 * lock is held; creates nothing. */
int cli_probe_data(const char *path, int datafd);

/* As cli_probe_data() for @path and each folder above it (the nearest that
 * exists first): a folder inside a data folder in use is refused too. */
int cli_probe_data_tree(const char *path);

/* Take a mirror state folder's lock (STATE/lock), as cli_lock_data(). */
int cli_lock_state(const char *path, int statefd, const char *role);

/*
 * Remove the snapshot store DATADIR/.mirrorfs/snapshots, naming each
 * snapshot and its LSN on stderr with @why. A mirror's data folder must not
 * keep one: its regular files are hard links to the live inodes, which
 * replay writes in place (a snapshot would silently hold later rows).
 * Returns 0 (also when there is none), or 1 after a message.
 */
int cli_drop_snapshots(const char *data, int datafd, const char *why);
