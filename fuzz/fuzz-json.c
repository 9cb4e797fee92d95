/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the manifest's JSON reader (lib/json.c), on any bytes.
 * The image reader only reaches it after the checksum matched; this target
 * feeds it directly, and walks every value it accepts. Each input is parsed
 * twice: as one document, and with "mounts" streamed (jdoc_parse_streams),
 * which must see the same items and accept and refuse the same texts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t items;
};

static int begin(void *userdata)
{
	((struct seen *)userdata)->items = 0;
	return 0;
}

static int item(void *userdata, size_t idx, const struct jval *v)
{
	struct seen *s = userdata;

	if (idx != s->items)
		abort();
	s->items++;
	(void)jval_get(v, "id");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen seen = { 0 };
	const struct jstream streams[] = { { "mounts", begin, item, &seen } };
	struct jdoc d = { 0 }, ds = { 0 };
	const char *msg = NULL;
	size_t pos = 0, n = SIZE_MAX;
	char *text = malloc(size + 1), *copy = malloc(size + 1);
	int r, rs;

	if (!text || !copy)
		goto out;
	memcpy(text, data, size);
	text[size] = 0;
	memcpy(copy, text, size + 1);
	r = jdoc_parse(text, size, &d, &msg, &pos);
	if (r == 0) {
		/* look a few keys up on whatever came out */
		const struct jval *m = jval_get(&d.root, "mounts");

		if (m && m->type == JT_ARRAY)
			n = m->n;
		(void)jval_get(&d.root, "superblocks");
	}
	rs = jdoc_parse_streams(copy, size, streams, 1, &ds, &msg, &pos);
	if (rs != r)
		abort();
	if (rs == 0) {
		const struct jval *m = jval_get(&ds.root, "mounts");

		if (m && m->type == JT_ARRAY && (!m->streamed || m->items || m->n != n || seen.items != n))
			abort();
	}
	jdoc_release(&d);
	jdoc_release(&ds);
out:
	free(text);
	free(copy);
	return 0;
}
