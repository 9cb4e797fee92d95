/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The image: one pax (restricted) tar stream, written and read with
 * libarchive, so that it flows through pipes and a compression filter can be
 * added later without a format change. Members, in this order:
 *
 *   mntcr-image        magic and format version: "mntcr-image\nversion N\n"
 *   manifest.json      the mount table as JSON, one mount per line
 *   manifest.checksum  (version 2 on) XXH3-64 of the manifest, checked before it is used
 *   content/<sb>/...   (version 2 on) the files of owned tmpfs/ramfs superblock <sb>
 *   checksum           XXH3-64 of the manifest and of the content, member count
 *
 * Version 1 (no content; what dump --no-content gave before version 4):
 * the checksum comes last so that the writer can stream, so the reader
 * reads the whole stream, checks the digests, and only then parses the
 * manifest.
 *
 * Version 2 (content): the content can be far larger than memory and a
 * restore writes it into the new filesystems as it reads it, so the
 * manifest is checked against its own digest member and parsed first,
 * and the content digest is checked at the end (a restore that sees a
 * mismatch fails and leaves nothing behind). The content digest covers
 * each member's canonical metadata as well as its data. Version 3 adds
 * several namespaces and processes to version 2's layout; version 4, what
 * the writer writes, with or without content, lets a mount leave out the
 * keys that say what its superblock or the default says.
 *
 * An image is untrusted input (it is fuzzed): every JSON field is
 * type-checked, sizes and counts are bounded, tree_index() rejects
 * inconsistent tables, and content member names, types, link targets and
 * attributes are checked before anyone acts on them. docs/image-format.md
 * is the specification.
 */
#include <assert.h>
#include <archive.h>
#include <archive_entry.h>
#include <limits.h>
#include <poll.h>
#include <xxhash.h>

#include "config.h"
#if HAVE_XXH_DISPATCH
#include <xxh_x86dispatch.h>
/*
 * libxxhash's entry points that use AVX2 or AVX-512 where the CPU has them:
 * the same digests, twice as fast as the plain ones (SSE2): 1 GiB in 25
 * instead of 48 ms, in a dump or restore of content that is 9% of the time.
 */
#define xxh3_update XXH3_64bits_update_dispatch
#else
#define xxh3_update XXH3_64bits_update
#endif

#include "content.h"
#include "flags.h"
#include "json.h"
#include "mntcr/mntcr.h"
#include "tree.h"

/* Version 1: the mount table alone, its checksum last. */
#define IMAGE_VERSION_CONTENT 2 /* content, and the manifest's digest before it */
#define IMAGE_VERSION_NS 3      /* several namespaces, or processes (version 2's layout) */
#define IMAGE_VERSION_BRIEF 4   /* version 3; a mount leaves out what its superblock or the default says, a superblock what is null */
#define IMAGE_VERSION_REL 5     /* version 4; a mount's mountpoint is relative to its parent's */
#define IMAGE_VERSION_MAX IMAGE_VERSION_REL
#define IMAGE_VERSION_WRITTEN IMAGE_VERSION_REL /* what the writer writes */
#define PROCS_MAX 65536
#define IMAGE_MAGIC_PREFIX "mntcr-image\nversion "
#define MAGIC_MEMBER "mntcr-image"
#define MANIFEST_MEMBER "manifest.json"
#define CHECKSUM_MEMBER "checksum"
#define MANIFEST_CHECKSUM_MEMBER "manifest.checksum"
#define MANIFEST_FORMAT "mntcr-manifest"
#define CHECKSUM_ALGORITHM "xxh3-64"

/* Limits. The writer refuses what the reader would refuse. */
#define MAGIC_MAX 4096
#define MANIFEST_MAX ((size_t)256 << 20)
#define CHECKSUM_MAX ((size_t)64 << 10)
#define MOUNTS_MAX 1000000
#define IMAGE_PATH_MAX 4096 /* root, mountpoint, ext_path, ext_root */
#define FSTYPE_MAX 255
#define NAME_MAX_LEN 255	   /* kernel release, hostname */
#define TEXT_MAX ((size_t)1 << 20) /* source and options: mountinfo.c's line limit */
#define FLAGS_MAX 64		   /* names in one mount's "flags" */
#define TRAILER_DRAIN_MAX ((size_t)1 << 20)
#define IO_BUF_SIZE ((size_t)64 << 10)
#define IMAGE_RECORD 10240		/* tar's record: an uncompressed image is a multiple of it */
#define IMAGE_BLOCK (25 * IMAGE_RECORD) /* what the writer hands write(2) at a time */
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

/* -------------------------------------------------------------------------- */
/* Field checks shared by the writer and the reader */

/* Paths are absolute; a mountpoint is also normalised, since restore creates and mounts on it. */
static bool path_ok(const char *p, bool normalized)
{
	if (!p || p[0] != '/' || strlen(p) > IMAGE_PATH_MAX)
		return false;
	return !normalized || path_is_normalized(p);
}

static bool text_ok(const char *s, size_t max, bool nonempty)
{
	size_t n;

	if (!s)
		return !nonempty;
	n = strlen(s);
	return n <= max && (n > 0 || !nonempty);
}

static const char *source_name(enum mntcr_source s)
{
	switch (s) {
	case MNTCR_SOURCE_MOUNTINFO:
		return "mountinfo";
	case MNTCR_SOURCE_STATMOUNT:
		return "statmount";
	case MNTCR_SOURCE_NONE:
		break;
	}
	return NULL;
}

static const char *node_type_name(enum node_type type)
{
	switch (type) {
	case NODE_DIR:
		return "dir";
	case NODE_FILE:
		return "file";
	case NODE_UNKNOWN:
		break;
	}
	return NULL;
}

/* -------------------------------------------------------------------------- */
/* I/O callbacks: read(2)/write(2) with the real errno kept for the caller */

struct image_io {
	int fd;
	int err;   /* negative errno of a failed read(2)/write(2), 0 if none */
	char *buf; /* reader: IO_BUF_SIZE bytes handed to libarchive */
};

/* A caller may hand us a non-blocking pipe (O_NONBLOCK set by a shell or a runtime): wait. */
static int wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		if (poll(&p, 1, -1) >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

static la_ssize_t io_read(struct archive *a, void *userdata, const void **ret_buf)
{
	struct image_io *io = userdata;

	for (;;) {
		ssize_t n = read(io->fd, io->buf, IO_BUF_SIZE);
		int r;

		if (n >= 0) {
			*ret_buf = io->buf;
			return n;
		}
		r = -errno;
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN && (r = wait_fd(io->fd, POLLIN)) == 0)
			continue;
		io->err = r;
		archive_set_error(a, -r, "Failed to read fd %d: %s", io->fd, strerror(-r));
		return -1;
	}
}

static la_ssize_t io_write(struct archive *a, void *userdata, const void *buf, size_t n)
{
	struct image_io *io = userdata;
	const char *p = buf;
	size_t left = n;

	while (left > 0) {
		ssize_t k = write(io->fd, p, left);
		int r;

		if (k >= 0) {
			p += k;
			left -= (size_t)k;
			continue;
		}
		r = -errno;
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN && (r = wait_fd(io->fd, POLLOUT)) == 0)
			continue;
		io->err = r;
		archive_set_error(a, -r, "Failed to write fd %d: %s", io->fd, strerror(-r));
		return -1;
	}
	return (la_ssize_t)n;
}

/* A libarchive failure as a negative errno: our read/write error, else memory, else `fallback`. */
static int archive_failure(struct archive *a, const struct image_io *io, int fallback)
{
	if (io->err < 0)
		return io->err;
	if (archive_errno(a) == ENOMEM)
		return -ENOMEM;
	return fallback;
}

static const char *archive_message(struct archive *a)
{
	const char *s = archive_error_string(a);

	return s ? s : "unknown libarchive error";
}

/* -------------------------------------------------------------------------- */
/* Writer: JSON (json.c prints what json-c prints with PRETTY | SPACED, items flat) */

/* A string, escaped to valid UTF-8 (utf8_escape); NULL becomes null. */
static int json_add_str(struct jw *w, const char *key, const char *s)
{
	_cleanup_free_ char *esc = NULL;
	const char *p;
	int r;

	if (!s) {
		jw_null(w, key);
		return 0;
	}
	/* Plain ASCII without a backslash escapes to itself: the common case. */
	for (p = s; *p && (unsigned char)*p < 0x80 && *p != '\\'; p++)
		;
	if (!*p) {
		if ((size_t)(p - s) > INT_MAX)
			return -EFBIG;
		jw_string_len(w, key, s, (size_t)(p - s));
		return 0;
	}
	r = utf8_escape(s, UTF8_IMAGE, &esc);
	if (r < 0)
		return r;
	if (strlen(esc) > INT_MAX)
		return -EFBIG;
	jw_string(w, key, esc);
	return 0;
}

/*
 * Per-mount flags as option names, as mountinfo prints them: the flag table
 * through mntcr_attr_format(). Flags without a name would be lost, so they
 * make the write fail instead. Most mounts have the flags of the mount
 * before them: those are formatted, checked and put in JSON once (per
 * thread), as jw writes an array of strings on one line: [ "rw", "relatime" ].
 */
static int flags_to_json(uint64_t attr, struct jw *w)
{
	static __thread struct {
		uint64_t attr;
		bool ok;
		size_t len;
		char json[512];
	} last;

	if (!last.ok || last.attr != attr) {
		char names[200];
		uint64_t back;
		size_t n = 0;

		last.ok = mntcr_attr_format(attr, names, sizeof(names)) >= 0 &&
			  attr_from_options(names, &back) == 0 && back == attr;
		if (!last.ok)
			return -EINVAL;
		/* names are plain ASCII (the flag table's): each one quoted as it is */
		last.json[n++] = '[';
		for (const char *p = names, *e; *p; p = *e ? e + 1 : e) {
			e = strchrnul(p, ',');
			n += (size_t)sprintf(last.json + n, "%s\"%.*s\"", p == names ? " " : ", ", (int)(e - p), p);
		}
		memcpy(last.json + n, " ]", 2);
		last.len = n + 2;
		last.attr = attr;
	}
	jw_raw(w, "flags", last.json, last.len);
	return 0;
}

/* What the manifest says besides the tree (mntcr_image_write). */
struct manifest_extra {
	char ***roots; /* per superblock, its content roots (content_plan), or NULL */
	size_t *n_roots;
};
static int content_to_json(const struct manifest_extra *x, size_t i, struct jw *w);

static bool sb_fields_ok(const struct mntcr_sb *sb)
{
	return text_ok(sb->fstype, FSTYPE_MAX, true) && text_ok(sb->source, TEXT_MAX, false) &&
	       text_ok(sb->opts, TEXT_MAX, false) && (!sb->ext_path || path_ok(sb->ext_path, true)) &&
	       (!sb->ext_root || path_ok(sb->ext_root, false));
}

/* "major:minor" into buf; returns its length. */
static size_t dev_text(uint32_t major, uint32_t minor, char buf[static 24])
{
	char digits[10];
	size_t n = 0, k;

	for (int half = 0; half < 2; half++) {
		uint32_t v = half ? minor : major;

		k = 0;
		do {
			digits[k++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		while (k > 0)
			buf[n++] = digits[--k];
		if (!half)
			buf[n++] = ':';
	}
	buf[n] = 0;
	return n;
}

/*
 * A string, left out (version 4) when it says what a missing one would:
 * dflt, its superblock's for a mount's, null for a superblock's.
 */
static int str_to_json(struct jw *w, const char *key, const char *s, const char *dflt)
{
	if (streq_ptr(s, dflt))
		return 0;
	return json_add_str(w, key, s);
}

/* Superblock i as an item of the open "superblocks" array; nothing logged (sb_write_error). */
static int sb_to_json(const struct mntcr_tree *t, const struct manifest_extra *x, size_t i, struct jw *w)
{
	const struct mntcr_sb *sb = &t->sbs[i];
	char dev[24];
	int r;

	if (!sb_fields_ok(sb))
		return -EINVAL;
	jw_object_begin(w, NULL);
	jw_string_len(w, "dev", dev, dev_text(sb->dev_major, sb->dev_minor, dev));
	if ((r = json_add_str(w, "fstype", sb->fstype)) < 0 ||
	    (r = str_to_json(w, "source", sb->source, NULL)) < 0 ||
	    (r = str_to_json(w, "options", sb->opts, NULL)) < 0)
		return r;
	jw_bool(w, "owned", sb->owned);
	if ((r = str_to_json(w, "ext_path", sb->ext_path, NULL)) < 0 ||
	    (r = str_to_json(w, "ext_root", sb->ext_root, NULL)) < 0 ||
	    (r = content_to_json(x, i, w)) < 0)
		return r;
	jw_object_end(w);
	return 0;
}

/* Why sb_to_json() refused superblock i with r, logged from the caller's thread. */
static int sb_write_error(const struct mntcr_tree *t, size_t i, int r)
{
	const struct mntcr_sb *sb = &t->sbs[i];

	if (r != -EINVAL)
		return r;
	return log_debug_errno(r,
			       "Cannot write superblock %zu (%u:%u): a field is missing, "
			       "too long or not a normalised absolute path",
			       i, sb->dev_major, sb->dev_minor);
}

/*
 * What the manifest says of where m is mounted: "/" for a namespace's
 * root, else its path below its parent's mountpoint, in normal form. The
 * absolute path is bounded as the path in older versions was.
 */
static const char *mount_point_text(const struct mntcr_tree *t, const struct mntcr_mount *m)
{
	const char *rel = mount_relpath(t, m);

	if (m->parent == IDX_NONE)
		return streq(m->point, "/") ? m->point : NULL;
	return m->path_len <= IMAGE_PATH_MAX && relpath_is_normalized(rel) ? rel : NULL;
}

static bool mount_fields_ok(const struct mntcr_tree *t, const struct mntcr_mount *m)
{
	return m->sb < t->n_sbs && path_ok(m->root, false) && m->point && mount_point_text(t, m) &&
	       text_ok(m->fstype, FSTYPE_MAX, true) && text_ok(m->source, TEXT_MAX, false) &&
	       text_ok(m->sb_opts, TEXT_MAX, false);
}

/*
 * Mount i as an item of the open "mounts" array. Nothing is logged here
 * (the items may be written on other threads): on -EINVAL, mount_write_error()
 * says why. Version 4 leaves out the keys that say what the superblock or
 * the default says: most mounts have no propagation and their
 * superblock's strings, and those keys were some 40% of the manifest.
 */
static int mount_to_json(const struct mntcr_tree *t, const struct manifest_extra *x, size_t i,
			 struct jw *w)
{
	const struct mntcr_mount *m = &t->mounts[i];
	const struct mntcr_sb *sb;
	int r;

	if (!mount_fields_ok(t, m))
		return -EINVAL;
	sb = &t->sbs[m->sb];
	jw_object_begin(w, NULL);
	jw_u64(w, "id", m->id);
	jw_u64(w, "parent_id", m->parent_id);
	jw_u64(w, "old_id", m->old_id);
	jw_u64(w, "sb", m->sb);
	if ((r = json_add_str(w, "root", m->root)) < 0 ||
	    (r = json_add_str(w, "mountpoint", mount_point_text(t, m))) < 0 ||
	    (r = flags_to_json(m->attr, w)) < 0 ||
	    (r = str_to_json(w, "fstype", m->fstype, sb->fstype)) < 0 ||
	    (r = str_to_json(w, "source", m->source, sb->source)) < 0 ||
	    (r = str_to_json(w, "sb_options", m->sb_opts, sb->opts)) < 0)
		return r;
	if (m->shared)
		jw_u64(w, "shared", m->shared);
	if (m->master)
		jw_u64(w, "master", m->master);
	if (m->propagate_from)
		jw_u64(w, "propagate_from", m->propagate_from);
	if (m->unbindable)
		jw_bool(w, "unbindable", m->unbindable);
	if ((r = json_add_str(w, "type", node_type_name(m->type))) < 0)
		return r;
	if (t->n_ns > 1 || t->n_procs > 0)
		jw_u64(w, "ns", m->ns);
	jw_object_end(w);
	return 0;
}

/* Why mount_to_json() refused mount i with r, logged from the caller's thread. */
static int mount_write_error(const struct mntcr_tree *t, size_t i, int r)
{
	const struct mntcr_mount *m = &t->mounts[i];
	_cleanup_(strbuf_release) struct strbuf buf = { 0 };
	const char *path;

	if (r != -EINVAL)
		return r;
	path = m->point ? mount_path(t, i, &buf) : NULL;
	if (mount_fields_ok(t, m)) /* then it was the flags */
		return log_debug_errno(r,
				       "Cannot write mount %" PRIu64
				       " (%s): per-mount flags 0x%" PRIx64 " have no option names",
				       m->id, path ? path : m->point, m->attr);
	return log_debug_errno(r,
			       "Cannot write mount %" PRIu64
			       " (%s): a field is missing, too long or not a normalised path",
			       m->id, path ? path : m->point ? m->point : "?");
}

/*
 * How the items of one of the manifest's arrays are written: write() puts
 * item i, logging nothing (the items may be written on other threads);
 * on failure, why() logs the reason from the caller's thread.
 */
struct item_kind {
	int (*write)(const struct mntcr_tree *t, const struct manifest_extra *x, size_t i, struct jw *w);
	int (*why)(const struct mntcr_tree *t, size_t i, int r);
};

static const struct item_kind sb_items = { sb_to_json, sb_write_error };
static const struct item_kind mount_items = { mount_to_json, mount_write_error };

/*
 * The mounts are most of the manifest, and with a tmpfs each the
 * superblocks are a third of it. Many are written on several threads,
 * each share into a buffer of its own, with a copy of the writer's state
 * inside the array; the buffers are joined in order, into the same text
 * one thread writes.
 */
struct items_share {
	const struct mntcr_tree *t;
	const struct manifest_extra *x;
	const struct item_kind *kind;
	struct jw w;
	struct strbuf b; /* w's buffer: a share never writes to a cache line of another's */
	size_t lo, hi, failed;
	int r;
} __attribute__((aligned(64)));

#define ITEMS_SHARE_MIN 2048

static void *items_share_run(void *arg)
{
	struct items_share *s = arg;

	for (size_t i = s->lo; i < s->hi && s->r == 0; i++) {
		s->r = s->kind->write(s->t, s->x, i, &s->w);
		s->failed = i;
	}
	if (s->r == 0)
		s->r = s->w.err;
	return NULL;
}

/*
 * The manifest's text, in order: the items written on other threads
 * (items_to_json) stay in buffers of their own, and the text goes on in
 * the last of them. It is hashed and written part by part, never joined.
 */
struct manifest_text {
	struct strbuf parts[1 + 2 * (PARALLEL_MAX - 1)]; /* the head, then 2 arrays' shares */
	size_t n;
};

static void manifest_text_release(struct manifest_text *text)
{
	for (size_t i = 0; i < text->n; i++)
		strbuf_release(&text->parts[i]);
	*text = (struct manifest_text){ 0 };
}

/*
 * The n items of an open array; reserve: the bytes they may take. Share 0
 * writes on into w's buffer, each other share into a new part of text
 * (after an item), and w then goes on in the last part.
 */
static int items_to_json(const struct mntcr_tree *t, const struct manifest_extra *x,
			 const struct item_kind *kind, size_t n, struct jw *w, size_t reserve,
			 struct manifest_text *text)
{
	struct items_share share[PARALLEL_MAX];
	struct strbuf *out = w->out;
	size_t k = parallel_shares(n, ITEMS_SHARE_MIN);
	int r = 0;

	assert(text->n + k - 1 <= ARRAY_SIZE(text->parts));
	for (size_t j = 0; j < k; j++) {
		share[j] = (struct items_share){ .t = t, .x = x, .kind = kind, .w = *w, .lo = n * j / k,
						 .hi = n * (j + 1) / k };
		share[j].w.out = &share[j].b;
		if (j == 0)
			share[j].b = *out;
		else
			share[j].w.has_children[w->depth - 1] = true;
		if (strbuf_reserve_exact(&share[j].b, reserve / k) < 0)
			share[j].r = -ENOMEM;
	}
	parallel_run(items_share_run, share, sizeof(share[0]), k);
	*out = share[0].b;
	for (size_t j = 1; j < k; j++)
		text->parts[text->n++] = share[j].b;
	*w = share[k - 1].w;
	w->out = k > 1 ? &text->parts[text->n - 1] : out;
	for (size_t j = 0; j < k && r == 0; j++)
		if (share[j].r < 0)
			r = kind->why(t, share[j].failed, share[j].r);
	if (r == 0 && n > 0)
		w->has_children[w->depth - 1] = true;
	return r;
}

/* Version 3: the namespaces (original id, root mount) and the processes in them. */
static int namespaces_to_json(const struct mntcr_tree *t, struct jw *w)
{
	int r;

	jw_array_begin(w, "namespaces");
	for (size_t k = 0; k < t->n_ns; k++) {
		jw_object_begin(w, NULL);
		jw_u64(w, "id", t->nss[k].id);
		jw_u64(w, "root_id", t->mounts[t->nss[k].root].id);
		jw_object_end(w);
	}
	jw_array_end(w);
	if (t->n_procs > PROCS_MAX)
		return log_debug_errno(-EFBIG, "Cannot write an image of %zu processes (at most %d)",
				       t->n_procs, PROCS_MAX);
	jw_array_begin(w, "processes");
	for (size_t i = 0; i < t->n_procs; i++) {
		const struct tree_proc *p = &t->procs[i];

		if (!text_ok(p->root, IMAGE_PATH_MAX, true) || !text_ok(p->cwd, IMAGE_PATH_MAX, true) ||
		    p->ns >= t->n_ns || p->pid <= 0)
			return log_debug_errno(-EINVAL, "Cannot write process %d: root or cwd too long", (int)p->pid);
		jw_object_begin(w, NULL);
		jw_u64(w, "pid", (uint64_t)p->pid);
		jw_u64(w, "ns", p->ns);
		if ((r = json_add_str(w, "root", p->root)) < 0 || (r = json_add_str(w, "cwd", p->cwd)) < 0)
			return r;
		jw_object_end(w);
	}
	jw_array_end(w);
	return 0;
}

/* "content", the roots whose subtrees the image holds; left out for none (null, version 4). */
static int content_to_json(const struct manifest_extra *x, size_t i, struct jw *w)
{
	int r;

	if (!x->roots || !x->n_roots[i])
		return 0;
	jw_array_begin(w, "content");
	for (size_t k = 0; k < x->n_roots[i]; k++)
		if ((r = json_add_str(w, NULL, x->roots[i][k])) < 0)
			return r;
	jw_array_end(w);
	return 0;
}

/*
 * The manifest text: JSON indented as json-c prints it, but each item of its
 * arrays on one line (flat_depth), and a final newline.
 */
/*
 * Keys, numbers and flags take some 140 bytes a mount besides its strings,
 * and a superblock's line some 95 in all (a tmpfs each; a few more with
 * options): room for a little more than that. A share that needs more
 * grows its buffer.
 */
#define MOUNT_JSON_BYTES 200
#define SB_JSON_BYTES 120

static int manifest_build(const struct mntcr_tree *t, const struct manifest_extra *x,
			  struct manifest_text *ret)
{
	struct manifest_text text = { .n = 1 };
	struct strbuf *b = &text.parts[0];
	struct jw w = { .out = b, .flat_depth = 2 };
	size_t raw = 0, len = 0;
	int r;

	if (t->n_mounts > MOUNTS_MAX || t->n_sbs > t->n_mounts)
		return log_debug_errno(-EFBIG,
				       "Cannot write an image of %zu mounts and %zu superblocks "
				       "(at most %d mounts, and no more superblocks than mounts)",
				       t->n_mounts, t->n_sbs, MOUNTS_MAX);
	if (!text_ok(t->kernel, NAME_MAX_LEN, false) ||
	    !text_ok(t->hostname, NAME_MAX_LEN, false) || t->pid < 0)
		return log_debug_errno(
			-EINVAL,
			"Cannot write an image: kernel or hostname too long, or pid negative");
	/* The escaped text is at least as long as the strings: refuse early what cannot fit. */
	for (size_t i = 0; i < t->n_mounts; i++) {
		const struct mntcr_mount *m = &t->mounts[i];

		raw += (m->root ? strlen(m->root) : 0) +
		       (m->point ? strlen(mount_relpath(t, m)) : 0) +
		       (m->source ? strlen(m->source) : 0) + (m->sb_opts ? strlen(m->sb_opts) : 0);
		if (raw > MANIFEST_MAX)
			return log_debug_errno(
				-EFBIG,
				"Cannot write an image: the manifest would exceed %zu bytes",
				MANIFEST_MAX);
	}
	/*
	 * The head: each array's first share reserves its part (items_to_json()),
	 * so that the parts lie end to end in the heap, with no reserved room
	 * between them: with the heap in huge pages, every 2 MiB page a part
	 * touches is resident whole.
	 */
	r = strbuf_reserve_exact(b, 4096);
	if (r < 0)
		return r;

	jw_object_begin(&w, NULL);
	jw_string(&w, "format", MANIFEST_FORMAT);
	jw_u64(&w, "version", IMAGE_VERSION_WRITTEN);
	if ((r = json_add_str(&w, "source", source_name(t->source))) < 0 ||
	    (r = json_add_str(&w, "kernel", t->kernel)) < 0 ||
	    (r = json_add_str(&w, "hostname", t->hostname)) < 0)
		goto fail;
	jw_u64(&w, "pid", (uint64_t)t->pid);
	jw_u64(&w, "ns_id", t->ns_id);
	jw_bool(&w, "unique_ids", t->unique_ids);
	jw_u64(&w, "root_id", t->mounts[t->root].id);
	jw_object_begin(&w, "counts");
	jw_u64(&w, "mounts", t->n_mounts);
	jw_u64(&w, "superblocks", t->n_sbs);
	jw_object_end(&w);
	jw_array_begin(&w, "superblocks");
	if ((r = items_to_json(t, x, &sb_items, t->n_sbs, &w, t->n_sbs * SB_JSON_BYTES, &text)) < 0)
		goto fail;
	jw_array_end(&w);
	jw_array_begin(&w, "mounts");
	if ((r = items_to_json(t, x, &mount_items, t->n_mounts, &w, raw + t->n_mounts * MOUNT_JSON_BYTES,
				 &text)) < 0)
		goto fail;
	jw_array_end(&w);
	if ((r = namespaces_to_json(t, &w)) < 0)
		goto fail;
	jw_object_end(&w);
	if (w.err == 0 && strbuf_add(w.out, "\n", 1) < 0)
		w.err = -ENOMEM;
	if ((r = w.err) < 0)
		goto fail;
	for (size_t i = 0; i < text.n; i++)
		len += text.parts[i].len;
	if (len > MANIFEST_MAX) {
		r = log_debug_errno(
			-EFBIG, "Cannot write an image: the manifest has %zu bytes, more than %zu",
			len, MANIFEST_MAX);
		goto fail;
	}
	*ret = text;
	return 0;
fail:
	manifest_text_release(&text);
	return r;
}

static int checksum_build(uint64_t manifest, uint64_t content, uint64_t members, char **ret,
			  size_t *ret_len)
{
	struct strbuf b = { 0 };
	struct jw w = { .out = &b, .escape_slash = true };
	char hex[2][17];

	snprintf(hex[0], sizeof(hex[0]), "%016" PRIx64, manifest);
	snprintf(hex[1], sizeof(hex[1]), "%016" PRIx64, content);
	jw_object_begin(&w, NULL);
	jw_string(&w, "algorithm", CHECKSUM_ALGORITHM);
	jw_string(&w, "manifest", hex[0]);
	jw_string(&w, "content", hex[1]);
	jw_u64(&w, "members", members);
	jw_object_end(&w);
	if (w.err == 0 && strbuf_add(&b, "\n", 1) < 0)
		w.err = -ENOMEM;
	if (w.err < 0) {
		strbuf_release(&b);
		return w.err;
	}
	*ret_len = b.len;
	*ret = strbuf_detach(&b);
	return 0;
}

/* -------------------------------------------------------------------------- */
/* Writer: the archive */

struct image_writer {
	struct archive *a;
	struct image_io io;
	uint64_t manifest_digest;
	XXH3_state_t *content; /* the content digest (digest_member) */
	uint64_t members;      /* members written so far */
	const char *member;    /* the current content member, for messages */
};

/*
 * An image written into a pipe: the pipe made as large as an unprivileged
 * process may (fs.pipe-max-size, 1 MiB by default). With the default 64
 * KiB, the writer filled it in a few writes of each 256 KiB of content it
 * read, and the scheduler then ran writer and reader in turn on one CPU:
 * `mntcr dump -o - | cat` took 1.2 s a GiB, against 0.5 s for `tar -cf - | cat`.
 */
static void pipe_widen(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		(void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

/*
 * Without content: pax restricted, plain ustar headers unless a member
 * needs more (a long or non-ASCII name, a large size), then a pax extended
 * header. With content: full pax, so that every content member keeps its
 * atime and its times' nanoseconds, with hdrcharset=BINARY: names, link
 * targets and attribute names are bytes, stored as they are whatever the
 * locale. Optionally compressed; the reader accepts every filter.
 */
static int writer_new(struct image_writer *w, bool content, unsigned flags)
{
	struct archive *a = archive_write_new();
	int r;

	if (!a)
		return -ENOMEM;
	if (content)
		r = archive_write_set_format_pax(a) != ARCHIVE_OK ||
		    archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK;
	else
		r = archive_write_set_format_pax_restricted(a) != ARCHIVE_OK;
	if (!r) {
		if (flags & MNTCR_IMAGE_ZSTD)
			r = archive_write_add_filter_zstd(a) != ARCHIVE_OK;
		else if (flags & MNTCR_IMAGE_GZIP)
			r = archive_write_add_filter_gzip(a) != ARCHIVE_OK;
		else
			r = archive_write_add_filter_none(a) != ARCHIVE_OK;
		/*
		 * Written 25 records (256,000 bytes) at a time: into a pipe, 10240-byte
		 * writes kept writer and reader contending for the pipe's lock (content
		 * dump of 1 GiB into `| cat`: 0.67 -> 0.56 s). The last block is padded to
		 * a whole record as before, so the image stays a multiple of 10240 bytes;
		 * a compressed stream is not padded at all: zstd (unlike gzip) takes the
		 * padding for a broken frame ("Unknown frame descriptor").
		 */
		if (!r)
			r = archive_write_set_bytes_per_block(a, IMAGE_BLOCK) != ARCHIVE_OK ||
			    archive_write_set_bytes_in_last_block(
				    a, (flags & (MNTCR_IMAGE_ZSTD | MNTCR_IMAGE_GZIP)) ? 1 : IMAGE_RECORD) != ARCHIVE_OK;
	}
	if (r || archive_write_open(a, &w->io, NULL, io_write, NULL) != ARCHIVE_OK) {
		r = log_debug_errno(archive_failure(a, &w->io, -EIO),
				    "Failed to set up the image writer on fd %d: %s", w->io.fd,
				    archive_message(a));
		archive_write_free(a);
		return r;
	}
	w->a = a;
	return 0;
}

/* A member whose data are the n_parts parts, in order. */
static int write_member_parts(struct image_writer *w, const char *name, const struct strbuf *parts,
			      size_t n_parts)
{
	struct archive *a = w->a;
	struct archive_entry *e = archive_entry_new();
	size_t n = 0;
	int r;

	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < n_parts; i++)
		n += parts[i].len;
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)n);
	/* mtime, uid and gid stay 0: an image is a function of the tree alone. */
	r = archive_write_header(a, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return log_debug_errno(archive_failure(a, &w->io, -EIO),
				       "Failed to write image member %s header: %s", name,
				       archive_message(a));
	for (size_t i = 0; i < n_parts; i++)
		for (size_t done = 0; done < parts[i].len;) {
			la_ssize_t k = archive_write_data(a, parts[i].buf + done, parts[i].len - done);

			if (k <= 0)
				return log_debug_errno(archive_failure(a, &w->io, -EIO),
						       "Failed to write image member %s: %s", name,
						       archive_message(a));
			done += (size_t)k;
		}
	w->members++;
	return 0;
}

static int write_member(struct image_writer *w, const char *name, const char *data, size_t n)
{
	const struct strbuf part = { .buf = (char *)data, .len = n };

	return write_member_parts(w, name, &part, 1);
}

/*
 * The content digest, version 2: for each content member, in stream order,
 * a canonical record of its metadata, then its data bytes (holes of sparse
 * files excluded). Fields are fixed-width little-endian integers or
 * length-prefixed bytes, so the record is the same whichever headers
 * libarchive chose to carry them; the reader computes it from what it
 * read. Tar headers carry a checksum but pax records do not: this is what
 * catches a flipped bit in a mode, an owner, a time or an attribute.
 */
/* A new XXH3-64 state, reset; NULL without memory. */
static XXH3_state_t *xxh3_new(void)
{
	XXH3_state_t *h = XXH3_createState();

	if (h && XXH3_64bits_reset(h) != XXH_OK) {
		XXH3_freeState(h);
		return NULL;
	}
	return h;
}

static void h_u64(XXH3_state_t *h, uint64_t v)
{
	unsigned char b[8];

	for (size_t i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	(void)xxh3_update(h, b, sizeof(b));
}

static void h_bytes(XXH3_state_t *h, const void *p, size_t n)
{
	h_u64(h, n);
	if (n)
		(void)xxh3_update(h, p, n);
}

static void h_str(XXH3_state_t *h, const char *s) { h_bytes(h, s ? s : "", s ? strlen(s) : 0); }

static void digest_member(XXH3_state_t *h, uint64_t sb, const char *rel, size_t len,
			  struct archive_entry *e, const struct content_attrs *attrs)
{
	const char *hl = archive_entry_hardlink(e);
	unsigned type = archive_entry_filetype(e);
	la_int64_t off, n, end = -1;
	uint64_t count = 0;

	h_str(h, "member");
	h_u64(h, sb);
	h_bytes(h, rel, len);
	if (hl) {
		/* A hard link's header says nothing else that is restored. */
		uint64_t hsb;
		const char *hrel;
		size_t hlen;

		h_str(h, "hardlink");
		if (content_name_parse(hl, &hsb, &hrel, &hlen) == 0)
			h_bytes(h, hrel, hlen);
		else
			h_str(h, hl);
		return;
	}
	h_u64(h, type);
	h_u64(h, archive_entry_perm(e) & 07777);
	h_u64(h, (uint64_t)archive_entry_uid(e));
	h_u64(h, (uint64_t)archive_entry_gid(e));
	h_u64(h, (uint64_t)archive_entry_mtime(e));
	h_u64(h, (uint64_t)archive_entry_mtime_nsec(e));
	h_u64(h, archive_entry_atime_is_set(e) ? (uint64_t)archive_entry_atime(e) : 0);
	h_u64(h, archive_entry_atime_is_set(e) ? (uint64_t)archive_entry_atime_nsec(e) : 0);
	h_u64(h, attrs->socket);
	if (type == AE_IFREG)
		h_u64(h, (uint64_t)archive_entry_size(e));
	if (type == AE_IFCHR || type == AE_IFBLK) {
		h_u64(h, archive_entry_rdevmajor(e));
		h_u64(h, archive_entry_rdevminor(e));
	}
	if (type == AE_IFLNK)
		h_str(h, archive_entry_symlink(e));
	h_u64(h, attrs->n);
	for (size_t i = 0; i < attrs->n; i++) {
		h_str(h, attrs->x[i].name);
		h_bytes(h, attrs->x[i].value, attrs->x[i].size);
	}
	/* Data extents: the sparse map without empty blocks, adjacent blocks joined. */
	if (type != AE_IFREG)
		return;
	if (archive_entry_sparse_reset(e) > 0) {
		la_int64_t start = -1;

		while (archive_entry_sparse_next(e, &off, &n) == ARCHIVE_OK) {
			if (n <= 0)
				continue;
			if (off == end) {
				end += n;
				continue;
			}
			if (start >= 0) {
				h_u64(h, (uint64_t)start);
				h_u64(h, (uint64_t)(end - start));
				count++;
			}
			start = off;
			end = off + n;
		}
		if (start >= 0) {
			h_u64(h, (uint64_t)start);
			h_u64(h, (uint64_t)(end - start));
			count++;
		}
	} else if (archive_entry_size(e) > 0) {
		h_u64(h, 0);
		h_u64(h, (uint64_t)archive_entry_size(e));
		count++;
	}
	h_u64(h, count);
}

int image_write_entry(struct image_writer *w, struct archive_entry *e, size_t sb)
{
	struct content_attrs attrs = { 0 };
	const char *name = archive_entry_pathname(e), *rel;
	uint64_t s;
	size_t len;
	int r;

	/* The writer checks what the reader will check. */
	if (!name || content_name_parse(name, &s, &rel, &len) < 0 || s != sb)
		return log_debug_errno(-EINVAL, "Invalid content member name %.256s",
				       name ? name : "(null)");
	r = content_attrs_get(e, &attrs);
	if (r < 0) {
		content_attrs_release(&attrs);
		return r == -EBADMSG ? -EINVAL : r;
	}
	digest_member(w->content, sb, rel, len, e, &attrs);
	content_attrs_release(&attrs);
	w->member = name;
	r = archive_write_header(w->a, e);
	/* ARCHIVE_WARN: a name that is not UTF-8, stored as bytes (hdrcharset=BINARY). */
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
		return log_debug_errno(archive_failure(w->a, &w->io, -EIO),
				       "Failed to write image member %.256s header: %s", name,
				       archive_message(w->a));
	w->members++;
	return 0;
}

int image_write_data(struct image_writer *w, const void *buf, size_t n)
{
	static const char zeros[IO_BUF_SIZE];

	while (n > 0) {
		size_t k = buf ? n : MIN(n, sizeof(zeros));
		la_ssize_t done = archive_write_data(w->a, buf ? buf : zeros, k);

		/* 0: more than the entry declared, which is our bug or a libarchive change. */
		if (done <= 0)
			return log_debug_errno(
				archive_failure(w->a, &w->io, -EIO),
				"Failed to write the data of image member %.256s: %s",
				w->member ? w->member : "?", archive_message(w->a));
		if (buf) {
			(void)xxh3_update(w->content, buf, (size_t)done);
			buf = (const char *)buf + done;
		}
		n -= (size_t)done;
	}
	return 0;
}

/* manifest.checksum: the manifest's digest, written before the content. */
static int manifest_checksum_build(uint64_t manifest, char **ret, size_t *ret_len)
{
	char hex[17];

	snprintf(hex, sizeof(hex), "%016" PRIx64, manifest);
	if (asprintf(ret,
		     "{\n  \"algorithm\": \"" CHECKSUM_ALGORITHM "\",\n  \"manifest\": \"%s\"\n}\n",
		     hex) < 0)
		return -ENOMEM;
	*ret_len = strlen(*ret);
	return 0;
}

/* Which superblocks get content, and their roots: live trees only, owned tmpfs and ramfs. */
static int content_plan(const struct mntcr_tree *t, unsigned flags, char ****ret_roots,
			size_t **ret_n, bool *ret_any)
{
	char ***roots;
	size_t *n;
	bool any = false;

	*ret_any = false;
	if ((flags & MNTCR_IMAGE_NO_CONTENT) || !t->live || t->pid <= 0)
		return 0;
	roots = calloc(t->n_sbs + 1, sizeof(*roots));
	n = calloc(t->n_sbs + 1, sizeof(*n));
	if (!roots || !n) {
		free(roots);
		free(n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n_sbs; i++) {
		int r = content_roots(t, i, &roots[i], &n[i]);

		if (r < 0) {
			for (size_t k = 0; k < i; k++)
				content_roots_free(roots[k], n[k]);
			free(roots);
			free(n);
			return r;
		}
		any = any || n[i] > 0;
	}
	*ret_roots = roots;
	*ret_n = n;
	*ret_any = any;
	return 0;
}

static int manifest_digest(const struct manifest_text *text, uint64_t *ret)
{
	XXH3_state_t *h = xxh3_new();

	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < text->n; i++)
		(void)xxh3_update(h, text->parts[i].buf, text->parts[i].len);
	*ret = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	return 0;
}

int image_writer_open(int fd, const struct mntcr_tree *t, char **const *roots,
		      const size_t *n_roots, unsigned flags, struct image_writer **ret)
{
	char magic[sizeof(IMAGE_MAGIC_PREFIX) + 16];
	_cleanup_free_ char *mchecksum = NULL;
	struct manifest_extra x = { 0 };
	struct manifest_text manifest;
	size_t mchecksum_len = 0;
	struct image_writer *w;
	int r;

	if (!t->indexed || t->root == IDX_NONE)
		return log_debug_errno(
			-EINVAL,
			"Cannot write an image of a tree that is not indexed or has no root mount");
	if (roots) {
		x.roots = (char ***)roots;
		x.n_roots = (size_t *)n_roots;
	}
	snprintf(magic, sizeof(magic), IMAGE_MAGIC_PREFIX "%u\n", IMAGE_VERSION_WRITTEN);

	/* Everything that can fail on the tree fails here, before a byte is written. */
	r = manifest_build(t, &x, &manifest);
	if (r < 0)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w) {
		manifest_text_release(&manifest);
		return -ENOMEM;
	}
	w->io.fd = fd;
	pipe_widen(fd);
	w->content = xxh3_new();
	if (!w->content || manifest_digest(&manifest, &w->manifest_digest) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = manifest_checksum_build(w->manifest_digest, &mchecksum, &mchecksum_len)) < 0)
		goto fail;
	if ((r = writer_new(w, roots != NULL, flags)) < 0 ||
	    (r = write_member(w, MAGIC_MEMBER, magic, strlen(magic))) < 0 ||
	    (r = write_member_parts(w, MANIFEST_MEMBER, manifest.parts, manifest.n)) < 0 ||
	    (r = write_member(w, MANIFEST_CHECKSUM_MEMBER, mchecksum, mchecksum_len)) < 0)
		goto fail;
	manifest_text_release(&manifest);
	*ret = w;
	return 0;
fail:
	manifest_text_release(&manifest);
	image_writer_free(w);
	return r;
}

int image_writer_finish(struct image_writer *w)
{
	_cleanup_free_ char *checksum = NULL;
	size_t checksum_len = 0;
	int r;

	r = checksum_build(w->manifest_digest, XXH3_64bits_digest(w->content), w->members, &checksum,
			   &checksum_len);
	if (r < 0)
		return r;
	r = write_member(w, CHECKSUM_MEMBER, checksum, checksum_len);
	if (r < 0)
		return r;
	/* Writes the end-of-archive blocks and flushes the last block. */
	if (archive_write_close(w->a) != ARCHIVE_OK)
		return log_debug_errno(archive_failure(w->a, &w->io, -EIO),
				       "Failed to finish the image on fd %d: %s", w->io.fd,
				       archive_message(w->a));
	return 0;
}

void image_writer_free(struct image_writer *w)
{
	if (!w)
		return;
	if (w->a)
		archive_write_free(w->a);
	if (w->content)
		XXH3_freeState(w->content);
	free(w);
}

MNTCR_EXPORT int mntcr_image_write(int fd, const struct mntcr_tree *t, unsigned flags)
{
	const unsigned known = MNTCR_IMAGE_NO_CONTENT | MNTCR_IMAGE_ZSTD | MNTCR_IMAGE_GZIP;
	struct image_writer *w = NULL;
	char ***roots = NULL;
	size_t *n_roots = NULL;
	bool content = false;
	int r;

	if (fd < 0 || !t || (flags & ~known) ||
	    ((flags & MNTCR_IMAGE_ZSTD) && (flags & MNTCR_IMAGE_GZIP)))
		return -EINVAL;
	if (!t->indexed || t->root == IDX_NONE)
		return log_debug_errno(
			-EINVAL,
			"Cannot write an image of a tree that is not indexed or has no root mount");
	r = content_plan(t, flags, &roots, &n_roots, &content);
	if (r < 0)
		return r;
	r = image_writer_open(fd, t, content ? roots : NULL, n_roots, flags, &w);
	if (r == 0 && content)
		r = content_dump(w, t, roots, n_roots);
	if (r == 0)
		r = image_writer_finish(w);
	image_writer_free(w);
	if (roots)
		for (size_t i = 0; i < t->n_sbs; i++)
			content_roots_free(roots[i], n_roots[i]);
	free(roots);
	free(n_roots);
	timing_mark("write");
	return r;
}

/* -------------------------------------------------------------------------- */
/* Reader: JSON (json.c parses what json-c's strict tokener parses) */

/*
 * Where a value is, for messages: "manifest", "manifest.counts" or
 * "manifest.mounts[3]". Formatted only when a message is printed. It also
 * keeps where in that object the last key was found: the next lookup
 * starts there (jval_get_hint), as keys are looked up mostly in text order.
 */
struct jctx {
	const char *name;
	size_t idx;
	bool indexed;
	uint32_t hint;
};

#define JCTX(n) (&(struct jctx){ .name = (n) })
#define JCTX_IDX(n, i) (&(struct jctx){ .name = (n), .idx = (i), .indexed = true })

static const char *ctx_str(const struct jctx *c, char buf[static 64])
{
	if (!c->indexed)
		return c->name;
	snprintf(buf, 64, "%s[%zu]", c->name, c->idx);
	return buf;
}

/* text as a JSON object, the arrays streams[] names handed to them as they are parsed. */
static int json_parse_streams(const char *what, char *text, size_t len,
			      const struct jstream *streams, size_t n_streams, struct jdoc *ret)
{
	const char *msg = NULL;
	size_t pos = 0;
	int r;

	if (len > INT_MAX)
		return log_debug_errno(-EBADMSG, "Invalid %s: too large", what);
	/* JSON text never holds a NUL byte (a string may hold "\u0000", which is checked later). */
	if (memchr(text, 0, len))
		return log_debug_errno(-EBADMSG, "Invalid %s: it contains a NUL byte", what);
	r = jdoc_parse_streams(text, len, streams, n_streams, ret, &msg, &pos);
	if (r == -EBADMSG && msg) /* else a stream's consumer refused an item, and said why */
		return log_debug_errno(-EBADMSG, "Invalid %s: %s at byte %zu", what, msg, pos);
	if (r < 0)
		return r;
	if (ret->root.type != JT_OBJECT) {
		jdoc_release(ret);
		return log_debug_errno(-EBADMSG, "Invalid %s: not a JSON object", what);
	}
	return 0;
}

static int json_parse_text(const char *what, char *text, size_t len, struct jdoc *ret)
{
	return json_parse_streams(what, text, len, NULL, 0, ret);
}

/*
 * The value v of key (NULL: missing), which must have JSON type `type`.
 * With `nullable`, null or a missing key give *ret = NULL. ctx names the
 * object in messages.
 */
static int jcheck(const struct jval *v, struct jctx *ctx, const char *key, enum jtype type,
		  bool nullable, const struct jval **ret)
{
	char buf[64];

	if (!v || v->type == JT_NULL) {
		if (!nullable)
			return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is missing or null",
					       ctx_str(ctx, buf), key);
		*ret = NULL;
		return 0;
	}
	if (v->type != type)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is not of type %s",
				       ctx_str(ctx, buf), key, jtype_name(type));
	*ret = v;
	return 0;
}

/* jcheck() on obj[key]. */
static int jget(const struct jval *obj, struct jctx *ctx, const char *key, enum jtype type,
		bool nullable, const struct jval **ret)
{
	return jcheck(jval_get_hint(obj, key, &ctx->hint), ctx, key, type, nullable, ret);
}

/* jget_u64() on the value v of key, found by the caller. */
static int jcheck_u64(const struct jval *v, struct jctx *ctx, const char *key, uint64_t max,
		      uint64_t *ret)
{
	char buf[64];
	int r;

	r = jcheck(v, ctx, key, JT_INT, false, &v);
	if (r < 0)
		return r;
	if (v->neg)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is negative",
				       ctx_str(ctx, buf), key);
	if (v->i > max)
		return log_debug_errno(-EBADMSG,
				       "Invalid image: %s.%s is %" PRIu64 ", more than %" PRIu64,
				       ctx_str(ctx, buf), key, v->i, max);
	*ret = v->i;
	return 0;
}

static int jget_u64(const struct jval *obj, struct jctx *ctx, const char *key, uint64_t max,
		    uint64_t *ret)
{
	return jcheck_u64(jval_get_hint(obj, key, &ctx->hint), ctx, key, max, ret);
}

static int jcheck_bool(const struct jval *v, struct jctx *ctx, const char *key, bool *ret)
{
	int r;

	r = jcheck(v, ctx, key, JT_BOOLEAN, false, &v);
	if (r < 0)
		return r;
	*ret = v->b;
	return 0;
}

static int jget_bool(const struct jval *obj, struct jctx *ctx, const char *key, bool *ret)
{
	return jcheck_bool(jval_get_hint(obj, key, &ctx->hint), ctx, key, ret);
}

/* jcheck_u64() and jcheck_bool(), but a missing key (v NULL) leaves *ret when optional. */
static int jopt_u64(const struct jval *v, struct jctx *ctx, const char *key, bool optional, uint64_t *ret)
{
	return !v && optional ? 0 : jcheck_u64(v, ctx, key, UINT64_MAX, ret);
}

static int jopt_bool(const struct jval *v, struct jctx *ctx, const char *key, bool optional, bool *ret)
{
	return !v && optional ? 0 : jcheck_bool(v, ctx, key, ret);
}

/* A JSON string equal to s, without a "\u0000" hiding a longer value. */
static bool jstr_is(const struct jval *v, const char *s)
{
	return v->n == strlen(s) && memcmp(v->s, s, v->n) == 0;
}

enum str_kind {
	STR_TEXT,	/* any bytes but NUL */
	STR_NONEMPTY,	/* at least one byte */
	STR_PATH,	/* absolute */
	STR_MOUNTPOINT, /* absolute and normalised */
	STR_POINT,      /* a mount's: absolute or relative, and normalised */
};

/*
 * Whether the JSON string v can decode to at most max bytes: decoding never
 * makes a string longer, and an escape takes at most 4 characters per byte.
 */
static bool jstr_may_fit(const struct jval *v, size_t max)
{
	return (size_t)v->n / 4 <= max;
}

/*
 * A JSON string value v, decoded (utf8_unescape_bytes) into out, which has
 * room for v->n + 1 bytes, and checked; ctx.key names it. A value of
 * another type, or too long, is refused before out is used (it may be NULL).
 */
static int jval_str_into(const struct jval *v, const struct jctx *ctx, const char *key,
			 enum str_kind kind, size_t max, char *out)
{
	char buf[64];
	size_t len;
	bool ok;
	int r;

	if (v->type != JT_STRING)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is not of type string",
				       ctx_str(ctx, buf), key);
	if (!jstr_may_fit(v, max))
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is longer than %zu bytes",
				       ctx_str(ctx, buf), key, max);
	r = utf8_unescape_bytes_into(v->s, v->n, out, &len);
	if (r == -EINVAL)
		return log_debug_errno(-EBADMSG,
				       "Invalid image: %s.%s has a bad escape or a NUL byte",
				       ctx_str(ctx, buf), key);
	if (r < 0)
		return r;
	if (len > max)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is longer than %zu bytes",
				       ctx_str(ctx, buf), key, max);
	switch (kind) {
	case STR_TEXT:
		ok = true;
		break;
	case STR_NONEMPTY:
		ok = out[0] != 0;
		break;
	case STR_PATH:
		ok = path_ok(out, false);
		break;
	case STR_MOUNTPOINT:
		ok = path_ok(out, true);
		break;
	case STR_POINT:
		ok = out[0] == '/' ? path_ok(out, true) : relpath_is_normalized(out);
		break;
	default:
		ok = false;
	}
	if (!ok)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is %s", ctx_str(ctx, buf),
				       key,
				       kind == STR_NONEMPTY	? "empty"
				       : kind == STR_MOUNTPOINT ? "not a normalised absolute path"
				       : kind == STR_POINT	? "not a normalised path"
								: "not an absolute path");
	return 0;
}

/* The same into a new string. */
static int jval_str(const struct jval *v, const struct jctx *ctx, const char *key,
		    enum str_kind kind, size_t max, char **ret)
{
	_cleanup_free_ char *d = NULL;
	int r;

	if (v->type == JT_STRING && jstr_may_fit(v, max)) { /* else refused before any use of d */
		d = malloc((size_t)v->n + 1);
		if (!d)
			return -ENOMEM;
	}
	r = jval_str_into(v, ctx, key, kind, max, d);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(d);
	return 0;
}

/* A string field, decoded into a new string; NULL for null when nullable. */
static int jget_str(const struct jval *obj, struct jctx *ctx, const char *key, bool nullable,
		    enum str_kind kind, size_t max, char **ret)
{
	const struct jval *v;
	int r;

	r = jget(obj, ctx, key, JT_STRING, nullable, &v);
	if (r < 0)
		return r;
	if (!v) {
		*ret = NULL;
		return 0;
	}
	return jval_str(v, ctx, key, kind, max, ret);
}

/* One of an item's strings in the manifest: its key, what it must be, how long at most. */
struct str_field {
	const char *key;
	enum str_kind kind;
	size_t max;
};

/*
 * An item's strings str[0..n) (field f[k]; a NULL one stays NULL), decoded
 * into one allocation *block (strings_alloc()), string k at *slot[k]: one
 * malloc and one free an item instead of n.
 */
static int strings_from_json(const struct jval *const str[], const struct str_field f[], size_t n,
			     struct jctx *ctx, char **block, char **const slot[])
{
	size_t room[_MOUNT_STR_MAX];
	int r;

	assert(n <= ARRAY_SIZE(room));
	for (size_t k = 0; k < n; k++) {
		room[k] = str[k] ? str[k]->n : MOUNT_STR_NULL;
		if (str[k] && !jstr_may_fit(str[k], f[k].max)) /* said before any allocation */
			return jval_str_into(str[k], ctx, f[k].key, f[k].kind, f[k].max, NULL);
	}
	r = strings_alloc(block, slot, room, n);
	if (r < 0)
		return r;
	for (size_t k = 0; k < n; k++)
		if (str[k] && (r = jval_str_into(str[k], ctx, f[k].key, f[k].kind, f[k].max, *slot[k])) < 0)
			return r;
	return 0;
}

/* A decimal number of at most 10 digits, no sign, no leading zero; advances *p. */
static int parse_u32_dec(const char **p, uint32_t *ret)
{
	const char *s = *p;
	uint64_t v = 0;
	size_t n = 0;

	while (s[n] >= '0' && s[n] <= '9') {
		if (n == 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[n] - '0');
		n++;
	}
	if (n == 0 || (n > 1 && s[0] == '0') || v > UINT32_MAX)
		return -EINVAL;
	*p = s + n;
	*ret = (uint32_t)v;
	return 0;
}

static int parse_dev(const char *s, uint32_t *ret_major, uint32_t *ret_minor)
{
	if (parse_u32_dec(&s, ret_major) < 0 || *s++ != ':' || parse_u32_dec(&s, ret_minor) < 0 ||
	    *s)
		return -EINVAL;
	return 0;
}

static int flags_from_json(const struct jval *arr, const struct jctx *ctx, uint64_t *ret)
{
	/* As in mountinfo: the atime mode is strict unless "relatime" or "noatime" is given. */
	uint64_t attr = MOUNT_ATTR_STRICTATIME;
	size_t n = arr->n;
	char buf[64];

	if (n > FLAGS_MAX)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.flags has %zu names",
				       ctx_str(ctx, buf), n);
	for (size_t i = 0; i < n; i++) {
		const struct jval *v = &arr->items[i];
		const char *name;

		if (v->type != JT_STRING)
			return log_debug_errno(-EBADMSG,
					       "Invalid image: %s.flags[%zu] is not a string",
					       ctx_str(ctx, buf), i);
		name = v->s;
		if (v->n != strlen(name))
			return log_debug_errno(-EBADMSG,
					       "Invalid image: %s.flags[%zu] holds a NUL byte",
					       ctx_str(ctx, buf), i);
		/* mntcr_attr_format() writes "idmapped", which is not in the flag table */
		if (streq(name, "idmapped"))
			attr |= MOUNT_ATTR_IDMAP;
		else if (attr_from_name(name, &attr) < 0)
			return log_debug_errno(
				-EBADMSG,
				"Invalid image: %s.flags[%zu] \"%.32s\" is not a mount flag",
				ctx_str(ctx, buf), i, name);
	}
	*ret = attr;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Version 2: a superblock's "content", the roots its members lie in:
 * absolute, normalised, sorted, none below another.
 */
static int content_from_json(const struct jval *o, struct jctx *ctx, struct mntcr_sb *sb)
{
	const struct jval *arr;
	char buf[64];
	size_t n;
	int r;

	r = jget(o, ctx, "content", JT_ARRAY, true, &arr);
	if (r < 0 || !arr)
		return r;
	n = arr->n;
	if (n == 0 || n > CONTENT_ROOTS_MAX)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.content has %zu roots",
				       ctx_str(ctx, buf), n);
	sb->content_roots = calloc(n, sizeof(char *));
	if (!sb->content_roots)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++) {
		r = jval_str(&arr->items[k], ctx, "content[]", STR_MOUNTPOINT, IMAGE_PATH_MAX,
			     &sb->content_roots[k]);
		if (r < 0)
			return r;
		sb->n_content_roots++;
		if (k > 0 && strcmp(sb->content_roots[k - 1], sb->content_roots[k]) >= 0)
			return log_debug_errno(-EBADMSG, "Invalid image: %s.content is not sorted",
					       ctx_str(ctx, buf));
	}
	/* None below another: look each root's ancestors up. */
	for (size_t k = 0; k < n; k++) {
		_cleanup_free_ char *p = strdup(sb->content_roots[k]);
		char *slash;

		if (!p)
			return -ENOMEM;
		while (!streq(p, "/") && (slash = strrchr(p, '/'))) {
			char *key = p;

			if (slash == p)
				p[1] = 0;
			else
				*slash = 0;
			if (bsearch(&key, sb->content_roots, n, sizeof(char *), cmp_str))
				return log_debug_errno(-EBADMSG,
						       "Invalid image: %s.content has %s below %s",
						       ctx_str(ctx, buf), sb->content_roots[k], p);
		}
	}
	return 0;
}

/* A superblock's strings in the manifest (SB_STR_*). */
static const struct str_field sb_strs[_SB_STR_MAX] = {
	[SB_STR_FSTYPE] = { "fstype", STR_NONEMPTY, FSTYPE_MAX },
	[SB_STR_SOURCE] = { "source", STR_TEXT, TEXT_MAX },
	[SB_STR_OPTS] = { "options", STR_TEXT, TEXT_MAX },
};

static int sb_from_json(const struct jval *o, size_t i, unsigned version, struct mntcr_sb *sb)
{
	struct jctx *ctx = JCTX_IDX("manifest.superblocks", i);
	const struct jval *str[_SB_STR_MAX];
	char **slot[_SB_STR_MAX];
	_cleanup_free_ char *dev = NULL;
	char buf[64];
	int r;

	if (o->type != JT_OBJECT)
		return log_debug_errno(-EBADMSG, "Invalid image: %s is not an object",
				       ctx_str(ctx, buf));
	if ((r = jget_str(o, ctx, "dev", false, STR_NONEMPTY, 32, &dev)) < 0)
		return r;
	if (parse_dev(dev, &sb->dev_major, &sb->dev_minor) < 0)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.dev \"%s\" is not MAJOR:MINOR",
				       ctx_str(ctx, buf), dev);
	/* looked up in the order the writer puts them (jctx's hint) */
	if ((r = jget(o, ctx, "fstype", JT_STRING, false, &str[SB_STR_FSTYPE])) < 0 ||
	    (r = jget(o, ctx, "source", JT_STRING, true, &str[SB_STR_SOURCE])) < 0 ||
	    (r = jget(o, ctx, "options", JT_STRING, true, &str[SB_STR_OPTS])) < 0)
		return r;
	for (size_t k = 0; k < _SB_STR_MAX; k++)
		slot[k] = sb_str(sb, k);
	if ((r = strings_from_json(str, sb_strs, _SB_STR_MAX, ctx, &sb->strings, slot)) < 0 ||
	    (r = jget_bool(o, ctx, "owned", &sb->owned)) < 0 ||
	    (r = jget_str(o, ctx, "ext_path", true, STR_MOUNTPOINT, IMAGE_PATH_MAX,
			  &sb->ext_path)) < 0 ||
	    (r = jget_str(o, ctx, "ext_root", true, STR_PATH, IMAGE_PATH_MAX, &sb->ext_root)) < 0)
		return r;
	/* Version 1 has no content; an unknown key is ignored there as any other. */
	if (version >= IMAGE_VERSION_CONTENT)
		return content_from_json(o, ctx, sb);
	return 0;
}

/* A mount's keys, in the order the writer writes them (mount_to_json()). */
enum {
	MK_ID,
	MK_PARENT_ID,
	MK_OLD_ID,
	MK_SB,
	MK_ROOT,
	MK_MOUNTPOINT,
	MK_FLAGS,
	MK_FSTYPE,
	MK_SOURCE,
	MK_SB_OPTIONS,
	MK_SHARED,
	MK_MASTER,
	MK_PROPAGATE_FROM,
	MK_UNBINDABLE,
	MK_TYPE,
	MK_NS,
	_MK_MAX
};

static const char *const mount_keys[_MK_MAX] = {
	[MK_ID] = "id",
	[MK_PARENT_ID] = "parent_id",
	[MK_OLD_ID] = "old_id",
	[MK_SB] = "sb",
	[MK_ROOT] = "root",
	[MK_MOUNTPOINT] = "mountpoint",
	[MK_FLAGS] = "flags",
	[MK_FSTYPE] = "fstype",
	[MK_SOURCE] = "source",
	[MK_SB_OPTIONS] = "sb_options",
	[MK_SHARED] = "shared",
	[MK_MASTER] = "master",
	[MK_PROPAGATE_FROM] = "propagate_from",
	[MK_UNBINDABLE] = "unbindable",
	[MK_TYPE] = "type",
	[MK_NS] = "ns",
};

/* Which of them a mount's string k (MOUNT_STR_*) is. */
static const unsigned mount_str_key[_MOUNT_STR_MAX] = {
	[MOUNT_STR_ROOT] = MK_ROOT,
	[MOUNT_STR_MOUNTPOINT] = MK_MOUNTPOINT,
	[MOUNT_STR_FSTYPE] = MK_FSTYPE,
	[MOUNT_STR_SOURCE] = MK_SOURCE,
	[MOUNT_STR_SB_OPTS] = MK_SB_OPTIONS,
};

/* A mount's strings in the manifest (MOUNT_STR_*). */
static const struct str_field mount_strs[_MOUNT_STR_MAX] = {
	[MOUNT_STR_ROOT] = { "root", STR_PATH, IMAGE_PATH_MAX },
	[MOUNT_STR_MOUNTPOINT] = { "mountpoint", STR_POINT, IMAGE_PATH_MAX },
	[MOUNT_STR_FSTYPE] = { "fstype", STR_NONEMPTY, FSTYPE_MAX },
	[MOUNT_STR_SOURCE] = { "source", STR_TEXT, TEXT_MAX },
	[MOUNT_STR_SB_OPTS] = { "sb_options", STR_TEXT, TEXT_MAX },
};

/*
 * What mounts_link() finishes of a mount, once the superblocks and
 * namespaces are read: LINK_NS, it has "ns"; LINK_SB_STR(k), version 4
 * only, it has no string k (MOUNT_STR_FSTYPE and after), which is then its
 * superblock's.
 */
#define LINK_NS 1u
#define LINK_SB_STR(k) (2u << ((k) - MOUNT_STR_FSTYPE))

/*
 * Mount i of the manifest, as it is parsed. Its superblock and namespace
 * are numbers checked by mounts_link() once all is read: the superblocks
 * and namespaces may come later in the text. *ret_link: LINK_*, what
 * mounts_link() is to finish. From version 4, a missing fstype, source or
 * sb_options is the superblock's, and missing propagation keys say none.
 */
static int mount_from_json(const struct jval *o, size_t i, unsigned version, struct mntcr_mount *m,
			   unsigned *ret_link)
{
	struct jctx *ctx = JCTX_IDX("manifest.mounts", i);
	const struct jval *val[_MK_MAX], *flags, *type, *str[_MOUNT_STR_MAX];
	char **slot[_MOUNT_STR_MAX];
	bool brief = version >= IMAGE_VERSION_BRIEF;
	unsigned link = 0;
	uint64_t old_id, sb;
	char buf[64];
	int r;

	if (o->type != JT_OBJECT)
		return log_debug_errno(-EBADMSG, "Invalid image: %s is not an object",
				       ctx_str(ctx, buf));
	/* every key at once: a search for each key version 4 leaves out found nothing */
	jval_get_many(o, mount_keys, _MK_MAX, val);
	if ((r = jcheck_u64(val[MK_ID], ctx, "id", UINT64_MAX, &m->id)) < 0 ||
	    (r = jcheck_u64(val[MK_PARENT_ID], ctx, "parent_id", UINT64_MAX, &m->parent_id)) < 0 ||
	    (r = jcheck_u64(val[MK_OLD_ID], ctx, "old_id", UINT32_MAX, &old_id)) < 0 ||
	    (r = jcheck_u64(val[MK_SB], ctx, "sb", UINT64_MAX, &sb)) < 0 ||
	    (r = jcheck(val[MK_FLAGS], ctx, "flags", JT_ARRAY, false, &flags)) < 0 ||
	    (r = flags_from_json(flags, ctx, &m->attr)) < 0)
		return r;
	m->old_id = (uint32_t)old_id;
	m->sb = (size_t)sb;
	/* root and mountpoint must be strings, fstype too up to version 3; source and sb_options may be null */
	for (size_t k = 0; k < _MOUNT_STR_MAX; k++) {
		const struct jval *v = val[mount_str_key[k]];

		str[k] = NULL;
		if (brief && !v && k >= MOUNT_STR_FSTYPE)
			link |= LINK_SB_STR(k);
		else if ((r = jcheck(v, ctx, mount_keys[mount_str_key[k]], JT_STRING,
				     k > MOUNT_STR_FSTYPE, &str[k])) < 0)
			return r;
	}
	for (size_t k = 0; k < _MOUNT_STR_MAX; k++)
		slot[k] = mount_str(m, k);
	r = strings_from_json(str, mount_strs, _MOUNT_STR_MAX, ctx, &m->strings, slot);
	if (r < 0)
		return r;
	/* relative to the parent's from version 5 */
	if (version < IMAGE_VERSION_REL && m->point[0] != '/')
		return log_debug_errno(-EBADMSG, "Invalid image: %s.mountpoint is not an absolute path",
				       ctx_str(ctx, buf));
	/* missing from version 4: no propagation */
	if ((r = jopt_u64(val[MK_SHARED], ctx, "shared", brief, &m->shared)) < 0 ||
	    (r = jopt_u64(val[MK_MASTER], ctx, "master", brief, &m->master)) < 0 ||
	    (r = jopt_u64(val[MK_PROPAGATE_FROM], ctx, "propagate_from", brief, &m->propagate_from)) < 0 ||
	    (r = jopt_bool(val[MK_UNBINDABLE], ctx, "unbindable", brief, &m->unbindable)) < 0 ||
	    (r = jcheck(val[MK_TYPE], ctx, "type", JT_STRING, true, &type)) < 0)
		return r;
	if (val[MK_NS]) {
		uint64_t ns;

		if ((r = jcheck_u64(val[MK_NS], ctx, "ns", UINT64_MAX, &ns)) < 0)
			return r;
		m->ns = (size_t)ns;
		link |= LINK_NS;
	}
	*ret_link = link;
	if (!type)
		m->type = NODE_UNKNOWN;
	else if (jstr_is(type, "dir"))
		m->type = NODE_DIR;
	else if (jstr_is(type, "file"))
		m->type = NODE_FILE;
	else
		return log_debug_errno(
			-EBADMSG, "Invalid image: %s.type is neither \"dir\", \"file\" nor null",
			ctx_str(ctx, buf));
	return 0;
}

/*
 * What mount_from_json() left to check, the superblocks and namespaces
 * known: each mount's superblock exists (its device is copied from it, and
 * the strings it left out), and its namespace too, which it must name when
 * there are several or processes (link[i]: mount i's LINK_*).
 */
static int mounts_link(struct mntcr_tree *t, const unsigned *link)
{
	bool ns_needed = t->n_ns > 1 || t->n_procs > 0;
	size_t ns_max = t->n_ns ? t->n_ns - 1 : 0;
	char buf[64];

	for (size_t i = 0; i < t->n_mounts; i++) {
		struct mntcr_mount *m = &t->mounts[i];
		struct jctx *ctx = JCTX_IDX("manifest.mounts", i);

		if (m->sb >= t->n_sbs)
			return log_debug_errno(-EBADMSG,
					       "Invalid image: %s.sb is %zu but there are %zu superblocks",
					       ctx_str(ctx, buf), m->sb, t->n_sbs);
		m->dev_major = t->sbs[m->sb].dev_major;
		m->dev_minor = t->sbs[m->sb].dev_minor;
		/* the superblock's own strings: they live as long as the tree */
		for (size_t k = MOUNT_STR_FSTYPE; k < _MOUNT_STR_MAX; k++)
			if (link[i] & LINK_SB_STR(k))
				*mount_str(m, k) = *sb_str(&t->sbs[m->sb], k - MOUNT_STR_FSTYPE);
		if (ns_needed && !(link[i] & LINK_NS))
			return log_debug_errno(-EBADMSG, "Invalid image: %s.ns is missing or null",
					       ctx_str(ctx, buf));
		if ((link[i] & LINK_NS) && m->ns > ns_max)
			return log_debug_errno(-EBADMSG, "Invalid image: %s.ns is %zu, more than %zu",
					       ctx_str(ctx, buf), m->ns, ns_max);
	}
	return 0;
}

/*
 * Mounts as they are converted: the parser's, moved into the tree once all
 * is read, or a second thread's (jsplit), appended to the parser's.
 */
struct mount_batch {
	unsigned version;
	struct mntcr_mount *m;
	unsigned *link; /* per mount: LINK_* (mounts_link) */
	size_t n, cap, cap_link;
	size_t raw;     /* of them, taken from their lines (mount_raw) */
};

static void batch_drop(void *userdata)
{
	struct mount_batch *b = userdata;

	for (size_t i = 0; i < b->n; i++)
		mount_clear(&b->m[i]);
	free(b->m);
	free(b->link);
	*b = (struct mount_batch){ .version = b->version };
}

/* Mount i of the manifest, converted into b. */
static int batch_item(void *userdata, size_t i, const struct jval *v)
{
	struct mount_batch *b = userdata;
	struct mntcr_mount m = { 0 };
	unsigned link = 0;
	int r;

	if (i >= MOUNTS_MAX)
		return log_debug_errno(-EBADMSG, "Invalid manifest: more than %d mounts", MOUNTS_MAX);
	r = mount_from_json(v, i, b->version, &m, &link);
	if (r == 0)
		r = GROW(b->m, b->cap, b->n + 1);
	if (r == 0)
		r = GROW(b->link, b->cap_link, b->n + 1);
	if (r < 0) {
		mount_clear(&m);
		return r;
	}
	b->link[b->n] = link;
	b->m[b->n++] = m;
	return 0;
}

/*
 * A superblock or mount as the writer lays it out (sb_to_json(),
 * mount_to_json(), one per line), taken from the text without the general
 * parser (jstream's raw): its keys in the writer's order, numbers of at
 * most 19 digits and no leading zero, strings of printable ASCII without
 * escapes. Its values go into an object like the one the parser builds of
 * that text, and sbs_item() or batch_item() makes of it what it makes of
 * the parsed one, errors included. Anything else (the older layout, other
 * strings, a hostile text) is left to the parser.
 */
struct scan {
	const char *p, *end;
};

static bool scan_lit(struct scan *c, const char *s, size_t n)
{
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
		return false;
	c->p += n;
	return true;
}
#define SCAN_LIT(c, s) scan_lit(c, s, sizeof(s) - 1)

static bool scan_u64(struct scan *c, struct jval *v)
{
	const char *q = c->p;
	uint64_t u = 0;

	while (q < c->end && *q >= '0' && *q <= '9' && q - c->p < 19)
		u = u * 10 + (uint64_t)(*q++ - '0');
	if (q == c->p || (q < c->end && *q >= '0' && *q <= '9') || (*c->p == '0' && q - c->p > 1))
		return false; /* none, 20 digits or more, or a leading zero */
	*v = (struct jval){ .type = JT_INT, .i = u };
	c->p = q;
	return true;
}

/* A string, or null. */
static bool scan_str(struct scan *c, struct jval *v)
{
	const char *q;

	if (SCAN_LIT(c, "null")) {
		*v = (struct jval){ .type = JT_NULL };
		return true;
	}
	if (c->p >= c->end || *c->p != '"')
		return false;
	for (q = c->p + 1; q < c->end && *q != '"'; q++)
		if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f || *q == '\\')
			return false;
	if (q >= c->end || q - (c->p + 1) > UINT32_MAX)
		return false;
	*v = (struct jval){ .type = JT_STRING, .n = (uint32_t)(q - (c->p + 1)), .s = c->p + 1 };
	c->p = q + 1;
	return true;
}

static bool scan_bool(struct scan *c, struct jval *v)
{
	if (SCAN_LIT(c, "true"))
		*v = (struct jval){ .type = JT_BOOLEAN, .b = true };
	else if (SCAN_LIT(c, "false"))
		*v = (struct jval){ .type = JT_BOOLEAN, .b = false };
	else
		return false;
	return true;
}

#define FLAG_NAME_MAX 31

/*
 * The values of the one array a line has, and (flags) their text copied
 * with a NUL, as flags_from_json() reads names.
 */
struct scan_room {
	struct jval items[FLAGS_MAX];
	char names[FLAGS_MAX][FLAG_NAME_MAX + 1];
};

/*
 * [ "string", ... ], at most FLAGS_MAX of them, or null; copied: each short
 * and copied into room's names.
 */
static bool scan_strings(struct scan *c, struct jval *v, struct scan_room *room, bool copied)
{
	uint32_t n = 0;

	if (SCAN_LIT(c, "null")) {
		*v = (struct jval){ .type = JT_NULL };
		return true;
	}
	if (!SCAN_LIT(c, "[ "))
		return false;
	if (!SCAN_LIT(c, "]"))
		do {
			struct jval *it = &room->items[n];

			if (n == FLAGS_MAX || !scan_str(c, it) || it->type != JT_STRING ||
			    (copied && it->n > FLAG_NAME_MAX))
				return false;
			if (copied) {
				memcpy(room->names[n], it->s, it->n);
				room->names[n][it->n] = 0;
				it->s = room->names[n];
			}
			n++;
		} while (SCAN_LIT(c, ", "));
	if (n > 0 && !SCAN_LIT(c, " ]"))
		return false;
	*v = (struct jval){ .type = JT_ARRAY, .n = n, .items = room->items };
	return true;
}

enum scan_kind {
	SCAN_U64,
	SCAN_STR,   /* or null */
	SCAN_BOOL,
	SCAN_NAMES, /* an array of flag names, or null */
	SCAN_STRS,  /* an array of strings, or null */
};

struct scan_field {
	const char *lead; /* from the previous value (or the line's start) to this one */
	size_t lead_len;
	const char *key;
	enum scan_kind kind;
	bool optional; /* the writer may leave it out */
};
#define SCAN_FIELD(lead, key, kind) { lead, sizeof(lead) - 1, key, kind, false }
#define SCAN_OPTIONAL(lead, key, kind) { lead, sizeof(lead) - 1, key, kind, true }

/*
 * An object laid out as fields says, closed by " }": its members into
 * members (at most as many as fields), their number; 0 when the text is
 * laid out otherwise. Whether a field the writer may leave out can be
 * missing is for the item's converter to say (the version decides).
 */
static size_t scan_object(struct scan *c, const struct scan_field *fields, size_t n_fields,
			  struct jmember *members, struct scan_room *room)
{
	size_t n = 0;

	for (size_t f = 0; f < n_fields; f++) {
		struct jval *v = &members[n].v;
		bool ok;

		if (!scan_lit(c, fields[f].lead, fields[f].lead_len)) {
			if (fields[f].optional)
				continue;
			return 0;
		}
		members[n].key = fields[f].key;
		switch (fields[f].kind) {
		case SCAN_U64:
			ok = scan_u64(c, v);
			break;
		case SCAN_STR:
			ok = scan_str(c, v);
			break;
		case SCAN_BOOL:
			ok = scan_bool(c, v);
			break;
		default:
			ok = scan_strings(c, v, room, fields[f].kind == SCAN_NAMES);
			break;
		}
		if (!ok)
			return 0;
		n++;
	}
	return SCAN_LIT(c, " }") ? n : 0;
}

#define SCAN_FIELDS_MAX 16

/*
 * An item (jstream's raw) scanned as fields lay it out and handed to
 * item() as the object the parser would make of it: 1 when taken (*ret_end
 * after it, one more in *taken), 0 when the text is laid out otherwise,
 * or item()'s error.
 */
static int scan_item(const struct scan_field *fields, size_t n_fields,
		     int (*item)(void *userdata, size_t idx, const struct jval *v), void *userdata,
		     size_t i, const char *p, const char *end, const char **ret_end, size_t *taken)
{
	struct jmember members[SCAN_FIELDS_MAX];
	struct scan_room room;
	struct scan c = { p, end };
	size_t n;
	int r;

	assert(n_fields <= SCAN_FIELDS_MAX);
	n = scan_object(&c, fields, n_fields, members, &room);
	if (n == 0)
		return 0;
	r = item(userdata, i, &(const struct jval){ .type = JT_OBJECT, .n = (uint32_t)n, .members = members });
	if (r < 0)
		return r;
	(*taken)++;
	*ret_end = c.p;
	return 1;
}

/* MNTCR_MANIFEST_RAW=0 (the tests): every superblock and mount through the general parser. */
static bool raw_enabled(void)
{
	const char *e = getenv("MNTCR_MANIFEST_RAW");

	return !e || !streq(e, "0");
}

static int mount_raw(void *userdata, size_t i, const char *p, const char *end, const char **ret_end)
{
	static const struct scan_field fields[] = {
		SCAN_FIELD("{ \"id\": ", "id", SCAN_U64),
		SCAN_FIELD(", \"parent_id\": ", "parent_id", SCAN_U64),
		SCAN_FIELD(", \"old_id\": ", "old_id", SCAN_U64),
		SCAN_FIELD(", \"sb\": ", "sb", SCAN_U64),
		SCAN_FIELD(", \"root\": ", "root", SCAN_STR),
		SCAN_FIELD(", \"mountpoint\": ", "mountpoint", SCAN_STR),
		SCAN_FIELD(", \"flags\": ", "flags", SCAN_NAMES),
		/* version 4 leaves these out when they say what the superblock or the default says */
		SCAN_OPTIONAL(", \"fstype\": ", "fstype", SCAN_STR),
		SCAN_OPTIONAL(", \"source\": ", "source", SCAN_STR),
		SCAN_OPTIONAL(", \"sb_options\": ", "sb_options", SCAN_STR),
		SCAN_OPTIONAL(", \"shared\": ", "shared", SCAN_U64),
		SCAN_OPTIONAL(", \"master\": ", "master", SCAN_U64),
		SCAN_OPTIONAL(", \"propagate_from\": ", "propagate_from", SCAN_U64),
		SCAN_OPTIONAL(", \"unbindable\": ", "unbindable", SCAN_BOOL),
		SCAN_FIELD(", \"type\": ", "type", SCAN_STR),
		SCAN_OPTIONAL(", \"ns\": ", "ns", SCAN_U64), /* only with namespaces or processes */
	};
	return scan_item(fields, ARRAY_SIZE(fields), batch_item, userdata, i, p, end, ret_end,
			 &((struct mount_batch *)userdata)->raw);
}

/*
 * The manifest's superblocks and mounts, converted as the parser hands
 * them over (jstream): the document never holds them whole.
 */
struct manifest_stream {
	struct mntcr_tree *t;
	unsigned version;
	size_t raw; /* superblocks taken from their lines (sb_raw) */
};

static int sbs_begin(void *userdata)
{
	struct mntcr_tree *t = ((struct manifest_stream *)userdata)->t;

	for (size_t i = 0; i < t->n_sbs; i++)
		sb_clear(&t->sbs[i]);
	t->n_sbs = 0;
	return 0;
}

static int sbs_item(void *userdata, size_t i, const struct jval *v)
{
	struct manifest_stream *ms = userdata;
	struct mntcr_sb sb = { 0 };
	int r;

	if (i >= MOUNTS_MAX)
		return log_debug_errno(-EBADMSG, "Invalid manifest: more than %d superblocks",
				       MOUNTS_MAX);
	r = sb_from_json(v, i, ms->version, &sb);
	if (r == 0)
		r = tree_add_sb(ms->t, &sb);
	if (r < 0)
		sb_clear(&sb);
	return r;
}

/* A superblock as the writer lays it out (sb_to_json()): as mount_raw() does for a mount. */
static int sb_raw(void *userdata, size_t i, const char *p, const char *end, const char **ret_end)
{
	static const struct scan_field fields[] = {
		SCAN_FIELD("{ \"dev\": ", "dev", SCAN_STR),
		SCAN_FIELD(", \"fstype\": ", "fstype", SCAN_STR),
		/* version 4 leaves out what is null */
		SCAN_OPTIONAL(", \"source\": ", "source", SCAN_STR),
		SCAN_OPTIONAL(", \"options\": ", "options", SCAN_STR),
		SCAN_FIELD(", \"owned\": ", "owned", SCAN_BOOL),
		SCAN_OPTIONAL(", \"ext_path\": ", "ext_path", SCAN_STR),
		SCAN_OPTIONAL(", \"ext_root\": ", "ext_root", SCAN_STR),
		SCAN_OPTIONAL(", \"content\": ", "content", SCAN_STRS), /* from version 2 */
	};
	return scan_item(fields, ARRAY_SIZE(fields), sbs_item, userdata, i, p, end, ret_end,
			 &((struct manifest_stream *)userdata)->raw);
}

static int batch_begin(void *userdata)
{
	batch_drop(userdata);
	return 0;
}

/*
 * A large manifest's mounts are shared with a second thread (jsplit), from
 * the first mount that starts past the middle as the writer lays the text
 * out: one mount per line, or (images written before that) one key per
 * line. The parser checks the guess, and takes them only where it meets them.
 */
#define SPLIT_MIN ((size_t)1 << 20) /* bytes of manifest per thread: some 3,500 mounts */

static const char *mounts_split_guess(const char *text, size_t len)
{
	static const struct {
		const char *next; /* from the end of a mount to the start of the next */
		size_t brace;	  /* where in it the next one's '{' is */
	} layouts[] = {
		{ " },\n    { \"", 8 },
		{ "\n    },\n    {\n", 12 },
	};

	/* Past the middle, the mounts: they are most of the text (else the guess fails, and costs little). */
	if (parallel_shares(len, SPLIT_MIN) < 2)
		return NULL;
	for (size_t k = 0; k < ARRAY_SIZE(layouts); k++) {
		const char *hit = memmem(text + len / 2, len - len / 2, layouts[k].next,
					 strlen(layouts[k].next));

		if (hit)
			return hit + layouts[k].brace;
	}
	return NULL;
}

/* The helper's mounts follow the parser's: 0, or 1 to have them parsed again here. */
static int mounts_join(void *userdata, void *helper_userdata, size_t n)
{
	struct mount_batch *b = userdata, *h = helper_userdata;
	size_t base = b->n;
	int r;

	assert(n == h->n);
	if (base + n > MOUNTS_MAX)
		return 1; /* the parse here meets the limit, and says so */
	r = GROW(b->m, b->cap, base + n);
	if (r == 0)
		r = GROW(b->link, b->cap_link, base + n);
	if (r < 0)
		return r;
	memcpy(b->m + base, h->m, n * sizeof(*h->m));
	memcpy(b->link + base, h->link, n * sizeof(*h->link));
	b->n += n;
	b->raw += h->raw;
	h->n = 0;
	batch_drop(h);
	log_debug("Manifest: mounts %zu to %zu were parsed on a second thread", base, base + n - 1);
	return 0;
}

/* Version 3: "namespaces" (at least one, at most one per mount) and "processes". */
static int namespaces_from_json(const struct jval *root, uint64_t n_mounts, struct mntcr_tree *t,
				uint64_t **ret_roots)
{
	struct jctx *top = JCTX("manifest");
	const struct jval *nss, *procs;
	uint64_t *roots;
	char buf[64];
	int r;

	if ((r = jget(root, top, "namespaces", JT_ARRAY, false, &nss)) < 0 ||
	    (r = jget(root, top, "processes", JT_ARRAY, false, &procs)) < 0)
		return r;
	if (nss->n == 0 || nss->n > n_mounts)
		return log_debug_errno(-EBADMSG, "Invalid manifest: %zu namespaces for %" PRIu64 " mounts",
				       (size_t)nss->n, n_mounts);
	if (procs->n > PROCS_MAX)
		return log_debug_errno(-EBADMSG, "Invalid manifest: %zu processes (at most %d)",
				       (size_t)procs->n, PROCS_MAX);
	if ((r = tree_set_namespaces(t, nss->n)) < 0)
		return r;
	roots = calloc(nss->n, sizeof(*roots));
	if (!roots)
		return -ENOMEM;
	for (size_t k = 0; k < nss->n; k++) {
		struct jctx *ctx = JCTX_IDX("manifest.namespaces", k);
		const struct jval *o = &nss->items[k];

		if (o->type != JT_OBJECT) {
			free(roots);
			return log_debug_errno(-EBADMSG, "Invalid image: %s is not an object", ctx_str(ctx, buf));
		}
		if ((r = jget_u64(o, ctx, "id", UINT64_MAX, &t->nss[k].id)) < 0 ||
		    (r = jget_u64(o, ctx, "root_id", UINT64_MAX, &roots[k])) < 0) {
			free(roots);
			return r;
		}
	}
	for (size_t i = 0; i < procs->n; i++) {
		struct jctx *ctx = JCTX_IDX("manifest.processes", i);
		const struct jval *o = &procs->items[i];
		char *proot = NULL, *cwd = NULL;
		uint64_t pid, ns;

		if (o->type != JT_OBJECT)
			r = log_debug_errno(-EBADMSG, "Invalid image: %s is not an object", ctx_str(ctx, buf));
		else if ((r = jget_u64(o, ctx, "pid", INT_MAX, &pid)) == 0 &&
			 (r = jget_u64(o, ctx, "ns", nss->n - 1, &ns)) == 0 &&
			 (r = jget_str(o, ctx, "root", false, STR_NONEMPTY, IMAGE_PATH_MAX, &proot)) == 0 &&
			 (r = jget_str(o, ctx, "cwd", false, STR_NONEMPTY, IMAGE_PATH_MAX, &cwd)) == 0)
			r = tree_add_proc(t, (pid_t)pid, (size_t)ns, TAKE_PTR(proot), TAKE_PTR(cwd));
		free(proot);
		free(cwd);
		if (r < 0) {
			free(roots);
			return r;
		}
	}
	*ret_roots = roots;
	return 0;
}

static int manifest_parse(char *text, size_t len, unsigned version, struct mntcr_tree **ret)
{
	struct jctx *top = JCTX("manifest"), *cctx = JCTX("manifest.counts");
	const struct jval *root, *v, *counts, *sbs, *mounts;
	_cleanup_free_ char *source = NULL;
	uint64_t u, n_mounts, n_sbs, root_id;
	_cleanup_free_ uint64_t *ns_roots = NULL;
	struct mntcr_tree *t = NULL;
	struct manifest_stream ms = { .version = version };
	struct mount_batch batch = { .version = version }, helper = { .version = version };
	const struct jsplit split = { .at = mounts_split_guess(text, len), .item = batch_item,
				      .join = mounts_join, .drop = batch_drop, .helper_userdata = &helper };
	struct jdoc doc = { 0 };
	int r;

	r = tree_new(&t);
	if (r < 0)
		return r;
	ms.t = t;
	r = json_parse_streams("manifest", text, len,
			       (const struct jstream[]){
				       { "superblocks", sbs_begin, sbs_item, &ms, NULL, raw_enabled() ? sb_raw : NULL },
				       { "mounts", batch_begin, batch_item, &batch, split.at ? &split : NULL,
					 raw_enabled() ? mount_raw : NULL },
			       },
			       2, &doc);
	log_debug("Manifest: %zu of %zu mounts and %zu of %zu superblocks read from their lines as "
		  "the writer lays them out",
		  batch.raw, batch.n, ms.raw, t->n_sbs);
	if (r < 0)
		goto fail;
	root = &doc.root;
	if ((r = jget(root, top, "format", JT_STRING, false, &v)) < 0)
		goto fail;
	if (!jstr_is(v, MANIFEST_FORMAT)) {
		r = log_debug_errno(-EBADMSG, "Invalid manifest: format is not \"%s\"",
				    MANIFEST_FORMAT);
		goto fail;
	}
	if ((r = jget_u64(root, top, "version", UINT64_MAX, &u)) < 0)
		goto fail;
	if (u != version) {
		r = log_debug_errno(-EBADMSG,
				    "Invalid manifest: version %" PRIu64
				    " but the image is version %u",
				    u, version);
		goto fail;
	}

	/* The arrays were converted as they were parsed: their lengths are the counts. */
	if ((r = jget(root, top, "counts", JT_OBJECT, false, &counts)) < 0 ||
	    (r = jget_u64(counts, cctx, "mounts", MOUNTS_MAX, &n_mounts)) < 0 ||
	    (r = jget_u64(counts, cctx, "superblocks", n_mounts, &n_sbs)) < 0 ||
	    (r = jget(root, top, "superblocks", JT_ARRAY, false, &sbs)) < 0 ||
	    (r = jget(root, top, "mounts", JT_ARRAY, false, &mounts)) < 0)
		goto fail;
	if (n_mounts == 0) {
		r = log_debug_errno(-EBADMSG, "Invalid manifest: no mounts");
		goto fail;
	}
	if (mounts->n != n_mounts || sbs->n != n_sbs) {
		r = log_debug_errno(-EBADMSG,
				    "Invalid manifest: counts say %" PRIu64 " mounts and %" PRIu64
				    " superblocks, the arrays have %zu and %zu",
				    n_mounts, n_sbs, (size_t)mounts->n, (size_t)sbs->n);
		goto fail;
	}
	assert(mounts->streamed && sbs->streamed && batch.n == n_mounts && t->n_sbs == n_sbs);
	/* the mounts become the tree's */
	t->mounts = TAKE_PTR(batch.m);
	t->cap_mounts = batch.cap;
	t->n_mounts = batch.n;
	batch.n = 0;

	if ((r = jget_str(root, top, "source", true, STR_TEXT, 32, &source)) < 0)
		goto fail;
	if (!source)
		t->source = MNTCR_SOURCE_NONE;
	else if (streq(source, "mountinfo"))
		t->source = MNTCR_SOURCE_MOUNTINFO;
	else if (streq(source, "statmount"))
		t->source = MNTCR_SOURCE_STATMOUNT;
	else {
		r = log_debug_errno(-EBADMSG, "Invalid manifest: source is neither \"mountinfo\", "
					      "\"statmount\" nor null");
		goto fail;
	}
	if ((r = jget_str(root, top, "kernel", true, STR_TEXT, NAME_MAX_LEN, &t->kernel)) < 0 ||
	    (r = jget_str(root, top, "hostname", true, STR_TEXT, NAME_MAX_LEN, &t->hostname)) < 0 ||
	    (r = jget_u64(root, top, "pid", INT_MAX, &u)) < 0)
		goto fail;
	t->pid = (pid_t)u;
	if ((r = jget_u64(root, top, "ns_id", UINT64_MAX, &t->ns_id)) < 0 ||
	    (r = jget_bool(root, top, "unique_ids", &t->unique_ids)) < 0 ||
	    (r = jget_u64(root, top, "root_id", UINT64_MAX, &root_id)) < 0)
		goto fail;
	if (version >= IMAGE_VERSION_NS && (r = namespaces_from_json(root, n_mounts, t, &ns_roots)) < 0)
		goto fail;
	if ((r = mounts_link(t, batch.link)) < 0)
		goto fail;
	/* The document is done with: free it before indexing (peak memory). */
	jdoc_release(&doc);
	batch_drop(&batch);
	/* Duplicate ids, missing parents, cycles, several roots: -EBADMSG from tree_index(). */
	r = tree_index(t);
	if (r < 0) {
		log_debug_errno(r, "Invalid manifest: the mount table is inconsistent");
		goto fail;
	}
	if (t->root == IDX_NONE || t->mounts[t->root].id != root_id) {
		r = log_debug_errno(-EBADMSG,
				    "Invalid manifest: root_id %" PRIu64 " is not the root mount",
				    root_id);
		goto fail;
	}
	/* mountpoints relative to their parent's: the absolute paths bounded as a version 4 path is */
	for (size_t i = 0; i < t->n_mounts; i++)
		if (t->mounts[i].path_len > IMAGE_PATH_MAX) {
			r = log_debug_errno(-EBADMSG,
					    "Invalid manifest: the mountpoint of mount %" PRIu64
					    " is longer than %d bytes",
					    t->mounts[i].id, IMAGE_PATH_MAX);
			goto fail;
		}
	for (size_t k = 0; ns_roots && k < t->n_ns; k++)
		if (t->mounts[t->nss[k].root].id != ns_roots[k]) {
			r = log_debug_errno(-EBADMSG,
					    "Invalid manifest: namespaces[%zu].root_id %" PRIu64
					    " is not that namespace's root mount",
					    k, ns_roots[k]);
			goto fail;
		}
	/* Content only for what a restore creates and fills: owned tmpfs/ramfs with mounts. */
	for (size_t i = 0; i < t->n_sbs; i++) {
		const struct mntcr_sb *sb = &t->sbs[i];

		if (sb->n_content_roots &&
		    (!sb->owned || !content_fstype(sb->fstype) || sb->n_mounts == 0)) {
			r = log_debug_errno(
				-EBADMSG,
				"Invalid manifest: superblock %zu has content but is not an "
				"owned tmpfs or ramfs with mounts",
				i);
			goto fail;
		}
	}
	*ret = t;
	return 0;
fail:
	mntcr_tree_free(t);
	jdoc_release(&doc);
	batch_drop(&batch);
	return r;
}

static int parse_hex64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (strlen(s) != 16)
		return -EINVAL;
	for (size_t i = 0; i < 16; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return -EINVAL;
		v = v << 4 | d;
	}
	*ret = v;
	return 0;
}

struct checksum {
	uint64_t manifest, content, members;
};

static int checksum_parse(char *text, size_t len, struct checksum *ret)
{
	struct jctx *ctx = JCTX("checksum");
	const struct jval *alg, *hex[2];
	uint64_t digest[2];
	struct jdoc doc;
	int r;

	r = json_parse_text("checksum member", text, len, &doc);
	if (r < 0)
		return r;
	if ((r = jget(&doc.root, ctx, "algorithm", JT_STRING, false, &alg)) < 0 ||
	    (r = jget(&doc.root, ctx, "manifest", JT_STRING, false, &hex[0])) < 0 ||
	    (r = jget(&doc.root, ctx, "content", JT_STRING, false, &hex[1])) < 0 ||
	    (r = jget_u64(&doc.root, ctx, "members", UINT64_MAX, &ret->members)) < 0)
		goto out;
	if (!jstr_is(alg, CHECKSUM_ALGORITHM)) {
		r = log_debug_errno(-EBADMSG, "Invalid checksum member: the algorithm is not %s",
				    CHECKSUM_ALGORITHM);
		goto out;
	}
	for (size_t i = 0; i < 2; i++)
		if (parse_hex64(hex[i]->s, &digest[i]) < 0) {
			r = log_debug_errno(
				-EBADMSG,
				"Invalid checksum member: a digest is not 16 lowercase hex digits");
			goto out;
		}
	ret->manifest = digest[0];
	ret->content = digest[1];
	r = 0;
out:
	jdoc_release(&doc);
	return r;
}

/* -------------------------------------------------------------------------- */
/* Reader: the archive */

struct image_reader {
	struct archive *a;
	struct image_io io;
	char *data; /* IO_BUF_SIZE bytes for archive_read_data() */
	unsigned version;
	struct strbuf manifest;
	XXH3_state_t *content; /* digest of all content member data, in order */
	uint64_t members;      /* members before the checksum member */
	bool have_content;
	uint64_t content_sb_max; /* the highest superblock index a content member names */
};

static void reader_release(struct image_reader *rd)
{
	if (rd->a)
		archive_read_free(rd->a);
	free(rd->io.buf);
	free(rd->data);
	strbuf_release(&rd->manifest);
	if (rd->content)
		XXH3_freeState(rd->content);
}

/*
 * The decompressors libarchive runs in this process, so that compressed
 * images read without a format change: gzip, bzip2, xz and lzma, lz4,
 * zstd, each only when libarchive was built with its library. Never
 * archive_read_support_filter_all(): for a filter without its library
 * (lrzip, lzop, grzip, ...) libarchive runs an external program named by
 * the stream's header, which a hostile image must not get to do.
 */
static int support_filters(struct archive *a)
{
	static const struct {
		const char *(*version)(void);
		int (*support)(struct archive *);
	} filters[] = {
		{ archive_zlib_version, archive_read_support_filter_gzip },
		{ archive_bzlib_version, archive_read_support_filter_bzip2 },
		{ archive_liblzma_version, archive_read_support_filter_xz },
		{ archive_liblzma_version, archive_read_support_filter_lzma },
		{ archive_liblz4_version, archive_read_support_filter_lz4 },
		{ archive_libzstd_version, archive_read_support_filter_zstd },
	};

	for (size_t i = 0; i < ARRAY_SIZE(filters); i++)
		if (filters[i].version() && filters[i].support(a) != ARCHIVE_OK)
			return -EIO;
	return 0;
}

static int reader_open(struct image_reader *rd, int fd)
{
	rd->io.fd = fd;
	rd->io.buf = malloc(IO_BUF_SIZE);
	rd->data = malloc(IO_BUF_SIZE);
	rd->content = xxh3_new();
	rd->a = archive_read_new();
	if (!rd->io.buf || !rd->data || !rd->content || !rd->a)
		return -ENOMEM;
	if (support_filters(rd->a) < 0 || archive_read_support_format_tar(rd->a) != ARCHIVE_OK ||
	    archive_read_open(rd->a, &rd->io, NULL, io_read, NULL) != ARCHIVE_OK)
		return log_debug_errno(archive_failure(rd->a, &rd->io, -EBADMSG),
				       "Failed to open the image on fd %d: %s", fd,
				       archive_message(rd->a));
	return 0;
}

/* The next member: 1 with *ret_entry and *ret_name, 0 at the end of the archive. */
static int next_member(struct image_reader *rd, struct archive_entry **ret_entry,
		       const char **ret_name)
{
	struct archive_entry *e;
	const char *name;
	int r;

	r = archive_read_next_header(rd->a, &e);
	if (r == ARCHIVE_EOF)
		return 0;
	/* ARCHIVE_WARN and ARCHIVE_RETRY (a damaged header) are failures too. */
	if (r != ARCHIVE_OK)
		return log_debug_errno(archive_failure(rd->a, &rd->io, -EBADMSG),
				       "Failed to read an image member header after %" PRIu64
				       " members: %s",
				       rd->members, archive_message(rd->a));
	name = archive_entry_pathname(e);
	if (!name)
		return log_debug_errno(-EBADMSG, "Image member %" PRIu64 " has no readable name",
				       rd->members);
	*ret_entry = e;
	*ret_name = name;
	return 1;
}

/*
 * Read the current member's data, at most max bytes: into out, and into
 * the digest h, each when not NULL.
 */
static int read_data(struct image_reader *rd, const char *name, size_t max, struct strbuf *out,
		     XXH3_state_t *h)
{
	size_t total = 0;

	for (;;) {
		char *dst = rd->data;
		la_ssize_t n;
		int r;

		/* Into out directly, not through rd->data: a manifest is 600 bytes a mount. */
		if (out) {
			r = strbuf_reserve(out, IO_BUF_SIZE);
			if (r < 0)
				return r;
			dst = out->buf + out->len;
			/* A large member (a buffer's worth read already): its next pages at once */
			if (total >= IO_BUF_SIZE)
				memory_prefault(dst, IO_BUF_SIZE);
		}
		n = archive_read_data(rd->a, dst, IO_BUF_SIZE);
		if (n < 0)
			return log_debug_errno(archive_failure(rd->a, &rd->io, -EBADMSG),
					       "Failed to read image member %s: %s", name,
					       archive_message(rd->a));
		if (n == 0)
			return 0;
		if ((size_t)n > max - total)
			return log_debug_errno(-EBADMSG, "Image member %s is larger than %zu bytes",
					       name, max);
		total += (size_t)n;
		/* XXH3 fails only on a NULL buffer */
		if (h && xxh3_update(h, dst, (size_t)n) != XXH_OK)
			return -EIO;
		if (out) {
			out->len += (size_t)n;
			out->buf[out->len] = 0;
		}
	}
}

/* mntcr-image, manifest.json and checksum are plain files with a size that fits their limit. */
static int check_regular(struct archive_entry *e, const char *name, size_t max)
{
	if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) ||
	    archive_entry_symlink(e))
		return log_debug_errno(-EBADMSG, "Image member %s is not a regular file", name);
	if (archive_entry_size_is_set(e) &&
	    (archive_entry_size(e) < 0 || (uint64_t)archive_entry_size(e) > max))
		return log_debug_errno(-EBADMSG,
				       "Image member %s has %" PRId64 " bytes, more than %zu", name,
				       (int64_t)archive_entry_size(e), max);
	return 0;
}

/* "mntcr-image\nversion N\n": anything else is not an image, a larger N is a newer format. */
static int parse_magic(const char *buf, size_t n, unsigned *ret_version)
{
	size_t i = strlen(IMAGE_MAGIC_PREFIX), start = i;
	uint64_t v = 0;
	bool big = false;

	if (n < i || memcmp(buf, IMAGE_MAGIC_PREFIX, i) != 0)
		return log_debug_errno(-EBADMSG,
				       "Not an mntcr image: the %s member lacks the magic text",
				       MAGIC_MEMBER);
	for (; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			big = true;
		else
			v = v * 10 + (uint64_t)(buf[i] - '0');
	}
	if (i == start || i >= n || buf[i] != '\n' || (buf[start] == '0' && i - start > 1) ||
	    (v == 0 && !big))
		return log_debug_errno(
			-EBADMSG, "Not an mntcr image: the %s member has a malformed version line",
			MAGIC_MEMBER);
	/* Lines after the version line are reserved for later versions and ignored. */
	if (big || v > IMAGE_VERSION_MAX)
		return log_debug_errno(
			-EPROTO,
			"The image has format version %.*s, this mntcr knows versions 1 to %d",
			(int)(i - start), buf + start, IMAGE_VERSION_MAX);
	*ret_version = (unsigned)v;
	return 0;
}

/* Step 1: the magic member. A stream that does not start with it is not an image. */
static int read_magic(struct image_reader *rd)
{
	struct strbuf buf = { 0 };
	struct archive_entry *e;
	const char *name;
	int r;

	r = next_member(rd, &e, &name);
	if (r == 0)
		r = log_debug_errno(-EBADMSG, "Not an mntcr image: the archive is empty");
	if (r < 0)
		return r;
	if (!streq(name, MAGIC_MEMBER))
		return log_debug_errno(-EBADMSG, "Not an mntcr image: the first member is not %s",
				       MAGIC_MEMBER);
	if ((r = check_regular(e, name, MAGIC_MAX)) < 0 ||
	    (r = read_data(rd, name, MAGIC_MAX, &buf, NULL)) < 0 ||
	    (r = parse_magic(buf.buf, buf.len, &rd->version)) < 0) {
		strbuf_release(&buf);
		return r;
	}
	strbuf_release(&buf);
	rd->members++;
	return 0;
}

/*
 * Step 2: the manifest, kept as bytes until its digest is known. The
 * digest is taken as the bytes come, while they are in the cache.
 */
static int read_manifest(struct image_reader *rd, uint64_t *ret_digest)
{
	struct archive_entry *e;
	XXH3_state_t *h;
	const char *name;
	int r;

	r = next_member(rd, &e, &name);
	if (r == 0)
		r = log_debug_errno(-EBADMSG, "The image is truncated: it ends before %s",
				    MANIFEST_MEMBER);
	if (r < 0)
		return r;
	if (!streq(name, MANIFEST_MEMBER))
		return log_debug_errno(-EBADMSG, "The image's second member is not %s",
				       MANIFEST_MEMBER);
	if ((r = check_regular(e, name, MANIFEST_MAX)) < 0)
		return r;
	/*
	 * Its size is known (and checked): one allocation, not a doubling
	 * series of copies, with the room read_data() asks for before its last
	 * read, so that the manifest is never moved.
	 */
	if (archive_entry_size_is_set(e) &&
	    (r = strbuf_reserve(&rd->manifest, (size_t)archive_entry_size(e) + IO_BUF_SIZE)) < 0)
		return r;
	h = xxh3_new();
	if (!h)
		return -ENOMEM;
	r = read_data(rd, name, MANIFEST_MAX, &rd->manifest, h);
	if (r == 0) {
		*ret_digest = XXH3_64bits_digest(h);
		rd->members++;
	}
	XXH3_freeState(h);
	return r;
}

/* The checksum member (e, already read), nothing after it, and the digests. */
static int read_checksum(struct image_reader *rd, struct archive_entry *e, const char *name,
			 uint64_t manifest_digest)
{
	struct strbuf buf = { 0 };
	char empty[1] = "";
	struct checksum sum;
	uint64_t digest;
	int r;

	if ((r = check_regular(e, name, CHECKSUM_MAX)) < 0 ||
	    (r = read_data(rd, name, CHECKSUM_MAX, &buf, NULL)) < 0)
		goto out;
	r = checksum_parse(buf.buf ? buf.buf : empty, buf.len, &sum);
	if (r < 0)
		goto out;
	r = next_member(rd, &e, &name);
	if (r > 0)
		r = log_debug_errno(-EBADMSG, "Image member %.*s follows the %s member", 256, name,
				    CHECKSUM_MEMBER);
	if (r < 0)
		goto out;

	if (sum.members != rd->members) {
		r = log_debug_errno(-EBADMSG,
				    "The image is corrupt: %" PRIu64
				    " members before the checksum, it says %" PRIu64,
				    rd->members, sum.members);
		goto out;
	}
	if (manifest_digest != sum.manifest) {
		r = log_debug_errno(-EBADMSG,
				    "The image is corrupt: the manifest's XXH3-64 is %016" PRIx64
				    ", the checksum says %016" PRIx64,
				    manifest_digest, sum.manifest);
		goto out;
	}
	digest = XXH3_64bits_digest(rd->content);
	if (digest != sum.content) {
		r = log_debug_errno(-EBADMSG,
				    "The image is corrupt: the content's XXH3-64 is %016" PRIx64
				    ", the checksum says %016" PRIx64,
				    digest, sum.content);
		goto out;
	}
	r = 0;
out:
	strbuf_release(&buf);
	return r;
}

/*
 * Version 1, after the manifest: content members (which version 1 defines
 * no meaning for: their names are checked and their data hashed) up to
 * the checksum, then the end of the archive.
 */
static int read_tail_v1(struct image_reader *rd, uint64_t manifest_digest)
{
	struct archive_entry *e;
	const char *name;
	int r;

	for (;;) {
		const char *rel;
		size_t len;
		uint64_t sb;

		r = next_member(rd, &e, &name);
		if (r == 0)
			return log_debug_errno(
				-EBADMSG, "The image is truncated: it ends without a %s member",
				CHECKSUM_MEMBER);
		if (r < 0)
			return r;
		if (streq(name, CHECKSUM_MEMBER))
			break;
		if (content_name_parse(name, &sb, &rel, &len) < 0)
			return log_debug_errno(-EBADMSG, "Unexpected image member %.*s", 256, name);
		r = read_data(rd, name, SIZE_MAX, NULL, rd->content);
		if (r < 0)
			return r;
		if (!rd->have_content || sb > rd->content_sb_max)
			rd->content_sb_max = sb;
		rd->have_content = true;
		rd->members++;
	}
	return read_checksum(rd, e, name, manifest_digest);
}

/*
 * Read what follows the archive (the padding of its last block, a
 * compressor's trailer) so that a writer on the other end of a pipe does
 * not get EPIPE for its last bytes. Bounded: the rest is not our business.
 */
static void drain(struct image_reader *rd)
{
	size_t total = 0;

	while (total < TRAILER_DRAIN_MAX) {
		ssize_t n = read(rd->io.fd, rd->data, IO_BUF_SIZE);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		total += (size_t)n;
	}
}

/* -------------------------------------------------------------------------- */
/* The image object: the mount table first, the content streamed after it */

enum image_state {
	IMAGE_CONTENT,	   /* version 2: content members and the trailer are still to read */
	IMAGE_DONE,	   /* all read and checked */
	IMAGE_HANDED_OVER, /* a restoring child reads the stream */
	IMAGE_FAILED,
};

struct mntcr_image {
	struct image_reader rd;
	struct mntcr_tree *tree;
	enum image_state state;
	int err; /* IMAGE_FAILED: what failed, returned again */
	uint64_t manifest_digest;

	struct archive_entry *next; /* a header read, not taken yet */
	const char *next_name;
	bool next_is_trailer;
	uint64_t next_sb;

	bool in_data;	   /* the taken member's data is not read to its end */
	int64_t data_size; /* its size */
	uint64_t last_sb;
	bool any_member;
	struct content_attrs attrs;

	uint64_t *files, *bytes; /* per superblock */
	char *bad_member;        /* the member a failure is about, when it is one */
};

static int image_fail(struct mntcr_image *img, int r)
{
	if (img->state != IMAGE_FAILED) {
		img->state = IMAGE_FAILED;
		img->err = r;
	}
	return r;
}

/* A failure about one member: remember its name for the report (image_content_bad_member). */
static int member_fail(struct mntcr_image *img, const char *name, int r)
{
	if (!img->bad_member)
		img->bad_member = strndup(name, 256);
	return image_fail(img, r);
}

/* Version 2: manifest.checksum, then the manifest may be trusted. */
static int read_manifest_checksum(struct mntcr_image *img)
{
	struct image_reader *rd = &img->rd;
	struct jctx *ctx = JCTX("manifest.checksum");
	struct jdoc doc = { 0 };
	struct strbuf buf = { 0 };
	const struct jval *alg, *hex;
	struct archive_entry *e;
	char empty[1] = "";
	const char *name;
	uint64_t digest;
	int r;

	r = next_member(rd, &e, &name);
	if (r == 0)
		r = log_debug_errno(-EBADMSG, "The image is truncated: it ends before %s",
				    MANIFEST_CHECKSUM_MEMBER);
	if (r < 0)
		return r;
	if (!streq(name, MANIFEST_CHECKSUM_MEMBER))
		return log_debug_errno(-EBADMSG, "The image's third member is not %s",
				       MANIFEST_CHECKSUM_MEMBER);
	if ((r = check_regular(e, name, CHECKSUM_MAX)) < 0 ||
	    (r = read_data(rd, name, CHECKSUM_MAX, &buf, NULL)) < 0)
		goto out;
	rd->members++;
	r = json_parse_text("manifest checksum", buf.buf ? buf.buf : empty, buf.len, &doc);
	if (r < 0)
		goto out;
	if ((r = jget(&doc.root, ctx, "algorithm", JT_STRING, false, &alg)) < 0 ||
	    (r = jget(&doc.root, ctx, "manifest", JT_STRING, false, &hex)) < 0)
		goto out;
	if (!jstr_is(alg, CHECKSUM_ALGORITHM) || parse_hex64(hex->s, &digest) < 0) {
		r = log_debug_errno(-EBADMSG, "Invalid %s member", MANIFEST_CHECKSUM_MEMBER);
		goto out;
	}
	if (digest != img->manifest_digest)
		r = log_debug_errno(-EBADMSG,
				    "The image is corrupt: the manifest's XXH3-64 is %016" PRIx64
				    ", %s says %016" PRIx64,
				    img->manifest_digest, MANIFEST_CHECKSUM_MEMBER, digest);
out:
	jdoc_release(&doc);
	strbuf_release(&buf);
	return r;
}

MNTCR_EXPORT struct mntcr_image *mntcr_image_free(struct mntcr_image *img)
{
	if (!img)
		return NULL;
	reader_release(&img->rd);
	mntcr_tree_free(img->tree);
	content_attrs_release(&img->attrs);
	free(img->files);
	free(img->bytes);
	free(img->bad_member);
	free(img);
	return NULL;
}

const char *image_content_bad_member(const struct mntcr_image *img)
{
	return img->bad_member;
}

MNTCR_EXPORT int mntcr_image_open(int fd, struct mntcr_image **ret_image)
{
	struct mntcr_image *img;
	struct image_reader *rd;
	char empty[1] = "";
	int r;

	if (fd < 0 || !ret_image)
		return -EINVAL;
	img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	rd = &img->rd;
	if ((r = reader_open(rd, fd)) < 0 || (r = read_magic(rd)) < 0 ||
	    (r = read_manifest(rd, &img->manifest_digest)) < 0)
		goto fail;

	if (rd->version < IMAGE_VERSION_CONTENT) {
		/* Version 1: everything is checked before the manifest is parsed. */
		r = read_tail_v1(rd, img->manifest_digest);
		if (r < 0)
			goto fail;
		drain(rd);
		img->state = IMAGE_DONE;
	} else {
		r = read_manifest_checksum(img);
		if (r < 0)
			goto fail;
		img->state = IMAGE_CONTENT;
	}

	r = manifest_parse(rd->manifest.buf ? rd->manifest.buf : empty, rd->manifest.len,
			   rd->version, &img->tree);
	if (r < 0)
		goto fail;
	strbuf_release(&rd->manifest);
	if (rd->have_content && rd->content_sb_max >= img->tree->n_sbs) {
		r = log_debug_errno(-EBADMSG,
				    "Image content names superblock %" PRIu64
				    ", the manifest has %zu",
				    rd->content_sb_max, img->tree->n_sbs);
		goto fail;
	}
	img->files = calloc(img->tree->n_sbs + 1, sizeof(uint64_t));
	img->bytes = calloc(img->tree->n_sbs + 1, sizeof(uint64_t));
	if (!img->files || !img->bytes) {
		r = -ENOMEM;
		goto fail;
	}
	*ret_image = img;
	return 0;
fail:
	mntcr_image_free(img);
	return r;
}

MNTCR_EXPORT const struct mntcr_tree *mntcr_image_tree(const struct mntcr_image *img)
{
	return img ? img->tree : NULL;
}

MNTCR_EXPORT bool mntcr_image_has_content(const struct mntcr_image *img)
{
	if (!img || img->rd.version < IMAGE_VERSION_CONTENT)
		return false;
	/* Version 3 has version 2's layout, with or without content. */
	for (size_t i = 0; i < img->tree->n_sbs; i++)
		if (img->tree->sbs[i].n_content_roots)
			return true;
	return false;
}

/* The rest of the taken member's data, hashed, unread by the caller. */
static int skip_data(struct mntcr_image *img)
{
	const void *buf;
	size_t n;
	int64_t off;
	int r;

	while ((r = image_content_data(img, &buf, &n, &off)) > 0)
		;
	return r;
}

int image_content_peek(struct mntcr_image *img, size_t *ret_sb)
{
	struct image_reader *rd = &img->rd;
	const struct mntcr_tree *t = img->tree;
	const char *name, *rel;
	struct archive_entry *e;
	size_t len;
	uint64_t sb;
	int r;

	if (img->state == IMAGE_DONE)
		return 0;
	if (img->state == IMAGE_FAILED)
		return img->err;
	if (img->state != IMAGE_CONTENT)
		return -ESTALE;
	if (img->in_data && (r = skip_data(img)) < 0)
		return r;
	if (!img->next) {
		r = next_member(rd, &e, &name);
		if (r == 0)
			r = log_debug_errno(-EBADMSG,
					    "The image is truncated: it ends without a %s member",
					    CHECKSUM_MEMBER);
		if (r < 0)
			return image_fail(img, r);
		img->next_is_trailer = streq(name, CHECKSUM_MEMBER);
		if (!img->next_is_trailer) {
			if (content_name_parse(name, &sb, &rel, &len) < 0)
				return member_fail(img, name,
						   log_debug_errno(-EBADMSG,
								   "Unexpected image member %.*s",
								   256, name));
			if (sb >= t->n_sbs || t->sbs[sb].n_content_roots == 0)
				return member_fail(
					img, name,
					log_debug_errno(-EBADMSG,
							"Image member %.256s is content of "
							"superblock %" PRIu64
							", which the manifest gives no content",
							name, sb));
			if (img->any_member && sb < img->last_sb)
				return member_fail(
					img, name, log_debug_errno(
						     -EBADMSG,
						     "Image member %.256s comes after content of "
						     "superblock %" PRIu64,
						     name, img->last_sb));
			img->next_sb = sb;
		}
		img->next = e;
		img->next_name = name;
	}
	if (img->next_is_trailer)
		return 0;
	*ret_sb = (size_t)img->next_sb;
	return 1;
}

/* A member is something restore can make: checked before it acts on it. */
static int check_member(struct mntcr_image *img, const char *name, uint64_t sb, const char *rel,
			size_t len, struct archive_entry *e)
{
	const struct mntcr_sb *s = &img->tree->sbs[sb];
	const char *hl = archive_entry_hardlink(e), *hrel;
	unsigned type = archive_entry_filetype(e);
	uint64_t hsb;
	size_t hlen;

	if (!content_rel_in_roots(rel, len, s->content_roots, s->n_content_roots))
		return log_debug_errno(
			-EBADMSG, "Image member %.256s lies outside its superblock's content roots",
			name);
	if (hl) {
		if (content_name_parse(hl, &hsb, &hrel, &hlen) < 0 || hsb != sb || hlen == 0 ||
		    !content_rel_in_roots(hrel, hlen, s->content_roots, s->n_content_roots))
			return log_debug_errno(
				-EBADMSG,
				"Image member %.256s is a hard link to %.256s, which is "
				"not content of the same superblock",
				name, hl);
		if (len == 0)
			return log_debug_errno(
				-EBADMSG, "Image member %.256s: the root cannot be a hard link",
				name);
		return 0;
	}
	switch (type) {
	case AE_IFREG:
		if (archive_entry_size(e) < 0)
			return log_debug_errno(-EBADMSG, "Image member %.256s has a negative size",
					       name);
		break;
	case AE_IFLNK:
		if (!archive_entry_symlink(e) || !*archive_entry_symlink(e))
			return log_debug_errno(-EBADMSG,
					       "Image member %.256s is a symlink to nothing", name);
		break;
	case AE_IFDIR:
	case AE_IFIFO:
	case AE_IFCHR:
	case AE_IFBLK:
		break;
	default:
		return log_debug_errno(-EBADMSG, "Image member %.256s has file type 0%o", name,
				       type);
	}
	if (len == 0 && type != AE_IFDIR)
		return log_debug_errno(
			-EBADMSG, "Image member %.256s is a filesystem's root but not a directory",
			name);
	return 0;
}

int image_content_take(struct mntcr_image *img, struct archive_entry **ret_e, const char **ret_name,
		       const char **ret_rel, size_t *ret_len,
		       const struct content_attrs **ret_attrs)
{
	const char *name, *rel;
	struct archive_entry *e;
	size_t len, sb;
	uint64_t s;
	int r;

	r = image_content_peek(img, &sb);
	if (r == 0)
		return -ENOENT;
	if (r < 0)
		return r;
	e = img->next;
	name = img->next_name;
	img->next = NULL;
	(void)content_name_parse(name, &s, &rel, &len);
	r = check_member(img, name, s, rel, len, e);
	if (r < 0)
		return image_fail(img, r);
	content_attrs_release(&img->attrs);
	r = content_attrs_get(e, &img->attrs);
	if (r < 0)
		return image_fail(img, r == -EBADMSG
					       ? log_debug_errno(r,
								 "Image member %.256s has bad "
								 "attributes",
								 name)
					       : r);
	digest_member(img->rd.content, sb, rel, len, e, &img->attrs);

	img->files[sb]++;
	img->in_data = archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e);
	img->data_size = img->in_data ? archive_entry_size(e) : 0;
	if (img->in_data && !img->attrs.socket)
		img->bytes[sb] += (uint64_t)img->data_size;
	img->rd.members++;
	img->last_sb = sb;
	img->any_member = true;
	*ret_e = e;
	*ret_name = name;
	*ret_rel = rel;
	*ret_len = len;
	*ret_attrs = &img->attrs;
	return 0;
}

int image_content_data(struct mntcr_image *img, const void **ret_buf, size_t *ret_n,
		       int64_t *ret_off)
{
	struct image_reader *rd = &img->rd;
	la_int64_t off;
	const void *buf;
	size_t n;
	int r;

	if (img->state != IMAGE_CONTENT)
		return img->state == IMAGE_FAILED ? img->err : -ESTALE;
	if (!img->in_data)
		return 0;
	r = archive_read_data_block(rd->a, &buf, &n, &off);
	if (r == ARCHIVE_EOF) {
		img->in_data = false;
		return 0;
	}
	if (r != ARCHIVE_OK)
		return image_fail(img, log_debug_errno(archive_failure(rd->a, &rd->io, -EBADMSG),
						       "Failed to read image member data: %s",
						       archive_message(rd->a)));
	if (off < 0 || off > img->data_size || (int64_t)n > img->data_size - off)
		return image_fail(img, log_debug_errno(-EBADMSG,
						       "Image member data at %" PRId64
						       " lies outside its size %" PRId64,
						       (int64_t)off, img->data_size));
	if (n)
		(void)xxh3_update(rd->content, buf, n);
	*ret_buf = buf;
	*ret_n = n;
	*ret_off = off;
	return 1;
}

int image_content_end(struct mntcr_image *img)
{
	size_t sb;
	int r;

	r = image_content_peek(img, &sb);
	if (r > 0)
		return image_fail(
			img,
			log_debug_errno(-EBADMSG,
					"Image content of superblock %zu was not restored", sb));
	if (r < 0 || img->state == IMAGE_DONE)
		return r;
	r = read_checksum(&img->rd, img->next, img->next_name, img->manifest_digest);
	img->next = NULL;
	if (r < 0)
		return image_fail(img, r);
	drain(&img->rd);
	img->state = IMAGE_DONE;
	return 0;
}

void image_content_handed_over(struct mntcr_image *img)
{
	if (img->state == IMAGE_CONTENT) {
		img->state = IMAGE_HANDED_OVER;
		img->next = NULL;
	}
}

MNTCR_EXPORT int mntcr_image_finish(struct mntcr_image *img)
{
	const struct content_attrs *attrs;
	struct archive_entry *e;
	const char *name, *rel;
	size_t sb, len;
	int r;

	if (!img)
		return -EINVAL;
	while ((r = image_content_peek(img, &sb)) > 0) {
		r = image_content_take(img, &e, &name, &rel, &len, &attrs);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return image_content_end(img);
}

MNTCR_EXPORT int mntcr_image_content_stats(const struct mntcr_image *img, size_t sb,
					   uint64_t *ret_files, uint64_t *ret_bytes)
{
	if (!img || sb >= img->tree->n_sbs)
		return -EINVAL;
	if (img->state != IMAGE_DONE)
		return img->state == IMAGE_FAILED ? img->err : -EBUSY;
	if (img->tree->sbs[sb].n_content_roots == 0)
		return -ENODATA;
	if (ret_files)
		*ret_files = img->files[sb];
	if (ret_bytes)
		*ret_bytes = img->bytes[sb];
	return 0;
}

MNTCR_EXPORT size_t mntcr_image_content_n_roots(const struct mntcr_image *img, size_t sb)
{
	if (!img || sb >= img->tree->n_sbs)
		return 0;
	return img->tree->sbs[sb].n_content_roots;
}

MNTCR_EXPORT const char *mntcr_image_content_root(const struct mntcr_image *img, size_t sb,
						  size_t i)
{
	if (!img || sb >= img->tree->n_sbs || i >= img->tree->sbs[sb].n_content_roots)
		return NULL;
	return img->tree->sbs[sb].content_roots[i];
}

MNTCR_EXPORT int mntcr_image_read(int fd, struct mntcr_tree **ret_tree)
{
	struct mntcr_image *img = NULL;
	int r;

	if (fd < 0 || !ret_tree)
		return -EINVAL;
	r = mntcr_image_open(fd, &img);
	if (r < 0)
		return r;
	r = mntcr_image_finish(img);
	if (r == 0)
		*ret_tree = TAKE_PTR(img->tree);
	mntcr_image_free(img);
	return r;
}
