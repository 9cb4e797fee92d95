/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Golden tests of the compat engine's planner (lib/compat.c), on the same
 * fixtures as the mount-api planner's (tests/unit/test-plan.c):
 * tests/data/plan/NAME.mountinfo is the image, NAME.host (optional) the
 * restorer's own table. The printed plan (or "error: MESSAGE") must equal
 * NAME[-VARIANT].compat.expected; MNTCR_UPDATE_GOLDEN=1 rewrites them.
 * Then properties every compat plan must have, whatever the fixture.
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

static struct mntcr_restore_opts compat_opts(const struct mntcr_restore_opts *opts)
{
	struct mntcr_restore_opts o = opts ? *opts : (struct mntcr_restore_opts){ 0 };

	o.engine = MNTCR_ENGINE_COMPAT;
	return o;
}

static void golden(const char *name, const char *variant, const struct mntcr_restore_opts *opts)
{
	struct mntcr_restore_opts o = compat_opts(opts);
	char suffix[64];

	snprintf(suffix, sizeof(suffix), "%s.compat.expected", variant);
	golden_check(name, suffix, &o);
}

TEST(seed_overmount) { golden("seed-overmount", "", NULL); }

TEST(stacked_and_file_binds) { golden("stacked", "", NULL); }

TEST(propagation) { golden("propagation", "", NULL); }

TEST(external) { golden("external", "", NULL); }

TEST(external_mapped)
{
	struct mntcr_external ext[] = {
		{ .key = "/etc/resolv.conf", .path = "/run/resolv.conf" },
		{ .key = "0:22", .path = "/sys" },
	};
	struct mntcr_restore_opts o = { .root = "/srv/rootfs", .externals = ext, .n_externals = 2 };

	golden("external", "-mapped", &o);
}

TEST(unsupported_fstype) { golden("unsupported", "", NULL); }

TEST(external_master)
{
	struct mntcr_restore_opts o = { .external_master_private = true };

	golden("external-master", "", NULL);
	golden("external-master", "-private", &o);
}

/* Topologies mount(2) cannot build: the compat engine refuses them before mounting anything. */
static char *plan_inline(const char *mountinfo)
{
	FILE *in = fmemopen((void *)mountinfo, strlen(mountinfo), "r");
	struct mntcr_restore_opts o = compat_opts(NULL);
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	struct mntcr_tree *t = NULL;
	struct mntcr_plan *plan = NULL;
	char *msg = NULL;

	CHECK(in != NULL);
	if (!in)
		return NULL;
	CHECK(mntcr_tree_parse_mountinfo(in, &t) == 0);
	fclose(in);
	if (!t)
		return NULL;
	if (mntcr_plan_build(t, NULL, &o, &plan, &rep) < 0)
		msg = strdup(rep.msg ? rep.msg : "?");
	mntcr_report_clear(&rep);
	mntcr_plan_free(plan);
	mntcr_tree_free(t);
	return msg;
}

/* The printed compat plan of a mountinfo text, NULL if refused. */
static char *plan_inline_text(const char *mountinfo)
{
	FILE *in = fmemopen((void *)mountinfo, strlen(mountinfo), "r");
	struct mntcr_restore_opts o = compat_opts(NULL);
	struct mntcr_tree *t = NULL;
	struct mntcr_plan *plan = NULL;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (!in)
		return NULL;
	CHECK(mntcr_tree_parse_mountinfo(in, &t) == 0);
	fclose(in);
	if (!t)
		return NULL;
	if (mntcr_plan_build(t, NULL, &o, &plan, NULL) == 0) {
		f = open_memstream(&out, &len);
		CHECK(mntcr_plan_print(plan, f) == 0);
		fclose(f);
	}
	mntcr_plan_free(plan);
	mntcr_tree_free(t);
	return out;
}

TEST(refuses_shared_root_with_peers)
{
	char *msg = plan_inline("20 1 0:40 / / rw,relatime shared:1 - tmpfs root rw\n"
				"21 20 0:40 /a /b rw,relatime shared:1 - tmpfs root rw\n");

	CHECK(msg != NULL);
	if (msg)
		CHECK(strstr(msg, "pivot_root") != NULL);
	free(msg);
}

/*
 * A and B are peers; X under A at /x shows in B (its root contains /x),
 * but B has nothing there: in the original, B was made after X. The plan
 * must bind B only after X, or the kernel would copy X into B.
 */
TEST(late_peer_after_the_mount_it_lacks)
{
	const char *mi = "20 1 0:40 / / rw,relatime - tmpfs root rw\n"
			 "21 20 0:41 / /a rw,relatime shared:1 - tmpfs A rw\n"
			 "22 20 0:41 / /b rw,relatime shared:1 - tmpfs A rw\n"
			 "23 21 0:42 / /a/x rw,relatime shared:2 - tmpfs X rw\n";
	char *text = plan_inline_text(mi);
	const char *x, *b;

	CHECK(text != NULL);
	if (!text)
		return;
	x = strstr(text, "-> #21:/x  [mount 23");
	b = strstr(text, "-> #20:/b  [mount 22");
	CHECK(x != NULL && b != NULL);
	if (x && b)
		CHECK(x < b);
	free(text);
}

/*
 * The same both ways: X under A lacks a copy in B, Y under B lacks a copy
 * in A. Each peer must come after the other's child: no order exists.
 */
TEST(refuses_copies_the_image_lacks_both_ways)
{
	char *msg = plan_inline("20 1 0:40 / / rw,relatime - tmpfs root rw\n"
				"21 20 0:41 / /a rw,relatime shared:1 - tmpfs A rw\n"
				"22 20 0:41 / /b rw,relatime shared:1 - tmpfs A rw\n"
				"23 21 0:42 / /a/x rw,relatime shared:2 - tmpfs X rw\n"
				"24 22 0:43 / /b/y rw,relatime shared:3 - tmpfs Y rw\n");

	CHECK(msg != NULL);
	if (msg)
		CHECK(strstr(msg, "compat engine") != NULL &&
		      strstr(msg, "mount-api engine") != NULL);
	free(msg);
}

TEST(refuses_two_mounts_on_one_place)
{
	char *msg = plan_inline("20 1 0:40 / / rw,relatime - tmpfs root rw\n"
				"21 20 0:41 / /a rw,relatime - tmpfs A rw\n"
				"22 20 0:42 / /a rw,relatime - tmpfs B rw\n");

	CHECK(msg != NULL);
	if (msg)
		CHECK(strstr(msg, "both on /a") != NULL);
	free(msg);
}

/*
 * Whatever the fixture: the prologue comes first, every mount of the image
 * is bound exactly once or comes from propagation, templates only ever
 * serve as sources, and the pivot ends the mounting in the yard.
 */
TEST(plan_shape)
{
	const char *names[] = { "seed-overmount", "stacked", "propagation" };

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		struct mntcr_tree *t = golden_load(names[k]);
		struct mntcr_restore_opts o = compat_opts(NULL);
		struct mntcr_plan *p = NULL;
		char *text = NULL;
		size_t len = 0;
		FILE *f;

		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK(mntcr_plan_build(t, NULL, &o, &p, NULL) == 0);
		if (!p) {
			mntcr_tree_free(t);
			continue;
		}
		f = open_memstream(&text, &len);
		CHECK(mntcr_plan_print(p, f) == 0);
		fclose(f);
		CHECK(strncmp(text, "   0 namespace   unshare", 24) == 0);
		CHECK(strstr(text, "yard        tmpfs on the first existing directory of:") !=
		      NULL);
		/* new API syscalls never appear: the plan speaks of mount(2) operations only */
		CHECK(strstr(text, "fsmount") == NULL && strstr(text, "clone") == NULL &&
		      strstr(text, "attach") == NULL && strstr(text, "set-group") == NULL);
		/* nothing is bound into a template: a template is only ever a source */
		CHECK(strstr(text, "-> @t/") == NULL);
		/* the pivot is the last mount-changing step but for the root's own propagation */
		{
			const char *pv = strstr(text, " pivot       ");
			CHECK(pv != NULL);
			if (pv)
				CHECK(strstr(pv, " bind ") == NULL &&
				      strstr(pv, " move ") == NULL &&
				      strstr(pv, " remount ") == NULL);
		}
		free(text);
		mntcr_plan_free(p);
		mntcr_tree_free(t);
	}
}

TAP_MAIN
