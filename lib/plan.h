/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The restore plan: an ordered list of operations on numbered fd slots.
 * plan.c builds it without a single syscall; exec.c runs it and is the only
 * code that mounts.
 */
#pragma once

#include "tree.h"

/*
 * mount_setattr(2) accepts a mount of a detached tree only while it is that
 * tree's root (EINVAL otherwise), so per-mount flags are set on each clone
 * before it is attached anywhere, and propagation once the whole tree is
 * attached in the namespace.
 */
enum plan_phase {
	PHASE_CREATE,      /* superblocks and templates, directories, detached clones */
	PHASE_FLAGS,       /* per-mount flags on the detached clones, superblock ro */
	PHASE_ASSEMBLE,    /* move_mount children into parents, covered before covering */
	PHASE_ROOT,        /* the tree becomes the namespace's root: with one namespace its
			    * root mount alone, before the assemble phase */
	PHASE_PROPAGATION, /* peer groups, slaves, unbindable */
	_PHASE_MAX,
};

enum plan_op_type {
	OP_SB_CREATE,      /* fsopen + fsconfig + fsmount of sb -> slot */
	OP_TEMPLATE_BIND,  /* non-recursive private clone of a path in our namespace -> slot */
	OP_MKPATH,         /* create path (and parents) inside the filesystem of slot src */
	OP_CLONE,          /* open_tree(src, path, OPEN_TREE_CLONE) -> slot */
	OP_ATTACH,         /* move_mount(slot, "", src, path) */
	OP_SETATTR,        /* mount_setattr(slot, attr_set, attr_clr) */
	OP_SB_RDONLY,      /* fspick(src) + reconfigure ro */
	OP_SET_PROPAGATION, /* mount_setattr(slot, propagation) */
	OP_SET_GROUP,      /* move_mount(src -> slot, MOVE_MOUNT_SET_GROUP) */
	OP_PEER_BIND,      /* non-recursive clone of a path here that keeps its peer group -> slot */
	OP_CONTENT,        /* the image's content of sb, written into its new template (slot) */
	OP_SET_ROOT,       /* attach slot on /, pivot_root into it, drop the old root */
};

/*
 * One cache line: a plan has about three ops per mount, and building it
 * is mostly writing them.
 */
struct plan_op {
	uint8_t type;	      /* enum plan_op_type */
	uint8_t phase;	      /* enum plan_phase */
	uint8_t node;	      /* OP_MKPATH: what to create (enum node_type); UNKNOWN = like the mount in slot */
	uint32_t propagation; /* MS_PRIVATE / MS_SHARED / MS_SLAVE / MS_UNBINDABLE */
	size_t mount;	      /* image mount index, or IDX_NONE */
	size_t sb;	      /* image superblock index, or IDX_NONE */
	size_t slot;	      /* the slot this op creates or acts on */
	size_t src;	      /* the slot it reads from (template, parent), or IDX_NONE */
	char *path;	      /* relative path inside src, or a path in our namespace */
	size_t like_slot;     /* OP_MKPATH with NODE_UNKNOWN: the mount whose root to match */
	uint32_t attr_set, attr_clr; /* MOUNT_ATTR_* (all below bit 32) */
};
_Static_assert(sizeof(struct plan_op) <= 64, "a plan op is one cache line");

struct compat_plan;
struct mntcr_image;

struct mntcr_plan {
	const struct mntcr_tree *tree; /* borrowed: the image the plan was made from */
	enum mntcr_engine engine;
	struct compat_plan *compat;    /* MNTCR_ENGINE_COMPAT: the mount(2) engine's plan (compat.c) */
	struct plan_op *ops;
	size_t n_ops, cap_ops;
	struct arena strings; /* the ops' paths */
	size_t n_slots;
	size_t *mount_slot; /* image mount index -> slot */
	size_t *sb_slot;    /* image sb index -> template slot */
};

const char *plan_phase_name(enum plan_phase p);
const char *plan_op_name(enum plan_op_type t);
/* One line describing op i, without a trailing newline. */
int plan_op_format(const struct mntcr_plan *p, size_t i, struct strbuf *out);

/* The filesystems mntcr can create anew. */
bool plan_fstype_creatable(const char *fstype);

/*
 * Refuse, before anything is mounted, what neither engine can restore:
 * bound deleted files, unsafe paths, idmapped mounts, owned filesystems
 * mntcr cannot create. Fills the report.
 */
int plan_validate(const struct mntcr_tree *t, struct mntcr_report *report);

/*
 * Where every mount of an image comes from; both engines take each
 * superblock from the same place. Templates: first one per owned
 * superblock that has mounts (in superblock order), created anew; then one
 * per path of the restorer's namespace that external superblocks are taken
 * from (--external, --root, or automatically by device number), in order
 * of first use by mount index.
 */
struct source_tmpl {
	size_t sb;  /* image superblock index */
	char *path; /* NULL: owned, created anew; else the path here to take it from */
};

struct mount_sources {
	struct source_tmpl *tmpl;
	size_t n_tmpl, cap_tmpl;
	size_t *sb_tmpl;      /* per superblock: its owned template, or IDX_NONE */
	size_t *mount_tmpl;   /* per mount: the template it is taken from */
	char **mount_rel;     /* per mount: its root inside the template, relative ("" = the template's root) */
	uint64_t *mount_attr; /* per mount: the flags a copy of the template carries, UINT64_MAX unknown */
};

/* Pure. Fills the report on failure (-ENOENT: an external filesystem that is not here). */
int mount_sources_resolve(const struct mntcr_tree *t, const struct mntcr_tree *host,
			  const struct mntcr_restore_opts *opts, struct mntcr_report *report,
			  struct mount_sources *ret);
void mount_sources_release(struct mount_sources *s, size_t n_mounts);

/* Fill a report; the message is built from the remaining arguments. */
void report_set(struct mntcr_report *r, const char *phase, size_t op_index, uint64_t mount_id,
		const char *path, const char *op, int err, const char *fmt, ...) _printf_(8, 9);

/*
 * The report of an executor op failing, for both engines: "Restore failed
 * in phase PHASE: CALL WHO: strerror(err) (DETAIL) (operation OPLINE)".
 */
void report_op_failure(struct mntcr_report *r, const char *phase, size_t op_index, const struct mntcr_mount *m,
		       const char *path, const char *call, const char *who, int err, const char *detail,
		       const struct strbuf *opline);

/*
 * unshare(CLONE_NEWNS) with a namespace id above the caller's, so that the
 * caller may bind the new namespace's file (restore --persist). Returns -errno.
 */
int unshare_newer(void);

/* Raise RLIMIT_NOFILE to at least need (both limits, as root may). Returns -errno. */
int raise_fd_limit(size_t need);

/* Enter a new private mount namespace and run the plan there (in a process of its own). */
int plan_execute(const struct mntcr_plan *p, struct mntcr_report *report);
/*
 * The same, with the image stream that OP_CONTENT ops read their files from
 * (content.h). A tree of several namespaces makes a new namespace for each:
 * their fds go into ret_nsfds (one per namespace); with one namespace the
 * plan's namespace is the calling process's own.
 */
int plan_execute_full(const struct mntcr_plan *p, struct mntcr_image *img, int *ret_nsfds,
		      struct mntcr_report *report);

/*
 * The compat engine (compat.c): mount(2), umount2(2) and pivot_root(2) only.
 * compat_plan_build fills p->compat; the others act on it.
 */
int compat_plan_build(struct mntcr_plan *p, const struct mntcr_tree *host,
		      const struct mntcr_restore_opts *opts, struct mntcr_report *report);
int compat_plan_print(const struct mntcr_plan *p, FILE *f);
int compat_execute(const struct mntcr_plan *p, struct mntcr_image *img, struct mntcr_report *report);
void compat_plan_free(struct compat_plan *cp);
