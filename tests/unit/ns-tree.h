/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: trees from mountinfo texts, of one namespace or several. */
#pragma once

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "tree.h"

/* A tree of one namespace from a mountinfo text; NULL on failure, with a diagnostic. */
static inline struct mntcr_tree *tree_parse_text(const char *text)
{
	struct mntcr_tree *t = NULL;
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int r;

	if (!f)
		return NULL;
	r = mntcr_tree_parse_mountinfo(f, &t);
	fclose(f);
	if (r < 0) {
		printf("#   failed to parse a mountinfo text: %s\n", strerror(-r));
		return NULL;
	}
	return t;
}

/*
 * One tree of n namespaces, namespace k from the mountinfo text texts[k];
 * ids must be unique across them. Not indexed when index is false (the
 * caller adds processes or types first). NULL on failure, with a diagnostic.
 */
static inline struct mntcr_tree *ns_tree_parse(const char *const *texts, size_t n, bool index)
{
	struct mntcr_tree *t = NULL;
	int r;

	r = tree_new(&t);
	if (r == 0)
		r = tree_set_namespaces(t, n);
	for (size_t k = 0; r == 0 && k < n; k++) {
		_cleanup_free_ char *buf = strdup(texts[k]);

		if (!buf) {
			r = -ENOMEM;
			break;
		}
		for (char *line = buf, *e; r == 0 && line && *line; line = e) {
			struct mntcr_mount m;

			e = strchr(line, '\n');
			if (e)
				*e++ = 0;
			r = mountinfo_parse_line(line, &m);
			if (r < 0)
				break;
			m.ns = k;
			r = tree_add_mount(t, &m);
			if (r < 0)
				mount_clear(&m);
		}
	}
	if (r == 0 && index)
		r = tree_index(t);
	if (r < 0) {
		printf("#   failed to build a tree of %zu namespaces: %s\n", n, strerror(-r));
		return mntcr_tree_free(t);
	}
	return t;
}
