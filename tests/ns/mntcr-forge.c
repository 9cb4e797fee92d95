/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mntcr-forge VERSION MANIFEST OUT: write an image around a manifest that
 * mntcr itself would never write (a hostile one), with every digest right,
 * so that what a reader checks is the manifest itself:
 *   mntcr-image ("version VERSION"), manifest.json (the file MANIFEST as it
 *   is), manifest.checksum (VERSION >= 2), checksum.
 * A test helper (tests/ns/test-hostile.sh).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "forge.h"

int main(int argc, char **argv)
{
	char *manifest = NULL;
	unsigned version;
	size_t n = 0, cap = 0;
	struct archive *a;
	FILE *f;
	int r;

	if (argc != 4 || sscanf(argv[1], "%u", &version) != 1) {
		fprintf(stderr, "usage: mntcr-forge VERSION MANIFEST OUT\n");
		return 2;
	}
	f = fopen(argv[2], "re");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	for (;;) {
		if (n == cap && !(manifest = realloc(manifest, cap = cap ? cap * 2 : 65536)))
			return 1;
		size_t got = fread(manifest + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	r = archive_write_open_filename(a, argv[3]) == ARCHIVE_OK ? 0 : -EIO;
	if (r == 0 && forge_image(a, manifest, n, version) < 0)
		r = -EIO;
	archive_write_free(a);
	free(manifest);
	if (r < 0)
		fprintf(stderr, "mntcr-forge: failed to write %s\n", argv[3]);
	return r < 0 ? 1 : 0;
}
