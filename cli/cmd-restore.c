/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

struct restore_args {
	const char *image;
	const char *persist;
	bool dry_run;
	struct mntcr_restore_opts opts;
	struct mntcr_external *externals;
	size_t n_externals;
	char **cmd;
};

static void restore_usage(FILE *f)
{
	fprintf(f, "Usage: mntcr restore --image FILE [--persist NSFILE] [--root DIR] [--external KEY=PATH]...\n"
		   "                     [--dry-run] [-- CMD ARGS...]\n"
		   "Rebuild the mount namespace of an image (FILE '-' = standard input).\n"
		   "  -i, --image FILE        the image to restore\n"
		   "  -p, --persist NSFILE    bind the new namespace on NSFILE and exit; an image of\n"
		   "                          several namespaces: NSFILE is a directory, each one\n"
		   "                          is bound on NSFILE/nsK, and the mapping is printed\n"
		   "  -r, --root DIR          bind the namespace's root mount from DIR\n"
		   "  -e, --external KEY=PATH take the mount (KEY = its mountpoint) or the superblock\n"
		   "                          (KEY = MAJ:MIN, as 'mntcr show' prints it) from PATH\n"
		   "  -n, --dry-run           print the plan, mount nothing\n"
		   "      --no-content        restore the mount table alone, not the files\n"
		   "                          of the tmpfs and ramfs filesystems the image holds\n"
		   "      --engine=mount-api|compat\n"
		   "                          the restore engine (default: the best this kernel has)\n"
		   "      --external-master=private|error\n"
		   "                          a slave whose master group is not here: make it\n"
		   "                          private (with a warning) or fail (default)\n"
		   "  -- CMD ARGS...          run CMD in the restored namespace (default: $SHELL);\n"
		   "                          several: in the first process's, in its root and cwd\n");
}

static int add_external(struct restore_args *a, char *spec)
{
	char *eq = strchr(spec, '=');
	struct mntcr_external *n;

	if (!eq || eq == spec || !eq[1]) {
		cli_error("Invalid --external '%s': expected KEY=PATH", spec);
		return -EINVAL;
	}
	n = realloc(a->externals, (a->n_externals + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	a->externals = n;
	*eq = 0;
	a->externals[a->n_externals++] = (struct mntcr_external){ .key = spec, .path = eq + 1 };
	return 0;
}

/* Shared by restore --dry-run and plan: print the plan against our own namespace. */
int cli_print_plan(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts)
{
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	struct mntcr_tree *self = NULL;
	struct mntcr_plan *plan = NULL;
	int r, ret = EXIT_OK;

	r = mntcr_tree_read_pid(getpid(), MNTCR_READ_NO_CLASSIFY, &self);
	if (r < 0)
		return cli_error("Failed to read this process's mount table: %s", strerror(-r));
	struct mntcr_restore_opts o = *opts;
	struct mntcr_features f;

	if (o.engine == MNTCR_ENGINE_NONE) {
		mntcr_probe(&f);
		o.engine = mntcr_engine_pick(&f);
	}
	r = mntcr_plan_build(image, self, &o, &plan, &rep);
	if (r < 0) {
		cli_error("%s", rep.msg ? rep.msg : strerror(-r));
		ret = r == -EOPNOTSUPP ? EXIT_UNSUPPORTED : EXIT_RESTORE;
	} else if (mntcr_plan_print(plan, stdout) < 0 || fflush(stdout) != 0)
		ret = cli_error("Failed to write the plan");
	mntcr_report_clear(&rep);
	mntcr_plan_free(plan);
	mntcr_tree_free(self);
	return ret;
}

static int persist(int nsfd, const char *file)
{
	char src[64];
	int fd;

	/* Like unshare --mount=FILE: the file is created if missing. */
	fd = open(file, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return cli_error("Failed to create %s: %s", file, strerror(errno));
	close(fd);
	snprintf(src, sizeof(src), "/proc/self/fd/%d", nsfd);
	if (mount(src, file, NULL, MS_BIND, NULL) < 0)
		return cli_error("Failed to bind the restored namespace on %s (mount MS_BIND): %s", file,
				 strerror(errno));
	return EXIT_OK;
}

/* Several namespaces: DIR/nsK for each, and the mapping from the original namespaces on stdout. */
static int persist_all(const struct mntcr_tree *t, const int *nsfds, const char *dir)
{
	size_t n = mntcr_tree_n_namespaces(t), done = 0;
	char file[PATH_MAX];
	int ret = EXIT_OK;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return cli_error("Failed to create directory %s: %s", dir, strerror(errno));
	for (; done < n; done++) {
		if (snprintf(file, sizeof(file), "%s/ns%zu", dir, done) >= (int)sizeof(file)) {
			ret = cli_error("Directory name too long: %s", dir);
			break;
		}
		ret = persist(nsfds[done], file);
		if (ret != EXIT_OK)
			break;
	}
	/* All or nothing: a bind that failed takes back the ones made before it. */
	for (size_t k = 0; ret != EXIT_OK && k < done; k++) {
		snprintf(file, sizeof(file), "%s/ns%zu", dir, k);
		if (umount2(file, MNT_DETACH) < 0)
			cli_error("Failed to unmount %s again: %s", file, strerror(errno));
	}
	/* The mapping: original namespace id, file, the pids that were in it. */
	for (size_t k = 0; ret == EXIT_OK && k < n; k++) {
		printf("%" PRIu64 " %s/ns%zu", mntcr_tree_ns_orig_id(t, k), dir, k);
		for (size_t i = 0; i < mntcr_tree_n_processes(t); i++) {
			pid_t pid;
			size_t ns;

			if (mntcr_tree_process(t, i, &pid, &ns, NULL, NULL) == 0 && ns == k)
				printf(" %d", (int)pid);
		}
		printf("\n");
	}
	if (fflush(stdout) != 0 && ret == EXIT_OK)
		ret = cli_error("Failed to write the namespace mapping");
	return ret;
}

/*
 * Enter the namespace and run cmd. The image's first process, if it has
 * processes: in its root (it was chroot'd) and its working directory.
 */
static int run_in(int nsfd, const struct mntcr_tree *t, char **cmd)
{
	char *shell_argv[] = { NULL, NULL };
	const char *root = "/", *cwd = "/";

	if (mntcr_tree_n_processes(t) > 0)
		(void)mntcr_tree_process(t, 0, NULL, NULL, &root, &cwd);
	if (setns(nsfd, CLONE_NEWNS) < 0)
		return cli_error("Failed to enter the restored namespace (setns): %s", strerror(errno));
	close(nsfd);
	/* setns put root and cwd at the namespace's root; cwd first: it is a path there */
	if (chdir(cwd[0] == '/' ? cwd : "/") < 0)
		return cli_error("Failed to chdir to %s in the restored namespace: %s", cwd, strerror(errno));
	if (root[0] != '/' || (strcmp(root, "/") != 0 && chroot(root) < 0))
		return cli_error("Failed to chroot to %s in the restored namespace: %s", root,
				 root[0] != '/' ? "not a path there" : strerror(errno));
	if (!cmd || !cmd[0]) {
		shell_argv[0] = getenv("SHELL") ? getenv("SHELL") : "/bin/sh";
		cmd = shell_argv;
	}
	execvp(cmd[0], cmd);
	cli_error("Failed to execute %s in the restored namespace: %s", cmd[0], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "persist", required_argument, NULL, 'p' },
		{ "root", required_argument, NULL, 'r' },
		{ "external", required_argument, NULL, 'e' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "external-master", required_argument, NULL, 'M' },
		{ "engine", required_argument, NULL, 'E' },
		{ "no-content", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct restore_args a = { 0 };
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	struct mntcr_image *img = NULL;
	int c, r, ret = EXIT_OK, fd = -1, *nsfds = NULL;
	size_t n_ns = 0;

	while ((c = getopt_long(argc, argv, "+i:p:r:e:nh", opts, NULL)) >= 0) {
		switch (c) {
		case 'i':
			a.image = optarg;
			break;
		case 'p':
			a.persist = optarg;
			break;
		case 'r':
			a.opts.root = optarg;
			break;
		case 'e':
			if (add_external(&a, optarg) < 0) {
				free(a.externals);
				return EXIT_USAGE;
			}
			break;
		case 'n':
			a.dry_run = true;
			break;
		case 'N':
			a.opts.no_content = true;
			break;
		case 'E':
			if (strcmp(optarg, "mount-api") == 0)
				a.opts.engine = MNTCR_ENGINE_MOUNT_API;
			else if (strcmp(optarg, "compat") == 0)
				a.opts.engine = MNTCR_ENGINE_COMPAT;
			else {
				cli_error("Invalid --engine '%s': expected mount-api or compat", optarg);
				free(a.externals);
				return EXIT_USAGE;
			}
			break;
		case 'M':
			if (strcmp(optarg, "private") == 0)
				a.opts.external_master_private = true;
			else if (strcmp(optarg, "error") != 0) {
				cli_error("Invalid --external-master '%s': expected private or error", optarg);
				free(a.externals);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			restore_usage(stdout);
			free(a.externals);
			return EXIT_OK;
		default:
			restore_usage(stderr);
			free(a.externals);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		a.cmd = argv + optind;
	if (!a.image) {
		cli_error("--image is required");
		free(a.externals);
		return EXIT_USAGE;
	}
	if (a.persist && a.cmd) {
		cli_error("--persist and a command exclude each other");
		free(a.externals);
		return EXIT_USAGE;
	}
	if (a.opts.root && access(a.opts.root, F_OK) < 0) {
		cli_error("--root %s: %s", a.opts.root, strerror(errno));
		free(a.externals);
		return EXIT_USAGE;
	}
	a.opts.externals = a.externals;
	a.opts.n_externals = a.n_externals;

	/*
	 * The image is opened, not read whole: its manifest is checked first,
	 * and the filesystem content that follows is streamed into the new
	 * namespace by the restoring process, then checked against its digest.
	 */
	fd = strcmp(a.image, "-") == 0 ? STDIN_FILENO : open(a.image, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("Failed to open image %s: %s", a.image, strerror(errno));
		ret = EXIT_BAD_IMAGE;
		goto out;
	}
	r = mntcr_image_open(fd, &img);
	if (r < 0) {
		ret = cli_image_error(a.image, r);
		goto out;
	}

	if (a.dry_run) {
		/* The plan needs the mount table only; the rest of the image is left unread. */
		ret = cli_print_plan(mntcr_image_tree(img), &a.opts);
		goto out;
	}
	n_ns = mntcr_tree_n_namespaces(mntcr_image_tree(img));
	nsfds = calloc(n_ns, sizeof(int));
	if (!nsfds) {
		ret = cli_error("Out of memory");
		goto out;
	}
	/* This process does nothing else meanwhile: the restore is built in it, not in a child. */
	a.opts.in_process = true;
	r = mntcr_restore_image_all(img, &a.opts, nsfds, &rep);
	if (r < 0) {
		cli_error("%s", rep.msg ? rep.msg : strerror(-r));
		ret = r == -EOPNOTSUPP  ? EXIT_UNSUPPORTED
		      : r == -EBADMSG ? EXIT_BAD_IMAGE
				      : EXIT_RESTORE;
		n_ns = 0;
		goto out;
	}
	if (a.persist && n_ns > 1)
		ret = persist_all(mntcr_image_tree(img), nsfds, a.persist);
	else if (a.persist)
		ret = persist(nsfds[0], a.persist);
	else {
		for (size_t k = 1; k < n_ns; k++)
			close(nsfds[k]);
		n_ns = 0;
		ret = run_in(nsfds[0], mntcr_image_tree(img), a.cmd);
		nsfds[0] = -1;
	}
out:
	for (size_t k = 0; k < n_ns; k++)
		if (nsfds[k] >= 0)
			close(nsfds[k]);
	free(nsfds);
	mntcr_report_clear(&rep);
	cli_leave_to_exit(img);
	if (fd > STDIN_FILENO)
		close(fd);
	free(a.externals);
	return ret;
}
