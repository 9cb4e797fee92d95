/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Functions shared between library files, not exported. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "tree.h"

/* mountinfo.c */
int mountinfo_parse_line(char *line, struct mntcr_mount *m);
/*
 * The rest of fd's mountinfo text (all of it, from a fresh open or after
 * lseek 0) into t's mounts (t has none yet), parsed while it is read, on a
 * second thread when it is long; ids as the text gives them. Their strings
 * stay in the text, which t keeps. On failure t has no mounts. expect:
 * the lines the text likely has (room for them is made first), or 0.
 */
int mountinfo_text_load(int fd, size_t expect, struct mntcr_tree *t);
/* The mountinfo text of fd into a new tree, indexed. */
int mountinfo_read_fd(int fd, struct mntcr_tree **ret_tree);

/* statmount.c */
int statmount_ns_id_of_pid(pid_t pid, uint64_t *ret_ns_id);
/*
 * events_fd: /proc/PID/mountinfo of a process in the namespace, opened
 * before the call, which tells whether the namespace changed while it was
 * read; negative when there is none (a namespace file). text_fd: another
 * open of it, which the strings are read from when it shows every mount,
 * or negative.
 */
int statmount_read(uint64_t ns_id, int events_fd, int text_fd, struct mntcr_tree **ret_tree);
/* MNTCR_TIMING: how long the last statmount_read took to read the mounts (statmount and copies) */
extern double statmount_read_ms;

/* read.c */
/* Mark t's superblocks external when self (the dumper's namespace) has a visible mount of them. */
int tree_classify(struct mntcr_tree *t, const struct mntcr_tree *self);
int tree_read_self(struct mntcr_tree **ret_tree);
/*
 * Several namespaces into one tree, not yet indexed: part k's mounts become
 * namespace k's. Mount ids are the kernel's, unique across namespaces, so
 * parents still resolve; superblocks are grouped by device number across
 * all parts. Takes the parts' mounts (the parts are left empty).
 */
int tree_merge(struct mntcr_tree **parts, size_t n, struct mntcr_tree **ret);
