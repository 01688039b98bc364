/* SPDX-License-Identifier: MIT */
/*
 * cli.h - the subcommands of mirrorctl. Each takes argv after its own name
 * and returns the process exit status.
 */
#pragma once

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

/* Print "mirrorctl: MESSAGE" on stderr and return 1 (usage errors: 2). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The same line for a warning that does not stop the command. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Start cli_fail()/cli_warn() lines with @prefix instead of "mirrorctl" (borrowed). */
void cli_set_prefix(const char *prefix);
