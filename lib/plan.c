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
#include <assert.h>
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
		[OP_SET_GROUP] = "set-group",
		[OP_PEER_BIND] = "peer",
		[OP_CONTENT] = "content",
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

void report_op_failure(struct mntcr_report *r, const char *phase, size_t op_index, const struct mntcr_mount *m,
		       const char *path, const char *call, const char *who, int err, const char *detail,
		       const struct strbuf *opline)
{
	report_set(r, phase, op_index, m ? m->id : 0, m ? (m->abs ? m->abs : m->point) : path, call, err,
		   "Restore failed in phase %s: %s%s: %s%s%s%s (operation %s)", phase, call, who ? who : "",
		   strerror(-err), detail && *detail ? " (" : "", detail ? detail : "",
		   detail && *detail ? ")" : "", opline->buf ? opline->buf + strspn(opline->buf, " ") : "?");
}

/* -------------------------------------------------------------------------- */

struct planner {
	const struct mntcr_tree *t;
	const struct mntcr_tree *host;
	const struct mntcr_restore_opts *opts;
	struct mntcr_plan *p;
	struct mntcr_report *report;

	struct mount_sources sources; /* where each mount comes from */
	size_t *src_slot;   /* per image mount: template to clone from */
	char **src_rel;     /* per image mount: path inside the template ("" = its root), borrowed */
	uint64_t *src_attr; /* per image mount: the flags a clone of it carries, UINT64_MAX unknown */
	size_t *tmpl_op;    /* per template: its OP_SB_CREATE, or IDX_NONE (a clone of a path here) */
	/*
	 * Per template slot: the paths OP_MKPATH makes in it, planned already.
	 * The keys are the ops' own paths, so that a path costs no key string.
	 */
	struct strmap *made;
	size_t n_made;
};

/* A copy of s in the plan's arena (NULL: out of memory, which emit() after it reports). */
static char *plan_str(struct planner *pl, const char *s)
{
	return arena_strdup(&pl->p->strings, s);
}

_Static_assert(MNTCR_ATTR_KNOWN <= UINT32_MAX && (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE) <= UINT32_MAX,
	       "a plan op's flags fit its 32 bits");

static int emit(struct planner *pl, const struct plan_op *op)
{
	struct mntcr_plan *p = pl->p;
	int r = GROW(p->ops, p->cap_ops, p->n_ops + 1);

	if (r < 0)
		return r;
	p->ops[p->n_ops++] = *op;
	return 0;
}

/* Its options start with "ro": the flags phase makes it read-only. */
static bool sb_is_ro(const struct mntcr_sb *sb)
{
	return sb->opts && strncmp(sb->opts, "ro", 2) == 0 && (sb->opts[2] == 0 || sb->opts[2] == ',');
}

static size_t new_slot(struct planner *pl)
{
	return pl->p->n_slots++;
}

static int report_fail(struct mntcr_report *report, int err, const struct mntcr_mount *m, const char *fmt,
		       va_list ap) _printf_(4, 0);
static int report_fail(struct mntcr_report *report, int err, const struct mntcr_mount *m, const char *fmt,
		       va_list ap)
{
	_cleanup_free_ char *msg = NULL;

	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	/* m->abs: the message named m with mount_abs(), which made it */
	report_set(report, "plan", MNTCR_NONE, m ? m->id : 0, m ? (m->abs ? m->abs : m->point) : NULL, NULL, err,
		   "%s", msg ? msg : "Out of memory");
	return err;
}

static int fail(struct planner *pl, int err, const struct mntcr_mount *m, const char *fmt, ...)
	_printf_(4, 5);
static int fail(struct planner *pl, int err, const struct mntcr_mount *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err = report_fail(pl->report, err, m, fmt, ap);
	va_end(ap);
	return err;
}

static int rfail(struct mntcr_report *report, int err, const struct mntcr_mount *m, const char *fmt, ...)
	_printf_(4, 5);
static int rfail(struct mntcr_report *report, int err, const struct mntcr_mount *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err = report_fail(report, err, m, fmt, ap);
	va_end(ap);
	return err;
}

/* -------------------------------------------------------------------------- */
/* Validation: refuse what cannot be restored before anything is mounted. */

static bool is_deleted(const char *path)
{
	size_t n = strlen(path);
	return n >= 9 && streq(path + n - 9, "//deleted");
}

int plan_validate(const struct mntcr_tree *t, struct mntcr_report *report)
{
	if (t->root == IDX_NONE)
		return rfail(report, -EBADMSG, NULL, "The image has no root mount");
	for (size_t i = 0; i < t->n_mounts; i++) {
		const struct mntcr_mount *m = &t->mounts[i];
		const struct mntcr_sb *sb = &t->sbs[m->sb];

		if (is_deleted(m->root))
			return rfail(report, -EOPNOTSUPP, m,
				     "Mount %" PRIu64 " at %s is a bind of a deleted file or directory (%s)",
				     m->id, mount_abs(t, m), m->root);
		if (!path_is_normalized(m->root) ||
		    (m->point[0] == '/' ? !path_is_normalized(m->point) : !relpath_is_normalized(m->point)))
			return rfail(report, -EBADMSG, m,
				     "Mount %" PRIu64 " has an unsafe path: root %s, mountpoint %s", m->id,
				     m->root, mount_abs(t, m));
		if (m->attr & ~(uint64_t)MNTCR_ATTR_KNOWN)
			return rfail(report, -EOPNOTSUPP, m,
				     "Mount %" PRIu64 " at %s has flags mntcr cannot restore (idmapped mounts)",
				     m->id, mount_abs(t, m));
		if (sb->owned && !plan_fstype_creatable(sb->fstype))
			return rfail(report, -EOPNOTSUPP, m,
				     "Mount %" PRIu64 " at %s is on a %s filesystem that only the dumped namespace had; "
				     "mntcr can create tmpfs, ramfs, proc, sysfs, devpts, mqueue and cgroup2 only "
				     "(or map it with --external)",
				     m->id, mount_abs(t, m), sb->fstype);
	}
	return 0;
}

/* -------------------------------------------------------------------------- */
/*
 * Sources: where each mount is cloned (mount-api) or bound (compat) from.
 * Shared by both engines, so that they take every superblock from the same
 * place: owned superblocks from a template created anew, external ones from
 * a path in the restorer's namespace.
 */

struct resolver {
	const struct mntcr_tree *t;
	const struct mntcr_tree *host;
	const struct mntcr_restore_opts *opts;
	struct mntcr_report *report;
	struct mount_sources *s;
	struct u64map host_tmpl;   /* host mount index -> template */
	struct strmap path_tmpl;   /* path here -> template (keys: the templates' own paths) */
	struct u64map host_by_dev; /* dev -> first index in host_sorted */
	size_t *host_sorted;       /* visible host mounts sorted by (dev, root length) */
};

static int new_template(struct mount_sources *s, size_t sb, const char *path, size_t *ret)
{
	int r = GROW(s->tmpl, s->cap_tmpl, s->n_tmpl + 1);

	if (r < 0)
		return r;
	s->tmpl[s->n_tmpl] = (struct source_tmpl){ .sb = sb };
	if (path && !(s->tmpl[s->n_tmpl].path = strdup(path)))
		return -ENOMEM;
	*ret = s->n_tmpl++;
	return 0;
}

static int template_for_path(struct resolver *rv, const char *path, size_t sb, size_t *ret)
{
	size_t k;
	int r;

	if (strmap_get(&rv->path_tmpl, path, &k)) {
		*ret = k;
		return 0;
	}
	r = new_template(rv->s, sb, path, &k);
	if (r < 0)
		return r;
	r = strmap_put(&rv->path_tmpl, rv->s->tmpl[k].path, k);
	if (r < 0)
		return r;
	*ret = k;
	return 0;
}

static const struct mntcr_external *find_external(const struct mntcr_restore_opts *opts, const char *key)
{
	if (!opts)
		return NULL;
	for (size_t i = 0; i < opts->n_externals; i++)
		if (streq(opts->externals[i].key, key))
			return &opts->externals[i];
	return NULL;
}

static uint64_t dev_key(uint32_t major, uint32_t minor)
{
	return ((uint64_t)major << 32) | minor;
}

static const struct mntcr_tree *cmp_host;
static struct strbuf cmp_path[2]; /* cmp_host_mounts()'s paths */
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
	/* the same device and root length: by path, made for the two alone */
	return strcmp(mount_path(cmp_host, (size_t)(x - cmp_host->mounts), &cmp_path[0]) ?: "",
		      mount_path(cmp_host, (size_t)(y - cmp_host->mounts), &cmp_path[1]) ?: "");
}

/* Index the restorer's visible mounts by device, shortest root first. */
static int index_host(struct resolver *rv)
{
	const struct mntcr_tree *h = rv->host;
	size_t n = 0;

	if (!h)
		return 0;
	rv->host_sorted = malloc((h->n_mounts ? h->n_mounts : 1) * sizeof(size_t));
	if (!rv->host_sorted)
		return -ENOMEM;
	for (size_t i = 0; i < h->n_mounts; i++)
		if (!h->mounts[i].hidden)
			rv->host_sorted[n++] = i;
	cmp_host = h;
	qsort(rv->host_sorted, n, sizeof(size_t), cmp_host_mounts);
	cmp_host = NULL;
	strbuf_release(&cmp_path[0]);
	strbuf_release(&cmp_path[1]);
	for (size_t k = n; k > 0; k--) {
		const struct mntcr_mount *m = &h->mounts[rv->host_sorted[k - 1]];
		int r = u64map_put(&rv->host_by_dev, dev_key(m->dev_major, m->dev_minor), k - 1);
		if (r < 0)
			return r;
	}
	/* terminate runs: remember n through the map's absence of a sentinel */
	rv->host_sorted = realloc(rv->host_sorted, (n + 1) * sizeof(size_t));
	if (!rv->host_sorted)
		return -ENOMEM;
	rv->host_sorted[n] = IDX_NONE;
	return 0;
}

static int set_source(struct resolver *rv, size_t mi, size_t tmpl, const char *rel, uint64_t attr)
{
	rv->s->mount_tmpl[mi] = tmpl;
	rv->s->mount_attr[mi] = attr;
	rv->s->mount_rel[mi] = strdup(rel);
	return rv->s->mount_rel[mi] ? 0 : -ENOMEM;
}

static int resolve_external(struct resolver *rv, size_t mi)
{
	const struct mntcr_tree *t = rv->t;
	const struct mntcr_mount *m = &t->mounts[mi], *rootm = &t->mounts[t->root];
	const struct mntcr_sb *sb = &t->sbs[m->sb];
	const struct mntcr_restore_opts *opts = rv->opts;
	const struct mntcr_external *e;
	char key[32];
	const char *rel;
	size_t tmpl, k;
	int r;

	/* 1. --external MOUNTPOINT=PATH: this mount's root is PATH */
	e = opts && opts->n_externals ? find_external(opts, mount_abs(t, m)) : NULL;
	if (e) {
		r = template_for_path(rv, e->path, m->sb, &tmpl);
		return r < 0 ? r : set_source(rv, mi, tmpl, "", UINT64_MAX);
	}
	/* 2. --root DIR: the root mount, and mounts of its superblock below its root */
	if (opts && opts->root && m->sb == rootm->sb && (rel = path_relative(m->root, rootm->root))) {
		r = template_for_path(rv, opts->root, m->sb, &tmpl);
		return r < 0 ? r : set_source(rv, mi, tmpl, rel, UINT64_MAX);
	}
	/* 3. --external MAJ:MIN=PATH: PATH shows the superblock's recorded root */
	snprintf(key, sizeof(key), "%" PRIu32 ":%" PRIu32, sb->dev_major, sb->dev_minor);
	e = find_external(opts, key);
	if (e) {
		const char *base = sb->ext_root ? sb->ext_root : "/";

		rel = path_relative(m->root, base);
		if (!rel)
			return rfail(rv->report, -ENOENT, m,
				     "Mount %" PRIu64 " at %s has root %s, outside the root %s that --external %s maps",
				     m->id, mount_abs(t, m), m->root, base, key);
		r = template_for_path(rv, e->path, m->sb, &tmpl);
		return r < 0 ? r : set_source(rv, mi, tmpl, rel, UINT64_MAX);
	}
	/* 4. automatic: a visible mount of the same superblock here whose root contains ours */
	if (rv->host && u64map_get(&rv->host_by_dev, dev_key(sb->dev_major, sb->dev_minor), &k)) {
		for (; rv->host_sorted[k] != IDX_NONE; k++) {
			const struct mntcr_mount *h = &rv->host->mounts[rv->host_sorted[k]];

			if (h->dev_major != sb->dev_major || h->dev_minor != sb->dev_minor)
				break;
			rel = path_relative(m->root, h->root);
			if (!rel)
				continue;
			if (!u64map_get(&rv->host_tmpl, rv->host_sorted[k], &tmpl)) {
				_cleanup_(strbuf_release) struct strbuf buf = { 0 };
				const char *path = mount_path(rv->host, rv->host_sorted[k], &buf);

				r = path ? template_for_path(rv, path, m->sb, &tmpl) : -ENOMEM;
				if (r < 0)
					return r;
				r = u64map_put(&rv->host_tmpl, rv->host_sorted[k], tmpl);
				if (r < 0)
					return r;
			}
			return set_source(rv, mi, tmpl, rel, h->attr);
		}
	}
	return rfail(rv->report, -ENOENT, m,
		     "Mount %" PRIu64 " at %s needs the external %s filesystem %s (key %s, root %s), "
		     "which is not mounted here; map it with --external %s=PATH or --external %s=PATH",
		     m->id, mount_abs(t, m), sb->fstype, sb->source ? sb->source : "none", key, m->root,
		     mount_abs(t, m), key);
}

static int resolve_sources(struct resolver *rv)
{
	const struct mntcr_tree *t = rv->t;
	struct mount_sources *s = rv->s;
	int r;

	s->sb_tmpl = malloc((t->n_sbs ? t->n_sbs : 1) * sizeof(size_t));
	s->mount_tmpl = calloc(t->n_mounts + 1, sizeof(size_t));
	s->mount_rel = calloc(t->n_mounts + 1, sizeof(char *));
	s->mount_attr = calloc(t->n_mounts + 1, sizeof(uint64_t));
	if (!s->sb_tmpl || !s->mount_tmpl || !s->mount_rel || !s->mount_attr)
		return -ENOMEM;
	r = index_host(rv);
	if (r < 0)
		return r;
	for (size_t sbi = 0; sbi < t->n_sbs; sbi++) {
		const struct mntcr_sb *sb = &t->sbs[sbi];

		s->sb_tmpl[sbi] = IDX_NONE;
		if (!sb->owned || sb->n_mounts == 0)
			continue;
		r = new_template(s, sbi, NULL, &s->sb_tmpl[sbi]);
		if (r < 0)
			return r;
		for (size_t k = 0; k < sb->n_mounts; k++) {
			size_t mi = tree_sb_mount_idx(t, sb, k);

			/* a new mount with no attributes: rw, relatime */
			r = set_source(rv, mi, s->sb_tmpl[sbi], t->mounts[mi].root + 1, MOUNT_ATTR_RELATIME);
			if (r < 0)
				return r;
		}
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++)
		if (!t->sbs[t->mounts[mi].sb].owned) {
			r = resolve_external(rv, mi);
			if (r < 0)
				return r;
		}
	return 0;
}

void mount_sources_release(struct mount_sources *s, size_t n_mounts)
{
	for (size_t i = 0; i < s->n_tmpl; i++)
		free(s->tmpl[i].path);
	free(s->tmpl);
	if (s->mount_rel)
		for (size_t i = 0; i < n_mounts; i++)
			free(s->mount_rel[i]);
	free(s->mount_rel);
	free(s->mount_tmpl);
	free(s->mount_attr);
	free(s->sb_tmpl);
	*s = (struct mount_sources){ 0 };
}

int mount_sources_resolve(const struct mntcr_tree *t, const struct mntcr_tree *host,
			  const struct mntcr_restore_opts *opts, struct mntcr_report *report,
			  struct mount_sources *ret)
{
	struct mount_sources s = { 0 };
	struct resolver rv = { .t = t, .host = host, .opts = opts, .report = report, .s = &s };
	int r = resolve_sources(&rv);

	strmap_release(&rv.path_tmpl);
	u64map_release(&rv.host_tmpl);
	u64map_release(&rv.host_by_dev);
	free(rv.host_sorted);
	if (r < 0) {
		mount_sources_release(&s, t->n_mounts);
		return r;
	}
	*ret = s;
	return 0;
}

/* The mount-api engine: one fsmount per owned superblock, one template clone per external path. */
static int plan_sources(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	struct mount_sources *s = &pl->sources;
	_cleanup_free_ size_t *slot = NULL;
	int r;

	r = mount_sources_resolve(t, pl->host, pl->opts, pl->report, s);
	if (r < 0)
		return r;
	slot = malloc((s->n_tmpl ? s->n_tmpl : 1) * sizeof(size_t));
	pl->tmpl_op = malloc((s->n_tmpl ? s->n_tmpl : 1) * sizeof(size_t));
	if (!slot || !pl->tmpl_op)
		return -ENOMEM;
	for (size_t k = 0; k < s->n_tmpl; k++) {
		slot[k] = new_slot(pl);
		pl->tmpl_op[k] = s->tmpl[k].path ? IDX_NONE : pl->p->n_ops;
		if (!s->tmpl[k].path)
			r = emit(pl, &(struct plan_op){ .type = OP_SB_CREATE, .phase = PHASE_CREATE,
							.mount = IDX_NONE, .sb = s->tmpl[k].sb, .slot = slot[k],
							.src = IDX_NONE });
		else
			r = emit(pl, &(struct plan_op){ .type = OP_TEMPLATE_BIND, .phase = PHASE_CREATE,
							.mount = IDX_NONE, .sb = s->tmpl[k].sb, .slot = slot[k],
							.src = IDX_NONE, .path = plan_str(pl, s->tmpl[k].path) });
		if (r < 0)
			return r;
		if (s->tmpl[k].path && !pl->p->ops[pl->p->n_ops - 1].path)
			return -ENOMEM;
		/*
		 * The image's files of this superblock go into its template right
		 * away: before any directory is made, anything attached, or ro set.
		 */
		if (!s->tmpl[k].path && t->sbs[s->tmpl[k].sb].n_content_roots &&
		    !(pl->opts && pl->opts->no_content)) {
			r = emit(pl, &(struct plan_op){ .type = OP_CONTENT, .phase = PHASE_CREATE,
							.mount = IDX_NONE, .sb = s->tmpl[k].sb,
							.slot = slot[k], .src = IDX_NONE });
			if (r < 0)
				return r;
		}
	}
	/* Directories are made in templates only, and the templates have the first slots. */
	pl->n_made = pl->p->n_slots;
	pl->made = calloc(pl->n_made ? pl->n_made : 1, sizeof(*pl->made));
	if (!pl->made)
		return -ENOMEM;
	for (size_t sbi = 0; sbi < t->n_sbs; sbi++)
		pl->p->sb_slot[sbi] = s->sb_tmpl[sbi] == IDX_NONE ? IDX_NONE : slot[s->sb_tmpl[sbi]];
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		pl->src_slot[mi] = slot[s->mount_tmpl[mi]];
		pl->src_rel[mi] = s->mount_rel[mi];
		pl->src_attr[mi] = s->mount_attr[mi];
	}
	return 0;
}

/* -------------------------------------------------------------------------- */
/* Directories, files, clones */

/*
 * path (and, with parents, each directory above it first) in template
 * tmpl. The executor makes missing parents itself, but only after a
 * failed attempt; in a filesystem with no content of the image, nothing
 * but these ops makes directories, so the plan can say which come first.
 */
static int mkpath(struct planner *pl, enum plan_phase phase, size_t tmpl, const char *path,
		  enum node_type node, size_t like, size_t mount, bool parents)
{
	const char *op_path, *slash;
	int r;

	if (!*path)
		return 0; /* the template's root exists */
	assert(tmpl < pl->n_made);
	if (strmap_get(&pl->made[tmpl], path, NULL))
		return 0;
	if (parents && (slash = strrchr(path, '/')) && slash > path) {
		_cleanup_free_ char *parent = strndup(path, (size_t)(slash - path));

		if (!parent)
			return -ENOMEM;
		r = mkpath(pl, phase, tmpl, parent, NODE_DIR, IDX_NONE, mount, true);
		if (r < 0)
			return r;
	}
	r = emit(pl, &(struct plan_op){ .type = OP_MKPATH, .phase = phase, .mount = mount,
					.sb = IDX_NONE, .slot = tmpl, .src = tmpl, .path = plan_str(pl, path),
					.node = node, .like_slot = like });
	if (r < 0)
		return r;
	op_path = pl->p->ops[pl->p->n_ops - 1].path;
	if (!op_path)
		return -ENOMEM;
	return strmap_put(&pl->made[tmpl], op_path, 0);
}

/*
 * Whether the mountpoints in parent p are made in the assemble phase, each
 * right before the mount on it is attached, as the benchmark's floor does,
 * rather than all in the create phase: the kernel's dentries are still hot,
 * and the executor's first attach onto p no longer runs every mkdir of p
 * while the thread making superblocks ahead waits (10,000 tmpfs side by
 * side: 10% faster). Only where nothing on the way can be mounted yet or be
 * read-only: p is the only mount of a superblock mntcr makes and fills with
 * no content, so every directory of it is one that mkpath makes, and the
 * only mounts on it are p's children, attached in attach order, covered
 * ones before what covers them; neither p nor its superblock is made
 * read-only in the flags phase.
 */
static bool mountpoints_late(const struct planner *pl, const struct mntcr_mount *p)
{
	const struct mntcr_sb *sb = &pl->t->sbs[p->sb];

	return sb->owned && sb->n_mounts == 1 && sb->n_content_roots == 0 && !sb_is_ro(sb) &&
	       !(p->attr & MOUNT_ATTR_RDONLY);
}

/* The mountpoint of mount mi, a child of p (in p's superblock's template), if one is needed. */
static int mkpath_mountpoint(struct planner *pl, enum plan_phase phase, const struct mntcr_mount *p, size_t mi)
{
	const struct mntcr_tree *t = pl->t;
	const struct mntcr_mount *m = &t->mounts[mi];
	const char *rel = mount_relpath(t, m);
	_cleanup_free_ char *path = NULL;

	if (!t->sbs[p->sb].owned || !*rel)
		return 0; /* not ours, or on the parent's root */
	path = path_join(p->root, rel);
	if (!path)
		return -ENOMEM;
	return mkpath(pl, phase, pl->p->sb_slot[p->sb], path + 1, m->type,
		      m->type == NODE_UNKNOWN ? pl->p->mount_slot[mi] : IDX_NONE, mi,
		      t->sbs[p->sb].n_content_roots == 0);
}

/*
 * Room in each template's set of paths made (pl->made) for the roots and
 * mountpoints to be made in it, so that 10,000 mountpoints in one tmpfs
 * do not grow the set and hash every path again at each doubling.
 */
static int made_reserve(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	_cleanup_free_ size_t *n = calloc(pl->n_made + 1, sizeof(size_t));
	int r = 0;

	if (!n)
		return -ENOMEM;
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t s;

		if (t->sbs[m->sb].owned && *pl->src_rel[mi] && (s = pl->src_slot[mi]) < pl->n_made)
			n[s]++;
		if (m->parent != IDX_NONE && t->sbs[t->mounts[m->parent].sb].owned && *mount_relpath(t, m) &&
		    (s = pl->p->sb_slot[t->mounts[m->parent].sb]) < pl->n_made)
			n[s]++;
	}
	/* Most sets get few paths or none: strmap_reserve() allocates nothing for those. */
	for (size_t s = 0; s < pl->n_made && r == 0; s++)
		r = strmap_reserve(&pl->made[s], n[s]);
	return r;
}

static int plan_create(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	size_t *taker;
	int r = made_reserve(pl);

	if (r < 0)
		return r;

	/* Roots of every mount of an owned superblock must exist in it. */
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];

		if (!t->sbs[m->sb].owned)
			continue;
		r = mkpath(pl, PHASE_CREATE, pl->src_slot[mi], pl->src_rel[mi],
			   m->type == NODE_FILE ? NODE_FILE : NODE_DIR, IDX_NONE, mi,
			   t->sbs[m->sb].n_content_roots == 0);
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
						.src = pl->src_slot[mi], .path = plan_str(pl, pl->src_rel[mi]) });
		if (r == 0 && !pl->p->ops[pl->p->n_ops - 1].path)
			r = -ENOMEM;
	}
	free(taker);
	if (r < 0)
		return r;

	/* Mountpoints inside owned parents (the rest in the assemble phase). */
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *p;

		if (t->mounts[mi].parent == IDX_NONE)
			continue;
		p = &t->mounts[t->mounts[mi].parent];
		if (!mountpoints_late(pl, p) && (r = mkpath_mountpoint(pl, PHASE_CREATE, p, mi)) < 0)
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
	for (size_t k = t->n_ns; k > 0; k--)
		stack[n++] = t->nss[k - 1].root;
	while (n > 0) {
		const struct mntcr_mount *m = &t->mounts[stack[--n]];
		size_t mi = (size_t)(m - t->mounts);
		bool late = mountpoints_late(pl, m);

		for (size_t k = 0; k < m->n_children; k++) {
			size_t ci = tree_child_idx(t, m, k);
			int r = late ? mkpath_mountpoint(pl, PHASE_ASSEMBLE, m, ci) : 0;

			if (r < 0)
				return r;
			r = emit(pl, &(struct plan_op){ .type = OP_ATTACH, .phase = PHASE_ASSEMBLE,
							    .mount = ci, .sb = IDX_NONE,
							    .slot = pl->p->mount_slot[ci],
							    .src = pl->p->mount_slot[mi],
							    .path = plan_str(pl, mount_relpath(t, &t->mounts[ci])) });
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

static int plan_set_roots(struct planner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r = 0;

	for (size_t k = t->n_ns; k > 0 && r == 0; k--) {
		size_t root = t->nss[k - 1].root;

		r = emit(pl, &(struct plan_op){ .type = OP_SET_ROOT, .phase = PHASE_ROOT, .mount = root,
						.sb = IDX_NONE, .slot = pl->p->mount_slot[root], .src = IDX_NONE });
	}
	return r;
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

		if (!sb->owned || pl->p->sb_slot[s] == IDX_NONE || !sb_is_ro(sb))
			continue;
		r = emit(pl, &(struct plan_op){ .type = OP_SB_RDONLY, .phase = PHASE_FLAGS, .mount = IDX_NONE,
						.sb = s, .slot = pl->p->sb_slot[s], .src = IDX_NONE });
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Propagation. Every peer group G of the image is rebuilt around a
 * temporary mount: a clone of its superblock's template at the longest
 * common root of G's members, of its slaves and of its slave groups, so it
 * is a valid MOVE_MOUNT_SET_GROUP source for all of them (the source's root
 * must contain the target's) even when no member's root contains the
 * others' (CRIU's "Can't copy sharing"). The clone is childless, so
 * SET_GROUP does not pay for scanning children, and it is dropped when the
 * restore ends. In master-first order:
 *
 *   temp(G) joins its master's group (SET_GROUP) and becomes a slave of it
 *   temp(G) becomes shared: a new group G'
 *   every member of G joins G' (SET_GROUP copies the master too)
 *   every slave of G joins G' and becomes a slave (MS_SLAVE)
 *
 * A master outside the namespace (the restorer's own group H) is reached
 * through a clone of one of our mounts in H, which is a peer of H.
 *
 * When a member of G has that common root itself and no children, it is
 * the source instead (group_leader()): the temporary would cost a clone,
 * its parking and its unmount at the end, and the member a SET_GROUP.
 */
struct pgroup {
	uint64_t id;
	uint64_t master;   /* master group id, 0 if none */
	size_t master_gi;  /* index of the master group if internal, else IDX_NONE */
	size_t sb;
	size_t first, n;   /* members: pl->prop_idx[first .. first+n) */
	size_t sfirst, ns; /* slave-only mounts of this group */
	char *lcp;         /* longest common root */
	size_t temp;       /* slot of the source: a temporary clone, or the leader's own */
	size_t leader;     /* the member that is the source, or IDX_NONE */
	size_t peer;       /* slot of the external master's peer, or IDX_NONE */
	bool early;        /* its template is made shared: every mount of its filesystem is born a peer */
	bool born_peer;    /* a group of one, slave of an early group: born its peer, not yet a slave */
	int state;         /* topological sort: 0 new, 1 in progress, 2 done */
};

struct propagation {
	struct pgroup *g;
	size_t n_groups;
	struct u64map by_id;
	size_t *members; /* grouped by group */
	size_t *slaves;  /* slave-only mounts grouped by master group */
	size_t *order;   /* master-first order */
	size_t n_order;
	size_t *ext_slaves; /* slave-only mounts whose master is outside */
	size_t n_ext_slaves;
	size_t *ext_slave_peer; /* per ext slave: peer slot or IDX_NONE (made private) */
	struct u64map host_peer; /* "host mount index" -> peer slot */
	size_t *host_shared;     /* visible host mounts in a group, sorted by (group, root length) */
	size_t n_host_shared;
};

static void propagation_release(struct propagation *pr, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(pr->g[i].lcp);
	free(pr->g);
	free(pr->members);
	free(pr->slaves);
	free(pr->order);
	free(pr->ext_slaves);
	free(pr->ext_slave_peer);
	free(pr->host_shared);
	u64map_release(&pr->by_id);
	u64map_release(&pr->host_peer);
}

/* Shorten *lcp to the longest common ancestor path of itself and root. */
static int lcp_merge(char **lcp, const char *root)
{
	char *c = *lcp;
	size_t i = 0, last = 0;

	if (!c) {
		*lcp = strdup(root);
		return *lcp ? 0 : -ENOMEM;
	}
	while (c[i] && root[i] && c[i] == root[i]) {
		if (c[i] == '/')
			last = i;
		i++;
	}
	if ((c[i] == 0 && (root[i] == 0 || root[i] == '/')) )
		return 0; /* c is an ancestor of (or equal to) root */
	if (root[i] == 0 && c[i] == '/')
		last = i; /* root is an ancestor of c */
	c[last ? last : 1] = 0;
	return 0;
}

static const struct mntcr_tree *cmp_shared_host;
static int cmp_host_shared(const void *a, const void *b)
{
	const struct mntcr_mount *x = &cmp_shared_host->mounts[*(const size_t *)a];
	const struct mntcr_mount *y = &cmp_shared_host->mounts[*(const size_t *)b];
	size_t lx = strlen(x->root), ly = strlen(y->root);

	if (x->shared != y->shared)
		return x->shared < y->shared ? -1 : 1;
	return lx < ly ? -1 : (lx > ly ? 1 : 0);
}

/* A peer of host group `group` whose root contains `root`, as a slot (cloned in the create phase). */
static int host_peer(struct planner *pl, struct propagation *pr, uint64_t group, const char *root,
		     size_t *ret_slot)
{
	const struct mntcr_tree *h = pl->host;
	size_t lo = 0, hi = pr->n_host_shared;

	if (!h)
		return -ENOENT;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (h->mounts[pr->host_shared[mid]].shared < group)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < pr->n_host_shared && h->mounts[pr->host_shared[lo]].shared == group; lo++) {
		size_t hi_idx = pr->host_shared[lo], slot;
		int r;

		if (!path_startswith(root, h->mounts[hi_idx].root))
			continue;
		if (!u64map_get(&pr->host_peer, hi_idx, &slot)) {
			_cleanup_(strbuf_release) struct strbuf buf = { 0 };
			const char *path = mount_path(h, hi_idx, &buf);

			if (!path)
				return -ENOMEM;
			slot = new_slot(pl);
			r = emit(pl, &(struct plan_op){ .type = OP_PEER_BIND, .phase = PHASE_CREATE,
							.mount = IDX_NONE, .sb = IDX_NONE, .slot = slot,
							.src = IDX_NONE, .path = plan_str(pl, path) });
			if (r < 0)
				return r;
			if (!pl->p->ops[pl->p->n_ops - 1].path)
				return -ENOMEM;
			r = u64map_put(&pr->host_peer, hi_idx, slot);
			if (r < 0)
				return r;
		}
		*ret_slot = slot;
		return 0;
	}
	return -ENOENT;
}

/* The root path of mi's template (the mount's root minus its path inside the template). */
static int template_base(const struct planner *pl, size_t mi, char **ret)
{
	const char *root = pl->t->mounts[mi].root, *rel = pl->src_rel[mi];
	size_t n = strlen(root), k = strlen(rel);

	if (k == 0)
		*ret = strdup(root);
	else if (n > k && streq(root + n - k, rel))
		*ret = n - k - 1 == 0 ? strdup("/") : strndup(root, n - k - 1);
	else
		return -EINVAL;
	return *ret ? 0 : -ENOMEM;
}

static int visit_group(struct propagation *pr, size_t gi)
{
	struct pgroup *g = &pr->g[gi];
	int r;

	if (g->state == 2)
		return 0;
	if (g->state == 1)
		return -ELOOP;
	g->state = 1;
	if (g->master_gi != IDX_NONE) {
		r = visit_group(pr, g->master_gi);
		if (r < 0)
			return r;
	}
	g->state = 2;
	pr->order[pr->n_order++] = gi;
	return 0;
}

static int emit_prop(struct planner *pl, enum plan_phase phase, size_t slot, size_t mount, uint32_t prop)
{
	return emit(pl, &(struct plan_op){ .type = OP_SET_PROPAGATION, .phase = phase,
					   .mount = mount, .sb = IDX_NONE, .slot = slot, .src = IDX_NONE,
					   .propagation = prop });
}

static int emit_set_group(struct planner *pl, size_t from, size_t to, size_t mount)
{
	return emit(pl, &(struct plan_op){ .type = OP_SET_GROUP, .phase = PHASE_PROPAGATION, .mount = mount,
					   .sb = IDX_NONE, .slot = to, .src = from });
}

static int prop_collect(struct planner *pl, struct propagation *pr)
{
	const struct mntcr_tree *t = pl->t;
	size_t *cnt = NULL, *scnt = NULL;
	int r = 0;

	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t gi;

		if (!m->shared || u64map_get(&pr->by_id, m->shared, NULL))
			continue;
		gi = pr->n_groups++;
		r = u64map_put(&pr->by_id, m->shared, gi);
		if (r < 0)
			return r;
	}
	pr->g = calloc(pr->n_groups + 1, sizeof(*pr->g));
	cnt = calloc(pr->n_groups + 1, sizeof(size_t));
	scnt = calloc(pr->n_groups + 1, sizeof(size_t));
	pr->members = malloc((t->n_mounts + 1) * sizeof(size_t));
	pr->slaves = malloc((t->n_mounts + 1) * sizeof(size_t));
	pr->ext_slaves = malloc((t->n_mounts + 1) * sizeof(size_t));
	pr->ext_slave_peer = malloc((t->n_mounts + 1) * sizeof(size_t));
	pr->order = malloc((pr->n_groups + 1) * sizeof(size_t));
	if (!pr->g || !cnt || !scnt || !pr->members || !pr->slaves || !pr->ext_slaves || !pr->ext_slave_peer ||
	    !pr->order) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t gi = 0; gi < pr->n_groups; gi++)
		pr->g[gi] = (struct pgroup){ .master_gi = IDX_NONE, .sb = IDX_NONE, .temp = IDX_NONE,
					     .leader = IDX_NONE, .peer = IDX_NONE };

	/* Count members and slave-only mounts per group. */
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t gi;

		if (m->shared) {
			u64map_get(&pr->by_id, m->shared, &gi);
			struct pgroup *g = &pr->g[gi];
			if (cnt[gi]++ == 0) {
				g->id = m->shared;
				g->master = m->master;
				g->sb = m->sb;
			} else if (g->sb != m->sb) {
				r = fail(pl, -EBADMSG, m,
					 "Mount %" PRIu64 " at %s is in peer group %" PRIu64
					 " with mounts of another filesystem",
					 m->id, mount_abs(t, m), m->shared);
				goto out;
			}
		} else if (m->master && u64map_get(&pr->by_id, m->master, &gi))
			scnt[gi]++;
		else if (m->master)
			pr->ext_slaves[pr->n_ext_slaves++] = mi;
	}
	for (size_t gi = 0, off = 0, soff = 0; gi < pr->n_groups; gi++) {
		pr->g[gi].first = off;
		pr->g[gi].sfirst = soff;
		off += cnt[gi];
		soff += scnt[gi];
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t gi;

		if (m->shared) {
			u64map_get(&pr->by_id, m->shared, &gi);
			pr->members[pr->g[gi].first + pr->g[gi].n++] = mi;
		} else if (m->master && u64map_get(&pr->by_id, m->master, &gi))
			pr->slaves[pr->g[gi].sfirst + pr->g[gi].ns++] = mi;
	}
	for (size_t gi = 0; gi < pr->n_groups; gi++) {
		struct pgroup *g = &pr->g[gi];
		size_t mgi;

		if (g->master && u64map_get(&pr->by_id, g->master, &mgi)) {
			if (pr->g[mgi].sb != g->sb) {
				r = fail(pl, -EBADMSG, &t->mounts[pr->members[g->first]],
					 "Peer group %" PRIu64 " is a slave of group %" PRIu64 " of another filesystem",
					 g->id, g->master);
				goto out;
			}
			g->master_gi = mgi;
		}
	}
	for (size_t gi = 0; gi < pr->n_groups; gi++) {
		r = visit_group(pr, gi);
		if (r < 0) {
			r = fail(pl, -EBADMSG, &t->mounts[pr->members[pr->g[gi].first]],
				 "The masters of peer group %" PRIu64 " form a cycle", pr->g[gi].id);
			goto out;
		}
	}
out:
	free(cnt);
	free(scnt);
	return r;
}

/*
 * A member of g that can be the group's source: its root is the common
 * root (so it contains every other root of the group), and it has no
 * children, which SET_GROUP would scan each time. IDX_NONE if none.
 */
static size_t group_leader(const struct mntcr_tree *t, const struct propagation *pr, const struct pgroup *g)
{
	for (size_t i = 0; i < g->n; i++) {
		size_t mi = pr->members[g->first + i];

		if (t->mounts[mi].n_children == 0 && streq(t->mounts[mi].root, g->lcp))
			return mi;
	}
	return IDX_NONE;
}

/* The temporary source of g: a clone of m0's template at the group's common root. */
static int group_temp(struct planner *pl, struct pgroup *g, size_t m0)
{
	_cleanup_free_ char *base = NULL;
	const char *rel;
	int r;

	r = template_base(pl, m0, &base);
	if (r < 0)
		return r;
	rel = path_relative(g->lcp, base);
	if (!rel)
		return fail(pl, -EOPNOTSUPP, &pl->t->mounts[m0],
			    "Peer group %" PRIu64 " spans roots below %s, outside %s where its filesystem is "
			    "available here",
			    g->id, g->lcp, base);
	g->temp = new_slot(pl);
	r = emit(pl, &(struct plan_op){ .type = OP_CLONE, .phase = PHASE_CREATE, .mount = IDX_NONE,
					.sb = g->sb, .slot = g->temp, .src = pl->src_slot[m0],
					.path = plan_str(pl, rel) });
	if (r < 0)
		return r;
	return pl->p->ops[pl->p->n_ops - 1].path ? 0 : -ENOMEM;
}

/*
 * Peers from the start, as the kernel made them. A group with no master,
 * on a filesystem of ours whose every mount is a childless clone of its
 * template and the group's (a member, a slave, or the one member of a
 * group that is its slave): the template is made shared as soon as it is
 * made (its OP_SB_CREATE's propagation), before anything is cloned of it,
 * and a clone of a shared mount is a peer. The members then need no
 * SET_GROUP, the slaves only MS_SLAVE; a mount attached below a peer would
 * propagate to the others, hence childless. 10,000 mounts of `mix`: 3,332
 * SET_GROUPs fewer.
 */
static void prop_early(struct planner *pl, struct propagation *pr)
{
	const struct mntcr_tree *t = pl->t;

	for (size_t gi = 0; gi < pr->n_groups; gi++) {
		struct pgroup *g = &pr->g[gi];
		const struct mntcr_sb *sb = &t->sbs[g->sb];
		size_t k = pl->sources.sb_tmpl[g->sb], slot = pl->p->sb_slot[g->sb];
		bool ok = !g->master && sb->owned && k != IDX_NONE && pl->tmpl_op[k] != IDX_NONE;

		for (size_t j = 0; ok && j < sb->n_mounts; j++) {
			size_t mi = t->sb_mount_idx[sb->first_mount + j], g2;
			const struct mntcr_mount *m = &t->mounts[mi];

			if (m->n_children > 0 || pl->src_slot[mi] != slot)
				ok = false;
			else if (m->shared != g->id)
				ok = m->master == g->id &&
				     (!m->shared || (u64map_get(&pr->by_id, m->shared, &g2) && pr->g[g2].n == 1 &&
						     pr->g[g2].ns == 0));
		}
		g->early = ok;
		if (ok)
			pl->p->ops[pl->tmpl_op[k]].propagation = MS_SHARED;
	}
	/* Checked above: a group whose master is early is a group of one of the same filesystem. */
	for (size_t gi = 0; gi < pr->n_groups; gi++)
		pr->g[gi].born_peer = pr->g[gi].master_gi != IDX_NONE && pr->g[pr->g[gi].master_gi].early;
}

/*
 * The rest of an early group's propagation: a clone of its template is a
 * peer of it as soon as it is made, and a slave (or a slave and shared)
 * when its MS_SLAVE (and MS_SHARED) follow. In the create phase the
 * executor runs them right after the clone, before its attach (exec.c,
 * eco_queued()), while the mount is detached and in the cache: at the end,
 * 50,000 mounts of `mix` later, each cost twice as much. Not for the
 * template itself, which the clones are taken of (a slave's clone is a
 * slave), nor with several namespaces, whose trees are built detached (a
 * detached slave is refused there: EINVAL). phase: PHASE_CREATE for
 * those made before their attach, PHASE_PROPAGATION for the others.
 */
static bool born_before_attach(const struct planner *pl, size_t slot, size_t mi)
{
	return pl->t->n_ns == 1 && slot != pl->src_slot[mi];
}

static int prop_born(struct planner *pl, struct propagation *pr, enum plan_phase phase)
{
	bool before = phase == PHASE_CREATE;
	int r;

	for (size_t k = 0; k < pr->n_order; k++) {
		struct pgroup *g = &pr->g[pr->order[k]];

		for (size_t i = 0; g->early && i < g->ns; i++) {
			size_t mi = pr->slaves[g->sfirst + i], slot = pl->p->mount_slot[mi];

			if (born_before_attach(pl, slot, mi) == before &&
			    (r = emit_prop(pl, phase, slot, mi, MS_SLAVE)) < 0)
				return r;
		}
		if (g->born_peer && born_before_attach(pl, g->temp, g->leader) == before &&
		    ((r = emit_prop(pl, phase, g->temp, g->leader, MS_SLAVE)) < 0 ||
		     (r = emit_prop(pl, phase, g->temp, g->leader, MS_SHARED)) < 0))
			return r;
	}
	return 0;
}

/* Longest common roots, slaves first (reverse master-first order), then the sources. */
static int prop_sources(struct planner *pl, struct propagation *pr)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t k = pr->n_order; k > 0; k--) {
		struct pgroup *g = &pr->g[pr->order[k - 1]];

		for (size_t i = 0; i < g->n; i++)
			if ((r = lcp_merge(&g->lcp, t->mounts[pr->members[g->first + i]].root)) < 0)
				return r;
		for (size_t i = 0; i < g->ns; i++)
			if ((r = lcp_merge(&g->lcp, t->mounts[pr->slaves[g->sfirst + i]].root)) < 0)
				return r;
		if (g->master_gi != IDX_NONE && (r = lcp_merge(&pr->g[g->master_gi].lcp, g->lcp)) < 0)
			return r;
	}
	for (size_t k = 0; k < pr->n_order; k++) {
		struct pgroup *g = &pr->g[pr->order[k]];
		size_t m0 = pr->members[g->first];

		g->leader = group_leader(t, pr, g);
		if (g->leader != IDX_NONE)
			g->temp = pl->p->mount_slot[g->leader];
		else if (!g->early && (r = group_temp(pl, g, m0)) < 0) /* early: no SET_GROUP needs one */
			return r;
		if (g->master && g->master_gi == IDX_NONE) {
			r = host_peer(pl, pr, g->master, g->lcp, &g->peer);
			if (r == -ENOENT && pl->opts && pl->opts->external_master_private) {
				log_warning("Peer group %" PRIu64 " is a slave of group %" PRIu64
					    ", which this namespace does not have: restoring it without a master",
					    g->id, g->master);
				g->peer = IDX_NONE;
			} else if (r == -ENOENT)
				return fail(pl, -ENOENT, &t->mounts[m0],
					    "Mount %" PRIu64 " at %s is a slave of peer group %" PRIu64
					    ", which has no member here whose root contains %s "
					    "(use --external-master=private to restore it without a master)",
					    t->mounts[m0].id, mount_abs(t, &t->mounts[m0]), g->master, g->lcp);
			else if (r < 0)
				return r;
		}
	}
	for (size_t i = 0; i < pr->n_ext_slaves; i++) {
		const struct mntcr_mount *m = &t->mounts[pr->ext_slaves[i]];

		r = host_peer(pl, pr, m->master, m->root, &pr->ext_slave_peer[i]);
		if (r == -ENOENT && pl->opts && pl->opts->external_master_private) {
			log_warning("Mount %" PRIu64 " at %s is a slave of peer group %" PRIu64
				    ", which this namespace does not have: restoring it private",
				    m->id, mount_abs(t, m), m->master);
			pr->ext_slave_peer[i] = IDX_NONE;
		} else if (r == -ENOENT)
			return fail(pl, -ENOENT, m,
				    "Mount %" PRIu64 " at %s is a slave of peer group %" PRIu64
				    ", which has no member here whose root contains %s "
				    "(use --external-master=private to restore it private)",
				    m->id, mount_abs(t, m), m->master, m->root);
		else if (r < 0)
			return r;
	}
	return 0;
}

static int prop_index_host(struct planner *pl, struct propagation *pr)
{
	const struct mntcr_tree *h = pl->host;

	if (!h)
		return 0;
	pr->host_shared = malloc((h->n_mounts + 1) * sizeof(size_t));
	if (!pr->host_shared)
		return -ENOMEM;
	for (size_t i = 0; i < h->n_mounts; i++)
		if (h->mounts[i].shared && !h->mounts[i].hidden)
			pr->host_shared[pr->n_host_shared++] = i;
	cmp_shared_host = h;
	qsort(pr->host_shared, pr->n_host_shared, sizeof(size_t), cmp_host_shared);
	cmp_shared_host = NULL;
	return 0;
}

/* Create-phase part: temporaries and external peers. */
static int plan_propagation_sources(struct planner *pl, struct propagation *pr)
{
	int r = prop_collect(pl, pr);

	if (r < 0)
		return r;
	r = prop_index_host(pl, pr);
	if (r < 0)
		return r;
	prop_early(pl, pr);
	r = prop_sources(pl, pr);
	if (r < 0)
		return r;
	return prop_born(pl, pr, PHASE_CREATE);
}

static int plan_propagation(struct planner *pl, struct propagation *pr)
{
	const struct mntcr_tree *t = pl->t;
	int r = prop_born(pl, pr, PHASE_PROPAGATION);

	if (r < 0)
		return r;
	for (size_t k = 0; k < pr->n_order; k++) {
		struct pgroup *g = &pr->g[pr->order[k]];
		size_t from = g->master_gi != IDX_NONE ? pr->g[g->master_gi].temp : g->peer;

		/* made as they were cloned (prop_born()) */
		if (g->early || g->born_peer)
			continue;
		if (from != IDX_NONE) {
			if ((r = emit_set_group(pl, from, g->temp, g->leader)) < 0 ||
			    (r = emit_prop(pl, PHASE_PROPAGATION, g->temp, g->leader, MS_SLAVE)) < 0)
				return r;
		}
		if ((r = emit_prop(pl, PHASE_PROPAGATION, g->temp, g->leader, MS_SHARED)) < 0)
			return r;
		for (size_t i = 0; i < g->n; i++) {
			size_t mi = pr->members[g->first + i];
			if (mi != g->leader && (r = emit_set_group(pl, g->temp, pl->p->mount_slot[mi], mi)) < 0)
				return r;
		}
		for (size_t i = 0; i < g->ns; i++) {
			size_t mi = pr->slaves[g->sfirst + i];
			if ((r = emit_set_group(pl, g->temp, pl->p->mount_slot[mi], mi)) < 0 ||
			    (r = emit_prop(pl, PHASE_PROPAGATION, pl->p->mount_slot[mi], mi, MS_SLAVE)) < 0)
				return r;
		}
	}
	for (size_t i = 0; i < pr->n_ext_slaves; i++) {
		size_t mi = pr->ext_slaves[i];

		if (pr->ext_slave_peer[i] == IDX_NONE)
			continue;
		if ((r = emit_set_group(pl, pr->ext_slave_peer[i], pl->p->mount_slot[mi], mi)) < 0 ||
		    (r = emit_prop(pl, PHASE_PROPAGATION, pl->p->mount_slot[mi], mi, MS_SLAVE)) < 0)
			return r;
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++)
		if (t->mounts[mi].unbindable && (r = emit_prop(pl, PHASE_PROPAGATION, pl->p->mount_slot[mi], mi, MS_UNBINDABLE)) < 0)
			return r;
	return 0;
}

static void planner_release(struct planner *pl)
{
	mount_sources_release(&pl->sources, pl->t->n_mounts);
	free(pl->src_rel);
	free(pl->src_slot);
	free(pl->src_attr);
	free(pl->tmpl_op);
	for (size_t i = 0; pl->made && i < pl->n_made; i++)
		strmap_release(&pl->made[i]);
	free(pl->made);
}

MNTCR_EXPORT int mntcr_plan_build(const struct mntcr_tree *image, const struct mntcr_tree *host,
				  const struct mntcr_restore_opts *opts, struct mntcr_plan **ret_plan,
				  struct mntcr_report *report)
{
	struct planner pl = { .t = image, .host = host, .opts = opts, .report = report };
	struct propagation prop = { 0 };
	struct mntcr_plan *p;
	int r;

	if (!image || !ret_plan || !image->indexed || (host && !host->indexed))
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->tree = image;
	p->engine = MNTCR_ENGINE_MOUNT_API;
	if (opts && opts->engine == MNTCR_ENGINE_COMPAT) {
		p->engine = MNTCR_ENGINE_COMPAT;
		if (image->n_ns > 1) {
			report_set(report, "plan", MNTCR_NONE, 0, NULL, NULL, -EOPNOTSUPP,
				   "The image holds %zu mount namespaces; the compat engine restores one "
				   "namespace only (use the mount-api engine)",
				   image->n_ns);
			mntcr_plan_free(p);
			return -EOPNOTSUPP;
		}
		r = compat_plan_build(p, host, opts, report);
		if (r < 0) {
			mntcr_plan_free(p);
			return r;
		}
		*ret_plan = p;
		return 0;
	}
	p->mount_slot = calloc(image->n_mounts + 1, sizeof(size_t));
	p->sb_slot = calloc(image->n_sbs + 1, sizeof(size_t));
	pl.p = p;
	/*
	 * About three ops a mount (clone, attach, mountpoint): room for them at
	 * once, not a doubling series of copies. Nearly every mount has a clone
	 * and an attach: that much is faulted in at once, not page by page.
	 */
	if (GROW(p->ops, p->cap_ops, 3 * image->n_mounts + 16) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	memory_prefault(p->ops, 2 * image->n_mounts * sizeof(*p->ops));
	pl.src_slot = calloc(image->n_mounts + 1, sizeof(size_t));
	pl.src_rel = calloc(image->n_mounts + 1, sizeof(char *));
	pl.src_attr = calloc(image->n_mounts + 1, sizeof(uint64_t));
	if (!p->mount_slot || !p->sb_slot || !pl.src_slot || !pl.src_rel || !pl.src_attr) {
		r = -ENOMEM;
		goto fail;
	}

	r = plan_validate(image, report);
	if (r < 0)
		goto fail;
	r = plan_sources(&pl);
	if (r < 0)
		goto fail;
	r = plan_create(&pl);
	if (r < 0)
		goto fail;
	r = plan_propagation_sources(&pl, &prop);
	if (r < 0)
		goto fail;
	r = plan_flags(&pl);
	if (r < 0)
		goto fail;
	/*
	 * Each namespace's tree becomes its root (in any order: the namespaces
	 * exist already). A single namespace's root mount does so before the
	 * rest is attached to it: moving a finished tree into a namespace walks
	 * every mount of it again (2.5 ms for 10,000). Several trees are built
	 * detached: a mount of another namespace cannot be attached to.
	 */
	if (image->n_ns == 1)
		r = plan_set_roots(&pl);
	if (r == 0)
		r = plan_assemble(&pl);
	if (r == 0 && image->n_ns > 1)
		r = plan_set_roots(&pl);
	if (r < 0)
		goto fail;
	r = plan_propagation(&pl, &prop);
	if (r < 0)
		goto fail;
	propagation_release(&prop, prop.n_groups);
	planner_release(&pl);
	*ret_plan = p;
	return 0;
fail:
	if (r == -ENOMEM && report && !report->msg)
		report_set(report, "plan", MNTCR_NONE, 0, NULL, NULL, r, "Out of memory while planning");
	propagation_release(&prop, prop.n_groups);
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
	compat_plan_free(p->compat);
	arena_release(&p->strings);
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
		r = strbuf_printf(out, "#%zu = new %s source=%s options=%s (superblock %" PRIu32 ":%" PRIu32 ")%s",
				  op->slot, sb->fstype, sb->source ? sb->source : "none",
				  sb->opts ? sb->opts : "", sb->dev_major, sb->dev_minor,
				  op->propagation == MS_SHARED ? ", shared" : "");
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
			snprintf(attr, sizeof(attr), "0x%" PRIx32, op->attr_set);
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
		if (t->n_ns > 1)
			r = strbuf_printf(out, "#%zu becomes / of namespace %zu", op->slot, t->mounts[op->mount].ns);
		else
			r = strbuf_printf(out, "#%zu becomes /", op->slot);
		break;
	case OP_SET_GROUP:
		r = strbuf_printf(out, "#%zu joins the group of #%zu", op->slot, op->src);
		break;
	case OP_PEER_BIND:
		r = strbuf_printf(out, "#%zu = clone of %s, keeping its peer group", op->slot, op->path);
		break;
	case OP_CONTENT: {
		const struct mntcr_sb *sb = &t->sbs[op->sb];

		r = strbuf_printf(out, "#%zu <- image content of superblock %" PRIu32 ":%" PRIu32 " (roots",
				  op->slot, sb->dev_major, sb->dev_minor);
		for (size_t k = 0; k < sb->n_content_roots && r >= 0; k++)
			r = strbuf_printf(out, " %s", sb->content_roots[k]);
		if (r >= 0)
			r = strbuf_puts(out, ")");
		break;
	}
	}
	if (r < 0)
		return r;
	if (op->mount != IDX_NONE && t->n_ns > 1)
		r = strbuf_printf(out, "  [mount %" PRIu64 " %s, namespace %zu]", t->mounts[op->mount].id,
				  mount_abs(t, &t->mounts[op->mount]), t->mounts[op->mount].ns);
	else if (op->mount != IDX_NONE)
		r = strbuf_printf(out, "  [mount %" PRIu64 " %s]", t->mounts[op->mount].id,
				  mount_abs(t, &t->mounts[op->mount]));
	return r;
}

MNTCR_EXPORT int mntcr_plan_print(const struct mntcr_plan *p, FILE *f)
{
	struct strbuf b = { 0 };

	if (p->engine == MNTCR_ENGINE_COMPAT)
		return compat_plan_print(p, f);
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
