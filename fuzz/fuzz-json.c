/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the manifest's JSON reader (lib/json.c), on any bytes.
 * The image reader only reaches it after the checksum matched; this target
 * feeds it directly, and walks every value it accepts. Each input is parsed
 * three times: as one document, with "mounts" streamed (jdoc_parse_streams),
 * and streamed with a second thread guessing where an item starts
 * (jsplit, at an offset the input picks): each must see the same items
 * and accept and refuse the same texts.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t items;
	uint64_t types; /* a digest of the items' types, in order */
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
	s->types = s->types * 31 + v->type + (v->type == JT_ARRAY || v->type == JT_OBJECT ? v->n : 0);
	/* one pass over the members finds what a search for each key finds */
	{
		static const char *const keys[] = { "id", "sb", "root", "type", "ns", "", "i" };
		const struct jval *many[(sizeof(keys) / sizeof(keys[0]))];

		jval_get_many(v, keys, (sizeof(keys) / sizeof(keys[0])), many);
		for (size_t k = 0; k < (sizeof(keys) / sizeof(keys[0])); k++)
			if (many[k] != jval_get(v, keys[k]))
				abort();
	}
	return 0;
}

/* The helper's items: its own record, appended to the parser's when joined. */
static struct seen helper_seen;
static bool helper_joined;

static int split_join(void *userdata, void *helper_userdata, size_t n)
{
	struct seen *s = userdata, *h = helper_userdata;
	uint64_t pow = 1;

	if (n != h->items)
		abort();
	for (size_t i = 0; i < n; i++)
		pow *= 31;
	s->items += n;
	s->types = s->types * pow + h->types;
	helper_joined = true;
	return 0;
}

static void split_drop(void *helper_userdata)
{
	*(struct seen *)helper_userdata = (struct seen){ 0 };
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
	jdoc_release(&ds);

	/* the same with a helper from the offset the first byte picks */
	if (size > 1) {
		struct seen first = seen;
		const struct jsplit split = { .at = copy + 1 + (size_t)data[0] * (size - 1) / 256,
					      .item = item, .join = split_join, .drop = split_drop,
					      .helper_userdata = &helper_seen };
		const struct jstream split_streams[] = { { "mounts", begin, item, &seen, &split } };

		memcpy(copy, data, size);
		seen = (struct seen){ 0 };
		helper_seen = (struct seen){ 0 };
		helper_joined = false;
		rs = jdoc_parse_streams(copy, size, split_streams, 1, &ds, &msg, &pos);
		if (rs != r || (rs == 0 && (seen.items != first.items || seen.types != first.types)))
			abort();
		jdoc_release(&ds);
	}
	jdoc_release(&d);
out:
	free(text);
	free(copy);
	return 0;
}
