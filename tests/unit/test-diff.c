/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mntcr_diff on mountinfo fixtures: each kind of difference, and what must not count. */
#include <sys/mount.h>
#include <time.h>

#include "internal.h"
#include "ns-tree.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tap.h"
#include "tree.h"

/* A small namespace: a root with binds, virtual filesystems, a slave, an unbindable. */
static const char base[] =
	"21 0 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
	"22 21 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw\n"
	"23 21 0:21 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs rw,size=1024k,inode64\n"
	"24 21 0:22 / /mnt/a rw,relatime master:1 - tmpfs foo rw\n"
	"25 21 8:1 /data /mnt/b rw,relatime master:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
	"26 21 0:23 / /mnt/c rw,relatime unbindable - ramfs r rw\n"
	"27 24 0:24 / /mnt/a/sub rw,noexec,relatime shared:4 - tmpfs sub rw\n";

/* The same namespace: other ids, groups and devices, lines in another order. */
static const char base_renumbered[] =
	"507 300 0:99 / /mnt/a/sub rw,noexec,relatime shared:41 - tmpfs sub rw\n"
	"303 100 0:51 / /tmp rw,nosuid,nodev shared:17 - tmpfs tmpfs inode64,rw,size=1024k\n"
	"100 1 8:3 / / rw,relatime shared:12 - ext4 /dev/sda3 rw,errors=remount-ro\n"
	"300 100 0:53 / /mnt/a rw,relatime master:12 - tmpfs foo rw\n"
	"301 100 8:3 /data /mnt/b rw,relatime master:12 - ext4 /dev/sda3 rw,errors=remount-ro\n"
	"302 100 0:50 / /proc rw,nosuid,nodev,noexec,relatime shared:18 - proc proc rw\n"
	"304 100 0:52 / /mnt/c rw,relatime unbindable - ramfs r rw\n";

static struct mntcr_tree *parse(const char *text)
{
	return tree_parse_text(text);
}

struct lines {
	char buf[8192];
	size_t len;
	int n;
};

static void collect(const char *line, void *userdata)
{
	struct lines *l = userdata;
	int n = snprintf(l->buf + l->len, sizeof(l->buf) - l->len, "%s\n", line);

	if (n > 0 && (size_t)n < sizeof(l->buf) - l->len)
		l->len += (size_t)n;
	l->n++;
	printf("#     %s\n", line);
}

/* Diff two trees; returns mntcr_diff's result and the lines in *l. */
static int diff_trees(const struct mntcr_tree *a, const struct mntcr_tree *b, struct lines *l)
{
	int r;

	*l = (struct lines){ 0 };
	r = mntcr_diff(a, b, collect, l);
	if (r >= 0 && r != l->n)
		printf("#   returned %d but reported %d lines\n", r, l->n);
	return r;
}

/* Diff two fixtures. */
static int diff_text(const char *ta, const char *tb, struct lines *l)
{
	struct mntcr_tree *a = parse(ta), *b = parse(tb);
	int r = -EINVAL;

	*l = (struct lines){ 0 };
	if (a && b)
		r = diff_trees(a, b, l);
	mntcr_tree_free(a);
	mntcr_tree_free(b);
	return r;
}

/* text with one line replaced: the line starting with `id ` becomes `line` (or goes). */
static char *replace_line(const char *text, const char *id, const char *line)
{
	struct strbuf b = { 0 };
	size_t idlen = strlen(id);

	for (const char *p = text; *p;) {
		const char *e = strchr(p, '\n');
		size_t n = (size_t)(e - p) + 1;

		if (strncmp(p, id, idlen) == 0 && p[idlen] == ' ') {
			if (line)
				(void)strbuf_printf(&b, "%s\n", line);
		} else
			(void)strbuf_add(&b, p, n);
		p += n;
	}
	return strbuf_detach(&b);
}

static char *base_with(const char *id, const char *line)
{
	return replace_line(base, id, line);
}

static int diff_base_with(const char *id, const char *line, struct lines *l)
{
	_cleanup_free_ char *text = base_with(id, line);

	return diff_text(base, text, l);
}

TEST(identical)
{
	struct mntcr_tree *a = parse(base);
	struct lines l;

	CHECK(a);
	if (!a)
		return;
	CHECK_INT(diff_trees(a, a, &l), 0);
	mntcr_tree_free(a);
}

TEST(renumbered_and_reordered)
{
	struct lines l;

	CHECK_INT(diff_text(base, base_renumbered, &l), 0);
	CHECK_INT(diff_text(base_renumbered, base, &l), 0);
}

TEST(null_callback_counts)
{
	struct mntcr_tree *a = parse(base), *b = parse(base_renumbered);

	CHECK(a && b);
	if (a && b) {
		CHECK_INT(mntcr_diff(a, b, NULL, NULL), 0);
		CHECK_INT(mntcr_diff(a, NULL, NULL, NULL), -EINVAL);
	}
	mntcr_tree_free(a);
	mntcr_tree_free(b);
}

TEST(fstype)
{
	struct lines l;

	CHECK_INT(diff_base_with("26", "26 21 0:23 / /mnt/c rw,relatime unbindable - tmpfs r rw", &l), 1);
	CHECK_STREQ(l.buf, "/mnt/c: fstype ramfs != tmpfs\n");
}

TEST(root)
{
	struct lines l;

	CHECK_INT(diff_base_with("25", "25 21 8:1 /other /mnt/b rw,relatime master:1 - ext4 /dev/vda1 rw,errors=remount-ro",
				 &l),
		  1);
	CHECK_STREQ(l.buf, "/mnt/b: root /data != /other\n");
}

TEST(source_virtual)
{
	struct lines l;

	CHECK_INT(diff_base_with("24", "24 21 0:22 / /mnt/a rw,relatime master:1 - tmpfs bar rw", &l), 1);
	CHECK_STREQ(l.buf, "/mnt/a: source foo != bar\n");
	/* "none" and a path: not both block devices, so it counts */
	CHECK_INT(diff_base_with("26", "26 21 0:23 / /mnt/c rw,relatime unbindable - ramfs /r rw", &l), 1);
	CHECK_STREQ(l.buf, "/mnt/c: source r != /r\n");
	/* an empty source (mount -t tmpfs "" dir) is not "none" */
	CHECK_INT(diff_base_with("24", "24 21 0:22 / /mnt/a rw,relatime master:1 - tmpfs  rw", &l), 1);
	CHECK_STREQ(l.buf, "/mnt/a: source foo != \"\"\n");
}

TEST(source_block_device_ignored)
{
	static const char other_dev[] =
		"21 0 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro\n"
		"22 21 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw\n"
		"23 21 0:21 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs rw,size=1024k,inode64\n"
		"24 21 0:22 / /mnt/a rw,relatime master:1 - tmpfs foo rw\n"
		"25 21 8:1 /data /mnt/b rw,relatime master:1 - ext4 /dev/vda rw,errors=remount-ro\n"
		"26 21 0:23 / /mnt/c rw,relatime unbindable - ramfs r rw\n"
		"27 24 0:24 / /mnt/a/sub rw,noexec,relatime shared:4 - tmpfs sub rw\n";
	struct lines l;

	CHECK_INT(diff_text(base, other_dev, &l), 0);
}

TEST(flags)
{
	struct lines l;

	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nodev shared:3 - tmpfs tmpfs rw,size=1024k,inode64", &l), 1);
	CHECK_STREQ(l.buf, "/tmp: mount options rw,nosuid,nodev != rw,nodev\n");
	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp ro,nosuid,nodev shared:3 - tmpfs tmpfs rw,size=1024k,inode64", &l), 1);
	CHECK_STREQ(l.buf, "/tmp: mount options rw,nosuid,nodev != ro,nosuid,nodev\n");
	/* strictatime (no atime option) against relatime */
	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nosuid,nodev,relatime shared:3 - tmpfs tmpfs rw,size=1024k,inode64", &l), 1);
	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nosuid,nodev,noatime shared:3 - tmpfs tmpfs rw,size=1024k,inode64", &l), 1);
}

TEST(flags_atime_normalised)
{
	struct mntcr_tree *a = parse(base), *b = parse(base);
	struct lines l;
	size_t i;

	CHECK(a && b);
	if (!a || !b)
		goto out;
	/* /proc is relatime (0): an unnamed value of the atime field means relatime too */
	CHECK(tree_find(b, 22, &i));
	b->mounts[i].attr = (b->mounts[i].attr & ~(uint64_t)MOUNT_ATTR__ATIME) | 0x40;
	CHECK_INT(diff_trees(a, b, &l), 0);
	/* a bit no option names still counts */
	b->mounts[i].attr |= 1ULL << 40;
	CHECK_INT(diff_trees(a, b, &l), 1);
	CHECK(strstr(l.buf, "/proc: mount flags 0x") != NULL);
out:
	mntcr_tree_free(a);
	mntcr_tree_free(b);
}

TEST(sb_options)
{
	struct lines l;

	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs rw,size=2048k,inode64", &l), 1);
	CHECK_STREQ(l.buf, "/tmp: superblock options size=1024k != size=2048k\n");
	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs ro,size=1024k", &l), 1);
	CHECK_STREQ(l.buf, "/tmp: superblock options inode64,rw != ro\n");
	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs rw,inode64", &l), 1);
	CHECK_STREQ(l.buf, "/tmp: superblock options size=1024k != (none)\n");
	/* a set: order and duplicates do not count */
	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs inode64,size=1024k,rw,inode64", &l), 0);
}

TEST(sb_options_reported_once_per_superblock)
{
	static const char a[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw - tmpfs t rw,size=1k\n"
		"3 1 0:31 / /y rw - tmpfs t rw,size=1k\n";
	static const char b[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw - tmpfs t rw,size=2k\n"
		"3 1 0:31 / /y rw - tmpfs t rw,size=2k\n";
	struct lines l;

	CHECK_INT(diff_text(a, b, &l), 1);
	CHECK_STREQ(l.buf, "/x: superblock options size=1k != size=2k\n");
}

TEST(sb_partition)
{
	static const char shared_sb[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw - tmpfs t rw\n"
		"3 1 0:31 /sub /y rw - tmpfs t rw\n"
		"4 1 0:32 / /z rw - tmpfs t rw\n";
	static const char split_sb[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw - tmpfs t rw\n"
		"3 1 0:33 /sub /y rw - tmpfs t rw\n"
		"4 1 0:32 / /z rw - tmpfs t rw\n";
	static const char merged_sb[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw - tmpfs t rw\n"
		"3 1 0:31 /sub /y rw - tmpfs t rw\n"
		"4 1 0:31 / /z rw - tmpfs t rw\n";
	struct lines l;

	CHECK_INT(diff_text(shared_sb, split_sb, &l), 1);
	CHECK_STREQ(l.buf, "/x and /y: share a superblock in A but not in B\n");
	CHECK_INT(diff_text(split_sb, shared_sb, &l), 1);
	CHECK_STREQ(l.buf, "/x and /y: share a superblock in B but not in A\n");
	CHECK_INT(diff_text(shared_sb, merged_sb, &l), 1);
	CHECK_STREQ(l.buf, "/x and /z: share a superblock in B but not in A\n");
}

TEST(peer_group_partition)
{
	static const char one[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:5 - tmpfs t rw\n"
		"3 1 0:31 / /y rw shared:5 - tmpfs t rw\n";
	static const char two[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:5 - tmpfs t rw\n"
		"3 1 0:31 / /y rw shared:6 - tmpfs t rw\n";
	/* same partition as `one`, other numbers, swapped with the root's */
	static const char one_renumbered[] =
		"1 0 0:30 / / rw shared:5 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:1 - tmpfs t rw\n"
		"3 1 0:31 / /y rw shared:1 - tmpfs t rw\n";
	/* /y joins the root's peer group instead */
	static const char with_root[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:5 - tmpfs t rw\n"
		"3 1 0:31 / /y rw shared:1 - tmpfs t rw\n";
	struct lines l;

	CHECK_INT(diff_text(one, two, &l), 1);
	CHECK_STREQ(l.buf, "/x and /y: share a peer group in A but not in B\n");
	CHECK_INT(diff_text(two, one, &l), 1);
	CHECK_STREQ(l.buf, "/x and /y: share a peer group in B but not in A\n");
	CHECK_INT(diff_text(one, one_renumbered, &l), 0);
	/* both directions break at once: 5 -> 1 conflicts with 1 -> 1, and back */
	CHECK_INT(diff_text(one, with_root, &l), 2);
	CHECK_STREQ(l.buf, "/x and /y: share a peer group in A but not in B\n"
			   "/ and /y: share a peer group in B but not in A\n");
}

TEST(master_mapping)
{
	static const char a[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:5 - tmpfs t rw\n"
		"3 1 0:31 / /y rw master:5 - tmpfs t rw\n"
		"4 1 0:31 / /z rw master:100 - tmpfs t rw\n"
		"5 1 0:31 / /w rw master:100 - tmpfs t rw\n";
	/* renumbered, masters outside the namespace too */
	static const char a_renumbered[] =
		"1 0 0:30 / / rw shared:2 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:9 - tmpfs t rw\n"
		"3 1 0:31 / /y rw master:9 - tmpfs t rw\n"
		"4 1 0:31 / /z rw master:300 - tmpfs t rw\n"
		"5 1 0:31 / /w rw master:300 - tmpfs t rw\n";
	/* /y is a slave of something else than /x's peer group */
	static const char b[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:5 - tmpfs t rw\n"
		"3 1 0:31 / /y rw master:7 - tmpfs t rw\n"
		"4 1 0:31 / /z rw master:100 - tmpfs t rw\n"
		"5 1 0:31 / /w rw master:100 - tmpfs t rw\n";
	/* /z and /w have different outside masters */
	static const char c[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw shared:5 - tmpfs t rw\n"
		"3 1 0:31 / /y rw master:5 - tmpfs t rw\n"
		"4 1 0:31 / /z rw master:100 - tmpfs t rw\n"
		"5 1 0:31 / /w rw master:101 - tmpfs t rw\n";
	struct lines l;

	CHECK_INT(diff_text(a, a_renumbered, &l), 0);
	CHECK_INT(diff_text(a, b, &l), 1);
	CHECK_STREQ(l.buf, "/x (shared) and /y (master): the same peer group in A but not in B\n");
	CHECK_INT(diff_text(a, c, &l), 1);
	CHECK_STREQ(l.buf, "/w and /z: share a master in A but not in B\n");
}

TEST(propagate_from_mapping)
{
	static const char a[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw master:50 propagate_from:2 - tmpfs t rw\n"
		"3 1 0:31 / /y rw master:51 propagate_from:2 - tmpfs t rw\n";
	static const char b[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw master:60 propagate_from:3 - tmpfs t rw\n"
		"3 1 0:31 / /y rw master:61 propagate_from:4 - tmpfs t rw\n";
	static const char c[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw master:60 - tmpfs t rw\n"
		"3 1 0:31 / /y rw master:61 propagate_from:4 - tmpfs t rw\n";
	struct lines l;

	CHECK_INT(diff_text(a, b, &l), 1);
	CHECK_STREQ(l.buf, "/x and /y: receive from one peer group in A but not in B\n");
	CHECK_INT(diff_text(a, c, &l), 1);
	CHECK_STREQ(l.buf, "/x: propagation master:50,propagate_from:2 != master:60\n");
}

TEST(propagation_kind)
{
	struct lines l;

	CHECK_INT(diff_base_with("23", "23 21 0:21 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw,size=1024k,inode64", &l), 1);
	CHECK_STREQ(l.buf, "/tmp: propagation shared:3 != private\n");
	CHECK_INT(diff_base_with("24", "24 21 0:22 / /mnt/a rw,relatime shared:9 master:1 - tmpfs foo rw", &l), 1);
	CHECK_STREQ(l.buf, "/mnt/a: propagation master:1 != shared:9,master:1\n");
}

TEST(unbindable)
{
	struct lines l;

	CHECK_INT(diff_base_with("26", "26 21 0:23 / /mnt/c rw,relatime - ramfs r rw", &l), 1);
	CHECK_STREQ(l.buf, "/mnt/c: unbindable in A but not in B\n");
}

TEST(missing_and_extra)
{
	_cleanup_free_ char *without_sub = base_with("27", NULL);
	_cleanup_free_ char *moved = NULL, *without_a = NULL;
	struct lines l;

	CHECK_INT(diff_text(base, without_sub, &l), 1);
	CHECK_STREQ(l.buf, "/mnt/a/sub: only in A\n");
	CHECK_INT(diff_text(without_sub, base, &l), 1);
	CHECK_STREQ(l.buf, "/mnt/a/sub: only in B\n");

	/* a missing mount with a submount: one line for the subtree */
	moved = base_with("24", "24 21 0:22 / /mnt/d rw,relatime master:1 - tmpfs foo rw");
	without_a = replace_line(moved, "27", "27 24 0:24 / /mnt/d/sub rw,noexec,relatime shared:4 - tmpfs sub rw");
	CHECK_INT(diff_text(base, without_a, &l), 2);
	CHECK_STREQ(l.buf, "/mnt/a: only in A (with 1 mount below it)\n/mnt/d: only in B (with 1 mount below it)\n");
}

static const char stack_xy[] =
	"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
	"2 1 0:31 / /s rw - tmpfs x rw\n"
	"3 2 0:32 / /s rw - tmpfs y rw\n";

TEST(stacking_order)
{
	static const char stack_yx[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:32 / /s rw - tmpfs y rw\n"
		"3 2 0:31 / /s rw - tmpfs x rw\n";
	static const char stack_x[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /s rw - tmpfs x rw\n";
	struct lines l;

	CHECK_INT(diff_text(stack_xy, stack_xy, &l), 0);
	CHECK_INT(diff_text(stack_xy, stack_yx, &l), 2);
	CHECK_STREQ(l.buf, "/s (layer 1 of 2): source x != y\n/s (layer 2 of 2): source y != x\n");
	CHECK_INT(diff_text(stack_xy, stack_x, &l), 1);
	CHECK_STREQ(l.buf, "/s (layer 2 of 2): only in A\n");
}

TEST(overmount)
{
	/* /a, then /a/b inside it */
	static const char nested[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /a rw - tmpfs a rw\n"
		"3 2 0:32 / /a/b rw - tmpfs b rw\n";
	/* /a/b first, then /a over it: /a/b is covered */
	static const char covered[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"3 1 0:32 / /a/b rw - tmpfs b rw\n"
		"4 1 0:31 / /a rw - tmpfs a rw\n";
	struct lines l;

	CHECK_INT(diff_text(nested, covered, &l), 2);
	CHECK_STREQ(l.buf, "/a/b: only in A\n/a/b: only in B (covered by /a)\n");
}

TEST(same_path_siblings)
{
	/* two children of / on /t (a tuck): matched in attach order */
	static const char a[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /t rw - tmpfs lower rw\n"
		"3 1 0:32 / /t rw - tmpfs upper rw\n";
	static const char a_renumbered[] =
		"10 9 0:40 / / rw shared:3 - tmpfs root rw\n"
		"20 10 0:41 / /t rw - tmpfs lower rw\n"
		"30 10 0:42 / /t rw - tmpfs upper rw\n";
	static const char b[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /t rw - tmpfs lower rw\n";
	struct lines l;

	CHECK_INT(diff_text(a, a_renumbered, &l), 0);
	CHECK_INT(diff_text(a, b, &l), 1);
	CHECK_STREQ(l.buf, "/t (sibling 2 of 2): only in A\n");
}

TEST(escaped_paths)
{
	static const char a[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /with\\040space\\012nl rw - tmpfs x rw\n";
	struct lines l;

	CHECK_INT(diff_text(a, "1 0 0:30 / / rw shared:1 - tmpfs root rw\n", &l), 1);
	CHECK_STREQ(l.buf, "/with space\\012nl: only in A\n");
}

/* A big namespace: flat mounts and one deep stack. O(n^2) would take minutes. */
static char *big_mountinfo(size_t n_flat, size_t n_stack, uint64_t id_base, unsigned group_base)
{
	struct strbuf b = { 0 };
	uint64_t root = id_base, parent;

	(void)strbuf_printf(&b, "%" PRIu64 " 1 0:30 / / rw shared:%u - tmpfs root rw\n", root, group_base);
	(void)strbuf_printf(&b, "%" PRIu64 " %" PRIu64 " 0:31 / /m rw - tmpfs m rw\n", root + 1, root);
	for (size_t i = 0; i < n_flat; i++)
		(void)strbuf_printf(&b, "%" PRIu64 " %" PRIu64 " 0:%zu / /m/%zu rw shared:%zu - tmpfs t%zu rw\n",
				    root + 2 + i, root + 1, 100 + i, i, group_base + 1 + i, i);
	parent = root;
	for (size_t i = 0; i < n_stack; i++) {
		uint64_t id = root + 2 + n_flat + i;

		(void)strbuf_printf(&b, "%" PRIu64 " %" PRIu64 " 0:31 /%zu /s rw - tmpfs m rw\n", id, parent, i);
		parent = id;
	}
	return strbuf_detach(&b);
}

TEST(large)
{
	_cleanup_free_ char *ta = big_mountinfo(30000, 20000, 1000, 10);
	_cleanup_free_ char *tb = big_mountinfo(30000, 20000, 500000, 70000);
	struct mntcr_tree *a, *b;
	struct timespec t0, t1;
	double secs;
	size_t i;

	a = parse(ta);
	b = parse(tb);
	CHECK(a && b);
	if (!a || !b)
		goto out;
	CHECK_INT(mntcr_tree_n_mounts(a), 50002);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_INT(mntcr_diff(a, b, NULL, NULL), 0);
	/* one change deep in the stack */
	CHECK(tree_find(b, 500000 + 2 + 30000 + 15000, &i));
	b->mounts[i].attr |= MOUNT_ATTR_NOEXEC;
	CHECK_INT(mntcr_diff(a, b, NULL, NULL), 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("#   two diffs of 50002 mounts: %.3f s\n", secs);
	CHECK(secs < 10);
out:
	mntcr_tree_free(a);
	mntcr_tree_free(b);
}

TEST(empty_trees)
{
	struct mntcr_tree *a = parse(""), *b = parse(base);
	struct lines l;

	CHECK(a && b);
	if (a && b) {
		CHECK_INT(diff_trees(a, a, &l), 0);
		CHECK_INT(diff_trees(a, b, &l), 1);
		CHECK_STREQ(l.buf, "/: only in B (with 6 mounts below it)\n");
	}
	mntcr_tree_free(a);
	mntcr_tree_free(b);
}

/* -------------------------------------------------------------------------- */
/* Several namespaces in one tree */

static struct mntcr_tree *parse_ns(const char *const *texts, size_t n)
{
	return ns_tree_parse(texts, n, true);
}

static int diff_ns(const char *const *ta, size_t na, const char *const *tb, size_t nb, struct lines *l)
{
	struct mntcr_tree *a = parse_ns(ta, na), *b = parse_ns(tb, nb);
	int r = -EINVAL;

	*l = (struct lines){ 0 };
	if (a && b)
		r = diff_trees(a, b, l);
	mntcr_tree_free(a);
	mntcr_tree_free(b);
	return r;
}

/*
 * Two namespaces: the roots in one peer group and on one superblock, /x in
 * both in one peer group and on one superblock, a slave of it in the second.
 */
static const char ns0[] =
	"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
	"2 1 0:31 / /x rw shared:5 - tmpfs t rw\n"
	"3 1 0:32 / /y rw - tmpfs y rw\n";
static const char ns1[] =
	"11 0 0:30 / / rw shared:1 - tmpfs root rw\n"
	"12 11 0:31 / /x rw shared:5 - tmpfs t rw\n"
	"13 11 0:33 / /z rw master:5 - tmpfs z rw\n";

TEST(namespaces_identical)
{
	/* other ids, groups and devices, lines in another order */
	static const char ns0_renumbered[] =
		"300 100 0:52 / /y rw - tmpfs y rw\n"
		"100 99 0:50 / / rw shared:7 - tmpfs root rw\n"
		"200 100 0:51 / /x rw shared:9 - tmpfs t rw\n";
	static const char ns1_renumbered[] =
		"402 400 0:53 / /z rw master:9 - tmpfs z rw\n"
		"401 400 0:51 / /x rw shared:9 - tmpfs t rw\n"
		"400 99 0:50 / / rw shared:7 - tmpfs root rw\n";
	const char *const a[] = { ns0, ns1 };
	const char *const b[] = { ns0_renumbered, ns1_renumbered };
	struct mntcr_tree *t = parse_ns(a, 2);
	struct lines l;

	CHECK(t);
	if (t) {
		CHECK_INT(mntcr_tree_n_namespaces(t), 2);
		CHECK_INT(diff_trees(t, t, &l), 0);
	}
	mntcr_tree_free(t);
	CHECK_INT(diff_ns(a, 2, b, 2, &l), 0);
	CHECK_INT(diff_ns(b, 2, a, 2, &l), 0);
}

TEST(namespaces_peer_group_across)
{
	/* /x of the second namespace in a peer group of its own (its slave follows it) */
	static const char ns1_split[] =
		"11 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"12 11 0:31 / /x rw shared:6 - tmpfs t rw\n"
		"13 11 0:33 / /z rw master:6 - tmpfs z rw\n";
	/* /z a slave of the first namespace's /x still, not of its own namespace's */
	static const char ns1_split_master[] =
		"11 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"12 11 0:31 / /x rw shared:6 - tmpfs t rw\n"
		"13 11 0:33 / /z rw master:5 - tmpfs z rw\n";
	const char *const a[] = { ns0, ns1 };
	const char *const b[] = { ns0, ns1_split };
	const char *const c[] = { ns0, ns1_split_master };
	struct lines l;

	CHECK_INT(diff_ns(a, 2, b, 2, &l), 2);
	CHECK_STREQ(l.buf, "ns0:/x and ns1:/x: share a peer group in A but not in B\n"
			   "ns0:/x (shared) and ns1:/z (master): the same peer group in A but not in B\n");
	CHECK_INT(diff_ns(b, 2, a, 2, &l), 2);
	CHECK_STREQ(l.buf, "ns0:/x and ns1:/x: share a peer group in B but not in A\n"
			   "ns0:/x (shared) and ns1:/z (master): the same peer group in B but not in A\n");
	CHECK_INT(diff_ns(a, 2, c, 2, &l), 1);
	CHECK_STREQ(l.buf, "ns0:/x and ns1:/x: share a peer group in A but not in B\n");
}

TEST(namespaces_superblock_across)
{
	/* /x of the second namespace on a superblock of its own */
	static const char ns1_own_sb[] =
		"11 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"12 11 0:34 / /x rw shared:5 - tmpfs t rw\n"
		"13 11 0:33 / /z rw master:5 - tmpfs z rw\n";
	const char *const a[] = { ns0, ns1 };
	const char *const b[] = { ns0, ns1_own_sb };
	struct lines l;

	CHECK_INT(diff_ns(a, 2, b, 2, &l), 1);
	CHECK_STREQ(l.buf, "ns0:/x and ns1:/x: share a superblock in A but not in B\n");
	CHECK_INT(diff_ns(b, 2, a, 2, &l), 1);
	CHECK_STREQ(l.buf, "ns0:/x and ns1:/x: share a superblock in B but not in A\n");
}

TEST(namespaces_missing_mount)
{
	static const char ns1_without_z[] =
		"11 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"12 11 0:31 / /x rw shared:5 - tmpfs t rw\n";
	/* /x is in the first namespace still: no match across namespaces */
	static const char ns1_without_x[] =
		"11 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"13 11 0:33 / /z rw master:5 - tmpfs z rw\n";
	static const char ns0_noexec[] =
		"1 0 0:30 / / rw shared:1 - tmpfs root rw\n"
		"2 1 0:31 / /x rw,noexec shared:5 - tmpfs t rw\n"
		"3 1 0:32 / /y rw - tmpfs y rw\n";
	const char *const a[] = { ns0, ns1 };
	const char *const b[] = { ns0, ns1_without_z };
	const char *const c[] = { ns0, ns1_without_x };
	const char *const d[] = { ns0_noexec, ns1_without_z };
	struct lines l;

	CHECK_INT(diff_ns(a, 2, b, 2, &l), 1);
	CHECK_STREQ(l.buf, "ns1:/z: only in A\n");
	CHECK_INT(diff_ns(b, 2, a, 2, &l), 1);
	CHECK_STREQ(l.buf, "ns1:/z: only in B\n");
	CHECK_INT(diff_ns(a, 2, c, 2, &l), 1);
	CHECK_STREQ(l.buf, "ns1:/x: only in A\n");
	/* namespace after namespace */
	CHECK_INT(diff_ns(a, 2, d, 2, &l), 2);
	CHECK_STREQ(l.buf, "ns0:/x: mount options rw != rw,noexec\n"
			   "ns1:/z: only in A\n");
}

TEST(namespaces_count_and_order)
{
	const char *const a[] = { ns0, ns1 };
	const char *const swapped[] = { ns1, ns0 };
	_cleanup_free_ char *ns0_without_y = replace_line(ns0, "3", NULL);
	struct mntcr_tree *single = parse(ns0), *two = parse_ns(a, 2), *other = parse(ns0_without_y);
	struct lines l;

	CHECK(single && two && other);
	if (single && two && other) {
		CHECK_INT(diff_trees(two, single, &l), 1);
		CHECK_STREQ(l.buf, "namespaces: A has 2, B has 1\n");
		CHECK_INT(diff_trees(single, two, &l), 1);
		CHECK_STREQ(l.buf, "namespaces: A has 1, B has 2\n");
		/* the common prefix compares, its mounts named with their namespace */
		CHECK_INT(diff_trees(two, other, &l), 2);
		CHECK_STREQ(l.buf, "namespaces: A has 2, B has 1\nns0:/y: only in A\n");
	}
	mntcr_tree_free(single);
	mntcr_tree_free(two);
	mntcr_tree_free(other);
	/* namespaces match by index, not by content */
	CHECK_INT(diff_ns(a, 2, swapped, 2, &l), 4);
	CHECK_STREQ(l.buf, "ns0:/y: only in A\nns0:/z: only in B\nns1:/y: only in B\nns1:/z: only in A\n");
}

TAP_MAIN
