/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mntcr diff A B: compare two namespaces (images or pid:N) up to mount ids
 * and peer group numbers. Exit status like diff(1) and cmp(1): 0 equivalent,
 * 1 different, 2 trouble, whatever the trouble was.
 */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void diff_usage(FILE *f)
{
	fprintf(f, "Usage: mntcr diff [--quiet] A B\n"
		   "Compare two mount namespaces; A and B are image files ('-' = standard input),\n"
		   "pid:N for the namespace of process N, or ns:FILE for a namespace file\n"
		   "(/proc/N/ns/mnt, or a file restore --persist bound). Prints one line per difference.\n"
		   "\n"
		   "  -q, --quiet   print nothing, only set the exit status\n"
		   "  -h, --help    show this help\n"
		   "\n"
		   "Exit status: 0 equivalent, 1 different, 2 error.\n");
}

static void print_line(const char *line, void *userdata)
{
	bool *quiet = userdata;

	if (!*quiet)
		puts(line);
}

int cmd_diff(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct mntcr_tree *a = NULL, *b = NULL;
	bool quiet = false;
	int c, r, ret, ignored;

	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) >= 0) {
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'h':
			diff_usage(stdout);
			return EXIT_OK;
		default:
			diff_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		if (argc - optind > 2)
			cli_error("Unexpected argument '%s'", argv[optind + 2]);
		else
			cli_error("Two namespaces to compare are required (image files or pid:N)");
		return EXIT_USAGE;
	}
	if (strcmp(argv[optind], "-") == 0 && strcmp(argv[optind + 1], "-") == 0) {
		cli_error("Only one side can be read from standard input");
		return EXIT_USAGE;
	}

	/* cli_load picks the exit code of dump/show/restore; diff has one for every error */
	if (cli_load(argv[optind], &a, &ignored) < 0)
		return EXIT_USAGE;
	if (cli_load(argv[optind + 1], &b, &ignored) < 0) {
		mntcr_tree_free(a);
		return EXIT_USAGE;
	}

	r = mntcr_diff(a, b, print_line, &quiet);
	if (r < 0) {
		cli_error("Failed to compare %s and %s: %s", argv[optind], argv[optind + 1],
			  strerror(-r));
		ret = EXIT_USAGE;
	} else
		ret = r == 0 ? EXIT_OK : EXIT_FAIL;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		cli_error("Failed to write to standard output: %s", strerror(errno));
		ret = EXIT_USAGE;
	}
	mntcr_tree_free(a);
	mntcr_tree_free(b);
	return ret;
}
