/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mount-tree model: one tree per mount namespace.
 *
 * Mounts live in one array and refer to each other by index, so the model can
 * be built in any order (the kernel lists a child before its parent after
 * MOVE_MOUNT_BENEATH or a propagation tuck) and then indexed once:
 * tree_index() links parents and children, groups mounts into superblocks,
 * and computes which mounts are covered, by whom, and which are hidden.
 * Every lookup is hash-based or a binary search: nothing is O(n^2).
 */
#pragma once

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mntcr/mntcr.h"
#include "util.h"

#define IDX_NONE SIZE_MAX

/* How a mount is covered (mntcr_mount_cover). */
enum mount_cover {
	COVER_NONE = 0,
	COVER_SIBLING = 1, /* a sibling is mounted on an ancestor of (or on) its mountpoint */
	COVER_ROOT = 2,    /* a child is mounted on its own root: the next mount of a stack */
};

enum node_type {
	NODE_UNKNOWN = 0,
	NODE_DIR = 1,
	NODE_FILE = 2, /* any non-directory: regular file, device node, socket, fifo */
};

struct mntcr_mount {
	/* As read from the kernel or the image. */
	uint64_t id;        /* 64-bit unique id (statmount) or the mountinfo id */
	uint64_t parent_id; /* id of the parent; the root's parent may be absent */
	uint32_t old_id;    /* mountinfo (32-bit, reused) id; 0 when unknown */
	uint32_t dev_major, dev_minor;
	char *root;       /* path inside the filesystem (bytes) */
	char *point;      /* where it is mounted (bytes): an absolute path, or the path below its
			   * parent's mountpoint (no '/' first; "" on the parent's root), as image
			   * version 5 and the statmount reader keep them; mount_path() gives the
			   * absolute path */
	uint64_t attr;    /* MOUNT_ATTR_* per-mount flags */
	char *fstype;     /* "type" or "type.subtype" */
	char *source;     /* may be NULL ("none") */
	char *sb_opts;    /* superblock options as mountinfo prints them, "rw,..." */
	char *strings;    /* NULL, or the one allocation the five strings above are in */
	bool in_text;     /* the five strings are in a text of the tree's (texts): not its own */
	uint64_t shared;  /* peer group id, 0 = not shared */
	uint64_t master;  /* master peer group id, 0 = not a slave */
	uint64_t propagate_from;
	bool unbindable;
	enum node_type type; /* what the mount's root is */
	size_t ns;           /* index of its namespace in tree->nss (0 with one namespace) */

	/* Derived by tree_index(). */
	size_t parent;       /* IDX_NONE for the namespace root */
	size_t sb;           /* index into tree->sbs */
	size_t first_child;  /* offset into tree->child_idx */
	size_t n_children;   /* children in attach order: covered ones before their coverers */
	size_t covered_by;   /* the mount that covers this one directly, or IDX_NONE; a sibling
			      * cover wins over a root cover (index_covers) */
	enum mount_cover cover;
	uint32_t rel_off;    /* point + rel_off: the path below the parent's (mount_relpath) */
	uint32_t path_len;   /* the length of its absolute mountpoint */
	bool hidden;         /* no path walk reaches this mount */
	const char *abs;     /* its absolute mountpoint once tree_abs_paths() has run, or NULL */
};

struct mntcr_sb {
	uint32_t dev_major, dev_minor;
	char *fstype;
	char *source;
	char *opts;     /* superblock options with "rw"/"ro" first */
	char *strings;  /* NULL, or the one allocation the three strings above are in */
	bool borrowed;  /* the three strings are its first mount's (index_sbs_by_dev()): not its own */
	bool owned;     /* only the target namespace has it: created anew at restore */
	char *ext_path; /* external: the dumper-side mountpoint of a mount of it */
	char *ext_root; /* external: that mount's root inside the filesystem */
	size_t first_mount; /* offset into tree->sb_mount_idx */
	size_t n_mounts;
	/* Image with content: the roots (absolute paths) whose subtrees it holds. */
	char **content_roots;
	size_t n_content_roots;
};

/*
 * A tree may hold several mount namespaces (dump --pid A --pid B): a
 * forest, one root per namespace, one superblock table and one peer-group
 * numbering for all, since the kernel shares both across namespaces.
 */
struct tree_ns {
	uint64_t id;  /* the original namespace's id (NS_GET_MNTNS_ID), or its nsfs inode */
	pid_t pid;    /* a process in it when read live, else 0 */
	size_t root;  /* its root mount, by tree_index() */
};

/* A process of the dump: which namespace it is in, and where its root and cwd are. */
struct tree_proc {
	pid_t pid;
	size_t ns;
	char *root; /* its root directory, a path in its namespace ("/" unless chroot'd) */
	char *cwd;  /* its working directory, a path in its namespace */
};

struct mntcr_tree {
	struct mntcr_mount *mounts;
	size_t n_mounts, cap_mounts;
	struct mntcr_sb *sbs;
	size_t n_sbs, cap_sbs;

	size_t root; /* the (first) namespace's root mount */
	uint64_t ns_id;
	struct tree_ns *nss; /* n_ns >= 1 once indexed */
	size_t n_ns;
	struct tree_proc *procs;
	size_t n_procs;
	pid_t pid;
	enum mntcr_source source;
	bool unique_ids; /* ids are 64-bit unique ids */
	bool sbs_from_image; /* sbs were given (image), not derived from dev numbers */
	bool live;       /* read from a running process (pid), whose content can be dumped */
	char *kernel;    /* uname -r of the dumping machine */
	char *hostname;
	char **texts; /* mountinfo texts that mounts' strings point into (in_text) */
	size_t n_texts, cap_texts;
	struct arena text_arena; /* strings of in_text mounts copied out of their text (compact_chunk()) */
	struct arena abs_arena; /* the absolute mountpoints tree_abs_paths() made */
	bool abs_done;

	/* Indexes, built by tree_index(). */
	struct u64map by_id;  /* mount id -> index */
	size_t *child_idx;    /* children of every mount, grouped per parent */
	size_t *sb_mount_idx; /* mounts of every superblock, grouped per sb */
	bool indexed;
};

int tree_new(struct mntcr_tree **ret);
/* Append a mount; takes ownership of the strings in *m, which is cleared. */
int tree_add_mount(struct mntcr_tree *t, struct mntcr_mount *m);
/* Take text, which mounts' strings point into (in_text), for as long as the tree lives. */
int tree_add_text(struct mntcr_tree *t, char *text);
/* The mounts cleared and the texts their strings lie in freed; n_mounts 0. */
void tree_clear_mounts(struct mntcr_tree *t);
/* Append a superblock (image reader); takes ownership of the strings. */
int tree_add_sb(struct mntcr_tree *t, struct mntcr_sb *sb);
/* Declare the namespaces a tree's mounts belong to (mount.ns indexes them). */
int tree_set_namespaces(struct mntcr_tree *t, size_t n);
/* Append a process; takes ownership of root and cwd. */
int tree_add_proc(struct mntcr_tree *t, pid_t pid, size_t ns, char *root, char *cwd);
/*
 * Link and validate: duplicate ids, missing parents, cycles, more than one
 * root per namespace, a parent in another namespace, children outside their parent's path give -EBADMSG (logged at debug
 * level with the offending ids). Groups mounts into superblocks by device
 * number unless the superblocks came with the mounts (image).
 */
int tree_index(struct mntcr_tree *t);
void mount_clear(struct mntcr_mount *m);

/* A mount's strings, in the order mount_strings_alloc() takes their sizes. */
enum {
	MOUNT_STR_ROOT,
	MOUNT_STR_MOUNTPOINT,
	MOUNT_STR_FSTYPE,
	MOUNT_STR_SOURCE,
	MOUNT_STR_SB_OPTS,
	_MOUNT_STR_MAX,
};
#define MOUNT_STR_NULL SIZE_MAX /* that string stays NULL */

/*
 * Room for the strings of m (a mount without strings yet) in one
 * allocation, m->strings: room[k] bytes and a NUL for each, which the
 * caller then writes; each starts empty. The readers of many mounts use
 * it: one malloc and one free a mount instead of five.
 */
int mount_strings_alloc(struct mntcr_mount *m, const size_t room[_MOUNT_STR_MAX]);
/* Where m's string k (MOUNT_STR_*) is kept. */
char **mount_str(struct mntcr_mount *m, size_t k);

/* A superblock's strings (sb_str()). */
enum {
	SB_STR_FSTYPE,
	SB_STR_SOURCE,
	SB_STR_OPTS,
	_SB_STR_MAX,
};

/* As mount_strings_alloc(), for n strings: *block, and *slot[k] in it (room[k] MOUNT_STR_NULL: NULL). */
int strings_alloc(char **block, char **const slot[], const size_t room[], size_t n);
/* Where sb's string k (SB_STR_*) is kept. */
char **sb_str(struct mntcr_sb *sb, size_t k);
void sb_clear(struct mntcr_sb *sb);

static inline struct mntcr_mount *tree_child(const struct mntcr_tree *t, const struct mntcr_mount *m,
					     size_t i)
{
	return &t->mounts[t->child_idx[m->first_child + i]];
}

static inline size_t tree_child_idx(const struct mntcr_tree *t, const struct mntcr_mount *m, size_t i)
{
	return t->child_idx[m->first_child + i];
}

static inline size_t tree_sb_mount_idx(const struct mntcr_tree *t, const struct mntcr_sb *sb, size_t i)
{
	return t->sb_mount_idx[sb->first_mount + i];
}

bool tree_find(const struct mntcr_tree *t, uint64_t id, size_t *ret_idx);

/*
 * A mount's root is an absolute path inside its filesystem, except for a
 * bind of a namespace file (unshare --mount=FILE, ip netns add, restore
 * --persist): the kernel shows an nsfs root as "mnt:[4026532178]".
 */
bool mount_root_is_valid(const char *fstype, const char *root);

/*
 * The path of mount m relative to its parent's mountpoint ("" for a stacked mount; for a
 * namespace's root, its own path below "/": ""). Set by tree_index().
 */
static inline const char *mount_relpath(const struct mntcr_tree *t, const struct mntcr_mount *m)
{
	(void)t;
	return m->point + m->rel_off;
}

/* A relative path in normal form: "", or names joined by single '/', none "." or "..". */
bool relpath_is_normalized(const char *rel);

/*
 * The absolute mountpoint of mount i of an indexed tree: its point or its
 * tree_abs_paths() path when it has one, else made in buf (O(depth)).
 * NULL: out of memory.
 */
const char *mount_path(const struct mntcr_tree *t, size_t i, struct strbuf *buf);

/*
 * Every mount's absolute mountpoint in m->abs, made once (a cache, hence
 * the const tree): for the code that looks at many of them (the compat
 * engine, diff, content, the public getters). The hot paths of dump and
 * restore use mount_relpath() and do without.
 */
int tree_abs_paths(const struct mntcr_tree *t);

/*
 * For the readers, which keep a mountpoint below its parent's when they
 * read the parent first: an absolute mountpoint's length and hash
 * (XXH3-64 with a seed drawn once a process, so that no path can be made
 * to match another's).
 */
struct point_sum {
	uint64_t hash;
	size_t len;
};
struct point_sum point_sum_of(const char *point, size_t len);
/*
 * Where the path of point (absolute, len bytes) below its parent's (sum)
 * starts: past the parent's path and the '/' after it; 0 when point does
 * not lie below it.
 */
size_t point_below(const char *point, size_t len, const struct point_sum *parent);

/*
 * m's absolute mountpoint (m a mount of t), where one path is wanted in
 * passing (a message, a plan's text): all of t's made once
 * (tree_abs_paths()); out of memory, its point.
 */
static inline const char *mount_abs(const struct mntcr_tree *t, const struct mntcr_mount *m)
{
	return tree_abs_paths(t) == 0 && m->abs ? m->abs : m->point;
}

/*
 * Pre-order walk from each namespace's root in turn, in attach order. Calls fn for each mount;
 * a negative return stops the walk and is returned.
 */
int tree_walk(const struct mntcr_tree *t, int (*fn)(const struct mntcr_tree *t, size_t idx, void *ud),
	      void *ud);
