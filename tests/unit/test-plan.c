/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Planner golden tests: tests/data/plan/NAME.mountinfo is the image's mount
 * table, NAME.host (optional) the restorer's; the superblocks the host has
 * are external. The printed plan (or "error: MESSAGE") must equal
 * NAME.expected. MNTCR_UPDATE_GOLDEN=1 rewrites the expected files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mntcr/mntcr.h"
#include "plan.h"
#include "tap.h"
#include "tree.h"

static struct mntcr_tree *load_one(const char *path)
{
	struct mntcr_tree *t = NULL;
	FILE *f = fopen(path, "re");

	if (!f)
		return NULL;
	if (mntcr_tree_parse_mountinfo(f, &t) < 0)
		t = NULL;
	fclose(f);
	return t;
}

/* BASE.mountinfo, and BASE.ns1.mountinfo, BASE.ns2.mountinfo... for more namespaces. */
static struct mntcr_tree *load(const char *base)
{
	struct mntcr_tree *parts[8] = { NULL }, *t = NULL;
	char path[600];
	size_t n = 0;

	for (; n < 8; n++) {
		if (n == 0)
			snprintf(path, sizeof(path), "%s.mountinfo", base);
		else
			snprintf(path, sizeof(path), "%s.ns%zu.mountinfo", base, n);
		parts[n] = load_one(path);
		if (!parts[n])
			break;
	}
	if (n == 1)
		return parts[0];
	if (n > 1 && (tree_merge(parts, n, &t) < 0 || tree_index(t) < 0))
		t = mntcr_tree_free(t);
	for (size_t k = 0; k < n; k++)
		mntcr_tree_free(parts[k]);
	return t;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0;

	if (!f)
		return NULL;
	if (getdelim(&buf, &n, 0, f) < 0) {
		free(buf);
		buf = strdup("");
	}
	fclose(f);
	return buf;
}

static char *plan_text(const char *name, const struct mntcr_restore_opts *opts)
{
	char path[512];
	struct mntcr_tree *image, *host;
	struct mntcr_plan *plan = NULL;
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	char *out = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/plan/%s", TEST_DATA, name);
	image = load(path);
	snprintf(path, sizeof(path), "%s/plan/%s.host", TEST_DATA, name);
	host = load_one(path);
	if (!image)
		return NULL;
	if (host)
		CHECK(tree_classify(image, host) == 0);

	f = open_memstream(&out, &len);
	r = mntcr_plan_build(image, host, opts, &plan, &rep);
	if (r < 0)
		fprintf(f, "error: %s\n", rep.msg ? rep.msg : strerror(-r));
	else
		CHECK(mntcr_plan_print(plan, f) == 0);
	fclose(f);
	mntcr_report_clear(&rep);
	mntcr_plan_free(plan);
	mntcr_tree_free(image);
	mntcr_tree_free(host);
	return out;
}

static void golden(const char *name, const char *variant, const struct mntcr_restore_opts *opts)
{
	char path[512];
	char *got = plan_text(name, opts), *want;

	CHECK(got != NULL);
	if (!got)
		return;
	snprintf(path, sizeof(path), "%s/plan/%s%s.expected", TEST_DATA, name, variant);
	if (getenv("MNTCR_UPDATE_GOLDEN")) {
		FILE *f = fopen(path, "we");
		CHECK(f != NULL);
		if (f) {
			fputs(got, f);
			fclose(f);
		}
	}
	want = read_file(path);
	if (!want || strcmp(got, want) != 0) {
		printf("# %s%s: plan differs from %s\n# got:\n%s", name, variant, path, got);
		CHECK(!"golden plan matches");
	}
	free(got);
	free(want);
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
		char path[512];
		struct mntcr_tree *t;
		struct mntcr_plan *p = NULL;
		bool *is_template;

		snprintf(path, sizeof(path), "%s/plan/%s", TEST_DATA, names[k]);
		t = load(path);
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
