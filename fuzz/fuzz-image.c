/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the image reader (magic, manifest, checksum, content
 * members), then the planner and diff on whatever it accepted.
 *
 * Two kinds of input. Raw: the bytes are the image. Wrapped: 'W', a
 * version byte, then a manifest; the target wraps the manifest in an image
 * of that version (1 to 5) with every digest right (tests/forge.h), so that
 * mutations get past the checksums to the manifest's own checks
 * (namespaces, processes, superblocks, the table's consistency) and on to
 * the planner. Each image is read twice, its superblock and mount lines
 * taken as the writer lays them out and then through the general JSON
 * parser: the two must agree.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* What the image writer makes of t, in a memfd's bytes (NULL: it refused, or out of memory). */
static char *written(const struct mntcr_tree *t, size_t *ret_len)
{
	int fd = memfd_create("fuzz-written", MFD_CLOEXEC);
	char *buf = NULL;
	off_t len;

	if (fd < 0)
		return NULL;
	if (mntcr_image_write(fd, t, 0) == 0 && (len = lseek(fd, 0, SEEK_END)) > 0 &&
	    (buf = malloc((size_t)len)) && pread(fd, buf, (size_t)len, 0) == len)
		*ret_len = (size_t)len;
	else {
		free(buf);
		buf = NULL;
	}
	close(fd);
	return buf;
}

/*
 * The image at fd read again with every superblock and mount through the
 * general JSON parser (MNTCR_MANIFEST_RAW=0) instead of from its line:
 * the same result (r, and t written out byte for byte), or the fuzzer
 * stops here.
 */
static void same_when_parsed(int fd, int r, const struct mntcr_tree *t)
{
	struct mntcr_tree *u = NULL;
	char *a, *b;
	size_t na = 0, nb = 0;
	int r2;

	if (lseek(fd, 0, SEEK_SET) != 0)
		return;
	setenv("MNTCR_MANIFEST_RAW", "0", 1);
	r2 = mntcr_image_read(fd, &u);
	unsetenv("MNTCR_MANIFEST_RAW");
	if (r2 != r)
		abort();
	if (r == 0) {
		a = written(t, &na);
		b = written(u, &nb);
		if (!a != !b || (a && (na != nb || memcmp(a, b, na) != 0)))
			abort();
		free(a);
		free(b);
	}
	mntcr_tree_free(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mntcr_tree *t = NULL;
	struct mntcr_plan *p = NULL;
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC), r;

	if (fd < 0)
		return 0;
	if (size >= 2 && data[0] == 'W') {
		/* at most what wrap()'s buffer holds with the headers */
		if (size > (1 << 20) - 16384 || wrap(fd, data + 2, size - 2, 1U + data[1] % 5U) < 0 ||
		    lseek(fd, 0, SEEK_SET) != 0) {
			close(fd);
			return 0;
		}
	} else if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return 0;
	}
	r = mntcr_image_read(fd, &t);
	same_when_parsed(fd, r, t);
	if (r == 0) {
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
