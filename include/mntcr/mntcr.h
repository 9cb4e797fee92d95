/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libmntcr: checkpoint and restore Linux mount namespaces.
 *
 * Conventions: functions return 0 (or a documented positive value) on
 * success and a negative errno on failure; outputs go to ret_* parameters,
 * written only on success. Objects have one owner and a *_free() that
 * accepts NULL and returns NULL. Getters return borrowed pointers that live
 * as long as the object they came from.
 *
 * Domain errors: -EBADMSG corrupt or inconsistent input, -EPROTO image of an
 * unknown format version, -EOPNOTSUPP a mount that cannot be restored,
 * -ENOSYS a kernel feature is missing.
 */
#ifndef MNTCR_MNTCR_H
#define MNTCR_MNTCR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MNTCR_NONE ((size_t)-1)

/* ---------------------------------------------------------------------------------------------- */
/* Logging */

enum mntcr_log_level {
	MNTCR_LOG_ERROR = 0,
	MNTCR_LOG_WARNING = 1,
	MNTCR_LOG_INFO = 2,
	MNTCR_LOG_DEBUG = 3,
};

typedef void (*mntcr_log_func_t)(int level, const char *msg, void *userdata);

/*
 * Route the library's messages to fn (NULL: stderr) for levels up to
 * `level`. The library is silent but for errors by default; MNTCR_DEBUG=1 in
 * the environment turns debug messages on.
 */
void mntcr_set_log_func(mntcr_log_func_t fn, void *userdata, int level);

/*
 * on: the library's threads that allocate megabytes (the second thread
 * that reads a large image's manifest) start their heap with a transparent
 * huge page: glibc gives each thread a heap of its own (an arena), and the
 * library makes that arena's first 2 MiB one huge page (MADV_COLLAPSE,
 * Linux >= 6.1). Off by default: an arena outlives its thread and serves
 * the process's other threads after it. mntcr(1) turns it on, with its own
 * heap in huge pages.
 */
void mntcr_set_huge_pages(bool on);

/* ---------------------------------------------------------------------------------------------- */
/* The mount tree */

struct mntcr_tree;
struct mntcr_mount;
struct mntcr_sb;

enum mntcr_source {
	MNTCR_SOURCE_NONE = 0,
	MNTCR_SOURCE_MOUNTINFO = 1, /* /proc/PID/mountinfo */
	MNTCR_SOURCE_STATMOUNT = 2, /* listmount(2) + statmount(2), Linux >= 6.8 */
};

enum mntcr_read_flags {
	MNTCR_READ_MOUNTINFO = 1 << 0,  /* use mountinfo even where statmount works */
	MNTCR_READ_NO_CLASSIFY = 1 << 1, /* do not compare with the caller's namespace */
};

/*
 * Parse mountinfo text (proc_pid_mountinfo(5) format) into an indexed tree.
 * Returns -EBADMSG on a malformed line or an inconsistent table.
 */
int mntcr_tree_parse_mountinfo(FILE *f, struct mntcr_tree **ret_tree);

/*
 * Read the mount namespace of process `pid`: listmount/statmount when the
 * kernel has them, else /proc/PID/mountinfo. Superblocks that the caller's
 * own namespace also has are marked external, with the caller-side path of
 * one of their mounts; the others are owned. Changes nothing in the target.
 * -ESRCH: no such process; -EACCES/-EPERM: not allowed to read it.
 */
int mntcr_tree_read_pid(pid_t pid, unsigned flags, struct mntcr_tree **ret_tree);

/*
 * Read the mount namespace that the namespace file nsfile refers to
 * (/proc/PID/ns/mnt, or a file a namespace was bound on, as restore
 * --persist does). Needs statmount (Linux >= 6.8). -ENOTTY: not a mount
 * namespace file.
 */
int mntcr_tree_read_ns(const char *nsfile, unsigned flags, struct mntcr_tree **ret_tree);

/*
 * Read several processes' mount namespaces into one tree: each distinct
 * namespace once (in the order of the first process in it), which
 * process is in which, and each process's root and working directory.
 * Superblocks and peer groups are shared across the namespaces, as in the
 * kernel. Errors as mntcr_tree_read_pid(); -EINVAL: no pids.
 */
int mntcr_tree_read_pids(const pid_t *pids, size_t n_pids, unsigned flags, struct mntcr_tree **ret_tree);

/* The same for namespace files (no processes). Needs statmount (Linux >= 6.8). */
int mntcr_tree_read_nsfiles(const char *const *nsfiles, size_t n_files, unsigned flags,
			    struct mntcr_tree **ret_tree);

struct mntcr_tree *mntcr_tree_free(struct mntcr_tree *t);

size_t mntcr_tree_n_mounts(const struct mntcr_tree *t);
/* Index of the namespace's root mount. */
size_t mntcr_tree_root(const struct mntcr_tree *t);
const struct mntcr_mount *mntcr_tree_mount(const struct mntcr_tree *t, size_t idx);
size_t mntcr_tree_n_sbs(const struct mntcr_tree *t);
const struct mntcr_sb *mntcr_tree_sb(const struct mntcr_tree *t, size_t idx);
enum mntcr_source mntcr_tree_source(const struct mntcr_tree *t);
pid_t mntcr_tree_pid(const struct mntcr_tree *t);
uint64_t mntcr_tree_ns_id(const struct mntcr_tree *t);

/* Several namespaces: a forest with one root per namespace (1 for a single namespace). */
size_t mntcr_tree_n_namespaces(const struct mntcr_tree *t);
/* Index of namespace ns's root mount, MNTCR_NONE if there is no such namespace. */
size_t mntcr_tree_ns_root(const struct mntcr_tree *t, size_t ns);
/* The dumped namespace's id (NS_GET_MNTNS_ID, else its nsfs inode number), 0 if unknown. */
uint64_t mntcr_tree_ns_orig_id(const struct mntcr_tree *t, size_t ns);
/* The processes of a dump (mntcr_tree_read_pids): pid, namespace, root and cwd (paths in it). */
size_t mntcr_tree_n_processes(const struct mntcr_tree *t);
int mntcr_tree_process(const struct mntcr_tree *t, size_t i, pid_t *ret_pid, size_t *ret_ns,
		       const char **ret_root, const char **ret_cwd);

uint64_t mntcr_mount_id(const struct mntcr_mount *m);
uint64_t mntcr_mount_parent_id(const struct mntcr_mount *m);
/* Index of the parent mount, MNTCR_NONE for the root. */
size_t mntcr_mount_parent(const struct mntcr_mount *m);
const char *mntcr_mount_root(const struct mntcr_mount *m);
const char *mntcr_mount_mountpoint(const struct mntcr_mount *m);
const char *mntcr_mount_fstype(const struct mntcr_mount *m);
/* NULL when the filesystem has no source. */
const char *mntcr_mount_source(const struct mntcr_mount *m);
const char *mntcr_mount_sb_options(const struct mntcr_mount *m);
void mntcr_mount_dev(const struct mntcr_mount *m, unsigned *ret_major, unsigned *ret_minor);
/* MOUNT_ATTR_* flags of this mount. */
uint64_t mntcr_mount_attr(const struct mntcr_mount *m);
uint64_t mntcr_mount_shared(const struct mntcr_mount *m);
uint64_t mntcr_mount_master(const struct mntcr_mount *m);
uint64_t mntcr_mount_propagate_from(const struct mntcr_mount *m);
bool mntcr_mount_unbindable(const struct mntcr_mount *m);
size_t mntcr_mount_sb(const struct mntcr_mount *m);
/* Index of the mount's namespace (0 in a tree of one namespace). */
size_t mntcr_mount_ns(const struct mntcr_mount *m);
/* Children in attach order: a covered child comes before the mount covering it. */
size_t mntcr_mount_n_children(const struct mntcr_mount *m);
size_t mntcr_mount_child(const struct mntcr_tree *t, const struct mntcr_mount *m, size_t i);

enum mntcr_cover {
	MNTCR_COVER_NONE = 0,
	MNTCR_COVER_SIBLING = 1, /* a sibling sits on an ancestor of (or on) its mountpoint */
	MNTCR_COVER_ROOT = 2,    /* the next mount of a stack sits on its root */
};
enum mntcr_cover mntcr_mount_cover(const struct mntcr_mount *m);
/* Index of the mount covering this one directly, MNTCR_NONE if none. */
size_t mntcr_mount_covered_by(const struct mntcr_mount *m);
/* True when no path walk in the namespace reaches this mount. */
bool mntcr_mount_hidden(const struct mntcr_mount *m);
/* 'd' directory, 'f' non-directory, '?' unknown: what the mount's root is. */
char mntcr_mount_type(const struct mntcr_mount *m);
/*
 * The mount's 32-bit mountinfo id (the number /proc/PID/mountinfo shows),
 * 0 when unknown. Equal to mntcr_mount_id() for trees read from mountinfo.
 */
uint32_t mntcr_mount_old_id(const struct mntcr_mount *m);

const char *mntcr_sb_fstype(const struct mntcr_sb *sb);
const char *mntcr_sb_source(const struct mntcr_sb *sb);
const char *mntcr_sb_options(const struct mntcr_sb *sb);
void mntcr_sb_dev(const struct mntcr_sb *sb, unsigned *ret_major, unsigned *ret_minor);
bool mntcr_sb_owned(const struct mntcr_sb *sb);
/* External superblocks: where the dumper saw a mount of it, and that mount's root. */
const char *mntcr_sb_ext_path(const struct mntcr_sb *sb);
const char *mntcr_sb_ext_root(const struct mntcr_sb *sb);

/*
 * Format MOUNT_ATTR_* flags as mountinfo's per-mount options
 * ("rw,nosuid,relatime"). Returns the length written or -ENOBUFS.
 */
int mntcr_attr_format(uint64_t attr, char *buf, size_t size);

/* ---------------------------------------------------------------------------------------------- */
/* Images */

enum mntcr_image_flags {
	MNTCR_IMAGE_NO_CONTENT = 1 << 0, /* no filesystem content, even for a live tree */
	MNTCR_IMAGE_ZSTD = 1 << 1,       /* compress the stream with zstd */
	MNTCR_IMAGE_GZIP = 1 << 2,       /* compress the stream with gzip */
};

/*
 * Write the image of tree t to fd as one stream: a pax tar whose first
 * member identifies the format, followed by the JSON manifest and a
 * checksum trailer (docs/image-format.md).
 *
 * When t was read from a live process (mntcr_tree_read_pid) and flags
 * lack MNTCR_IMAGE_NO_CONTENT, the files of every owned tmpfs and ramfs
 * superblock are streamed into the image too, files hidden under child
 * mounts and over-mounts included. They are read through private clones
 * of the mounts (a helper process enters the namespace; hidden mounts are
 * uncovered in a private copy of it): the target namespace does not change,
 * and no atime moves. Memory use does not grow with the content's size.
 * A superblock whose content cannot be reached (its mounts all hidden
 * under locked mounts, or no permission to enter the namespace) gets no
 * members, with a warning. -ESRCH: the process is gone; -ESTALE: it is in
 * another mount namespace now.
 * At most one of MNTCR_IMAGE_ZSTD and MNTCR_IMAGE_GZIP (else -EINVAL).
 */
int mntcr_image_write(int fd, const struct mntcr_tree *t, unsigned flags);

/*
 * Read a whole image from fd: the mount table, with any content read,
 * checked against its digests and skipped. -EBADMSG: not an image,
 * truncated, corrupt or inconsistent; -EPROTO: a format version this
 * library does not know.
 */
int mntcr_image_read(int fd, struct mntcr_tree **ret_tree);

/*
 * An image being read, for a restore that streams the content: open reads
 * and checks the header and the manifest (before anything is mounted, the
 * manifest is checked against its own digest); the content that follows is
 * read by mntcr_restore_image() or skipped by mntcr_image_finish().
 * The reader does not own fd.
 */
struct mntcr_image;

/* Open the image on fd. Errors as mntcr_image_read(). */
int mntcr_image_open(int fd, struct mntcr_image **ret_image);
/* The image's mount table; borrowed, lives as long as the image. */
const struct mntcr_tree *mntcr_image_tree(const struct mntcr_image *img);
/* True when the image holds filesystem content (docs/image-format.md, version 2). */
bool mntcr_image_has_content(const struct mntcr_image *img);
/*
 * Read the rest of the image: content members are checked, counted and
 * skipped, then the trailer's digests are verified. Does nothing when done
 * already. -EBADMSG: truncated or corrupt; -ESTALE: a restore consumed the
 * stream.
 */
int mntcr_image_finish(struct mntcr_image *img);
/*
 * Superblock sb's content, after mntcr_image_finish(): the number of
 * members (files, directories, links, ...) and the bytes of its regular
 * files (their sizes, holes included). -ENODATA: no content for sb.
 */
int mntcr_image_content_stats(const struct mntcr_image *img, size_t sb, uint64_t *ret_files,
			      uint64_t *ret_bytes);
/* The content roots of superblock sb: the paths whose subtrees the image holds. */
size_t mntcr_image_content_n_roots(const struct mntcr_image *img, size_t sb);
const char *mntcr_image_content_root(const struct mntcr_image *img, size_t sb, size_t i);
struct mntcr_image *mntcr_image_free(struct mntcr_image *img);

/* ---------------------------------------------------------------------------------------------- */
/* Diff */

typedef void (*mntcr_diff_func_t)(const char *line, void *userdata);

/*
 * Compare two namespaces: trees matched by the chain of mountpoints from
 * the root; per mount fstype, root, source (virtual filesystems), per-mount
 * flags, superblock options; the partition into superblocks; peer groups
 * and masters up to renumbering; unbindable. Calls fn once per difference.
 * Returns the number of differences (0: equivalent) or a negative errno.
 */
int mntcr_diff(const struct mntcr_tree *a, const struct mntcr_tree *b, mntcr_diff_func_t fn,
	       void *userdata);

/* ---------------------------------------------------------------------------------------------- */
/* Kernel features */

struct mntcr_features {
	bool statmount;
	bool listmount;
	bool open_tree;
	bool move_mount;
	bool move_mount_set_group;
	bool move_mount_beneath;
	bool mount_setattr;
	bool fsopen;
	bool openat2;
};

enum mntcr_engine {
	MNTCR_ENGINE_NONE = 0,
	MNTCR_ENGINE_MOUNT_API = 1,
	MNTCR_ENGINE_COMPAT = 2,
};

/* Probe the running kernel once; later calls return the cached result. */
int mntcr_probe(struct mntcr_features *ret);
/* The engine a restore would use with these features. */
enum mntcr_engine mntcr_engine_pick(const struct mntcr_features *f);
const char *mntcr_engine_name(enum mntcr_engine e);

/* ---------------------------------------------------------------------------------------------- */
/* Plan and restore */

struct mntcr_external {
	const char *key;  /* a mountpoint in the image ("/data") or a superblock key ("8:1") */
	const char *path; /* where that mount's root (or the superblock's recorded root) is here */
};

struct mntcr_restore_opts {
	const char *root; /* bind the namespace's root mount from this directory */
	const struct mntcr_external *externals;
	size_t n_externals;
	/*
	 * A slave of a peer group outside the namespace keeps that master when
	 * this namespace has a member of the group; otherwise the restore fails,
	 * or with this set the mount becomes private (with a warning).
	 */
	bool external_master_private;
	/* MNTCR_ENGINE_NONE (0): the best engine the running kernel supports. */
	enum mntcr_engine engine;
	/* Restore the mount table alone: no filesystem content, even if the image has some. */
	bool no_content;
	/*
	 * Build the namespace in the calling thread instead of a child process:
	 * no fork, no copy of the caller's memory (a restore of 1,000 binds
	 * 16% faster on a small VM). The thread enters a new namespace while it
	 * builds and comes back to its own, its root and working directory as
	 * they were; it has a filesystem context (root, cwd, umask) of its own
	 * from then on, no longer shared with the process's other threads. A
	 * failure leaves nothing behind, as in a child; if the thread cannot
	 * come back to its namespace (it could enter a new one, so it can),
	 * the process is aborted rather than left in a half-built one.
	 */
	bool in_process;
};

struct mntcr_plan;

/*
 * Plan a restore: a pure function from the image's tree, the restorer's
 * own mount tree (for external superblocks) and the options to an ordered
 * list of operations. -EOPNOTSUPP: something cannot be restored (the
 * report says what); nothing has been mounted.
 */
struct mntcr_report;
int mntcr_plan_build(const struct mntcr_tree *image, const struct mntcr_tree *host,
		     const struct mntcr_restore_opts *opts, struct mntcr_plan **ret_plan,
		     struct mntcr_report *report);
size_t mntcr_plan_n_ops(const struct mntcr_plan *p);
/* Print the plan, one operation per line. */
int mntcr_plan_print(const struct mntcr_plan *p, FILE *f);
struct mntcr_plan *mntcr_plan_free(struct mntcr_plan *p);

/* What went wrong, for the caller to print. */
struct mntcr_report {
	const char *phase; /* "validate", "plan", "create", "assemble", ... */
	size_t op_index;   /* MNTCR_NONE outside the executor */
	uint64_t mount_id; /* the image's id of the mount concerned, 0 if none */
	char *path;        /* its mountpoint, or the path concerned */
	const char *op;    /* the syscall or operation */
	int err;           /* negative errno */
	char *msg;         /* one line, complete, ready to print */
};
void mntcr_report_clear(struct mntcr_report *r);

/*
 * Restore: plan, then build the namespace in a child process that leaves
 * the caller's namespace untouched, and return an fd of the new mount
 * namespace (setns(2) it, or bind-mount /proc/self/fd/N to keep it).
 * On failure the half-built namespace is gone, *report says why.
 */
int mntcr_restore(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts,
		  int *ret_nsfd, struct mntcr_report *report);

/*
 * Restore an opened image, its filesystem content included: the restoring
 * process reads the content from the image's stream as it creates each
 * superblock, before anything is mounted on it, and verifies the content
 * digest before it reports success; a corrupt image (-EBADMSG) fails the
 * restore and leaves nothing behind. The stream is consumed either way:
 * afterwards only mntcr_image_tree() and mntcr_image_free() apply.
 * Without content (or with opts->no_content) the same as mntcr_restore().
 */
int mntcr_restore_image(struct mntcr_image *img, const struct mntcr_restore_opts *opts,
			int *ret_nsfd, struct mntcr_report *report);

/*
 * Restore every namespace of an image of several (mntcr_tree_n_namespaces()):
 * ret_nsfds receives one fd per namespace, in the image's order. Peer
 * groups and masters that span namespaces are restored across them. On
 * failure no namespace is left. mntcr_restore() and mntcr_restore_image()
 * restore all of them too and return the first one's fd.
 */
int mntcr_restore_all(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts,
		      int *ret_nsfds, struct mntcr_report *report);
int mntcr_restore_image_all(struct mntcr_image *img, const struct mntcr_restore_opts *opts,
			    int *ret_nsfds, struct mntcr_report *report);

#ifdef __cplusplus
}
#endif

#endif
