/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The floor of the benchmark: the kernel's own cost of building a mount
 * namespace, and of reading one.
 *
 *   floor build [--persist FILE] [--chain-depth D] TOPO N DIR
 *   floor mountinfo PID
 *
 * build enters a new mount namespace (unshare, every mount private, as a
 * restorer does) and builds topology TOPO of N mounts on DIR with the
 * fewest mount-API calls: one fsopen+fsconfig+fsmount per new superblock,
 * one open_tree(OPEN_TREE_CLONE) per bind, one move_mount per mount, one
 * mount_setattr per shared, slave or unbindable mount, plus the mkdir of
 * each mountpoint. No bookkeeping: no tree, no plan, no strings kept. With
 * --persist it binds the new namespace on FILE (created beforehand) from
 * the namespace it started in, as `mntcr restore --persist` does, so the
 * namespace outlives it and can be dumped.
 *
 * Topologies (N mounts in all, the base tmpfs on DIR included):
 *   tmpfs  N-1 tmpfs in one parent tmpfs
 *   binds  one source tmpfs and N-2 binds of it, all in one parent tmpfs
 *   chain  chains of nested tmpfs, each D deep (DIR/cK/a/a/a/...)
 *   mix    units of 12 mounts: a shared tmpfs with two peers, a slave bind
 *          of a subdirectory, a shared+slave bind, a stack of three tmpfs,
 *          an over-mount (tmpfs over a tmpfs that has a child), an
 *          unbindable tmpfs; the rest (N mod 12) plain tmpfs
 *
 * It prints one line: "mounts=M build_ms=B total_ms=T", B from unshare to
 * the last mount, T from the start of main to the end of --persist.
 *
 * mountinfo reads /proc/PID/mountinfo to the end, asking for 1 MiB a read
 * (the kernel returns a page of lines a read), and
 * prints "bytes=N read_ms=R".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/mount.h>

#ifndef NS_GET_MNTNS_ID
#define NS_GET_MNTNS_ID _IOR(0xb7, 0x5, uint64_t)
#endif

static size_t n_made;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static _Noreturn void die(const char *what, const char *arg)
{
	fprintf(stderr, "floor: %s%s%s: %s (after %zu mounts)\n", what, arg ? " " : "", arg ? arg : "",
		strerror(errno), n_made);
	exit(1);
}

/* A new tmpfs, detached. */
static int new_tmpfs(void)
{
	int fsfd, fd;

	fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		die("fsopen", "tmpfs");
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die("fsconfig", "create");
	fd = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
	if (fd < 0)
		die("fsmount", NULL);
	close(fsfd);
	return fd;
}

static int clone_of(int src, const char *path)
{
	int fd = open_tree(src, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (*path ? 0 : AT_EMPTY_PATH));

	if (fd < 0)
		die("open_tree", path);
	return fd;
}

static void attach(int fd, int dfd, const char *path)
{
	if (move_mount(fd, "", dfd, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("move_mount", path);
	n_made++;
}

static void mkdir_in(int dfd, const char *path)
{
	if (mkdirat(dfd, path, 0755) < 0 && errno != EEXIST)
		die("mkdirat", path);
}

static void propagation(int fd, uint64_t prop)
{
	struct mount_attr a = { .propagation = prop };

	if (mount_setattr(fd, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
		die("mount_setattr", "propagation");
}

/* mkdir DIR/name, a new tmpfs on it; returns its fd (closed by the caller). */
static int tmpfs_at(int dfd, const char *name)
{
	int fd = new_tmpfs();

	mkdir_in(dfd, name);
	attach(fd, dfd, name);
	return fd;
}

static void build_tmpfs(int base, size_t n)
{
	char name[32];

	for (size_t i = 1; i < n; i++) {
		snprintf(name, sizeof(name), "%zu", i);
		close(tmpfs_at(base, name));
	}
}

static void build_binds(int base, size_t n)
{
	int src = n > 1 ? tmpfs_at(base, "s") : -1;
	char name[32];

	for (size_t i = 2; i < n; i++) {
		int fd = clone_of(src, "");

		snprintf(name, sizeof(name), "%zu", i);
		mkdir_in(base, name);
		attach(fd, base, name);
		close(fd);
	}
	if (src >= 0)
		close(src);
}

static void build_chain(int base, size_t n, size_t depth)
{
	char name[32];
	size_t left = n - 1;

	for (size_t c = 0; left > 0; c++) {
		int prev = base;
		const char *at = name;

		snprintf(name, sizeof(name), "c%zu", c);
		mkdir_in(base, name);
		for (size_t d = 0; d < depth && left > 0; d++, left--) {
			int fd = new_tmpfs();

			if (d + 1 < depth && left > 1)
				mkdir_in(fd, "a");
			attach(fd, prev, at);
			if (prev != base)
				close(prev);
			prev = fd;
			at = "a";
		}
		if (prev != base)
			close(prev);
	}
}

/* 12 mounts; see the header. */
static void build_mix_unit(int base, size_t u)
{
	char dir[32];
	int ud, a, fd, l, t;

	snprintf(dir, sizeof(dir), "u%zu", u);
	mkdir_in(base, dir);
	ud = openat(base, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ud < 0)
		die("openat", dir);

	/* a shared tmpfs (a child directory d for the slave's root), two peers */
	a = new_tmpfs();
	mkdir_in(a, "d");
	mkdir_in(ud, "a");
	attach(a, ud, "a");
	propagation(a, MS_SHARED);
	for (int i = 1; i <= 2; i++) {
		char p[8];

		snprintf(p, sizeof(p), "p%d", i);
		fd = clone_of(a, ""); /* a clone of a shared mount is its peer */
		mkdir_in(ud, p);
		attach(fd, ud, p);
		close(fd);
	}
	/* a slave bind of a/d */
	fd = clone_of(a, "d");
	mkdir_in(ud, "s");
	attach(fd, ud, "s");
	propagation(fd, MS_SLAVE);
	close(fd);
	/* shared and slave: a peer, then slave, then shared */
	fd = clone_of(a, "");
	mkdir_in(ud, "ss");
	attach(fd, ud, "ss");
	propagation(fd, MS_SLAVE);
	propagation(fd, MS_SHARED);
	close(fd);
	close(a);
	/* a stack of three */
	mkdir_in(ud, "st");
	for (int i = 0; i < 3; i++) {
		fd = new_tmpfs();
		attach(fd, ud, "st");
		close(fd);
	}
	/* an over-mount: L with a child B, then T over L */
	l = tmpfs_at(ud, "o");
	close(tmpfs_at(l, "b"));
	close(l);
	t = new_tmpfs();
	attach(t, ud, "o");
	close(t);
	/* unbindable */
	fd = tmpfs_at(ud, "ub");
	propagation(fd, MS_UNBINDABLE);
	close(fd);
	close(ud);
}

static void build_mix(int base, size_t n)
{
	size_t units = (n - 1) / 12, rest = (n - 1) % 12;
	char name[32];

	for (size_t u = 0; u < units; u++)
		build_mix_unit(base, u);
	for (size_t i = 0; i < rest; i++) {
		snprintf(name, sizeof(name), "r%zu", i);
		close(tmpfs_at(base, name));
	}
}

static uint64_t mntns_id(void)
{
	uint64_t id = 0;
	int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || ioctl(fd, NS_GET_MNTNS_ID, &id) < 0)
		die("NS_GET_MNTNS_ID", NULL);
	close(fd);
	return id;
}

/*
 * unshare(CLONE_NEWNS) until the new namespace's id is above the old one:
 * a namespace file can only be bound by a namespace with a lower id, and
 * Linux 6.18 hands out ids from per-CPU batches (the same dance as mntcr's
 * exec.c; one unshare in the common case).
 */
static void unshare_newer(bool need_newer)
{
	uint64_t cur = need_newer ? mntns_id() : 0;
	cpu_set_t orig, one;

	if (sched_getaffinity(0, sizeof(orig), &orig) < 0)
		die("sched_getaffinity", NULL);
	for (int round = 0; round < 2; round++)
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (!CPU_ISSET(cpu, &orig))
				continue;
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			if (need_newer)
				(void)sched_setaffinity(0, sizeof(one), &one);
			if (unshare(CLONE_NEWNS) < 0)
				die("unshare", NULL);
			if (!need_newer || mntns_id() > cur) {
				(void)sched_setaffinity(0, sizeof(orig), &orig);
				return;
			}
		}
	errno = EAGAIN;
	die("unshare", "(no namespace id above the old one)");
}

static int cmd_build(int argc, char **argv)
{
	double t0 = now_ms(), t1, t2;
	const char *persist = NULL, *topo, *dir;
	size_t n, depth = 0;
	int orig = -1, base;

	while (argc > 1 && argv[1][0] == '-') {
		if (!strcmp(argv[1], "--persist") && argc > 2)
			persist = argv[2];
		else if (!strcmp(argv[1], "--chain-depth") && argc > 2)
			depth = strtoul(argv[2], NULL, 10);
		else
			break;
		argc -= 2;
		argv += 2;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: floor build [--persist FILE] [--chain-depth D] TOPO N DIR\n");
		return 2;
	}
	topo = argv[1];
	n = strtoul(argv[2], NULL, 10);
	dir = argv[3];
	if (n < 1)
		n = 1;
	if (!depth) /* as deep as PATH_MAX allows: DIR + "/cNNNNN" + depth * "/a" */
		depth = (PATH_MAX - 1 - strlen(dir) - 8) / 2;

	if (persist) {
		orig = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		if (orig < 0)
			die("open", "/proc/self/ns/mnt");
	}
	t1 = now_ms();
	unshare_newer(persist != NULL);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("mount", "MS_REC|MS_PRIVATE /");

	base = new_tmpfs();
	attach(base, AT_FDCWD, dir);
	if (!strcmp(topo, "tmpfs"))
		build_tmpfs(base, n);
	else if (!strcmp(topo, "binds"))
		build_binds(base, n);
	else if (!strcmp(topo, "chain"))
		build_chain(base, n, depth);
	else if (!strcmp(topo, "mix"))
		build_mix(base, n);
	else {
		fprintf(stderr, "floor: unknown topology %s (tmpfs, binds, chain, mix)\n", topo);
		return 2;
	}
	close(base);
	t2 = now_ms();

	if (persist) {
		char src[64];
		int nsfd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);

		if (nsfd < 0)
			die("open", "/proc/self/ns/mnt");
		if (setns(orig, CLONE_NEWNS) < 0)
			die("setns", NULL);
		snprintf(src, sizeof(src), "/proc/self/fd/%d", nsfd);
		if (mount(src, persist, NULL, MS_BIND, NULL) < 0)
			die("mount MS_BIND", persist);
		close(nsfd);
		close(orig);
	}
	printf("mounts=%zu build_ms=%.3f total_ms=%.3f depth=%zu\n", n_made, t2 - t1, now_ms() - t0,
	       !strcmp(topo, "chain") ? depth : 0);
	return 0;
}

static int cmd_mountinfo(int argc, char **argv)
{
	static char buf[1 << 20];
	double t0 = now_ms();
	size_t total = 0;
	char path[64];
	ssize_t k;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: floor mountinfo PID\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/%s/mountinfo", argv[1]);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open", path);
	while ((k = read(fd, buf, sizeof(buf))) > 0)
		total += (size_t)k;
	if (k < 0)
		die("read", path);
	close(fd);
	printf("bytes=%zu read_ms=%.3f\n", total, now_ms() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "build"))
		return cmd_build(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "mountinfo"))
		return cmd_mountinfo(argc - 1, argv + 1);
	fprintf(stderr, "usage: floor build [--persist FILE] [--chain-depth D] TOPO N DIR\n"
			"       floor mountinfo PID\n");
	return 2;
}
