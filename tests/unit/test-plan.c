/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Planner golden tests (tests/unit/golden.h): the printed plan of fixture
 * NAME must equal tests/data/plan/NAME.expected. MNTCR_UPDATE_GOLDEN=1
 * rewrites the expected files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "internal.h"
#include "mntcr/mntcr.h"
#include "plan.h"
#include "tap.h"
#include "tree.h"

static void golden(const char *name, const char *variant, const struct mntcr_restore_opts *opts)
{
	char suffix[64];

	snprintf(suffix, sizeof(suffix), "%s.expected", variant);
	golden_check(name, suffix, opts);
}

/*
 * Two namespaces: a child's copy with a group spanning both, a slave of the
 * parent's group, its own tmpfs; each tree becomes its namespace's root.
 */
TEST(two_namespaces)
{
	struct mntcr_restore_opts compat = { .engine = MNTCR_ENGINE_COMPAT };

	golden("two-ns", "", NULL);
	golden("two-ns", ".compat", &compat);
}

TEST(seed_overmount)
{
	golden("seed-overmount", "", NULL);
}

TEST(stacked_and_file_binds)
{
	golden("stacked", "", NULL);
}

TEST(propagation)
{
	golden("propagation", "", NULL);
}

/*
 * Mountpoints and bind roots several directories deep in filesystems of
 * ours without content: each parent directory is made once, before what
 * lies in it.
 */
TEST(nested_paths)
{
	golden("nested", "", NULL);
}

TEST(external)
{
	golden("external", "", NULL);
}

TEST(external_mapped)
{
	struct mntcr_external ext[] = {
		{ .key = "/etc/resolv.conf", .path = "/run/resolv.conf" },
		{ .key = "0:22", .path = "/sys" },
	};
	struct mntcr_restore_opts o = { .root = "/srv/rootfs", .externals = ext, .n_externals = 2 };

	golden("external", "-mapped", &o);
}

TEST(unsupported_fstype)
{
	golden("unsupported", "", NULL);
}

TEST(external_master)
{
	struct mntcr_restore_opts o = { .external_master_private = true };

	golden("external-master", "", NULL);
	golden("external-master", "-private", &o);
}

/* The planner never makes a clone per mount from a mount that has children. */
TEST(clones_come_from_templates)
{
	const char *names[] = { "seed-overmount", "stacked", "propagation", "two-ns" };

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		struct mntcr_tree *t;
		struct mntcr_plan *p = NULL;
		bool *is_template;

		t = golden_load(names[k]);
		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK(mntcr_plan_build(t, NULL, NULL, &p, NULL) == 0);
		if (!p) {
			mntcr_tree_free(t);
			continue;
		}
		is_template = calloc(p->n_slots + 1, sizeof(bool));
		bool attached = false;
		for (size_t i = 0; i < p->n_ops; i++) {
			const struct plan_op *op = &p->ops[i];

			if (op->type == OP_SB_CREATE || op->type == OP_TEMPLATE_BIND)
				is_template[op->slot] = true;
			/* every clone is of a childless template, made before anything is attached */
			if (op->type == OP_CLONE) {
				CHECK(is_template[op->src]);
				CHECK(!attached);
			}
			if (op->type == OP_ATTACH)
				attached = true;
		}
		free(is_template);
		mntcr_plan_free(p);
		mntcr_tree_free(t);
	}
}

TAP_MAIN
