/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mntcr/mntcr.h"
#include "tree.h"

MNTCR_EXPORT void mntcr_report_clear(struct mntcr_report *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->msg);
	*r = (struct mntcr_report){ .op_index = MNTCR_NONE };
}

MNTCR_EXPORT int mntcr_restore(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts,
			       int *ret_nsfd, struct mntcr_report *report)
{
	return -EOPNOTSUPP;
}
