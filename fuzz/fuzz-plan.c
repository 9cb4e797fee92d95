/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the planner, fed random VALID models. The input bytes
 * drive a generator of mount tables (parents, stacks, over-mounts, binds of
 * subdirectories, shared groups, slaves, unbindable, flags, external and
 * owned superblocks); every table the model accepts is planned, and the
 * plan is checked: every mount but the root is attached exactly once,
 * every clone comes from a template before anything is attached, every
 * slot is created before it is used.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mntcr/mntcr.h"
#include "plan.h"
#include "tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rd {
	const uint8_t *p;
	size_t n;
};

static unsigned take(struct rd *r, unsigned mod)
{
	unsigned v;

	if (r->n == 0 || mod == 0)
		return 0;
	v = *r->p++;
	r->n--;
	return v % mod;
}

#define MAXM 64

static const char *const names[] = { "a", "b", "c", "a/x", "b/y" };
static const char *const types[] = { "tmpfs", "tmpfs", "proc", "devpts", "ext4" };

static void check_plan(const struct mntcr_plan *p)
{
	const struct mntcr_tree *t = p->tree;
	size_t *attached = calloc(t->n_mounts + 1, sizeof(size_t));
	bool *made = calloc(p->n_slots + 1, sizeof(bool));
	bool any_attach = false;

	for (size_t i = 0; i < p->n_ops; i++) {
		const struct plan_op *op = &p->ops[i];

		assert(op->slot < p->n_slots);
		if (op->src != IDX_NONE && op->type != OP_PEER_BIND)
			assert(made[op->src]);
		switch (op->type) {
		case OP_SB_CREATE:
		case OP_TEMPLATE_BIND:
		case OP_PEER_BIND:
			made[op->slot] = true;
			break;
		case OP_CLONE:
			assert(!any_attach);
			made[op->slot] = true;
			break;
		case OP_ATTACH:
			any_attach = true;
			assert(op->mount != IDX_NONE);
			attached[op->mount]++;
			assert(made[op->slot]);
			break;
		default:
			assert(made[op->slot]);
			break;
		}
	}
	for (size_t i = 0; i < t->n_mounts; i++)
		assert(attached[i] == (t->mounts[i].parent == IDX_NONE ? 0 : 1));
	for (size_t k = 0; k < t->n_ns; k++) {
		size_t roots = 0;

		for (size_t i = 0; i < p->n_ops; i++)
			roots += p->ops[i].type == OP_SET_ROOT && p->ops[i].mount == t->nss[k].root;
		assert(roots == 1);
	}
	free(attached);
	free(made);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = { data, size };
	char *text = NULL, mp[MAXM][256];
	size_t len = 0, n, n_ns, ns_of[MAXM], rel_off[MAXM] = { 0 }; /* rel_off: its point given relative */
	struct mntcr_tree *t = NULL, *host = NULL;
	FILE *f;
	int rc = 0;

	n_ns = 1 + take(&r, 3);
	n = n_ns + take(&r, MAXM - 3);
	f = open_memstream(&text, &len);
	if (!f)
		return 0;
	/* one root per namespace, on the same superblock (a child's copy) */
	for (size_t k = 0; k < n_ns; k++) {
		strcpy(mp[k], "/");
		ns_of[k] = k;
		fprintf(f, "%zu 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n", k + 1);
	}
	for (size_t i = n_ns; i < n; i++) {
		size_t parent = take(&r, (unsigned)i);

		ns_of[i] = ns_of[parent];
		unsigned how = take(&r, 4), dev = take(&r, 6), ty = take(&r, 5);
		const char *root = take(&r, 3) ? "/" : names[take(&r, 5)];
		char prop[64] = "";

		if (how == 0) /* stacked on the parent */
			snprintf(mp[i], sizeof(mp[i]), "%s", mp[parent]);
		else
			snprintf(mp[i], sizeof(mp[i]), "%s%s%s", mp[parent], streq(mp[parent], "/") ? "" : "/",
				 names[take(&r, 5)]);
		/* the model takes a mountpoint relative to the parent's too (image version 5, statmount) */
		if (take(&r, 2))
			rel_off[i] = how == 0 ? strlen(mp[parent]) : strlen(mp[parent]) + !streq(mp[parent], "/");
		switch (take(&r, 5)) {
		case 1:
			snprintf(prop, sizeof(prop), " shared:%u", 1 + take(&r, 4));
			break;
		case 2:
			snprintf(prop, sizeof(prop), " master:%u", 1 + take(&r, 4));
			break;
		case 3:
			snprintf(prop, sizeof(prop), " shared:%u master:%u", 1 + take(&r, 4), 1 + take(&r, 4));
			break;
		case 4:
			snprintf(prop, sizeof(prop), " unbindable");
			break;
		}
		fprintf(f, "%zu %zu 0:%u %s %s %s%s - %s src%u rw%s\n", i + 1, parent + 1, 40 + dev, root, mp[i],
			take(&r, 2) ? "ro,nosuid" : "rw,relatime", prop, dev == 0 ? "ext4" : types[ty], dev,
			take(&r, 2) ? ",size=1m" : "");
	}
	fclose(f);

	/* the lines into one tree, each mount in its namespace */
	rc = tree_new(&t);
	if (rc == 0)
		rc = tree_set_namespaces(t, n_ns);
	{
		char *line = text, *e;

		for (size_t i = 0; rc == 0 && i < n && line && *line; i++, line = e) {
			struct mntcr_mount m;

			e = strchr(line, '\n');
			if (e)
				*e++ = 0;
			rc = mountinfo_parse_line(line, &m);
			if (rc < 0)
				break;
			m.point += rel_off[i]; /* inside the mount's one allocation */
			m.ns = ns_of[i];
			rc = tree_add_mount(t, &m);
			if (rc < 0)
				mount_clear(&m);
		}
	}
	if (rc == 0)
		rc = tree_index(t);
	f = NULL;
	if (rc == 0) {
		static const char host_mi[] = "1 0 0:40 / / rw - ext4 /dev/sda1 rw\n"
					      "2 1 0:41 / /x rw shared:2 - tmpfs src1 rw\n";
		FILE *h = fmemopen((void *)host_mi, sizeof(host_mi) - 1, "r");
		struct mntcr_plan *p = NULL;

		if (h && mntcr_tree_parse_mountinfo(h, &host) == 0)
			(void)tree_classify(t, host);
		if (mntcr_plan_build(t, host, NULL, &p, NULL) == 0) {
			check_plan(p);
			mntcr_plan_free(p);
		}
		if (h)
			fclose(h);
	}
	if (f)
		fclose(f);
	mntcr_tree_free(host);
	mntcr_tree_free(t);
	free(text);
	return 0;
}
