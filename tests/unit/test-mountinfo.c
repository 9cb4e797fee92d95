/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mountinfo parser: fixtures in tests/data/mountinfo/ (escapes, optional
 * fields, over-mounts, stacks, binds, deleted roots, a real host table),
 * then malformed lines and inconsistent tables, which must give -EBADMSG.
 * Every parsed field of every fixture line is checked. A large table is
 * parsed on one thread and on two, from a FILE and from a file descriptor
 * (more than one read): the same mounts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tap.h"
#include "tree.h"

TAP_MAIN

#define RELATIME MOUNT_ATTR_RELATIME
#define NOATIME MOUNT_ATTR_NOATIME
#define STRICT MOUNT_ATTR_STRICTATIME

struct expect {
	uint64_t id, parent_id;
	unsigned major, minor;
	const char *root, *mountpoint;
	uint64_t attr;
	uint64_t shared, master, propagate_from;
	bool unbindable;
	const char *fstype, *source, *sb_opts;
};

static struct mntcr_tree *parse_file(const char *name)
{
	char path[4096];
	struct mntcr_tree *t = NULL;
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/mountinfo/%s", TEST_DATA, name);
	f = fopen(path, "re");
	if (!f) {
		printf("#   cannot open %s: %m\n", path);
		tap_failed_checks++;
		return NULL;
	}
	r = mntcr_tree_parse_mountinfo(f, &t);
	fclose(f);
	if (r < 0) {
		printf("#   parsing %s: %s\n", path, strerror(-r));
		tap_failed_checks++;
		return NULL;
	}
	return t;
}

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

/* parse_string() on one thread (MNTCR_THREADS=1), or on as many as the reader takes. */
static int parse_on(int threads, const char *text, struct mntcr_tree **ret)
{
	int r;

	if (threads == 1)
		setenv("MNTCR_THREADS", "1", 1);
	r = parse_string(text, ret);
	unsetenv("MNTCR_THREADS");
	return r;
}

static const struct mntcr_mount *by_id(const struct mntcr_tree *t, uint64_t id)
{
	size_t i;

	return tree_find(t, id, &i) ? mntcr_tree_mount(t, i) : NULL;
}

static void check_mount(const struct mntcr_tree *t, const struct expect *e)
{
	const struct mntcr_mount *m = by_id(t, e->id);
	int before = tap_failed_checks;
	unsigned maj, min;

	CHECK(m != NULL);
	if (!m) {
		printf("#   (no mount with id %" PRIu64 ")\n", e->id);
		return;
	}
	CHECK_INT(mntcr_mount_id(m), e->id);
	CHECK_INT(mntcr_mount_parent_id(m), e->parent_id);
	mntcr_mount_dev(m, &maj, &min);
	CHECK_INT(maj, e->major);
	CHECK_INT(min, e->minor);
	CHECK_STREQ(mntcr_mount_root(m), e->root);
	CHECK_STREQ(mntcr_mount_mountpoint(m), e->mountpoint);
	CHECK_INT(mntcr_mount_attr(m), e->attr);
	CHECK_INT(mntcr_mount_shared(m), e->shared);
	CHECK_INT(mntcr_mount_master(m), e->master);
	CHECK_INT(mntcr_mount_propagate_from(m), e->propagate_from);
	CHECK_INT(mntcr_mount_unbindable(m), e->unbindable);
	CHECK_STREQ(mntcr_mount_fstype(m), e->fstype);
	CHECK_STREQ(mntcr_mount_source(m), e->source);
	CHECK_STREQ(mntcr_mount_sb_options(m), e->sb_opts);
	/* The old (mountinfo) id is the id itself for this source. */
	CHECK_INT(m->old_id, e->id);
	/* The parent index agrees with the parent id (or the mount is the root). */
	if (mntcr_mount_parent(m) == MNTCR_NONE)
		CHECK(by_id(t, e->parent_id) == NULL);
	else
		CHECK_INT(mntcr_mount_id(mntcr_tree_mount(t, mntcr_mount_parent(m))), e->parent_id);
	if (tap_failed_checks != before)
		printf("#   (in mount %" PRIu64 " %s)\n", e->id, e->mountpoint);
}

static void check_all(const struct mntcr_tree *t, const struct expect *e, size_t n)
{
	CHECK_INT(mntcr_tree_n_mounts(t), n);
	CHECK_INT(mntcr_tree_source(t), MNTCR_SOURCE_MOUNTINFO);
	for (size_t i = 0; i < n; i++)
		check_mount(t, &e[i]);
}

static uint64_t parent_of(const struct mntcr_tree *t, uint64_t id)
{
	const struct mntcr_mount *m = by_id(t, id);

	if (!m || mntcr_mount_parent(m) == MNTCR_NONE)
		return 0;
	return mntcr_mount_id(mntcr_tree_mount(t, mntcr_mount_parent(m)));
}

static uint64_t covered_by_id(const struct mntcr_tree *t, uint64_t id)
{
	const struct mntcr_mount *m = by_id(t, id);

	if (!m || mntcr_mount_covered_by(m) == MNTCR_NONE)
		return 0;
	return mntcr_mount_id(mntcr_tree_mount(t, mntcr_mount_covered_by(m)));
}

/* ---------------------------------------------------------------------------------------------- */

TEST(escapes)
{
	static const struct expect e[] = {
		{ 20, 1, 0, 20, "/", "/", RELATIME, 0, 0, 0, false, "tmpfs", "rootfs",
		  "rw,size=1024k" },
		{ 21, 20, 0, 21, "/", "/mnt/with space", MOUNT_ATTR_NOSUID | RELATIME, 0, 0, 0,
		  false, "tmpfs", "my source", "rw,size=1024k,mode=755" },
		{ 22, 20, 254, 1, "/dir\ttab", "/mnt/tab\there", RELATIME, 0, 0, 0, false, "ext4",
		  "/dev/disk\\by-label\\x", "rw,errors=remount-ro" },
		{ 23, 20, 0, 23, "/new\nline", "/mnt/new\nline",
		  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | NOATIME, 0, 0, 0, false, "tmpfs",
		  "back\\slash", "ro,opt=a b" },
		{ 24, 20, 0, 24, "/", "/mnt/all \t\n\\four", MOUNT_ATTR_NOEXEC | RELATIME, 0, 0, 0,
		  false, "fuse.sshfs", "user@host:/a b", "rw,user_id=0,group_id=0" },
		/* mount -t tmpfs "" dir: the kernel prints an empty field (two spaces) */
		{ 25, 20, 0, 25, "/", "/mnt/empty-source", RELATIME, 0, 0, 0, false, "tmpfs", "",
		  "rw,size=64k" },
	};
	struct mntcr_tree *t = parse_file("escapes.txt");

	if (!t)
		return;
	check_all(t, e, ARRAY_SIZE(e));
	CHECK_INT(mntcr_tree_mount(t, mntcr_tree_root(t))->id, 20);
	mntcr_tree_free(t);
}

TEST(unescape_only_octal_escapes)
{
	/* \ooo with o > 7, a backslash at the end, \4xx (> 0377): kept as they are. */
	struct mntcr_tree *t = NULL;
	int r = parse_string("1 0 0:1 / / rw - tmpfs a\\9z\\ rw\n"
			     "2 1 0:2 /x\\400y /m\\04 rw - tmpfs b\\1 rw\n",
			     &t);

	CHECK_INT(r, 0);
	if (r < 0)
		return;
	CHECK_STREQ(by_id(t, 1)->source, "a\\9z\\");
	CHECK_STREQ(by_id(t, 2)->root, "/x\\400y");
	CHECK_STREQ(by_id(t, 2)->point, "/m\\04");
	CHECK_STREQ(by_id(t, 2)->source, "b\\1");
	mntcr_tree_free(t);
}

TEST(optional_fields)
{
	static const struct expect e[] = {
		{ 25, 1, 8, 1, "/", "/", RELATIME, 1, 0, 0, false, "ext4", "/dev/sda1",
		  "rw,errors=remount-ro" },
		{ 26, 25, 0, 5, "/", "/dev", MOUNT_ATTR_NOSUID | RELATIME, 2, 0, 0, false,
		  "devtmpfs", "udev", "rw,size=4010100k,nr_inodes=1002525,mode=755,inode64" },
		{ 27, 26, 0, 26, "/", "/dev/pts", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | RELATIME,
		  3, 0, 0, false, "devpts", "devpts", "rw,gid=5,mode=620,ptmxmode=000" },
		{ 28, 25, 0, 27, "/", "/run",
		  MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | RELATIME, 0, 4, 0,
		  false, "tmpfs", "tmpfs", "rw,size=805788k,mode=755,inode64" },
		{ 29, 25, 0, 28, "/", "/mnt/pf", RELATIME, 0, 7, 2, false, "tmpfs", "pf", "rw" },
		{ 30, 25, 0, 29, "/", "/mnt/unb", RELATIME, 0, 0, 0, true, "tmpfs", "unb", "rw" },
		{ 31, 25, 0, 30, "/", "/mnt/several", RELATIME, 8, 9, 1, false, "tmpfs", "several",
		  "rw" },
		/* unknown optional fields ("future:5", "flag") are skipped */
		{ 32, 25, 0, 31, "/", "/mnt/unknown", RELATIME, 10, 0, 0, false, "tmpfs", "unknown",
		  "rw" },
		{ 33, 25, 0, 32, "/", "/mnt/private", RELATIME, 0, 0, 0, false, "tmpfs", "private",
		  "rw" },
	};
	struct mntcr_tree *t = parse_file("optional.txt");

	if (!t)
		return;
	check_all(t, e, ARRAY_SIZE(e));
	mntcr_tree_free(t);
}

TEST(overmount)
{
	/* KERNEL-FACTS 2(a): T over D/a has L (same mountpoint) as parent; S over D/c hides C. */
	static const struct expect e[] = {
		{ 43, 1, 254, 0, "/", "/", RELATIME, 0, 0, 0, false, "ext4", "/dev/vda",
		  "rw,discard" },
		{ 63, 43, 0, 39, "/", "/tmp/mntcr.x1Yz/D", RELATIME, 0, 0, 0, false, "tmpfs",
		  "base", "rw" },
		{ 64, 63, 0, 40, "/", "/tmp/mntcr.x1Yz/D/a", RELATIME, 0, 0, 0, false, "tmpfs", "L",
		  "rw" },
		{ 65, 64, 0, 41, "/", "/tmp/mntcr.x1Yz/D/a/b", RELATIME, 0, 0, 0, false, "tmpfs",
		  "B", "rw" },
		{ 66, 64, 0, 42, "/", "/tmp/mntcr.x1Yz/D/a", RELATIME, 0, 0, 0, false, "tmpfs", "T",
		  "rw" },
		{ 67, 63, 0, 43, "/", "/tmp/mntcr.x1Yz/D/c/x/y", RELATIME, 0, 0, 0, false, "tmpfs",
		  "C", "rw" },
		{ 68, 63, 0, 44, "/", "/tmp/mntcr.x1Yz/D/c", RELATIME, 0, 0, 0, false, "tmpfs", "S",
		  "rw" },
	};
	struct mntcr_tree *t = parse_file("overmount.txt");
	const struct mntcr_mount *L, *B, *T, *C, *S;

	if (!t)
		return;
	check_all(t, e, ARRAY_SIZE(e));
	L = by_id(t, 64), B = by_id(t, 65), T = by_id(t, 66), C = by_id(t, 67), S = by_id(t, 68);
	CHECK_INT(mntcr_mount_cover(L), MNTCR_COVER_ROOT);
	CHECK(mntcr_tree_mount(t, mntcr_mount_covered_by(L)) == T);
	CHECK_INT(mntcr_mount_cover(B), MNTCR_COVER_SIBLING);
	CHECK(mntcr_tree_mount(t, mntcr_mount_covered_by(B)) == T);
	CHECK_INT(mntcr_mount_cover(C), MNTCR_COVER_SIBLING);
	CHECK(mntcr_tree_mount(t, mntcr_mount_covered_by(C)) == S);
	CHECK(mntcr_mount_hidden(L) && mntcr_mount_hidden(B) && mntcr_mount_hidden(C));
	CHECK(!mntcr_mount_hidden(T) && !mntcr_mount_hidden(S));
	CHECK_INT(mntcr_mount_cover(T), MNTCR_COVER_NONE);
	CHECK_INT(mntcr_mount_covered_by(T), MNTCR_NONE);
	/* every mount has its own superblock here */
	CHECK_INT(mntcr_tree_n_sbs(t), 7);
	mntcr_tree_free(t);
}

static void check_stack(const struct mntcr_tree *t, uint64_t base, uint64_t x1, uint64_t x2,
			uint64_t x3)
{
	const struct mntcr_mount *m1 = by_id(t, x1), *m2 = by_id(t, x2), *m3 = by_id(t, x3);

	CHECK(m1 && m2 && m3);
	if (!m1 || !m2 || !m3)
		return;
	CHECK_INT(parent_of(t, x1), base);
	CHECK_INT(parent_of(t, x2), x1);
	CHECK_INT(parent_of(t, x3), x2);
	CHECK_STREQ(m1->source, "X1");
	CHECK_STREQ(m2->source, "X2");
	CHECK_STREQ(m3->source, "X3");
	CHECK_INT(m1->attr, RELATIME);
	CHECK_INT(m2->attr, MOUNT_ATTR_NOSUID | RELATIME);
	CHECK_INT(m3->attr, MOUNT_ATTR_RDONLY | RELATIME);
	CHECK_INT(mntcr_mount_cover(m1), MNTCR_COVER_ROOT);
	CHECK(mntcr_tree_mount(t, mntcr_mount_covered_by(m1)) == m2);
	CHECK_INT(mntcr_mount_cover(m2), MNTCR_COVER_ROOT);
	CHECK(mntcr_tree_mount(t, mntcr_mount_covered_by(m2)) == m3);
	CHECK_INT(mntcr_mount_cover(m3), MNTCR_COVER_NONE);
	CHECK(mntcr_mount_hidden(m1) && mntcr_mount_hidden(m2) && !mntcr_mount_hidden(m3));
	CHECK_INT(mntcr_mount_n_children(m1), 1);
	CHECK_INT(mntcr_mount_n_children(m2), 1);
	CHECK_INT(mntcr_mount_n_children(m3), 0);
}

TEST(stack_of_three)
{
	struct mntcr_tree *t = parse_file("stack3.txt");

	if (!t)
		return;
	CHECK_INT(mntcr_tree_n_mounts(t), 5);
	check_stack(t, 81, 82, 83, 84);
	check_mount(t, &(struct expect){ 84, 83, 0, 53, "/", "/srv/s", MOUNT_ATTR_RDONLY | RELATIME,
					 0, 0, 0, false, "tmpfs", "X3", "rw" });
	mntcr_tree_free(t);
}

TEST(stack_of_three_child_listed_first)
{
	/* After MOVE_MOUNT_BENEATH the top (91) has a parent (93) listed after it. */
	struct mntcr_tree *t = parse_file("stack3-beneath.txt");

	if (!t)
		return;
	CHECK_INT(mntcr_tree_n_mounts(t), 5);
	check_stack(t, 90, 92, 93, 91);
	mntcr_tree_free(t);
}

/* Every order of the five lines of stack3.txt gives the same tree. */
TEST(stack_of_three_every_order)
{
	static const char *lines[] = {
		"80 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n",
		"81 80 0:50 / /srv rw,relatime - tmpfs base rw\n",
		"82 81 0:51 / /srv/s rw,relatime - tmpfs X1 rw\n",
		"83 82 0:52 / /srv/s rw,nosuid,relatime - tmpfs X2 rw\n",
		"84 83 0:53 / /srv/s ro,relatime - tmpfs X3 rw\n",
	};
	unsigned perm[5] = { 0, 1, 2, 3, 4 }, n = 0;

	/* Heap's algorithm, iterative */
	unsigned c[5] = { 0 }, i = 0;
	for (;;) {
		char text[512] = "";
		struct mntcr_tree *t = NULL;
		int before = tap_failed_checks, r;

		for (unsigned k = 0; k < 5; k++)
			strcat(text, lines[perm[k]]);
		r = parse_string(text, &t);
		CHECK_INT(r, 0);
		if (r == 0) {
			CHECK_INT(mntcr_tree_mount(t, mntcr_tree_root(t))->id, 80);
			check_stack(t, 81, 82, 83, 84);
			mntcr_tree_free(t);
		}
		if (tap_failed_checks != before)
			printf("#   (order %u%u%u%u%u)\n", perm[0], perm[1], perm[2], perm[3],
			       perm[4]);
		n++;
		while (i < 5 && c[i] >= i) {
			c[i] = 0;
			i++;
		}
		if (i >= 5)
			break;
		{
			unsigned j = (i % 2) ? c[i] : 0, tmp = perm[j];
			perm[j] = perm[i];
			perm[i] = tmp;
		}
		c[i]++;
		i = 1;
	}
	CHECK_INT(n, 120);
}

TEST(binds_subdir_deleted_file)
{
	static const struct expect e[] = {
		{ 30, 1, 254, 0, "/", "/", RELATIME, 0, 0, 0, false, "ext4", "/dev/vda", "rw" },
		{ 31, 30, 0, 39, "/", "/data", RELATIME, 0, 0, 0, false, "tmpfs", "data",
		  "rw,size=4096k" },
		{ 32, 30, 0, 39, "/sub", "/mnt/sub", MOUNT_ATTR_NOSUID | RELATIME, 0, 0, 0, false,
		  "tmpfs", "data", "rw,size=4096k" },
		{ 33, 30, 0, 39, "/sub/deeper dir", "/mnt/deep", MOUNT_ATTR_RDONLY | RELATIME, 0, 0,
		  0, false, "tmpfs", "data", "rw,size=4096k" },
		/* the root of a bind whose source was unlinked (dentry_path appends //deleted) */
		{ 34, 30, 0, 39, "/foo//deleted", "/mnt/deleted", RELATIME, 0, 0, 0, false, "tmpfs",
		  "data", "rw,size=4096k" },
		/* a file bind: the root is a file; nothing in mountinfo says so */
		{ 35, 30, 0, 39, "/etc/hosts", "/mnt/hosts", RELATIME, 0, 0, 0, false, "tmpfs",
		  "data", "rw,size=4096k" },
		{ 36, 30, 254, 0, "/var/lib/docker/containers/3f2a/hostname", "/etc/hostname",
		  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | RELATIME, 0, 0, 0,
		  false, "ext4", "/dev/vda", "rw" },
		/* d_path of an unlinked mountpoint: " (deleted)" appended, escaped */
		{ 37, 30, 0, 39, "/", "/mnt/gone (deleted)", RELATIME, 0, 0, 0, false, "tmpfs",
		  "data", "rw,size=4096k" },
	};
	struct mntcr_tree *t = parse_file("binds.txt");
	const struct mntcr_sb *sb;

	if (!t)
		return;
	check_all(t, e, ARRAY_SIZE(e));
	/* one superblock per device: 0:39 has six mounts, 254:0 two */
	CHECK_INT(mntcr_tree_n_sbs(t), 2);
	sb = mntcr_tree_sb(t, mntcr_mount_sb(by_id(t, 31)));
	CHECK(sb != NULL);
	if (sb) {
		CHECK_INT(sb->n_mounts, 6);
		CHECK_STREQ(mntcr_sb_fstype(sb), "tmpfs");
		CHECK_STREQ(mntcr_sb_source(sb), "data");
		CHECK_STREQ(mntcr_sb_options(sb), "rw,size=4096k");
	}
	CHECK_INT(mntcr_mount_sb(by_id(t, 30)), mntcr_mount_sb(by_id(t, 36)));
	for (uint64_t id = 32; id <= 37; id++)
		if (id != 36)
			CHECK_INT(mntcr_mount_sb(by_id(t, id)), mntcr_mount_sb(by_id(t, 31)));
	/* none of them covers another */
	for (size_t i = 0; i < mntcr_tree_n_mounts(t); i++) {
		CHECK_INT(mntcr_mount_cover(mntcr_tree_mount(t, i)), MNTCR_COVER_NONE);
		CHECK(!mntcr_mount_hidden(mntcr_tree_mount(t, i)));
	}
	mntcr_tree_free(t);
}

TEST(namespace_file_binds)
{
	/* unshare --mount=FILE, ip netns add: nsfs roots are "TYPE:[INODE]", not paths */
	static const struct expect e[] = {
		{ 43, 1, 254, 0, "/", "/", RELATIME, 0, 0, 0, false, "ext4", "/dev/vda", "rw" },
		{ 63, 43, 0, 39, "/", "/tmp/mntcr-ns.Ab12Cd/s", RELATIME, 0, 0, 0, false, "tmpfs",
		  "mntcr-scratch", "rw,size=262144k,mode=755" },
		{ 86, 63, 0, 4, "mnt:[4026532178]", "/tmp/mntcr-ns.Ab12Cd/s/restored.ns", STRICT, 0,
		  0, 0, false, "nsfs", "nsfs", "rw" },
		{ 87, 43, 0, 4, "net:[4026532301]", "/run/netns/blue", STRICT, 0, 0, 0, false,
		  "nsfs", "nsfs", "rw" },
		{ 88, 43, 0, 4, "pid_for_children:[4026531836]", "/run/pidns", STRICT, 0, 0, 0,
		  false, "nsfs", "nsfs", "rw" },
	};
	struct mntcr_tree *t = parse_file("nsfs.txt");

	if (!t)
		return;
	check_all(t, e, ARRAY_SIZE(e));
	CHECK_INT(mntcr_tree_n_sbs(t), 3);
	CHECK_INT(mntcr_mount_sb(by_id(t, 86)), mntcr_mount_sb(by_id(t, 87)));
	mntcr_tree_free(t);
}

TEST(real_host_table)
{
	/* The root (27) comes after mounts naming it as parent; /dev/pts, /dev/shm are stacks. */
	struct mntcr_tree *t = parse_file("host-debian12.txt");
	const struct mntcr_mount *root;

	if (!t)
		return;
	CHECK_INT(mntcr_tree_n_mounts(t), 20);
	root = mntcr_tree_mount(t, mntcr_tree_root(t));
	CHECK_INT(root->id, 27);
	CHECK_INT(root->parent_id, 1);
	CHECK_STREQ(root->sb_opts, "rw,discard,resv_strict,resuid=65534,resgid=65534");
	CHECK_INT(parent_of(t, 22), 27);
	CHECK_INT(parent_of(t, 29), 26);
	CHECK_INT(parent_of(t, 30), 25);
	CHECK_INT(parent_of(t, 41), 31);
	CHECK_INT(mntcr_mount_cover(by_id(t, 26)), MNTCR_COVER_ROOT);
	CHECK_INT(covered_by_id(t, 26), 29);
	CHECK_INT(covered_by_id(t, 25), 30);
	CHECK_INT(mntcr_mount_cover(by_id(t, 25)), MNTCR_COVER_ROOT);
	CHECK(mntcr_mount_hidden(by_id(t, 26)) && mntcr_mount_hidden(by_id(t, 25)));
	CHECK(!mntcr_mount_hidden(by_id(t, 29)) && !mntcr_mount_hidden(by_id(t, 30)));
	CHECK_INT(by_id(t, 28)->attr,
		  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | RELATIME);
	CHECK_STREQ(by_id(t, 40)->sb_opts, "rw,name=systemd");
	CHECK_STREQ(by_id(t, 41)->fstype, "cgroup2");
	/* /sys/fs/cgroup has ten children */
	CHECK_INT(mntcr_mount_n_children(by_id(t, 31)), 10);
	CHECK_INT(mntcr_tree_n_sbs(t), 20);
	mntcr_tree_free(t);
}

TEST(atime_modes_and_flags)
{
	struct mntcr_tree *t = NULL;
	int r = parse_string(
		"1 0 0:1 / / rw - tmpfs a rw\n"
		"2 1 0:2 / /a rw,noatime - tmpfs a rw\n"
		"3 1 0:3 / /b rw,relatime - tmpfs a rw\n"
		"4 1 0:4 / /c ro,nosuid,nodev,noexec,relatime,nodiratime,nosymfollow - tmpfs a rw\n"
		"5 1 0:5 / /d rw,nosuid,nodev,noexec,noatime,nodiratime - tmpfs a rw\n"
		"6 1 0:6 / /e rw,relatime,idmapped - tmpfs a rw\n",
		&t);

	CHECK_INT(r, 0);
	if (r < 0)
		return;
	CHECK_INT(by_id(t, 1)->attr, STRICT);
	CHECK_INT(by_id(t, 2)->attr, NOATIME);
	CHECK_INT(by_id(t, 3)->attr, RELATIME);
	CHECK_INT(by_id(t, 4)->attr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					     MOUNT_ATTR_NOEXEC | RELATIME | MOUNT_ATTR_NODIRATIME |
					     MOUNT_ATTR_NOSYMFOLLOW);
	CHECK_INT(by_id(t, 5)->attr, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
					     NOATIME | MOUNT_ATTR_NODIRATIME);
	CHECK_INT(by_id(t, 6)->attr, RELATIME | MOUNT_ATTR_IDMAP);
	mntcr_tree_free(t);
}

TEST(blank_lines_and_missing_final_newline)
{
	struct mntcr_tree *t = NULL;
	int r = parse_string("\n1 0 0:1 / / rw - tmpfs a rw\n\n2 1 0:2 / /a rw - tmpfs b rw", &t);

	CHECK_INT(r, 0);
	if (r < 0)
		return;
	CHECK_INT(mntcr_tree_n_mounts(t), 2);
	CHECK_STREQ(by_id(t, 2)->sb_opts, "rw");
	mntcr_tree_free(t);
}

TEST(malformed_lines)
{
	static const char *bad[] = {
		/* missing separator */
		"2 1 0:2 / /a rw,relatime master:1 tmpfs a rw",
		"2 1 0:2 / /a rw,relatime tmpfs a rw",
		/* bad numbers */
		"x 1 0:2 / /a rw - tmpfs a rw",
		"2 y 0:2 / /a rw - tmpfs a rw",
		"-2 1 0:2 / /a rw - tmpfs a rw",
		"2 +1 0:2 / /a rw - tmpfs a rw",
		"18446744073709551616 1 0:2 / /a rw - tmpfs a rw",
		"2 1 02 / /a rw - tmpfs a rw",
		"2 1 0: / /a rw - tmpfs a rw",
		"2 1 :2 / /a rw - tmpfs a rw",
		"2 1 0:2:3 / /a rw - tmpfs a rw",
		"2 1 0:2x / /a rw - tmpfs a rw",
		"2 1 4294967296:2 / /a rw - tmpfs a rw",
		"2 1 0:2 / /a rw shared:x - tmpfs a rw",
		"2 1 0:2 / /a rw master: - tmpfs a rw",
		"2 1 0:2 / /a rw propagate_from:-1 - tmpfs a rw",
		/* too few fields */
		"2 1 0:2 / /a",
		"2 1 0:2 / /a rw",
		"2 1 0:2 / /a rw -",
		"2 1 0:2 / /a rw - tmpfs",
		"2 1 0:2 / /a rw - tmpfs a",
		"2",
		/* too many */
		"2 1 0:2 / /a rw - tmpfs a rw extra",
		/* relative paths; only nsfs has "TYPE:[INODE]" roots, and only those */
		"2 1 0:2 sub /a rw - tmpfs a rw",
		"2 1 0:2 / a rw - tmpfs a rw",
		"2 1 0:2 / . rw - tmpfs a rw",
		"2 1 0:2 mnt:[4026532178] /a rw - tmpfs a rw",
		"2 1 0:4 mnt /a rw - nsfs nsfs rw",
		"2 1 0:4 mnt:[] /a rw - nsfs nsfs rw",
		"2 1 0:4 mnt:[12x] /a rw - nsfs nsfs rw",
		"2 1 0:4 mnt:[12]x /a rw - nsfs nsfs rw",
		"2 1 0:4 :[12] /a rw - nsfs nsfs rw",
		"2 1 0:4 Mnt:[12] /a rw - nsfs nsfs rw",
		"2 1 0:4 mnt:[4026532178] mnt rw - nsfs nsfs rw",
		/* unknown per-mount option, empty option */
		"2 1 0:2 / /a rw,bogus - tmpfs a rw",
		"2 1 0:2 / /a rw,,nosuid - tmpfs a rw",
		"2 1 0:2 / /a rw, - tmpfs a rw",
		/* an empty type or superblock options */
		"2 1 0:2 / /a rw -  a rw",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char text[512];
		struct mntcr_tree *t = NULL;
		int r;

		snprintf(text, sizeof(text), "1 0 0:1 / / rw - tmpfs root rw\n%s\n", bad[i]);
		r = parse_string(text, &t);
		if (r != -EBADMSG) {
			printf("#   line '%s' gave %d, not -EBADMSG\n", bad[i], r);
			tap_failed_checks++;
		}
		mntcr_tree_free(t);
	}
}

TEST(nul_byte_in_line)
{
	static const char text[] =
		"1 0 0:1 / / rw - tmpfs root rw\n2 1 0:2 / /a\0b rw - tmpfs a rw\n";
	FILE *f = fmemopen((void *)text, sizeof(text) - 1, "r");
	struct mntcr_tree *t = NULL;

	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_INT(mntcr_tree_parse_mountinfo(f, &t), -EBADMSG);
	CHECK(t == NULL);
	fclose(f);
}

TEST(inconsistent_tables)
{
	static const struct {
		const char *what, *text;
	} bad[] = {
		{ "duplicate ids", "1 0 0:1 / / rw - tmpfs r rw\n"
				   "2 1 0:2 / /a rw - tmpfs a rw\n"
				   "2 1 0:3 / /b rw - tmpfs b rw\n" },
		{ "two roots", "1 0 0:1 / / rw - tmpfs r rw\n"
			       "2 9 0:2 / / rw - tmpfs a rw\n" },
		{ "two roots, one not on /", "1 0 0:1 / / rw - tmpfs r rw\n"
					     "2 9 0:2 / /a rw - tmpfs a rw\n" },
		{ "cycle beside a root", "1 0 0:1 / / rw - tmpfs r rw\n"
					 "2 3 0:2 / /a rw - tmpfs a rw\n"
					 "3 2 0:3 / /a rw - tmpfs b rw\n" },
		{ "longer cycle beside a root", "1 0 0:1 / / rw - tmpfs r rw\n"
						"2 4 0:2 / /a rw - tmpfs a rw\n"
						"3 2 0:3 / /a rw - tmpfs b rw\n"
						"4 3 0:4 / /a rw - tmpfs c rw\n" },
		{ "cycle, no root", "2 3 0:2 / / rw - tmpfs a rw\n"
				    "3 2 0:3 / / rw - tmpfs b rw\n" },
		{ "child outside parent path", "1 0 0:1 / / rw - tmpfs r rw\n"
					       "2 1 0:2 / /a rw - tmpfs a rw\n"
					       "3 2 0:3 / /b rw - tmpfs b rw\n" },
		{ "child on a path prefix of its parent", "1 0 0:1 / / rw - tmpfs r rw\n"
							  "2 1 0:2 / /ab rw - tmpfs a rw\n"
							  "3 2 0:3 / /a rw - tmpfs b rw\n" },
		{ "child on a sibling-named path", "1 0 0:1 / / rw - tmpfs r rw\n"
						   "2 1 0:2 / /a rw - tmpfs a rw\n"
						   "3 2 0:3 / /ab/c rw - tmpfs b rw\n" },
		{ "root not on /", "1 0 0:1 / /mnt rw - tmpfs r rw\n" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct mntcr_tree *t = NULL;
		int r = parse_string(bad[i].text, &t);

		if (r != -EBADMSG) {
			printf("#   %s: got %d, not -EBADMSG\n", bad[i].what, r);
			tap_failed_checks++;
		}
		mntcr_tree_free(t);
	}
}

TEST(bad_arguments)
{
	struct mntcr_tree *t = NULL;
	FILE *f = fmemopen((void *)"1 0 0:1 / / rw - tmpfs r rw\n", 28, "r");

	CHECK_INT(mntcr_tree_parse_mountinfo(NULL, &t), -EINVAL);
	CHECK_INT(mntcr_tree_parse_mountinfo(f, NULL), -EINVAL);
	CHECK(t == NULL);
	if (f)
		fclose(f);
}

TEST(parse_line_direct)
{
	char line[] =
		"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
	struct mntcr_mount m;

	CHECK_INT(mountinfo_parse_line(line, &m), 0);
	CHECK_INT(m.id, 36);
	CHECK_INT(m.parent_id, 35);
	CHECK_INT(m.dev_major, 98);
	CHECK_INT(m.dev_minor, 0);
	CHECK_STREQ(m.root, "/mnt1");
	CHECK_STREQ(m.point, "/mnt2");
	CHECK_INT(m.attr, NOATIME);
	CHECK_INT(m.master, 1);
	CHECK_INT(m.shared, 0);
	CHECK_STREQ(m.fstype, "ext3");
	CHECK_STREQ(m.source, "/dev/root");
	CHECK_STREQ(m.sb_opts, "rw,errors=continue");
	mount_clear(&m);
}

/*
 * A table of n mounts: tmpfs on /, then binds of one tmpfs, every
 * seventh with an escaped space in its mountpoint, every fifth shared;
 * bad_line (1-based; 0: none) is malformed.
 */
static char *big_table(size_t n, size_t bad_line)
{
	struct strbuf sb = { 0 };

	strbuf_puts(&sb, "1 0 0:1 / / rw - tmpfs root rw\n");
	for (size_t i = 2; i <= n; i++) {
		if (i == bad_line) {
			strbuf_printf(&sb, "%zu 1 0:2 / /m%zu rw,bogus - tmpfs src rw\n", i, i);
			continue;
		}
		strbuf_printf(&sb, "%zu 1 0:2 /d%zu /m%zu%s rw,nosuid%s - tmpfs src\\040%zu rw,size=%zuk\n", i,
			      i % 3, i, i % 7 ? "" : "\\040x", i % 5 ? "" : " shared:5", i % 11, i);
	}
	return strbuf_detach(&sb);
}

/* The mounts of a and b are the same, field by field. */
static void check_same_mounts(const struct mntcr_tree *a, const struct mntcr_tree *b)
{
	CHECK_INT(a->n_mounts, b->n_mounts);
	for (size_t i = 0; i < a->n_mounts && i < b->n_mounts; i++) {
		const struct mntcr_mount *x = &a->mounts[i], *y = &b->mounts[i];

		if (x->id != y->id || x->parent_id != y->parent_id || x->old_id != y->old_id ||
		    x->dev_major != y->dev_major || x->dev_minor != y->dev_minor || x->attr != y->attr ||
		    x->shared != y->shared || !streq(x->root, y->root) || !streq(x->point, y->point) ||
		    !streq(x->fstype, y->fstype) || !streq(x->source, y->source) || !streq(x->sb_opts, y->sb_opts)) {
			printf("#   mount %zu differs: %s / %s\n", i, x->point, y->point);
			tap_failed_checks++;
			return;
		}
	}
}

TEST(large_table_threads_and_reads)
{
	const size_t n = 20000; /* about 1.3 MB: more than one read of the file */
	_cleanup_free_ char *text = big_table(n, 0);
	struct mntcr_tree *one = NULL, *two = NULL, *by_fd = NULL;
	char path[] = "/tmp/mntcr-test-mountinfo.XXXXXX";
	int fd;

	CHECK(text && strlen(text) > (1U << 20));
	if (!text)
		return;
	CHECK_INT(parse_on(1, text, &one), 0);
	CHECK_INT(parse_on(2, text, &two), 0);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK_INT(write(fd, text, strlen(text)), (ssize_t)strlen(text));
		CHECK_INT(lseek(fd, 0, SEEK_SET), 0);
		CHECK_INT(mountinfo_read_fd(fd, &by_fd), 0);
		close(fd);
		unlink(path);
	}
	if (one && two && by_fd) {
		const struct mntcr_mount *m = by_id(one, 14);

		CHECK_INT(one->n_mounts, n);
		CHECK(m != NULL);
		if (m) {
			CHECK_STREQ(m->point, "/m14 x");
			CHECK_STREQ(m->source, "src 3");
			CHECK(m->in_text && m->strings == NULL);
			CHECK_INT(m->attr, MOUNT_ATTR_NOSUID | STRICT);
			CHECK_INT(m->shared, 0);
		}
		m = by_id(one, 15);
		CHECK(m && streq(m->root, "/d0") && m->shared == 5 && streq(m->sb_opts, "rw,size=15k"));
		CHECK(one->n_texts > 1); /* read and parsed in chunks, lines cut between them */
		check_same_mounts(one, two);
		check_same_mounts(one, by_fd);
	}
	mntcr_tree_free(one);
	mntcr_tree_free(two);
	mntcr_tree_free(by_fd);
}

/* A bad line in the first chunk, the second or the last: -EBADMSG, and nothing leaks (ASan, valgrind). */
TEST(large_table_bad_line)
{
	static const size_t bad[] = { 2, 2999, 3001, 6000 };

	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		_cleanup_free_ char *text = big_table(6000, bad[k]);
		struct mntcr_tree *t = NULL;

		CHECK_INT(parse_string(text, &t), -EBADMSG);
		CHECK(t == NULL);
	}
}

/*
 * A deep tree: chains of mounts 50 deep, names of 40 bytes, so that a
 * chunk's mountpoints average a kilobyte and the reader keeps them below
 * their parents' (compact_chunk()). line_of[k]: the k-th line's mount, so
 * that the old ids need not ascend; `late`: a mount whose parent is listed
 * last, in a later chunk.
 */
static char *deep_table(size_t n, bool shuffled_ids, size_t late, char ***ret_paths, uint64_t **ret_ids)
{
	struct strbuf sb = { 0 };
	char **path = calloc(n + 1, sizeof(char *));
	uint64_t *id = calloc(n + 1, sizeof(uint64_t));
	size_t *line = calloc(n + 1, sizeof(size_t));

	if (!path || !id || !line) {
		free(path), free(id), free(line);
		return NULL;
	}
	for (size_t k = 1; k <= n; k++) {
		id[k] = shuffled_ids ? 1 + (k * 7919) % (n + 13) : k; /* unique: 7919 is prime, n + 13 < 7919 * k */
		line[k] = k;
	}
	path[1] = strdup("/");
	for (size_t k = 2; k <= n; k++) {
		size_t parent = (k - 2) % 50 == 0 ? 1 : k - 1;

		path[k] = NULL;
		if (asprintf(&path[k], "%s/%02zu%s", streq(path[parent], "/") ? "" : path[parent], k % 100,
			     "-a-name-of-forty-bytes-or-so-xxxxxxxxx") < 0)
			path[k] = NULL;
	}
	if (late) { /* the late mount's parent listed last */
		for (size_t k = late - 1; k < n; k++)
			line[k] = k + 1;
		line[n] = late - 1;
	}
	for (size_t k = 1; k <= n; k++) {
		size_t m = line[k], parent = m == 1 ? 0 : (m - 2) % 50 == 0 ? 1 : m - 1;

		strbuf_printf(&sb, "%" PRIu64 " %" PRIu64 " 0:%zu / %s rw - tmpfs t%zu rw\n", id[m],
			      parent ? id[parent] : 0, m, path[m] ? path[m] : "?", m);
	}
	free(line);
	*ret_paths = path;
	*ret_ids = id;
	return strbuf_detach(&sb);
}

TEST(deep_paths_compacted)
{
	const size_t n = 3000;

	for (int variant = 0; variant < 4; variant++) {
		bool shuffled = variant & 1;
		size_t late = variant & 2 ? 1234 : 0;
		char **path = NULL;
		uint64_t *id = NULL;
		_cleanup_free_ char *text = deep_table(n, shuffled, late, &path, &id);

		CHECK(text != NULL);
		if (!text)
			return;
		for (int threads = 1; threads <= 2; threads++) {
			struct mntcr_tree *t = NULL;
			struct strbuf buf = { 0 };
			size_t rel = 0, bad = 0;

			CHECK_INT(parse_on(threads, text, &t), 0);
			if (!t)
				continue;
			CHECK_INT(t->n_mounts, n);
			for (size_t k = 1; k <= n; k++) {
				size_t i;
				const char *p;

				if (!tree_find(t, id[k], &i)) {
					bad++;
					continue;
				}
				p = mount_path(t, i, &buf);
				rel += t->mounts[i].point[0] != '/';
				if (!p || !streq(p, path[k]) || !t->mounts[i].in_text)
					bad++;
			}
			CHECK_INT(bad, 0);
			/* all but the root, and the mount listed before its parent */
			CHECK_INT(rel, n - 1 - (late ? 1 : 0));
			/* every chunk copied out and freed */
			CHECK_INT(t->n_texts, 0);
			strbuf_release(&buf);
			mntcr_tree_free(t);
		}
		/* a mount that is not below its parent, with a path as long as one below it */
		{
			char *q = strstr(text, "/01-a-name"), *p = q ? strstr(q + 1, "/02-a-name") : NULL;
			struct mntcr_tree *t = NULL;

			CHECK(p != NULL);
			if (p) {
				p[-1] = p[-1] == 'x' ? 'y' : 'x'; /* the parent's last byte, in the child's path */
				CHECK_INT(parse_string(text, &t), -EBADMSG);
				mntcr_tree_free(t);
			}
		}
		for (size_t k = 0; k <= n; k++)
			free(path[k]);
		free(path);
		free(id);
	}
}

/*
 * Lines longer than a chunk are read whole, on one thread or two; a line
 * past 1 MiB (the last one too) or a NUL byte in a later chunk is -EBADMSG.
 */
TEST(long_lines)
{
	const size_t long_opts = 300000, n = 3000;
	_cleanup_free_ char *opts = malloc(long_opts + 1);
	_cleanup_free_ char *huge = malloc((2U << 20) + 1);
	struct strbuf sb = { 0 };
	struct mntcr_tree *t = NULL;
	_cleanup_free_ char *text = NULL;

	CHECK(opts && huge);
	if (!opts || !huge)
		return;
	memset(opts, 'a', long_opts);
	opts[0] = 'r', opts[1] = 'w', opts[2] = ',';
	opts[long_opts] = 0;
	strbuf_puts(&sb, "1 0 0:1 / / rw - tmpfs root rw\n");
	for (size_t i = 2; i <= n; i++)
		strbuf_printf(&sb, "%zu 1 0:2 / /m%zu rw - tmpfs src %s\n", i, i, i % 1000 == 500 ? opts : "rw");
	text = strbuf_detach(&sb);
	for (int threads = 1; threads <= 2; threads++) {
		CHECK_INT(parse_on(threads, text, &t), 0);
		if (!t)
			continue;
		CHECK_INT(t->n_mounts, n);
		CHECK_INT(strlen(by_id(t, 1500)->sb_opts), long_opts);
		CHECK_STREQ(by_id(t, 1501)->point, "/m1501");
		CHECK_STREQ(by_id(t, 3000)->sb_opts, "rw");
		t = mntcr_tree_free(t);
	}

	/* a NUL byte far from the start */
	text[strlen(text) - 10] = 0;
	{
		size_t len = strlen(text) + 10;
		FILE *f = fmemopen(text, len, "r");

		CHECK(f != NULL);
		if (f) {
			CHECK_INT(mntcr_tree_parse_mountinfo(f, &t), -EBADMSG);
			CHECK(t == NULL);
			fclose(f);
		}
	}

	/* a line of 2 MiB */
	memset(huge, 'a', 2U << 20);
	memcpy(huge, "2 1 0:2 / /b rw - tmpfs src ", 28);
	huge[2U << 20] = 0;
	sb = (struct strbuf){ 0 };
	strbuf_puts(&sb, "1 0 0:1 / / rw - tmpfs root rw\n");
	strbuf_puts(&sb, huge);
	free(text);
	text = strbuf_detach(&sb);
	CHECK_INT(parse_string(text, &t), -EBADMSG);
	CHECK(t == NULL);

	/* a last line a little over 1 MiB, with and without its newline */
	for (int newline = 0; newline <= 1; newline++) {
		huge[(1U << 20) + 100] = 0;
		sb = (struct strbuf){ 0 };
		strbuf_puts(&sb, "1 0 0:1 / / rw - tmpfs root rw\n");
		strbuf_puts(&sb, huge);
		if (newline)
			strbuf_puts(&sb, "\n");
		free(text);
		text = strbuf_detach(&sb);
		CHECK_INT(parse_string(text, &t), -EBADMSG);
		CHECK(t == NULL);
		t = mntcr_tree_free(t);
	}
}
