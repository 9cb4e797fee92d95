/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mntcr/mntcr.h"
#include "tree.h"

MNTCR_EXPORT int mntcr_diff(const struct mntcr_tree *a, const struct mntcr_tree *b, mntcr_diff_func_t fn,
			    void *userdata)
{
	return -EOPNOTSUPP;
}
