/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void dump_usage(FILE *f)
{
	fprintf(f, "Usage: mntcr dump (--pid PID... | --tree PID) --output FILE [--mountinfo]\n"
		   "                  [--no-content] [--compress=zstd|gzip|none]\n"
		   "Write the mount namespace of PID to an image (FILE '-' = standard output),\n"
		   "with the files of the tmpfs and ramfs filesystems only it has.\n"
		   "  -p, --pid PID     a process; repeat it for several, whose namespaces (each\n"
		   "                    once) go into one image, with each process's root and cwd\n"
		   "  -t, --tree PID    PID and all its descendants\n");
}

static int add_pid(pid_t **pids, size_t *n, pid_t pid)
{
	pid_t *p;

	for (size_t i = 0; i < *n; i++)
		if ((*pids)[i] == pid)
			return 0;
	p = realloc(*pids, (*n + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	*pids = p;
	(*pids)[(*n)++] = pid;
	return 0;
}

/* The parent of process pid, from /proc/PID/stat ("pid (comm) state ppid ..."). */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	int ppid = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* comm may hold anything, ')' included */
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return 0;
	return (pid_t)ppid;
}

struct proc_parent {
	pid_t pid, ppid;
};

static int cmp_by_parent(const void *a, const void *b)
{
	const struct proc_parent *x = a, *y = b;

	if (x->ppid != y->ppid)
		return x->ppid < y->ppid ? -1 : 1;
	return x->pid < y->pid ? -1 : (x->pid > y->pid ? 1 : 0);
}

/* root and its descendants, breadth first (parents before children), after what *pids has. */
static int add_tree(pid_t **pids, size_t *n, pid_t root)
{
	DIR *d = opendir("/proc");
	struct proc_parent *all = NULL;
	pid_t *tree = NULL;
	size_t n_all = 0, cap = 0, n_tree = 0;
	struct dirent *de;
	int r = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t pid;

		if (!cli_parse_pid(de->d_name, &pid))
			continue;
		if (n_all == cap) {
			struct proc_parent *a = realloc(all, (cap = cap ? cap * 2 : 256) * sizeof(*a));

			if (!a) {
				r = -ENOMEM;
				break;
			}
			all = a;
		}
		all[n_all++] = (struct proc_parent){ .pid = pid, .ppid = parent_of(pid) };
	}
	closedir(d);
	/* sorted by parent: the children of a process are one run, found by binary search */
	if (r == 0)
		qsort(all, n_all, sizeof(*all), cmp_by_parent);
	if (r == 0 && !(tree = malloc((n_all + 1) * sizeof(*tree))))
		r = -ENOMEM;
	if (r == 0)
		tree[n_tree++] = root;
	for (size_t i = 0; r == 0 && i < n_tree; i++) {
		size_t lo = 0, hi = n_all;

		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (all[mid].ppid < tree[i])
				lo = mid + 1;
			else
				hi = mid;
		}
		/* at most n_all besides root, even if /proc changed while it was read */
		for (; lo < n_all && all[lo].ppid == tree[i] && n_tree <= n_all; lo++)
			tree[n_tree++] = all[lo].pid;
	}
	for (size_t i = 0; r == 0 && i < n_tree; i++)
		r = add_pid(pids, n, tree[i]);
	free(tree);
	free(all);
	return r;
}

int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "tree", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "mountinfo", no_argument, NULL, 'M' },
		{ "no-content", no_argument, NULL, 'N' },
		{ "compress", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct mntcr_tree *t = NULL;
	const char *output = NULL, *tmp_path = NULL;
	char *tmp = NULL;
	unsigned read_flags = 0, image_flags = 0, compress = MNTCR_IMAGE_ZSTD;
	_cleanup_free_ pid_t *pids = NULL;
	size_t n_pids = 0;
	bool tree = false;
	pid_t pid = 0;
	int c, r, fd, ret;

	while ((c = getopt_long(argc, argv, "p:t:o:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'p':
		case 't':
			if (!cli_parse_pid(optarg, &pid)) {
				cli_error("Invalid pid '%s'", optarg);
				return EXIT_USAGE;
			}
			if (c == 't') {
				char path[32];

				snprintf(path, sizeof(path), "/proc/%d", (int)pid);
				if (access(path, F_OK) < 0)
					return cli_pid_error(pid, -ESRCH);
				r = add_tree(&pids, &n_pids, pid);
				tree = true;
			} else
				r = add_pid(&pids, &n_pids, pid);
			if (r < 0)
				return cli_error("Failed to list the processes: %s", strerror(-r));
			break;
		case 'o':
			output = optarg;
			break;
		case 'M':
			read_flags |= MNTCR_READ_MOUNTINFO;
			break;
		case 'N':
			image_flags |= MNTCR_IMAGE_NO_CONTENT;
			break;
		case 'C':
			if (strcmp(optarg, "zstd") == 0)
				compress = MNTCR_IMAGE_ZSTD;
			else if (strcmp(optarg, "gzip") == 0)
				compress = MNTCR_IMAGE_GZIP;
			else if (strcmp(optarg, "none") == 0)
				compress = 0;
			else {
				cli_error("Invalid --compress '%s': expected zstd, gzip or none", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			dump_usage(stdout);
			return EXIT_OK;
		default:
			dump_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || !n_pids || !output) {
		if (optind < argc)
			cli_error("Unexpected argument '%s'", argv[optind]);
		else
			cli_error("--pid (or --tree) and --output are required");
		return EXIT_USAGE;
	}
	if (strcmp(output, "-") == 0 && isatty(STDOUT_FILENO)) {
		cli_error("Refusing to write an image to a terminal");
		return EXIT_USAGE;
	}

	/* One process: its namespace. Several (or --tree): each namespace once, and the processes. */
	if (n_pids == 1 && !tree)
		r = mntcr_tree_read_pid(pids[0], read_flags, &t);
	else
		r = mntcr_tree_read_pids(pids, n_pids, read_flags, &t);
	if (r < 0)
		return cli_pids_error(pids, n_pids, r);

	/* Write next to the target and rename, so that a failed dump leaves no half image. */
	if (strcmp(output, "-") == 0)
		fd = STDOUT_FILENO;
	else {
		if (asprintf(&tmp, "%s.tmpXXXXXX", output) < 0) {
			mntcr_tree_free(t);
			return cli_error("Out of memory");
		}
		fd = mkostemp(tmp, O_CLOEXEC);
		if (fd < 0) {
			cli_error("Failed to create %s: %s", output, strerror(errno));
			free(tmp);
			mntcr_tree_free(t);
			return EXIT_FAIL;
		}
		tmp_path = tmp;
	}
	r = mntcr_image_write(fd, t, image_flags | compress);
	if (r == 0 && fd != STDOUT_FILENO && fsync(fd) < 0)
		r = -errno;
	ret = EXIT_OK;
	if (r == -ESTALE)
		ret = cli_error("Failed to write image %s: the process is in another mount namespace "
				"now",
				output);
	else if (r < 0) {
		cli_error("Failed to write image %s: %s", output, strerror(-r));
		ret = EXIT_FAIL;
	}
	if (fd != STDOUT_FILENO) {
		if (close(fd) < 0 && ret == EXIT_OK) {
			cli_error("Failed to write image %s: %s", output, strerror(errno));
			ret = EXIT_FAIL;
		}
		if (ret == EXIT_OK && rename(tmp_path, output) < 0) {
			cli_error("Failed to rename %s to %s: %s", tmp_path, output, strerror(errno));
			ret = EXIT_FAIL;
		}
		if (ret != EXIT_OK)
			unlink(tmp_path);
	}
	free(tmp);
	cli_leave_to_exit(t);
	return ret;
}
