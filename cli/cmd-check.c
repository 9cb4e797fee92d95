/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <sys/utsname.h>

#include "cli.h"

int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct mntcr_features f;
	struct utsname u;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		if (c == 'h') {
			printf("Usage: mntcr check\nReport the kernel's mount API features and the restore engine.\n");
			return EXIT_OK;
		}
		return EXIT_USAGE;
	}
	if (optind < argc) {
		cli_error("Unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	mntcr_probe(&f);
	if (uname(&u) == 0)
		printf("%-26s %s\n", "kernel", u.release);
	printf("%-26s %s\n", "statmount", f.statmount ? "yes" : "no");
	printf("%-26s %s\n", "listmount", f.listmount ? "yes" : "no");
	printf("%-26s %s\n", "open_tree", f.open_tree ? "yes" : "no");
	printf("%-26s %s\n", "move_mount", f.move_mount ? "yes" : "no");
	printf("%-26s %s\n", "move_mount SET_GROUP", f.move_mount_set_group ? "yes" : "no");
	printf("%-26s %s\n", "move_mount BENEATH", f.move_mount_beneath ? "yes" : "no");
	printf("%-26s %s\n", "mount_setattr", f.mount_setattr ? "yes" : "no");
	printf("%-26s %s\n", "fsopen", f.fsopen ? "yes" : "no");
	printf("%-26s %s\n", "openat2", f.openat2 ? "yes" : "no");
	printf("%-26s %s\n", "dump source", f.statmount && f.listmount ? "statmount" : "mountinfo");
	printf("%-26s %s\n", "restore engine", mntcr_engine_name(mntcr_engine_pick(&f)));
	return EXIT_OK;
}
