/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * timeit CMD ARGS...: run CMD, then print to stderr one line
 *   "timeit wall_ms=W maxrss_kb=R status=S"
 * W is the wall time from fork to the end of wait4 (CLOCK_MONOTONIC); R is
 * the peak resident set of CMD and of every process it waited for
 * (getrusage RUSAGE_CHILDREN), so `mntcr restore` counts its restoring
 * child too. CMD's own output passes through; the exit status is CMD's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	struct rusage ru;
	double t0;
	int status;
	pid_t pid;

	if (argc < 2) {
		fprintf(stderr, "usage: timeit CMD ARGS...\n");
		return 2;
	}
	t0 = now_ms();
	pid = fork();
	if (pid < 0) {
		perror("timeit: fork");
		return 1;
	}
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		perror("timeit: exec");
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0) {
		perror("timeit: waitpid");
		return 1;
	}
	t0 = now_ms() - t0;
	getrusage(RUSAGE_CHILDREN, &ru);
	fprintf(stderr, "timeit wall_ms=%.3f maxrss_kb=%ld status=%d\n", t0, ru.ru_maxrss,
		WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
