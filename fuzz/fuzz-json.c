/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the manifest's JSON reader (lib/json.c), on any bytes.
 * The image reader only reaches it after the checksum matched; this target
 * feeds it directly, and walks every value it accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jdoc d = { 0 };
	const char *msg = NULL;
	size_t pos = 0;
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	if (jdoc_parse(text, size, &d, &msg, &pos) == 0) {
		/* look a few keys up on whatever came out */
		(void)jval_get(&d.root, "mounts");
		(void)jval_get(&d.root, "superblocks");
		jdoc_release(&d);
	}
	free(text);
	return 0;
}
