/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the image reader (magic, manifest, checksum, content
 * members), then the planner and diff on whatever it accepted.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mntcr/mntcr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_diff_output(const char *line, void *userdata)
{
	(void)line;
	(void)userdata;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mntcr_tree *t = NULL;
	struct mntcr_plan *p = NULL;
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return 0;
	}
	if (mntcr_image_read(fd, &t) == 0) {
		if (mntcr_plan_build(t, NULL, NULL, &p, &rep) == 0) {
			FILE *null = fopen("/dev/null", "we");
			if (null) {
				mntcr_plan_print(p, null);
				fclose(null);
			}
			mntcr_plan_free(p);
		}
		mntcr_report_clear(&rep);
		(void)mntcr_diff(t, t, no_diff_output, NULL);
		mntcr_tree_free(t);
	}
	close(fd);
	return 0;
}
