/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the image reader (magic, manifest, checksum, content
 * members), then the planner and diff on whatever it accepted.
 *
 * Two kinds of input. Raw: the bytes are the image. Wrapped: 'W', a
 * version byte, then a manifest; the target wraps the manifest in an image
 * of that version (1 to 3) with every digest right (tests/forge.h), so that
 * mutations get past the checksums to the manifest's own checks
 * (namespaces, processes, superblocks, the table's consistency) and on to
 * the planner.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "forge.h"
#include "mntcr/mntcr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_diff_output(const char *line, void *userdata)
{
	(void)line;
	(void)userdata;
}

/* The manifest in an image of the given version, digests right, into fd. */
static int wrap(int fd, const uint8_t *manifest, size_t n, unsigned version)
{
	static char buf[1 << 20];
	struct archive *a = archive_write_new();
	size_t used = 0;
	int r = 0;

	archive_write_set_format_pax_restricted(a);
	archive_write_set_bytes_in_last_block(a, 1);
	if (archive_write_open_memory(a, buf, sizeof(buf), &used) != ARCHIVE_OK ||
	    forge_image(a, manifest, n, version) < 0)
		r = -1;
	archive_write_free(a);
	if (r == 0 && write(fd, buf, used) != (ssize_t)used)
		r = -1;
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mntcr_tree *t = NULL;
	struct mntcr_plan *p = NULL;
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (size >= 2 && data[0] == 'W') {
		/* at most what wrap()'s buffer holds with the headers */
		if (size > (1 << 20) - 16384 || wrap(fd, data + 2, size - 2, 1U + data[1] % 3U) < 0 ||
		    lseek(fd, 0, SEEK_SET) != 0) {
			close(fd);
			return 0;
		}
	} else if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
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
