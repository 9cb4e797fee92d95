/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The compat engine: restore with mount(2), umount2(2) and pivot_root(2)
 * only, for kernels without the new mount API (before 5.2 there is no
 * open_tree or move_mount, before 5.15 no MOVE_MOUNT_SET_GROUP) and for
 * sandboxes that forbid it. docs/engines.md compares the two engines.
 *
 * It implements the idea of CRIU's "roots yard" (Andrei Vagin, "mnt: try to
 * split a mount tree to restore over-mounted mounts", 2016): in a private
 * mount namespace, a tmpfs (the yard) holds
 *
 *   @t/N     one template per source: each owned superblock mounted once,
 *            each external source bound once (non-recursive), never given
 *            children, so a bind of it is O(1) and reaches any root;
 *   @g/N     one temporary peer per peer group to rebuild (a tmpfs of its
 *            own, so that it can be made private as a whole at the end);
 *   @e/N     binds of our own mounts in a peer group outside the namespace
 *            (masters of the image's slaves);
 *   @r/N     one slot per mount that covers something: it is built there,
 *            with its own subtree, and moved (MS_MOVE) into place once
 *            everything it covers exists, which is the seed's "remap";
 *   @root    where the image's root mount is bound; the tree is built
 *            below it by path, then pivot_root makes it the root.
 *
 * Every mount is a non-recursive MS_BIND of a template (or of a temporary
 * peer, or of an external peer) at its root, attached where it belongs, in
 * the tree's attach order (covered mounts before their coverers); flags
 * come from MS_REMOUNT|MS_BIND right after, superblock ro from MS_REMOUNT
 * of the template once the directories are made.
 *
 * The executor keeps an O_PATH fd of every mount it makes and gives
 * mount(2) /proc/self/fd/N: a child is attached on a path walked (openat,
 * O_NOFOLLOW, one component at a time) from its parent's fd, flags and
 * propagation are set through the mount's own fd. A walk from an fd never
 * crosses what is mounted on that fd's root, so a mount stays reachable
 * once something covers it.
 *
 * Propagation. mount(2) cannot add an existing mount to a peer group: a
 * mount joins a group only by being created as a bind of a member. So a
 * member of a group that has other members (or slaves) is created as a
 * bind of the group's temporary peer when its turn comes, and from then on
 * the kernel propagates whatever is mounted under it to the other members
 * and slaves that exist at that moment. The planner therefore carries a
 * model of the kernel's propagation (propagate_mnt in fs/pnode.c, at the
 * level of peer groups) and replays every operation on it:
 *
 *   - mounts that the image shows as copies of one another (same
 *     filesystem and root, at the same place under members of one group)
 *     form a class; one of them, the originator, is mounted, after the
 *     parents of all the others exist, and the kernel makes the others;
 *   - a member or slave that lacks the copy of such a mount is made after
 *     it (a "late peer"), and a copy the image has private, a slave or
 *     unbindable is made so at once, before anything is mounted on it;
 *   - every copy the model predicts must be a mount of the image that does
 *     not exist yet, or land in the yard; anything else (a copy the image
 *     does not have, a copy tucked beneath an existing mount, a path that
 *     an earlier mount made unreachable) makes the planner refuse, before
 *     anything is mounted;
 *   - at the end, the model's peer groups, masters, flags and unbindable
 *     bits must equal the image's, up to renumbering; otherwise it refuses.
 *
 * Groups with one member and no slaves need none of this: the member is
 * built private and made shared (MS_SHARED) once its subtree is complete.
 *
 * The planner is pure (golden tests in tests/data/plan/NAME.compat.expected);
 * the executor at the end of this file runs in the restore child process.
 */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "flags.h"
#include "mntcr/mntcr.h"
#include "content.h"
#include "plan.h"
#include "sys.h"
#include "tree.h"

/* The phase of the prologue: before anything of the image exists. */
#define PHASE_NAMESPACE _PHASE_MAX

/* Group ids of the model: ours count from 1, our namespace's own groups have this bit. */
#define EXT_GROUP (UINT64_C(1) << 63)

enum cop_type {
	COP_UNSHARE,   /* unshare(CLONE_NEWNS), / recursively private (or slave) */
	COP_YARD,      /* a tmpfs on the first existing candidate directory */
	COP_MKDIR,     /* create path (dir, file, or like src), parents as needed */
	COP_TMPFS,     /* a tmpfs of the yard's own on path */
	COP_SB_MOUNT,  /* mount(source, path, fstype, 0, data): a new superblock */
	COP_CONTENT,   /* the image's files of sb, into the new superblock on path */
	COP_BIND,      /* mount(src, path, MS_BIND) */
	COP_MOVE,      /* mount(src, path, MS_MOVE) */
	COP_REMOUNT,   /* mount(path, MS_REMOUNT|MS_BIND|flags): per-mount flags */
	COP_SB_RDONLY, /* mount(path, MS_REMOUNT|MS_RDONLY): superblock read-only */
	COP_PROPAGATION, /* mount(path, MS_SHARED / MS_SLAVE / MS_PRIVATE / MS_UNBINDABLE [| MS_REC]) */
	COP_ROOT_FD,	 /* keep an fd of path, the image's root mount, for the pivot */
	COP_GRAB,	 /* keep an fd of path, a mount the kernel made by propagation */
	COP_PIVOT,	 /* pivot_root into it, drop the old root (and the yard) */
};

/* Where a path is. */
enum cop_base {
	BASE_YARD,  /* relative to the yard */
	BASE_HOST,  /* absolute, in the namespace the restore started from */
	BASE_ROOT,  /* absolute, in the new namespace after the pivot */
	BASE_MOUNT, /* relative to the root of a mount whose fd is kept ("": that mount itself) */
};

struct cop {
	enum cop_type type;
	enum plan_phase phase; /* PHASE_NAMESPACE for the prologue */
	size_t mount;	       /* image mount concerned, or IDX_NONE */
	size_t sb;	       /* COP_SB_MOUNT: image superblock */
	enum cop_base base;    /* of path */
	size_t handle;	       /* BASE_MOUNT: the image mount path is relative to */
	char *path;	       /* the target */
	enum cop_base src_base;
	size_t src_handle;
	char *src;	     /* COP_BIND, COP_MOVE: the source; COP_MKDIR: the node to imitate */
	enum node_type node; /* COP_MKDIR */
	unsigned long ms;    /* COP_REMOUNT, COP_PROPAGATION: MS_* flags */
	uint64_t attr;	     /* COP_REMOUNT: the flags, for printing */
	size_t grab; /* COP_BIND, COP_GRAB: then keep an fd of the target as this image mount's */
};

/* A place for an operation: a path from the yard, or from the root of a mount we keep an fd of. */
struct addr {
	enum cop_base base;
	size_t handle;
	char *path;
};

struct compat_plan {
	struct cop *ops;
	size_t n_ops, cap_ops;
	const char **yard_dirs; /* candidate directories for the yard, static strings */
	size_t n_yard_dirs;
	bool rslave; /* the prologue makes / a slave, not private: binds of our peers must stay peers */
	/*
	 * fds the executor keeps: one per image mount (handle = its index),
	 * then one per temporary peer of a group (handle >= the number of
	 * mounts), named by where it was bound.
	 */
	size_t n_handles;
	char **handle_names;
	size_t n_extra, cap_extra;
};

/*
 * Directories the yard may be mounted on, in order of preference. Any of
 * them will do; the planner drops those that hold a path the restore
 * needs, the executor takes the first one that exists. The namespace is
 * private, so the tmpfs never shows outside it.
 */
static const char *const yard_candidates[] = {
	"/mnt", "/media", "/srv", "/opt", "/run", "/home", "/var/tmp", "/tmp", "/root", "/boot",
};

static const char *phase_name(enum plan_phase p)
{
	return p == PHASE_NAMESPACE ? "namespace" : plan_phase_name(p);
}

static const char *cop_name(enum cop_type t)
{
	static const char *const names[] = {
		[COP_UNSHARE] = "unshare", [COP_YARD] = "yard",
		[COP_MKDIR] = "mkdir",	   [COP_TMPFS] = "tmpfs",
		[COP_SB_MOUNT] = "mount",  [COP_BIND] = "bind", [COP_CONTENT] = "content",
		[COP_MOVE] = "move",	   [COP_REMOUNT] = "remount",
		[COP_SB_RDONLY] = "sb-ro", [COP_PROPAGATION] = "propagation",
		[COP_ROOT_FD] = "root-fd", [COP_PIVOT] = "pivot",
		[COP_GRAB] = "grab",
	};
	return (unsigned)t < ARRAY_SIZE(names) ? names[t] : "?";
}

static const char *prop_name(unsigned long ms)
{
	switch (ms & ~(unsigned long)MS_REC) {
	case MS_SHARED:
		return "shared";
	case MS_SLAVE:
		return "slave";
	case MS_UNBINDABLE:
		return "unbindable";
	default:
		return "private";
	}
}

static int format_path(struct strbuf *b, const struct mntcr_plan *p, enum cop_base base,
		       size_t handle, const char *path)
{
	const struct mntcr_tree *t = p->tree;
	const char *handle_name = base == BASE_MOUNT && handle >= t->n_mounts
					  ? p->compat->handle_names[handle - t->n_mounts]
					  : "";

	if (base == BASE_YARD)
		return strbuf_printf(b, "@%s", path);
	if (base == BASE_MOUNT && handle < t->n_mounts)
		return strbuf_printf(b, "#%" PRIu64 "%s%s", t->mounts[handle].id, *path ? ":/" : "",
				     path);
	if (base == BASE_MOUNT)
		return strbuf_printf(b, "#%s%s%s", handle_name, *path ? ":/" : "", path);
	return strbuf_puts(b, path);
}

static int cop_format(const struct mntcr_plan *p, size_t i, struct strbuf *out)
{
	const struct compat_plan *cp = p->compat;
	const struct cop *op = &cp->ops[i];
	const struct mntcr_tree *t = p->tree;
	char attr[256];
	int r;

	r = strbuf_printf(out, "%4zu %-11s %-11s ", i, phase_name(op->phase), cop_name(op->type));
	if (r < 0)
		return r;
	switch (op->type) {
	case COP_UNSHARE:
		r = strbuf_printf(out, "new mount namespace, / recursively %s",
				  cp->rslave ? "slave (our peers stay reachable)" : "private");
		break;
	case COP_YARD:
		r = strbuf_puts(out, "tmpfs on the first existing directory of:");
		for (size_t k = 0; r >= 0 && k < cp->n_yard_dirs; k++)
			r = strbuf_printf(out, " %s", cp->yard_dirs[k]);
		break;
	case COP_MKDIR:
		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0 && op->node != NODE_UNKNOWN)
			r = strbuf_printf(out, " (%s)", op->node == NODE_DIR ? "dir" : "file");
		else if (r >= 0) {
			r = strbuf_puts(out, " (like ");
			if (r >= 0)
				r = format_path(out, p, op->src_base, op->src_handle, op->src);
			if (r >= 0)
				r = strbuf_puts(out, ")");
		}
		break;
	case COP_TMPFS:
		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_puts(out, " = new tmpfs of the yard");
		break;
	case COP_SB_MOUNT: {
		const struct mntcr_sb *sb = &t->sbs[op->sb];

		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_printf(out,
					  " = new %s source=%s options=%s (superblock %" PRIu32
					  ":%" PRIu32 ")",
					  sb->fstype, sb->source ? sb->source : "none",
					  sb->opts ? sb->opts : "", sb->dev_major, sb->dev_minor);
		break;
	}
	case COP_CONTENT: {
		const struct mntcr_sb *sb = &t->sbs[op->sb];

		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_printf(out, " <- image content of superblock %" PRIu32 ":%" PRIu32,
					  sb->dev_major, sb->dev_minor);
		break;
	}
	case COP_BIND:
	case COP_MOVE:
		r = format_path(out, p, op->src_base, op->src_handle, op->src);
		if (r >= 0)
			r = strbuf_puts(out, " -> ");
		if (r >= 0)
			r = format_path(out, p, op->base, op->handle, op->path);
		break;
	case COP_REMOUNT:
		if (mntcr_attr_format(op->attr, attr, sizeof(attr)) < 0)
			snprintf(attr, sizeof(attr), "0x%" PRIx64, op->attr);
		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_printf(out, " %s", attr);
		break;
	case COP_SB_RDONLY:
		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_puts(out, " superblock ro");
		break;
	case COP_PROPAGATION:
		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_printf(out, " %s%s", prop_name(op->ms),
					  (op->ms & MS_REC) ? ", recursively" : "");
		break;
	case COP_ROOT_FD:
		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_puts(out, " kept for the pivot");
		break;
	case COP_GRAB:
		r = format_path(out, p, op->base, op->handle, op->path);
		if (r >= 0)
			r = strbuf_puts(out, " (an fd of it is kept)");
		break;
	case COP_PIVOT:
		r = strbuf_puts(out,
				"the root mount becomes /, the old root and the yard are dropped");
		break;
	}
	if (r >= 0 && op->mount != IDX_NONE)
		r = strbuf_printf(out, "  [mount %" PRIu64 " %s]", t->mounts[op->mount].id,
				  t->mounts[op->mount].abs);
	return r;
}

int compat_plan_print(const struct mntcr_plan *p, FILE *f)
{
	struct strbuf b = { 0 };

	if (!p->compat)
		return -EINVAL;
	for (size_t i = 0; i < p->compat->n_ops; i++) {
		int r;

		b.len = 0;
		r = cop_format(p, i, &b);
		if (r < 0) {
			strbuf_release(&b);
			return r;
		}
		fprintf(f, "%s\n", b.buf);
	}
	strbuf_release(&b);
	return ferror(f) ? -EIO : 0;
}

void compat_plan_free(struct compat_plan *cp)
{
	if (!cp)
		return;
	for (size_t i = 0; i < cp->n_ops; i++) {
		free(cp->ops[i].path);
		free(cp->ops[i].src);
	}
	free(cp->ops);
	free(cp->yard_dirs);
	for (size_t i = 0; i < cp->n_extra; i++)
		free(cp->handle_names[i]);
	free(cp->handle_names);
	free(cp);
}

/* ---------------------------------------------------------------------------------------------- */
/* Small helpers */

struct vec {
	size_t *v;
	size_t n, cap;
};

static int vec_push(struct vec *v, size_t x)
{
	int r = GROW(v->v, v->cap, v->n + 1);

	if (r < 0)
		return r;
	v->v[v->n++] = x;
	return 0;
}

static void vec_del(struct vec *v, size_t x)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->v[i] == x) {
			v->v[i] = v->v[--v->n];
			return;
		}
}

static void vec_release(struct vec *v)
{
	free(v->v);
	*v = (struct vec){ 0 };
}

/* Join yard-relative paths: "" is the yard itself. */
static char *yjoin(const char *a, const char *b)
{
	char *p;

	if (!*a)
		return strdup(b);
	if (!*b)
		return strdup(a);
	if (asprintf(&p, "%s/%s", a, b) < 0)
		return NULL;
	return p;
}

/* The flags a mount must end up with, normalised as plan.c does. */
static uint64_t attr_want(uint64_t attr)
{
	return (attr & MNTCR_ATTR_KNOWN & ~(uint64_t)MOUNT_ATTR__ATIME) | attr_atime(attr);
}

/* ---------------------------------------------------------------------------------------------- */
/*
 * The model. Mounts of the namespace being built, including the yard's, at
 * the level of detail propagation needs: which dentry of which filesystem
 * each one sits on and shows as its root, its peer group and master group,
 * its flags. A dentry is a path inside its filesystem (the image's
 * superblocks; the yard's own tmpfs mounts have a namespace each).
 */

struct smount {
	size_t img; /* image mount, IDX_NONE for the yard's own (templates, temporaries, copies in them) */
	size_t sb;     /* image superblock, IDX_NONE for a tmpfs of the yard */
	char *root;    /* its root dentry */
	size_t parent; /* IDX_NONE while not attached */
	char *mp;      /* the dentry of the parent it sits on */
	size_t kpos;   /* its position among the parent's kids */
	struct vec kids;
	uint64_t group;	 /* peer group, 0: not shared */
	uint64_t master; /* master group, 0: not a slave */
	uint64_t attr;	 /* MOUNT_ATTR_*, UINT64_MAX: not known (an explicit --external path) */
	bool unbindable;
	bool yard;     /* dropped with the yard at the end */
	size_t handle; /* the executor keeps an fd of it under this handle, or IDX_NONE */
	bool moving;   /* scratch: part of the tree being attached */
	bool fresh;    /* scratch: ... and that tree is a new bind, not a move */
};

struct sgroup {
	struct vec members;
	struct vec slaves; /* mounts whose master is this group */
};

/* A peer group of the image. */
struct igroup {
	uint64_t id;
	size_t sb;
	struct vec members;
	struct vec slaves;	 /* slaves of it that are in no group of their own */
	struct vec slave_groups; /* groups whose master it is */
	size_t master_gi;	 /* master inside the image, or IDX_NONE */
	uint64_t master;	 /* effective master group id (0: none, or made private) */
	size_t peer;		 /* master outside: our peer of it (index), or IDX_NONE */
	bool complex;		 /* needs a temporary peer: more than one member, or slaves */
	char *lcp;		 /* longest common root of members, slaves, slave groups */
	size_t temp;		 /* model mount of its temporary peer, or IDX_NONE */
	char *temp_dir;		 /* where that is, in the yard */
	unsigned n_temps;
	struct vec down; /* every mount propagation from it reaches */
	int state;
};

/* A mount of our own namespace that is a peer of an image's master outside the image. */
struct ext_peer {
	size_t host; /* host mount index */
	size_t sb;   /* the image's superblock it is a mount of */
	char *dir;   /* where it is bound, in the yard */
	size_t sm;
};

/* Mounts the image shows as copies of one another: one is mounted, the kernel makes the rest. */
struct klass {
	struct vec members;
	size_t orig;
};

struct mstate {
	size_t sm;	    /* its model mount once it exists, or IDX_NONE */
	size_t gi;	    /* its peer group, or IDX_NONE */
	size_t mgi;	    /* its master group if that is in the image, or IDX_NONE */
	uint64_t master;    /* effective master group id */
	size_t peer;	    /* our peer of its master outside the image, or IDX_NONE */
	size_t cls;	    /* class, or IDX_NONE */
	size_t orig;	    /* a copy: its class's originator; IDX_NONE otherwise */
	bool coverer;	    /* covers a sibling, or its parent's other children, or its parent */
	bool slotted;	    /* built in a slot of the yard, then moved into place */
	char *slot;	    /* that slot */
	struct vec beneath; /* siblings it covers directly */
	bool placed, in_place, complete;
	size_t pos; /* pre-order position */
	size_t t_attach, t_move, t_fixup;
};

enum wait_kind {
	W_EXISTS,   /* the mount exists (in place, in its slot, or as a copy) */
	W_PLACED,   /* it is where it belongs under its parent */
	W_IN_PLACE, /* it and all its ancestors are where they belong */
	W_COMPLETE, /* its subtree is complete and its propagation set */
	_W_MAX,
};

enum task_type {
	T_ATTACH, /* bind it (into its place, or into its slot) */
	T_MOVE,	  /* move it from its slot into its place */
	T_FIXUP,  /* set its propagation, once its subtree is complete */
};

struct task {
	enum task_type type;
	size_t mount;
	size_t unmet;
	bool armed, done;
};

struct cplanner {
	const struct mntcr_tree *t;
	const struct mntcr_tree *host;
	const struct mntcr_restore_opts *opts;
	struct mntcr_report *report;
	struct compat_plan *cp;
	struct mount_sources src;
	struct mstate *ms;
	char **strings; /* owned strings: map keys */
	size_t n_strings, cap_strings;
	struct strmap img_at; /* "parent\1mountpoint" -> image mount */

	struct igroup *g;
	size_t n_g;
	struct u64map gidx; /* image group id -> index */
	size_t *order;	    /* groups, masters first */
	size_t n_order;
	struct ext_peer *peers;
	size_t n_peers, cap_peers;
	struct klass *cls;
	size_t n_cls, cap_cls;
	struct strmap cls_key;
	size_t *tmpl_sm;    /* per template: its model mount */
	char **tmpl_dir;    /* per template: where it is */
	char **tmpl_root;   /* per template: the dentry its root shows */
	struct strmap made; /* directories and files already planned */

	/* the model */
	struct smount *m;
	size_t n_m, cap_m;
	struct sgroup *sg;
	size_t n_sg, cap_sg;
	struct u64map sgidx;
	uint64_t next_gid;
	struct strmap at; /* "mount\1dentry" -> mount on it, IDX_NONE once gone */
	size_t yard, gyard;
	struct vec copies; /* image mounts the last attach made by propagation */

	/* scheduling */
	struct task *tasks;
	size_t n_tasks, cap_tasks;
	struct vec *waiters[_W_MAX];
	struct vec ready;
	size_t ready_head;
};

static int cfail(struct cplanner *pl, int err, size_t mi, const char *fmt, ...) _printf_(4, 5);
static int cfail(struct cplanner *pl, int err, size_t mi, const char *fmt, ...)
{
	const struct mntcr_mount *m = mi != IDX_NONE ? &pl->t->mounts[mi] : NULL;
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	report_set(pl->report, "plan", MNTCR_NONE, m ? m->id : 0, m ? m->abs : NULL, NULL,
		   err, "%s", msg ? msg : "Out of memory");
	return err;
}

/* "Mount 42 at /x" for messages; a static buffer per call site is enough for one message. */
#define MNAME(pl, mi) (pl)->t->mounts[mi].id, (pl)->t->mounts[mi].abs

static int keep_string(struct cplanner *pl, char *s)
{
	int r;

	if (!s)
		return -ENOMEM;
	r = GROW(pl->strings, pl->cap_strings, pl->n_strings + 1);
	if (r < 0) {
		free(s);
		return r;
	}
	pl->strings[pl->n_strings++] = s;
	return 0;
}

static char *fmt_key(size_t a, const char *b)
{
	char *k;

	if (asprintf(&k, "%zu\001%s", a, b) < 0)
		return NULL;
	return k;
}

/* The image's child of parent pi on mountpoint mp, or IDX_NONE. */
static size_t img_child(struct cplanner *pl, size_t pi, const char *mp)
{
	_cleanup_free_ char *k = fmt_key(pi, mp);
	size_t v;

	if (!k || !strmap_get(&pl->img_at, k, &v))
		return IDX_NONE;
	return v;
}

/* The dentry of image mount mi's parent that mi sits on. */
static char *img_dentry(struct cplanner *pl, size_t mi)
{
	const struct mntcr_mount *m = &pl->t->mounts[mi];

	return path_join(pl->t->mounts[m->parent].root, mount_relpath(pl->t, m));
}

/* ---------------------------------------------------------------------------------------------- */
/* Model: mounts, peer groups */

/*
 * At most this many model mounts per image mount (and a floor): mount(2)
 * between peer groups that receive each other's propagation can make
 * mounts without bound (the kernel stops at fs.mount-max), and a model of
 * that would eat all memory.
 */
#define MODEL_MOUNTS_PER_MOUNT 64
#define MODEL_MOUNTS_MIN 65536

static int sm_new(struct cplanner *pl, size_t img, size_t sb, const char *root, uint64_t attr,
		  bool yard, size_t *ret)
{
	int r;

	if (pl->n_m >= MODEL_MOUNTS_MIN && pl->n_m / MODEL_MOUNTS_PER_MOUNT >= pl->t->n_mounts)
		return cfail(pl, -EOPNOTSUPP, IDX_NONE,
			     "The compat engine's model of mount(2) propagation grows past %zu mounts for "
			     "%zu in the image: these peer groups would propagate without bound (use the "
			     "mount-api engine)",
			     pl->n_m, pl->t->n_mounts);
	r = GROW(pl->m, pl->cap_m, pl->n_m + 1);
	if (r < 0)
		return r;
	pl->m[pl->n_m] = (struct smount){ .img = img,
					  .sb = sb,
					  .root = strdup(root),
					  .parent = IDX_NONE,
					  .attr = attr,
					  .yard = yard,
					  .handle = IDX_NONE };
	if (!pl->m[pl->n_m].root)
		return -ENOMEM;
	*ret = pl->n_m++;
	return 0;
}

static struct sgroup *sg_get(struct cplanner *pl, uint64_t gid)
{
	size_t k;

	if (u64map_get(&pl->sgidx, gid, &k))
		return &pl->sg[k];
	if (GROW(pl->sg, pl->cap_sg, pl->n_sg + 1) < 0)
		return NULL;
	if (u64map_put(&pl->sgidx, gid, pl->n_sg) < 0)
		return NULL;
	pl->sg[pl->n_sg] = (struct sgroup){ 0 };
	return &pl->sg[pl->n_sg++];
}

static int set_group(struct cplanner *pl, size_t sm, uint64_t gid)
{
	struct sgroup *g;

	assert(pl->m[sm].group == 0);
	if (!gid)
		return 0;
	g = sg_get(pl, gid);
	if (!g)
		return -ENOMEM;
	pl->m[sm].group = gid;
	return vec_push(&g->members, sm);
}

static int set_master(struct cplanner *pl, size_t sm, uint64_t gid)
{
	struct smount *m = &pl->m[sm];
	struct sgroup *g;

	if (m->master) {
		g = sg_get(pl, m->master);
		if (!g)
			return -ENOMEM;
		vec_del(&g->slaves, sm);
	}
	m->master = gid;
	if (!gid)
		return 0;
	g = sg_get(pl, gid);
	if (!g)
		return -ENOMEM;
	return vec_push(&g->slaves, sm);
}

static uint64_t new_gid(struct cplanner *pl) { return ++pl->next_gid; }

/*
 * The mount stops being shared (do_make_slave): when it was the group's last
 * member, the group's slaves go to its master, or become private.
 */
static int leave_group(struct cplanner *pl, size_t sm, bool *ret_had_peers)
{
	uint64_t gid = pl->m[sm].group;
	struct sgroup *g = sg_get(pl, gid);
	int r;

	if (!g)
		return -ENOMEM;
	vec_del(&g->members, sm);
	pl->m[sm].group = 0;
	*ret_had_peers = g->members.n > 0;
	if (g->members.n == 0)
		while (g->slaves.n > 0) {
			r = set_master(pl, g->slaves.v[0], pl->m[sm].master);
			if (r < 0)
				return r;
			g = sg_get(pl, gid); /* set_master may have grown the array */
		}
	return 0;
}

static int make_private(struct cplanner *pl, size_t sm)
{
	bool had;
	int r;

	if (pl->m[sm].group && (r = leave_group(pl, sm, &had)) < 0)
		return r;
	return set_master(pl, sm, 0);
}

static int make_slave(struct cplanner *pl, size_t sm)
{
	uint64_t gid = pl->m[sm].group;
	bool had;
	int r;

	if (!gid)
		return 0; /* a slave stays one, a private mount too */
	r = leave_group(pl, sm, &had);
	if (r < 0)
		return r;
	return had ? set_master(pl, sm, gid) : 0;
}

static int make_shared(struct cplanner *pl, size_t sm)
{
	return pl->m[sm].group ? 0 : set_group(pl, sm, new_gid(pl));
}

static int make_unbindable(struct cplanner *pl, size_t sm)
{
	int r = make_private(pl, sm);

	pl->m[sm].unbindable = true;
	return r;
}

static size_t child_at(struct cplanner *pl, size_t sm, const char *dentry)
{
	_cleanup_free_ char *k = fmt_key(sm, dentry);
	size_t v;

	if (!k || !strmap_get(&pl->at, k, &v))
		return IDX_NONE;
	return v;
}

static int sm_link(struct cplanner *pl, size_t child, size_t parent, const char *dentry)
{
	struct smount *c = &pl->m[child];
	char *k = fmt_key(parent, dentry);
	int r;

	if (!k)
		return -ENOMEM;
	c->mp = strdup(dentry);
	if (!c->mp) {
		free(k);
		return -ENOMEM;
	}
	c->parent = parent;
	c->kpos = pl->m[parent].kids.n;
	r = vec_push(&pl->m[parent].kids, child);
	if (r < 0) {
		free(k);
		return r;
	}
	if (strmap_get(&pl->at, k, NULL)) {
		/* a mount was there and left: the map keeps its own copy of the key */
		r = strmap_put(&pl->at, k, child);
		free(k);
		return r;
	}
	r = strmap_put(&pl->at, k, child);
	if (r < 0) {
		free(k);
		return r;
	}
	return keep_string(pl, k);
}

static int sm_unlink(struct cplanner *pl, size_t child)
{
	struct smount *c = &pl->m[child], *p = &pl->m[c->parent];
	_cleanup_free_ char *k = fmt_key(c->parent, c->mp);
	size_t last;

	if (!k)
		return -ENOMEM;
	(void)strmap_put(&pl->at, k, IDX_NONE); /* the key exists: the value is replaced */
	last = p->kids.v[--p->kids.n];
	if (last != child) {
		p->kids.v[c->kpos] = last;
		pl->m[last].kpos = c->kpos;
	}
	free(c->mp);
	c->mp = NULL;
	c->parent = IDX_NONE;
	return 0;
}

/* The yard-relative path that reaches model mount sm's root ("" for the yard itself). */
static char *rel_from(struct cplanner *pl, size_t a, size_t sm, const char *d);

static char *sm_path(struct cplanner *pl, size_t sm)
{
	return rel_from(pl, pl->yard, sm, pl->m[sm].root);
}

/*
 * Where a path walk from the yard ends: the topmost mount at each step, as
 * the kernel resolves it; *ret_dentry is that mount's dentry (new string).
 */
static int sm_resolve_at(struct cplanner *pl, size_t start, const char *path, size_t *ret_sm,
			 char **ret_dentry)
{
	size_t cur = start, ch;
	char *d = strdup(pl->m[start].root);

	if (!d)
		return -ENOMEM;
	for (const char *p = path; *p;) {
		const char *e = strchrnul(p, '/');
		_cleanup_free_ char *comp = strndup(p, (size_t)(e - p));
		char *nd;

		p = *e ? e + 1 : e;
		if (!comp) {
			free(d);
			return -ENOMEM;
		}
		nd = path_join(d, comp);
		free(d);
		if (!nd)
			return -ENOMEM;
		d = nd;
		while ((ch = child_at(pl, cur, d)) != IDX_NONE) {
			cur = ch;
			free(d);
			d = strdup(pl->m[ch].root);
			if (!d)
				return -ENOMEM;
		}
	}
	*ret_sm = cur;
	*ret_dentry = d;
	return 0;
}

static int sm_resolve(struct cplanner *pl, const char *path, size_t *ret_sm, char **ret_dentry)
{
	return sm_resolve_at(pl, pl->yard, path, ret_sm, ret_dentry);
}

/* What mount(2) mounts on when given (sm, *d): the top of whatever is mounted there. */
static int follow_top(struct cplanner *pl, size_t *sm, char **d)
{
	size_t ch;

	while ((ch = child_at(pl, *sm, *d)) != IDX_NONE) {
		free(*d);
		*sm = ch;
		*d = strdup(pl->m[ch].root);
		if (!*d)
			return -ENOMEM;
	}
	return 0;
}

/* The path from the root of mount a down to dentry d of mount sm, its descendant (or itself). */
static char *rel_from(struct cplanner *pl, size_t a, size_t sm, const char *d)
{
	const char *rel = path_relative(d, pl->m[sm].root);
	struct vec chain = { 0 };
	struct strbuf b = { 0 };
	char *ret = NULL;

	if (!rel)
		return NULL;
	for (size_t k = sm; k != a; k = pl->m[k].parent)
		if (pl->m[k].parent == IDX_NONE || vec_push(&chain, k) < 0)
			goto out;
	if (strbuf_puts(&b, "") < 0)
		goto out;
	while (chain.n > 0) {
		const struct smount *c = &pl->m[chain.v[--chain.n]];
		const char *x = path_relative(c->mp, pl->m[c->parent].root);

		if (!x ||
		    (*x && ((b.len > 0 && strbuf_puts(&b, "/") < 0) || strbuf_puts(&b, x) < 0)))
			goto out;
	}
	if (*rel && ((b.len > 0 && strbuf_puts(&b, "/") < 0) || strbuf_puts(&b, rel) < 0))
		goto out;
	ret = strbuf_detach(&b);
out:
	strbuf_release(&b);
	vec_release(&chain);
	return ret;
}

static void addr_release(struct addr *a)
{
	free(a->path);
	*a = (struct addr){ .handle = IDX_NONE };
}

/*
 * An address of dentry d of model mount sm: a path from the root of its
 * nearest ancestor (or itself) that the executor keeps an fd of, or from
 * the yard, whose walk ends there; the walk from an fd never crosses what
 * is mounted on that fd's own root, so covered mounts stay reachable.
 * `place`: an address to mount on, where mount(2) goes to the top of what
 * is there, so that must be sm itself; otherwise an address of sm's root
 * exactly. -ENOENT: no path reaches it.
 */
static int find_addr(struct cplanner *pl, size_t sm, const char *d, bool place, struct addr *ret)
{
	for (size_t a = sm; a != IDX_NONE; a = pl->m[a].parent) {
		size_t h = pl->m[a].handle, got;
		_cleanup_free_ char *rel = NULL, *gd = NULL;
		int r;

		if (a != pl->yard && h == IDX_NONE)
			continue;
		rel = rel_from(pl, a, sm, d);
		if (!rel)
			return -ENOMEM;
		r = sm_resolve_at(pl, a, rel, &got, &gd);
		if (r == 0 && place)
			r = follow_top(pl, &got, &gd);
		if (r < 0)
			return r;
		if (got != sm || !streq(gd, d))
			continue;
		*ret = (struct addr){ .base = a == pl->yard ? BASE_YARD : BASE_MOUNT,
				      .handle = a == pl->yard ? IDX_NONE : h,
				      .path = TAKE_PTR(rel) };
		return 0;
	}
	return -ENOENT;
}

static int expect_reach(struct cplanner *pl, const char *path, size_t sm, const char *dentry,
			size_t mi, const char *what);

/* find_addr, or a refusal naming what stands in the way of the plain path. */
static int need_addr(struct cplanner *pl, size_t sm, const char *d, bool place, size_t mi,
		     const char *what, struct addr *ret)
{
	_cleanup_free_ char *path = NULL, *full = NULL;
	int r = find_addr(pl, sm, d, place, ret);

	if (r != -ENOENT)
		return r;
	path = sm_path(pl, sm);
	full = path ? yjoin(path, path_relative(d, pl->m[sm].root)) : NULL;
	if (!full)
		return -ENOMEM;
	r = expect_reach(pl, full, sm, d, mi, what);
	return r < 0 ? r
		     : cfail(pl, -EOPNOTSUPP, mi,
			     "Internal error: no address for mount %" PRIu64 " at %s",
			     MNAME(pl, mi));
}

/*
 * The path must lead to dentry `dentry` of mount `sm` (or to sm's root when
 * dentry is NULL): nothing mounted since may stand in the way.
 */
static int expect_reach(struct cplanner *pl, const char *path, size_t sm, const char *dentry,
			size_t mi, const char *what)
{
	_cleanup_free_ char *d = NULL;
	size_t got;
	int r = sm_resolve(pl, path, &got, &d);

	if (r < 0)
		return r;
	if (got == sm && streq(d, dentry ? dentry : pl->m[sm].root))
		return 0;
	if (pl->m[got].img != IDX_NONE)
		return cfail(pl, -EOPNOTSUPP, mi,
			     "The compat engine cannot restore mount %" PRIu64
			     " at %s: when it must %s, mount %" PRIu64
			     " at %s stands in the way, and mount(2) only reaches a mount by path "
			     "(use the mount-api engine)",
			     MNAME(pl, mi), what, MNAME(pl, pl->m[got].img));
	return cfail(pl, -EOPNOTSUPP, mi,
		     "The compat engine cannot restore mount %" PRIu64
		     " at %s: when it must %s, the path @%s "
		     "is covered in the roots yard (use the mount-api engine)",
		     MNAME(pl, mi), what, path);
}

/* A non-recursive bind of dentry `dentry` of mount src: a new, detached mount (clone_mnt). */
static int sm_bind(struct cplanner *pl, size_t src, const char *dentry, size_t img, bool yard,
		   size_t *ret)
{
	size_t n = IDX_NONE;
	int r;

	assert(!pl->m[src].unbindable);
	r = sm_new(pl, img, pl->m[src].sb, dentry, pl->m[src].attr, yard, &n);
	if (r < 0)
		return r;
	/* a bind of a shared mount is a peer of it; of a slave, a slave of the same master */
	if ((r = set_group(pl, n, pl->m[src].group)) < 0 ||
	    (r = set_master(pl, n, pl->m[src].master)) < 0)
		return r;
	*ret = n;
	return 0;
}

/* The mounts of the tree rooted at sm, in pre-order. */
static int sm_tree(struct cplanner *pl, size_t sm, struct vec *out)
{
	int r = vec_push(out, sm);

	for (size_t i = 0; r == 0 && i < out->n; i++) {
		const struct smount *m = &pl->m[out->v[i]];

		for (size_t k = 0; r == 0 && k < m->kids.n; k++)
			r = vec_push(out, m->kids.v[k]);
	}
	return r;
}

static size_t tree_index_of(const struct vec *tree, size_t sm)
{
	for (size_t k = 0; k < tree->n; k++)
		if (tree->v[k] == sm)
			return k;
	return IDX_NONE;
}

/*
 * Copy the tree being attached (what propagate_one does with copy_tree)
 * onto dentry x of mount dest. The copy's peer group and master, per mount
 * of the tree, come from grp and mst. A copy in a mount of the image must
 * be a mount of the image that does not exist yet; copies in the yard's
 * own mounts are the yard's.
 */
static int copy_tree(struct cplanner *pl, const struct vec *tree, size_t dest, const char *x,
		     const uint64_t *grp, const uint64_t *mst, size_t attached)
{
	const struct mntcr_tree *t = pl->t;
	_cleanup_free_ size_t *copy = calloc(tree->n + 1, sizeof(size_t));
	size_t tucked;
	int r;

	if (!copy)
		return -ENOMEM;
	/*
	 * Something is mounted there already: the kernel tucks the copy beneath
	 * it. In the yard's temporaries that is harmless (a path to that place
	 * still ends on what was there); in the image's mounts the image would
	 * show it, and the model does not follow.
	 */
	tucked = child_at(pl, dest, x);
	if (tucked != IDX_NONE && !pl->m[dest].yard) {
		size_t in = pl->m[tucked].img;

		return cfail(pl, -EOPNOTSUPP, attached,
			     "The compat engine cannot restore mount %" PRIu64
			     " at %s: attaching it would propagate a copy beneath mount %" PRIu64
			     " at %s, which the image does not show (use the mount-api engine)",
			     MNAME(pl, attached), in != IDX_NONE ? t->mounts[in].id : 0,
			     in != IDX_NONE ? t->mounts[in].abs : "?");
	}
	if (tucked != IDX_NONE && (r = sm_unlink(pl, tucked)) < 0)
		return r;
	for (size_t k = 0; k < tree->n; k++) {
		const struct smount *d = &pl->m[tree->v[k]];
		size_t parent = k == 0 ? dest : copy[tree_index_of(tree, d->parent)];
		const char *dentry = k == 0 ? x : d->mp;
		const struct smount *pm = &pl->m[parent];
		size_t img = IDX_NONE, n;

		if (!pm->yard) {
			_cleanup_free_ char *mp = path_join(t->mounts[pm->img].abs,
							    path_relative(dentry, pm->root));

			if (!mp)
				return -ENOMEM;
			img = img_child(pl, pm->img, mp);
			if (img == IDX_NONE || pl->ms[img].sm != IDX_NONE ||
			    t->mounts[img].sb != d->sb || !streq(t->mounts[img].root, d->root))
				return cfail(pl, -EOPNOTSUPP, attached,
					     "The compat engine cannot restore mount %" PRIu64
					     " at %s: attaching it "
					     "would make the kernel propagate a copy%s%s to %s, "
					     "where the image has %s "
					     "(use the mount-api engine)",
					     MNAME(pl, attached),
					     k > 0 && d->img != IDX_NONE ? " of the mount at " : "",
					     k > 0 && d->img != IDX_NONE
						     ? t->mounts[d->img].abs
						     : "",
					     mp,
					     img == IDX_NONE ? "no such mount"
					     : pl->ms[img].sm != IDX_NONE
						     ? "a mount that is already there"
						     : "another mount");
		}
		r = sm_new(pl, img, d->sb, d->root, d->attr, pm->yard, &n);
		if (r < 0)
			return r;
		d = &pl->m[tree->v[k]];
		if ((r = set_group(pl, n, grp ? grp[k] : 0)) < 0 ||
		    (r = set_master(pl, n, mst[k])) < 0 || (r = sm_link(pl, n, parent, dentry)) < 0)
			return r;
		copy[k] = n;
		if (img != IDX_NONE) {
			pl->ms[img].sm = n;
			if ((r = vec_push(&pl->copies, img)) < 0)
				return r;
		}
	}
	if (tucked != IDX_NONE)
		return sm_link(pl, tucked, copy[0], pl->m[copy[0]].root);
	return 0;
}

/*
 * propagate_mnt(): the tree is being attached on dentry x of shared mount
 * dest. Copies go to every other member of dest's group whose root shows
 * x (peers of the tree's mounts), then down the slave hierarchy: to a pure
 * slave, slaves of the copies one level up; to the members of a shared
 * slave group, peers of one another in a new group that is a slave of the
 * copies one level up. A group no copy reached passes its masters down.
 */
static int propagate(struct cplanner *pl, const struct vec *tree, size_t dest, const char *x,
		     size_t attached)
{
	uint64_t gid = pl->m[dest].group;
	_cleanup_free_ uint64_t *lvl0 = calloc(tree->n + 1, sizeof(uint64_t));
	_cleanup_free_ uint64_t *mst0 = calloc(tree->n + 1, sizeof(uint64_t));
	struct queue_item {
		uint64_t gid;
		uint64_t *map;
	} *queue = NULL;
	size_t qn = 0, qcap = 0, qhead = 0;
	struct u64map visited = { 0 };
	struct vec snap = { 0 };
	int r = 0;

	if (!lvl0 || !mst0)
		return -ENOMEM;
	for (size_t k = 0; k < tree->n; k++) {
		lvl0[k] = pl->m[tree->v[k]].group;
		mst0[k] = pl->m[tree->v[k]].master;
	}
	/* the peers of dest, as they are now (copies may join the group) */
	for (size_t i = 0; i < sg_get(pl, gid)->members.n && r == 0; i++)
		r = vec_push(&snap, sg_get(pl, gid)->members.v[i]);
	for (size_t i = 0; i < snap.n && r == 0; i++) {
		size_t T = snap.v[i];

		if (T == dest || !path_startswith(x, pl->m[T].root) || pl->m[T].fresh)
			continue;
		if (pl->m[T].moving) {
			r = cfail(pl, -EOPNOTSUPP, attached,
				  "The compat engine cannot restore mount %" PRIu64
				  " at %s: it would propagate into "
				  "itself (use the mount-api engine)",
				  MNAME(pl, attached));
			break;
		}
		r = copy_tree(pl, tree, T, x, lvl0, mst0, attached);
	}
	if (r < 0)
		goto out;

	r = GROW(queue, qcap, 1);
	if (r < 0)
		goto out;
	queue[qn++] = (struct queue_item){ .gid = gid, .map = NULL };
	while (qhead < qn && r == 0) {
		struct queue_item it = queue[qhead++];
		const uint64_t *map = it.map ? it.map : lvl0;

		snap.n = 0;
		for (size_t i = 0; i < sg_get(pl, it.gid)->slaves.n && r == 0; i++)
			r = vec_push(&snap, sg_get(pl, it.gid)->slaves.v[i]);
		for (size_t i = 0; i < snap.n && r == 0; i++) {
			size_t s = snap.v[i];
			uint64_t g2 = pl->m[s].group;

			if (pl->m[s].fresh)
				continue;
			if (pl->m[s].moving) {
				if (path_startswith(x, pl->m[s].root))
					r = cfail(
						pl, -EOPNOTSUPP, attached,
						"The compat engine cannot restore mount %" PRIu64
						" at %s: it would "
						"propagate into itself (use the mount-api engine)",
						MNAME(pl, attached));
				continue;
			}
			if (!g2) {
				if (path_startswith(x, pl->m[s].root))
					r = copy_tree(pl, tree, s, x, NULL, map, attached);
				continue;
			}
			if (u64map_get(&visited, g2, NULL))
				continue;
			r = u64map_put(&visited, g2, 0);
			if (r < 0)
				break;
			{
				struct vec mem = { 0 };
				uint64_t *map2 = NULL;

				for (size_t j = 0; j < sg_get(pl, g2)->members.n && r == 0; j++)
					r = vec_push(&mem, sg_get(pl, g2)->members.v[j]);
				for (size_t j = 0; j < mem.n && r == 0; j++) {
					size_t T = mem.v[j];

					if (!path_startswith(x, pl->m[T].root) || pl->m[T].fresh)
						continue;
					if (pl->m[T].moving) {
						r = cfail(pl, -EOPNOTSUPP, attached,
							  "The compat engine cannot restore mount "
							  "%" PRIu64 " at %s: it "
							  "would propagate into itself (use the "
							  "mount-api engine)",
							  MNAME(pl, attached));
						break;
					}
					if (!map2) {
						map2 = calloc(tree->n + 1, sizeof(uint64_t));
						if (!map2) {
							r = -ENOMEM;
							break;
						}
						for (size_t k = 0; k < tree->n; k++)
							map2[k] = new_gid(pl);
					}
					r = copy_tree(pl, tree, T, x, map2, map, attached);
				}
				vec_release(&mem);
				if (r == 0)
					r = GROW(queue, qcap, qn + 1);
				if (r < 0) {
					free(map2);
					break;
				}
				queue[qn++] =
					(struct queue_item){ .gid = g2, .map = map2 ? map2 : NULL };
				if (!map2 && it.map) {
					/* nothing reached this group: its slaves get the same masters */
					queue[qn - 1].map =
						malloc((tree->n + 1) * sizeof(uint64_t));
					if (!queue[qn - 1].map) {
						r = -ENOMEM;
						break;
					}
					memcpy(queue[qn - 1].map, it.map,
					       tree->n * sizeof(uint64_t));
				}
			}
		}
	}
out:
	for (size_t i = 0; i < qn; i++)
		free(queue[i].map);
	free(queue);
	vec_release(&snap);
	u64map_release(&visited);
	return r;
}

/*
 * attach_recursive_mnt(): attach the tree rooted at n on dentry x of mount
 * dest. Under a shared mount, every mount of the tree becomes shared (a
 * group of its own unless it has one) and copies propagate.
 */
static int sm_attach(struct cplanner *pl, size_t n, size_t dest, const char *x, bool fresh,
		     size_t attached)
{
	struct vec tree = { 0 };
	int r;

	if (child_at(pl, dest, x) != IDX_NONE)
		return cfail(pl, -EOPNOTSUPP, attached,
			     "The compat engine cannot restore mount %" PRIu64
			     " at %s: its place is taken",
			     MNAME(pl, attached));
	r = sm_tree(pl, n, &tree);
	if (r < 0)
		goto out;
	if (pl->m[dest].group) {
		for (size_t k = 0; k < tree.n; k++)
			if (pl->m[tree.v[k]].unbindable) {
				r = cfail(pl, -EOPNOTSUPP, attached,
					  "The compat engine cannot restore mount %" PRIu64
					  " at %s: it holds an "
					  "unbindable mount and goes under a shared mount (use the "
					  "mount-api engine)",
					  MNAME(pl, attached));
				goto out;
			}
		for (size_t k = 0; k < tree.n && r == 0; k++) {
			pl->m[tree.v[k]].moving = true;
			pl->m[tree.v[k]].fresh = fresh;
			r = make_shared(pl, tree.v[k]);
		}
		if (r == 0)
			r = propagate(pl, &tree, dest, x, attached);
		for (size_t k = 0; k < tree.n; k++)
			pl->m[tree.v[k]].moving = pl->m[tree.v[k]].fresh = false;
		if (r < 0)
			goto out;
	}
	r = sm_link(pl, n, dest, x);
out:
	vec_release(&tree);
	return r;
}

/* ---------------------------------------------------------------------------------------------- */
/* Emitting operations */

static int emit(struct cplanner *pl, enum cop_type type, enum plan_phase phase, size_t mount,
		enum cop_base base, const char *path, enum cop_base src_base, const char *src,
		struct cop **ret)
{
	struct compat_plan *cp = pl->cp;
	struct cop *op;
	int r = GROW(cp->ops, cp->cap_ops, cp->n_ops + 1);

	if (r < 0)
		return r;
	op = &cp->ops[cp->n_ops];
	*op = (struct cop){ .type = type,
			    .phase = phase,
			    .mount = mount,
			    .sb = IDX_NONE,
			    .base = base,
			    .src_base = src_base,
			    .handle = IDX_NONE,
			    .src_handle = IDX_NONE,
			    .grab = IDX_NONE };
	if ((path && !(op->path = strdup(path))) || (src && !(op->src = strdup(src)))) {
		free(op->path);
		return -ENOMEM;
	}
	cp->n_ops++;
	if (ret)
		*ret = op;
	return 0;
}

static int emit_at(struct cplanner *pl, enum cop_type type, enum plan_phase phase, size_t mount,
		   const struct addr *dst, const struct addr *src, struct cop **ret)
{
	struct cop *op;
	int r = emit(pl, type, phase, mount, dst->base, dst->path, src ? src->base : BASE_YARD,
		     src ? src->path : NULL, &op);

	if (r < 0)
		return r;
	op->handle = dst->handle;
	op->src_handle = src ? src->handle : IDX_NONE;
	if (ret)
		*ret = op;
	return 0;
}

/* Make a directory or file in the yard, once per path. */
static int emit_mkdir(struct cplanner *pl, enum plan_phase phase, size_t mount, const char *path,
		      enum node_type node, enum cop_base like_base, const char *like)
{
	struct cop *op;
	char *k;
	int r;

	if (strmap_get(&pl->made, path, NULL))
		return 0;
	r = emit(pl, COP_MKDIR, phase, mount, BASE_YARD, path, like_base,
		 node == NODE_UNKNOWN ? like : NULL, &op);
	if (r < 0)
		return r;
	op->node = node;
	k = strdup(path);
	if (!k)
		return -ENOMEM;
	r = strmap_put(&pl->made, k, 0);
	if (r < 0) {
		free(k);
		return r;
	}
	return keep_string(pl, k);
}

static int emit_prop(struct cplanner *pl, enum plan_phase phase, size_t mount, enum cop_base base,
		     const char *path, unsigned long ms)
{
	struct cop *op;
	int r = emit(pl, COP_PROPAGATION, phase, mount, base, path, BASE_YARD, NULL, &op);

	if (r == 0)
		op->ms = ms;
	return r;
}

/* Per-mount flags of model mount sm to those of image mount mi, if they differ. */
static int emit_flags(struct cplanner *pl, size_t sm, size_t mi)
{
	uint64_t want = attr_want(pl->t->mounts[mi].attr), have = pl->m[sm].attr;
	struct addr a = { .handle = IDX_NONE };
	struct cop *op = NULL;
	int r;

	if (have != UINT64_MAX && attr_want(have) == want)
		return 0;
	r = need_addr(pl, sm, pl->m[sm].root, false, mi, "set its flags", &a);
	if (r == 0)
		r = emit_at(pl, COP_REMOUNT, PHASE_FLAGS, mi, &a, NULL, &op);
	addr_release(&a);
	if (r < 0)
		return r;
	op->attr = want;
	op->ms = attr_to_ms(want);
	pl->m[sm].attr = want;
	return 0;
}

static size_t fixup_for(struct cplanner *pl, size_t mi, size_t sm, unsigned long ops[static 2]);
static int apply_prop(struct cplanner *pl, size_t sm, unsigned long ms);

/* Keep an fd of image mount mi (model mount sm), if a path reaches it now. */
static int grab(struct cplanner *pl, size_t sm, size_t mi)
{
	struct addr a = { .handle = IDX_NONE };
	struct cop *op = NULL;
	int r = find_addr(pl, sm, pl->m[sm].root, false, &a);

	if (r == -ENOENT)
		return 0;
	if (r == 0)
		r = emit_at(pl, COP_GRAB, PHASE_ASSEMBLE, mi, &a, NULL, &op);
	addr_release(&a);
	if (r < 0)
		return r;
	op->grab = mi;
	pl->m[sm].handle = mi;
	return 0;
}

/* A propagation change on image mount mi (model mount sm), at an address that reaches it. */
static int emit_prop_on(struct cplanner *pl, size_t sm, size_t mi, unsigned long ms,
			const char *what)
{
	struct addr a = { .handle = IDX_NONE };
	struct cop *op = NULL;
	int r = need_addr(pl, sm, pl->m[sm].root, false, mi, what, &a);

	if (r == 0)
		r = emit_at(pl, COP_PROPAGATION, PHASE_PROPAGATION, mi, &a, NULL, &op);
	addr_release(&a);
	if (r < 0)
		return r;
	op->ms = ms;
	return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Analysis of the image: children by place, groups, classes of copies, coverers */

static int index_image(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	_cleanup_free_ size_t *stack = malloc((t->n_mounts + 1) * sizeof(size_t));
	size_t n = 0, pos = 0;
	int r;

	if (!stack)
		return -ENOMEM;
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t other;
		char *k;

		pl->ms[mi] = (struct mstate){ .sm = IDX_NONE,
					      .gi = IDX_NONE,
					      .mgi = IDX_NONE,
					      .peer = IDX_NONE,
					      .cls = IDX_NONE,
					      .orig = IDX_NONE,
					      .t_attach = IDX_NONE,
					      .t_move = IDX_NONE,
					      .t_fixup = IDX_NONE };
		if (m->parent == IDX_NONE)
			continue;
		k = fmt_key(m->parent, m->abs);
		if (!k)
			return -ENOMEM;
		if (strmap_get(&pl->img_at, k, &other)) {
			free(k);
			return cfail(pl, -EOPNOTSUPP, mi,
				     "Mounts %" PRIu64 " and %" PRIu64
				     " are both on %s of mount %" PRIu64
				     ": mount(2) always stacks the second on the first; the compat "
				     "engine cannot "
				     "restore this (use the mount-api engine)",
				     t->mounts[other].id, m->id, m->abs,
				     t->mounts[m->parent].id);
		}
		r = strmap_put(&pl->img_at, k, mi);
		if (r < 0) {
			free(k);
			return r;
		}
		r = keep_string(pl, k);
		if (r < 0)
			return r;
	}
	/* pre-order positions, children in attach order */
	stack[n++] = t->root;
	while (n > 0) {
		const struct mntcr_mount *m = &t->mounts[stack[--n]];

		pl->ms[stack[n]].pos = pos++;
		for (size_t k = m->n_children; k > 0; k--)
			stack[n++] = tree_child_idx(t, m, k - 1);
	}
	return 0;
}

/* Our visible mount in group `group` whose root contains `root`, the shortest such root. */
static size_t host_member(struct cplanner *pl, uint64_t group, const char *root)
{
	const struct mntcr_tree *h = pl->host;
	size_t best = IDX_NONE;

	if (!h)
		return IDX_NONE;
	for (size_t i = 0; i < h->n_mounts; i++) {
		const struct mntcr_mount *m = &h->mounts[i];

		if (m->shared != group || m->hidden || !path_startswith(root, m->root))
			continue;
		if (best == IDX_NONE || strlen(m->root) < strlen(h->mounts[best].root))
			best = i;
	}
	return best;
}

static int ext_peer_get(struct cplanner *pl, size_t host, size_t sb, size_t *ret)
{
	int r;

	for (size_t k = 0; k < pl->n_peers; k++)
		if (pl->peers[k].host == host) {
			*ret = k;
			return 0;
		}
	r = GROW(pl->peers, pl->cap_peers, pl->n_peers + 1);
	if (r < 0)
		return r;
	pl->peers[pl->n_peers] = (struct ext_peer){ .host = host, .sb = sb, .sm = IDX_NONE };
	if (asprintf(&pl->peers[pl->n_peers].dir, "e/%zu", pl->n_peers) < 0)
		return -ENOMEM;
	*ret = pl->n_peers++;
	return 0;
}

/* Shorten *lcp to the longest common ancestor of itself and root (as plan.c's lcp_merge). */
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
	if (c[i] == 0 && (root[i] == 0 || root[i] == '/'))
		return 0;
	if (root[i] == 0 && c[i] == '/')
		last = i;
	c[last ? last : 1] = 0;
	return 0;
}

static int visit_group(struct cplanner *pl, size_t gi)
{
	struct igroup *g = &pl->g[gi];
	int r;

	if (g->state == 2)
		return 0;
	if (g->state == 1)
		return -ELOOP;
	g->state = 1;
	if (g->master_gi != IDX_NONE && (r = visit_group(pl, g->master_gi)) < 0)
		return r;
	pl->g[gi].state = 2;
	pl->order[pl->n_order++] = gi;
	return 0;
}

/* Where propagation from group gi reaches: its members, its slaves, and so on down. */
static int collect_down(struct cplanner *pl, size_t gi, struct vec *out, unsigned depth)
{
	const struct igroup *g = &pl->g[gi];
	int r = 0;

	if (depth > pl->n_g)
		return -ELOOP;
	for (size_t i = 0; i < g->members.n && r == 0; i++)
		r = vec_push(out, g->members.v[i]);
	for (size_t i = 0; i < g->slaves.n && r == 0; i++)
		r = vec_push(out, g->slaves.v[i]);
	for (size_t i = 0; i < g->slave_groups.n && r == 0; i++)
		r = collect_down(pl, g->slave_groups.v[i], out, depth + 1);
	return r;
}

/* The root of template k (the dentry its root shows), from the first mount taken from it. */
static int template_roots(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	const struct mount_sources *s = &pl->src;

	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const char *root = t->mounts[mi].root, *rel = s->mount_rel[mi];
		size_t k = s->mount_tmpl[mi], n = strlen(root), l = strlen(rel);
		char *base;

		if (l == 0)
			base = strdup(root);
		else if (n > l && streq(root + n - l, rel))
			base = n - l - 1 == 0 ? strdup("/") : strndup(root, n - l - 1);
		else
			return -EINVAL;
		if (!base)
			return -ENOMEM;
		if (!pl->tmpl_root[k]) {
			pl->tmpl_root[k] = base;
			continue;
		}
		if (!streq(pl->tmpl_root[k], base)) {
			free(base);
			return cfail(pl, -EOPNOTSUPP, mi,
				     "Mount %" PRIu64
				     " at %s is taken from %s, which other mounts take as a "
				     "different root of the same filesystem (check --root and "
				     "--external)",
				     MNAME(pl, mi),
				     s->tmpl[k].path ? s->tmpl[k].path : "a new superblock");
		}
		free(base);
	}
	return 0;
}

static int collect_groups(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	pl->g = calloc(t->n_mounts + 1, sizeof(*pl->g));
	pl->order = calloc(t->n_mounts + 1, sizeof(size_t));
	if (!pl->g || !pl->order)
		return -ENOMEM;
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t gi;

		if (!m->shared)
			continue;
		if (!u64map_get(&pl->gidx, m->shared, &gi)) {
			gi = pl->n_g++;
			pl->g[gi] = (struct igroup){ .id = m->shared,
						     .sb = m->sb,
						     .master_gi = IDX_NONE,
						     .master = m->master,
						     .peer = IDX_NONE,
						     .temp = IDX_NONE };
			if ((r = u64map_put(&pl->gidx, m->shared, gi)) < 0)
				return r;
		} else if (pl->g[gi].sb != m->sb)
			return cfail(pl, -EBADMSG, mi,
				     "Mount %" PRIu64 " at %s is in peer group %" PRIu64
				     " with mounts of another filesystem",
				     MNAME(pl, mi), m->shared);
		else if (pl->g[gi].master != m->master)
			return cfail(pl, -EBADMSG, mi,
				     "Mount %" PRIu64 " at %s is in peer group %" PRIu64
				     " with mounts of another master",
				     MNAME(pl, mi), m->shared);
		pl->ms[mi].gi = gi;
		if ((r = vec_push(&pl->g[gi].members, mi)) < 0)
			return r;
	}
	/* masters inside the image */
	for (size_t gi = 0; gi < pl->n_g; gi++) {
		struct igroup *g = &pl->g[gi];
		size_t mgi;

		if (!g->master || !u64map_get(&pl->gidx, g->master, &mgi))
			continue;
		if (pl->g[mgi].sb != g->sb)
			return cfail(pl, -EBADMSG, g->members.v[0],
				     "Peer group %" PRIu64 " is a slave of group %" PRIu64
				     " of another filesystem",
				     g->id, g->master);
		g->master_gi = mgi;
		if ((r = vec_push(&pl->g[mgi].slave_groups, gi)) < 0)
			return r;
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t mgi;

		pl->ms[mi].master = m->master;
		if (m->master && u64map_get(&pl->gidx, m->master, &mgi)) {
			if (pl->g[mgi].sb != m->sb)
				return cfail(pl, -EBADMSG, mi,
					     "Mount %" PRIu64
					     " at %s is a slave of peer group %" PRIu64
					     " of another filesystem",
					     MNAME(pl, mi), m->master);
			pl->ms[mi].mgi = mgi;
			if (!m->shared && (r = vec_push(&pl->g[mgi].slaves, mi)) < 0)
				return r;
		}
	}
	for (size_t gi = 0; gi < pl->n_g; gi++) {
		struct igroup *g = &pl->g[gi];

		g->complex = g->members.n > 1 || g->slaves.n > 0 || g->slave_groups.n > 0;
		if ((r = visit_group(pl, gi)) < 0)
			return cfail(pl, -EBADMSG, g->members.v[0],
				     "The masters of peer group %" PRIu64 " form a cycle", g->id);
	}
	/* longest common roots, slaves first */
	for (size_t k = pl->n_order; k > 0; k--) {
		struct igroup *g = &pl->g[pl->order[k - 1]];

		for (size_t i = 0; i < g->members.n; i++)
			if ((r = lcp_merge(&g->lcp, t->mounts[g->members.v[i]].root)) < 0)
				return r;
		for (size_t i = 0; i < g->slaves.n; i++)
			if ((r = lcp_merge(&g->lcp, t->mounts[g->slaves.v[i]].root)) < 0)
				return r;
		if (g->master_gi != IDX_NONE &&
		    (r = lcp_merge(&pl->g[g->master_gi].lcp, g->lcp)) < 0)
			return r;
	}
	/* masters outside the image: a peer of them here, or private on request */
	for (size_t gi = 0; gi < pl->n_g; gi++) {
		struct igroup *g = &pl->g[gi];
		size_t m0 = g->members.v[0], h;

		if (!g->master || g->master_gi != IDX_NONE)
			continue;
		h = host_member(pl, g->master, g->lcp);
		if (h == IDX_NONE && pl->opts && pl->opts->external_master_private) {
			log_warning("Peer group %" PRIu64 " is a slave of group %" PRIu64
				    ", which this namespace does not have: restoring it without a "
				    "master",
				    g->id, g->master);
			g->master = 0;
		} else if (h == IDX_NONE)
			return cfail(
				pl, -ENOENT, m0,
				"Mount %" PRIu64 " at %s is a slave of peer group %" PRIu64
				", which has no member here whose root contains %s "
				"(use --external-master=private to restore it without a master)",
				MNAME(pl, m0), g->master, g->lcp);
		else if ((r = ext_peer_get(pl, h, g->sb, &g->peer)) < 0)
			return r;
		for (size_t i = 0; i < g->members.n; i++) {
			pl->ms[g->members.v[i]].master = g->master;
			pl->ms[g->members.v[i]].peer = g->peer;
		}
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		size_t h;

		if (m->shared || !m->master || pl->ms[mi].mgi != IDX_NONE)
			continue;
		h = host_member(pl, m->master, m->root);
		if (h == IDX_NONE && pl->opts && pl->opts->external_master_private) {
			log_warning("Mount %" PRIu64 " at %s is a slave of peer group %" PRIu64
				    ", which this namespace does not have: restoring it private",
				    MNAME(pl, mi), m->master);
			pl->ms[mi].master = 0;
		} else if (h == IDX_NONE)
			return cfail(pl, -ENOENT, mi,
				     "Mount %" PRIu64 " at %s is a slave of peer group %" PRIu64
				     ", which has no member here whose root contains %s "
				     "(use --external-master=private to restore it private)",
				     MNAME(pl, mi), m->master, m->root);
		else if ((r = ext_peer_get(pl, h, m->sb, &pl->ms[mi].peer)) < 0)
			return r;
	}
	if (pl->n_peers > 0)
		pl->cp->rslave = true;
	/* a temporary peer is a bind of the template, of the master's temporary, or of our peer */
	for (size_t gi = 0; gi < pl->n_g; gi++) {
		struct igroup *g = &pl->g[gi];
		size_t m0 = g->members.v[0], k = pl->src.mount_tmpl[m0];

		if (!g->complex || g->master_gi != IDX_NONE || g->peer != IDX_NONE)
			continue;
		if (!path_startswith(g->lcp, pl->tmpl_root[k]))
			return cfail(pl, -EOPNOTSUPP, m0,
				     "Peer group %" PRIu64
				     " spans roots below %s, outside %s where its filesystem is "
				     "available here",
				     g->id, g->lcp, pl->tmpl_root[k]);
	}
	/* the root mount: pivot_root(2) refuses a shared new root, so it can only be shared at the end */
	if (pl->ms[t->root].gi != IDX_NONE && pl->g[pl->ms[t->root].gi].complex)
		return cfail(pl, -EOPNOTSUPP, t->root,
			     "The root mount %" PRIu64 " is in peer group %" PRIu64
			     " together with other mounts or slaves; pivot_root(2) refuses a "
			     "shared root, and "
			     "mount(2) cannot make it a peer afterwards, so the compat engine "
			     "cannot restore this "
			     "(use the mount-api engine)",
			     t->mounts[t->root].id, t->mounts[t->root].shared);
	for (size_t gi = 0; gi < pl->n_g; gi++)
		if (pl->g[gi].complex && (r = collect_down(pl, gi, &pl->g[gi].down, 0)) < 0)
			return r;
	return 0;
}

/*
 * Classes of copies. A mount C under a member P of a group that needs a
 * temporary peer will, when attached, be copied by the kernel to every
 * other mount that group propagates to and whose root shows the place.
 * The image's mounts at those places, of C's filesystem and root, are
 * taken as those copies: the class. Its originator is the member under a
 * peer (not a slave) that comes last in pre-order, so that most of the
 * others' parents exist when its turn comes; it waits for the rest.
 */
static int collect_classes(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t pi = 0; pi < t->n_mounts; pi++) {
		const struct mntcr_mount *p = &t->mounts[pi];
		size_t gi = pl->ms[pi].gi;

		if (gi == IDX_NONE || !pl->g[gi].complex)
			continue;
		for (size_t k = 0; k < p->n_children; k++) {
			size_t ci = tree_child_idx(t, p, k);
			const struct mntcr_mount *c = &t->mounts[ci];
			_cleanup_free_ char *x = img_dentry(pl, ci);
			char *key;
			struct klass *kl;
			size_t best;

			if (!x)
				return -ENOMEM;
			if (asprintf(&key, "%zu\001%s\001%zu\001%s", gi, x, c->sb, c->root) < 0)
				return -ENOMEM;
			if (strmap_get(&pl->cls_key, key, NULL) || pl->ms[ci].cls != IDX_NONE) {
				free(key);
				continue;
			}
			if ((r = strmap_put(&pl->cls_key, key, 0)) < 0) {
				free(key);
				return r;
			}
			if ((r = keep_string(pl, key)) < 0)
				return r;
			if ((r = GROW(pl->cls, pl->cap_cls, pl->n_cls + 1)) < 0)
				return r;
			kl = &pl->cls[pl->n_cls];
			*kl = (struct klass){ .orig = IDX_NONE };
			if ((r = vec_push(&kl->members, ci)) < 0)
				return r;
			for (size_t i = 0; i < pl->g[gi].down.n; i++) {
				size_t T = pl->g[gi].down.v[i], cc;
				const char *rel;
				_cleanup_free_ char *mp = NULL;

				if (T == pi || !(rel = path_relative(x, t->mounts[T].root)))
					continue;
				mp = path_join(t->mounts[T].abs, rel);
				if (!mp)
					return -ENOMEM;
				cc = img_child(pl, T, mp);
				if (cc == IDX_NONE || pl->ms[cc].cls != IDX_NONE ||
				    t->mounts[cc].sb != c->sb ||
				    !streq(t->mounts[cc].root, c->root))
					continue;
				if ((r = vec_push(&kl->members, cc)) < 0)
					return r;
			}
			/*
			 * A copy goes under a mount that existed before the event: drop
			 * the members below other members (an image mount under C on C's
			 * own place is not a copy of C).
			 */
			for (bool changed = true; changed;) {
				changed = false;
				for (size_t i = 0; i < kl->members.n && !changed; i++)
					for (size_t j = 0; j < kl->members.n; j++)
						if (t->mounts[kl->members.v[i]].parent ==
						    kl->members.v[j]) {
							kl->members.v[i] =
								kl->members.v[--kl->members.n];
							changed = true;
							break;
						}
			}
			if (kl->members.n <= 1) {
				vec_release(&kl->members);
				continue;
			}
			/*
			 * The originator: under a peer; in the peer group most of the class
			 * is in, if any (its copies join its group); last in pre-order.
			 */
			{
				uint64_t home = 0;
				size_t home_n = 1;
				bool best_home;

				for (size_t i = 0; i < kl->members.n; i++) {
					uint64_t sid = t->mounts[kl->members.v[i]].shared;
					size_t cnt = 0;

					for (size_t j = 0; sid && j < kl->members.n; j++)
						cnt += t->mounts[kl->members.v[j]].shared == sid;
					if (cnt > home_n) {
						home = sid;
						home_n = cnt;
					}
				}
				best = IDX_NONE;
				best_home = false;
				for (size_t i = 0; i < kl->members.n; i++) {
					size_t mi = kl->members.v[i], par = t->mounts[mi].parent;
					bool in_home = home && t->mounts[mi].shared == home;

					if (pl->ms[par].gi != gi || (best_home && !in_home))
						continue;
					if (best == IDX_NONE || (in_home && !best_home) ||
					    pl->ms[mi].pos > pl->ms[best].pos) {
						best = mi;
						best_home = in_home;
					}
				}
			}
			if (best == IDX_NONE) {
				vec_release(&kl->members);
				continue;
			}
			kl->orig = best;
			for (size_t i = 0; i < kl->members.n; i++) {
				size_t mi = kl->members.v[i];

				pl->ms[mi].cls = pl->n_cls;
				pl->ms[mi].orig = mi == best ? IDX_NONE : best;
			}
			pl->n_cls++;
		}
	}
	return 0;
}

/*
 * Would moving c into place make the kernel propagate a copy of it into
 * itself? It is a peer (or slave) of its parent and its root shows the
 * place it goes to. A bind is never its own target (the new mount is
 * skipped), a move is: such a coverer is bound in place instead, once what
 * it covers is complete.
 */
static bool move_into_itself(struct cplanner *pl, size_t ci)
{
	const struct mntcr_tree *t = pl->t;
	size_t gi = pl->ms[t->mounts[ci].parent].gi;
	_cleanup_free_ char *x = NULL;

	if (gi == IDX_NONE || !pl->g[gi].complex)
		return false;
	x = img_dentry(pl, ci);
	if (!x || !path_startswith(x, t->mounts[ci].root))
		return !x;
	for (size_t i = 0; i < pl->g[gi].down.n; i++)
		if (pl->g[gi].down.v[i] == ci)
			return true;
	return false;
}

/*
 * Coverers. Among the children of one parent, a child on a prefix of a
 * sibling's mountpoint covers that sibling, and a child on its parent's
 * own root covers its parent and all the others. Each covered child is
 * assigned to the nearest one (the longest prefix): that one is built in
 * a slot of the yard and moved into place once every child it covers is
 * complete, and the next one out waits for it in turn.
 */
static int collect_coverers(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t ci = 0; ci < t->n_mounts; ci++) {
		const struct mntcr_mount *c = &t->mounts[ci];
		const char *pmp;
		_cleanup_free_ char *q = NULL;
		size_t cov = IDX_NONE, plen;

		if (c->parent == IDX_NONE)
			continue;
		pmp = t->mounts[c->parent].abs;
		plen = streq(pmp, "/") ? 0 : strlen(pmp);
		/* a layer of a stack covers the layer below it, even with nothing else beneath */
		if (streq(c->abs, pmp))
			pl->ms[ci].coverer = true;
		q = strdup(c->abs);
		if (!q)
			return -ENOMEM;
		/* proper prefixes of c's mountpoint below the parent's, longest first, then the parent's own */
		for (;;) {
			char *slash = strrchr(q, '/');
			size_t s;

			if (!slash)
				break;
			*slash = 0;
			if (strlen(q) <= plen) {
				s = img_child(pl, c->parent, pmp);
				if (s != IDX_NONE && s != ci)
					cov = s;
				break;
			}
			s = img_child(pl, c->parent, q);
			if (s != IDX_NONE) {
				cov = s;
				break;
			}
		}
		if (cov == IDX_NONE)
			continue;
		pl->ms[cov].coverer = true;
		if ((r = vec_push(&pl->ms[cov].beneath, ci)) < 0)
			return r;
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		struct mstate *s = &pl->ms[mi];

		s->slotted = s->coverer && s->orig == IDX_NONE && !move_into_itself(pl, mi);
		if (s->slotted && asprintf(&s->slot, "r/%zu", mi) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Scheduling: tasks in pre-order, each run as soon as what it waits for is there */

static int add_task(struct cplanner *pl, enum task_type type, size_t mi, size_t *ret)
{
	int r = GROW(pl->tasks, pl->cap_tasks, pl->n_tasks + 1);

	if (r < 0)
		return r;
	pl->tasks[pl->n_tasks] = (struct task){ .type = type, .mount = mi };
	*ret = pl->n_tasks++;
	return 0;
}

static int wait_for(struct cplanner *pl, size_t task, size_t mi, enum wait_kind w)
{
	pl->tasks[task].unmet++;
	return vec_push(&pl->waiters[w][mi], task);
}

static int signal_state(struct cplanner *pl, size_t mi, enum wait_kind w)
{
	struct vec *v = &pl->waiters[w][mi];
	int r = 0;

	for (size_t i = 0; i < v->n && r == 0; i++) {
		struct task *tk = &pl->tasks[v->v[i]];

		if (--tk->unmet == 0 && tk->armed && !tk->done)
			r = vec_push(&pl->ready, v->v[i]);
	}
	vec_release(v);
	return r;
}

/* What the attach (or move) that makes a class's copies waits for. */
static int wait_class(struct cplanner *pl, size_t task, size_t orig)
{
	const struct klass *kl = &pl->cls[pl->ms[orig].cls];
	int r = 0;

	for (size_t i = 0; i < kl->members.n && r == 0; i++) {
		size_t c = kl->members.v[i];

		if (c == orig)
			continue;
		r = wait_for(pl, task, pl->t->mounts[c].parent, W_EXISTS);
		/* a copy that covers something lands in place: what it covers must be there */
		for (size_t j = 0; r == 0 && pl->ms[c].coverer && j < pl->ms[c].beneath.n; j++)
			if (pl->ms[pl->ms[c].beneath.v[j]].orig == IDX_NONE)
				r = wait_for(pl, task, pl->ms[c].beneath.v[j], W_PLACED);
	}
	return r;
}

static bool is_ancestor(const struct mntcr_tree *t, size_t a, size_t mi)
{
	for (size_t k = mi; k != IDX_NONE; k = t->mounts[k].parent)
		if (k == a)
			return true;
	return false;
}

/*
 * Late peers. A mount C attached under a member of a group that needs a
 * temporary is copied by the kernel to every other member and slave of the
 * group that exists then and shows the place. Where the image has no copy
 * under such a mount T, T was made after C in the original: T is bound from
 * the temporary only once C is in place (T's creation waits for it).
 */
static int wait_late_peers(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t pi = 0; pi < t->n_mounts; pi++) {
		const struct mntcr_mount *p = &t->mounts[pi];
		size_t gi = pl->ms[pi].gi;

		if (gi == IDX_NONE || !pl->g[gi].complex)
			continue;
		for (size_t k = 0; k < p->n_children; k++) {
			size_t ci = tree_child_idx(t, p, k);
			const struct mntcr_mount *c = &t->mounts[ci];
			_cleanup_free_ char *x = NULL;

			if (pl->ms[ci].orig != IDX_NONE)
				continue; /* a copy: not attached by itself */
			x = img_dentry(pl, ci);
			if (!x)
				return -ENOMEM;
			for (size_t i = 0; i < pl->g[gi].down.n; i++) {
				size_t T = pl->g[gi].down.v[i], cc;
				const char *rel = path_relative(x, t->mounts[T].root);
				_cleanup_free_ char *mp = NULL;

				if (!rel || T == pi || pl->ms[T].t_attach == IDX_NONE ||
				    is_ancestor(t, T, ci) || is_ancestor(t, ci, T))
					continue;
				mp = path_join(t->mounts[T].abs, rel);
				if (!mp)
					return -ENOMEM;
				cc = img_child(pl, T, mp);
				if (cc != IDX_NONE && t->mounts[cc].sb == c->sb &&
				    streq(t->mounts[cc].root, c->root))
					continue; /* the copy is there: T comes first */
				r = wait_for(pl, pl->ms[T].t_attach, ci, W_PLACED);
				if (r < 0)
					return r;
			}
		}
	}
	return 0;
}

static int build_tasks(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	_cleanup_free_ size_t *stack = malloc((2 * t->n_mounts + 2) * sizeof(size_t));
	size_t n = 0;
	int r;

	if (!stack)
		return -ENOMEM;
	for (int w = 0; w < _W_MAX; w++) {
		pl->waiters[w] = calloc(t->n_mounts + 1, sizeof(struct vec));
		if (!pl->waiters[w])
			return -ENOMEM;
	}
	/* pre-order: attach a mount, then its subtree, then move it into place, then its propagation */
	stack[n++] = t->root << 1;
	while (n > 0) {
		size_t e = stack[--n], mi = e >> 1;
		struct mstate *s = &pl->ms[mi];

		if (!(e & 1)) {
			const struct mntcr_mount *m = &t->mounts[mi];

			if (s->orig == IDX_NONE &&
			    (r = add_task(pl, T_ATTACH, mi, &s->t_attach)) < 0)
				return r;
			stack[n++] = (mi << 1) | 1;
			for (size_t k = m->n_children; k > 0; k--)
				stack[n++] = tree_child_idx(t, m, k - 1) << 1;
			continue;
		}
		if (s->slotted && (r = add_task(pl, T_MOVE, mi, &s->t_move)) < 0)
			return r;
		if ((r = add_task(pl, T_FIXUP, mi, &s->t_fixup)) < 0)
			return r;
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		const struct mstate *s = &pl->ms[mi];
		bool originator = s->cls != IDX_NONE && s->orig == IDX_NONE;

		if (s->t_attach != IDX_NONE && mi != t->root) {
			const struct mstate *ps = &pl->ms[m->parent];

			/*
			 * Under a coverer whose move makes copies, after the move: the
			 * kernel copies the whole tree it moves, and the image's copies
			 * do not show what was mounted on it afterwards.
			 */
			if ((r = wait_for(pl, s->t_attach, m->parent,
					  ps->slotted && ps->cls != IDX_NONE && ps->orig == IDX_NONE
						  ? W_PLACED
						  : W_EXISTS)) < 0)
				return r;
			/* a coverer bound in place waits for what it covers, as a move would */
			for (size_t j = 0; !s->slotted && j < s->beneath.n; j++)
				if (pl->ms[s->beneath.v[j]].orig == IDX_NONE &&
				    (r = wait_for(pl, s->t_attach, s->beneath.v[j], W_PLACED)) < 0)
					return r;
			if (originator && !s->slotted && (r = wait_class(pl, s->t_attach, mi)) < 0)
				return r;
		}
		if (s->t_move != IDX_NONE) {
			if ((r = wait_for(pl, s->t_move, mi, W_EXISTS)) < 0 ||
			    (r = wait_for(pl, s->t_move, m->parent, W_EXISTS)) < 0)
				return r;
			/*
			 * Once the mounts it covers are there: what is below them is
			 * reached from their fds, never through this one's place. Copies
			 * the kernel will make need no path to get there.
			 */
			for (size_t j = 0; j < s->beneath.n; j++)
				if (pl->ms[s->beneath.v[j]].orig == IDX_NONE &&
				    (r = wait_for(pl, s->t_move, s->beneath.v[j], W_PLACED)) < 0)
					return r;
			if (originator && (r = wait_class(pl, s->t_move, mi)) < 0)
				return r;
		}
		/* the propagation of a mount is set once its subtree is there */
		if ((r = wait_for(pl, s->t_fixup, mi, W_IN_PLACE)) < 0)
			return r;
		for (size_t k = 0; k < m->n_children; k++)
			if ((r = wait_for(pl, s->t_fixup, tree_child_idx(t, m, k), W_COMPLETE)) < 0)
				return r;
	}
	return wait_late_peers(pl);
}

/* A mount (and, below it, whatever was waiting for it) is now where it belongs. */
static int set_in_place(struct cplanner *pl, size_t mi)
{
	const struct mntcr_tree *t = pl->t;
	struct vec stack = { 0 };
	int r = vec_push(&stack, mi);

	while (r == 0 && stack.n > 0) {
		size_t x = stack.v[--stack.n];
		struct mstate *s = &pl->ms[x];

		if (!s->placed || s->in_place ||
		    (x != t->root && !pl->ms[t->mounts[x].parent].in_place))
			continue;
		s->in_place = true;
		r = signal_state(pl, x, W_IN_PLACE);
		for (size_t k = 0; r == 0 && k < t->mounts[x].n_children; k++)
			r = vec_push(&stack, tree_child_idx(t, &t->mounts[x], k));
	}
	vec_release(&stack);
	return r;
}

/*
 * A mount of a class of copies is shared with the rest of it the moment the
 * kernel makes them. Where the image has it private, unbindable or a slave,
 * that change comes right away, before anything is mounted on it: in the
 * image nothing mounted on it propagated to the others.
 */
static int early_relax(struct cplanner *pl, size_t mi)
{
	unsigned long ops[2];
	size_t sm = pl->ms[mi].sm;
	int r;

	if (pl->ms[mi].cls == IDX_NONE || pl->t->mounts[mi].shared || !pl->ms[mi].in_place ||
	    mi == pl->t->root || fixup_for(pl, mi, sm, ops) != 1)
		return 0;
	r = emit_prop_on(pl, sm, mi, ops[0], "have its propagation set");
	return r < 0 ? r : apply_prop(pl, sm, ops[0]);
}

/* The image mounts the last attach made by propagation: fds, flags, and who waits for them. */
static int realize_copies(struct cplanner *pl)
{
	struct vec c = pl->copies;
	int r = 0;

	pl->copies = (struct vec){ 0 };
	for (size_t i = 0; i < c.n && r == 0; i++) {
		size_t mi = c.v[i];

		pl->ms[mi].placed = true;
		r = signal_state(pl, mi, W_PLACED);
		if (r == 0)
			r = grab(pl, pl->ms[mi].sm, mi);
		if (r == 0)
			r = emit_flags(pl, pl->ms[mi].sm, mi);
		if (r == 0)
			r = signal_state(pl, mi, W_EXISTS);
		if (r == 0)
			r = set_in_place(pl, mi);
		if (r == 0)
			r = early_relax(pl, mi);
	}
	vec_release(&c);
	return r;
}

/*
 * The temporary peer of group gi, at dentry lcp+rel: a bind of it there
 * joins the group. Copies the kernel propagated into the temporary may
 * stand in the way: then a fresh one is bound from its root (a bind does
 * not take the copies along) and the old one is made private, so that it
 * gets no more.
 */
/* A handle for an fd of a mount of the yard's own, named for the plan's printout. */
static int new_extra_handle(struct cplanner *pl, const char *name, size_t *ret)
{
	struct compat_plan *cp = pl->cp;
	int r = GROW(cp->handle_names, cp->cap_extra, cp->n_extra + 1);

	if (r < 0)
		return r;
	cp->handle_names[cp->n_extra] = strdup(name);
	if (!cp->handle_names[cp->n_extra])
		return -ENOMEM;
	*ret = pl->t->n_mounts + cp->n_extra++;
	cp->n_handles = pl->t->n_mounts + cp->n_extra;
	return 0;
}

/* Bind src (dentry `dentry` of model mount src_sm) as a new temporary of the yard, keep its fd. */
static int bind_temp(struct cplanner *pl, enum plan_phase phase, const struct addr *src,
		     size_t src_sm, const char *dentry, const char *dir, size_t mi, size_t *ret)
{
	_cleanup_free_ char *yd = path_join("/", dir + 2);
	struct addr dst = { .base = BASE_YARD, .handle = IDX_NONE, .path = (char *)dir };
	_cleanup_free_ char *like = NULL;
	struct cop *op;
	size_t n, h;
	int r;

	if (!yd)
		return -ENOMEM;
	/* the temporary is the same kind of node as its source: mkdir like the source's place */
	like = src->base == BASE_YARD ? strdup(src->path) : sm_path(pl, src_sm);
	if (!like)
		return -ENOMEM;
	if (src->base == BASE_MOUNT && *src->path) {
		char *l = yjoin(like, path_relative(dentry, pl->m[src_sm].root));
		free(like);
		like = l;
		if (!like)
			return -ENOMEM;
	}
	if ((r = emit_mkdir(pl, phase, IDX_NONE, dir, NODE_UNKNOWN, BASE_YARD, like)) < 0 ||
	    (r = emit_at(pl, COP_BIND, phase, IDX_NONE, &dst, src, &op)) < 0 ||
	    (r = new_extra_handle(pl, dir, &h)) < 0)
		return r;
	pl->cp->ops[pl->cp->n_ops - 1].grab = h;
	if ((r = sm_bind(pl, src_sm, dentry, IDX_NONE, true, &n)) < 0 ||
	    (r = sm_attach(pl, n, pl->gyard, yd, true, mi)) < 0)
		return r;
	pl->m[n].handle = h;
	*ret = n;
	return 0;
}

/*
 * The temporary peer of group gi, at dentry lcp+rel, reached from its fd:
 * a bind of it there joins the group. Copies the kernel propagated into
 * the temporary may stand in the way: then a fresh one is bound from its
 * root (a bind does not take the copies along) and the old one is made
 * private, so that it gets no more.
 */
static int temp_source(struct cplanner *pl, size_t gi, const char *rel, size_t mi,
		       struct addr *ret_src, size_t *ret_sm)
{
	struct igroup *g = &pl->g[gi];
	_cleanup_free_ char *want = path_join(g->lcp, rel), *name = NULL;
	struct addr root = { .handle = IDX_NONE };
	size_t n;
	int r;

	if (!want)
		return -ENOMEM;
	r = find_addr(pl, g->temp, want, false, ret_src);
	if (r != -ENOENT) {
		*ret_sm = g->temp;
		return r;
	}
	if (asprintf(&name, "g/%zu.%u", gi, ++g->n_temps) < 0)
		return -ENOMEM;
	r = need_addr(pl, g->temp, pl->m[g->temp].root, false, mi,
		      "be bound from the temporary peer of its group", &root);
	if (r == 0)
		r = bind_temp(pl, PHASE_PROPAGATION, &root, g->temp, g->lcp, name, mi, &n);
	if (r == 0)
		r = emit_at(pl, COP_PROPAGATION, PHASE_PROPAGATION, IDX_NONE, &root, NULL, NULL);
	addr_release(&root);
	if (r < 0)
		return r;
	pl->cp->ops[pl->cp->n_ops - 1].ms = MS_PRIVATE;
	r = make_private(pl, g->temp);
	if (r < 0)
		return r;
	g->temp = n;
	free(g->temp_dir);
	g->temp_dir = TAKE_PTR(name);
	*ret_sm = g->temp;
	return need_addr(pl, g->temp, want, false, mi,
			 "be bound from the temporary peer of its group", ret_src);
}

/* What image mount mi is bound from, and whether it must then become a slave. */
static int mount_source(struct cplanner *pl, size_t mi, struct addr *ret_src, size_t *ret_sm,
			bool *ret_slave)
{
	const struct mntcr_mount *m = &pl->t->mounts[mi];
	const struct mstate *s = &pl->ms[mi];
	_cleanup_free_ char *path = NULL;
	size_t sm;
	int r;

	*ret_slave = false;
	if (s->gi != IDX_NONE && pl->g[s->gi].complex)
		/* a member of a group with other members or slaves: a peer of its temporary */
		return temp_source(pl, s->gi, path_relative(m->root, pl->g[s->gi].lcp), mi, ret_src,
				   ret_sm);
	if (s->mgi != IDX_NONE) {
		/* a slave of a group of the image: a peer of its temporary, made a slave */
		*ret_slave = true;
		return temp_source(pl, s->mgi, path_relative(m->root, pl->g[s->mgi].lcp), mi,
				   ret_src, ret_sm);
	}
	if (s->peer != IDX_NONE && s->master) {
		/* a slave of one of our groups: a bind of our peer of it is one */
		const struct ext_peer *p = &pl->peers[s->peer];

		path = yjoin(p->dir, path_relative(m->root, pl->host->mounts[p->host].root));
		sm = p->sm;
	} else {
		size_t k = pl->src.mount_tmpl[mi];

		path = yjoin(pl->tmpl_dir[k], pl->src.mount_rel[mi]);
		sm = pl->tmpl_sm[k];
	}
	if (!path)
		return -ENOMEM;
	r = expect_reach(pl, path, sm, m->root, mi, "be bound from its source");
	if (r < 0)
		return r;
	*ret_sm = sm;
	*ret_src = (struct addr){ .base = BASE_YARD, .handle = IDX_NONE, .path = TAKE_PTR(path) };
	return 0;
}

static int run_attach(struct cplanner *pl, size_t mi)
{
	const struct mntcr_tree *t = pl->t;
	const struct mntcr_mount *m = &t->mounts[mi];
	struct mstate *s = &pl->ms[mi];
	struct addr dst = { .handle = IDX_NONE }, src = { .handle = IDX_NONE };
	_cleanup_free_ char *dd = NULL;
	size_t src_sm, dsm, n, bind_op;
	bool slave;
	int r;

	if (s->sm != IDX_NONE)
		return 0; /* the kernel made it, as a copy */
	r = mount_source(pl, mi, &src, &src_sm, &slave);
	if (r < 0)
		return r;
	if (mi == t->root || s->slotted) {
		/* the root onto @root, a coverer into its slot: places in the yard */
		dst = (struct addr){ .base = BASE_YARD,
				     .handle = IDX_NONE,
				     .path = strdup(mi == t->root ? "root" : s->slot) };
		dd = dst.path ? path_join("/", dst.path) : NULL;
		dsm = pl->yard;
		r = !dd ? -ENOMEM : expect_reach(pl, dst.path, dsm, dd, mi, "be mounted");
	} else {
		dsm = pl->ms[m->parent].sm;
		dd = path_join(pl->m[dsm].root, mount_relpath(t, m));
		r = !dd ? -ENOMEM : need_addr(pl, dsm, dd, true, mi, "be mounted", &dst);
	}
	if (r == 0)
		r = emit_at(pl, COP_BIND, PHASE_ASSEMBLE, mi, &dst, &src, NULL);
	bind_op = pl->cp->n_ops - 1;
	if (r == 0 && mi == t->root)
		r = emit_at(pl, COP_ROOT_FD, PHASE_ASSEMBLE, mi, &dst, NULL, NULL);
	addr_release(&src);
	if (r == 0)
		r = sm_bind(pl, src_sm, m->root, mi, false, &n);
	if (r < 0) {
		addr_release(&dst);
		return r;
	}
	s->sm = n;
	r = sm_attach(pl, n, dsm, dd, true, mi);
	/*
	 * An fd of every mount it binds: later operations reach it even when
	 * it is covered. Taken at the same place right after the bind, unless
	 * that place names the mount below (a layer of a stack, given as its
	 * parent's fd).
	 */
	if (r == 0) {
		struct addr a = { .handle = IDX_NONE };

		r = find_addr(pl, n, pl->m[n].root, false, &a);
		if (r == 0 && a.base == dst.base && a.handle == dst.handle &&
		    streq(a.path, dst.path)) {
			pl->cp->ops[bind_op].grab = mi;
			pl->m[n].handle = mi;
		} else if (r == 0 || r == -ENOENT)
			r = grab(pl, n, mi);
		addr_release(&a);
	}
	addr_release(&dst);
	if (r == 0)
		r = emit_flags(pl, n, mi);
	if (r == 0 && slave) {
		r = emit_prop_on(pl, n, mi, MS_SLAVE, "become a slave");
		if (r == 0)
			r = make_slave(pl, n);
	}
	if (r < 0)
		return r;
	s->placed = !s->slotted || mi == t->root;
	r = signal_state(pl, mi, W_EXISTS);
	if (r == 0 && s->placed)
		r = signal_state(pl, mi, W_PLACED);
	if (r == 0 && s->placed)
		r = set_in_place(pl, mi);
	if (r == 0 && s->placed)
		r = early_relax(pl, mi);
	if (r == 0)
		r = realize_copies(pl);
	return r;
}

static int run_move(struct cplanner *pl, size_t mi)
{
	const struct mntcr_tree *t = pl->t;
	const struct mntcr_mount *m = &t->mounts[mi];
	struct mstate *s = &pl->ms[mi];
	struct addr dst = { .handle = IDX_NONE }, src = { .handle = IDX_NONE };
	_cleanup_free_ char *dd = NULL;
	size_t dsm;
	int r;

	if (s->placed)
		return 0;
	dsm = pl->ms[m->parent].sm;
	dd = path_join(pl->m[dsm].root, mount_relpath(t, m));
	if (!dd)
		return -ENOMEM;
	/* from its fd: the next layer of its stack may already sit on it in the slot */
	r = need_addr(pl, s->sm, pl->m[s->sm].root, false, mi, "be moved out of its slot", &src);
	if (r == 0)
		r = need_addr(pl, dsm, dd, true, mi, "be moved into place", &dst);
	if (r == 0)
		r = emit_at(pl, COP_MOVE, PHASE_ASSEMBLE, mi, &dst, &src, NULL);
	addr_release(&dst);
	addr_release(&src);
	if (r < 0)
		return r;
	if ((r = sm_unlink(pl, s->sm)) < 0 || (r = sm_attach(pl, s->sm, dsm, dd, false, mi)) < 0)
		return r;
	s->placed = true;
	r = signal_state(pl, mi, W_PLACED);
	if (r == 0)
		r = set_in_place(pl, mi);
	if (r == 0)
		r = early_relax(pl, mi);
	if (r == 0)
		r = realize_copies(pl);
	return r;
}

/*
 * The propagation changes that take model mount sm towards image mount
 * mi's: none, one, or two (a mount alone in its peer group in the image,
 * which is a copy in the model and so in its originator's group, leaves it
 * and becomes shared anew). Returns how many.
 */
static size_t fixup_for(struct cplanner *pl, size_t mi, size_t sm, unsigned long ops[static 2])
{
	const struct mntcr_mount *m = &pl->t->mounts[mi];
	const struct smount *x = &pl->m[sm];
	size_t gi = pl->ms[mi].gi;

	if (m->unbindable)
		return x->unbindable ? 0 : (ops[0] = MS_UNBINDABLE, 1);
	if (m->shared && !x->group)
		return ops[0] = MS_SHARED, 1;
	if (!m->shared && x->group)
		return ops[0] = pl->ms[mi].master ? MS_SLAVE : MS_PRIVATE, 1;
	if (!m->shared && !pl->ms[mi].master && x->master)
		return ops[0] = MS_PRIVATE, 1;
	if (m->shared && x->group && gi != IDX_NONE && !pl->g[gi].complex) {
		const struct sgroup *g = sg_get(pl, x->group);
		size_t mgi = pl->ms[mi].mgi;
		bool others = false;

		for (size_t i = 0; g && i < g->members.n; i++)
			others |= g->members.v[i] != sm && !pl->m[g->members.v[i]].yard;
		if (!others)
			return 0;
		/* alone in a group of its own: leave the copies' group, then share anew */
		if (!pl->ms[mi].master) {
			ops[0] = MS_PRIVATE;
			ops[1] = MS_SHARED;
			return 2;
		}
		/* ... as a slave of it, when the copies' group is its master in the image */
		if (mgi != IDX_NONE && pl->g[mgi].temp != IDX_NONE &&
		    pl->m[pl->g[mgi].temp].group == x->group) {
			ops[0] = MS_SLAVE;
			ops[1] = MS_SHARED;
			return 2;
		}
	}
	return 0;
}

static int apply_prop(struct cplanner *pl, size_t sm, unsigned long ms)
{
	switch (ms & ~(unsigned long)MS_REC) {
	case MS_SHARED:
		return make_shared(pl, sm);
	case MS_SLAVE:
		return make_slave(pl, sm);
	case MS_UNBINDABLE:
		return make_unbindable(pl, sm);
	default:
		return make_private(pl, sm);
	}
}

static int run_fixup(struct cplanner *pl, size_t mi)
{
	struct mstate *s = &pl->ms[mi];
	unsigned long ops[2];
	size_t n = fixup_for(pl, mi, s->sm, ops);
	int r;

	/* the root's waits for the pivot: pivot_root(2) refuses a shared new root */
	for (size_t k = 0; n > 0 && mi != pl->t->root && k < n; k++) {
		r = emit_prop_on(pl, s->sm, mi, ops[k], "have its propagation set");
		if (r == 0)
			r = apply_prop(pl, s->sm, ops[k]);
		if (r < 0)
			return r;
	}
	s->complete = true;
	return signal_state(pl, mi, W_COMPLETE);
}

static int run_task(struct cplanner *pl, size_t ti)
{
	struct task *tk = &pl->tasks[ti];
	int r;

	assert(!tk->done && tk->unmet == 0);
	tk->done = true;
	switch (tk->type) {
	case T_ATTACH:
		r = run_attach(pl, tk->mount);
		break;
	case T_MOVE:
		r = run_move(pl, tk->mount);
		break;
	default:
		r = run_fixup(pl, tk->mount);
		break;
	}
	return r;
}

static int run_tasks(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	int r;

	for (size_t cur = 0; cur < pl->n_tasks; cur++) {
		pl->tasks[cur].armed = true;
		if (pl->tasks[cur].unmet == 0 && (r = run_task(pl, cur)) < 0)
			return r;
		while (pl->ready_head < pl->ready.n)
			if ((r = run_task(pl, pl->ready.v[pl->ready_head++])) < 0)
				return r;
	}
	for (size_t ti = 0; ti < pl->n_tasks; ti++) {
		const struct task *tk = &pl->tasks[ti];
		size_t mi = tk->mount, o = pl->ms[mi].orig;

		if (tk->done)
			continue;
		if (o != IDX_NONE && pl->ms[mi].sm == IDX_NONE)
			return cfail(
				pl, -EOPNOTSUPP, mi,
				"The compat engine cannot restore mount %" PRIu64
				" at %s: it must come from "
				"propagation when mount %" PRIu64
				" at %s is attached, and no order of mount(2) "
				"calls makes the kernel put it there (use the mount-api engine)",
				MNAME(pl, mi), MNAME(pl, o));
		return cfail(pl, -EOPNOTSUPP, mi,
			     "The compat engine cannot restore mount %" PRIu64
			     " at %s: no order of mount(2) calls "
			     "creates it after what its propagation and the mounts it covers need "
			     "and before what "
			     "covers it (use the mount-api engine)",
			     MNAME(pl, mi));
	}
	(void)t;
	return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Prologue: the yard, templates, directories, temporary peers */

static bool needed_below(struct cplanner *pl, const char *dir)
{
	for (size_t k = 0; k < pl->src.n_tmpl; k++)
		if (pl->src.tmpl[k].path && path_startswith(pl->src.tmpl[k].path, dir))
			return true;
	for (size_t k = 0; k < pl->n_peers; k++)
		if (path_startswith(pl->host->mounts[pl->peers[k].host].abs, dir))
			return true;
	return false;
}

static int plan_yard(struct cplanner *pl)
{
	struct compat_plan *cp = pl->cp;
	size_t tmp;
	int r;

	cp->yard_dirs = calloc(ARRAY_SIZE(yard_candidates), sizeof(char *));
	if (!cp->yard_dirs)
		return -ENOMEM;
	for (size_t k = 0; k < ARRAY_SIZE(yard_candidates); k++)
		if (!needed_below(pl, yard_candidates[k]))
			cp->yard_dirs[cp->n_yard_dirs++] = yard_candidates[k];
	if (cp->n_yard_dirs == 0)
		return cfail(pl, -EOPNOTSUPP, IDX_NONE,
			     "The compat engine finds no directory for its roots yard: every "
			     "candidate holds a "
			     "path the restore takes mounts from");
	if ((r = emit(pl, COP_UNSHARE, PHASE_NAMESPACE, IDX_NONE, BASE_HOST, "/", BASE_HOST, NULL,
		      NULL)) < 0 ||
	    (r = emit(pl, COP_YARD, PHASE_NAMESPACE, IDX_NONE, BASE_HOST, "", BASE_HOST, NULL,
		      NULL)) < 0)
		return r;
	r = sm_new(pl, IDX_NONE, IDX_NONE, "/", MOUNT_ATTR_RELATIME, true, &pl->yard);
	if (r < 0)
		return r;
	if ((r = emit_mkdir(pl, PHASE_NAMESPACE, IDX_NONE, "t", NODE_DIR, BASE_YARD, NULL)) < 0 ||
	    (r = emit_mkdir(pl, PHASE_NAMESPACE, IDX_NONE, "root", NODE_DIR, BASE_YARD, NULL)) < 0)
		return r;
	for (size_t mi = 0; mi < pl->t->n_mounts; mi++)
		if (pl->ms[mi].slot) {
			if ((r = emit_mkdir(pl, PHASE_NAMESPACE, IDX_NONE, "r", NODE_DIR, BASE_YARD,
					    NULL)) < 0)
				return r;
			break;
		}
	if (pl->n_peers > 0 &&
	    (r = emit_mkdir(pl, PHASE_NAMESPACE, IDX_NONE, "e", NODE_DIR, BASE_YARD, NULL)) < 0)
		return r;
	for (size_t gi = 0; gi < pl->n_g; gi++)
		if (pl->g[gi].complex) {
			/* a tmpfs of its own, so that it can be made private as a whole before it is dropped */
			if ((r = emit_mkdir(pl, PHASE_NAMESPACE, IDX_NONE, "g", NODE_DIR, BASE_YARD,
					    NULL)) < 0 ||
			    (r = emit(pl, COP_TMPFS, PHASE_NAMESPACE, IDX_NONE, BASE_YARD, "g",
				      BASE_YARD, NULL, NULL)) < 0 ||
			    (r = sm_new(pl, IDX_NONE, IDX_NONE, "/", MOUNT_ATTR_RELATIME, true,
					&pl->gyard)) < 0 ||
			    (r = sm_link(pl, pl->gyard, pl->yard, "/g")) < 0)
				return r;
			break;
		}
	/* our peers of masters outside the image, taken while / is still a slave of ours */
	for (size_t k = 0; k < pl->n_peers; k++) {
		struct ext_peer *p = &pl->peers[k];
		const struct mntcr_mount *h = &pl->host->mounts[p->host];
		_cleanup_free_ char *dentry = path_join("/", p->dir);

		if (!dentry)
			return -ENOMEM;
		if ((r = emit_mkdir(pl, PHASE_CREATE, IDX_NONE, p->dir, NODE_UNKNOWN, BASE_HOST,
				    h->abs)) < 0 ||
		    (r = emit(pl, COP_BIND, PHASE_CREATE, IDX_NONE, BASE_YARD, p->dir, BASE_HOST,
			      h->abs, NULL)) < 0 ||
		    (r = sm_new(pl, IDX_NONE, p->sb, h->root, h->attr, true, &tmp)) < 0 ||
		    (r = set_master(pl, tmp, EXT_GROUP | h->shared)) < 0 ||
		    (r = sm_link(pl, tmp, pl->yard, dentry)) < 0)
			return r;
		pl->peers[k].sm = tmp;
	}
	return 0;
}

static int plan_templates(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	const struct mount_sources *s = &pl->src;
	int r;

	for (size_t k = 0; k < s->n_tmpl; k++) {
		const struct source_tmpl *tm = &s->tmpl[k];
		_cleanup_free_ char *dentry = NULL;
		uint64_t attr = MOUNT_ATTR_RELATIME;
		struct cop *op;

		if (asprintf(&pl->tmpl_dir[k], "t/%zu", k) < 0)
			return -ENOMEM;
		dentry = path_join("/", pl->tmpl_dir[k]);
		if (!dentry)
			return -ENOMEM;
		if (!tm->path) {
			if ((r = emit_mkdir(pl, PHASE_CREATE, IDX_NONE, pl->tmpl_dir[k], NODE_DIR,
					    BASE_YARD, NULL)) < 0 ||
			    (r = emit(pl, COP_SB_MOUNT, PHASE_CREATE, IDX_NONE, BASE_YARD,
				      pl->tmpl_dir[k], BASE_YARD, NULL, &op)) < 0)
				return r;
			op->sb = tm->sb;
			/* the image's files go in first: before any directory, mount or ro */
			if (t->sbs[tm->sb].n_content_roots && !(pl->opts && pl->opts->no_content)) {
				r = emit(pl, COP_CONTENT, PHASE_CREATE, IDX_NONE, BASE_YARD, pl->tmpl_dir[k],
					 BASE_YARD, NULL, &op);
				if (r < 0)
					return r;
				op->sb = tm->sb;
			}
		} else {
			/* the flags of our mount it is a bind of, when the resolver knows it */
			for (size_t mi = 0; mi < t->n_mounts; mi++)
				if (s->mount_tmpl[mi] == k) {
					attr = s->mount_attr[mi];
					break;
				}
			if ((r = emit_mkdir(pl, PHASE_CREATE, IDX_NONE, pl->tmpl_dir[k],
					    NODE_UNKNOWN, BASE_HOST, tm->path)) < 0 ||
			    (r = emit(pl, COP_BIND, PHASE_CREATE, IDX_NONE, BASE_YARD,
				      pl->tmpl_dir[k], BASE_HOST, tm->path, NULL)) < 0)
				return r;
			/* after MS_REC|MS_SLAVE our mounts are slaves: the template must not be */
			if (pl->cp->rslave && (r = emit_prop(pl, PHASE_CREATE, IDX_NONE, BASE_YARD,
							     pl->tmpl_dir[k], MS_PRIVATE)) < 0)
				return r;
		}
		if ((r = sm_new(pl, IDX_NONE, tm->sb, pl->tmpl_root[k] ? pl->tmpl_root[k] : "/",
				attr, true, &pl->tmpl_sm[k])) < 0 ||
		    (r = sm_link(pl, pl->tmpl_sm[k], pl->yard, dentry)) < 0)
			return r;
	}
	return 0;
}

static bool sb_is_ro(const struct mntcr_sb *sb)
{
	return sb->opts && strncmp(sb->opts, "ro", 2) == 0 &&
	       (sb->opts[2] == 0 || sb->opts[2] == ',');
}

/* Roots and mountpoints inside owned templates, slots; then superblocks read-only. */
static int plan_directories(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	const struct mount_sources *s = &pl->src;
	int r;

	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		_cleanup_free_ char *path = NULL;

		if (!t->sbs[m->sb].owned || !*s->mount_rel[mi])
			continue;
		path = yjoin(pl->tmpl_dir[s->mount_tmpl[mi]], s->mount_rel[mi]);
		if (!path)
			return -ENOMEM;
		r = emit_mkdir(pl, PHASE_CREATE, mi, path,
			       m->type == NODE_FILE ? NODE_FILE : NODE_DIR, BASE_YARD, NULL);
		if (r < 0)
			return r;
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi], *p;
		_cleanup_free_ char *in = NULL, *path = NULL, *like = NULL;
		const char *rel;

		if (m->parent == IDX_NONE)
			continue;
		p = &t->mounts[m->parent];
		rel = mount_relpath(t, m);
		if (!t->sbs[p->sb].owned || !*rel)
			continue;
		in = path_join(p->root, rel);
		like = yjoin(pl->tmpl_dir[s->mount_tmpl[mi]], s->mount_rel[mi]);
		if (!in || !like)
			return -ENOMEM;
		path = yjoin(pl->tmpl_dir[s->sb_tmpl[p->sb]], in + 1);
		if (!path)
			return -ENOMEM;
		r = emit_mkdir(pl, PHASE_CREATE, mi, path, m->type, BASE_YARD, like);
		if (r < 0)
			return r;
	}
	for (size_t mi = 0; mi < t->n_mounts; mi++) {
		_cleanup_free_ char *like = NULL;

		if (!pl->ms[mi].slot || pl->ms[mi].orig != IDX_NONE)
			continue;
		like = yjoin(pl->tmpl_dir[s->mount_tmpl[mi]], s->mount_rel[mi]);
		if (!like)
			return -ENOMEM;
		r = emit_mkdir(pl, PHASE_CREATE, mi, pl->ms[mi].slot, t->mounts[mi].type, BASE_YARD,
			       like);
		if (r < 0)
			return r;
	}
	for (size_t k = 0; k < s->n_tmpl; k++) {
		const struct source_tmpl *tm = &s->tmpl[k];

		if (tm->path || !sb_is_ro(&t->sbs[tm->sb]))
			continue;
		r = emit(pl, COP_SB_RDONLY, PHASE_FLAGS, IDX_NONE, BASE_YARD, pl->tmpl_dir[k],
			 BASE_YARD, NULL, NULL);
		if (r < 0)
			return r;
		/* a remount without MS_BIND sets the mount's own flags too: ro, the atime mode kept */
		pl->m[pl->tmpl_sm[k]].attr = MOUNT_ATTR_RDONLY | MOUNT_ATTR_RELATIME;
	}
	return 0;
}

/* One temporary peer per group that needs one, masters first: a bind, made a slave, made shared. */
static int plan_temps(struct cplanner *pl)
{
	for (size_t k = 0; k < pl->n_order; k++) {
		size_t gi = pl->order[k], src_sm, n, m0;
		struct igroup *g = &pl->g[gi];
		struct addr src = { .handle = IDX_NONE }, self = { .handle = IDX_NONE };
		_cleanup_free_ char *dir = NULL;
		int r;

		if (!g->complex)
			continue;
		m0 = g->members.v[0];
		if (asprintf(&dir, "g/%zu", gi) < 0)
			return -ENOMEM;
		if (g->master_gi != IDX_NONE)
			r = temp_source(pl, g->master_gi,
					path_relative(g->lcp, pl->g[g->master_gi].lcp), m0, &src,
					&src_sm);
		else {
			if (g->peer != IDX_NONE) {
				const struct ext_peer *p = &pl->peers[g->peer];

				src.path = yjoin(
					p->dir,
					path_relative(g->lcp, pl->host->mounts[p->host].root));
				src_sm = p->sm;
			} else {
				size_t tk = pl->src.mount_tmpl[m0];

				src.path = yjoin(pl->tmpl_dir[tk],
						 path_relative(g->lcp, pl->tmpl_root[tk]));
				src_sm = pl->tmpl_sm[tk];
			}
			src.base = BASE_YARD;
			r = !src.path ? -ENOMEM
				      : expect_reach(pl, src.path, src_sm, g->lcp, m0,
						     "be bound from its source");
		}
		if (r == 0)
			r = bind_temp(pl, PHASE_CREATE, &src, src_sm, g->lcp, dir, m0, &n);
		addr_release(&src);
		if (r < 0)
			return r;
		self = (struct addr){ .base = BASE_MOUNT,
				      .handle = pl->m[n].handle,
				      .path = (char *)"" };
		if (g->master_gi != IDX_NONE) {
			r = emit_at(pl, COP_PROPAGATION, PHASE_CREATE, IDX_NONE, &self, NULL, NULL);
			if (r == 0) {
				pl->cp->ops[pl->cp->n_ops - 1].ms = MS_SLAVE;
				r = make_slave(pl, n);
			}
			if (r < 0)
				return r;
		}
		r = emit_at(pl, COP_PROPAGATION, PHASE_CREATE, IDX_NONE, &self, NULL, NULL);
		if (r == 0) {
			pl->cp->ops[pl->cp->n_ops - 1].ms = MS_SHARED;
			r = make_shared(pl, n);
		}
		if (r < 0)
			return r;
		g->temp = n;
		g->temp_dir = TAKE_PTR(dir);
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The end: drop the yard, pivot, and check that the model is the image */

static int describe(char *buf, size_t size, uint64_t shared, uint64_t master, bool unbindable)
{
	if (unbindable)
		return snprintf(buf, size, "unbindable");
	if (!shared && !master)
		return snprintf(buf, size, "private");
	return snprintf(buf, size, "%s%s%s", shared ? "shared" : "",
			shared && master ? " and " : "", master ? "a slave" : "");
}

static int verify(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	struct u64map i2s = { 0 }, s2i = { 0 };
	int r = 0;

	for (size_t mi = 0; mi < t->n_mounts && r == 0; mi++) {
		const struct mntcr_mount *m = &t->mounts[mi];
		const struct smount *x = &pl->m[pl->ms[mi].sm];
		uint64_t want_master = pl->ms[mi].master, got, sm_master = x->master;
		char a[64], b[64];
		bool ok = (!m->shared == !x->group) && (!want_master == !sm_master) &&
			  m->unbindable == x->unbindable;

		if (ok && m->shared) {
			if (u64map_get(&i2s, m->shared, &got))
				ok = got == x->group;
			else if (u64map_get(&s2i, x->group, &got))
				ok = got == m->shared;
			else if ((r = u64map_put(&i2s, m->shared, x->group)) < 0 ||
				 (r = u64map_put(&s2i, x->group, m->shared)) < 0)
				break;
		}
		if (!ok) {
			describe(a, sizeof(a), x->group, sm_master, x->unbindable);
			describe(b, sizeof(b), m->shared, want_master, m->unbindable);
			r = cfail(
				pl, -EOPNOTSUPP, mi,
				"The compat engine cannot restore the propagation of mount %" PRIu64
				" at %s with mount(2): it would end up %s%s, the image has it %s "
				"(use the mount-api engine)",
				MNAME(pl, mi), a,
				x->group && m->shared ? " in another peer group" : "", b);
		}
		if (r == 0 && x->attr != UINT64_MAX && attr_want(x->attr) != attr_want(m->attr))
			r = cfail(pl, -EOPNOTSUPP, mi,
				  "Internal error: the flags of mount %" PRIu64 " at %s",
				  MNAME(pl, mi));
	}
	for (size_t mi = 0; mi < t->n_mounts && r == 0; mi++) {
		const struct smount *x = &pl->m[pl->ms[mi].sm];
		uint64_t im = pl->ms[mi].master, got;

		if (!im)
			continue;
		if (u64map_get(&i2s, im, &got) ? got == x->master : x->master == (EXT_GROUP | im))
			continue;
		r = cfail(
			pl, -EOPNOTSUPP, mi,
			"The compat engine cannot restore the propagation of mount %" PRIu64
			" at %s with mount(2): it would end up a slave of another peer group than "
			"in the image (use the mount-api engine)",
			MNAME(pl, mi));
	}
	u64map_release(&i2s);
	u64map_release(&s2i);
	return r;
}

static int plan_finish(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;
	size_t rsm = pl->ms[t->root].sm, top = rsm, ch, n;
	unsigned long ops[2];
	int r;

	/*
	 * The temporaries hold copies the kernel propagated into them; they are
	 * peers of the image's mounts, and unmounting them would take those
	 * along (umount propagates to the same place under every peer), so
	 * they are made private before the yard goes.
	 */
	if (pl->gyard != IDX_NONE) {
		struct vec tree = { 0 };

		r = emit_prop(pl, PHASE_ROOT, IDX_NONE, BASE_YARD, "g", MS_REC | MS_PRIVATE);
		if (r == 0)
			r = sm_tree(pl, pl->gyard, &tree);
		for (size_t k = 0; r == 0 && k < tree.n; k++)
			r = make_private(pl, tree.v[k]);
		vec_release(&tree);
		if (r < 0)
			return r;
	}
	/* pivot_root(".", ".") puts the old root on the top of the root's stack: not a shared one */
	while ((ch = child_at(pl, top, pl->m[top].root)) != IDX_NONE)
		top = ch;
	if (pl->m[top].group)
		return cfail(
			pl, -EOPNOTSUPP, pl->m[top].img,
			"The compat engine cannot restore mount %" PRIu64
			" at %s: it is shared and on top of the "
			"root mount, and pivot_root(2) refuses that (use the mount-api engine)",
			MNAME(pl, pl->m[top].img));
	r = emit(pl, COP_PIVOT, PHASE_ROOT, t->root, BASE_YARD, "root", BASE_YARD, NULL, NULL);
	if (r < 0)
		return r;
	for (size_t k = 0; k < pl->n_m; k++)
		if (pl->m[k].yard && (r = make_private(pl, k)) < 0)
			return r;
	n = fixup_for(pl, t->root, rsm, ops);
	for (size_t k = 0; k < n; k++) {
		r = emit_prop(pl, PHASE_PROPAGATION, t->root, BASE_ROOT, "/", ops[k]);
		if (r == 0)
			r = apply_prop(pl, rsm, ops[k]);
		if (r < 0)
			return r;
	}
	return verify(pl);
}

/* ---------------------------------------------------------------------------------------------- */

static void planner_release(struct cplanner *pl)
{
	const struct mntcr_tree *t = pl->t;

	if (pl->ms)
		for (size_t mi = 0; mi < t->n_mounts; mi++) {
			free(pl->ms[mi].slot);
			vec_release(&pl->ms[mi].beneath);
		}
	free(pl->ms);
	for (size_t i = 0; i < pl->n_strings; i++)
		free(pl->strings[i]);
	free(pl->strings);
	strmap_release(&pl->img_at);
	strmap_release(&pl->cls_key);
	strmap_release(&pl->made);
	strmap_release(&pl->at);
	if (pl->g)
		for (size_t gi = 0; gi < pl->n_g; gi++) {
			struct igroup *g = &pl->g[gi];

			vec_release(&g->members);
			vec_release(&g->slaves);
			vec_release(&g->slave_groups);
			vec_release(&g->down);
			free(g->lcp);
			free(g->temp_dir);
		}
	free(pl->g);
	free(pl->order);
	u64map_release(&pl->gidx);
	for (size_t k = 0; k < pl->n_peers; k++)
		free(pl->peers[k].dir);
	free(pl->peers);
	for (size_t k = 0; k < pl->n_cls; k++)
		vec_release(&pl->cls[k].members);
	free(pl->cls);
	for (size_t k = 0; k < pl->src.n_tmpl; k++) {
		if (pl->tmpl_dir)
			free(pl->tmpl_dir[k]);
		if (pl->tmpl_root)
			free(pl->tmpl_root[k]);
	}
	free(pl->tmpl_dir);
	free(pl->tmpl_root);
	free(pl->tmpl_sm);
	mount_sources_release(&pl->src, t->n_mounts);
	for (size_t k = 0; k < pl->n_m; k++) {
		free(pl->m[k].root);
		free(pl->m[k].mp);
		vec_release(&pl->m[k].kids);
	}
	free(pl->m);
	for (size_t k = 0; k < pl->n_sg; k++) {
		vec_release(&pl->sg[k].members);
		vec_release(&pl->sg[k].slaves);
	}
	free(pl->sg);
	u64map_release(&pl->sgidx);
	vec_release(&pl->copies);
	free(pl->tasks);
	for (int w = 0; w < _W_MAX; w++) {
		if (pl->waiters[w])
			for (size_t mi = 0; mi < t->n_mounts; mi++)
				vec_release(&pl->waiters[w][mi]);
		free(pl->waiters[w]);
	}
	vec_release(&pl->ready);
}

int compat_plan_build(struct mntcr_plan *p, const struct mntcr_tree *host,
		      const struct mntcr_restore_opts *opts, struct mntcr_report *report)
{
	const struct mntcr_tree *t = p->tree;
	struct cplanner pl = { .t = t,
			       .host = host,
			       .opts = opts,
			       .report = report,
			       .yard = IDX_NONE,
			       .gyard = IDX_NONE };
	int r;

	pl.cp = calloc(1, sizeof(*pl.cp));
	pl.ms = calloc(t->n_mounts + 1, sizeof(*pl.ms));
	/* this engine works with absolute paths throughout: m->abs */
	if (!pl.cp || !pl.ms || tree_abs_paths(t) < 0 || (host && tree_abs_paths(host) < 0)) {
		r = -ENOMEM;
		goto out;
	}
	pl.cp->n_handles = t->n_mounts;
	r = plan_validate(t, report);
	if (r < 0)
		goto out;
	r = index_image(&pl);
	if (r < 0)
		goto out;
	r = mount_sources_resolve(t, host, opts, report, &pl.src);
	if (r < 0)
		goto out;
	pl.tmpl_sm = calloc(pl.src.n_tmpl + 1, sizeof(size_t));
	pl.tmpl_dir = calloc(pl.src.n_tmpl + 1, sizeof(char *));
	pl.tmpl_root = calloc(pl.src.n_tmpl + 1, sizeof(char *));
	if (!pl.tmpl_sm || !pl.tmpl_dir || !pl.tmpl_root) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = template_roots(&pl)) < 0 || (r = collect_groups(&pl)) < 0 ||
	    (r = collect_classes(&pl)) < 0 || (r = collect_coverers(&pl)) < 0 ||
	    (r = plan_yard(&pl)) < 0 || (r = plan_templates(&pl)) < 0 ||
	    (r = plan_directories(&pl)) < 0 || (r = plan_temps(&pl)) < 0 ||
	    (r = build_tasks(&pl)) < 0 || (r = run_tasks(&pl)) < 0 || (r = plan_finish(&pl)) < 0)
		goto out;
	p->compat = TAKE_PTR(pl.cp);
out:
	if (r == -ENOMEM && report && !report->msg)
		report_set(report, "plan", MNTCR_NONE, 0, NULL, NULL, r,
			   "Out of memory while planning");
	else if (r < 0 && report && !report->msg)
		report_set(report, "plan", MNTCR_NONE, 0, NULL, NULL, r,
			   "The compat engine cannot plan this restore: %s", strerror(-r));
	planner_release(&pl);
	compat_plan_free(pl.cp);
	return r;
}

/* ---------------------------------------------------------------------------------------------- */
/* The executor */

/*
 * It runs in the restore child process (restore.c), which has nothing to
 * lose: every failure is reported with the phase, the mount, the syscall
 * and errno, and the child exits, taking its namespace along. Paths are
 * walked one component at a time with openat(O_NOFOLLOW), never through a
 * symlink, and mount(2) is given /proc/self/fd/N of the result.
 */


struct cexec {
	const struct mntcr_plan *p;
	const struct compat_plan *cp;
	int yard_fd;	     /* the yard's root */
	int root_fd;	     /* the image's root mount, for the pivot */
	int *fds;	     /* per image mount: an O_PATH fd of it, once it exists */
	struct mntcr_image *img; /* the image stream COP_CONTENT reads */
	size_t content_left;     /* COP_CONTENT ops still to run: the last one checks the trailer */
	const char *syscall; /* the call that failed */
	char detail[300];    /* what it failed on, when that is not the op's own path */
};

static int sys_fail(struct cexec *c, const char *name)
{
	int r = -errno;

	c->syscall = name;
	return r ? r : -EIO;
}

static void magic(int fd, char buf[static 64]) { snprintf(buf, 64, "/proc/self/fd/%d", fd); }

/*
 * Open path below dfd one component at a time, never following a symlink;
 * with `create`, every component is a directory, made if missing.
 * Otherwise the last one may be a file.
 */
static int walk(struct cexec *c, int dfd, const char *path, bool create, int *ret_fd)
{
	int cur = openat(dfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat st;

	if (cur < 0)
		return sys_fail(c, "openat");
	for (const char *p = path; *p;) {
		const char *e = strchrnul(p, '/');
		_cleanup_free_ char *comp = strndup(p, (size_t)(e - p));
		bool last = !*e;
		int fd;

		p = *e ? e + 1 : e;
		if (!comp) {
			close(cur);
			return -ENOMEM;
		}
		fd = openat(cur, comp,
			    O_PATH | O_NOFOLLOW | O_CLOEXEC | (last && !create ? 0 : O_DIRECTORY));
		if (fd < 0 && errno == ENOENT && create) {
			if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
				int r = sys_fail(c, "mkdirat");
				close(cur);
				return r;
			}
			fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
		}
		if (fd < 0) {
			int r = sys_fail(c, "openat");
			close(cur);
			return r;
		}
		close(cur);
		cur = fd;
	}
	if (fstat(cur, &st) < 0) {
		int r = sys_fail(c, "fstat");
		close(cur);
		return r;
	}
	if (S_ISLNK(st.st_mode)) {
		close(cur);
		c->syscall = "openat";
		return -ELOOP;
	}
	*ret_fd = cur;
	return 0;
}

/* An fd of a place of the plan: in the yard, below a mount we keep an fd of, or in the new root. */
static int open_path(struct cexec *c, enum cop_base base, size_t handle, const char *path,
		     int *ret_fd)
{
	_cleanup_close_ int rootfd = -EBADF;
	int fd;

	if (base == BASE_YARD)
		return walk(c, c->yard_fd, path, false, ret_fd);
	if (base == BASE_MOUNT) {
		if (c->fds[handle] < 0) {
			c->syscall = "openat";
			return -EBADF;
		}
		if (*path)
			return walk(c, c->fds[handle], path, false, ret_fd);
		/* the mount itself, exactly: what is mounted on its root is not followed */
		fd = fcntl(c->fds[handle], F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return sys_fail(c, "fcntl F_DUPFD_CLOEXEC");
		*ret_fd = fd;
		return 0;
	}
	rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return sys_fail(c, "open /");
	return walk(c, rootfd, path + strspn(path, "/"), false, ret_fd);
}

static int is_dir_like(struct cexec *c, enum cop_base base, const char *path, bool *ret)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int r;

	if (base == BASE_HOST) {
		if (stat(path, &st) < 0)
			return sys_fail(c, "stat");
	} else {
		r = open_path(c, base, IDX_NONE, path, &fd);
		if (r < 0)
			return r;
		if (fstat(fd, &st) < 0)
			return sys_fail(c, "fstat");
	}
	*ret = S_ISDIR(st.st_mode);
	return 0;
}

static int do_mkdir(struct cexec *c, const struct cop *op)
{
	_cleanup_free_ char *parent = NULL;
	_cleanup_close_ int dfd = -EBADF;
	const char *base = strrchr(op->path, '/');
	bool dir = op->node != NODE_FILE;
	struct stat st;
	int r;

	if (op->node == NODE_UNKNOWN) {
		r = is_dir_like(c, op->src_base, op->src, &dir);
		if (r < 0) {
			snprintf(c->detail, sizeof(c->detail), "%s%s",
				 op->src_base == BASE_YARD ? "@" : "", op->src);
			return r;
		}
	}
	parent = base ? strndup(op->path, (size_t)(base - op->path)) : strdup("");
	if (!parent)
		return -ENOMEM;
	base = base ? base + 1 : op->path;
	r = walk(c, c->yard_fd, parent, true, &dfd);
	if (r < 0)
		return r;
	if (dir)
		r = mkdirat(dfd, base, 0755);
	else
		r = mknodat(dfd, base, S_IFREG | 0644, 0);
	if (r == 0)
		return 0;
	if (errno != EEXIST)
		return sys_fail(c, dir ? "mkdirat" : "mknodat");
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return sys_fail(c, "fstatat");
	if (S_ISDIR(st.st_mode) != dir) {
		c->syscall = dir ? "mkdirat" : "mknodat";
		return dir ? -ENOTDIR : -EISDIR;
	}
	return 0;
}

static int do_yard(struct cexec *c)
{
	for (size_t k = 0; k < c->cp->n_yard_dirs; k++) {
		const char *dir = c->cp->yard_dirs[k];
		struct stat st;

		if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		log_debug("mount tmpfs on %s (the roots yard)", dir);
		if (FAULT_OR(mount("mntcr-yard", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")) <
		    0) {
			snprintf(c->detail, sizeof(c->detail), "%s", dir);
			return sys_fail(c, "mount tmpfs");
		}
		c->yard_fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (c->yard_fd < 0)
			return sys_fail(c, "open");
		return 0;
	}
	c->syscall = "lstat";
	snprintf(c->detail, sizeof(c->detail), "none of the candidate directories exists");
	return -ENOENT;
}

/* Superblock options for mount(2)'s data: all but rw and ro (ro comes after the content). */
static char *sb_data(const struct mntcr_sb *sb)
{
	struct strbuf b = { 0 };

	if (strbuf_puts(&b, "") < 0)
		return NULL;
	for (const char *o = sb->opts ? sb->opts : ""; *o;) {
		const char *e = strchrnul(o, ',');
		size_t n = (size_t)(e - o);

		if (n && !(n == 2 && (strncmp(o, "rw", 2) == 0 || strncmp(o, "ro", 2) == 0)) &&
		    (strbuf_printf(&b, "%s%.*s", b.len ? "," : "", (int)n, o) < 0)) {
			strbuf_release(&b);
			return NULL;
		}
		o = *e ? e + 1 : e;
	}
	return strbuf_detach(&b);
}

/* The image's files of one superblock, into its fresh template in the yard (as exec.c's do_content). */
static int do_content(struct cexec *c, const struct cop *op)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (!c->img)
		return content_op(NULL, op->sb, -EBADF, &c->content_left, &c->syscall, c->detail,
				  sizeof(c->detail));
	r = open_path(c, op->base, op->handle, op->path, &fd);
	if (r < 0)
		return r;
	log_debug("content @%s <- image content of superblock %zu", op->path, op->sb);
	return content_op(c->img, op->sb, fd, &c->content_left, &c->syscall, c->detail, sizeof(c->detail));
}

static int do_op(struct cexec *c, const struct cop *op)
{
	_cleanup_close_ int fd = -EBADF, sfd = -EBADF;
	char target[64] = "", source[64] = "";
	const char *src = NULL, *tgt = target;
	int r;

	switch (op->type) {
	case COP_UNSHARE:
		log_debug("unshare CLONE_NEWNS, / %s", c->cp->rslave ? "rslave" : "rprivate");
		r = unshare_newer();
		if (r < 0) {
			errno = -r;
			return sys_fail(c, "unshare");
		}
		if (FAULT_OR(mount(NULL, "/", NULL,
				   MS_REC | (c->cp->rslave ? MS_SLAVE : MS_PRIVATE), NULL)) < 0)
			return sys_fail(c, c->cp->rslave ? "mount MS_REC|MS_SLAVE"
							 : "mount MS_REC|MS_PRIVATE");
		return 0;
	case COP_YARD:
		return do_yard(c);
	case COP_MKDIR:
		return do_mkdir(c, op);
	case COP_CONTENT:
		return do_content(c, op);
	case COP_PIVOT:
		log_debug("pivot_root into the root mount");
		if (fchdir(c->root_fd) < 0)
			return sys_fail(c, "fchdir");
		if (FAULT_OR(sys_pivot_root(".", ".")) < 0)
			return sys_fail(c, "pivot_root");
		if (FAULT_OR(umount2(".", MNT_DETACH)) < 0)
			return sys_fail(c, "umount2 old root");
		if (chdir("/") < 0)
			return sys_fail(c, "chdir /");
		return 0;
	default:
		break;
	}

	/* every other op acts on a place of the plan, handed to mount(2) as /proc/self/fd/N */
	if (op->base == BASE_ROOT && op->type == COP_PROPAGATION)
		tgt = op->path;
	else {
		r = open_path(c, op->base, op->handle, op->path, &fd);
		if (r < 0)
			return r;
		magic(fd, target);
	}
	if (op->src && (op->type == COP_BIND || op->type == COP_MOVE)) {
		if (op->src_base == BASE_HOST)
			src = op->src;
		else {
			r = open_path(c, op->src_base, op->src_handle, op->src, &sfd);
			if (r < 0) {
				snprintf(c->detail, sizeof(c->detail), "%s%s",
					 op->src_base == BASE_YARD ? "@" : "", op->src);
				return r;
			}
			magic(sfd, source);
			src = source;
		}
	}
	switch (op->type) {
	case COP_TMPFS:
		log_debug("mount tmpfs on @%s", op->path);
		if (FAULT_OR(mount("mntcr-yard", tgt, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")) <
		    0)
			return sys_fail(c, "mount tmpfs");
		return 0;
	case COP_SB_MOUNT: {
		const struct mntcr_sb *sb = &c->p->tree->sbs[op->sb];
		_cleanup_free_ char *data = sb_data(sb);

		if (!data)
			return -ENOMEM;
		log_debug("mount %s source=%s data=%s on @%s", sb->fstype,
			  sb->source ? sb->source : "none", data, op->path);
		if (FAULT_OR(mount(sb->source, tgt, sb->fstype, 0, *data ? data : NULL)) < 0) {
			snprintf(c->detail, sizeof(c->detail), "%s with options '%s'", sb->fstype,
				 data);
			return sys_fail(c, "mount");
		}
		return 0;
	}
	case COP_BIND:
		log_debug("mount %s%s -> @%s MS_BIND", op->src_base == BASE_YARD ? "@" : "",
			  op->src, op->path);
		if (FAULT_OR(mount(src, tgt, NULL, MS_BIND, NULL)) < 0) {
			snprintf(c->detail, sizeof(c->detail), "%s%s",
				 op->src_base == BASE_YARD ? "@" : "", op->src);
			return sys_fail(c, "mount MS_BIND");
		}
		if (op->grab == IDX_NONE)
			return 0;
		/* the same place now shows the new mount: keep an fd of it */
		return open_path(c, op->base, op->handle, op->path, &c->fds[op->grab]);
	case COP_GRAB:
		c->fds[op->grab] = TAKE_FD(fd);
		return 0;
	case COP_MOVE:
		log_debug("mount @%s -> @%s MS_MOVE", op->src, op->path);
		if (FAULT_OR(mount(src, tgt, NULL, MS_MOVE, NULL)) < 0)
			return sys_fail(c, "mount MS_MOVE");
		return 0;
	case COP_REMOUNT:
		log_debug("mount @%s MS_REMOUNT|MS_BIND|0x%lx", op->path, op->ms);
		if (FAULT_OR(mount(NULL, tgt, NULL, MS_REMOUNT | MS_BIND | op->ms, NULL)) < 0)
			return sys_fail(c, "mount MS_REMOUNT|MS_BIND");
		return 0;
	case COP_SB_RDONLY:
		log_debug("mount @%s MS_REMOUNT|MS_RDONLY", op->path);
		if (FAULT_OR(mount(NULL, tgt, NULL, MS_REMOUNT | MS_RDONLY, NULL)) < 0)
			return sys_fail(c, "mount MS_REMOUNT|MS_RDONLY");
		return 0;
	case COP_PROPAGATION:
		log_debug("mount %s%s %s", op->base == BASE_YARD ? "@" : "", op->path,
			  prop_name(op->ms));
		if (FAULT_OR(mount(NULL, tgt, NULL, op->ms, NULL)) < 0) {
			c->syscall = (op->ms & MS_REC)	       ? "mount MS_REC|MS_PRIVATE"
				     : op->ms == MS_SHARED     ? "mount MS_SHARED"
				     : op->ms == MS_SLAVE      ? "mount MS_SLAVE"
				     : op->ms == MS_UNBINDABLE ? "mount MS_UNBINDABLE"
							       : "mount MS_PRIVATE";
			return -errno ? -errno : -EIO;
		}
		return 0;
	case COP_ROOT_FD:
		c->root_fd = TAKE_FD(fd);
		return 0;
	default:
		return -EINVAL;
	}
}

int compat_execute(const struct mntcr_plan *p, struct mntcr_image *img, struct mntcr_report *report)
{
	const struct compat_plan *cp = p->compat;
	struct cexec c = { .p = p, .cp = cp, .yard_fd = -EBADF, .root_fd = -EBADF, .img = img };
	size_t n;
	int r = 0;

	if (!cp)
		return -EINVAL;
	n = cp->n_handles;
	r = raise_fd_limit(n + 64);
	if (r < 0) {
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "setrlimit", r,
			   "Failed to raise the open file limit to %zu for %zu mounts: %s", n + 64,
			   n, strerror(-r));
		return r;
	}
	c.fds = malloc((n ? n : 1) * sizeof(int));
	if (!c.fds)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		c.fds[i] = -EBADF;
	for (size_t i = 0; i < cp->n_ops; i++)
		c.content_left += cp->ops[i].type == COP_CONTENT;
	for (size_t i = 0; i < cp->n_ops; i++) {
		const struct cop *op = &cp->ops[i];
		const struct mntcr_mount *m =
			op->mount != IDX_NONE ? &p->tree->mounts[op->mount] : NULL;
		struct strbuf line = { 0 };
		char who[PATH_MAX + 64];
		const char *call;

		c.syscall = NULL;
		c.detail[0] = 0;
		r = do_op(&c, op);
		if (r >= 0)
			continue;
		call = c.syscall ? c.syscall : cop_name(op->type);
		(void)cop_format(p, i, &line);
		if (m)
			snprintf(who, sizeof(who), " for mount %" PRIu64 " at %.*s", m->id, PATH_MAX,
				 m->abs);
		else
			snprintf(who, sizeof(who), " at %.*s", PATH_MAX,
				 op->path && *op->path ? op->path : "-");
		report_op_failure(report, phase_name(op->phase), i, m, op->path, call, who, r, c.detail, &line);
		strbuf_release(&line);
		break;
	}
	if (c.yard_fd >= 0)
		close(c.yard_fd);
	if (c.root_fd >= 0)
		close(c.root_fd);
	for (size_t i = 0; i < n; i++)
		if (c.fds[i] >= 0)
			close(c.fds[i]);
	free(c.fds);
	return r < 0 ? r : 0;
}
