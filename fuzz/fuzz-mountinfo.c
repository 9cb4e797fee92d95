/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the mountinfo parser and the model's indexing. */
#include <stdint.h>
#include <stdio.h>

#include "mntcr/mntcr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mntcr_tree *t = NULL;
	FILE *f;

	if (size == 0)
		return 0;
	f = fmemopen((void *)data, size, "r");
	if (!f)
		return 0;
	if (mntcr_tree_parse_mountinfo(f, &t) == 0) {
		/* walk everything the model derived */
		for (size_t i = 0; i < mntcr_tree_n_mounts(t); i++) {
			const struct mntcr_mount *m = mntcr_tree_mount(t, i);
			(void)mntcr_mount_covered_by(m);
			(void)mntcr_mount_hidden(m);
		}
		mntcr_tree_free(t);
	}
	fclose(f);
	return 0;
}
