/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Compare two namespaces up to everything the kernel makes up: mount ids and
 * peer group numbers never count by themselves.
 *
 * Trees of several namespaces compare namespace by namespace, by index (the
 * order of the processes given to dump); a different number of namespaces
 * is one line, "namespaces: A has 2, B has 3", and the common prefix is
 * compared. Superblocks and peer groups span namespaces, so the relations
 * below hold across all of them.
 *
 * Matching: the root mounts match; children of two matched mounts match by
 * mountpoint. A stacked mount is the child of the mount below it (same
 * mountpoint), so stacking order and over-mounts are part of the structure.
 * Several children of one parent on the same mountpoint (a tuck beneath, or
 * propagation) match in attach order. Each parent's children are sorted
 * once, so the walk is O(n log n) for n mounts.
 *
 * Per matched pair: root, per-mount flags (atime mode normalised),
 * unbindable, the kinds of propagation; per pair of superblocks (once):
 * fstype, source (virtual filesystems only: a block device may show up
 * under another name), superblock options as a set. Then the relations,
 * which hold across mounts: a superblock of A must correspond to one
 * superblock of B and back, and so must every peer group number seen in
 * shared:, master: or propagate_from: (one bijection for all three, since
 * master:N names peer group N; it may lie outside the namespace).
 *
 * Output is in pre-order of A, children sorted by path, namespace after
 * namespace; each line is "<mount>: <what>", the mount named by its path
 * plus its layer when it is part of a stack. When either tree holds several
 * namespaces, the path is prefixed with its namespace: "ns1:/mnt/x".
 * Control characters and backslashes are escaped \ooo so that a line is a
 * line.
 */
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/mount.h>

#include "flags.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tree.h"

enum group_role {
	ROLE_SHARED = 0,
	ROLE_MASTER = 1,
	ROLE_PROPAGATE_FROM = 2,
};

static const char *const role_name[] = { "shared", "master", "propagate_from" };

/* One correspondence of peer group numbers, with the mounts that set it up. */
struct group_link {
	uint64_t ga, gb;
	size_t mount_a, mount_b;
	enum group_role role;
};

struct side {
	const struct mntcr_tree *t;
	char tag;             /* 'A' or 'B' */
	bool ns_prefix;       /* name mounts "ns<K>:<path>": either tree has several namespaces */
	size_t *layer;        /* 1 for the lowest mount of a stack, +1 per mount on top */
	size_t *layers;       /* height of the stack a mount belongs to */
	size_t *below;        /* mounts in the subtree, not counting the mount itself */
	size_t *sib_k;        /* 1-based position among the parent's children on the same path */
	size_t *sib_m;        /* how many children of the parent share that path */
	size_t *sb_map;       /* superblock -> the other side's superblock, IDX_NONE */
	size_t *sb_witness;   /* the mount that set sb_map */
	struct u64map groups; /* peer group number -> index into diff.links */
	struct kid *kids;     /* scratch for sorting children */
};

struct kid {
	const char *mountpoint;
	size_t pos; /* position in attach order: keeps same-path siblings in order */
	size_t idx;
};

struct work {
	size_t a, b; /* IDX_NONE on one side: a mount (subtree) only in the other */
};

struct diff {
	struct side a, b;
	mntcr_diff_func_t fn;
	void *userdata;
	size_t count;
	struct u64map sb_pairs; /* superblock pairs whose properties were compared */
	struct group_link *links;
	size_t n_links, cap_links;
	struct work *stack;
	size_t n_stack;
	struct work *scratch;
};

static int put_escaped(struct strbuf *b, const char *s)
{
	int r = 0;

	for (; *s && r == 0; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || c == '\\')
			r = strbuf_printf(b, "\\%03o", c);
		else
			r = strbuf_add(b, s, 1);
	}
	return r;
}

/* s escaped; NULL is "none" (as mountinfo prints it), an empty string "". */
static char *escape(const char *s)
{
	struct strbuf b = { 0 };

	if (s && !*s)
		return strdup("\"\"");
	if (put_escaped(&b, s ? s : "none") < 0) {
		strbuf_release(&b);
		return NULL;
	}
	return strbuf_detach(&b);
}

/* "/a", "/a (layer 2 of 3)", "/a (layer 1 of 2, sibling 2 of 2)"; "ns1:/a" with namespaces. */
static char *mount_name(const struct side *s, size_t i)
{
	const struct mntcr_mount *m = &s->t->mounts[i];
	struct strbuf b = { 0 };
	int r = 0;

	if (s->ns_prefix)
		r = strbuf_printf(&b, "ns%zu:", m->ns);
	if (r == 0)
		r = put_escaped(&b, m->abs); /* tree_abs_paths(), in mntcr_diff() */
	if (r == 0 && s->layers[i] > 1 && s->sib_m[i] > 1)
		r = strbuf_printf(&b, " (layer %zu of %zu, sibling %zu of %zu)", s->layer[i],
				  s->layers[i], s->sib_k[i], s->sib_m[i]);
	else if (r == 0 && s->layers[i] > 1)
		r = strbuf_printf(&b, " (layer %zu of %zu)", s->layer[i], s->layers[i]);
	else if (r == 0 && s->sib_m[i] > 1)
		r = strbuf_printf(&b, " (sibling %zu of %zu)", s->sib_k[i], s->sib_m[i]);
	if (r < 0) {
		strbuf_release(&b);
		return NULL;
	}
	return strbuf_detach(&b);
}

static int report(struct diff *d, const char *fmt, ...) _printf_(2, 3);
static int report(struct diff *d, const char *fmt, ...)
{
	_cleanup_free_ char *line = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0) {
		line = NULL;
		return -ENOMEM;
	}
	d->count++;
	if (d->fn)
		d->fn(line, d->userdata);
	return 0;
}

/* -------------------------------------------------------------------------- */
/* Per-side preparation: layers of stacks and subtree sizes, in O(n). */

/* An indexed tree has at least one namespace; be lenient with one that says none. */
static size_t tree_n_ns(const struct mntcr_tree *t)
{
	return t->n_ns ? t->n_ns : 1;
}

static size_t tree_ns_root(const struct mntcr_tree *t, size_t k)
{
	return t->n_ns ? t->nss[k].root : t->root;
}

static int side_init(struct side *s, const struct mntcr_tree *t, char tag, bool ns_prefix)
{
	size_t n = t->n_mounts ? t->n_mounts : 1, n_sbs = t->n_sbs ? t->n_sbs : 1;
	_cleanup_free_ size_t *order = NULL, *bottom = NULL;
	size_t n_order = 0, top = 0;

	*s = (struct side){ .t = t, .tag = tag, .ns_prefix = ns_prefix };
	s->layer = calloc(n, sizeof(size_t));
	s->layers = calloc(n, sizeof(size_t));
	s->below = calloc(n, sizeof(size_t));
	s->sib_k = calloc(n, sizeof(size_t));
	s->sib_m = calloc(n, sizeof(size_t));
	s->sb_map = malloc(n_sbs * sizeof(size_t));
	s->sb_witness = malloc(n_sbs * sizeof(size_t));
	s->kids = malloc(n * sizeof(struct kid));
	order = malloc(n * sizeof(size_t));
	bottom = malloc(n * sizeof(size_t));
	if (!s->layer || !s->layers || !s->below || !s->sib_k || !s->sib_m || !s->sb_map ||
	    !s->sb_witness || !s->kids || !order || !bottom)
		return -ENOMEM;
	for (size_t i = 0; i < t->n_sbs; i++)
		s->sb_map[i] = s->sb_witness[i] = IDX_NONE;
	for (size_t i = 0; i < t->n_mounts; i++)
		s->sib_k[i] = s->sib_m[i] = 1;
	/* Pre-order: a parent comes before its children. "order" doubles as the stack. */
	for (size_t k = 0; k < tree_n_ns(t); k++)
		if (tree_ns_root(t, k) != IDX_NONE)
			order[top++] = tree_ns_root(t, k);
	if (top == 0)
		return 0;
	while (n_order < top) {
		size_t i = order[n_order++];
		const struct mntcr_mount *m = &t->mounts[i];

		for (size_t k = 0; k < m->n_children; k++)
			order[top++] = tree_child_idx(t, m, k);
	}
	assert(n_order == t->n_mounts);

	for (size_t k = 0; k < n_order; k++) {
		size_t i = order[k], p = t->mounts[i].parent;

		if (p != IDX_NONE && !*mount_relpath(t, &t->mounts[i])) {
			s->layer[i] = s->layer[p] + 1;
			bottom[i] = bottom[p];
		} else {
			s->layer[i] = 1;
			bottom[i] = i;
		}
		if (s->layer[i] > s->layers[bottom[i]])
			s->layers[bottom[i]] = s->layer[i];
	}
	for (size_t k = 0; k < n_order; k++)
		s->layers[order[k]] = s->layers[bottom[order[k]]];
	/* Children after parents, so walking backwards sums subtrees. */
	for (size_t k = n_order; k > 0; k--) {
		size_t i = order[k - 1], p = t->mounts[i].parent;

		if (p != IDX_NONE)
			s->below[p] += s->below[i] + 1;
	}
	return 0;
}

static void side_release(struct side *s)
{
	free(s->layer);
	free(s->layers);
	free(s->below);
	free(s->sib_k);
	free(s->sib_m);
	free(s->sb_map);
	free(s->sb_witness);
	free(s->kids);
	u64map_release(&s->groups);
}

/* -------------------------------------------------------------------------- */
/* Values */

static uint64_t attr_normalize(uint64_t attr)
{
	return (attr & ~(uint64_t)MOUNT_ATTR__ATIME) | attr_atime(attr);
}

static bool source_is_path(const char *s)
{
	return s && s[0] == '/';
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Split a comma-separated list into a sorted array of items (pointers into *ret_buf). */
static int split_sorted(const char *s, char **ret_buf, char ***ret_items, size_t *ret_n)
{
	_cleanup_free_ char *buf = strdup(s ? s : "");
	_cleanup_free_ char **items = NULL;
	size_t n = 0, cap = 1;

	if (!buf)
		return -ENOMEM;
	for (const char *p = buf; *p; p++)
		if (*p == ',')
			cap++;
	items = malloc(cap * sizeof(char *));
	if (!items)
		return -ENOMEM;
	for (char *p = buf, *e; p; p = e) {
		e = strchr(p, ',');
		if (e)
			*e++ = 0;
		if (*p)
			items[n++] = p;
	}
	qsort(items, n, sizeof(char *), cmp_str);
	*ret_buf = TAKE_PTR(buf);
	*ret_items = TAKE_PTR(items);
	*ret_n = n;
	return 0;
}

/*
 * Compare two option strings as sets. On a difference, returns 1 and the
 * items only in a and only in b (comma-separated, "(none)" when none).
 */
static int options_differ(const char *a, const char *b, char **ret_only_a, char **ret_only_b)
{
	_cleanup_free_ char *buf_a = NULL, *buf_b = NULL;
	_cleanup_free_ char **ia = NULL, **ib = NULL;
	struct strbuf oa = { 0 }, ob = { 0 };
	size_t na, nb, i = 0, j = 0;
	int r;

	r = split_sorted(a, &buf_a, &ia, &na);
	if (r < 0)
		return r;
	r = split_sorted(b, &buf_b, &ib, &nb);
	if (r < 0)
		return r;
	while (r == 0 && (i < na || j < nb)) {
		int c = i >= na ? 1 : j >= nb ? -1 : strcmp(ia[i], ib[j]);
		const char *item = c <= 0 ? ia[i] : ib[j];

		if (c == 0) {
			/* equal: skip duplicates on both sides too */
			while (i < na && streq(ia[i], item))
				i++;
			while (j < nb && streq(ib[j], item))
				j++;
			continue;
		}
		if (c < 0) {
			r = (oa.len ? strbuf_puts(&oa, ",") : 0) ?: put_escaped(&oa, item);
			while (i < na && streq(ia[i], item))
				i++;
		} else {
			r = (ob.len ? strbuf_puts(&ob, ",") : 0) ?: put_escaped(&ob, item);
			while (j < nb && streq(ib[j], item))
				j++;
		}
	}
	if (r == 0 && oa.len == 0 && ob.len == 0) {
		strbuf_release(&oa);
		strbuf_release(&ob);
		return 0;
	}
	if (r == 0 && oa.len == 0)
		r = strbuf_puts(&oa, "(none)");
	if (r == 0 && ob.len == 0)
		r = strbuf_puts(&ob, "(none)");
	if (r < 0) {
		strbuf_release(&oa);
		strbuf_release(&ob);
		return r;
	}
	*ret_only_a = strbuf_detach(&oa);
	*ret_only_b = strbuf_detach(&ob);
	if (!*ret_only_a || !*ret_only_b) {
		free(*ret_only_a);
		free(*ret_only_b);
		return -ENOMEM;
	}
	return 1;
}

/* "shared:1,master:2,propagate_from:3,unbindable", "private" when none. */
static char *propagation_string(const struct mntcr_mount *m)
{
	struct strbuf b = { 0 };
	int r = 0;

	if (m->shared)
		r = strbuf_printf(&b, "shared:%" PRIu64, m->shared);
	if (r == 0 && m->master)
		r = strbuf_printf(&b, "%smaster:%" PRIu64, b.len ? "," : "", m->master);
	if (r == 0 && m->propagate_from)
		r = strbuf_printf(&b, "%spropagate_from:%" PRIu64, b.len ? "," : "",
				  m->propagate_from);
	if (r == 0 && b.len == 0)
		r = strbuf_puts(&b, "private");
	if (r < 0) {
		strbuf_release(&b);
		return NULL;
	}
	return strbuf_detach(&b);
}

/* -------------------------------------------------------------------------- */
/* Relations: superblocks and peer groups */

static const char *sb_opts_of(const struct mntcr_tree *t, const struct mntcr_mount *m)
{
	const char *o = t->sbs[m->sb].opts;

	return o ? o : m->sb_opts;
}

/* fstype, source and options of a pair of superblocks, once per pair. */
static int compare_sbs(struct diff *d, size_t ia, size_t ib, const char *name)
{
	const struct mntcr_mount *ma = &d->a.t->mounts[ia], *mb = &d->b.t->mounts[ib];
	uint64_t key = ((uint64_t)ma->sb << 32) | (uint64_t)mb->sb;
	const char *sa = ma->source ? ma->source : "none", *sb = mb->source ? mb->source : "none";
	_cleanup_free_ char *only_a = NULL, *only_b = NULL;
	int r;

	if (u64map_get(&d->sb_pairs, key, NULL))
		return 0;
	r = u64map_put(&d->sb_pairs, key, 0);
	if (r < 0)
		return r;

	if (!streq(ma->fstype, mb->fstype)) {
		_cleanup_free_ char *fa = escape(ma->fstype), *fb = escape(mb->fstype);

		if (!fa || !fb)
			return -ENOMEM;
		r = report(d, "%s: fstype %s != %s", name, fa, fb);
		if (r < 0)
			return r;
	}
	/* A block device's path depends on the machine (/dev/vda vs /dev/vda1, dm names). */
	if (!(source_is_path(sa) && source_is_path(sb)) && !streq(sa, sb)) {
		_cleanup_free_ char *ea = escape(sa), *eb = escape(sb);

		if (!ea || !eb)
			return -ENOMEM;
		r = report(d, "%s: source %s != %s", name, ea, eb);
		if (r < 0)
			return r;
	}
	r = options_differ(sb_opts_of(d->a.t, ma), sb_opts_of(d->b.t, mb), &only_a, &only_b);
	if (r > 0)
		r = report(d, "%s: superblock options %s != %s", name, only_a, only_b);
	return r;
}

/* Record sb_x -> sb_y on side x, or report that x shares a superblock that y splits. */
static int map_sb(struct diff *d, struct side *x, const struct side *y, size_t ix, size_t iy)
{
	size_t sx = x->t->mounts[ix].sb, sy = y->t->mounts[iy].sb;
	_cleanup_free_ char *n1 = NULL, *n2 = NULL;

	if (x->sb_map[sx] == IDX_NONE) {
		x->sb_map[sx] = sy;
		x->sb_witness[sx] = ix;
		return 0;
	}
	if (x->sb_map[sx] == sy)
		return 0;
	n1 = mount_name(x, x->sb_witness[sx]);
	n2 = mount_name(x, ix);
	if (!n1 || !n2)
		return -ENOMEM;
	return report(d, "%s and %s: share a superblock in %c but not in %c", n1, n2, x->tag,
		      y->tag);
}

static int group_conflict(struct diff *d, const struct side *x, const struct side *y,
			  size_t witness, enum group_role wrole, size_t ix, enum group_role role)
{
	_cleanup_free_ char *n1 = mount_name(x, witness), *n2 = mount_name(x, ix);

	if (!n1 || !n2)
		return -ENOMEM;
	if (wrole == role && role == ROLE_SHARED)
		return report(d, "%s and %s: share a peer group in %c but not in %c", n1, n2,
			      x->tag, y->tag);
	if (wrole == role && role == ROLE_MASTER)
		return report(d, "%s and %s: share a master in %c but not in %c", n1, n2, x->tag,
			      y->tag);
	if (wrole == role && role == ROLE_PROPAGATE_FROM)
		return report(d, "%s and %s: receive from one peer group in %c but not in %c", n1,
			      n2, x->tag, y->tag);
	return report(d, "%s (%s) and %s (%s): the same peer group in %c but not in %c", n1,
		      role_name[wrole], n2, role_name[role], x->tag, y->tag);
}

/*
 * Peer group ga of mount ia corresponds to gb of mount ib (in the same role).
 * One bijection covers shared, master and propagate_from numbers.
 */
static int map_group(struct diff *d, size_t ia, size_t ib, uint64_t ga, uint64_t gb,
		     enum group_role role)
{
	size_t la, lb;
	bool has_a = u64map_get(&d->a.groups, ga, &la), has_b = u64map_get(&d->b.groups, gb, &lb);
	int r;

	if (!has_a && !has_b) {
		r = GROW(d->links, d->cap_links, d->n_links + 1);
		if (r < 0)
			return r;
		d->links[d->n_links] = (struct group_link){
			.ga = ga,
			.gb = gb,
			.mount_a = ia,
			.mount_b = ib,
			.role = role,
		};
		r = u64map_put(&d->a.groups, ga, d->n_links);
		if (r < 0)
			return r;
		r = u64map_put(&d->b.groups, gb, d->n_links);
		if (r < 0)
			return r;
		d->n_links++;
		return 0;
	}
	if (has_a && d->links[la].gb != gb) {
		r = group_conflict(d, &d->a, &d->b, d->links[la].mount_a, d->links[la].role, ia,
				   role);
		if (r < 0)
			return r;
	}
	if (has_b && d->links[lb].ga != ga) {
		r = group_conflict(d, &d->b, &d->a, d->links[lb].mount_b, d->links[lb].role, ib,
				   role);
		if (r < 0)
			return r;
	}
	return 0;
}

/* -------------------------------------------------------------------------- */
/* One matched pair */

static int compare_pair(struct diff *d, size_t ia, size_t ib)
{
	const struct mntcr_mount *ma = &d->a.t->mounts[ia], *mb = &d->b.t->mounts[ib];
	_cleanup_free_ char *name = mount_name(&d->a, ia);
	uint64_t xa, xb;
	int r;

	if (!name)
		return -ENOMEM;

	if (!streq(ma->root, mb->root)) {
		_cleanup_free_ char *ra = escape(ma->root), *rb = escape(mb->root);

		if (!ra || !rb)
			return -ENOMEM;
		r = report(d, "%s: root %s != %s", name, ra, rb);
		if (r < 0)
			return r;
	}

	xa = attr_normalize(ma->attr);
	xb = attr_normalize(mb->attr);
	if (xa != xb) {
		char fa[256], fb[256];

		if (mntcr_attr_format(xa, fa, sizeof(fa)) < 0 ||
		    mntcr_attr_format(xb, fb, sizeof(fb)) < 0)
			return -ENOBUFS;
		/* Bits the table does not name still count: show them in hex. */
		if (streq(fa, fb))
			r = report(d, "%s: mount flags 0x%" PRIx64 " != 0x%" PRIx64, name, xa, xb);
		else
			r = report(d, "%s: mount options %s != %s", name, fa, fb);
		if (r < 0)
			return r;
	}

	if (ma->unbindable != mb->unbindable) {
		r = report(d, "%s: unbindable in %c but not in %c", name,
			   ma->unbindable ? 'A' : 'B', ma->unbindable ? 'B' : 'A');
		if (r < 0)
			return r;
	}

	if (!ma->shared != !mb->shared || !ma->master != !mb->master ||
	    !ma->propagate_from != !mb->propagate_from) {
		_cleanup_free_ char *pa = propagation_string(ma), *pb = propagation_string(mb);

		if (!pa || !pb)
			return -ENOMEM;
		r = report(d, "%s: propagation %s != %s", name, pa, pb);
		if (r < 0)
			return r;
	}
	if (ma->shared && mb->shared) {
		r = map_group(d, ia, ib, ma->shared, mb->shared, ROLE_SHARED);
		if (r < 0)
			return r;
	}
	if (ma->master && mb->master) {
		r = map_group(d, ia, ib, ma->master, mb->master, ROLE_MASTER);
		if (r < 0)
			return r;
	}
	if (ma->propagate_from && mb->propagate_from) {
		r = map_group(d, ia, ib, ma->propagate_from, mb->propagate_from,
			      ROLE_PROPAGATE_FROM);
		if (r < 0)
			return r;
	}

	r = compare_sbs(d, ia, ib, name);
	if (r < 0)
		return r;
	r = map_sb(d, &d->a, &d->b, ia, ib);
	if (r < 0)
		return r;
	return map_sb(d, &d->b, &d->a, ib, ia);
}

/*
 * "/x: only in A", with what makes the same path differ: a mount that covers
 * it (an over-mount on one side, a nested mount on the other) and its
 * submounts, which are not reported one by one.
 */
static int report_only(struct diff *d, const struct side *s, size_t i)
{
	const struct mntcr_mount *m = &s->t->mounts[i];
	_cleanup_free_ char *name = mount_name(s, i), *cover = NULL;
	char below[64] = "";

	if (!name)
		return -ENOMEM;
	/* The lower layers of a stack are covered too, but their names already say so. */
	if (m->cover == COVER_SIBLING && m->covered_by != IDX_NONE) {
		cover = mount_name(s, m->covered_by);
		if (!cover)
			return -ENOMEM;
	}
	if (s->below[i] > 0)
		snprintf(below, sizeof(below), "with %zu mount%s below it", s->below[i],
			 s->below[i] == 1 ? "" : "s");
	if (!cover && !*below)
		return report(d, "%s: only in %c", name, s->tag);
	return report(d, "%s: only in %c (%s%s%s%s)", name, s->tag, cover ? "covered by " : "",
		      cover ? cover : "", cover && *below ? "; " : "", below);
}

/* -------------------------------------------------------------------------- */
/* Matching children */

static int cmp_kid(const void *x, const void *y)
{
	const struct kid *a = x, *b = y;
	int c = strcmp(a->mountpoint, b->mountpoint);

	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static size_t sorted_kids(struct side *s, size_t i)
{
	const struct mntcr_mount *m = &s->t->mounts[i];

	for (size_t k = 0; k < m->n_children; k++) {
		size_t c = tree_child_idx(s->t, m, k);

		/* the children of two matched mounts: the paths below theirs decide */
		s->kids[k] = (struct kid){ .mountpoint = mount_relpath(s->t, &s->t->mounts[c]),
					   .pos = k,
					   .idx = c };
	}
	qsort(s->kids, m->n_children, sizeof(struct kid), cmp_kid);
	return m->n_children;
}

/* Length of the run of children starting at k on the same mountpoint; sets sib_k/sib_m. */
static size_t run_length(struct side *s, size_t n, size_t k)
{
	size_t e = k + 1;

	while (e < n && streq(s->kids[e].mountpoint, s->kids[k].mountpoint))
		e++;
	for (size_t j = k; j < e; j++) {
		s->sib_k[s->kids[j].idx] = j - k + 1;
		s->sib_m[s->kids[j].idx] = e - k;
	}
	return e - k;
}

/* Merge the children of ia and ib by mountpoint and push the result, in order, on the stack. */
static void push_children(struct diff *d, size_t ia, size_t ib)
{
	size_t na = sorted_kids(&d->a, ia), nb = sorted_kids(&d->b, ib);
	size_t i = 0, j = 0, n = 0;

	while (i < na || j < nb) {
		int c = i >= na   ? 1
			: j >= nb ? -1
				  : strcmp(d->a.kids[i].mountpoint, d->b.kids[j].mountpoint);
		size_t ra = c <= 0 ? run_length(&d->a, na, i) : 0;
		size_t rb = c >= 0 ? run_length(&d->b, nb, j) : 0;

		for (size_t k = 0; k < ra || k < rb; k++)
			d->scratch[n++] = (struct work){
				.a = k < ra ? d->a.kids[i + k].idx : IDX_NONE,
				.b = k < rb ? d->b.kids[j + k].idx : IDX_NONE,
			};
		i += ra;
		j += rb;
	}
	/* reversed, so that the stack pops them in path order */
	while (n > 0)
		d->stack[d->n_stack++] = d->scratch[--n];
}

MNTCR_EXPORT int mntcr_diff(const struct mntcr_tree *a, const struct mntcr_tree *b,
			    mntcr_diff_func_t fn, void *userdata)
{
	struct diff d = { .fn = fn, .userdata = userdata };
	size_t cap, n_ns_a, n_ns_b, n_ns;
	bool ns_prefix;
	int r;

	if (!a || !b || !a->indexed || !b->indexed)
		return -EINVAL;
	/* superblock pairs are packed into one 64-bit key */
	if (a->n_sbs > UINT32_MAX || b->n_sbs > UINT32_MAX)
		return -EINVAL;
	/* the mounts are named by their absolute paths */
	if ((r = tree_abs_paths(a)) < 0 || (r = tree_abs_paths(b)) < 0)
		return r;

	n_ns_a = tree_n_ns(a);
	n_ns_b = tree_n_ns(b);
	n_ns = n_ns_a < n_ns_b ? n_ns_a : n_ns_b;
	ns_prefix = n_ns_a > 1 || n_ns_b > 1;
	r = side_init(&d.a, a, 'A', ns_prefix);
	if (r < 0)
		goto out;
	r = side_init(&d.b, b, 'B', ns_prefix);
	if (r < 0)
		goto out;
	/* every mount of either side is pushed at most once */
	cap = a->n_mounts + b->n_mounts + 1;
	d.stack = malloc(cap * sizeof(struct work));
	d.scratch = malloc(cap * sizeof(struct work));
	if (!d.stack || !d.scratch) {
		r = -ENOMEM;
		goto out;
	}

	if (n_ns_a != n_ns_b) {
		r = report(&d, "namespaces: A has %zu, B has %zu", n_ns_a, n_ns_b);
		if (r < 0)
			goto out;
	}
	/*
	 * Namespace k of A against namespace k of B, the roots pushed backwards so
	 * that namespace 0 is popped (and its subtree walked) first. Peer groups
	 * and superblocks map across namespaces: d's bijections are global.
	 */
	for (size_t k = n_ns; k > 0; k--) {
		size_t ra = tree_ns_root(a, k - 1), rb = tree_ns_root(b, k - 1);

		if (ra != IDX_NONE || rb != IDX_NONE)
			d.stack[d.n_stack++] = (struct work){ .a = ra, .b = rb };
	}
	while (d.n_stack > 0) {
		struct work w = d.stack[--d.n_stack];

		if (w.b == IDX_NONE)
			r = report_only(&d, &d.a, w.a);
		else if (w.a == IDX_NONE)
			r = report_only(&d, &d.b, w.b);
		else {
			r = compare_pair(&d, w.a, w.b);
			if (r >= 0)
				push_children(&d, w.a, w.b);
		}
		if (r < 0)
			goto out;
	}
	r = d.count > INT_MAX ? INT_MAX : (int)d.count;
out:
	side_release(&d.a);
	side_release(&d.b);
	u64map_release(&d.sb_pairs);
	free(d.links);
	free(d.stack);
	free(d.scratch);
	return r;
}
