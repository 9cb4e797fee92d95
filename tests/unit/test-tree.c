/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The tree index: covered_by / cover / hidden, attach order of children,
 * superblock grouping by device, independence from the order of the input,
 * and a 50,000-mount table as a sanity check against quadratic behaviour.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mntcr/mntcr.h"
#include "tap.h"
#include "tree.h"
#include "util.h"

TAP_MAIN

static int parse_string(const char *text, struct mntcr_tree **ret)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int r;

	if (!f)
		return -errno;
	r = mntcr_tree_parse_mountinfo(f, ret);
	fclose(f);
	return r;
}

static struct mntcr_tree *parse(const char *text)
{
	struct mntcr_tree *t = NULL;
	int r = parse_string(text, &t);

	if (r < 0) {
		printf("#   parse failed: %s\n", strerror(-r));
		tap_failed_checks++;
		return NULL;
	}
	return t;
}

static const struct mntcr_mount *by_id(const struct mntcr_tree *t, uint64_t id)
{
	size_t i;

	return tree_find(t, id, &i) ? &t->mounts[i] : NULL;
}

static uint64_t id_of(const struct mntcr_tree *t, size_t idx)
{
	return idx == IDX_NONE ? 0 : t->mounts[idx].id;
}

/* The id of the mount covering `id`, 0 if none. */
static uint64_t cov(const struct mntcr_tree *t, uint64_t id)
{
	const struct mntcr_mount *m = by_id(t, id);

	return m ? id_of(t, m->covered_by) : (uint64_t)-1;
}

static int kind(const struct mntcr_tree *t, uint64_t id)
{
	const struct mntcr_mount *m = by_id(t, id);

	return m ? (int)mntcr_mount_cover(m) : -1;
}

static int hidden(const struct mntcr_tree *t, uint64_t id)
{
	const struct mntcr_mount *m = by_id(t, id);

	return m ? mntcr_mount_hidden(m) : -1;
}

/* Children of `id` in attach order, as "a b c" of ids. */
static const char *children(const struct mntcr_tree *t, uint64_t id)
{
	static char buf[4096];
	const struct mntcr_mount *m = by_id(t, id);
	size_t len = 0;

	buf[0] = 0;
	if (!m)
		return "(none)";
	for (size_t i = 0; i < mntcr_mount_n_children(m); i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%" PRIu64, i ? " " : "",
					id_of(t, mntcr_mount_child(t, m, i)));
	return buf;
}

/*
 * Everything tree_index derives, keyed by mount id, as one string: two
 * tables with the same lines in another order must give the same string.
 */
static char *describe(const struct mntcr_tree *t)
{
	struct strbuf b = { 0 };
	size_t *order = malloc(t->n_mounts * sizeof(size_t));

	if (!order)
		return NULL;
	for (size_t i = 0; i < t->n_mounts; i++)
		order[i] = i;
	/* by id: insertion sort is fine for the small tables used here */
	for (size_t i = 1; i < t->n_mounts; i++)
		for (size_t j = i; j > 0 && t->mounts[order[j - 1]].id > t->mounts[order[j]].id;
		     j--) {
			size_t x = order[j];
			order[j] = order[j - 1];
			order[j - 1] = x;
		}
	strbuf_printf(&b, "root=%" PRIu64 "\n", id_of(t, t->root));
	for (size_t k = 0; k < t->n_mounts; k++) {
		const struct mntcr_mount *m = &t->mounts[order[k]];
		const struct mntcr_sb *sb = &t->sbs[m->sb];

		strbuf_printf(
			&b,
			"%" PRIu64 " parent=%" PRIu64 " cover=%d by=%" PRIu64 " hidden=%d kids=[",
			m->id, id_of(t, m->parent), m->cover, id_of(t, m->covered_by), m->hidden);
		for (size_t i = 0; i < m->n_children; i++)
			strbuf_printf(&b, " %" PRIu64, id_of(t, tree_child_idx(t, m, i)));
		/* the superblock, named by its first mount in id order */
		strbuf_printf(&b, " ] sb=%u:%u mounts=%zu\n", sb->dev_major, sb->dev_minor,
			      sb->n_mounts);
	}
	free(order);
	return strbuf_detach(&b);
}

/*
 * The same tree with its mountpoints relative to their parents', except
 * every `every`-th (and the roots), which stay absolute: image version 5
 * and the mountinfo reader's compacted chunks give such trees.
 */
static struct mntcr_tree *relative_copy(const struct mntcr_tree *t, size_t every)
{
	struct mntcr_tree *u = NULL;
	int r = tree_new(&u);

	for (size_t i = 0; r == 0 && i < t->n_mounts; i++) {
		const struct mntcr_mount *a = &t->mounts[i];
		bool abs = a->parent == IDX_NONE || (every && i % every == 0);
		struct mntcr_mount m = {
			.id = a->id,
			.parent_id = a->parent_id,
			.dev_major = a->dev_major,
			.dev_minor = a->dev_minor,
			.root = strdup(a->root),
			.point = strdup(abs ? a->point : mount_relpath(t, a)),
			.fstype = strdup(a->fstype),
			.attr = a->attr,
		};

		r = tree_add_mount(u, &m);
	}
	if (r == 0)
		r = tree_index(u);
	if (r < 0) {
		printf("#   the relative copy: %s\n", strerror(-r));
		tap_failed_checks++;
		u = mntcr_tree_free(u);
	}
	return u;
}

/* t (absolute mountpoints) and relative copies of it: the same index, the same paths. */
static void check_relative(const struct mntcr_tree *t)
{
	_cleanup_free_ char *want = describe(t);
	size_t bad = 0;

	for (size_t every = 0; every < 4; every++) {
		struct mntcr_tree *u = relative_copy(t, every);
		_cleanup_free_ char *got = NULL;
		struct strbuf buf = { 0 };

		if (!u)
			continue;
		got = describe(u);
		CHECK_STREQ(got, want);
		for (size_t i = 0; i < t->n_mounts; i++) {
			const char *p = mount_path(u, i, &buf);

			if (!p || !streq(p, t->mounts[i].point) || u->mounts[i].path_len != strlen(p) ||
			    !streq(mount_relpath(u, &u->mounts[i]), mount_relpath(t, &t->mounts[i])))
				bad++;
		}
		/* all at once, and through the public getters */
		CHECK_INT(tree_abs_paths(u), 0);
		for (size_t i = 0; i < t->n_mounts; i++)
			if (!streq(mntcr_mount_mountpoint(mntcr_tree_mount(u, i)), t->mounts[i].point))
				bad++;
		strbuf_release(&buf);
		mntcr_tree_free(u);
	}
	CHECK_INT(bad, 0);
}

/* A small deterministic PRNG (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* Split text into lines, shuffle them, join again. */
static char *shuffle_lines(const char *text)
{
	char *copy = strdup(text), *save = NULL, *line, **lines = NULL, *out;
	size_t n = 0, cap = 0, len = strlen(text) + 2;

	if (!copy)
		return NULL;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (GROW(lines, cap, n + 1) < 0)
			abort();
		lines[n++] = line;
	}
	for (size_t i = n; i > 1; i--) {
		size_t j = rng() % i;
		char *x = lines[i - 1];
		lines[i - 1] = lines[j];
		lines[j] = x;
	}
	out = calloc(1, len);
	for (size_t i = 0; out && i < n; i++) {
		strcat(out, lines[i]);
		strcat(out, "\n");
	}
	free(lines);
	free(copy);
	return out;
}

/* Parse text, then 30 shuffles of it, and require the same derived index each time. */
static void check_order_independent(const char *text)
{
	struct mntcr_tree *t = parse(text);
	char *want;

	if (!t)
		return;
	want = describe(t);
	mntcr_tree_free(t);
	for (int round = 0; round < 30; round++) {
		char *shuffled = shuffle_lines(text), *got;

		t = parse(shuffled);
		if (!t) {
			printf("#   shuffled input:\n%s", shuffled);
			free(shuffled);
			break;
		}
		got = describe(t);
		if (!streq(got, want)) {
			printf("#   order-dependent index; input:\n%s#   want:\n%s#   got:\n%s",
			       shuffled, want, got);
			tap_failed_checks++;
			round = 30;
		}
		free(got);
		free(shuffled);
		mntcr_tree_free(t);
	}
	free(want);
}

/* ---------------------------------------------------------------------------------------------- */

/* mkdir -p d/c/x/y; mount C at d/c/x/y; mount S at d/c: S hides C. Two mounts on one path, d/e. */
static const char sibling_table[] = "1 0 254:0 / / rw - ext4 /dev/vda rw\n"
				    "2 1 0:40 / /d rw - tmpfs base rw\n"
				    "3 2 0:41 / /d/c/x/y rw - tmpfs C rw\n"
				    "4 2 0:42 / /d/c rw - tmpfs S rw\n"
				    "5 2 0:43 / /d/e rw - tmpfs E1 rw\n"
				    "6 2 0:44 / /d/e rw - tmpfs E2 rw\n"
				    "7 2 0:45 / /d/z rw - tmpfs Z rw\n"
				    "8 3 0:46 / /d/c/x/y/q rw - tmpfs Q rw\n"
				    "9 2 0:47 / /d/cc rw - tmpfs CC rw\n";

TEST(sibling_overmount)
{
	struct mntcr_tree *t = parse(sibling_table);

	if (!t)
		return;
	CHECK_INT(kind(t, 3), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 3), 4);
	CHECK_INT(hidden(t, 3), 1);
	CHECK_INT(kind(t, 4), MNTCR_COVER_NONE);
	CHECK_INT(cov(t, 4), 0);
	CHECK_INT(hidden(t, 4), 0);
	/* two siblings on one path: the later one covers the earlier */
	CHECK_INT(kind(t, 5), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 5), 6);
	CHECK_INT(hidden(t, 5), 1);
	CHECK_INT(hidden(t, 6), 0);
	/* under a hidden mount: hidden, but nothing covers it directly */
	CHECK_INT(kind(t, 8), MNTCR_COVER_NONE);
	CHECK_INT(cov(t, 8), 0);
	CHECK_INT(hidden(t, 8), 1);
	/* /d/cc shares a string prefix with /d/c but is not below it */
	CHECK_INT(kind(t, 9), MNTCR_COVER_NONE);
	CHECK_INT(hidden(t, 9), 0);
	CHECK_INT(hidden(t, 7), 0);
	CHECK_INT(hidden(t, 1), 0);
	CHECK_INT(hidden(t, 2), 0);
	mntcr_tree_free(t);
	check_order_independent(sibling_table);
}

TEST(attach_order)
{
	struct mntcr_tree *t = parse(sibling_table);

	if (!t)
		return;
	/* deeper first; on one depth by path; on one path the older (covered) first */
	CHECK_STREQ(children(t, 2), "3 4 9 5 6 7");
	CHECK_STREQ(children(t, 1), "2");
	CHECK_STREQ(children(t, 3), "8");
	/* every covered child comes before its coverer */
	for (size_t i = 0; i < t->n_mounts; i++) {
		const struct mntcr_mount *m = &t->mounts[i], *p;
		size_t pos_m = SIZE_MAX, pos_c = SIZE_MAX;

		if (m->cover != COVER_SIBLING)
			continue;
		p = &t->mounts[m->parent];
		for (size_t k = 0; k < p->n_children; k++) {
			if (tree_child_idx(t, p, k) == i)
				pos_m = k;
			if (tree_child_idx(t, p, k) == m->covered_by)
				pos_c = k;
		}
		CHECK(pos_m < pos_c);
	}
	mntcr_tree_free(t);
}

static const char stack_table[] = "1 0 254:0 / / rw - ext4 /dev/vda rw\n"
				  "2 1 0:40 / /d rw - tmpfs base rw\n"
				  "3 2 0:41 / /d/s rw - tmpfs X1 rw\n"
				  "4 3 0:42 / /d/s rw - tmpfs X2 rw\n"
				  "5 4 0:43 / /d/s rw - tmpfs X3 rw\n"
				  "6 3 0:44 / /d/s/in1 rw - tmpfs under1 rw\n"
				  "7 4 0:45 / /d/s/in2 rw - tmpfs under2 rw\n"
				  "8 5 0:46 / /d/s/top rw - tmpfs ontop rw\n"
				  "9 6 0:47 / /d/s/in1/deep rw - tmpfs deep rw\n";

TEST(relative_mountpoints)
{
	static const char *const tables[] = { sibling_table, stack_table };
	static const struct {
		const char *point; /* of mount 3, child of mount 2 at /d */
		int want;
	} cases[] = {
		{ "x", 0 },	      { "", 0 },	  { "x/y", 0 },	    { "/d/x", 0 },  { "/d", 0 },
		{ "/e/x", -EBADMSG }, { "/dx", -EBADMSG }, { "x/../y", -EBADMSG }, { "./x", -EBADMSG },
		{ "x/", -EBADMSG },   { "x//y", -EBADMSG }, { "..", -EBADMSG },
	};

	CHECK(relpath_is_normalized("") && relpath_is_normalized("a") && relpath_is_normalized("a/b.c/..d"));
	CHECK(!relpath_is_normalized("/a") && !relpath_is_normalized("a/") && !relpath_is_normalized("a//b") &&
	      !relpath_is_normalized(".") && !relpath_is_normalized("a/./b") && !relpath_is_normalized("a/.."));
	for (size_t k = 0; k < ARRAY_SIZE(tables); k++) {
		struct mntcr_tree *t = parse(tables[k]);

		if (t)
			check_relative(t);
		mntcr_tree_free(t);
	}
	/* a child of a relative parent given by an absolute path, checked against the parent's path */
	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		const char *pts[] = { "/", "d", cases[c].point };
		struct mntcr_tree *t = NULL;
		int r = tree_new(&t);

		for (size_t i = 0; r == 0 && i < 3; i++) {
			struct mntcr_mount m = { .id = i + 1, .parent_id = i, .dev_minor = (uint32_t)i,
						 .root = strdup("/"), .point = strdup(pts[i]),
						 .fstype = strdup("tmpfs") };
			r = tree_add_mount(t, &m);
		}
		if (r == 0)
			r = tree_index(t);
		if (r != cases[c].want)
			printf("#   mountpoint %s\n", cases[c].point);
		CHECK_INT(r, cases[c].want);
		mntcr_tree_free(t);
	}
	/* a root mount given by a relative path is not on "/" */
	{
		struct mntcr_tree *t = NULL;
		struct mntcr_mount m = { .id = 1, .root = strdup("/"), .point = strdup(""), .fstype = strdup("ext4") };

		CHECK_INT(tree_new(&t), 0);
		CHECK_INT(tree_add_mount(t, &m), 0);
		CHECK_INT(tree_index(t), -EBADMSG);
		mntcr_tree_free(t);
	}
}

TEST(stack_of_three)
{
	struct mntcr_tree *t = parse(stack_table);

	if (!t)
		return;
	/* bottom and middle: covered on their root by the next layer, hidden */
	CHECK_INT(kind(t, 3), MNTCR_COVER_ROOT);
	CHECK_INT(cov(t, 3), 4);
	CHECK_INT(hidden(t, 3), 1);
	CHECK_INT(kind(t, 4), MNTCR_COVER_ROOT);
	CHECK_INT(cov(t, 4), 5);
	CHECK_INT(hidden(t, 4), 1);
	CHECK_INT(kind(t, 5), MNTCR_COVER_NONE);
	CHECK_INT(hidden(t, 5), 0);
	/* children of a stacked-over mount: covered by the next layer as a sibling */
	CHECK_INT(kind(t, 6), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 6), 4);
	CHECK_INT(hidden(t, 6), 1);
	CHECK_INT(kind(t, 7), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 7), 5);
	CHECK_INT(hidden(t, 7), 1);
	/* a child of the top is visible; one under a hidden child is hidden, not covered */
	CHECK_INT(hidden(t, 8), 0);
	CHECK_INT(kind(t, 8), MNTCR_COVER_NONE);
	CHECK_INT(hidden(t, 9), 1);
	CHECK_INT(kind(t, 9), MNTCR_COVER_NONE);
	CHECK_INT(cov(t, 9), 0);
	/* the stacked child comes after the others (same-path children are attached last) */
	CHECK_STREQ(children(t, 3), "6 4");
	CHECK_STREQ(children(t, 4), "7 5");
	mntcr_tree_free(t);
	check_order_independent(stack_table);
}

TEST(kernel_facts_2a)
{
	/* L at D/a, B at D/a/b, T over D/a: T's parent is L */
	static const char table[] = "43 1 254:0 / / rw - ext4 /dev/vda rw\n"
				    "63 43 0:39 / /D rw - tmpfs base rw\n"
				    "64 63 0:40 / /D/a rw - tmpfs L rw\n"
				    "65 64 0:41 / /D/a/b rw - tmpfs B rw\n"
				    "66 64 0:42 / /D/a rw - tmpfs T rw\n"
				    "67 65 0:43 / /D/a/b/c rw - tmpfs BC rw\n";
	struct mntcr_tree *t = parse(table);

	if (!t)
		return;
	CHECK_INT(kind(t, 64), MNTCR_COVER_ROOT);
	CHECK_INT(cov(t, 64), 66);
	CHECK_INT(kind(t, 65), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 65), 66);
	CHECK_INT(kind(t, 66), MNTCR_COVER_NONE);
	CHECK_INT(kind(t, 67), MNTCR_COVER_NONE);
	CHECK_INT(hidden(t, 64), 1);
	CHECK_INT(hidden(t, 65), 1);
	CHECK_INT(hidden(t, 66), 0);
	CHECK_INT(hidden(t, 67), 1);
	CHECK_STREQ(children(t, 64), "65 66");
	CHECK_STREQ(mount_relpath(t, by_id(t, 66)), "");
	CHECK_STREQ(mount_relpath(t, by_id(t, 65)), "b");
	CHECK_STREQ(mount_relpath(t, by_id(t, 67)), "c");
	mntcr_tree_free(t);
	check_order_independent(table);
}

TEST(stack_covered_by_sibling)
{
	/*
	 * mkdir -p d/x/y; mount X at d/x/y; mount W at d/x/y/w; mount Y over d/x/y;
	 * mount S at d/x. S hides the whole stack. X is covered by S (the sibling
	 * wins over the next layer, which is X's child anyway), Y is hidden under
	 * X, W is covered by Y.
	 */
	static const char table[] = "1 0 254:0 / / rw - ext4 /dev/vda rw\n"
				    "2 1 0:40 / /d rw - tmpfs base rw\n"
				    "3 2 0:41 / /d/x/y rw - tmpfs X rw\n"
				    "4 3 0:42 / /d/x/y/w rw - tmpfs W rw\n"
				    "5 3 0:43 / /d/x/y rw - tmpfs Y rw\n"
				    "6 2 0:44 / /d/x rw - tmpfs S rw\n"
				    "7 5 0:45 / /d/x/y/v rw - tmpfs V rw\n";
	struct mntcr_tree *t = parse(table);

	if (!t)
		return;
	CHECK_INT(kind(t, 3), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 3), 6);
	CHECK_INT(kind(t, 4), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 4), 5);
	CHECK_INT(kind(t, 5), MNTCR_COVER_NONE);
	CHECK_INT(kind(t, 6), MNTCR_COVER_NONE);
	CHECK_INT(kind(t, 7), MNTCR_COVER_NONE);
	CHECK_INT(hidden(t, 3), 1);
	CHECK_INT(hidden(t, 4), 1);
	CHECK_INT(hidden(t, 5), 1);
	CHECK_INT(hidden(t, 7), 1);
	CHECK_INT(hidden(t, 6), 0);
	CHECK_STREQ(children(t, 2), "3 6");
	CHECK_STREQ(children(t, 3), "4 5");
	mntcr_tree_free(t);
	check_order_independent(table);
}

TEST(stack_on_namespace_root)
{
	/* a mount over / (as after pivot_root): the old root and its children are hidden */
	static const char table[] = "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
				    "22 27 0:21 / /proc rw - proc proc rw\n"
				    "50 27 0:50 / / rw - tmpfs newroot rw\n"
				    "51 50 0:51 / /proc rw - proc proc rw\n";
	struct mntcr_tree *t = parse(table);

	if (!t)
		return;
	CHECK_INT(id_of(t, t->root), 27);
	CHECK_INT(kind(t, 27), MNTCR_COVER_ROOT);
	CHECK_INT(cov(t, 27), 50);
	CHECK_INT(kind(t, 22), MNTCR_COVER_SIBLING);
	CHECK_INT(cov(t, 22), 50);
	CHECK_INT(hidden(t, 27), 1);
	CHECK_INT(hidden(t, 22), 1);
	CHECK_INT(hidden(t, 50), 0);
	CHECK_INT(hidden(t, 51), 0);
	CHECK_STREQ(children(t, 27), "22 50");
	mntcr_tree_free(t);
	check_order_independent(table);
}

TEST(superblocks_by_dev)
{
	/* two binds of one tmpfs (one of a subdirectory) share a superblock */
	static const char table[] =
		"1 0 254:0 / / rw - ext4 /dev/vda rw\n"
		"2 1 0:40 / /a rw,relatime - tmpfs shared-fs rw,size=1024k\n"
		"3 1 0:40 / /b ro,nosuid,relatime - tmpfs shared-fs rw,size=1024k\n"
		"4 1 0:40 /sub /c rw,relatime - tmpfs shared-fs rw,size=1024k\n"
		"5 1 0:41 / /d rw,relatime - tmpfs other rw\n"
		"6 1 254:0 /home /home rw - ext4 /dev/vda rw\n";
	struct mntcr_tree *t = parse(table);
	const struct mntcr_sb *sb;
	unsigned maj, min;

	if (!t)
		return;
	CHECK_INT(mntcr_tree_n_sbs(t), 3);
	CHECK_INT(by_id(t, 2)->sb, by_id(t, 3)->sb);
	CHECK_INT(by_id(t, 2)->sb, by_id(t, 4)->sb);
	CHECK(by_id(t, 2)->sb != by_id(t, 5)->sb);
	CHECK_INT(by_id(t, 1)->sb, by_id(t, 6)->sb);
	sb = mntcr_tree_sb(t, by_id(t, 3)->sb);
	CHECK_STREQ(mntcr_sb_fstype(sb), "tmpfs");
	CHECK_STREQ(mntcr_sb_source(sb), "shared-fs");
	CHECK_STREQ(mntcr_sb_options(sb), "rw,size=1024k");
	mntcr_sb_dev(sb, &maj, &min);
	CHECK_INT(maj, 0);
	CHECK_INT(min, 40);
	CHECK(mntcr_sb_owned(sb)); /* parsed text: nothing to compare with, so owned */
	CHECK_INT(sb->n_mounts, 3);
	for (size_t i = 0; i < sb->n_mounts; i++)
		CHECK_INT(t->mounts[tree_sb_mount_idx(t, sb, i)].sb, by_id(t, 2)->sb);
	CHECK_INT(mntcr_tree_sb(t, by_id(t, 5)->sb)->n_mounts, 1);
	CHECK_INT(mntcr_tree_sb(t, by_id(t, 1)->sb)->n_mounts, 2);
	CHECK(mntcr_tree_sb(t, 3) == NULL);
	CHECK(mntcr_tree_mount(t, 6) == NULL);
	mntcr_tree_free(t);
	check_order_independent(table);
}

static int walk_collect(const struct mntcr_tree *t, size_t idx, void *ud)
{
	struct strbuf *b = ud;

	return strbuf_printf(b, "%s%" PRIu64, b->len ? " " : "", t->mounts[idx].id);
}

static int walk_stop(const struct mntcr_tree *t, size_t idx, void *ud)
{
	int *n = ud;

	return ++*n == 3 ? -ECANCELED : 0;
}

TEST(walk_preorder_attach_order)
{
	struct mntcr_tree *t = parse(sibling_table);
	struct strbuf b = { 0 };
	int n = 0;

	if (!t)
		return;
	CHECK_INT(tree_walk(t, walk_collect, &b), 0);
	CHECK_STREQ(b.buf, "1 2 3 8 4 9 5 6 7");
	strbuf_release(&b);
	CHECK_INT(tree_walk(t, walk_stop, &n), -ECANCELED);
	CHECK_INT(n, 3);
	mntcr_tree_free(t);
}

TEST(built_by_hand)
{
	/* tree_add_mount + tree_index without the parser; ids need not be dense or ordered */
	struct mntcr_tree *t = NULL;
	static const struct {
		uint64_t id, parent;
		const char *mp;
	} ms[] = { { 0x80000010, 0x80000001, "/a" },
		   { 0x80000001, 0, "/" },
		   { 0x8000000f, 0x80000010, "/a/b" } };

	CHECK_INT(tree_new(&t), 0);
	if (!t)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(ms); i++) {
		struct mntcr_mount m = {
			.id = ms[i].id,
			.parent_id = ms[i].parent,
			.dev_minor = (uint32_t)i,
			.root = strdup("/"),
			.point = strdup(ms[i].mp),
			.fstype = strdup("tmpfs"),
		};
		CHECK_INT(tree_add_mount(t, &m), 0);
		CHECK(m.root == NULL); /* ownership moved */
	}
	CHECK_INT(tree_index(t), 0);
	CHECK_INT(id_of(t, t->root), 0x80000001);
	CHECK_INT(id_of(t, by_id(t, 0x8000000f)->parent), 0x80000010);
	CHECK(mntcr_mount_source(by_id(t, 0x80000010)) == NULL);
	CHECK_INT(mntcr_tree_n_sbs(t), 3);
	mntcr_tree_free(t);
	CHECK(mntcr_tree_free(NULL) == NULL);
}

/* A mount's strings in one allocation (the readers'), next to mounts with a string each. */
TEST(strings_in_one_block)
{
	struct mntcr_tree *t = NULL;
	struct mntcr_mount m = { .id = 2, .parent_id = 1, .dev_minor = 7 };
	const size_t room[_MOUNT_STR_MAX] = {
		[MOUNT_STR_ROOT] = 4,	/* "/sub" */
		[MOUNT_STR_MOUNTPOINT] = 9, /* room for more than "/a" */
		[MOUNT_STR_FSTYPE] = 5,
		[MOUNT_STR_SOURCE] = MOUNT_STR_NULL,
		[MOUNT_STR_SB_OPTS] = 0,
	};
	struct mntcr_mount root = {
		.id = 1, .root = strdup("/"), .point = strdup("/"), .fstype = strdup("ext4"),
	};
	size_t i = 0;

	CHECK_INT(tree_new(&t), 0);
	if (!t)
		return;
	CHECK_INT(mount_strings_alloc(&m, room), 0);
	CHECK(m.strings == m.root && m.source == NULL);
	CHECK(m.point == m.root + 5 && m.fstype == m.point + 10 && m.sb_opts == m.fstype + 6);
	CHECK(m.sb_opts && *m.sb_opts == 0 && *m.point == 0);
	if (!m.strings)
		return;
	memcpy(m.root, "/sub", 5);
	memcpy(m.point, "/a", 3);
	memcpy(m.fstype, "tmpfs", 6);
	CHECK_INT(tree_add_mount(t, &root), 0);
	CHECK_INT(tree_add_mount(t, &m), 0);
	CHECK(m.strings == NULL); /* ownership moved */
	CHECK_INT(tree_index(t), 0);
	CHECK(tree_find(t, 2, &i));
	CHECK_STREQ(t->mounts[i].point, "/a");
	CHECK_STREQ(t->mounts[i].root, "/sub");
	CHECK_STREQ(t->sbs[t->mounts[i].sb].fstype, "tmpfs");
	CHECK_STREQ(t->sbs[t->mounts[i].sb].opts, "");
	mntcr_tree_free(t); /* one free for m's strings, one each for root's: no leak, no double free */
}

TEST(nsfs_root_by_hand)
{
	/* statmount gives the same "mnt:[N]" root for a namespace file bind; tree_index takes it */
	static const struct {
		uint64_t id, parent;
		const char *mp, *root, *fstype;
		int want;
	} cases[] = {
		{ 3, 1, "/ns", "mnt:[4026532178]", "nsfs", 0 },
		{ 3, 1, "/ns", "net:[4026532301]", "nsfs", 0 },
		{ 3, 1, "/ns", "mnt:[4026532178]", "tmpfs", -EBADMSG },
		{ 3, 1, "/ns", "ns", "nsfs", -EBADMSG },
		{ 3, 1, "ns", "mnt:[4026532178]", "nsfs", 0 },        /* relative to its parent's */
		{ 3, 1, "../ns", "mnt:[4026532178]", "nsfs", -EBADMSG }, /* not in normal form */
	};

	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		struct mntcr_tree *t = NULL;
		struct mntcr_mount root = {
			.id = 1,
			.root = strdup("/"),
			.point = strdup("/"),
			.fstype = strdup("ext4"),
		};
		struct mntcr_mount m = {
			.id = cases[c].id,
			.parent_id = cases[c].parent,
			.dev_minor = 4,
			.root = strdup(cases[c].root),
			.point = strdup(cases[c].mp),
			.fstype = strdup(cases[c].fstype),
		};

		CHECK_INT(tree_new(&t), 0);
		CHECK_INT(tree_add_mount(t, &root), 0);
		CHECK_INT(tree_add_mount(t, &m), 0);
		CHECK_INT(tree_index(t), cases[c].want);
		mntcr_tree_free(t);
	}
	CHECK(mount_root_is_valid("tmpfs", "/"));
	CHECK(mount_root_is_valid("nsfs", "/"));
	CHECK(mount_root_is_valid("nsfs", "cgroup:[4026531835]"));
	CHECK(!mount_root_is_valid("nsfs", "cgroup:[4026531835"));
	CHECK(!mount_root_is_valid("nsfs", ""));
	CHECK(!mount_root_is_valid(NULL, "/"));
	CHECK(!mount_root_is_valid("nsfs", NULL));
}

/*
 * 50,000 mounts: 100 tmpfs under /, each with 498 binds of itself, plus per
 * parent a mount deep under c0 that c0 covers. Lines are in random order.
 */
TEST(fifty_thousand)
{
	const size_t groups = 100, kids = 498;
	struct strbuf text = { 0 };
	char **lines = NULL;
	size_t n = 0, cap = 0;
	struct mntcr_tree *t = NULL;
	struct timespec a, b;
	uint64_t next = 2;
	int r;

#define LINE(...)                                                                                  \
	do {                                                                                       \
		if (GROW(lines, cap, n + 1) < 0 || asprintf(&lines[n++], __VA_ARGS__) < 0)         \
			abort();                                                                   \
	} while (0)

	LINE("1 0 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
	for (size_t g = 0; g < groups; g++) {
		uint64_t gid = next++;

		LINE("%" PRIu64 " 1 0:%" PRIu64 " / /m%zu rw,relatime - tmpfs g%zu rw\n", gid, gid,
		     g, g);
		/* the hidden one first (it was mounted before its coverer) */
		LINE("%" PRIu64 " %" PRIu64 " 0:%" PRIu64
		     " / /m%zu/c0/x/y rw,relatime - tmpfs h%zu rw\n",
		     next, gid, next, g, g);
		next++;
		for (size_t k = 0; k < kids; k++, next++)
			/* binds of the group's tmpfs: one superblock per group */
			LINE("%" PRIu64 " %" PRIu64 " 0:%" PRIu64
			     " /d%zu /m%zu/c%zu rw,nosuid,relatime - tmpfs g%zu rw\n",
			     next, gid, gid, k, g, k, g);
	}
	CHECK_INT(n, 1 + groups * (kids + 2));
	for (size_t i = n; i > 1; i--) {
		size_t j = rng() % i;
		char *x = lines[i - 1];
		lines[i - 1] = lines[j];
		lines[j] = x;
	}
	for (size_t i = 0; i < n; i++) {
		strbuf_puts(&text, lines[i]);
		free(lines[i]);
	}
	free(lines);

	clock_gettime(CLOCK_MONOTONIC, &a);
	r = parse_string(text.buf, &t);
	clock_gettime(CLOCK_MONOTONIC, &b);
	strbuf_release(&text);
	CHECK_INT(r, 0);
	if (r < 0)
		return;
	printf("# parsed and indexed %zu mounts in %.3f s\n", mntcr_tree_n_mounts(t),
	       (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	CHECK_INT(mntcr_tree_n_mounts(t), 50001);
	CHECK_INT(mntcr_tree_n_sbs(t), 1 + groups * 2);
	CHECK_INT(id_of(t, t->root), 1);
	CHECK_INT(mntcr_mount_n_children(by_id(t, 1)), groups);

	{
		size_t bad = 0, hidden_n = 0;

		for (size_t i = 0; i < t->n_mounts; i++) {
			const struct mntcr_mount *m = &t->mounts[i];

			if (m->id == 1)
				continue;
			if (m->hidden)
				hidden_n++;
			if (m->parent_id == 1) {
				/* a group: kids + the hidden one, the hidden one first */
				if (m->n_children != kids + 1 ||
				    !strstr(tree_child(t, m, 0)->point, "/c0/x/y") ||
				    m->hidden || m->cover != COVER_NONE ||
				    t->sbs[m->sb].n_mounts != kids + 1)
					bad++;
				continue;
			}
			if (strstr(m->point, "/c0/x/y")) {
				const struct mntcr_mount *c = m->covered_by == IDX_NONE
								      ? NULL
								      : &t->mounts[m->covered_by];

				if (m->cover != COVER_SIBLING || !m->hidden || !c ||
				    !streq(mount_relpath(t, c), "c0") || c->parent != m->parent)
					bad++;
			} else if (m->cover != COVER_NONE || m->hidden || m->n_children != 0 ||
				   t->mounts[m->parent].sb != m->sb)
				bad++;
		}
		CHECK_INT(bad, 0);
		CHECK_INT(hidden_n, groups);
	}
	mntcr_tree_free(t);
#undef LINE
}

/*
 * Many siblings on random paths (stacks on one path, siblings on a prefix
 * of another's path, paths sharing their first 8 bytes and more), in
 * random id order: each one's cover is what a search of all its siblings
 * gives. Below 64 siblings they are sorted by qsort() alone, past that by
 * their prefixes first.
 */
static bool is_prefix_dir(const char *pre, const char *path)
{
	size_t n = strlen(pre);

	return strncmp(pre, path, n) == 0 && path[n] == '/';
}

static void random_siblings(size_t n)
{
	static const char *const parts[] = { "a", "b", "ab", "ba", "longprefix_a", "longprefix_b",
					     "x1234567", "abcdef1", "abcdef2" };
	struct strbuf text = { 0 };
	char **path = calloc(n, sizeof(char *));
	uint64_t *id = calloc(n, sizeof(uint64_t));
	struct mntcr_tree *t = NULL;
	size_t bad = 0;

	CHECK(path && id);
	if (!path || !id)
		goto out;
	strbuf_puts(&text, "1 0 254:0 / / rw - ext4 /dev/vda rw\n2 1 0:2 / /p rw - tmpfs p rw\n");
	for (size_t i = 0; i < n; i++) {
		struct strbuf p = { 0 };
		size_t depth = 1 + rng() % 3;

		strbuf_puts(&p, "/p");
		for (size_t d = 0; d < depth; d++)
			strbuf_printf(&p, "/%s", parts[rng() % ARRAY_SIZE(parts)]);
		path[i] = strbuf_detach(&p);
		id[i] = 3 + i;
	}
	for (size_t i = n; i > 1; i--) { /* ids in random order of the paths */
		size_t j = rng() % i;
		uint64_t x = id[i - 1];

		id[i - 1] = id[j];
		id[j] = x;
	}
	for (size_t i = 0; i < n; i++)
		strbuf_printf(&text, "%" PRIu64 " 2 0:3 / %s rw - tmpfs s rw\n", id[i], path[i]);
	CHECK_INT(parse_string(text.buf, &t), 0);
	for (size_t i = 0; t && i < n; i++) {
		uint64_t want = 0;
		size_t best_len = SIZE_MAX;

		/* a sibling on the shortest prefix of its path, the oldest there */
		for (size_t j = 0; j < n; j++)
			if (is_prefix_dir(path[j], path[i]) &&
			    (strlen(path[j]) < best_len || (strlen(path[j]) == best_len && id[j] < want))) {
				best_len = strlen(path[j]);
				want = id[j];
			}
		/* else the next newer on its own path */
		for (size_t j = 0; best_len == SIZE_MAX && j < n; j++)
			if (streq(path[j], path[i]) && id[j] > id[i] && (want == 0 || id[j] < want))
				want = id[j];
		if (cov(t, id[i]) != want || kind(t, id[i]) != (want ? MNTCR_COVER_SIBLING : MNTCR_COVER_NONE))
			bad++;
	}
	CHECK_INT(bad, 0);
	if (t && n <= 300)
		check_relative(t);
out:
	for (size_t i = 0; path && i < n; i++)
		free(path[i]);
	free(path);
	free(id);
	strbuf_release(&text);
	mntcr_tree_free(t);
}

TEST(random_siblings_covers)
{
	random_siblings(40);
	random_siblings(300);
	random_siblings(3000);
}
