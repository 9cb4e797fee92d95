/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Planner golden files, shared by test-plan.c (the mount-api engine) and
 * test-compat.c: tests/data/plan/NAME.mountinfo is the image's mount table
 * (NAME.ns1.mountinfo, NAME.ns2.mountinfo... more namespaces), NAME.host
 * (optional) the restorer's; the superblocks the host has are external.
 * The printed plan (or "error: MESSAGE") must equal the expected file;
 * MNTCR_UPDATE_GOLDEN=1 rewrites it.
 */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mntcr/mntcr.h"
#include "plan.h"
#include "tap.h"
#include "tree.h"

static inline struct mntcr_tree *golden_load_one(const char *path)
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

/* The image of fixture NAME: NAME.mountinfo, and NAME.nsK.mountinfo for more namespaces. */
static inline struct mntcr_tree *golden_load(const char *name)
{
	struct mntcr_tree *parts[8] = { NULL }, *t = NULL;
	char path[600];
	size_t n = 0;

	for (; n < 8; n++) {
		if (n == 0)
			snprintf(path, sizeof(path), "%s/plan/%s.mountinfo", TEST_DATA, name);
		else
			snprintf(path, sizeof(path), "%s/plan/%s.ns%zu.mountinfo", TEST_DATA, name, n);
		parts[n] = golden_load_one(path);
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

static inline char *golden_read_file(const char *path)
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

/* The plan of fixture NAME with opts, as printed, or "error: MESSAGE". */
static inline char *golden_plan(const char *name, const struct mntcr_restore_opts *opts)
{
	char path[512];
	struct mntcr_tree *image = golden_load(name), *host;
	struct mntcr_plan *plan = NULL;
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	char *out = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/plan/%s.host", TEST_DATA, name);
	host = golden_load_one(path);
	if (!image) {
		mntcr_tree_free(host);
		return NULL;
	}
	if (host)
		CHECK(tree_classify(image, host) == 0);
	f = open_memstream(&out, &len);
	r = mntcr_plan_build(image, host, opts, &plan, &rep);
	if (r < 0)
		fprintf(f, "error: %s\n", rep.msg ? rep.msg : strerror(-r));
	else {
		CHECK(!opts || opts->engine == MNTCR_ENGINE_NONE || plan->engine == opts->engine);
		CHECK(mntcr_plan_print(plan, f) == 0);
	}
	fclose(f);
	mntcr_report_clear(&rep);
	mntcr_plan_free(plan);
	mntcr_tree_free(image);
	mntcr_tree_free(host);
	return out;
}

/* Compare (or with MNTCR_UPDATE_GOLDEN=1 write) tests/data/plan/NAME + SUFFIX. */
static inline void golden_check(const char *name, const char *suffix, const struct mntcr_restore_opts *opts)
{
	char path[512];
	char *got = golden_plan(name, opts), *want;

	CHECK(got != NULL);
	if (!got)
		return;
	snprintf(path, sizeof(path), "%s/plan/%s%s", TEST_DATA, name, suffix);
	if (getenv("MNTCR_UPDATE_GOLDEN")) {
		FILE *f = fopen(path, "we");
		CHECK(f != NULL);
		if (f) {
			fputs(got, f);
			fclose(f);
		}
	}
	want = golden_read_file(path);
	if (!want || strcmp(got, want) != 0) {
		printf("# %s: plan differs from %s\n# got:\n%s", name, path, got);
		CHECK(!"golden plan matches");
	}
	free(got);
	free(want);
}
