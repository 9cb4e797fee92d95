/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mntcr-treesum DIR: a canonical listing of the filesystem tree at DIR, one
 * line per name, so that content before a dump and after a restore can be
 * compared with diff(1):
 *
 *   PATH TYPE MODE UID:GID size=N blocks=N mtime=S.NS atime=S.NS
 *        [-> TARGET] [rdev=MAJ:MIN] [link=K] [xattr NAME=XXH3...] [data=XXH3]
 *
 * Names are sorted; hard links share a group number K, numbered in the
 * order the walk meets them; blocks is st_blocks (a sparse file keeps its
 * holes); data and attribute values are given as XXH3-64 digests.
 *
 * It reads through a private, non-recursive clone of the mount at DIR
 * (open_tree(OPEN_TREE_CLONE)) made noatime, so that listing a tree changes
 * no atime (readdir and readlink would) and shows that one filesystem
 * only, with what child mounts hide; the namespace does not change. Root
 * only; without the new mount API it falls back to O_NOATIME opens.
 *
 * Two helpers for making test trees without other tools:
 *   mntcr-treesum --socket PATH              bind a unix socket file at PATH
 *   mntcr-treesum --setxattr PATH NAME HEX   set an attribute (not following PATH)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <linux/mount.h>

struct link {
	dev_t dev;
	ino_t ino;
	unsigned group;
};

static struct link *links;
static size_t n_links, cap_links;
static unsigned n_groups;
static char buf[1 << 20];

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned link_group(const struct stat *st)
{
	for (size_t i = 0; i < n_links; i++)
		if (links[i].dev == st->st_dev && links[i].ino == st->st_ino)
			return links[i].group;
	if (n_links == cap_links) {
		cap_links = cap_links ? 2 * cap_links : 64;
		links = realloc(links, cap_links * sizeof(*links));
		if (!links)
			abort();
	}
	links[n_links] = (struct link){ st->st_dev, st->st_ino, ++n_groups };
	return links[n_links++].group;
}

/* Print the node's attributes; path is a /proc/self/fd/N/NAME path, not followed. */
static void print_xattrs(const char *path)
{
	static char list[65536], val[65536];
	char *names[1024];
	size_t n = 0;
	ssize_t len = llistxattr(path, list, sizeof(list));

	for (char *p = list; len > 0 && p < list + len && n < 1024; p += strlen(p) + 1)
		names[n++] = p;
	qsort(names, n, sizeof(char *), cmp_name);
	for (size_t i = 0; i < n; i++) {
		ssize_t k = lgetxattr(path, names[i], val, sizeof(val));

		printf(" xattr %s=%016" PRIx64 "/%zd", names[i],
		       k >= 0 ? XXH3_64bits(val, (size_t)k) : 0, k);
	}
}

static int data_digest(int fd, uint64_t *ret)
{
	XXH3_state_t *h = XXH3_createState();
	ssize_t n;

	XXH3_64bits_reset(h);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		XXH3_64bits_update(h, buf, (size_t)n);
	*ret = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	return n < 0 ? -errno : 0;
}

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFDIR:
		return "dir";
	case S_IFREG:
		return "file";
	case S_IFLNK:
		return "symlink";
	case S_IFIFO:
		return "fifo";
	case S_IFCHR:
		return "chr";
	case S_IFBLK:
		return "blk";
	case S_IFSOCK:
		return "socket";
	}
	return "?";
}

/* One line for name in dirfd (name "." for the root), then its children. */
static int walk(int parent, const char *name, const char *path)
{
	char xpath[64 + 256 + 1];
	struct stat st;
	int r = 0;

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		fprintf(stderr, "mntcr-treesum: stat %s: %m\n", path);
		return -errno;
	}
	snprintf(xpath, sizeof(xpath), "/proc/self/fd/%d/%s", parent, name);
	printf("%s %s %06o %u:%u size=%lld blocks=%lld mtime=%lld.%09ld atime=%lld.%09ld", path,
	       type_name(st.st_mode), (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
	       (unsigned)st.st_gid, (long long)st.st_size, (long long)st.st_blocks,
	       (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_atim.tv_sec,
	       st.st_atim.tv_nsec);
	if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlinkat(parent, name, buf, sizeof(buf) - 1);

		buf[n > 0 ? n : 0] = 0;
		printf(" -> %s", buf);
	}
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		printf(" rdev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1)
		printf(" link=%u", link_group(&st));
	print_xattrs(xpath);
	if (S_ISREG(st.st_mode)) {
		int fd = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
		uint64_t d = 0;

		if (fd < 0 || data_digest(fd, &d) < 0) {
			fprintf(stderr, "mntcr-treesum: read %s: %m\n", path);
			r = -EIO;
		}
		if (fd >= 0)
			close(fd);
		printf(" data=%016" PRIx64, d);
	}
	printf("\n");
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(parent, name,
				O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		struct dirent *de;
		char **names = NULL;
		size_t n = 0, cap = 0;

		if (!d) {
			fprintf(stderr, "mntcr-treesum: opendir %s: %m\n", path);
			return -errno;
		}
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 64;
				names = realloc(names, cap * sizeof(char *));
				if (!names)
					abort();
			}
			names[n++] = strdup(de->d_name);
		}
		if (n > 1)
			qsort(names, n, sizeof(char *), cmp_name);
		for (size_t i = 0; i < n; i++) {
			char *sub;

			if (asprintf(&sub, "%s/%s", path, names[i]) < 0)
				abort();
			if (walk(dirfd(d), names[i], sub) < 0)
				r = -EIO;
			free(sub);
			free(names[i]);
		}
		free(names);
		closedir(d);
	}
	return r;
}

static int make_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "mntcr-treesum: socket %s: %m\n", path);
		return 1;
	}
	strcpy(sa.sun_path, path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "mntcr-treesum: bind %s: %m\n", path);
		return 1;
	}
	close(fd);
	return 0;
}

static int set_xattr(const char *path, const char *name, const char *hex)
{
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++)
		if (sscanf(hex + 2 * i, "%2hhx", (unsigned char *)&buf[i]) != 1)
			return 2;
	if (lsetxattr(path, name, buf, n, 0) < 0) {
		fprintf(stderr, "mntcr-treesum: lsetxattr %s %s: %m\n", path, name);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_NOATIME, .attr_clr = MOUNT_ATTR__ATIME };
	int root, r;

	if (argc == 3 && !strcmp(argv[1], "--socket"))
		return make_socket(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "--setxattr"))
		return set_xattr(argv[2], argv[3], argv[4]);
	if (argc != 2) {
		fprintf(stderr, "Usage: mntcr-treesum DIR\n");
		return 2;
	}
	root = open_tree(AT_FDCWD, argv[1], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (root >= 0 && mount_setattr(root, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
		fprintf(stderr, "mntcr-treesum: mount_setattr noatime: %m\n");
		return 1;
	}
	if (root < 0) {
		/* No new mount API: O_NOATIME opens only (readlink then moves symlink atimes). */
		root = open(argv[1], O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (root < 0) {
			fprintf(stderr, "mntcr-treesum: open %s: %m\n", argv[1]);
			return 1;
		}
	}
	r = walk(root, ".", ".");
	close(root);
	if (fflush(stdout) != 0)
		return 1;
	return r < 0 ? 1 : 0;
}
