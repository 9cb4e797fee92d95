/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nonewapi CMD ARGS...: run CMD with the new mount API gone. A seccomp
 * filter makes open_tree, move_mount, fsopen, fsconfig, fsmount, fspick,
 * mount_setattr, open_tree_attr, statmount and listmount fail with ENOSYS,
 * as on a kernel before 5.2 (or a sandbox that forbids them); mount(2),
 * umount2(2) and pivot_root(2) still work. The filter is inherited by
 * every child, so `nonewapi mntcr restore ...` restores with the compat
 * engine. Exit status: CMD's, or 125 if the filter cannot be installed,
 * 127 if CMD cannot be executed.
 *
 * nonewapi --only CALL CMD ARGS...: only CALL (one of the names below)
 * fails, as on a kernel that has the rest: `--only open_tree_attr` is
 * Linux 5.12 to 6.14.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Numbers on x86_64 and every architecture with the generic table (asm-generic/unistd.h). */
static const struct {
	const char *name;
	int nr;
} calls[] = {
	{ "open_tree", 428 },	   { "move_mount", 429 }, { "fsopen", 430 },
	{ "fsconfig", 431 },	   { "fsmount", 432 },	  { "fspick", 433 },
	{ "mount_setattr", 442 },  { "statmount", 457 },  { "listmount", 458 },
	{ "open_tree_attr", 467 },
};

int main(int argc, char **argv)
{
	const char *only = NULL;
	scmp_filter_ctx ctx;
	bool known = false;
	int r;

	if (argc > 2 && strcmp(argv[1], "--only") == 0) {
		only = argv[2];
		argv += 2;
		argc -= 2;
	}
	if (argc < 2 || strcmp(argv[1], "--help") == 0) {
		fprintf(argc < 2 ? stderr : stdout,
			"Usage: nonewapi [--only CALL] CMD [ARGS...]\n"
			"Run CMD with the new mount API (or CALL alone) failing with ENOSYS.\n");
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; only && i < sizeof(calls) / sizeof(calls[0]); i++)
		known = known || strcmp(calls[i].name, only) == 0;
	if (only && !known) {
		fprintf(stderr, "nonewapi: %s is not a call of the new mount API\n", only);
		return 2;
	}
	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx) {
		fprintf(stderr, "nonewapi: seccomp_init failed\n");
		return 125;
	}
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		/* by name where libseccomp knows it, else by the number */
		int nr = seccomp_syscall_resolve_name(calls[i].name);

		if (only && strcmp(calls[i].name, only) != 0)
			continue;
		if (nr == __NR_SCMP_ERROR)
			nr = calls[i].nr;
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
		if (r < 0) {
			fprintf(stderr, "nonewapi: cannot filter %s: %s\n", calls[i].name,
				strerror(-r));
			seccomp_release(ctx);
			return 125;
		}
	}
	r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0) {
		fprintf(stderr, "nonewapi: seccomp_load failed: %s\n", strerror(-r));
		return 125;
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "nonewapi: cannot execute %s: %s\n", argv[1], strerror(errno));
	return 127;
}
