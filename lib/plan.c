/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mntcr/mntcr.h"
#include "tree.h"

struct mntcr_plan {
	size_t n_ops;
};

MNTCR_EXPORT int mntcr_plan_build(const struct mntcr_tree *image, const struct mntcr_tree *host,
				  const struct mntcr_restore_opts *opts, struct mntcr_plan **ret_plan,
				  struct mntcr_report *report)
{
	return -EOPNOTSUPP;
}

MNTCR_EXPORT size_t mntcr_plan_n_ops(const struct mntcr_plan *p)
{
	return p->n_ops;
}

MNTCR_EXPORT int mntcr_plan_print(const struct mntcr_plan *p, FILE *f)
{
	return -EOPNOTSUPP;
}

MNTCR_EXPORT struct mntcr_plan *mntcr_plan_free(struct mntcr_plan *p)
{
	free(p);
	return NULL;
}
