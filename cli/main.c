/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "sys.h"

const char *cli_verb = NULL;

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} verbs[] = {
	{ "dump", cmd_dump, "write the mount namespace of a process to an image" },
	{ "restore", cmd_restore, "rebuild a mount namespace from an image" },
	{ "plan", cmd_plan, "print the operations a restore would run" },
	{ "show", cmd_show, "print the mount tree of a process or an image" },
	{ "diff", cmd_diff, "compare two namespaces (images or pid:N)" },
	{ "check", cmd_check, "report kernel features and the restore engine" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: mntcr COMMAND [OPTIONS]\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].help);
	fprintf(f, "\nRun 'mntcr COMMAND --help' for a command's options, 'man mntcr-COMMAND' for more.\n");
}

void cli_leave_to_exit(void *p)
{
	/* Never read: volatile, or the stores would be optimized away, and with them the references. */
	static void *volatile left[4]; /* a command leaves one or two */
	static size_t n;

	if (p && n < sizeof(left) / sizeof(left[0]))
		left[n++] = p;
}

int cli_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mntcr%s%s: ", cli_verb ? " " : "", cli_verb ? cli_verb : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAIL;
}

bool cli_parse_pid(const char *s, pid_t *ret)
{
	char *end;
	long v;

	if (!s || !*s)
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v <= 0 || v > 0x3fffffff)
		return false;
	*ret = (pid_t)v;
	return true;
}

int cli_pid_error(pid_t pid, int err)
{
	switch (-err) {
	case ESRCH:
	case ENOENT:
		cli_error("No process with pid %d", (int)pid);
		return EXIT_NO_PID;
	case EACCES:
	case EPERM:
		cli_error("Not allowed to read the mount namespace of pid %d: %s", (int)pid,
			  strerror(-err));
		return EXIT_NO_PID;
	case EBADMSG:
		cli_error("The mount table of pid %d is inconsistent (run with MNTCR_DEBUG=1 for details)",
			  (int)pid);
		return EXIT_FAIL;
	default:
		cli_error("Failed to read the mount namespace of pid %d: %s", (int)pid, strerror(-err));
		return EXIT_FAIL;
	}
}

int cli_pids_error(const pid_t *pids, size_t n, int err)
{
	char path[32];

	if (n == 1)
		return cli_pid_error(pids[0], err);
	/* Name the process that is gone, if one is. */
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/%d", (int)pids[i]);
		if (access(path, F_OK) < 0)
			return cli_pid_error(pids[i], -ESRCH);
	}
	return cli_pid_error(pids[0], err == -ESRCH ? -EIO : err);
}

int cli_image_error(const char *file, int err)
{
	const char *name = (!file || strcmp(file, "-") == 0) ? "standard input" : file;

	switch (-err) {
	case EBADMSG:
		cli_error("%s is not a valid mntcr image: truncated, corrupt or inconsistent "
			  "(run with MNTCR_DEBUG=1 for details)",
			  name);
		return EXIT_BAD_IMAGE;
	case EPROTO:
		cli_error("%s is an image of a format version this mntcr does not know", name);
		return EXIT_VERSION;
	default:
		cli_error("Failed to read image %s: %s", name, strerror(-err));
		return EXIT_BAD_IMAGE;
	}
}

int cli_load_image(const char *file, struct mntcr_tree **ret_tree, int *ret_exit)
{
	int fd, r;

	if (strcmp(file, "-") == 0)
		fd = STDIN_FILENO;
	else {
		fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			cli_error("Failed to open image %s: %s", file, strerror(errno));
			*ret_exit = EXIT_BAD_IMAGE;
			return r;
		}
	}
	r = mntcr_image_read(fd, ret_tree);
	if (fd != STDIN_FILENO)
		close(fd);
	if (r < 0)
		*ret_exit = cli_image_error(file, r);
	return r;
}

/* Split "a,b,c" into its items (pointers into *ret_buf). */
static int split_list(const char *list, char **ret_buf, char ***ret_items, size_t *ret_n)
{
	char *buf = strdup(list), **items = NULL, *rest;
	size_t n = 0;

	if (!buf)
		return -ENOMEM;
	rest = buf;
	for (char *tok; (tok = strsep(&rest, ","));) {
		char **p = realloc(items, (n + 1) * sizeof(*items));

		if (!p || !*tok) { /* an empty item is a typo, not nothing */
			free(p ? p : items);
			free(buf);
			return p ? -EINVAL : -ENOMEM;
		}
		items = p;
		items[n++] = tok;
	}
	*ret_buf = buf;
	*ret_items = items;
	*ret_n = n;
	return 0;
}

/* "pid:N[,M...]": the namespaces of processes N, M, ... in one tree. */
static int load_pids(const char *spec, struct mntcr_tree **ret_tree, int *ret_exit)
{
	_cleanup_free_ char *buf = NULL;
	_cleanup_free_ char **items = NULL;
	_cleanup_free_ pid_t *pids = NULL;
	size_t n = 0;
	int r;

	if (split_list(spec + 4, &buf, &items, &n) < 0 || !(pids = calloc(n, sizeof(*pids)))) {
		cli_error("Invalid pid list in '%s'", spec);
		*ret_exit = EXIT_USAGE;
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if (!cli_parse_pid(items[i], &pids[i])) {
			cli_error("Invalid pid '%s' in '%s'", items[i], spec);
			*ret_exit = EXIT_USAGE;
			return -EINVAL;
		}
	r = n == 1 ? mntcr_tree_read_pid(pids[0], 0, ret_tree) : mntcr_tree_read_pids(pids, n, 0, ret_tree);
	if (r < 0)
		*ret_exit = cli_pids_error(pids, n, r);
	return r;
}

/* "ns:FILE[,FILE...]": namespace files. */
static int load_nsfiles(const char *spec, struct mntcr_tree **ret_tree, int *ret_exit)
{
	_cleanup_free_ char *buf = NULL;
	_cleanup_free_ char **items = NULL;
	size_t n = 0;
	int r;

	if (split_list(spec + 3, &buf, &items, &n) < 0) {
		cli_error("Invalid namespace file list in '%s'", spec);
		*ret_exit = EXIT_USAGE;
		return -EINVAL;
	}
	r = mntcr_tree_read_nsfiles((const char *const *)items, n, 0, ret_tree);
	if (r == -ENOTTY) {
		cli_error("%s: not a mount namespace file", spec + 3);
		*ret_exit = EXIT_USAGE;
	} else if (r < 0) {
		cli_error("Failed to read the mount namespace%s %s: %s", n > 1 ? "s" : "", spec + 3, strerror(-r));
		*ret_exit = EXIT_FAIL;
	}
	return r;
}

int cli_load(const char *spec, struct mntcr_tree **ret_tree, int *ret_exit)
{
	if (strncmp(spec, "pid:", 4) == 0)
		return load_pids(spec, ret_tree, ret_exit);
	if (strncmp(spec, "ns:", 3) == 0)
		return load_nsfiles(spec, ret_tree, ret_exit);
	return cli_load_image(spec, ret_tree, ret_exit);
}

static void log_to_stderr(int level, const char *msg, void *userdata)
{
	static const char *prefix[] = { "", "warning: ", "", "debug: " };

	(void)userdata;
	fprintf(stderr, "mntcr%s%s: %s%s\n", cli_verb ? " " : "", cli_verb ? cli_verb : "",
		prefix[level < 0 || level > 3 ? 0 : level], msg);
}

/*
 * The process's memory policy. A page the process has not touched yet
 * costs a page fault on its first write: 10 us on a VM whose host shadows
 * the page tables, where 8 MiB written page by page took 21 ms, and 0.5 ms
 * in huge pages (2 MiB a fault). So the heap grows by HEAP_PAD at once,
 * in huge pages where the kernel has them (transparent huge pages for
 * madvise(), as Debian sets them); memory is kept when freed, for the next
 * allocation (glibc maps each block of 128 KiB or more anew and unmaps it
 * when freed, and gives the top of the heap back past 128 KiB).
 */
#define HEAP_PAD (256UL << 20)

static void heap_setup(void)
{
	uintptr_t lo = (uintptr_t)sbrk(0), hi;
	void *p;
	bool got;

	/*
	 * The heap starts at a huge page's boundary: else its first up to 2 MiB,
	 * where the first large blocks go (the mounts read), are 4 KiB pages.
	 */
	if (lo != (uintptr_t)-1 && (lo & (HUGE_PAGE_SIZE - 1)) &&
	    sbrk((intptr_t)(HUGE_PAGE_SIZE - (lo & (HUGE_PAGE_SIZE - 1)))) != (void *)-1)
		lo = (uintptr_t)sbrk(0);
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	mallopt(M_TOP_PAD, HEAP_PAD);
	/* grow the heap now, by more than its top holds; then mark what it grew by */
	p = malloc(256 << 10);
	got = p != NULL;
	hi = (uintptr_t)sbrk(0);
	free(p);
	/* (under a sanitizer or valgrind, malloc does not use the heap: it did not grow) */
	if (!got || lo == (uintptr_t)-1 || hi == (uintptr_t)-1 || hi <= lo)
		return;
	lo = (lo + HUGE_PAGE_SIZE - 1) & ~(HUGE_PAGE_SIZE - 1);
	hi &= ~(HUGE_PAGE_SIZE - 1);
	/* malloc wrote its first bytes before the advice: that huge page is made now */
	if (hi > lo && madvise((void *)lo, hi - lo, MADV_HUGEPAGE) == 0)
		(void)madvise((void *)lo, HUGE_PAGE_SIZE, MADV_COLLAPSE);
	/* and the heaps of the library's threads that allocate megabytes */
	mntcr_set_huge_pages(true);
}

int main(int argc, char **argv)
{
	heap_setup();
	mntcr_set_log_func(log_to_stderr, NULL, MNTCR_LOG_WARNING);

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("mntcr %s\n", MNTCR_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(argv[1], verbs[i].name) == 0) {
			char prog[32];

			cli_verb = verbs[i].name;
			/* getopt prefixes its messages with argv[0] */
			snprintf(prog, sizeof(prog), "mntcr %s", verbs[i].name);
			argv[1] = prog;
			return verbs[i].fn(argc - 1, argv + 1);
		}
	fprintf(stderr, "mntcr: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
