/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared pieces of the mntcr command-line tool. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "mntcr/mntcr.h"

static inline void cli_freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(cli_freep)))

/* Exit codes (docs/man/mntcr.1.scd). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,     /* operation failed; for diff: the namespaces differ */
	EXIT_USAGE = 2,    /* bad arguments; for diff: any error */
	EXIT_NO_PID = 3,   /* the process does not exist or may not be read */
	EXIT_BAD_IMAGE = 4, /* unreadable, truncated, corrupt image */
	EXIT_VERSION = 5,  /* image of an unknown format version */
	EXIT_RESTORE = 6,  /* restore failed (plan or executor); nothing left behind */
	EXIT_UNSUPPORTED = 7, /* the namespace holds something mntcr cannot restore */
};

/* Print "mntcr <verb>: <message>" to stderr. Returns EXIT_FAIL for convenience. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Map a library error on reading a pid to a message and exit code. */
int cli_pid_error(pid_t pid, int err);
/* The same for a list of processes: names the one that is gone, if one is. */
int cli_pids_error(const pid_t *pids, size_t n, int err);
/* Map a library error on reading an image to a message and exit code. */
int cli_image_error(const char *file, int err);

/*
 * Leave p (an image or a tree the command is done with) to the process's
 * exit: the kernel takes the memory back at once, where freeing it mount
 * by mount takes 0.9 ms at 10,000 mounts. It stays reachable, so leak
 * checkers do not count it. NULL is fine.
 */
void cli_leave_to_exit(void *p);

/* Parse a decimal pid; false on garbage. */
bool cli_parse_pid(const char *s, pid_t *ret);

/* Load "pid:N" or an image path ("-" = stdin) into a tree. Prints errors. */
int cli_load(const char *spec, struct mntcr_tree **ret_tree, int *ret_exit);
/* Load an image file ("-" = stdin). Prints errors. */
int cli_load_image(const char *file, struct mntcr_tree **ret_tree, int *ret_exit);

extern const char *cli_verb;

int cmd_dump(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_plan(int argc, char **argv);

/* restore --dry-run and plan */
int cli_print_plan(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts);
