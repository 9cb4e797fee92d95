/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An image around a given manifest, every digest right: the members
 * mntcr-image ("version N"), manifest.json, manifest.checksum (N >= 2) and
 * checksum, written into an open libarchive writer. For the tests and
 * fuzzers that check what a reader does with a manifest itself
 * (tests/ns/mntcr-forge.c, fuzz/fuzz-image.c).
 */
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

static inline int forge_member(struct archive *a, const char *name, const void *data, size_t n)
{
	struct archive_entry *e = archive_entry_new();
	int ok;

	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)n);
	ok = archive_write_header(a, e) == ARCHIVE_OK && archive_write_data(a, data, n) == (la_ssize_t)n;
	archive_entry_free(e);
	return ok ? 0 : -1;
}

/* Write the image's members into a (opened, pax format); closes it. 0 or -1. */
static inline int forge_image(struct archive *a, const void *manifest, size_t n, unsigned version)
{
	char magic[64], msum[128], sum[256];
	uint64_t digest = XXH3_64bits(manifest, n);

	snprintf(magic, sizeof(magic), "mntcr-image\nversion %u\n", version);
	snprintf(msum, sizeof(msum), "{\"algorithm\": \"xxh3-64\", \"manifest\": \"%016" PRIx64 "\"}\n", digest);
	snprintf(sum, sizeof(sum),
		 "{\"algorithm\": \"xxh3-64\", \"manifest\": \"%016" PRIx64 "\", \"content\": \"%016" PRIx64
		 "\", \"members\": %u}\n",
		 digest, (uint64_t)XXH3_64bits(NULL, 0), version >= 2 ? 3U : 2U);
	if (forge_member(a, "mntcr-image", magic, strlen(magic)) < 0 ||
	    forge_member(a, "manifest.json", manifest, n) < 0 ||
	    (version >= 2 && forge_member(a, "manifest.checksum", msum, strlen(msum)) < 0) ||
	    forge_member(a, "checksum", sum, strlen(sum)) < 0)
		return -1;
	return archive_write_close(a) == ARCHIVE_OK ? 0 : -1;
}
