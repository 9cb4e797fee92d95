/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "flags.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#include "mntcr/mntcr.h"
#include "sys.h"
#include "util.h"

#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif

/* Order is the order mountinfo prints them in (fs/proc_namespace.c show_mnt_opts). */
const struct mount_flag mount_flags[] = {
	{ "ro", MOUNT_ATTR_RDONLY, MOUNT_ATTR_RDONLY, MS_RDONLY },
	{ "nosuid", MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSUID, MS_NOSUID },
	{ "nodev", MOUNT_ATTR_NODEV, MOUNT_ATTR_NODEV, MS_NODEV },
	{ "noexec", MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOEXEC, MS_NOEXEC },
	{ "noatime", MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME, MS_NOATIME },
	{ "nodiratime", MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NODIRATIME, MS_NODIRATIME },
	{ "relatime", MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME, MS_RELATIME },
	{ "nosymfollow", MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_NOSYMFOLLOW, MS_NOSYMFOLLOW },
	{ "strictatime", MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME, MS_STRICTATIME },
};
const unsigned n_mount_flags = ARRAY_SIZE(mount_flags);

uint64_t attr_atime(uint64_t attr)
{
	uint64_t a = attr & MOUNT_ATTR__ATIME;

	if (a == MOUNT_ATTR_NOATIME || a == MOUNT_ATTR_STRICTATIME)
		return a;
	return MOUNT_ATTR_RELATIME;
}

int attr_from_name(const char *name, uint64_t *attr)
{
	if (streq(name, "rw")) {
		*attr &= ~(uint64_t)MOUNT_ATTR_RDONLY;
		return 0;
	}
	for (unsigned i = 0; i < n_mount_flags; i++)
		if (streq(name, mount_flags[i].name)) {
			*attr = (*attr & ~mount_flags[i].attr_mask) | mount_flags[i].attr;
			return 0;
		}
	return -EINVAL;
}

int attr_from_options(const char *opts, uint64_t *ret_attr)
{
	uint64_t attr = MOUNT_ATTR_STRICTATIME;
	char name[64];
	const char *p = opts;

	/* Every comma-separated name must be non-empty: "", "rw,,ro" and "rw," are refused. */
	for (;;) {
		const char *e = strchrnul(p, ',');
		size_t n = (size_t)(e - p);

		if (n == 0 || n >= sizeof(name))
			return -EINVAL;
		memcpy(name, p, n);
		name[n] = 0;
		/* The kernel prints "idmapped" for MOUNT_ATTR_IDMAP mounts. */
		if (streq(name, "idmapped"))
			attr |= MOUNT_ATTR_IDMAP;
		else if (attr_from_name(name, &attr) < 0)
			return -EINVAL;
		if (!*e)
			break;
		p = e + 1;
	}
	*ret_attr = attr;
	return 0;
}

MNTCR_EXPORT int mntcr_attr_format(uint64_t attr, char *buf, size_t size)
{
	size_t len = 0;
	int n;

	n = snprintf(buf, size, "%s", (attr & MOUNT_ATTR_RDONLY) ? "ro" : "rw");
	if (n < 0 || (size_t)n >= size)
		return -ENOBUFS;
	len = (size_t)n;
	for (unsigned i = 1; i < n_mount_flags; i++) {
		const struct mount_flag *f = &mount_flags[i];

		/* mountinfo never prints strictatime: it is the absence of the others */
		if (f->attr == MOUNT_ATTR_STRICTATIME && f->attr_mask == MOUNT_ATTR__ATIME)
			continue;
		if ((attr & f->attr_mask) != f->attr)
			continue;
		if (f->attr_mask == MOUNT_ATTR__ATIME && attr_atime(attr) != f->attr)
			continue;
		n = snprintf(buf + len, size - len, ",%s", f->name);
		if (n < 0 || (size_t)n >= size - len)
			return -ENOBUFS;
		len += (size_t)n;
	}
	if (attr & MOUNT_ATTR_IDMAP) {
		n = snprintf(buf + len, size - len, ",idmapped");
		if (n < 0 || (size_t)n >= size - len)
			return -ENOBUFS;
		len += (size_t)n;
	}
	return (int)len;
}

unsigned long attr_to_ms(uint64_t attr)
{
	unsigned long ms = 0;

	for (unsigned i = 0; i < n_mount_flags; i++) {
		const struct mount_flag *f = &mount_flags[i];

		if (f->attr_mask == MOUNT_ATTR__ATIME) {
			if (attr_atime(attr) == f->attr)
				ms |= f->ms;
		} else if (attr & f->attr)
			ms |= f->ms;
	}
	return ms;
}
