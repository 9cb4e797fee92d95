/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault injection through the library: restore IMAGE with the k-th
 * mount-changing syscall failing (MNTCR_FAULT_AT=k, MNTCR_FAULT_ERRNO=E),
 * for k = 1, 2, ... until a restore gets past the last call. Each failed
 * restore must return the injected errno with a report naming the phase,
 * leave this process's fd table, mount namespace and working directory as
 * they were, and leave no child behind. With MNTCR_IN_PROCESS=1 the
 * restores are built in this process (mntcr_restore_opts.in_process).
 * Prints TAP.
 *
 *	restore-faults IMAGE ERRNO-NAME
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mntcr/mntcr.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

/* The inode at path: of this thread's mount namespace (NS), of its working directory ("."). */
#define NS "/proc/thread-self/ns/mnt"
static unsigned long long ino_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

static int errno_of(const char *name)
{
	if (strcmp(name, "EPERM") == 0)
		return EPERM;
	if (strcmp(name, "ENOMEM") == 0)
		return ENOMEM;
	if (strcmp(name, "EBUSY") == 0)
		return EBUSY;
	if (strcmp(name, "ENOSPC") == 0)
		return ENOSPC;
	return EINVAL;
}

/*
 * A second thread, blocked on a pipe while the restores run in the main
 * one: a restore in the process moves only its own thread. It reports its
 * namespace's inode when the pipe closes.
 */
static int bystander_pipe[2] = { -1, -1 };

static void *bystander(void *arg)
{
	char c;

	(void)arg;
	while (read(bystander_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	return (void *)(uintptr_t)ino_of(NS);
}

int main(int argc, char **argv)
{
	struct mntcr_restore_opts opts = { 0 };
	pthread_t bystander_thread;
	unsigned long long ns_start;
	struct mntcr_tree *t = NULL;
	int fd, n = 0, failed = 0, want;

	if (argc != 3) {
		fprintf(stderr, "usage: restore-faults IMAGE ERRNO-NAME\n");
		return 2;
	}
	want = errno_of(argv[2]);
	/* MNTCR_ENGINE=compat: fail every call of the compat engine instead */
	if (getenv("MNTCR_ENGINE") && strcmp(getenv("MNTCR_ENGINE"), "compat") == 0)
		opts.engine = MNTCR_ENGINE_COMPAT;
	opts.in_process = getenv("MNTCR_IN_PROCESS") && strcmp(getenv("MNTCR_IN_PROCESS"), "1") == 0;
	if (opts.in_process && (pipe2(bystander_pipe, O_CLOEXEC) < 0 ||
				pthread_create(&bystander_thread, NULL, bystander, NULL) != 0)) {
		printf("not ok 1 - a second thread\n1..1\n");
		return 1;
	}
	ns_start = ino_of(NS);
	if (chdir("/tmp") < 0) { /* a working directory that is not the root, to see it kept */
		printf("not ok 1 - chdir /tmp\n1..1\n");
		return 1;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || mntcr_image_read(fd, &t) < 0) {
		printf("not ok 1 - read %s\n1..1\n", argv[1]);
		return 1;
	}
	close(fd);
	mntcr_tree_free(t);
	setenv("MNTCR_FAULT_ERRNO", argv[2], 1);

	for (int k = 1; k < 100000; k++) {
		struct mntcr_report rep = { .op_index = MNTCR_NONE };
		char kbuf[16];
		int before = count_fds(), nsfd = -1, r, after;
		unsigned long long ns_before = ino_of(NS), cwd_before = ino_of(".");
		bool good;

		struct mntcr_image *img = NULL;

		snprintf(kbuf, sizeof(kbuf), "%d", k);
		setenv("MNTCR_FAULT_AT", kbuf, 1);
		/* The image opened anew each time: a restore streams its content, and consumes it. */
		fd = open(argv[1], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || mntcr_image_open(fd, &img) < 0) {
			printf("not ok %d - open %s\n", ++n, argv[1]);
			failed++;
			if (fd >= 0)
				close(fd);
			break;
		}
		r = mntcr_restore_image(img, &opts, &nsfd, &rep);
		mntcr_image_free(img);
		close(fd);
		if (r == 0) {
			bool back = ino_of(NS) == ns_before && ino_of(".") == cwd_before;

			close(nsfd);
			if (!back) {
				printf("not ok %d - fault at call %d: the restore succeeds, but this thread is not back in "
				       "its namespace and directory\n",
				       ++n, k);
				failed++;
				mntcr_report_clear(&rep);
				break;
			}
			printf("ok %d - fault at call %d: past the last call, the restore succeeds\n", ++n, k);
			mntcr_report_clear(&rep);
			break;
		}
		after = count_fds();
		good = r == -want && rep.msg && rep.phase && strstr(rep.msg, "phase") && after == before &&
		       ino_of(NS) == ns_before && ino_of(".") == cwd_before && waitpid(-1, NULL, WNOHANG) < 0 &&
		       errno == ECHILD;
		printf("%s %d - fault at call %d: %s, fds %d -> %d, phase %s\n", good ? "ok" : "not ok", ++n, k,
		       strerror(-r), before, after, rep.phase ? rep.phase : "?");
		if (!good) {
			printf("# %s\n", rep.msg ? rep.msg : "(no message)");
			failed++;
		}
		mntcr_report_clear(&rep);
	}
	if (opts.in_process) {
		void *seen = NULL;

		close(bystander_pipe[1]);
		pthread_join(bystander_thread, &seen);
		if ((unsigned long long)(uintptr_t)seen == ns_start)
			printf("ok %d - the other thread stayed in the namespace all along\n", ++n);
		else {
			printf("not ok %d - the other thread's namespace changed\n", ++n);
			failed++;
		}
	}
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
