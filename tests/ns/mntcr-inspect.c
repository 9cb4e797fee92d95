/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mntcr-inspect: print the model libmntcr builds of a live namespace (or of
 * an image) in a stable text form, one line per mount, for the namespace
 * tests to compare with what they built. Uses the public API only.
 *
 *   mntcr-inspect [--mountinfo] [--prefix DIR] PID
 *   mntcr-inspect --image FILE [--prefix DIR]
 *
 * Mounts come in pre-order from the root, children in attach order. With
 * --prefix only the mounts at or below DIR are printed, and every path in
 * the output is made relative to DIR ("/" for DIR itself). A line is
 *
 *   PATH root=ROOT fs=TYPE src=SOURCE opts=PER-MOUNT sb=SB-OPTIONS prop=PROP
 *        cover=none|sibling:PATH|root:PATH hidden=yes|no type=d|f|? owned|external
 *
 * PROP is "private" or a comma list of shared:N, master:N, propagate_from:N,
 * unbindable; peer group numbers are renumbered 1, 2, ... in order of first
 * appearance in the output. Strings are escaped as in mountinfo (\040 ...).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mntcr/mntcr.h"

static const char *prefix;

struct groups {
	uint64_t raw[4096];
	size_t n;
};

static size_t group_number(struct groups *g, uint64_t raw)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->raw[i] == raw)
			return i + 1;
	if (g->n == sizeof(g->raw) / sizeof(g->raw[0])) {
		fprintf(stderr, "mntcr-inspect: too many peer groups\n");
		exit(1);
	}
	g->raw[g->n++] = raw;
	return g->n;
}

static void put_escaped(const char *s)
{
	if (!s) {
		fputs("(null)", stdout);
		return;
	}
	if (!*s) {
		fputs("\"\"", stdout);
		return;
	}
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\\')
			printf("\\%03o", (unsigned char)*s);
		else
			putchar(*s);
	}
}

/* The part of path at or below prefix, "/" for prefix itself; NULL outside. */
static const char *relative(const char *path)
{
	size_t n;

	if (!prefix)
		return path;
	n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0)
		return NULL;
	if (path[n] == 0)
		return "/";
	if (path[n] != '/')
		return NULL;
	return path + n;
}

static void print_path(const char *path)
{
	const char *rel = relative(path);

	if (rel)
		put_escaped(rel);
	else {
		/* outside the prefix: absolute, marked */
		putchar('!');
		put_escaped(path);
	}
}

static void print_mount(const struct mntcr_tree *t, const struct mntcr_mount *m, struct groups *g)
{
	const struct mntcr_sb *sb = mntcr_tree_sb(t, mntcr_mount_sb(m));
	char opts[256];
	bool any = false;
	size_t cov;

	print_path(mntcr_mount_mountpoint(m));
	fputs(" root=", stdout);
	put_escaped(mntcr_mount_root(m));
	fputs(" fs=", stdout);
	put_escaped(mntcr_mount_fstype(m));
	fputs(" src=", stdout);
	put_escaped(mntcr_mount_source(m));
	if (mntcr_attr_format(mntcr_mount_attr(m), opts, sizeof(opts)) < 0)
		strcpy(opts, "(too-long)");
	printf(" opts=%s sb=", opts);
	put_escaped(mntcr_mount_sb_options(m));

	fputs(" prop=", stdout);
	if (mntcr_mount_shared(m)) {
		printf("shared:%zu", group_number(g, mntcr_mount_shared(m)));
		any = true;
	}
	if (mntcr_mount_master(m)) {
		printf("%smaster:%zu", any ? "," : "", group_number(g, mntcr_mount_master(m)));
		any = true;
	}
	if (mntcr_mount_propagate_from(m)) {
		printf("%spropagate_from:%zu", any ? "," : "",
		       group_number(g, mntcr_mount_propagate_from(m)));
		any = true;
	}
	if (mntcr_mount_unbindable(m)) {
		printf("%sunbindable", any ? "," : "");
		any = true;
	}
	if (!any)
		fputs("private", stdout);

	cov = mntcr_mount_covered_by(m);
	switch (mntcr_mount_cover(m)) {
	case MNTCR_COVER_NONE:
		fputs(" cover=none", stdout);
		break;
	case MNTCR_COVER_SIBLING:
		fputs(" cover=sibling:", stdout);
		break;
	case MNTCR_COVER_ROOT:
		fputs(" cover=root:", stdout);
		break;
	default:
		printf(" cover=%d:", (int)mntcr_mount_cover(m));
		break;
	}
	if (mntcr_mount_cover(m) != MNTCR_COVER_NONE) {
		const struct mntcr_mount *c = mntcr_tree_mount(t, cov);

		if (c)
			print_path(mntcr_mount_mountpoint(c));
		else
			fputs("(bad-index)", stdout);
	}
	printf(" hidden=%s type=%c %s\n", mntcr_mount_hidden(m) ? "yes" : "no", mntcr_mount_type(m),
	       sb ? (mntcr_sb_owned(sb) ? "owned" : "external") : "(no-sb)");
}

static int print_tree(const struct mntcr_tree *t)
{
	size_t n = mntcr_tree_n_mounts(t), sp = 0;
	size_t *stack = malloc((n ? n : 1) * sizeof(size_t));
	struct groups *g = calloc(1, sizeof(*g));

	if (!stack || !g) {
		fprintf(stderr, "mntcr-inspect: out of memory\n");
		return 1;
	}
	if (mntcr_tree_root(t) != MNTCR_NONE)
		stack[sp++] = mntcr_tree_root(t);
	while (sp > 0) {
		const struct mntcr_mount *m = mntcr_tree_mount(t, stack[--sp]);

		if (relative(mntcr_mount_mountpoint(m)))
			print_mount(t, m, g);
		for (size_t k = mntcr_mount_n_children(m); k > 0; k--)
			stack[sp++] = mntcr_mount_child(t, m, k - 1);
	}
	free(stack);
	free(g);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: mntcr-inspect [--mountinfo] [--prefix DIR] PID\n"
		   "       mntcr-inspect --image FILE [--prefix DIR]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mountinfo", no_argument, NULL, 'M' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "image", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct mntcr_tree *t = NULL;
	const char *image = NULL;
	unsigned flags = 0;
	int c, r;

	while ((c = getopt_long(argc, argv, "Mp:i:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'M':
			flags |= MNTCR_READ_MOUNTINFO;
			break;
		case 'p':
			prefix = optarg;
			/* "/x/" and "/x" name the same directory */
			while (strlen(optarg) > 1 && optarg[strlen(optarg) - 1] == '/')
				optarg[strlen(optarg) - 1] = 0;
			if (strcmp(prefix, "/") == 0)
				prefix = NULL;
			break;
		case 'i':
			image = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (image) {
		int fd;

		if (optind != argc) {
			usage(stderr);
			return 2;
		}
		fd = open(image, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "mntcr-inspect: cannot open %s: %s\n", image,
				strerror(errno));
			return 1;
		}
		r = mntcr_image_read(fd, &t);
		close(fd);
		if (r < 0) {
			fprintf(stderr, "mntcr-inspect: cannot read image %s: %s\n", image,
				strerror(-r));
			return r == -EOPNOTSUPP ? 77 : 1;
		}
	} else {
		char *end;
		long pid;

		if (optind + 1 != argc) {
			usage(stderr);
			return 2;
		}
		errno = 0;
		pid = strtol(argv[optind], &end, 10);
		if (errno || *end || pid <= 0) {
			fprintf(stderr, "mntcr-inspect: bad pid '%s'\n", argv[optind]);
			return 2;
		}
		r = mntcr_tree_read_pid((pid_t)pid, flags, &t);
		if (r < 0) {
			fprintf(stderr, "mntcr-inspect: cannot read pid %ld: %s\n", pid,
				strerror(-r));
			return r == -ESRCH ? 3 : 1;
		}
	}
	r = print_tree(t);
	mntcr_tree_free(t);
	if (fflush(stdout) != 0 || ferror(stdout))
		return 1;
	return r;
}
