/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The image: one pax (restricted) tar stream, written and read with
 * libarchive, so that it flows through pipes and a compression filter can be
 * added later without a format change. Members, in this order:
 *
 *   mntcr-image       magic and format version: "mntcr-image\nversion 1\n"
 *   manifest.json     the mount table as JSON, pretty printed
 *   content/<sb>/...  filesystem content of superblock <sb> (none yet; skipped)
 *   checksum          XXH3-64 of the manifest and of the content data, member count
 *
 * The checksum comes last so that the writer can stream, which means the
 * reader cannot trust anything before the end: it reads the whole stream,
 * checks the digests, and only then parses the manifest. An image is
 * untrusted input (it is fuzzed): every JSON field is type-checked, sizes
 * and counts are bounded, and tree_index() rejects inconsistent tables.
 * docs/image-format.md is the specification.
 */
#include <archive.h>
#include <archive_entry.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <xxhash.h>

#include "flags.h"
#include "mntcr/mntcr.h"
#include "tree.h"

#define IMAGE_VERSION 1
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define IMAGE_MAGIC_PREFIX "mntcr-image\nversion "
#define IMAGE_MAGIC IMAGE_MAGIC_PREFIX STRINGIFY(IMAGE_VERSION) "\n"
#define MAGIC_MEMBER "mntcr-image"
#define MANIFEST_MEMBER "manifest.json"
#define CHECKSUM_MEMBER "checksum"
#define CONTENT_PREFIX "content/"
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
#define CONTENT_NAME_MAX (2 * IMAGE_PATH_MAX)
#define TRAILER_DRAIN_MAX ((size_t)1 << 20)
#define IO_BUF_SIZE ((size_t)64 << 10)

static void json_object_putp(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

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
/* Writer: JSON */

static int json_add(struct json_object *obj, const char *key, struct json_object *v)
{
	/* Keys are string literals and each is added once. */
	if (json_object_object_add_ex(obj, key, v,
				      JSON_C_OBJECT_ADD_KEY_IS_NEW |
					      JSON_C_OBJECT_KEY_IS_CONSTANT) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

/* A string, escaped to valid UTF-8 (utf8_escape_bytes); NULL becomes null. */
static int json_add_str(struct json_object *obj, const char *key, const char *s)
{
	_cleanup_free_ char *esc = NULL;
	struct json_object *v;
	size_t n;
	int r;

	if (!s)
		return json_add(obj, key, NULL);
	r = utf8_escape_bytes(s, &esc);
	if (r < 0)
		return r;
	n = strlen(esc);
	if (n > INT_MAX)
		return -EFBIG;
	v = json_object_new_string_len(esc, (int)n);
	if (!v)
		return -ENOMEM;
	return json_add(obj, key, v);
}

static int json_add_u64(struct json_object *obj, const char *key, uint64_t u)
{
	struct json_object *v = json_object_new_uint64(u);

	if (!v)
		return -ENOMEM;
	return json_add(obj, key, v);
}

static int json_add_bool(struct json_object *obj, const char *key, bool b)
{
	struct json_object *v = json_object_new_boolean(b);

	if (!v)
		return -ENOMEM;
	return json_add(obj, key, v);
}

/* A new object appended to array arr (which owns it). */
static int json_append_object(struct json_object *arr, struct json_object **ret)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	if (json_object_array_add(arr, o) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	*ret = o;
	return 0;
}

/* A new container added to obj under key (obj owns it). */
static int json_add_container(struct json_object *obj, const char *key, bool array, size_t n,
			      struct json_object **ret)
{
	struct json_object *c =
		array ? json_object_new_array_ext(n ? (int)n : 1) : json_object_new_object();
	int r;

	if (!c)
		return -ENOMEM;
	r = json_add(obj, key, c);
	if (r < 0)
		return r;
	*ret = c;
	return 0;
}

/*
 * Per-mount flags as option names, as mountinfo prints them: the flag table
 * through mntcr_attr_format(). Flags without a name would be lost, so they
 * make the write fail instead.
 */
static int flags_to_json(uint64_t attr, struct json_object *arr)
{
	char buf[256];
	uint64_t back;
	int n;

	n = mntcr_attr_format(attr, buf, sizeof(buf));
	if (n < 0 || attr_from_options(buf, &back) < 0 || back != attr)
		return -EINVAL;
	for (char *p = buf, *e; *p; p = *e ? e + 1 : e) {
		struct json_object *v;

		e = strchrnul(p, ',');
		v = json_object_new_string_len(p, (int)(e - p));
		if (!v)
			return -ENOMEM;
		if (json_object_array_add(arr, v) < 0) {
			json_object_put(v);
			return -ENOMEM;
		}
	}
	return 0;
}

static int sb_to_json(const struct mntcr_tree *t, size_t i, struct json_object *sbs)
{
	const struct mntcr_sb *sb = &t->sbs[i];
	struct json_object *o;
	char dev[32];
	int r;

	if (!text_ok(sb->fstype, FSTYPE_MAX, true) || !text_ok(sb->source, TEXT_MAX, false) ||
	    !text_ok(sb->opts, TEXT_MAX, false) || (sb->ext_path && !path_ok(sb->ext_path, true)) ||
	    (sb->ext_root && !path_ok(sb->ext_root, false)))
		return log_debug_errno(-EINVAL,
				       "Cannot write superblock %zu (%u:%u): a field is missing, "
				       "too long or not a normalised absolute path",
				       i, sb->dev_major, sb->dev_minor);
	snprintf(dev, sizeof(dev), "%u:%u", sb->dev_major, sb->dev_minor);
	if ((r = json_append_object(sbs, &o)) < 0 || (r = json_add_str(o, "dev", dev)) < 0 ||
	    (r = json_add_str(o, "fstype", sb->fstype)) < 0 ||
	    (r = json_add_str(o, "source", sb->source)) < 0 ||
	    (r = json_add_str(o, "options", sb->opts)) < 0 ||
	    (r = json_add_bool(o, "owned", sb->owned)) < 0 ||
	    (r = json_add_str(o, "ext_path", sb->ext_path)) < 0 ||
	    (r = json_add_str(o, "ext_root", sb->ext_root)) < 0)
		return r;
	return 0;
}

static int mount_to_json(const struct mntcr_tree *t, size_t i, struct json_object *mounts)
{
	const struct mntcr_mount *m = &t->mounts[i];
	struct json_object *o, *flags;
	int r;

	if (m->sb >= t->n_sbs || !path_ok(m->root, false) || !path_ok(m->mountpoint, true) ||
	    !text_ok(m->fstype, FSTYPE_MAX, true) || !text_ok(m->source, TEXT_MAX, false) ||
	    !text_ok(m->sb_opts, TEXT_MAX, false))
		return log_debug_errno(
			-EINVAL,
			"Cannot write mount %" PRIu64
			" (%s): a field is missing, too long or not a normalised absolute path",
			m->id, m->mountpoint ? m->mountpoint : "?");
	if ((r = json_append_object(mounts, &o)) < 0 || (r = json_add_u64(o, "id", m->id)) < 0 ||
	    (r = json_add_u64(o, "parent_id", m->parent_id)) < 0 ||
	    (r = json_add_u64(o, "old_id", m->old_id)) < 0 ||
	    (r = json_add_u64(o, "sb", m->sb)) < 0 || (r = json_add_str(o, "root", m->root)) < 0 ||
	    (r = json_add_str(o, "mountpoint", m->mountpoint)) < 0 ||
	    (r = json_add_container(o, "flags", true, 4, &flags)) < 0)
		return r;
	r = flags_to_json(m->attr, flags);
	if (r == -EINVAL)
		return log_debug_errno(r,
				       "Cannot write mount %" PRIu64
				       " (%s): per-mount flags 0x%" PRIx64 " have no option names",
				       m->id, m->mountpoint, m->attr);
	if (r < 0)
		return r;
	if ((r = json_add_str(o, "fstype", m->fstype)) < 0 ||
	    (r = json_add_str(o, "source", m->source)) < 0 ||
	    (r = json_add_str(o, "sb_options", m->sb_opts)) < 0 ||
	    (r = json_add_u64(o, "shared", m->shared)) < 0 ||
	    (r = json_add_u64(o, "master", m->master)) < 0 ||
	    (r = json_add_u64(o, "propagate_from", m->propagate_from)) < 0 ||
	    (r = json_add_bool(o, "unbindable", m->unbindable)) < 0 ||
	    (r = json_add_str(o, "type", node_type_name(m->type))) < 0)
		return r;
	return 0;
}

/* The manifest text: pretty-printed JSON and a final newline. */
static int manifest_build(const struct mntcr_tree *t, char **ret, size_t *ret_len)
{
	_cleanup_json_ struct json_object *root = NULL;
	struct json_object *counts, *sbs, *mounts;
	const char *text;
	size_t len, raw = 0;
	char *out;
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
		       (m->mountpoint ? strlen(m->mountpoint) : 0) +
		       (m->source ? strlen(m->source) : 0) + (m->sb_opts ? strlen(m->sb_opts) : 0);
		if (raw > MANIFEST_MAX)
			return log_debug_errno(
				-EFBIG,
				"Cannot write an image: the manifest would exceed %zu bytes",
				MANIFEST_MAX);
	}

	root = json_object_new_object();
	if (!root)
		return -ENOMEM;
	if ((r = json_add_str(root, "format", MANIFEST_FORMAT)) < 0 ||
	    (r = json_add_u64(root, "version", IMAGE_VERSION)) < 0 ||
	    (r = json_add_str(root, "source", source_name(t->source))) < 0 ||
	    (r = json_add_str(root, "kernel", t->kernel)) < 0 ||
	    (r = json_add_str(root, "hostname", t->hostname)) < 0 ||
	    (r = json_add_u64(root, "pid", (uint64_t)t->pid)) < 0 ||
	    (r = json_add_u64(root, "ns_id", t->ns_id)) < 0 ||
	    (r = json_add_bool(root, "unique_ids", t->unique_ids)) < 0 ||
	    (r = json_add_u64(root, "root_id", t->mounts[t->root].id)) < 0 ||
	    (r = json_add_container(root, "counts", false, 0, &counts)) < 0 ||
	    (r = json_add_u64(counts, "mounts", t->n_mounts)) < 0 ||
	    (r = json_add_u64(counts, "superblocks", t->n_sbs)) < 0 ||
	    (r = json_add_container(root, "superblocks", true, t->n_sbs, &sbs)) < 0 ||
	    (r = json_add_container(root, "mounts", true, t->n_mounts, &mounts)) < 0)
		return r;
	for (size_t i = 0; i < t->n_sbs; i++) {
		r = sb_to_json(t, i, sbs);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < t->n_mounts; i++) {
		r = mount_to_json(t, i, mounts);
		if (r < 0)
			return r;
	}

	text = json_object_to_json_string_length(root,
						 JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							 JSON_C_TO_STRING_NOSLASHESCAPE,
						 &len);
	if (!text)
		return -ENOMEM;
	if (len + 1 > MANIFEST_MAX)
		return log_debug_errno(
			-EFBIG, "Cannot write an image: the manifest has %zu bytes, more than %zu",
			len + 1, MANIFEST_MAX);
	out = malloc(len + 2);
	if (!out)
		return -ENOMEM;
	memcpy(out, text, len);
	out[len] = '\n';
	out[len + 1] = 0;
	*ret = out;
	*ret_len = len + 1;
	return 0;
}

static int checksum_build(uint64_t manifest, uint64_t content, uint64_t members, char **ret,
			  size_t *ret_len)
{
	_cleanup_json_ struct json_object *root = NULL;
	const char *text;
	char hex[2][17];
	size_t len;
	int r;

	snprintf(hex[0], sizeof(hex[0]), "%016" PRIx64, manifest);
	snprintf(hex[1], sizeof(hex[1]), "%016" PRIx64, content);
	root = json_object_new_object();
	if (!root)
		return -ENOMEM;
	if ((r = json_add_str(root, "algorithm", CHECKSUM_ALGORITHM)) < 0 ||
	    (r = json_add_str(root, "manifest", hex[0])) < 0 ||
	    (r = json_add_str(root, "content", hex[1])) < 0 ||
	    (r = json_add_u64(root, "members", members)) < 0)
		return r;
	text = json_object_to_json_string_length(
		root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED, &len);
	if (!text)
		return -ENOMEM;
	if (asprintf(ret, "%s\n", text) < 0)
		return -ENOMEM;
	*ret_len = len + 1;
	return 0;
}

/* -------------------------------------------------------------------------- */
/* Writer: the archive */

/*
 * pax restricted: plain ustar headers unless a member needs more (a long or
 * non-ASCII name, a large size), then a pax extended header. Uncompressed;
 * compressing is one archive_write_add_filter_*() call in place of
 * add_filter_none, since the reader accepts every filter libarchive has.
 */
static int writer_new(struct image_io *io, struct archive **ret)
{
	struct archive *a = archive_write_new();

	if (!a)
		return -ENOMEM;
	if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(a) != ARCHIVE_OK ||
	    archive_write_open(a, io, NULL, io_write, NULL) != ARCHIVE_OK) {
		int r = log_debug_errno(archive_failure(a, io, -EIO),
					"Failed to set up the image writer on fd %d: %s", io->fd,
					archive_message(a));
		archive_write_free(a);
		return r;
	}
	*ret = a;
	return 0;
}

static int write_member(struct archive *a, struct image_io *io, const char *name, const char *data,
			size_t n)
{
	struct archive_entry *e = archive_entry_new();
	size_t done = 0;
	int r;

	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)n);
	/* mtime, uid and gid stay 0: an image is a function of the tree alone. */
	r = archive_write_header(a, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return log_debug_errno(archive_failure(a, io, -EIO),
				       "Failed to write image member %s header: %s", name,
				       archive_message(a));
	while (done < n) {
		la_ssize_t k = archive_write_data(a, data + done, n - done);

		if (k <= 0)
			return log_debug_errno(archive_failure(a, io, -EIO),
					       "Failed to write image member %s: %s", name,
					       archive_message(a));
		done += (size_t)k;
	}
	return 0;
}

MNTCR_EXPORT int mntcr_image_write(int fd, const struct mntcr_tree *t, unsigned flags)
{
	static const char magic[] = IMAGE_MAGIC;
	_cleanup_free_ char *manifest = NULL, *checksum = NULL;
	struct image_io io = { .fd = fd };
	size_t manifest_len, checksum_len;
	struct archive *a = NULL;
	int r;

	if (fd < 0 || !t || (flags & ~(unsigned)MNTCR_IMAGE_NO_CONTENT))
		return -EINVAL;
	if (!t->indexed || t->root == IDX_NONE)
		return log_debug_errno(
			-EINVAL,
			"Cannot write an image of a tree that is not indexed or has no root mount");

	/* Everything that can fail on the tree fails here, before a byte is written. */
	r = manifest_build(t, &manifest, &manifest_len);
	if (r < 0)
		return r;
	/* No content members yet: the content digest is that of no bytes. */
	r = checksum_build(XXH3_64bits(manifest, manifest_len), XXH3_64bits(NULL, 0), 2, &checksum,
			   &checksum_len);
	if (r < 0)
		return r;

	r = writer_new(&io, &a);
	if (r < 0)
		return r;
	if ((r = write_member(a, &io, MAGIC_MEMBER, magic, sizeof(magic) - 1)) < 0 ||
	    (r = write_member(a, &io, MANIFEST_MEMBER, manifest, manifest_len)) < 0 ||
	    (r = write_member(a, &io, CHECKSUM_MEMBER, checksum, checksum_len)) < 0)
		goto out;
	/* Writes the end-of-archive blocks and flushes the last block. */
	if (archive_write_close(a) != ARCHIVE_OK)
		r = log_debug_errno(archive_failure(a, &io, -EIO),
				    "Failed to finish the image on fd %d: %s", fd,
				    archive_message(a));
out:
	archive_write_free(a);
	return r;
}

/* -------------------------------------------------------------------------- */
/* Reader: JSON */

static int json_parse_text(const char *what, const char *text, size_t len, struct json_object **ret)
{
	struct json_tokener *tok;
	struct json_object *o;
	size_t end;

	if (len > INT_MAX)
		return log_debug_errno(-EBADMSG, "Invalid %s: too large", what);
	/* JSON text never holds a NUL byte (a string may hold "\u0000", which is checked later). */
	if (memchr(text, 0, len))
		return log_debug_errno(-EBADMSG, "Invalid %s: it contains a NUL byte", what);
	tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (!o || end != len) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		json_tokener_free(tok);
		json_object_put(o);
		return log_debug_errno(-EBADMSG, "Invalid %s: %s at byte %zu", what,
				       e == json_tokener_success ? "trailing data"
				       : e == json_tokener_continue
					       ? "unexpected end of the JSON text"
					       : json_tokener_error_desc(e),
				       end);
	}
	json_tokener_free(tok);
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return log_debug_errno(-EBADMSG, "Invalid %s: not a JSON object", what);
	}
	*ret = o;
	return 0;
}

/*
 * The value of obj[key], which must have JSON type `type`. With `nullable`,
 * null or a missing key give *ret = NULL. ctx names obj in messages.
 */
static int jget(struct json_object *obj, const char *ctx, const char *key, enum json_type type,
		bool nullable, struct json_object **ret)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(obj, key, &v) || !v) {
		if (!nullable)
			return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is missing or null",
					       ctx, key);
		*ret = NULL;
		return 0;
	}
	if (!json_object_is_type(v, type))
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is not of type %s", ctx, key,
				       json_type_to_name(type));
	*ret = v;
	return 0;
}

static int jget_u64(struct json_object *obj, const char *ctx, const char *key, uint64_t max,
		    uint64_t *ret)
{
	struct json_object *v;
	uint64_t u;
	int r;

	r = jget(obj, ctx, key, json_type_int, false, &v);
	if (r < 0)
		return r;
	/* json-c keeps integers as int64 or, above INT64_MAX, as uint64. */
	if (json_object_get_int64(v) < 0)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is negative", ctx, key);
	u = json_object_get_uint64(v);
	if (u > max)
		return log_debug_errno(-EBADMSG,
				       "Invalid image: %s.%s is %" PRIu64 ", more than %" PRIu64,
				       ctx, key, u, max);
	*ret = u;
	return 0;
}

static int jget_bool(struct json_object *obj, const char *ctx, const char *key, bool *ret)
{
	struct json_object *v;
	int r;

	r = jget(obj, ctx, key, json_type_boolean, false, &v);
	if (r < 0)
		return r;
	*ret = json_object_get_boolean(v);
	return 0;
}

/* A JSON string equal to s, without a "\u0000" hiding a longer value. */
static bool jstr_is(struct json_object *v, const char *s)
{
	return (size_t)json_object_get_string_len(v) == strlen(s) &&
	       streq(json_object_get_string(v), s);
}

enum str_kind {
	STR_TEXT,	/* any bytes but NUL */
	STR_NONEMPTY,	/* at least one byte */
	STR_PATH,	/* absolute */
	STR_MOUNTPOINT, /* absolute and normalised */
};

/* A string field, decoded (utf8_unescape_bytes) into a new string; NULL for null when nullable. */
static int jget_str(struct json_object *obj, const char *ctx, const char *key, bool nullable,
		    enum str_kind kind, size_t max, char **ret)
{
	_cleanup_free_ char *d = NULL;
	struct json_object *v;
	bool ok;
	int r, len;

	r = jget(obj, ctx, key, json_type_string, nullable, &v);
	if (r < 0)
		return r;
	if (!v) {
		*ret = NULL;
		return 0;
	}
	len = json_object_get_string_len(v);
	if (len < 0)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s has no length", ctx, key);
	/* Decoding never makes a string longer; an escape takes at most 4 characters per byte. */
	if ((size_t)len / 4 > max)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is longer than %zu bytes",
				       ctx, key, max);
	r = utf8_unescape_bytes(json_object_get_string(v), (size_t)len, &d);
	if (r == -EINVAL)
		return log_debug_errno(
			-EBADMSG, "Invalid image: %s.%s has a bad escape or a NUL byte", ctx, key);
	if (r < 0)
		return r;
	if (strlen(d) > max)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is longer than %zu bytes",
				       ctx, key, max);
	switch (kind) {
	case STR_TEXT:
		ok = true;
		break;
	case STR_NONEMPTY:
		ok = d[0] != 0;
		break;
	case STR_PATH:
		ok = path_ok(d, false);
		break;
	case STR_MOUNTPOINT:
		ok = path_ok(d, true);
		break;
	default:
		ok = false;
	}
	if (!ok)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.%s is %s", ctx, key,
				       kind == STR_NONEMPTY	? "empty"
				       : kind == STR_MOUNTPOINT ? "not a normalised absolute path"
								: "not an absolute path");
	*ret = TAKE_PTR(d);
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

static int flags_from_json(struct json_object *arr, const char *ctx, uint64_t *ret)
{
	/* As in mountinfo: the atime mode is strict unless "relatime" or "noatime" is given. */
	uint64_t attr = MOUNT_ATTR_STRICTATIME;
	size_t n = json_object_array_length(arr);

	if (n > FLAGS_MAX)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.flags has %zu names", ctx, n);
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		const char *name;

		if (!json_object_is_type(v, json_type_string))
			return log_debug_errno(
				-EBADMSG, "Invalid image: %s.flags[%zu] is not a string", ctx, i);
		name = json_object_get_string(v);
		if ((size_t)json_object_get_string_len(v) != strlen(name))
			return log_debug_errno(
				-EBADMSG, "Invalid image: %s.flags[%zu] holds a NUL byte", ctx, i);
		/* mntcr_attr_format() writes "idmapped", which is not in the flag table */
		if (streq(name, "idmapped"))
			attr |= MOUNT_ATTR_IDMAP;
		else if (attr_from_name(name, &attr) < 0)
			return log_debug_errno(
				-EBADMSG,
				"Invalid image: %s.flags[%zu] \"%.32s\" is not a mount flag", ctx,
				i, name);
	}
	*ret = attr;
	return 0;
}

static int sb_from_json(struct json_object *o, size_t i, struct mntcr_sb *sb)
{
	_cleanup_free_ char *dev = NULL;
	char ctx[48];
	int r;

	snprintf(ctx, sizeof(ctx), "manifest.superblocks[%zu]", i);
	if (!json_object_is_type(o, json_type_object))
		return log_debug_errno(-EBADMSG, "Invalid image: %s is not an object", ctx);
	if ((r = jget_str(o, ctx, "dev", false, STR_NONEMPTY, 32, &dev)) < 0)
		return r;
	if (parse_dev(dev, &sb->dev_major, &sb->dev_minor) < 0)
		return log_debug_errno(-EBADMSG, "Invalid image: %s.dev \"%s\" is not MAJOR:MINOR",
				       ctx, dev);
	if ((r = jget_str(o, ctx, "fstype", false, STR_NONEMPTY, FSTYPE_MAX, &sb->fstype)) < 0 ||
	    (r = jget_str(o, ctx, "source", true, STR_TEXT, TEXT_MAX, &sb->source)) < 0 ||
	    (r = jget_str(o, ctx, "options", true, STR_TEXT, TEXT_MAX, &sb->opts)) < 0 ||
	    (r = jget_bool(o, ctx, "owned", &sb->owned)) < 0 ||
	    (r = jget_str(o, ctx, "ext_path", true, STR_MOUNTPOINT, IMAGE_PATH_MAX,
			  &sb->ext_path)) < 0 ||
	    (r = jget_str(o, ctx, "ext_root", true, STR_PATH, IMAGE_PATH_MAX, &sb->ext_root)) < 0)
		return r;
	return 0;
}

static int mount_from_json(struct json_object *o, size_t i, const struct mntcr_tree *t,
			   struct mntcr_mount *m)
{
	struct json_object *flags, *type;
	uint64_t old_id, sb;
	char ctx[48];
	int r;

	snprintf(ctx, sizeof(ctx), "manifest.mounts[%zu]", i);
	if (!json_object_is_type(o, json_type_object))
		return log_debug_errno(-EBADMSG, "Invalid image: %s is not an object", ctx);
	if ((r = jget_u64(o, ctx, "id", UINT64_MAX, &m->id)) < 0 ||
	    (r = jget_u64(o, ctx, "parent_id", UINT64_MAX, &m->parent_id)) < 0 ||
	    (r = jget_u64(o, ctx, "old_id", UINT32_MAX, &old_id)) < 0 ||
	    (r = jget_u64(o, ctx, "sb", UINT64_MAX, &sb)) < 0)
		return r;
	if (sb >= t->n_sbs)
		return log_debug_errno(-EBADMSG,
				       "Invalid image: %s.sb is %" PRIu64
				       " but there are %zu superblocks",
				       ctx, sb, t->n_sbs);
	m->old_id = (uint32_t)old_id;
	m->sb = (size_t)sb;
	m->dev_major = t->sbs[sb].dev_major;
	m->dev_minor = t->sbs[sb].dev_minor;
	if ((r = jget_str(o, ctx, "root", false, STR_PATH, IMAGE_PATH_MAX, &m->root)) < 0 ||
	    (r = jget_str(o, ctx, "mountpoint", false, STR_MOUNTPOINT, IMAGE_PATH_MAX,
			  &m->mountpoint)) < 0 ||
	    (r = jget(o, ctx, "flags", json_type_array, false, &flags)) < 0 ||
	    (r = flags_from_json(flags, ctx, &m->attr)) < 0 ||
	    (r = jget_str(o, ctx, "fstype", false, STR_NONEMPTY, FSTYPE_MAX, &m->fstype)) < 0 ||
	    (r = jget_str(o, ctx, "source", true, STR_TEXT, TEXT_MAX, &m->source)) < 0 ||
	    (r = jget_str(o, ctx, "sb_options", true, STR_TEXT, TEXT_MAX, &m->sb_opts)) < 0 ||
	    (r = jget_u64(o, ctx, "shared", UINT64_MAX, &m->shared)) < 0 ||
	    (r = jget_u64(o, ctx, "master", UINT64_MAX, &m->master)) < 0 ||
	    (r = jget_u64(o, ctx, "propagate_from", UINT64_MAX, &m->propagate_from)) < 0 ||
	    (r = jget_bool(o, ctx, "unbindable", &m->unbindable)) < 0 ||
	    (r = jget(o, ctx, "type", json_type_string, true, &type)) < 0)
		return r;
	if (!type)
		m->type = NODE_UNKNOWN;
	else if (jstr_is(type, "dir"))
		m->type = NODE_DIR;
	else if (jstr_is(type, "file"))
		m->type = NODE_FILE;
	else
		return log_debug_errno(
			-EBADMSG, "Invalid image: %s.type is neither \"dir\", \"file\" nor null",
			ctx);
	return 0;
}

static int manifest_parse(const char *text, size_t len, unsigned version, struct mntcr_tree **ret)
{
	_cleanup_json_ struct json_object *root = NULL;
	struct json_object *v, *counts, *sbs, *mounts;
	_cleanup_free_ char *source = NULL;
	uint64_t u, n_mounts, n_sbs, root_id;
	struct mntcr_tree *t = NULL;
	int r;

	r = json_parse_text("manifest", text, len, &root);
	if (r < 0)
		return r;
	if ((r = jget(root, "manifest", "format", json_type_string, false, &v)) < 0)
		return r;
	if (!jstr_is(v, MANIFEST_FORMAT))
		return log_debug_errno(-EBADMSG, "Invalid manifest: format is not \"%s\"",
				       MANIFEST_FORMAT);
	if ((r = jget_u64(root, "manifest", "version", UINT64_MAX, &u)) < 0)
		return r;
	if (u != version)
		return log_debug_errno(-EBADMSG,
				       "Invalid manifest: version %" PRIu64
				       " but the image is version %u",
				       u, version);

	/* Sizes first, so that no claim makes us allocate anything. */
	if ((r = jget(root, "manifest", "counts", json_type_object, false, &counts)) < 0 ||
	    (r = jget_u64(counts, "manifest.counts", "mounts", MOUNTS_MAX, &n_mounts)) < 0 ||
	    (r = jget_u64(counts, "manifest.counts", "superblocks", n_mounts, &n_sbs)) < 0 ||
	    (r = jget(root, "manifest", "superblocks", json_type_array, false, &sbs)) < 0 ||
	    (r = jget(root, "manifest", "mounts", json_type_array, false, &mounts)) < 0)
		return r;
	if (n_mounts == 0)
		return log_debug_errno(-EBADMSG, "Invalid manifest: no mounts");
	if (json_object_array_length(mounts) != n_mounts || json_object_array_length(sbs) != n_sbs)
		return log_debug_errno(-EBADMSG,
				       "Invalid manifest: counts say %" PRIu64
				       " mounts and %" PRIu64
				       " superblocks, the arrays have %zu and %zu",
				       n_mounts, n_sbs, json_object_array_length(mounts),
				       json_object_array_length(sbs));

	r = tree_new(&t);
	if (r < 0)
		return r;
	if ((r = jget_str(root, "manifest", "source", true, STR_TEXT, 32, &source)) < 0)
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
	if ((r = jget_str(root, "manifest", "kernel", true, STR_TEXT, NAME_MAX_LEN, &t->kernel)) <
		    0 ||
	    (r = jget_str(root, "manifest", "hostname", true, STR_TEXT, NAME_MAX_LEN,
			  &t->hostname)) < 0 ||
	    (r = jget_u64(root, "manifest", "pid", INT_MAX, &u)) < 0)
		goto fail;
	t->pid = (pid_t)u;
	if ((r = jget_u64(root, "manifest", "ns_id", UINT64_MAX, &t->ns_id)) < 0 ||
	    (r = jget_bool(root, "manifest", "unique_ids", &t->unique_ids)) < 0 ||
	    (r = jget_u64(root, "manifest", "root_id", UINT64_MAX, &root_id)) < 0)
		goto fail;

	if ((r = GROW(t->sbs, t->cap_sbs, n_sbs)) < 0 ||
	    (r = GROW(t->mounts, t->cap_mounts, n_mounts)) < 0)
		goto fail;
	for (size_t i = 0; i < n_sbs; i++) {
		struct mntcr_sb sb = { 0 };

		r = sb_from_json(json_object_array_get_idx(sbs, i), i, &sb);
		if (r == 0)
			r = tree_add_sb(t, &sb);
		if (r < 0) {
			sb_clear(&sb);
			goto fail;
		}
	}
	for (size_t i = 0; i < n_mounts; i++) {
		struct mntcr_mount m = { 0 };

		r = mount_from_json(json_object_array_get_idx(mounts, i), i, t, &m);
		if (r == 0)
			r = tree_add_mount(t, &m);
		if (r < 0) {
			mount_clear(&m);
			goto fail;
		}
	}
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
	*ret = t;
	return 0;
fail:
	mntcr_tree_free(t);
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

static int checksum_parse(const char *text, size_t len, struct checksum *ret)
{
	_cleanup_json_ struct json_object *root = NULL;
	struct json_object *alg, *hex[2];
	uint64_t digest[2];
	int r;

	r = json_parse_text("checksum member", text, len, &root);
	if (r < 0)
		return r;
	if ((r = jget(root, "checksum", "algorithm", json_type_string, false, &alg)) < 0 ||
	    (r = jget(root, "checksum", "manifest", json_type_string, false, &hex[0])) < 0 ||
	    (r = jget(root, "checksum", "content", json_type_string, false, &hex[1])) < 0 ||
	    (r = jget_u64(root, "checksum", "members", UINT64_MAX, &ret->members)) < 0)
		return r;
	if (!jstr_is(alg, CHECKSUM_ALGORITHM))
		return log_debug_errno(-EBADMSG, "Invalid checksum member: the algorithm is not %s",
				       CHECKSUM_ALGORITHM);
	for (size_t i = 0; i < 2; i++)
		if (parse_hex64(json_object_get_string(hex[i]), &digest[i]) < 0)
			return log_debug_errno(
				-EBADMSG,
				"Invalid checksum member: a digest is not 16 lowercase hex digits");
	ret->manifest = digest[0];
	ret->content = digest[1];
	return 0;
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

static int reader_open(struct image_reader *rd, int fd)
{
	rd->io.fd = fd;
	rd->io.buf = malloc(IO_BUF_SIZE);
	rd->data = malloc(IO_BUF_SIZE);
	rd->content = XXH3_createState();
	rd->a = archive_read_new();
	if (!rd->io.buf || !rd->data || !rd->content || !rd->a)
		return -ENOMEM;
	if (XXH3_64bits_reset(rd->content) != XXH_OK)
		return -ENOMEM;
	/*
	 * Any filter libarchive knows (gzip, zstd, ...), so that compressed
	 * images read without a format change; only the tar formats.
	 */
	if (archive_read_support_filter_all(rd->a) != ARCHIVE_OK ||
	    archive_read_support_format_tar(rd->a) != ARCHIVE_OK ||
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
		la_ssize_t n = archive_read_data(rd->a, rd->data, IO_BUF_SIZE);
		int r;

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
		if (h && XXH3_64bits_update(h, rd->data, (size_t)n) != XXH_OK)
			return -EIO;
		if (out) {
			r = strbuf_add(out, rd->data, (size_t)n);
			if (r < 0)
				return r;
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
	if (big || v > IMAGE_VERSION)
		return log_debug_errno(
			-EPROTO, "The image has format version %.*s, this mntcr knows version %d",
			(int)(i - start), buf + start, IMAGE_VERSION);
	*ret_version = (unsigned)v;
	return 0;
}

/*
 * "content/<sb>" or "content/<sb>/<relative path>", where <sb> is a
 * superblock index in decimal and the path has no empty, "." or ".."
 * component (a trailing '/' is allowed, for directories).
 */
static int check_content_name(const char *name, uint64_t *ret_sb)
{
	const char *p = name + strlen(CONTENT_PREFIX);
	uint32_t sb;

	if (strlen(name) > CONTENT_NAME_MAX || parse_u32_dec(&p, &sb) < 0 || (*p && *p != '/'))
		return -EINVAL;
	if (*p == '/')
		p++;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		p = *e ? e + 1 : e;
	}
	*ret_sb = sb;
	return 0;
}

/*
 * The members up to and including the checksum, then the end of the
 * archive. Leaves the manifest text in rd->manifest, checked against its
 * digest.
 */
static int read_members(struct image_reader *rd)
{
	struct strbuf buf = { 0 };
	struct archive_entry *e;
	struct checksum sum;
	const char *name;
	uint64_t digest;
	int r;

	/* 1. The magic member. A stream that does not start with it is not an image. */
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

	/* 2. The manifest, kept as bytes until its digest is known. */
	r = next_member(rd, &e, &name);
	if (r == 0)
		r = log_debug_errno(-EBADMSG, "The image is truncated: it ends before %s",
				    MANIFEST_MEMBER);
	if (r < 0)
		return r;
	if (!streq(name, MANIFEST_MEMBER))
		return log_debug_errno(-EBADMSG, "The image's second member is not %s",
				       MANIFEST_MEMBER);
	if ((r = check_regular(e, name, MANIFEST_MAX)) < 0 ||
	    (r = read_data(rd, name, MANIFEST_MAX, &rd->manifest, NULL)) < 0)
		return r;
	rd->members++;

	/* 3. Content members, up to the checksum. */
	for (;;) {
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
		if (strncmp(name, CONTENT_PREFIX, strlen(CONTENT_PREFIX)) != 0 ||
		    check_content_name(name, &sb) < 0)
			return log_debug_errno(-EBADMSG, "Unexpected image member %.*s", 256, name);
		r = read_data(rd, name, SIZE_MAX, NULL, rd->content);
		if (r < 0)
			return r;
		if (!rd->have_content || sb > rd->content_sb_max)
			rd->content_sb_max = sb;
		rd->have_content = true;
		rd->members++;
	}

	/* 4. The checksum, and nothing after it. */
	if ((r = check_regular(e, name, CHECKSUM_MAX)) < 0 ||
	    (r = read_data(rd, name, CHECKSUM_MAX, &buf, NULL)) < 0)
		goto out;
	r = checksum_parse(buf.buf ? buf.buf : "", buf.len, &sum);
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
	digest = XXH3_64bits(rd->manifest.buf, rd->manifest.len);
	if (digest != sum.manifest) {
		r = log_debug_errno(-EBADMSG,
				    "The image is corrupt: the manifest's XXH3-64 is %016" PRIx64
				    ", the checksum says %016" PRIx64,
				    digest, sum.manifest);
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

MNTCR_EXPORT int mntcr_image_read(int fd, struct mntcr_tree **ret_tree)
{
	struct image_reader rd = { 0 };
	struct mntcr_tree *t = NULL;
	int r;

	if (fd < 0 || !ret_tree)
		return -EINVAL;
	r = reader_open(&rd, fd);
	if (r < 0)
		goto out;
	r = read_members(&rd);
	if (r < 0)
		goto out;
	drain(&rd);

	r = manifest_parse(rd.manifest.buf ? rd.manifest.buf : "", rd.manifest.len, rd.version, &t);
	if (r < 0)
		goto out;
	if (rd.have_content && rd.content_sb_max >= t->n_sbs) {
		r = log_debug_errno(-EBADMSG,
				    "Image content names superblock %" PRIu64
				    ", the manifest has %zu",
				    rd.content_sb_max, t->n_sbs);
		mntcr_tree_free(t);
		goto out;
	}
	*ret_tree = t;
	r = 0;
out:
	reader_release(&rd);
	return r;
}
