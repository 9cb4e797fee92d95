/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Filesystem content in images (content.c, image.c): member names, content
 * roots, attributes and the socket marker, a round trip of every kind of
 * member through an image into a directory (sparse files stay sparse),
 * the content digest over data and metadata, and hostile archives: names
 * with "..", absolute names, hard links that lead out, symlinks in the
 * way, members outside their superblock's roots, out of order.
 * No root needed: members are extracted into a temporary directory.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content.h"
#include "mntcr/mntcr.h"
#include "tap.h"
#include "tree.h"
#include "util.h"

/* sb 0: ext4 (external); sb 1: a tmpfs shown whole; sb 2: a tmpfs shown through /sub only. */
static const char mountinfo[] = "21 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
				"22 21 0:40 / /t rw - tmpfs tmpfs rw\n"
				"23 21 0:41 /sub /u rw - tmpfs other rw\n"
				"24 21 0:41 /sub/deeper /v rw - tmpfs other rw\n";

static struct mntcr_tree *sample_tree(void)
{
	struct mntcr_tree *t = NULL;
	FILE *f = fmemopen((void *)mountinfo, strlen(mountinfo), "r");

	if (!f || mntcr_tree_parse_mountinfo(f, &t) < 0) {
		if (f)
			fclose(f);
		return NULL;
	}
	fclose(f);
	for (size_t i = 0; i < t->n_sbs; i++)
		t->sbs[i].owned = streq(t->sbs[i].fstype, "tmpfs");
	return t;
}

/* An image start (magic, manifest with content roots, manifest.checksum) on a memfd. */
static int open_writer(const struct mntcr_tree *t, int *ret_fd, struct image_writer **ret_w,
		       char ****ret_roots, size_t **ret_n)
{
	char ***roots = calloc(t->n_sbs, sizeof(*roots));
	size_t *n = calloc(t->n_sbs, sizeof(*n));
	int fd = memfd_create("image", MFD_CLOEXEC), r;

	if (!roots || !n || fd < 0)
		return -ENOMEM;
	for (size_t i = 0; i < t->n_sbs; i++)
		if ((r = content_roots(t, i, &roots[i], &n[i])) < 0)
			return r;
	r = image_writer_open(fd, t, roots, n, 0, ret_w);
	if (r < 0)
		return r;
	*ret_fd = fd;
	*ret_roots = roots;
	*ret_n = n;
	return 0;
}

static void free_roots(const struct mntcr_tree *t, char ***roots, size_t *n)
{
	for (size_t i = 0; i < t->n_sbs; i++)
		content_roots_free(roots[i], n[i]);
	free(roots);
	free(n);
}

static struct archive_entry *entry(const char *name, unsigned type, mode_t perm, int64_t size)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_uid(e, getuid());
	archive_entry_set_gid(e, getgid());
	archive_entry_set_size(e, size);
	archive_entry_set_mtime(e, 1234567890, 123456789);
	archive_entry_set_atime(e, 1111111111, 42);
	return e;
}

static int put(struct image_writer *w, struct archive_entry *e, size_t sb, const char *data,
	       size_t n)
{
	int r = image_write_entry(w, e, sb);

	if (r == 0 && data)
		r = image_write_data(w, data, n);
	archive_entry_free(e);
	return r;
}

static char *slurp_fd(int fd, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;

	lseek(fd, 0, SEEK_SET);
	if (read_full_fd(fd, &buf, &len, SIZE_MAX) < 0)
		return NULL;
	*ret_len = len;
	return buf;
}

static int memfd_with(const void *buf, size_t n)
{
	int fd = memfd_create("image", MFD_CLOEXEC);

	if (fd < 0 || (n && write(fd, buf, n) != (ssize_t)n))
		return -EIO;
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* A good image of sb 1 with every kind of member, as bytes. */
static int good_image(char **ret, size_t *ret_len)
{
	struct mntcr_tree *t = sample_tree();
	struct image_writer *w = NULL;
	char ***roots = NULL, data[4096];
	size_t *n = NULL;
	int fd = -1, r;
	struct archive_entry *e;

	memset(data, 'x', sizeof(data));
	if (!t || (r = open_writer(t, &fd, &w, &roots, &n)) < 0)
		return -EIO;
	e = entry("content/1", AE_IFDIR, 0750, 0);
	archive_entry_set_mtime(e, 1000, 5);
	archive_entry_set_atime(e, 2000, 6);
	if ((r = put(w, e, 1, NULL, 0)) < 0)
		goto out;
	e = entry("content/1/dir", AE_IFDIR, 0700, 0);
	archive_entry_set_mtime(e, 3000, 7);
	if ((r = put(w, e, 1, NULL, 0)) < 0 ||
	    (r = put(w, entry("content/1/dir/file", AE_IFREG, 0640, 5), 1, "hello", 5)) < 0)
		goto out;
	/* 1 MiB with 4 KiB of data at 512 KiB: the writer is fed the holes as NULL. */
	e = entry("content/1/sparse", AE_IFREG, 0644, 1 << 20);
	archive_entry_sparse_add_entry(e, 512 << 10, 4096);
	if ((r = image_write_entry(w, e, 1)) < 0 ||
	    (r = image_write_data(w, NULL, 512 << 10)) < 0 ||
	    (r = image_write_data(w, data, sizeof(data))) < 0 ||
	    (r = image_write_data(w, NULL, (512 << 10) - 4096)) < 0)
		goto out;
	archive_entry_free(e);
	/* Holes only: one empty block at the end. */
	e = entry("content/1/holes", AE_IFREG, 0600, 65536);
	archive_entry_sparse_add_entry(e, 65536, 0);
	if ((r = image_write_entry(w, e, 1)) < 0 || (r = image_write_data(w, NULL, 65536)) < 0)
		goto out;
	archive_entry_free(e);
	e = entry("content/1/sock", AE_IFREG, 0751, 0);
	archive_entry_xattr_add_entry(e, CONTENT_ATTR_TYPE, CONTENT_TYPE_SOCKET, 6);
	if ((r = put(w, e, 1, NULL, 0)) < 0 ||
	    (r = put(w, entry("content/1/fifo", AE_IFIFO, 0620, 0), 1, NULL, 0)) < 0)
		goto out;
	e = entry("content/1/link", AE_IFLNK, 0777, 0);
	archive_entry_set_symlink(e, "dir/file");
	if ((r = put(w, e, 1, NULL, 0)) < 0)
		goto out;
	e = entry("content/1/hard", AE_IFREG, 0640, 0);
	archive_entry_set_hardlink(e, "content/1/dir/file");
	if ((r = put(w, e, 1, NULL, 0)) < 0)
		goto out;
	e = entry("content/2/sub", AE_IFDIR, 0755, 0);
	if ((r = put(w, e, 2, NULL, 0)) < 0 ||
	    (r = put(w, entry("content/2/sub/f", AE_IFREG, 0644, 2), 2, "ok", 2)) < 0)
		goto out;
	if ((r = image_writer_finish(w)) < 0)
		goto out;
	*ret = slurp_fd(fd, ret_len);
	r = *ret ? 0 : -EIO;
	e = NULL;
out:
	archive_entry_free(e);
	image_writer_free(w);
	free_roots(t, roots, n);
	mntcr_tree_free(t);
	close(fd);
	return r;
}

/* -------------------------------------------------------------------------- */

TEST(name_parse)
{
	static const struct {
		const char *name;
		uint64_t sb;
		const char *rel;
	} good[] = {
		{ "content/0", 0, "" },
		{ "content/0/", 0, "" },
		{ "content/12/a/b", 12, "a/b" },
		{ "content/3/a/", 3, "a" },
		{ "content/4294967295/x", 4294967295u, "x" },
		{ "content/1/..a/.b/c..", 1, "..a/.b/c.." },
	};
	static const char *bad[] = {
		"content/",
		"content/x",
		"content/01/a",
		"content/0/../etc",
		"content/0/./a",
		"content/0//a",
		"content/0/a//",
		"content/-1/a",
		"content0/a",
		"content/4294967296/a",
		"/content/0/a",
		"contents/0/a",
		"content/0/..",
		"content/0/a/..",
		"content/0/a/./b",
		"/etc/passwd",
		"../content/0/a",
		"content/0a",
		"",
	};
	char *longname = malloc(CONTENT_NAME_MAX + 2);

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		uint64_t sb = 99;
		const char *rel = NULL;
		size_t len = 99;

		CHECK_INT(content_name_parse(good[i].name, &sb, &rel, &len), 0);
		CHECK_INT(sb, good[i].sb);
		CHECK_INT(len, strlen(good[i].rel));
		CHECK(rel && strncmp(rel, good[i].rel, len) == 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t sb;
		const char *rel;
		size_t len;
		int r = content_name_parse(bad[i], &sb, &rel, &len);

		if (r != -EINVAL)
			printf("#   accepted %s\n", bad[i]);
		CHECK_INT(r, -EINVAL);
	}
	/* 8192 bytes are fine, 8193 are not */
	strcpy(longname, "content/0/");
	memset(longname + 10, 'a', CONTENT_NAME_MAX - 10);
	longname[CONTENT_NAME_MAX] = 0;
	{
		uint64_t sb;
		const char *rel;
		size_t len;

		CHECK_INT(content_name_parse(longname, &sb, &rel, &len), 0);
		longname[CONTENT_NAME_MAX] = 'a';
		longname[CONTENT_NAME_MAX + 1] = 0;
		CHECK_INT(content_name_parse(longname, &sb, &rel, &len), -EINVAL);
	}
	free(longname);
}

TEST(rel_in_roots)
{
	char *all[] = { (char *)"/" };
	char *some[] = { (char *)"/a/b", (char *)"/c" };

	CHECK(content_rel_in_roots("", 0, all, 1));
	CHECK(content_rel_in_roots("x/y", 3, all, 1));
	CHECK(content_rel_in_roots("a/b", 3, some, 2));
	CHECK(content_rel_in_roots("a/b/c", 5, some, 2));
	CHECK(content_rel_in_roots("c", 1, some, 2));
	CHECK(!content_rel_in_roots("a/bc", 4, some, 2));
	CHECK(!content_rel_in_roots("a", 1, some, 2));
	CHECK(!content_rel_in_roots("cd", 2, some, 2));
	CHECK(!content_rel_in_roots("", 0, some, 2));
	/* the length counts, not the NUL: "a/b/" as a name with its trailing '/' */
	CHECK(content_rel_in_roots("a/b/", 3, some, 2));
}

TEST(roots)
{
	static const char text[] = "21 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
				   "22 21 0:40 /a/b /1 rw - tmpfs t rw\n"
				   "23 21 0:40 /a /2 rw - tmpfs t rw\n"
				   "24 21 0:40 /c/d /3 rw - tmpfs t rw\n"
				   "25 21 0:40 /c/dd /4 rw - tmpfs t rw\n"
				   "26 21 0:40 /a/x//deleted /5 rw - tmpfs t rw\n"
				   "27 21 0:40 /c/d/e /6 rw - tmpfs t rw\n"
				   "28 21 0:41 / /7 rw - ramfs r rw\n"
				   "29 21 0:41 /q /8 rw - ramfs r rw\n"
				   "30 21 0:42 / /9 rw - proc proc rw\n";
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	struct mntcr_tree *t = NULL;
	char **v;
	size_t n;

	CHECK(f && mntcr_tree_parse_mountinfo(f, &t) == 0);
	fclose(f);
	if (!t)
		return;
	for (size_t i = 0; i < t->n_sbs; i++) {
		t->sbs[i].owned = !streq(t->sbs[i].fstype, "ext4");
		CHECK_INT(content_roots(t, i, &v, &n), 0);
		if (streq(t->sbs[i].fstype, "tmpfs")) {
			CHECK_INT(n, 3);
			if (n == 3) {
				CHECK_STREQ(v[0], "/a");
				CHECK_STREQ(v[1], "/c/d");
				CHECK_STREQ(v[2], "/c/dd");
			}
		} else if (streq(t->sbs[i].fstype, "ramfs")) {
			CHECK_INT(n, 1);
			if (n == 1)
				CHECK_STREQ(v[0], "/");
		} else
			CHECK_INT(n, 0); /* ext4 (external), proc (no content) */
		content_roots_free(v, n);
	}
	/* An external tmpfs has no content. */
	for (size_t i = 0; i < t->n_sbs; i++)
		t->sbs[i].owned = false;
	CHECK_INT(content_roots(t, 1, &v, &n), 0);
	CHECK_INT(n, 0);
	mntcr_tree_free(t);
}

TEST(attrs)
{
	struct content_attrs a = { 0 };
	struct archive_entry *e;

	e = entry("content/0/x", AE_IFREG, 0644, 0);
	archive_entry_xattr_add_entry(e, "user.b", "2", 1);
	archive_entry_xattr_add_entry(e, "user.a", "1", 1);
	archive_entry_xattr_add_entry(e, "user.a", "1", 1); /* as libarchive reads pax xattrs */
	archive_entry_xattr_add_entry(e, "security.capability", "\0\0", 2);
	CHECK_INT(content_attrs_get(e, &a), 0);
	CHECK_INT(a.n, 3);
	if (a.n == 3) {
		CHECK_STREQ(a.x[0].name, "security.capability");
		CHECK_STREQ(a.x[1].name, "user.a");
		CHECK_STREQ(a.x[2].name, "user.b");
		CHECK_INT(a.x[0].size, 2);
	}
	CHECK(!a.socket);
	archive_entry_xattr_add_entry(e, "user.a", "9", 1);
	CHECK_INT(content_attrs_get(e, &a), -EBADMSG); /* one name, two values */
	archive_entry_free(e);

	static const char *bad_names[] = { "foo.bar", "user.", "mntcr.other", "", "trusted" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
		e = entry("content/0/x", AE_IFREG, 0644, 0);
		archive_entry_xattr_add_entry(e, bad_names[i], "v", 1);
		CHECK_INT(content_attrs_get(e, &a), -EBADMSG);
		archive_entry_free(e);
	}

	/* The socket marker: an empty regular file only, and only "socket". */
	e = entry("content/0/s", AE_IFREG, 0755, 0);
	archive_entry_xattr_add_entry(e, CONTENT_ATTR_TYPE, CONTENT_TYPE_SOCKET, 6);
	CHECK_INT(content_attrs_get(e, &a), 0);
	CHECK(a.socket);
	CHECK_INT(a.n, 0);
	archive_entry_free(e);
	e = entry("content/0/s", AE_IFREG, 0755, 3);
	archive_entry_xattr_add_entry(e, CONTENT_ATTR_TYPE, CONTENT_TYPE_SOCKET, 6);
	CHECK_INT(content_attrs_get(e, &a), -EBADMSG);
	archive_entry_free(e);
	e = entry("content/0/s", AE_IFDIR, 0755, 0);
	archive_entry_xattr_add_entry(e, CONTENT_ATTR_TYPE, CONTENT_TYPE_SOCKET, 6);
	CHECK_INT(content_attrs_get(e, &a), -EBADMSG);
	archive_entry_free(e);
	e = entry("content/0/s", AE_IFREG, 0755, 0);
	archive_entry_xattr_add_entry(e, CONTENT_ATTR_TYPE, "fifo", 4);
	CHECK_INT(content_attrs_get(e, &a), -EBADMSG);
	archive_entry_free(e);
	content_attrs_release(&a);
}

/* The encodings, as a tar reader sees them. */
TEST(encoding)
{
	_cleanup_free_ char *img = NULL;
	size_t len = 0;

	CHECK_INT(good_image(&img, &len), 0);
	if (!img)
		return;
	/* version 5 (version 2's layout), with the manifest's digest member */
	CHECK(memmem(img, len, "mntcr-image\nversion 5\n", 22) != NULL);
	CHECK(memmem(img, len, "manifest.checksum", 17) != NULL);
	/* a socket: an empty regular file with the attribute */
	CHECK(memmem(img, len, "SCHILY.xattr.mntcr.type=socket", 30) != NULL);
	/* a sparse file: GNU sparse 1.0 in pax, and its holes are not stored */
	CHECK(memmem(img, len, "GNU.sparse.major=1", 18) != NULL);
	CHECK(memmem(img, len, "GNU.sparse.realsize=1048576", 27) != NULL);
	CHECK(len < 64 << 10);
	/* times with nanoseconds, atime too */
	CHECK(memmem(img, len, "mtime=1234567890.123456789", 26) != NULL);
	CHECK(memmem(img, len, "atime=1111111111.000000042", 26) != NULL);
}

static int make_tmpdir(char *tmpl)
{
	strcpy(tmpl, "/tmp/mntcr-test-content.XXXXXX");
	return mkdtemp(tmpl) ? 0 : -errno;
}

static void rm_rf(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf --one-file-system '%s'", dir);
	if (system(cmd) != 0)
		printf("#   failed to remove %s\n", dir);
}

TEST(roundtrip)
{
	_cleanup_free_ char *img = NULL;
	char dir[64], path[256], buf[64];
	struct mntcr_image *image = NULL;
	const struct mntcr_tree *t;
	struct stat st, st2;
	const char *call;
	char *member = NULL;
	uint64_t files, bytes;
	size_t len = 0;
	int fd, rootfd, r;

	CHECK_INT(good_image(&img, &len), 0);
	CHECK_INT(make_tmpdir(dir), 0);
	if (!img)
		return;

	/* Counted and checked by mntcr_image_finish(). */
	fd = memfd_with(img, len);
	CHECK_INT(mntcr_image_open(fd, &image), 0);
	CHECK(mntcr_image_has_content(image));
	CHECK_INT(mntcr_image_finish(image), 0);
	CHECK_INT(mntcr_image_content_stats(image, 1, &files, &bytes), 0);
	CHECK_INT(files, 9);
	CHECK_INT(bytes, 5 + (1 << 20) + 65536);
	CHECK_INT(mntcr_image_content_stats(image, 2, &files, &bytes), 0);
	CHECK_INT(files, 2);
	CHECK_INT(mntcr_image_content_stats(image, 0, &files, &bytes), -ENODATA);
	CHECK_INT(mntcr_image_content_n_roots(image, 2), 1);
	CHECK_STREQ(mntcr_image_content_root(image, 2, 0), "/sub");
	image = mntcr_image_free(image);
	close(fd);

	/* Extracted into a directory. */
	fd = memfd_with(img, len);
	CHECK_INT(mntcr_image_open(fd, &image), 0);
	t = mntcr_image_tree(image);
	CHECK(t && t->sbs[1].n_content_roots == 1);
	rootfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	r = content_extract(image, 1, rootfd, &member, &call);
	if (r < 0)
		printf("#   extract: %s at %s (%s)\n", strerror(-r), member ? member : "?",
		       call ? call : "?");
	CHECK_INT(r, 0);
	free(member);
	/* sb 2's members are next: the end of the content comes after them */
	CHECK_INT(image_content_end(image), -EBADMSG);
	image = mntcr_image_free(image);
	close(fd);

	CHECK_INT(stat(dir, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0750);
	CHECK_INT(st.st_mtim.tv_sec, 1000);
	CHECK_INT(st.st_mtim.tv_nsec, 5);
	CHECK_INT(st.st_atim.tv_sec, 2000);
	snprintf(path, sizeof(path), "%s/dir", dir);
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0700);
	CHECK_INT(st.st_mtim.tv_sec, 3000); /* set after its file was made */
	CHECK_INT(st.st_mtim.tv_nsec, 7);
	snprintf(path, sizeof(path), "%s/dir/file", dir);
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0640);
	CHECK_INT(st.st_size, 5);
	CHECK_INT(st.st_mtim.tv_nsec, 123456789);
	CHECK_INT(st.st_atim.tv_sec, 1111111111);
	CHECK_INT(st.st_atim.tv_nsec, 42);
	CHECK_INT(st.st_nlink, 2);
	snprintf(path, sizeof(path), "%s/hard", dir);
	CHECK_INT(stat(path, &st2), 0);
	CHECK_INT(st2.st_ino, st.st_ino);
	snprintf(path, sizeof(path), "%s/sparse", dir);
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_size, 1 << 20);
	CHECK(st.st_blocks * 512 < 256 << 10); /* the holes stayed holes */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(pread(fd, buf, 2, (512 << 10) - 1) == 2 && buf[0] == 0 && buf[1] == 'x');
	close(fd);
	snprintf(path, sizeof(path), "%s/holes", dir);
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_size, 65536);
	CHECK(st.st_blocks == 0);
	snprintf(path, sizeof(path), "%s/sock", dir);
	CHECK_INT(lstat(path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_INT(st.st_mode & 07777, 0751);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	CHECK_INT(lstat(path, &st), 0);
	CHECK(S_ISFIFO(st.st_mode));
	CHECK_INT(st.st_mode & 07777, 0620);
	snprintf(path, sizeof(path), "%s/link", dir);
	CHECK_INT(lstat(path, &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_INT(st.st_mtim.tv_sec, 1234567890);
	r = (int)readlink(path, buf, sizeof(buf) - 1);
	buf[r > 0 ? r : 0] = 0;
	CHECK_STREQ(buf, "dir/file");
	close(rootfd);
	rm_rf(dir);
}

TEST(digest)
{
	_cleanup_free_ char *img = NULL;
	struct mntcr_image *image = NULL;
	static const char *patches[] = {
		"hello",			  /* file data */
		"mtime=1234567890.123456789",	  /* a time in a pax record */
		"SCHILY.xattr.mntcr.type=socket", /* the socket marker's record */
		"dir/file",			  /* a symlink target */
	};
	size_t len = 0;

	CHECK_INT(good_image(&img, &len), 0);
	if (!img)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(patches); i++) {
		_cleanup_free_ char *copy = malloc(len);
		char *p;
		int fd, r;

		memcpy(copy, img, len);
		p = memmem(copy, len, patches[i], strlen(patches[i]));
		CHECK(p != NULL);
		if (!p)
			continue;
		/* the same length, another last character: tar's own checks do not see it */
		p[strlen(patches[i]) - 1] ^= 1;
		fd = memfd_with(copy, len);
		r = mntcr_image_open(fd, &image);
		if (r == 0)
			r = mntcr_image_finish(image);
		if (r != -EBADMSG)
			printf("#   patch %s: %d\n", patches[i], r);
		CHECK_INT(r, -EBADMSG);
		image = mntcr_image_free(image);
		close(fd);
	}
}

/* Every cut and many flipped bytes of a version 2 image: refused, or read the same. */
TEST(cut_and_flipped)
{
	_cleanup_free_ char *img = NULL;
	size_t len = 0, accepted = 0, flips = 0;
	size_t end; /* where the end-of-archive blocks start: the checksum has been read by then */
	char *p;

	CHECK_INT(good_image(&img, &len), 0);
	if (!img)
		return;
	p = memmem(img, len, "\"members\"", 9);
	CHECK(p != NULL);
	if (!p)
		return;
	end = ((size_t)(p - img) + 511) / 512 * 512;
	for (size_t cut = 0; cut < len; cut += 37) {
		struct mntcr_image *image = NULL;
		int fd = memfd_with(img, cut), r;

		r = mntcr_image_open(fd, &image);
		if (r == 0)
			r = mntcr_image_finish(image);
		if (cut < end && r != -EBADMSG)
			printf("#   cut at %zu of %zu: %d\n", cut, len, r);
		CHECK(cut >= end || r == -EBADMSG);
		mntcr_image_free(image);
		close(fd);
	}
	for (size_t off = 0; off < len; off += 13) {
		_cleanup_free_ char *copy = malloc(len);
		struct mntcr_image *image = NULL;
		uint64_t files = 0, bytes = 0;
		int fd, r;

		memcpy(copy, img, len);
		copy[off] ^= 0x20;
		fd = memfd_with(copy, len);
		r = mntcr_image_open(fd, &image);
		if (r == 0)
			r = mntcr_image_finish(image);
		if (r == 0) {
			/* what passes is what was there */
			accepted++;
			CHECK_INT(mntcr_image_content_stats(image, 1, &files, &bytes), 0);
			CHECK_INT(files, 9);
		} else
			CHECK(r == -EBADMSG || r == -EPROTO);
		flips++;
		mntcr_image_free(image);
		close(fd);
	}
	printf("# %zu-byte image: %zu flips, %zu accepted (padding and the like)\n", len, flips,
	       accepted);
}

/* -------------------------------------------------------------------------- */
/* Hostile archives: the members of a good prefix, then members written raw. */

struct raw {
	const char *name;
	unsigned type;
	const char *data;    /* regular files */
	const char *link;    /* hard link target */
	const char *symlink; /* symlink target */
	const char *xattr;   /* an attribute name, value "v" */
};

static int hostile_image(const struct raw *m, size_t n, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *good = NULL;
	struct archive *in = archive_read_new(), *out = archive_write_new();
	struct archive_entry *e;
	char *buf = NULL;
	size_t len = 0, blen = 0;
	FILE *f;
	int r = 0;

	if (good_image(&good, &len) < 0)
		return -EIO;
	f = open_memstream(&buf, &blen);
	archive_read_support_format_tar(in);
	archive_read_open_memory(in, good, len);
	archive_write_set_format_pax(out);
	archive_write_set_bytes_in_last_block(out, 1);
	archive_write_open_FILE(out, f);
	/* the first three members as they are */
	for (int k = 0; k < 3 && archive_read_next_header(in, &e) == ARCHIVE_OK; k++) {
		char data[65536];
		la_ssize_t got;

		archive_write_header(out, e);
		while ((got = archive_read_data(in, data, sizeof(data))) > 0)
			archive_write_data(out, data, (size_t)got);
	}
	for (size_t i = 0; i < n; i++) {
		e = entry(m[i].name, m[i].type, 0644, m[i].data ? (int64_t)strlen(m[i].data) : 0);
		if (m[i].link)
			archive_entry_set_hardlink(e, m[i].link);
		if (m[i].symlink)
			archive_entry_set_symlink(e, m[i].symlink);
		if (m[i].xattr)
			archive_entry_xattr_add_entry(e, m[i].xattr, "v", 1);
		if (archive_write_header(out, e) < ARCHIVE_WARN)
			r = -EIO;
		if (m[i].data)
			archive_write_data(out, m[i].data, strlen(m[i].data));
		archive_entry_free(e);
	}
	/* a trailer that does not add up: nothing may get that far */
	e = entry("checksum", AE_IFREG, 0644, 2);
	archive_write_header(out, e);
	archive_write_data(out, "{}", 2);
	archive_entry_free(e);
	archive_write_close(out);
	archive_write_free(out);
	archive_read_free(in);
	fclose(f);
	*ret = buf;
	*ret_len = blen;
	return r;
}

/* Extract the hostile image's content into a fresh directory: the error, and the directory. */
static int extract_hostile(const struct raw *m, size_t n, char dir[static 64])
{
	_cleanup_free_ char *img = NULL;
	struct mntcr_image *image = NULL;
	const char *call;
	char *member = NULL;
	size_t len = 0;
	int fd, rootfd, r;

	if (make_tmpdir(dir) < 0 || hostile_image(m, n, &img, &len) < 0)
		return -EIO;
	fd = memfd_with(img, len);
	r = mntcr_image_open(fd, &image);
	/* sb 1 into dir, sb 2 into dir/2: the members of both are checked */
	for (size_t sb = 1; r == 0 && sb <= 2; sb++) {
		char sub[80];

		snprintf(sub, sizeof(sub), "%s/%zu", dir, sb);
		rootfd = sb == 1 ? open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)
				 : (mkdir(sub, 0700), open(sub, O_PATH | O_DIRECTORY | O_CLOEXEC));
		r = content_extract(image, sb, rootfd, &member, &call);
		close(rootfd);
		free(member);
		member = NULL;
	}
	free(member);
	mntcr_image_free(image);
	close(fd);
	return r;
}

TEST(hostile)
{
	char outside[64], dir[64], path[128];
	static const struct {
		const char *what;
		struct raw m[3];
		size_t n;
	} cases[] = {
		{ "a name with ..", { { "content/1/../x", AE_IFREG, "x" } }, 1 },
		{ "a name with . ", { { "content/1/./x", AE_IFREG, "x" } }, 1 },
		{ "an absolute name", { { "/etc/evil", AE_IFREG, "x" } }, 1 },
		{ "an absolute name inside", { { "content/1//etc/evil", AE_IFREG, "x" } }, 1 },
		{ "a hard link with ..",
		  { { "content/1/h", AE_IFREG, NULL, "content/1/../../etc/passwd" } },
		  1 },
		{ "a hard link to an absolute path",
		  { { "content/1/h", AE_IFREG, NULL, "/etc/passwd" } },
		  1 },
		{ "a hard link into another superblock",
		  { { "content/1/h", AE_IFREG, NULL, "content/2/sub/f" } },
		  1 },
		{ "a hard link to the root",
		  { { "content/1/h", AE_IFREG, NULL, "content/1" } },
		  1 },
		{ "a member outside the roots", { { "content/2/other", AE_IFREG, "x" } }, 1 },
		{ "content of a superblock without content",
		  { { "content/0/x", AE_IFREG, "x" } },
		  1 },
		{ "a superblock out of order",
		  { { "content/2/sub", AE_IFDIR }, { "content/1/x", AE_IFREG, "x" } },
		  2 },
		{ "a file as the filesystem's root", { { "content/1", AE_IFREG, "x" } }, 1 },
		{ "an attribute in no namespace",
		  { { "content/1/x", AE_IFREG, "x", NULL, NULL, "evil.x" } },
		  1 },
		{ "a symlink to nothing", { { "content/1/l", AE_IFLNK, NULL, NULL, "" } }, 1 },
		{ "a socket (tar cannot hold one)", { { "content/1/s", AE_IFSOCK } }, 1 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = extract_hostile(cases[i].m, cases[i].n, dir);

		if (r != -EBADMSG && r != -EIO)
			printf("#   %s: %d\n", cases[i].what, r);
		CHECK(r == -EBADMSG || r == -EIO);
		rm_rf(dir);
	}

	/* A symlink in the way of a later member is never followed. */
	CHECK_INT(make_tmpdir(outside), 0);
	{
		struct raw m[] = {
			{ "content/1/a", AE_IFLNK, NULL, NULL, outside },
			{ "content/1/a/evil", AE_IFREG, "x" },
		};
		CHECK_INT(extract_hostile(m, ARRAY_SIZE(m), dir), -EBADMSG);
		snprintf(path, sizeof(path), "%s/evil", outside);
		CHECK(access(path, F_OK) < 0);
		rm_rf(dir);
	}
	{
		/* ... nor is one that a later member would replace */
		struct raw m[] = {
			{ "content/1/l", AE_IFLNK, NULL, NULL, outside },
			{ "content/1/l", AE_IFDIR },
			{ "content/1/l/evil", AE_IFREG, "x" },
		};
		CHECK(extract_hostile(m, ARRAY_SIZE(m), dir) < 0);
		snprintf(path, sizeof(path), "%s/evil", outside);
		CHECK(access(path, F_OK) < 0);
		rm_rf(dir);
	}
	{
		/* a hard link to a symlink links the symlink, it does not follow it */
		struct raw m[] = {
			{ "content/1/l", AE_IFLNK, NULL, NULL, "/etc/passwd" },
			{ "content/1/h", AE_IFREG, NULL, "content/1/l" },
		};
		struct stat st;

		/* the trailer is bad: the members themselves go in */
		CHECK_INT(extract_hostile(m, ARRAY_SIZE(m), dir), 0);
		snprintf(path, sizeof(path), "%s/h", dir);
		CHECK_INT(lstat(path, &st), 0);
		CHECK(S_ISLNK(st.st_mode));
		rm_rf(dir);
	}
	rm_rf(outside);
}

TAP_MAIN
