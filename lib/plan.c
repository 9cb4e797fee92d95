/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The planner: image tree + the restorer's own tree + options -> an ordered
 * list of operations. Pure: no syscalls, so it is golden-tested without root.
 *
 * The strategy (docs/design.md):
 *  - Every superblock the namespace owns is created once, detached, and kept
 *    childless as a "template"; every other mount of it is a non-recursive
 *    clone of the template at the mount's root path. Cloning from a childless
 *    mount costs O(1) (a clone of a mount with many children costs O(children)),
 *    and no path in a template is ever covered, so roots hidden under
 *    over-mounts are reachable. The last user of a template whose root is "/"
 *    takes the template itself instead of a clone.
 *  - An external superblock (the restorer's namespace has it too) gets one
 *    template per source mount: a non-recursive clone of the restorer's mount.
 *  - Directories and files for roots and mountpoints are made in the
 *    templates before any child is attached.
 *  - Every mount is attached, detached tree by detached tree, with move_mount
 *    relative to an fd of its parent, so covered paths stay reachable. Among
 *    the children of one parent, a mount whose path lies below a sibling's is
 *    attached before that sibling; the next layer of a stack after the layer
 *    below it. The whole tree is then attached on / and pivoted into.
 *  - Per-mount flags and superblock ro come after all content and
 *    directories are in place, on each detached clone before it is attached
 *    (mount_setattr refuses non-root mounts of a detached tree).
 *  - Propagation is the last phase, after the tree is the namespace's root,
 *    so building the tree never propagates anything anywhere.
 */
#include <inttypes.h>
#include <stdarg.h>

#include "flags.h"
#include "mntcr/mntcr.h"
#include "plan.h"
#include "tree.h"

static const char *const creatable_fstypes[] = {
	"tmpfs", "ramfs", "proc", "sysfs", "devpts", "mqueue", "cgroup2",
};

bool plan_fstype_creatable(const char *fstype)
{
	for (size_t i = 0; i < ARRAY_SIZE(creatable_fstypes); i++)
		if (streq(fstype, creatable_fstypes[i]))
			return true;
	return false;
}

const char *plan_phase_name(enum plan_phase p)
{
	static const char *const names[] = {
		[PHASE_CREATE] = "create",
		[PHASE_ASSEMBLE] = "assemble",
		[PHASE_FLAGS] = "flags",
		[PHASE_ROOT] = "root",
		[PHASE_PROPAGATION] = "propagation",
	};
	return (unsigned)p < ARRAY_SIZE(names) ? names[p] : "?";
}

const char *plan_op_name(enum plan_op_type t)
{
	static const char *const names[] = {
		[OP_SB_CREATE] = "fsmount",
		[OP_TEMPLATE_BIND] = "template",
		[OP_MKPATH] = "mkpath",
		[OP_CLONE] = "clone",
		[OP_ATTACH] = "attach",
		[OP_SETATTR] = "setattr",
		[OP_SB_RDONLY] = "sb-ro",
		[OP_SET_PROPAGATION] = "propagation",
		[OP_SET_ROOT] = "set-root",
	};
	return (unsigned)t < ARRAY_SIZE(names) ? names[t] : "?";
}

void report_set(struct mntcr_report *r, const char *phase, size_t op_index, uint64_t mount_id,
		const char *path, const char *op, int err, const char *fmt, ...)
{
	va_list ap;

	if (!r)
		return;
	mntcr_report_clear(r);
	r->phase = phase;
	r->op_index = op_index;
	r->mount_id = mount_id;
	r->path = xstrdup(path);
	r->op = op;
	r->err = err;
	va_start(ap, fmt);
	if (vasprintf(&r->msg, fmt, ap) < 0)
		r->msg = NULL;
	va_end(ap);
}

/* -------------------------------------------------------------------------- */

struct planner {
	const struct mntcr_tree *t;
	const struct mntcr_tree *host;
	const struct mntcr_restore_opts *opts;
	struct mntcr_plan *p;
	struct mntcr_report *report;

	size_t *src_slot;   /* per image mount: template to clone from */
	char **src_rel;     /* per image mount: path inside the template ("" = its root) */
	uint64_t *src_attr; /* per image mount: the flags a clone of it carries, UINT64_MAX unknown */
	struct u64map host_tmpl; /* host mount index -> template slot */
	struct strmap path_tmpl; /* explicit path -> template slot (keys borrowed from opts) */
	struct strmap made;      /* "slot\0path" keys of OP_MKPATH already planned */
	char **made_keys;
	size_t n_made, cap_made;
	struct u64map host_by_dev; /* dev -> first index in host_sorted */
	size_t *host_sorted;       /* visible host mounts sorted by (dev, root length) */
};

static int emit(struct planner *pl, const struct plan_op *op)
{
	struct mntcr_plan *p = pl->p;
	int r = GROW(p->ops, p->cap_ops, p->n_ops + 1);

	if (r < 0)
		return r;
	p->ops[p->n_ops++] = *op;
	return 0;
}

static size_t new_slot(struct planner *pl)
{
	return pl->p->n_slots++;
}

static int fail(struct planner *pl, int err, const struct mntcr_mount *m, const char *fmt, ...)
	_printf_(4, 5);
static int fail(struct planner *pl, int err, const struct mntcr_mount *m, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	report_set(pl->report, "plan", MNTCR_NONE, m ? m->id : 0, m ? m->mountpoint : NULL, NULL, err,
		   "%s", msg ? msg : "Out of memory");
	return err;
}

/* -------------------------------------------------------------------------- */
/* Validation: refuse what cannot be restored before anything is mounted. */

static bool is_deleted(const char *path)
{
	size_t n = strlen(path);
	return n >= 9 && streq(path + n - 9, "//deleted");
}

static int validate(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;

	if (t->root == IDX_NONE)
		return fail(pl, -EBADMSG, NULL, "The image has no root mount");
	for (size_t i = 0; i < t->n_mounts; i++) {
		const struct mntcr_mount *m = &t->mounts[i];
		const struct mntcr_sb *sb = &t->sbs[m->sb];

		if (is_deleted(m->root))
			return fail(pl, -EOPNOTSUPP, m,
				    "Mount %" PRIu64 " at %s is a bind of a deleted file or directory (%s)",
				    m->id, m->mountpoint, m->root);
		if (!path_is_normalized(m->root) || !path_is_normalized(m->mountpoint))
			return fail(pl, -EBADMSG, m, "Mount %" PRIu64 " has an unsafe path: root %s, mountpoint %s",
				    m->id, m->root, m->mountpoint);
		if (m->attr & ~(uint64_t)MNTCR_ATTR_KNOWN)
			return fail(pl, -EOPNOTSUPP, m,
				    "Mount %" PRIu64 " at %s has flags mntcr cannot restore (idmapped mounts)",
				    m->id, m->mountpoint);
		if (sb->owned && !plan_fstype_creatable(sb->fstype))
			return fail(pl, -EOPNOTSUPP, m,
				    "Mount %" PRIu64 " at %s is a %s filesystem that only the dumped namespace had; "
				    "mntcr can create tmpfs, ramfs, proc, sysfs, devpts, mqueue and cgroup2 only "
				    "(or map it with --external)",
				    m->id, m->mountpoint, sb->fstype);
	}
	return 0;
}

/* -------------------------------------------------------------------------- */
/* Sources: where each mount is cloned from. */

static int template_for_path(struct planner *pl, const char *path, size_t sb, size_t *ret_slot)
{
	size_t slot;
	int r;

	if (strmap_get(&pl->path_tmpl, path, &slot)) {
		*ret_slot = slot;
		return 0;
	}
	slot = new_slot(pl);
	r = emit(pl, &(struct plan_op){ .type = OP_TEMPLATE_BIND, .phase = PHASE_CREATE, .mount = IDX_NONE,
					.sb = sb, .slot = slot, .src = IDX_NONE, .path = strdup(path) });
	if (r < 0)
		return r;
	if (!pl->p->ops[pl->p->n_ops - 1].path)
		return -ENOMEM;
	r = strmap_put(&pl->path_tmpl, pl->p->ops[pl->p->n_ops - 1].path, slot);
	if (r < 0)
		return r;
	*ret_slot = slot;
	return 0;
}

static const struct mntcr_external *find_external(const struct planner *pl, const char *key)
{
	if (!pl->opts)
		return NULL;
	for (size_t i = 0; i < pl->opts->n_externals; i++)
		if (streq(pl->opts->externals[i].key, key))
			return &pl->opts->externals[i];
	return NULL;
}

static uint64_t dev_key(uint32_t major, uint32_t minor)
{
	return ((uint64_t)major << 32) | minor;
}

static const struct mntcr_tree *cmp_host;
static int cmp_host_mounts(const void *a, const void *b)
{
	const struct mntcr_mount *x = &cmp_host->mounts[*(const size_t *)a];
	const struct mntcr_mount *y = &cmp_host->mounts[*(const size_t *)b];
	uint64_t dx = dev_key(x->dev_major, x->dev_minor), dy = dev_key(y->dev_major, y->dev_minor);
	size_t lx, ly;

	if (dx != dy)
		return dx < dy ? -1 : 1;
	lx = strlen(x->root);
	ly = strlen(y->root);
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return strcmp(x->mountpoint, y->mountpoint);
}

/* Index the restorer's visible mounts by device, shortest root first. */
static int index_host(struct planner *pl)
{
	const struct mntcr_tree *h = pl->host;
	size_t n = 0;

	if (!h)
		return 0;
	pl->host_sorted = malloc((h->n_mounts ? h->n_mounts : 1) * sizeof(size_t));
	if (!pl->host_sorted)
		return -ENOMEM;
	for (size_t i = 0; i < h->n_mounts; i++)
		if (!h->mounts[i].hidden)
			pl->host_sorted[n++] = i;
	cmp_host = h;
	qsort(pl->host_sorted, n, sizeof(size_t), cmp_host_mounts);
	cmp_host = NULL;
	for (size_t k = n; k > 0; k--) {
		const struct mntcr_mount *m = &h->mounts[pl->host_sorted[k - 1]];
		int r = u64map_put(&pl->host_by_dev, dev_key(m->dev_major, m->dev_minor), k - 1);
		if (r < 0)
			return r;
	}
	/* terminate runs: remember n through the map's absence of a sentinel */
	pl->host_sorted = realloc(pl->host_sorted, (n + 1) * sizeof(size_t));
	if (!pl->host_sorted)
		return -ENOMEM;
	pl->host_sorted[n] = IDX_NONE;
	return 0;
}

static int set_source(struct planner *pl, size_t mi, size_t slot, const char *rel, uint64_t attr)
{
	pl->src_slot[mi] = slot;
	pl->src_attr[mi] = attr;
	pl->src_rel[mi] = strdup(rel);
	return pl->src_rel[mi] ? 0 : -ENOMEM;
}

static int resolve_external(struct planner *pl, size_t mi)
{
	const struct mntcr_tree *t = pl->t;
	const struct mntcr_mount *m = &t->mounts[mi], *rootm = &t->mounts[t->root];
	const struct mntcr_sb *sb = &t->sbs[m->sb];
	const struct mntcr_external *e;
	char key[32];
	const char *rel;
	size_t slot, k;
	int r;

	/* 1. --external MOUNTPOINT=PATH: this mount's root is PATH */
	e = find_external(pl, m->mountpoint);
	if (e) {
		r = template_for_path(pl, e->path, m->sb, &slot);
		return r < 0 ? r : set_source(pl, mi, slot, "", UINT64_MAX);
	}
	/* 2. --root DIR: the root mount, and mounts of its superblock below its root */
	if (pl->opts && pl->opts->root && m->sb == rootm->sb && (rel = path_relative(m->root, rootm->root))) {
		r = template_for_path(pl, pl->opts->root, m->sb, &slot);
		return r < 0 ? r : set_source(pl, mi, slot, rel, UINT64_MAX);
	}
	/* 3. --external MAJ:MIN=PATH: PATH shows the superblock's recorded root */
	snprintf(key, sizeof(key), "%" PRIu32 ":%" PRIu32, sb->dev_major, sb->dev_minor);
	e = find_external(pl, key);
	if (e) {
		const char *base = sb->ext_root ? sb->ext_root : "/";

		rel = path_relative(m->root, base);
		if (!rel)
			return fail(pl, -ENOENT, m,
				    "Mount %" PRIu64 " at %s has root %s, outside the root %s that --external %s maps",
				    m->id, m->mountpoint, m->root, base, key);
		r = template_for_path(pl, e->path, m->sb, &slot);
		return r < 0 ? r : set_source(pl, mi, slot, rel, UINT64_MAX);
	}
	/* 4. automatic: a visible mount of the same superblock here whose root contains ours */
	if (pl->host && u64map_get(&pl->host_by_dev, dev_key(sb->dev_major, sb->dev_minor), &k)) {
		for (; pl->host_sorted[k] != IDX_NONE; k++) {
			const struct mntcr_mount *h = &pl->host->mounts[pl->host_sorted[k]];

			if (h->dev_major != sb->dev_major || h->dev_minor != sb->dev_minor)
				break;
			rel = path_relative(m->root, h->root);
			if (!rel)
				continue;
			if (!u64map_get(&pl->host_tmpl, pl->host_sorted[k], &slot)) {
				r = template_for_path(pl, h->mountpoint, m->sb, &slot);
				if (r < 0)
					return r;
				r = u64map_put(&pl->host_tmpl, pl->host_sorted[k], slot);
				if (r < 0)
					return r;
			}
			return set_source(pl, mi, slot, rel, h->attr);
		}
	}
	return fail(pl, -ENOENT, m,
		    "Mount %" PRIu64 " at %s needs the external %s filesystem %s (key %s, root %s), "
		    "which is not mounted here; map it with --external %s=PATH or --external %s=PATH",
		    m->id, m->mountpoint, sb->fstype, sb->source ? sb->source : "none", key, m->root,
		    m->mountpoint, key);
}

static int plan_sources(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t s = 0; s < t->n_sbs; s++) {
		const struct mntcr_sb *sb = &t->sbs[s];

		pl->p->sb_slot[s] = IDX_NONE;
		if (!sb->owned || sb->n_mounts == 0)
			continue;
		pl->p->sb_slot[s] = new_slot(pl);
		r = emit(pl, &(struct plan_op){ .type = OP_SB_CREATE, .phase = PHASE_CREATE, .mount = IDX_NONE,
						.sb = s, .slot = pl->p->sb_slot[s], .src = IDX_NONE });
		if (r < 0)
			return r;
		for (size_t k = 0; k < sb->n_mounts; k++) {
			size_t mi = tree_sb_mount_idx(t, sb, k);

			/* fsmount(2) with no attributes: rw, relatime */
			r = set_source(pl, mi, pl->p->sb_slot[s], t->mounts[mi].root + 1, MOUNT_ATTR_RELATIME);
			if (r < 0)
				return r;
		}
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++)
		if (!t->sbs[t->mounts[mi].sb].owned) {
			r = resolve_external(pl, mi);
			if (r < 0)
				return r;
		}
	return 0;
}

/* -------------------------------------------------------------------------- */
/* Directories, files, clones */

static int mkpath(struct planner *pl, size_t tmpl, const char *path, enum node_type node, size_t like,
		  size_t mount)
{
	_cleanup_free_ char *key = NULL;
	int r;

	if (!*path)
		return 0; /* the template's root exists */
	if (asprintf(&key, "%zu:%s", tmpl, path) < 0)
		return -ENOMEM;
	if (strmap_get(&pl->made, key, NULL))
		return 0;
	r = emit(pl, &(struct plan_op){ .type = OP_MKPATH, .phase = PHASE_CREATE, .mount = mount,
					.sb = IDX_NONE, .slot = tmpl, .src = tmpl, .path = strdup(path),
					.node = node, .like_slot = like });
	if (r < 0)
		return r;
	if (!pl->p->ops[pl->p->n_ops - 1].path)
		return -ENOMEM;
	r = GROW(pl->made_keys, pl->cap_made, pl->n_made + 1);
	if (r < 0)
		return r;
	pl->made_keys[pl->n_made++] = key;
	r = strmap_put(&pl->made, key, 0);
	key = NULL;
	return r;
}

static int plan_create(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	size_t *taker;
	int r = 0;

	/* Roots of every mount of an owned superblock must exist in it. */
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];

		if (!t->sbs[m->sb].owned)
			continue;
		r = mkpath(pl, pl->src_slot[mi], pl->src_rel[mi],
			   m->type == NODE_FILE ? NODE_FILE : NODE_DIR, IDX_NONE, mi);
		if (r < 0)
			return r;
	}

	/* Which mount takes each owned template itself: one whose root is "/". */
	taker = malloc((t->n_sbs ? t->n_sbs : 1) * sizeof(size_t));
	if (!taker)
		return -ENOMEM;
	for (size_t s = 0; s < t->n_sbs; s++)
		taker[s] = IDX_NONE;
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];

		if (t->sbs[m->sb].owned && taker[m->sb] == IDX_NONE && streq(m->root, "/"))
			taker[m->sb] = mi;
	}

	for (size_t mi = 0; mi < t->n_mounts && r == 0; mi++) {
		if (taker[t->mounts[mi].sb] == mi) {
			pl->p->mount_slot[mi] = pl->src_slot[mi];
			continue;
		}
		pl->p->mount_slot[mi] = new_slot(pl);
		r = emit(pl, &(struct plan_op){ .type = OP_CLONE, .phase = PHASE_CREATE, .mount = mi,
						.sb = t->mounts[mi].sb, .slot = pl->p->mount_slot[mi],
						.src = pl->src_slot[mi], .path = strdup(pl->src_rel[mi]) });
		if (r == 0 && !pl->p->ops[pl->p->n_ops - 1].path)
			r = -ENOMEM;
	}
	free(taker);
	if (r < 0)
		return r;

	/* Mountpoints inside owned parents. */
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi], *p;
		_cleanup_free_ char *path = NULL;
		const char *rel;

		if (m->parent == IDX_NONE)
			continue;
		p = &t->mounts[m->parent];
		if (!t->sbs[p->sb].owned)
			continue;
		rel = mount_relpath(t, m);
		if (!*rel)
			continue; /* on the parent's root */
		path = path_join(p->root, rel);
		if (!path)
			return -ENOMEM;
		r = mkpath(pl, pl->p->sb_slot[p->sb], path + 1, m->type,
			   m->type == NODE_UNKNOWN ? pl->p->mount_slot[mi] : IDX_NONE, mi);
		if (r < 0)
			return r;
	}
	return 0;
}

/* -------------------------------------------------------------------------- */
/* Assembly, flags, propagation, root */

static int plan_assemble(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	_cleanup_free_ size_t *stack = malloc((t->n_mounts ? t->n_mounts : 1) * sizeof(size_t));
	size_t n = 0;

	if (!stack)
		return -ENOMEM;
	stack[n++] = t->root;
	while (n > 0) {
		const struct mntcr_mount *m = &t->mounts[stack[--n]];
		size_t mi = (size_t)(m - t->mounts);

		for (size_t k = 0; k < m->n_children; k++) {
			size_t ci = tree_child_idx(t, m, k);
			int r = emit(pl, &(struct plan_op){ .type = OP_ATTACH, .phase = PHASE_ASSEMBLE,
							    .mount = ci, .sb = IDX_NONE,
							    .slot = pl->p->mount_slot[ci],
							    .src = pl->p->mount_slot[mi],
							    .path = strdup(mount_relpath(t, &t->mounts[ci])) });
			if (r < 0)
				return r;
			if (!pl->p->ops[pl->p->n_ops - 1].path)
				return -ENOMEM;
		}
		for (size_t k = m->n_children; k > 0; k--)
			stack[n++] = tree_child_idx(t, m, k - 1);
	}
	return 0;
}

static int plan_flags(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		uint64_t want = (m->attr & MNTCR_ATTR_KNOWN & ~(uint64_t)MOUNT_ATTR__ATIME) | attr_atime(m->attr);
		uint64_t have = pl->src_attr[mi];

		if (have != UINT64_MAX)
			have = (have & MNTCR_ATTR_KNOWN & ~(uint64_t)MOUNT_ATTR__ATIME) | attr_atime(have);
		if (want == have)
			continue;
		r = emit(pl, &(struct plan_op){
				     .type = OP_SETATTR, .phase = PHASE_FLAGS, .mount = mi, .sb = IDX_NONE,
				     .slot = pl->p->mount_slot[mi], .src = IDX_NONE, .attr_set = want,
				     .attr_clr = (MNTCR_ATTR_KNOWN & ~want) | MOUNT_ATTR__ATIME });
		if (r < 0)
			return r;
	}
	for (size_t s = 0; s < t->n_sbs; s++) {
		const struct mntcr_sb *sb = &t->sbs[s];

		if (!sb->owned || pl->p->sb_slot[s] == IDX_NONE || !sb->opts || strncmp(sb->opts, "ro", 2) != 0 ||
		    (sb->opts[2] != 0 && sb->opts[2] != ','))
			continue;
		r = emit(pl, &(struct plan_op){ .type = OP_SB_RDONLY, .phase = PHASE_FLAGS, .mount = IDX_NONE,
						.sb = s, .slot = pl->p->sb_slot[s], .src = IDX_NONE });
		if (r < 0)
			return r;
	}
	return 0;
}

static int plan_propagation(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];

		if (!m->unbindable)
			continue;
		r = emit(pl, &(struct plan_op){ .type = OP_SET_PROPAGATION, .phase = PHASE_PROPAGATION,
						.mount = mi, .sb = IDX_NONE, .slot = pl->p->mount_slot[mi],
						.src = IDX_NONE, .propagation = MS_UNBINDABLE });
		if (r < 0)
			return r;
	}
	return 0;
}

static void planner_release(struct planner *pl)
{
	if (pl->src_rel)
		for (size_t i = 0; i < pl->t->n_mounts; i++)
			free(pl->src_rel[i]);
	free(pl->src_rel);
	free(pl->src_slot);
	free(pl->src_attr);
	for (size_t i = 0; i < pl->n_made; i++)
		free(pl->made_keys[i]);
	free(pl->made_keys);
	strmap_release(&pl->made);
	strmap_release(&pl->path_tmpl);
	u64map_release(&pl->host_tmpl);
	u64map_release(&pl->host_by_dev);
	free(pl->host_sorted);
}

MNTCR_EXPORT int mntcr_plan_build(const struct mntcr_tree *image, const struct mntcr_tree *host,
				  const struct mntcr_restore_opts *opts, struct mntcr_plan **ret_plan,
				  struct mntcr_report *report)
{
	struct planner pl = { .t = image, .host = host, .opts = opts, .report = report };
	struct mntcr_plan *p;
	int r;

	if (!image || !ret_plan || !image->indexed || (host && !host->indexed))
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->tree = image;
	p->mount_slot = calloc(image->n_mounts + 1, sizeof(size_t));
	p->sb_slot = calloc(image->n_sbs + 1, sizeof(size_t));
	pl.p = p;
	pl.src_slot = calloc(image->n_mounts + 1, sizeof(size_t));
	pl.src_rel = calloc(image->n_mounts + 1, sizeof(char *));
	pl.src_attr = calloc(image->n_mounts + 1, sizeof(uint64_t));
	if (!p->mount_slot || !p->sb_slot || !pl.src_slot || !pl.src_rel || !pl.src_attr) {
		r = -ENOMEM;
		goto fail;
	}

	r = validate(&pl);
	if (r < 0)
		goto fail;
	r = index_host(&pl);
	if (r < 0)
		goto fail;
	r = plan_sources(&pl);
	if (r < 0)
		goto fail;
	r = plan_create(&pl);
	if (r < 0)
		goto fail;
	r = plan_flags(&pl);
	if (r < 0)
		goto fail;
	r = plan_assemble(&pl);
	if (r < 0)
		goto fail;
	r = emit(&pl, &(struct plan_op){ .type = OP_SET_ROOT, .phase = PHASE_ROOT, .mount = image->root,
					 .sb = IDX_NONE, .slot = p->mount_slot[image->root], .src = IDX_NONE });
	if (r < 0)
		goto fail;
	r = plan_propagation(&pl);
	if (r < 0)
		goto fail;
	planner_release(&pl);
	*ret_plan = p;
	return 0;
fail:
	if (r == -ENOMEM && report && !report->msg)
		report_set(report, "plan", MNTCR_NONE, 0, NULL, NULL, r, "Out of memory while planning");
	planner_release(&pl);
	mntcr_plan_free(p);
	return r;
}

MNTCR_EXPORT size_t mntcr_plan_n_ops(const struct mntcr_plan *p)
{
	return p->n_ops;
}

MNTCR_EXPORT struct mntcr_plan *mntcr_plan_free(struct mntcr_plan *p)
{
	if (!p)
		return NULL;
	for (size_t i = 0; i < p->n_ops; i++)
		free(p->ops[i].path);
	free(p->ops);
	free(p->mount_slot);
	free(p->sb_slot);
	free(p);
	return NULL;
}

/* -------------------------------------------------------------------------- */
/* Printing */

static const char *node_name(enum node_type n)
{
	return n == NODE_DIR ? "dir" : n == NODE_FILE ? "file" : "like-mount";
}

int plan_op_format(const struct mntcr_plan *p, size_t i, struct strbuf *out)
{
	const struct plan_op *op = &p->ops[i];
	const struct mntcr_tree *t = p->tree;
	char attr[256];
	int r;

	r = strbuf_printf(out, "%4zu %-11s %-11s ", i, plan_phase_name(op->phase), plan_op_name(op->type));
	if (r < 0)
		return r;
	switch (op->type) {
	case OP_SB_CREATE: {
		const struct mntcr_sb *sb = &t->sbs[op->sb];
		r = strbuf_printf(out, "#%zu = new %s source=%s options=%s (superblock %" PRIu32 ":%" PRIu32 ")",
				  op->slot, sb->fstype, sb->source ? sb->source : "none",
				  sb->opts ? sb->opts : "", sb->dev_major, sb->dev_minor);
		break;
	}
	case OP_TEMPLATE_BIND:
		r = strbuf_printf(out, "#%zu = clone of %s (superblock %" PRIu32 ":%" PRIu32 ")", op->slot,
				  op->path, t->sbs[op->sb].dev_major, t->sbs[op->sb].dev_minor);
		break;
	case OP_MKPATH:
		r = strbuf_printf(out, "#%zu:/%s (%s)", op->slot, op->path, node_name(op->node));
		break;
	case OP_CLONE:
		r = strbuf_printf(out, "#%zu = clone of #%zu:/%s", op->slot, op->src, op->path);
		break;
	case OP_ATTACH:
		r = strbuf_printf(out, "#%zu on #%zu:/%s", op->slot, op->src, op->path);
		break;
	case OP_SETATTR:
		if (mntcr_attr_format(op->attr_set, attr, sizeof(attr)) < 0)
			snprintf(attr, sizeof(attr), "0x%" PRIx64, op->attr_set);
		r = strbuf_printf(out, "#%zu %s", op->slot, attr);
		break;
	case OP_SB_RDONLY:
		r = strbuf_printf(out, "#%zu superblock %" PRIu32 ":%" PRIu32 " ro", op->slot,
				  t->sbs[op->sb].dev_major, t->sbs[op->sb].dev_minor);
		break;
	case OP_SET_PROPAGATION:
		r = strbuf_printf(out, "#%zu %s", op->slot,
				  op->propagation == MS_UNBINDABLE ? "unbindable"
				  : op->propagation == MS_SHARED   ? "shared"
				  : op->propagation == MS_SLAVE    ? "slave"
								   : "private");
		break;
	case OP_SET_ROOT:
		r = strbuf_printf(out, "#%zu becomes /", op->slot);
		break;
	}
	if (r < 0)
		return r;
	if (op->mount != IDX_NONE)
		r = strbuf_printf(out, "  [mount %" PRIu64 " %s]", t->mounts[op->mount].id,
				  t->mounts[op->mount].mountpoint);
	return r;
}

MNTCR_EXPORT int mntcr_plan_print(const struct mntcr_plan *p, FILE *f)
{
	struct strbuf b = { 0 };

	for (size_t i = 0; i < p->n_ops; i++) {
		int r;

		b.len = 0;
		r = plan_op_format(p, i, &b);
		if (r < 0) {
			strbuf_release(&b);
			return r;
		}
		fprintf(f, "%s\n", b.buf);
	}
	strbuf_release(&b);
	return ferror(f) ? -EIO : 0;
}
