/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>

#include "cli.h"


int cmd_plan(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct mntcr_restore_opts ro = { 0 };
	struct mntcr_tree *t = NULL;
	const char *image = NULL;
	int c, ret = EXIT_OK;

	while ((c = getopt_long(argc, argv, "i:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'i':
			image = optarg;
			break;
		case 'h':
			printf("Usage: mntcr plan --image FILE\n"
			       "Print the operations 'mntcr restore' would run, and mount nothing.\n");
			return EXIT_OK;
		default:
			return EXIT_USAGE;
		}
	}
	if (!image || optind < argc) {
		cli_error(image ? "Unexpected argument '%s'" : "--image is required%s", image ? argv[optind] : "");
		return EXIT_USAGE;
	}
	if (cli_load_image(image, &t, &ret) < 0)
		return ret;
	ret = cli_print_plan(t, &ro);
	mntcr_tree_free(t);
	return ret;
}
