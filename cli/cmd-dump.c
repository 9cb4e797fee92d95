/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void dump_usage(FILE *f)
{
	fprintf(f, "Usage: mntcr dump --pid PID --output FILE [--mountinfo] [--no-content]\n"
		   "                  [--compress=zstd|gzip|none]\n"
		   "Write the mount namespace of PID to an image (FILE '-' = standard output),\n"
		   "with the files of the tmpfs and ramfs filesystems only it has.\n");
}

int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
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
	pid_t pid = 0;
	int c, r, fd, ret;

	while ((c = getopt_long(argc, argv, "p:o:h", opts, NULL)) >= 0) {
		switch (c) {
		case 'p':
			if (!cli_parse_pid(optarg, &pid)) {
				cli_error("Invalid pid '%s'", optarg);
				return EXIT_USAGE;
			}
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
	if (optind < argc || !pid || !output) {
		if (optind < argc)
			cli_error("Unexpected argument '%s'", argv[optind]);
		else
			cli_error("Both --pid and --output are required");
		return EXIT_USAGE;
	}
	if (strcmp(output, "-") == 0 && isatty(STDOUT_FILENO)) {
		cli_error("Refusing to write an image to a terminal");
		return EXIT_USAGE;
	}

	r = mntcr_tree_read_pid(pid, read_flags, &t);
	if (r < 0)
		return cli_pid_error(pid, r);

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
	mntcr_tree_free(t);
	return ret;
}
