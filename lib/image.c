/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mntcr/mntcr.h"
#include "tree.h"

MNTCR_EXPORT int mntcr_image_write(int fd, const struct mntcr_tree *t, unsigned flags)
{
	return -EOPNOTSUPP;
}

MNTCR_EXPORT int mntcr_image_read(int fd, struct mntcr_tree **ret_tree)
{
	return -EOPNOTSUPP;
}
