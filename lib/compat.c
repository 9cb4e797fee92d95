/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The compat engine: restore with mount(2), umount2(2) and pivot_root(2)
 * only, for kernels without the new mount API (docs/engines.md).
 */
#include "mntcr/mntcr.h"
#include "plan.h"
#include "tree.h"

int compat_plan_build(struct mntcr_plan *p, const struct mntcr_tree *host,
		      const struct mntcr_restore_opts *opts, struct mntcr_report *report)
{
	report_set(report, "plan", MNTCR_NONE, 0, NULL, NULL, -EOPNOTSUPP,
		   "The compat restore engine is not available yet");
	return -EOPNOTSUPP;
}

int compat_plan_print(const struct mntcr_plan *p, FILE *f)
{
	return -EOPNOTSUPP;
}

int compat_execute(const struct mntcr_plan *p, struct mntcr_report *report)
{
	return -EOPNOTSUPP;
}

void compat_plan_free(struct compat_plan *cp)
{
}
