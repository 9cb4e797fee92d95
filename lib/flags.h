/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Per-mount flags: one table maps mountinfo option names, MOUNT_ATTR_* and
 * MS_* to each other, in both directions.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "sys.h"

struct mount_flag {
	const char *name;   /* as mountinfo's per-mount options print it */
	uint64_t attr;      /* MOUNT_ATTR_* */
	uint64_t attr_mask; /* the bits of attr this entry decides */
	unsigned long ms;   /* MS_* for mount(2) */
};

extern const struct mount_flag mount_flags[];
extern const unsigned n_mount_flags;

/* The flags mntcr restores; others (idmap) are refused. */
#define MNTCR_ATTR_KNOWN                                                                           \
	(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |            \
	 MOUNT_ATTR__ATIME | MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOSYMFOLLOW)

/*
 * Parse mountinfo's per-mount options (field 6). The atime mode is strict
 * unless "noatime" or "relatime" is given. Unknown names give -EINVAL.
 */
int attr_from_options(const char *opts, uint64_t *ret_attr);
/* Parse one option name; -EINVAL when unknown. */
int attr_from_name(const char *name, uint64_t *attr);
/* MS_* flags (mount(2), MS_REMOUNT|MS_BIND) equivalent to attr. */
unsigned long attr_to_ms(uint64_t attr);
/* The atime mode, normalised: one of RELATIME, NOATIME, STRICTATIME. */
uint64_t attr_atime(uint64_t attr);
