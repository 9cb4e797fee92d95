/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Filesystem content: the files of the tmpfs and ramfs superblocks a
 * namespace owns, as content/<sb>/<path> members of the image
 * (docs/image-format.md, version 2).
 *
 *   image.c    the stream: member names, order, the content digest
 *   content.c  the filesystems: reading a live namespace's superblocks
 *              through private clones (dump), writing members into the
 *              fresh superblocks of a restore (extract)
 */
#pragma once

#include <archive_entry.h>
#include <stdbool.h>
#include <stdint.h>

#include "mntcr/mntcr.h"
#include "tree.h"

#define CONTENT_PREFIX "content/"
#define CONTENT_NAME_MAX 8192 /* bytes in a member name (and a hard link's target name) */
#define CONTENT_ROOTS_MAX 4096
/*
 * tar cannot hold a unix socket: one is stored as an empty regular file
 * with this attribute (a pax xattr record). "mntcr." is no xattr
 * namespace the kernel knows, so no real attribute can collide with it.
 */
#define CONTENT_ATTR_TYPE "mntcr.type"
#define CONTENT_TYPE_SOCKET "socket"

/* The filesystems whose content is saved: tmpfs and ramfs. */
bool content_fstype(const char *fstype);

/*
 * The content roots of superblock sb: the roots of its mounts that lie
 * below no other root of its, sorted (so "/" alone when a mount shows the
 * whole filesystem). Owned tmpfs/ramfs superblocks with mounts only;
 * otherwise *ret_n = 0. The strings are new.
 */
int content_roots(const struct mntcr_tree *t, size_t sb, char ***ret, size_t *ret_n);
void content_roots_free(char **v, size_t n);

/*
 * Parse a content member name: "content/<sb>" or "content/<sb>/<path>",
 * <sb> decimal without leading zeros, <path> relative with no empty, "."
 * or ".." component, at most one trailing '/'; at most CONTENT_NAME_MAX
 * bytes. *ret_rel points into name: the path relative to the
 * filesystem's root ("" for the root), *ret_len its length without the
 * trailing '/'. -EINVAL for anything else.
 */
int content_name_parse(const char *name, uint64_t *ret_sb, const char **ret_rel, size_t *ret_len);
/* rel (len bytes, relative to the filesystem's root) is one of roots or lies below one. */
bool content_rel_in_roots(const char *rel, size_t len, char *const *roots, size_t n);

/*
 * A member's extended attributes, checked and normalised: real attributes
 * (user., trusted., security., system.) sorted by name, each once
 * (libarchive reads every pax xattr twice, from its SCHILY. and
 * LIBARCHIVE. records), and the socket marker. -EBADMSG: another name, the
 * marker on anything but an empty regular file, or two different values
 * for one name.
 */
struct content_xattr {
	const char *name; /* borrowed from the entry */
	const void *value;
	size_t size;
};
struct content_attrs {
	struct content_xattr *x;
	size_t n, cap;
	bool socket;
};
int content_attrs_get(struct archive_entry *e, struct content_attrs *ret);
void content_attrs_release(struct content_attrs *a);

/* -------------------------------------------------------------------------- */
/* Dump (content.c), writing through image.c */

struct image_writer;
/*
 * Start an image on fd: magic, manifest and, with roots (per superblock,
 * n_roots[sb] of them; version 2), manifest.checksum. Content members
 * follow with image_write_entry(); image_writer_finish() writes the
 * trailer. flags: MNTCR_IMAGE_ZSTD or _GZIP. mntcr_image_write() is
 * content_plan + these + content_dump; tests write members by hand.
 */
int image_writer_open(int fd, const struct mntcr_tree *t, char **const *roots,
		      const size_t *n_roots, unsigned flags, struct image_writer **ret);
int image_writer_finish(struct image_writer *w);
void image_writer_free(struct image_writer *w);
/* A member header; the digest covers its canonical metadata (image.c). */
int image_write_entry(struct image_writer *w, struct archive_entry *e, size_t sb);
/* n bytes of the current member's data; buf NULL: n bytes of a hole. */
int image_write_data(struct image_writer *w, const void *buf, size_t n);

/*
 * Stream the content of t's superblocks: for each sb with n_roots[sb] > 0,
 * in superblock order, the subtrees at roots[sb][...]. t is a live tree
 * (t->live, t->pid); its namespace is entered by a helper process.
 */
int content_dump(struct image_writer *w, const struct mntcr_tree *t, char **const *roots,
		 const size_t *n_roots);

/* -------------------------------------------------------------------------- */
/* Restore (content.c), reading through image.c */

/*
 * The superblock of the next content member, which stays unread: 1 and
 * *ret_sb, or 0 when the content has ended (the trailer comes next).
 * Members come in superblock order (checked).
 */
int image_content_peek(struct mntcr_image *img, size_t *ret_sb);
/* After image_content_peek() failed: the name of the member it refused, or NULL. */
const char *image_content_bad_member(const struct mntcr_image *img);
/*
 * Take the next member: its entry (valid until the next call), its name,
 * its path relative to the filesystem's root ("" = the root; not
 * NUL-terminated at *ret_len when the name has a trailing '/': use the
 * length) and its checked attributes. Name, order and roots are checked;
 * the digest covers its metadata.
 */
int image_content_take(struct mntcr_image *img, struct archive_entry **ret_e, const char **ret_name,
		       const char **ret_rel, size_t *ret_len,
		       const struct content_attrs **ret_attrs);
/* The taken member's data: 1 with a block at *ret_off, 0 at its end. */
int image_content_data(struct mntcr_image *img, const void **ret_buf, size_t *ret_n,
		       int64_t *ret_off);
/* After the last member: the trailer, its digests and member count, the end of the archive. */
int image_content_end(struct mntcr_image *img);
/* The restoring child took the stream over (fork): this copy must not read it. */
void image_content_handed_over(struct mntcr_image *img);

/*
 * Write superblock sb's members into the filesystem whose root is rootfd
 * (a fresh superblock's detached mount): every path is resolved beneath
 * rootfd without following a symlink, parents are made as needed, and a
 * directory gets its mode and times after its children. On failure
 * *ret_member (new, may stay NULL) names the member and *ret_call the
 * failing call.
 */
int content_extract(struct mntcr_image *img, size_t sb, int rootfd, char **ret_member,
		    const char **ret_call);

/*
 * Move the detached mount fd into *yard, a detached tmpfs made on first use
 * (*yard < 0), on a directory named n of its own: closing fd then unmounts
 * nothing, and the whole yard goes in one unmount (one RCU grace period)
 * when its fd is closed. Stacked on each other, mounts of a shared group
 * would propagate to its members: hence a directory each. 0 or -errno (fd
 * is then left as it was; *yard < 0 still when the yard could not be made).
 */
int yard_park(int *yard, size_t n, int fd);
/* An fd on the mount yard_park() parked as n: open_tree() of it with flags (OPEN_TREE_CLONE: a clone). -1 and errno. */
int yard_open(int yard, size_t n, unsigned flags);

/*
 * An executor's content op, for both engines: content_extract() of
 * superblock sb into rootfd; the last one (when *left reaches 0) also
 * reads and checks the image's trailer. On failure *ret_call names the
 * call and detail (of detail_size bytes) what failed: the member, a
 * corrupt image, or no image stream at all (img NULL, -ENODATA).
 */
int content_op(struct mntcr_image *img, size_t sb, int rootfd, size_t *left, const char **ret_call,
	       char *detail, size_t detail_size);
