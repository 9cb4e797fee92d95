/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image format: round trips (memfd, pipe, compressed), truncation and bit
 * flips at every offset, versions, hostile manifests wrapped in a tar with a
 * correct checksum (so that the manifest checks themselves run), content
 * member names, and the byte <-> UTF-8 escaping.
 */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "flags.h"
#include "internal.h"
#include "ns-tree.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tap.h"
#include "tree.h"
#include "util.h"

/* A table with every kind of field: escapes, propagation, overmounts, a file bind, bad UTF-8. */
static const char mountinfo_text[] =
	"21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
	"22 21 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
	"23 21 0:21 / /sys ro,nosuid,nodev,noexec - sysfs sysfs rw\n"
	"24 21 0:22 / /tmp rw,nosuid,nodev,noatime shared:2 - tmpfs tmpfs rw,size=1024k\n"
	"25 21 0:22 /sub /mnt/x rw,nosymfollow master:2 propagate_from:7 - tmpfs tmpfs "
	"rw,size=1024k\n"
	"26 21 0:23 / /mnt/with\\040space rw,nodiratime unbindable - tmpfs none rw\n"
	"27 21 0:24 / /mnt/new\\012line rw - tmpfs tmp\\134fs rw,mode=755\n"
	"28 21 0:24 /d\\134x /mnt/back\\134slash ro,relatime shared:3 master:1 - tmpfs tmp\\134fs "
	"rw,mode=755\n"
	"29 28 0:25 / /mnt/back\\134slash rw - tmpfs over rw\n"
	"30 21 8:1 /etc/hostname /etc/hostname ro,nosuid - ext4 /dev/sda1 rw,errors=remount-ro\n"
	"31 21 0:26 /\\303\\251t\\351 /mnt/\\303\\251t\\351\\377 rw,noexec - fuse.sshfs u@h:/\\351 "
	"rw,user_id=0\n"
	"32 30 0:27 / /etc/hostname/deep rw,idmapped - tmpfs t rw\n";

/* -------------------------------------------------------------------------- */
/* Helpers */

static struct mntcr_tree *parse_mountinfo(const char *text)
{
	return tree_parse_text(text);
}

/* The sample table with the fields mountinfo lacks filled in, and one external superblock. */
static struct mntcr_tree *sample_tree(void)
{
	struct mntcr_tree *t = parse_mountinfo(mountinfo_text);

	if (!t)
		return NULL;
	t->kernel = strdup("6.18.44-fc \\ \xff");
	t->hostname = strdup("vm");
	t->pid = 4242;
	t->ns_id = 0x8000000000000123ULL;
	t->unique_ids = true;
	for (size_t i = 0; i < t->n_mounts; i++)
		t->mounts[i].type = t->mounts[i].n_children
					    ? NODE_DIR
					    : (i % 3 == 0 ? NODE_FILE : NODE_UNKNOWN);
	for (size_t s = 0; s < t->n_sbs; s++) {
		if (streq(t->sbs[s].fstype, "ext4")) {
			t->sbs[s].owned = false;
			t->sbs[s].ext_path = strdup("/host/with space/new\nline");
			t->sbs[s].ext_root = strdup("/sub\\dir\xfe//deleted");
		}
		if (streq(t->sbs[s].fstype, "sysfs"))
			t->sbs[s].source = NULL; /* a null source (its bytes stay in sbs[s].strings) */
	}
	return t;
}

static int memfd_with(const void *buf, size_t n)
{
	int fd = memfd_create("image", MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (n && write(fd, buf, n) != (ssize_t)n) {
		close(fd);
		return -EIO;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static int slurp(int fd, char **ret, size_t *ret_len)
{
	lseek(fd, 0, SEEK_SET);
	return read_full_fd(fd, ret, ret_len, SIZE_MAX);
}

static int image_bytes(const struct mntcr_tree *t, char **ret, size_t *ret_len)
{
	int fd = memfd_create("image", MFD_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = mntcr_image_write(fd, t, 0);
	if (r == 0)
		r = slurp(fd, ret, ret_len);
	close(fd);
	return r;
}

static int read_bytes(const void *buf, size_t n, struct mntcr_tree **ret)
{
	int fd = memfd_with(buf, n), r;

	if (fd < 0)
		return fd;
	r = mntcr_image_read(fd, ret);
	close(fd);
	return r;
}

#define DIFF(cond, ...)                                                                            \
	do {                                                                                       \
		if (cond) {                                                                        \
			if (verbose) {                                                             \
				printf("#   differ: ");                                            \
				printf(__VA_ARGS__);                                               \
				printf("\n");                                                      \
			}                                                                          \
			return false;                                                              \
		}                                                                                  \
	} while (0)

/* Every field, stored and derived. */
static bool trees_equal(const struct mntcr_tree *a, const struct mntcr_tree *b, bool verbose)
{
	DIFF(a->n_mounts != b->n_mounts || a->n_sbs != b->n_sbs, "sizes %zu/%zu vs %zu/%zu",
	     a->n_mounts, a->n_sbs, b->n_mounts, b->n_sbs);
	DIFF(a->root != b->root, "root");
	DIFF(a->ns_id != b->ns_id || a->pid != b->pid || a->source != b->source ||
		     a->unique_ids != b->unique_ids,
	     "ns_id/pid/source/unique_ids");
	DIFF(!streq_ptr(a->kernel, b->kernel) || !streq_ptr(a->hostname, b->hostname),
	     "kernel/hostname");
	DIFF(!b->indexed, "not indexed");
	for (size_t i = 0; i < a->n_mounts; i++) {
		const struct mntcr_mount *x = &a->mounts[i], *y = &b->mounts[i];

		DIFF(x->id != y->id || x->parent_id != y->parent_id || x->old_id != y->old_id,
		     "mount %zu ids", i);
		DIFF(x->dev_major != y->dev_major || x->dev_minor != y->dev_minor, "mount %zu dev",
		     i);
		DIFF(!streq_ptr(x->root, y->root) || !streq_ptr(mount_abs(a, x), mount_abs(b, y)),
		     "mount %zu paths '%s' '%s'", i, y->root, mount_abs(b, y));
		DIFF(x->attr != y->attr, "mount %zu attr %#" PRIx64 " vs %#" PRIx64, i, x->attr,
		     y->attr);
		DIFF(!streq_ptr(x->fstype, y->fstype) || !streq_ptr(x->source, y->source) ||
			     !streq_ptr(x->sb_opts, y->sb_opts),
		     "mount %zu fstype/source/sb_opts", i);
		DIFF(x->shared != y->shared || x->master != y->master ||
			     x->propagate_from != y->propagate_from ||
			     x->unbindable != y->unbindable,
		     "mount %zu propagation", i);
		DIFF(x->type != y->type, "mount %zu type", i);
		DIFF(x->parent != y->parent || x->sb != y->sb || x->n_children != y->n_children ||
			     x->covered_by != y->covered_by || x->cover != y->cover ||
			     x->hidden != y->hidden,
		     "mount %zu derived fields", i);
		for (size_t k = 0; k < x->n_children; k++)
			DIFF(tree_child_idx(a, x, k) != tree_child_idx(b, y, k),
			     "mount %zu child %zu", i, k);
	}
	for (size_t s = 0; s < a->n_sbs; s++) {
		const struct mntcr_sb *x = &a->sbs[s], *y = &b->sbs[s];

		DIFF(x->dev_major != y->dev_major || x->dev_minor != y->dev_minor, "sb %zu dev", s);
		DIFF(!streq_ptr(x->fstype, y->fstype) || !streq_ptr(x->source, y->source) ||
			     !streq_ptr(x->opts, y->opts),
		     "sb %zu fstype/source/opts", s);
		DIFF(x->owned != y->owned || !streq_ptr(x->ext_path, y->ext_path) ||
			     !streq_ptr(x->ext_root, y->ext_root),
		     "sb %zu owned/ext", s);
		DIFF(x->n_mounts != y->n_mounts, "sb %zu n_mounts", s);
		for (size_t k = 0; k < x->n_mounts; k++)
			DIFF(tree_sb_mount_idx(a, x, k) != tree_sb_mount_idx(b, y, k),
			     "sb %zu mount %zu", s, k);
	}
	return true;
}

struct member {
	const char *name;
	const char *data;
	size_t len;   /* 0: strlen(data) */
	int filetype; /* 0: regular file */
};

/* A tar (pax restricted, optionally gzip-compressed) of the members, in memory. */
static int make_tar(const struct member *m, size_t n, bool gzip, char **ret, size_t *ret_len)
{
	struct archive *a = archive_write_new();
	int fd = memfd_create("tar", MFD_CLOEXEC), r = 0;

	if (!a || fd < 0)
		return -ENOMEM;
	if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    (gzip ? archive_write_add_filter_gzip(a) : archive_write_add_filter_none(a)) !=
		    ARCHIVE_OK ||
	    archive_write_open_fd(a, fd) != ARCHIVE_OK)
		r = -EIO;
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		size_t len = m[i].data ? (m[i].len ? m[i].len : strlen(m[i].data)) : 0;

		archive_entry_set_pathname(e, m[i].name);
		archive_entry_set_filetype(e, m[i].filetype ? (unsigned)m[i].filetype : AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(
			e, m[i].filetype && m[i].filetype != AE_IFREG ? 0 : (la_int64_t)len);
		if (archive_write_header(a, e) != ARCHIVE_OK)
			r = -EIO;
		else if (len && (!m[i].filetype || m[i].filetype == AE_IFREG) &&
			 archive_write_data(a, m[i].data, len) != (la_ssize_t)len)
			r = -EIO;
		archive_entry_free(e);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		r = -EIO;
	archive_write_free(a);
	if (r == 0)
		r = slurp(fd, ret, ret_len);
	close(fd);
	return r;
}

static char *checksum_json(const char *manifest, uint64_t content, uint64_t members)
{
	char *s = NULL;

	if (asprintf(&s,
		     "{\"algorithm\": \"xxh3-64\", \"manifest\": \"%016" PRIx64
		     "\", \"content\": \"%016" PRIx64 "\", \"members\": %" PRIu64 "}\n",
		     XXH3_64bits(manifest, strlen(manifest)), content, members) < 0)
		return NULL;
	return s;
}

static int read_manifest_vn(const char *text, unsigned version, struct mntcr_tree **ret);

/*
 * Read an image around this manifest, of the version its "version" key
 * says (version 1 when it says none a number): the magic, the manifest,
 * from version 2 its digest member, and a correct checksum.
 */
static int read_manifest(const char *manifest, struct mntcr_tree **ret)
{
	const char *v = strstr(manifest, "\"version\"");
	unsigned long version = 0;

	if (v)
		version = strtoul(v + strlen("\"version\"") + strspn(v + strlen("\"version\""), " \n:"),
				  NULL, 10);
	return read_manifest_vn(manifest, version >= 1 && version <= 9 ? (unsigned)version : 1, ret);
}

/* The data of member `name` of a tar in memory. */
static int extract_member(const char *tar, size_t len, const char *name, char **ret)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	int r = -ENOENT;

	archive_read_support_format_tar(a);
	if (archive_read_open_memory(a, tar, len) != ARCHIVE_OK) {
		archive_read_free(a);
		return -EIO;
	}
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		struct strbuf b = { 0 };
		char buf[4096];
		la_ssize_t n;

		if (!streq(archive_entry_pathname(e), name))
			continue;
		while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
			strbuf_add(&b, buf, (size_t)n);
		*ret = strbuf_detach(&b);
		r = 0;
		break;
	}
	archive_read_free(a);
	return r;
}

/* A tree's manifest, parsed, for tests that edit it; frees the tree. */
static struct json_object *manifest_of(struct mntcr_tree *t)
{
	_cleanup_free_ char *img = NULL, *manifest = NULL;
	struct json_object *o = NULL;
	size_t len;

	if (t && image_bytes(t, &img, &len) == 0 &&
	    extract_member(img, len, "manifest.json", &manifest) == 0)
		o = json_tokener_parse(manifest);
	mntcr_tree_free(t);
	return o;
}

/* The sample tree's manifest, parsed. */
static struct json_object *sample_manifest(void)
{
	return manifest_of(sample_tree());
}

/* Each mount's mountpoint made absolute, as versions before 5 have them (the writer's are relative). */
static void manifest_absolute_points(struct json_object *mounts)
{
	size_t n = json_object_array_length(mounts);
	bool more = true;

	/* a mount whose parent's is absolute already, until none is left: parents come first or later */
	for (size_t round = 0; more && round <= n; round++) {
		more = false;
		for (size_t i = 0; i < n; i++) {
			struct json_object *m = json_object_array_get_idx(mounts, i);
			const char *rel = json_object_get_string(json_object_object_get(m, "mountpoint"));
			int64_t pid = json_object_get_int64(json_object_object_get(m, "parent_id"));
			_cleanup_free_ char *abs = NULL;

			if (!rel || rel[0] == '/')
				continue;
			for (size_t k = 0; k < n && !abs; k++) {
				struct json_object *p = json_object_array_get_idx(mounts, k);
				const char *pp = json_object_get_string(json_object_object_get(p, "mountpoint"));

				if (json_object_get_int64(json_object_object_get(p, "id")) != pid || !pp)
					continue;
				if (pp[0] != '/')
					break;
				abs = *rel ? path_join(pp, rel) : strdup(pp);
			}
			if (abs)
				json_object_object_add(m, "mountpoint", json_object_new_string(abs));
			more = true;
		}
	}
}

/*
 * A manifest the writer wrote (version 5) as an older version says it:
 * absolute mountpoints before version 5, every mount with every key
 * before version 4 (those version 4 leaves out are its superblock's, or
 * no propagation), without the namespaces and processes before version 3
 * and the superblocks' content before version 2.
 */
static struct json_object *manifest_as_version(struct json_object *root, unsigned version)
{
	struct json_object *sbs, *mounts;
	static const struct {
		const char *key, *sb_key; /* a string of the superblock's, or a default */
		int dflt;		  /* 0, or 1 for a boolean */
	} keys[] = {
		{ "fstype", "fstype", 0 },	 { "source", "source", 0 },
		{ "sb_options", "options", 0 },	 { "shared", NULL, 0 },
		{ "master", NULL, 0 },		 { "propagate_from", NULL, 0 },
		{ "unbindable", NULL, 1 },
	};

	if (!root)
		return NULL;
	sbs = json_object_object_get(root, "superblocks");
	mounts = json_object_object_get(root, "mounts");
	json_object_object_add(root, "version", json_object_new_int((int)version));
	if (version < 5)
		manifest_absolute_points(mounts);
	for (size_t i = 0; version < 4 && i < json_object_array_length(mounts); i++) {
		struct json_object *m = json_object_array_get_idx(mounts, i), *sb;

		sb = json_object_array_get_idx(
			sbs, (size_t)json_object_get_int64(json_object_object_get(m, "sb")));
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
			struct json_object *v;

			if (json_object_object_get_ex(m, keys[k].key, NULL))
				continue;
			if (keys[k].sb_key)
				v = json_object_get(json_object_object_get(sb, keys[k].sb_key));
			else
				v = keys[k].dflt ? json_object_new_boolean(0) : json_object_new_int(0);
			json_object_object_add(m, keys[k].key, v);
		}
		if (version < 3)
			json_object_object_del(m, "ns");
	}
	if (version < 3) {
		json_object_object_del(root, "namespaces");
		json_object_object_del(root, "processes");
	}
	for (size_t i = 0; version < 2 && i < json_object_array_length(sbs); i++)
		json_object_object_del(json_object_array_get_idx(sbs, i), "content");
	return root;
}

/* Serialise an edited manifest, read it through an image, free it. */
static int read_edited(struct json_object *root)
{
	const char *text = json_object_to_json_string_ext(
		root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	int r = read_manifest(text, NULL);

	json_object_put(root);
	return r;
}

static struct json_object *jpath(struct json_object *root, const char *array, size_t idx)
{
	return json_object_array_get_idx(json_object_object_get(root, array), idx);
}

static void jset(struct json_object *o, const char *key, struct json_object *v)
{
	json_object_object_add(o, key, v);
}

/* -------------------------------------------------------------------------- */
/* Escaping */

static uint64_t rng_state = 0x1234567887654321ULL;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Random non-NUL bytes, biased toward what is interesting: high bytes, '\\', 'x', hex digits. */
static void random_bytes(char *buf, size_t n)
{
	static const char interesting[] = "\\x0aF/ \n\t\"";

	for (size_t i = 0; i < n; i++) {
		unsigned c;

		switch (rnd() % 4) {
		case 0:
			c = interesting[rnd() % (sizeof(interesting) - 1)];
			break;
		case 1:
			c = 0x80 + rnd() % 0x80;
			break;
		case 2: {
			/* a valid multi-byte sequence, sometimes cut short by the next byte */
			static const char *seqs[] = { "\xc3\xa9",	  "\xe2\x82\xac",
						      "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
						      "\xef\xbf\xbf",	  "\xf4\x8f\xbf\xbf",
						      "\xe0\xa0\x80" };
			const char *s = seqs[rnd() % ARRAY_SIZE(seqs)];

			for (; *s && i < n - 1; s++)
				buf[i++] = *s;
			c = (unsigned char)*s ? (unsigned char)*s : 'a';
			break;
		}
		default:
			c = 1 + rnd() % 255;
		}
		buf[i] = (char)c;
	}
	buf[n] = 0;
}

TEST(utf8_sequence_len)
{
	CHECK_INT(utf8_sequence_len((const unsigned char *)"a", 1), 1);
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xc3\xa9", 2), 2);
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xc3", 1), 0);
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xc0\x80", 2), 0); /* overlong NUL */
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xe0\x80\x80", 3), 0); /* overlong */
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xed\xa0\x80", 3), 0); /* surrogate */
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xf4\x90\x80\x80", 4),
		  0); /* > U+10FFFF */
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\xff", 1), 0);
	CHECK_INT(utf8_sequence_len((const unsigned char *)"\x80", 1), 0);
}

/* The display form (mntcr show --json): ill-formed bytes as \xHH, "\x" as "\x5cx", as libsmartcols shows them. */
TEST(escape_display)
{
	static const struct {
		const char *in, *out;
		bool valid;
	} cases[] = {
		{ "", "", true },
		{ "/caf\xc3\xa9", "/caf\xc3\xa9", true },
		{ "a\\b", "a\\b", true },
		{ "a\\x41", "a\\x5cx41", true },
		{ "a\xff" "b", "a\\xffb", false },
		{ "c\\d\xc3", "c\\d\\xc3", false },
		{ "\xed\xa0\x80\\", "\\xed\\xa0\\x80\\", false },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *e = NULL;

		CHECK(utf8_valid(cases[i].in) == cases[i].valid);
		CHECK_INT(utf8_escape(cases[i].in, UTF8_DISPLAY, &e), 0);
		CHECK_STREQ(e, cases[i].out);
		CHECK(utf8_valid(e));
	}
}

TEST(escape_examples)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "", "" },
		{ "/plain/path", "/plain/path" },
		{ "/caf\xc3\xa9", "/caf\xc3\xa9" },
		{ "a\\b", "a\\\\b" },
		{ "\\x41", "\\\\x41" },
		{ "\xff", "\\xff" },
		{ "\xc3", "\\xc3" },
		{ "\xc3(", "\\xc3(" },
		{ "\xe2\x82", "\\xe2\\x82" },
		{ "\xed\xa0\x80", "\\xed\\xa0\\x80" },
		{ "new\nline", "new\nline" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *e = NULL, *d = NULL;

		CHECK_INT(utf8_escape(cases[i].in, UTF8_IMAGE, &e), 0);
		CHECK_STREQ(e, cases[i].out);
		CHECK_INT(utf8_unescape_bytes(e, strlen(e), &d), 0);
		CHECK_STREQ(d, cases[i].in);
	}
	/* Not produced by the escaper, and not accepted back. */
	static const char *bad[] = { "\\", "a\\q", "\\x", "\\x4", "\\xg0", "\\x00", "\\u00e9" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *d = NULL;

		CHECK_INT(utf8_unescape_bytes(bad[i], strlen(bad[i]), &d), -EINVAL);
		CHECK(d == NULL);
	}
	{
		char *d = NULL;

		CHECK_INT(utf8_unescape_bytes("a\0b", 3, &d), -EINVAL); /* a literal NUL */
		CHECK(d == NULL);
	}
}

TEST(escape_random_round_trip)
{
	char buf[200];
	int bad = 0;

	for (int iter = 0; iter < 20000; iter++) {
		_cleanup_free_ char *e = NULL, *d = NULL;
		size_t n = rnd() % 120;
		struct json_object *js, *back;

		random_bytes(buf, n);
		if (utf8_escape(buf, UTF8_IMAGE, &e) < 0 || !utf8_valid(e) ||
		    utf8_unescape_bytes(e, strlen(e), &d) < 0 || !streq(d, buf)) {
			bad++;
			continue;
		}
		/* And through json-c, strictly validating UTF-8, as the image does. */
		js = json_object_new_string(e);
		back = json_tokener_parse(
			json_object_to_json_string_ext(js, JSON_C_TO_STRING_NOSLASHESCAPE));
		if (!back || !streq(json_object_get_string(back), e))
			bad++;
		json_object_put(js);
		json_object_put(back);
	}
	CHECK_INT(bad, 0);
}

/* The byte-at-a-time readings that path_depth(), path_is_normalized() and utf8_unescape_bytes() must agree with. */
static size_t ref_depth(const char *path)
{
	size_t n = 0;

	for (const char *p = path; *p; p++)
		if (*p == '/' && p[1] != 0 && p[1] != '/')
			n++;
	return n;
}

static bool ref_normalized(const char *path)
{
	if (path[0] != '/')
		return false;
	if (streq(path, "/"))
		return true;
	for (const char *p = path; *p;) {
		const char *c = p + 1, *e = c;

		while (*e && *e != '/')
			e++;
		if (e == c || (e - c == 1 && c[0] == '.') || (e - c == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		p = e;
	}
	return true;
}

static int ref_unescape(const char *s, size_t n, char *out, size_t *ret_len)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		if (s[i] == 0)
			return -EINVAL;
		if (s[i] != '\\') {
			out[o++] = s[i++];
			continue;
		}
		if (i + 1 < n && s[i + 1] == '\\') {
			out[o++] = '\\';
			i += 2;
			continue;
		}
		if (i + 3 < n && s[i + 1] == 'x' && isxdigit((unsigned char)s[i + 2]) &&
		    isxdigit((unsigned char)s[i + 3])) {
			char hex[3] = { s[i + 2], s[i + 3], 0 };
			int v = (int)strtol(hex, NULL, 16);

			if (v == 0)
				return -EINVAL;
			out[o++] = (char)v;
			i += 4;
			continue;
		}
		return -EINVAL;
	}
	*ret_len = o;
	return 0;
}

TEST(paths_and_unescape_word_at_a_time)
{
	static const char path_bytes[] = "//////..a";
	static const char esc_bytes[] = "\\\\x0f4Aa";
	char buf[300], ref[300];
	int bad = 0;

	for (int iter = 0; iter < 200000; iter++) {
		size_t n = rnd() % (iter % 10 ? 40 : 280), rn = 0, len = 0;
		_cleanup_free_ char *d = NULL;
		int r1, r2;

		for (size_t i = 0; i < n; i++)
			buf[i] = path_bytes[rnd() % (sizeof(path_bytes) - 1)];
		buf[n] = 0;
		if (iter % 3 == 0 && n > 0)
			buf[0] = '/';
		if (path_depth(buf) != ref_depth(buf) || path_is_normalized(buf) != ref_normalized(buf))
			bad++;
		for (size_t i = 0; i < n; i++)
			buf[i] = iter % 50 == 0 && rnd() % 40 == 0 ? 0 : esc_bytes[rnd() % (sizeof(esc_bytes) - 1)];
		r1 = utf8_unescape_bytes_full(buf, n, &d, &len);
		r2 = ref_unescape(buf, n, ref, &rn);
		if (r1 != r2 || (r1 == 0 && (len != rn || memcmp(d, ref, rn) != 0)))
			bad++;
	}
	CHECK_INT(bad, 0);
	/* Long normalised paths, and one bad component anywhere in them. */
	for (size_t k = 0; k < 600; k++) {
		char p[700];
		size_t n = 0;

		while (n + 2 < 650)
			p[n++] = '/', p[n++] = 'a';
		p[n] = 0;
		CHECK_INT(path_is_normalized(p), true);
		CHECK_INT(path_depth(p), n / 2);
		if (k + 1 < n && p[k] == '/') {
			p[k + 1] = '.';
			CHECK_INT(path_is_normalized(p), false);
			p[k + 1] = '/';
			CHECK_INT(path_is_normalized(p), false);
		}
	}
}

/* -------------------------------------------------------------------------- */
/* Round trips */

TEST(round_trip_memfd)
{
	struct mntcr_tree *t = sample_tree(), *u = NULL;
	_cleanup_free_ char *img = NULL, *again = NULL, *manifest = NULL;
	size_t len = 0, len2 = 0;

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK_INT(read_bytes(img, len, &u), 0);
	CHECK(u && trees_equal(t, u, true));
	/* Spot checks on what the sample is for. */
	if (u) {
		size_t i;

		CHECK(tree_find(u, 31, &i));
		CHECK_STREQ(mount_abs(u, &u->mounts[i]), "/mnt/\xc3\xa9t\xe9\xff");
		CHECK_STREQ(u->mounts[i].root, "/\xc3\xa9t\xe9");
		CHECK_STREQ(u->mounts[i].fstype, "fuse.sshfs");
		CHECK(tree_find(u, 27, &i));
		CHECK_STREQ(mount_abs(u, &u->mounts[i]), "/mnt/new\nline");
		CHECK_STREQ(u->mounts[i].source, "tmp\\fs");
		CHECK(tree_find(u, 32, &i));
		CHECK(u->mounts[i].attr & MOUNT_ATTR_IDMAP);
		CHECK_INT(u->sbs_from_image, true);
		CHECK_STREQ(u->kernel, "6.18.44-fc \\ \xff");
		/* Written again, the image is the same bytes: no timestamps, same order. */
		CHECK_INT(image_bytes(u, &again, &len2), 0);
		CHECK(len == len2 && again && memcmp(img, again, len) == 0);
	}
	/* The manifest is for people too: indented, paths unescaped where possible. */
	CHECK_INT(extract_member(img, len, "manifest.json", &manifest), 0);
	CHECK(manifest && strstr(manifest, "\n  \"mounts\": [") != NULL);
	/* one line per superblock and per mount, each as json-c prints it with SPACED alone */
	{
		struct json_object *root = manifest ? json_tokener_parse(manifest) : NULL;
		static const char *const arrays[] = { "superblocks", "mounts" };
		size_t lines = 0, items = 0;

		CHECK(root != NULL);
		for (size_t k = 0; root && k < ARRAY_SIZE(arrays); k++) {
			struct json_object *a = json_object_object_get(root, arrays[k]);

			for (size_t i = 0; i < json_object_array_length(a); i++) {
				_cleanup_free_ char *line = NULL;

				items++;
				if (asprintf(&line, "\n    %s%s\n",
					     json_object_to_json_string_ext(json_object_array_get_idx(a, i),
									    JSON_C_TO_STRING_SPACED |
										    JSON_C_TO_STRING_NOSLASHESCAPE),
					     i + 1 < json_object_array_length(a) ? "," : "") > 0 &&
				    strstr(manifest, line))
					lines++;
			}
		}
		CHECK(items > 2);
		CHECK_INT(lines, items);
		json_object_put(root);
	}
	CHECK(manifest && strstr(manifest, "\"flags\": [") != NULL);
	/* below their parent's, "/" */
	CHECK(manifest &&
	      strstr(manifest, "\"mountpoint\": \"mnt/\xc3\xa9t\\\\xe9\\\\xff\"") != NULL);
	CHECK(manifest && strstr(manifest, "\"mountpoint\": \"mnt/new\\nline\"") != NULL);
	CHECK(manifest &&
	      strstr(manifest, "\"ext_path\": \"/host/with space/new\\nline\"") != NULL);
	mntcr_tree_free(t);
	mntcr_tree_free(u);
}

/* Two namespaces: the parent's table, and a child that unmounted /tmp and stacked on /proc. */
static struct mntcr_tree *two_ns_tree(void)
{
	static const char *const texts[] = {
		"21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
		"22 21 0:20 / /proc rw,relatime - proc proc rw\n"
		"24 21 0:22 / /tmp rw,relatime shared:2 - tmpfs tmpfs rw\n",
		"41 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
		"42 41 0:20 / /proc rw,relatime - proc proc rw\n"
		"43 42 0:22 /sub /proc rw,relatime master:2 - tmpfs tmpfs rw\n",
	};
	struct mntcr_tree *t = ns_tree_parse(texts, 2, false);
	int r = t ? 0 : -EBADMSG;

	for (size_t i = 0; t && i < t->n_mounts; i++)
		t->mounts[i].type = NODE_DIR;
	for (size_t k = 0; t && k < 2; k++)
		t->nss[k].id = 4026531840 + k;
	if (r == 0)
		r = tree_add_proc(t, 100, 0, strdup("/"), strdup("/tmp"));
	if (r == 0)
		r = tree_add_proc(t, 200, 1, strdup("/srv/jail"), strdup("/srv/jail/w\nx"));
	if (r == 0)
		r = tree_add_proc(t, 201, 0, strdup("/"), strdup("/"));
	if (r == 0)
		r = tree_index(t);
	if (r < 0) {
		printf("#   two_ns_tree: %s\n", strerror(-r));
		return mntcr_tree_free(t);
	}
	t->unique_ids = false;
	t->source = MNTCR_SOURCE_MOUNTINFO;
	return t;
}

TEST(several_namespaces)
{
	struct mntcr_tree *t = two_ns_tree(), *u = NULL;
	_cleanup_free_ char *img = NULL, *magic = NULL;
	size_t len = 0;

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK_INT(t->n_ns, 2);
	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK_INT(extract_member(img, len, "mntcr-image", &magic), 0);
	CHECK_STREQ(magic, "mntcr-image\nversion 5\n");
	CHECK_INT(read_bytes(img, len, &u), 0);
	CHECK(u && trees_equal(t, u, true));
	if (u) {
		CHECK_INT(u->n_ns, 2);
		CHECK_INT(u->nss[1].id, 4026531841);
		CHECK_INT(u->mounts[u->nss[1].root].id, 41);
		CHECK_INT(u->root, u->nss[0].root);
		for (size_t i = 0; i < u->n_mounts; i++)
			CHECK_INT(u->mounts[i].ns, u->mounts[i].id >= 41);
		CHECK_INT(u->n_procs, 3);
		CHECK_INT(u->procs[1].pid, 200);
		CHECK_INT(u->procs[1].ns, 1);
		CHECK_STREQ(u->procs[1].root, "/srv/jail");
		CHECK_STREQ(u->procs[1].cwd, "/srv/jail/w\nx");
		/* one superblock table for both: /proc and /tmp are one superblock each */
		CHECK_INT(u->n_sbs, 3);
	}
	mntcr_tree_free(t);
	mntcr_tree_free(u);
}

/*
 * An image of this version around this manifest text, read: version 1's
 * layout (magic, manifest, checksum), or from version 2 on the manifest's
 * digest member after it.
 */
static int read_manifest_vn(const char *text, unsigned version, struct mntcr_tree **ret)
{
	_cleanup_free_ char *msum = NULL, *sum = NULL, *tar = NULL, *magic = NULL;
	bool v1 = version == 1;
	struct mntcr_tree *t = NULL;
	size_t len;
	int r;

	if (asprintf(&msum, "{\"algorithm\": \"xxh3-64\", \"manifest\": \"%016" PRIx64 "\"}\n",
		     XXH3_64bits(text, strlen(text))) < 0)
		return -ENOMEM;
	sum = checksum_json(text, XXH3_64bits(NULL, 0), v1 ? 2 : 3);
	if (!sum || asprintf(&magic, "mntcr-image\nversion %u\n", version) < 0)
		return -ENOMEM;
	{
		struct member m[] = {
			{ "mntcr-image", magic },
			{ "manifest.json", text },
			{ v1 ? "checksum" : "manifest.checksum", v1 ? sum : msum },
			{ "checksum", sum },
		};
		r = make_tar(m, v1 ? 3 : 4, false, &tar, &len);
	}
	if (r < 0)
		return r;
	r = read_bytes(tar, len, ret ? ret : &t);
	mntcr_tree_free(t);
	return r;
}

static struct json_object *two_ns_manifest(void)
{
	return manifest_of(two_ns_tree());
}

TEST(several_namespaces_hostile)
{
	struct json_object *o;

	/* the baseline reads */
	o = two_ns_manifest();
	CHECK(o != NULL);
	if (!o)
		return;
	CHECK_INT(read_edited(o), 0);
	/* a mount in a namespace that does not exist */
	o = two_ns_manifest();
	jset(jpath(o, "mounts", 4), "ns", json_object_new_int(2));
	CHECK_INT(read_edited(o), -EBADMSG);
	/* a parent in another namespace: 43's parent 42 is in namespace 1, make 43 namespace 0 */
	o = two_ns_manifest();
	jset(jpath(o, "mounts", 5), "ns", json_object_new_int(0));
	CHECK_INT(read_edited(o), -EBADMSG);
	/* a namespace without a root: every mount in namespace 0 */
	o = two_ns_manifest();
	for (size_t i = 3; i < 6; i++)
		jset(jpath(o, "mounts", i), "ns", json_object_new_int(0));
	CHECK_INT(read_edited(o), -EBADMSG);
	/* a namespace's root_id that is not its root */
	o = two_ns_manifest();
	jset(jpath(o, "namespaces", 1), "root_id", json_object_new_int(42));
	CHECK_INT(read_edited(o), -EBADMSG);
	/* more namespaces than mounts; none */
	o = two_ns_manifest();
	for (int i = 0; i < 10; i++)
		json_object_array_add(json_object_object_get(o, "namespaces"),
				      json_object_get(jpath(o, "namespaces", 0)));
	CHECK_INT(read_edited(o), -EBADMSG);
	o = two_ns_manifest();
	jset(o, "namespaces", json_object_new_array());
	CHECK_INT(read_edited(o), -EBADMSG);
	/* a process in a namespace that does not exist, with a bad pid, without a root */
	o = two_ns_manifest();
	jset(jpath(o, "processes", 0), "ns", json_object_new_int(5));
	CHECK_INT(read_edited(o), -EBADMSG);
	o = two_ns_manifest();
	jset(jpath(o, "processes", 0), "pid", json_object_new_int(-1));
	CHECK_INT(read_edited(o), -EBADMSG);
	o = two_ns_manifest();
	json_object_object_del(jpath(o, "processes", 0), "root");
	CHECK_INT(read_edited(o), -EBADMSG);
	/* the lists missing */
	o = two_ns_manifest();
	json_object_object_del(o, "processes");
	CHECK_INT(read_edited(o), -EBADMSG);
	o = two_ns_manifest();
	json_object_object_del(o, "namespaces");
	CHECK_INT(read_edited(o), -EBADMSG);
}

TEST(members_in_order)
{
	struct mntcr_tree *t = sample_tree();
	_cleanup_free_ char *img = NULL, *magic = NULL, *sum = NULL;
	static const char *want[] = { "mntcr-image", "manifest.json", "manifest.checksum", "checksum" };
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	size_t len = 0, n = 0;

	CHECK_INT(image_bytes(t, &img, &len), 0);
	archive_read_support_format_tar(a);
	CHECK_INT(archive_read_open_memory(a, img, len), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		CHECK(n < ARRAY_SIZE(want) && streq(archive_entry_pathname(e), want[n]));
		CHECK_INT(archive_entry_filetype(e), AE_IFREG);
		n++;
	}
	CHECK_INT(n, 4);
	CHECK_INT(archive_format(a),
		  ARCHIVE_FORMAT_TAR_USTAR); /* pax restricted: plain ustar here */
	archive_read_free(a);
	CHECK_INT(len % 10240, 0);
	CHECK_INT(extract_member(img, len, "mntcr-image", &magic), 0);
	CHECK_STREQ(magic, "mntcr-image\nversion 5\n");
	CHECK_INT(extract_member(img, len, "checksum", &sum), 0);
	CHECK(sum && strstr(sum, "\"algorithm\": \"xxh3-64\"") && strstr(sum, "\"members\": 3"));
	mntcr_tree_free(t);
}

/* A table big enough that the image does not fit in a pipe buffer. */
static struct mntcr_tree *big_tree(size_t n)
{
	struct strbuf b = { 0 };
	struct mntcr_tree *t;

	strbuf_printf(&b, "1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n");
	for (size_t i = 2; i <= n; i++)
		strbuf_printf(&b,
			      "%zu 1 0:%zu /s%zu /m/%zu/d\\040%zu rw,nosuid master:1 - tmpfs "
			      "tmpfs%zu rw,size=%zuk\n",
			      i, i % 50, i, i, i, i % 50, i % 50);
	t = parse_mountinfo(b.buf);
	strbuf_release(&b);
	return t;
}

TEST(round_trip_pipe)
{
	struct mntcr_tree *t = big_tree(5000), *u = NULL;
	int p[2], status = 0;
	pid_t pid;

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK_INT(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		_exit(mntcr_image_write(p[1], t, 0) < 0 ? 1 : 0);
	}
	close(p[1]);
	CHECK_INT(mntcr_image_read(p[0], &u), 0);
	close(p[0]);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0); /* no EPIPE for the writer's last block */
	CHECK(u && trees_equal(t, u, true));
	CHECK_INT(mntcr_tree_n_mounts(t), 5000);
	mntcr_tree_free(t);
	mntcr_tree_free(u);
}

/*
 * Many superblocks and mounts: both arrays of the manifest are written on
 * two threads (when there are two CPUs), each share into a part of its
 * own; the image has the bytes one thread writes.
 */
/*
 * One image of n mounts, written on one thread and on two: the same
 * bytes. many_keys: every mount has every flag and propagation field and
 * long superblock options, more than the writer reserves room for, so
 * every share's buffer grows.
 */
static void same_bytes(size_t n, bool many_keys)
{
	struct strbuf b = { 0 };
	struct mntcr_tree *t, *u = NULL;
	char *one = NULL, *two = NULL;
	size_t one_len = 0, two_len = 0;

	strbuf_printf(&b, "1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n");
	for (size_t i = 2; i <= n; i++)
		if (many_keys)
			strbuf_printf(&b,
				      "%zu 1 0:%zu / /m%zu ro,nosuid,nodev,noexec,nodiratime,nosymfollow "
				      "shared:%zu master:1 propagate_from:1 - tmpfs t rw,size=%zuk,"
				      "nr_inodes=%zu,mode=1777,uid=%zu,gid=%zu,huge=within_size\n",
				      i, i, i, i + 1000000, i, i * 1000, i + 100000, i + 100000);
		else
			strbuf_printf(&b, "%zu 1 0:%zu / /m/%zu%s rw%s - tmpfs t%zu rw,size=%zuk\n", i, i, i,
				      i % 7 ? "" : "/caf\303\251\\x41", i % 3 ? ",nosuid" : ",noexec", i, i);
	t = parse_mountinfo(b.buf);
	strbuf_release(&b);
	CHECK(t && mntcr_tree_n_mounts(t) == n);
	if (!t)
		return;
	CHECK_INT(image_bytes(t, &two, &two_len), 0);
	setenv("MNTCR_THREADS", "1", 1);
	CHECK_INT(image_bytes(t, &one, &one_len), 0);
	unsetenv("MNTCR_THREADS");
	CHECK(one && two && one_len == two_len && memcmp(one, two, one_len) == 0);
	CHECK_INT(read_bytes(two, two_len, &u), 0);
	CHECK(u && trees_equal(t, u, true));
	free(one);
	free(two);
	mntcr_tree_free(t);
	mntcr_tree_free(u);
}

TEST(write_threads_same_bytes)
{
	same_bytes(9000, false);
	same_bytes(4200, true); /* two shares of more than 2,048 mounts */
}

/* Give m the source src: its strings in a new allocation. */
static void set_source(struct mntcr_mount *m, const char *src)
{
	struct mntcr_mount n = *m;
	size_t room[_MOUNT_STR_MAX];

	for (size_t k = 0; k < _MOUNT_STR_MAX; k++) {
		const char *v = k == MOUNT_STR_SOURCE ? src : *mount_str(m, k);

		room[k] = v ? strlen(v) : MOUNT_STR_NULL;
	}
	n.strings = NULL;
	CHECK_INT(mount_strings_alloc(&n, room), 0);
	for (size_t k = 0; k < _MOUNT_STR_MAX; k++)
		if (*mount_str(&n, k))
			strcpy(*mount_str(&n, k), k == MOUNT_STR_SOURCE ? src : *mount_str(m, k));
	mount_clear(m);
	*m = n;
}

static bool saw_second_thread;

/* Anonymous huge pages (kB) in this process's mappings other than the main heap. */
static unsigned long smaps_huge_kb_off_heap(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/smaps", "re");
	unsigned long sum = 0, kb;
	bool heap = false;
	char line[512];

	while (f && fgets(line, sizeof(line), f)) {
		if (isxdigit((unsigned char)line[0]) && strchr(line, '-'))
			heap = strstr(line, "[heap]") != NULL;
		else if (!heap && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			sum += kb;
	}
	return sum;
}

/* Transparent huge pages can be had (not "never"), by madvise at least. */
static bool thp_available(void)
{
	_cleanup_fclose_ FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	char line[128];

	return f && fgets(line, sizeof(line), f) && !strstr(line, "[never]");
}

static void watch_log(int level, const char *msg, void *userdata)
{
	(void)level;
	(void)userdata;
	if (strstr(msg, "parsed on a second thread"))
		saw_second_thread = true;
}

/* Read a manifest text with the reader's threads, and with one thread; both trees in *a and *b. */
static int read_both_ways(const char *manifest, struct mntcr_tree **a, struct mntcr_tree **b, bool *split)
{
	int r;

	saw_second_thread = false;
	mntcr_set_log_func(watch_log, NULL, MNTCR_LOG_DEBUG);
	r = read_manifest(manifest, a);
	*split = saw_second_thread;
	setenv("MNTCR_THREADS", "1", 1);
	if (r == 0)
		r = read_manifest(manifest, b);
	unsetenv("MNTCR_THREADS");
	mntcr_set_log_func(NULL, NULL, MNTCR_LOG_ERROR);
	return r;
}

/*
 * A large manifest's mounts are read on two threads, the second one from
 * a place the reader guesses from the text's layout (one mount per line,
 * or one key per line as json-c prints it): the same tree as on one
 * thread, and when the guess falls inside a string (a raw newline in a
 * string makes its end look like a mount's start) the second thread's
 * work is dropped, and the result is still the same.
 */
TEST(manifest_two_threads)
{
	static const char fake[] = "a },\n    { ";
	struct mntcr_tree *t = big_tree(14000), *a = NULL, *b = NULL;
	_cleanup_free_ char *img = NULL, *manifest = NULL;
	struct strbuf hostile = { 0 };
	size_t len, mid, p;
	bool split = false;
	const char *q;

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK_INT(extract_member(img, len, "manifest.json", &manifest), 0);
	CHECK(strstr(manifest, "\n    { \"id\": ") != NULL); /* one mount per line */
	CHECK_INT(read_both_ways(manifest, &a, &b, &split), 0);
	CHECK(split);
	CHECK(a && b && trees_equal(t, a, true) && trees_equal(t, b, true));
	mntcr_tree_free(a);
	mntcr_tree_free(b);
	a = b = NULL;

	/* the same with the second thread's heap in huge pages, which it asks for */
	mntcr_set_huge_pages(true);
	CHECK_INT(read_both_ways(manifest, &a, &b, &split), 0);
	mntcr_set_huge_pages(false);
	CHECK(split);
	CHECK(a && b && trees_equal(t, a, true) && trees_equal(t, b, true));
	/* its arena starts with a huge page (MADV_COLLAPSE) */
	if (malloc_has_arenas() && thp_available())
		CHECK(smaps_huge_kb_off_heap() >= 2048);
	mntcr_tree_free(a);
	mntcr_tree_free(b);
	a = b = NULL;

	/* the same manifest laid out one key per line, as json-c prints it (older images) */
	{
		struct json_object *o = json_tokener_parse(manifest);
		const char *pretty = o ? json_object_to_json_string_ext(
						 o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							    JSON_C_TO_STRING_NOSLASHESCAPE)
				       : NULL;

		CHECK(pretty && strstr(pretty, "\n    {\n      \"id\": ") != NULL);
		CHECK_INT(pretty ? read_both_ways(pretty, &a, &b, &split) : -EINVAL, 0);
		CHECK(split);
		CHECK(a && b && trees_equal(t, a, true) && trees_equal(t, b, true));
		json_object_put(o);
		mntcr_tree_free(a);
		mntcr_tree_free(b);
		a = b = NULL;
	}

	/* every mount's source from the 2,000th on holds the layout of a mount's start, raw */
	for (size_t i = 2000; i < t->n_mounts; i++)
		set_source(&t->mounts[i], "SPLITME");
	free(TAKE_PTR(img));
	free(TAKE_PTR(manifest));
	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK_INT(extract_member(img, len, "manifest.json", &manifest), 0);
	for (q = manifest; *q;) {
		const char *m = strstr(q, "SPLITME");
		size_t k = m ? (size_t)(m - q) : strlen(q);

		strbuf_add(&hostile, q, k);
		if (!m)
			break;
		strbuf_add(&hostile, fake, sizeof(fake) - 1);
		q = m + 7;
	}
	/*
	 * Padding after the last member moves the text's middle to just before a
	 * fake, which is then the first thing after the middle that looks like a
	 * mount's start: the reader's guess. The fake is one far enough past the
	 * middle for the padding to hold a key.
	 */
	len = hostile.len;
	q = strstr(hostile.buf + len / 2 + 32, fake);
	CHECK(q != NULL);
	if (!q)
		return;
	p = (size_t)(q - hostile.buf) + 1; /* just after the fake's first byte */
	while (len > 0 && hostile.buf[len - 1] != '}')
		len--;
	hostile.len = len - 1;
	mid = 2 * (p - 1); /* the length that puts the middle at p - 1 */
	CHECK(mid > hostile.len + 20);
	strbuf_add(&hostile, ", \"pad\": \"", 10);
	while (hostile.len < mid - 3)
		strbuf_add(&hostile, "x", 1);
	strbuf_add(&hostile, "\"}\n", 3);
	CHECK_INT(hostile.len / 2, p - 1);
	CHECK_INT(read_both_ways(hostile.buf, &a, &b, &split), 0);
	CHECK(!split);
	CHECK(a && b && trees_equal(a, b, true));
	CHECK(a && streq(a->mounts[a->n_mounts - 1].source, fake));
	strbuf_release(&hostile);
	mntcr_tree_free(a);
	mntcr_tree_free(b);
	mntcr_tree_free(t);
}

/* The text of mount i's line in a manifest: from its "{ \"id\": " to the end of the line. */
static char *mount_line(const char *manifest, uint64_t id)
{
	char key[48];
	const char *p, *e;

	snprintf(key, sizeof(key), "{ \"id\": %" PRIu64 ",", id);
	p = strstr(manifest, key);
	if (!p)
		return NULL;
	e = strchr(p, '\n');
	return strndup(p, e ? (size_t)(e - p) : strlen(p));
}

/*
 * Version 4: a mount leaves out what its superblock or the default says,
 * and a superblock what is null, and they read back the same; a mount's
 * null source is not a missing one; and the same table in every older
 * version, every key written, reads the same.
 */
TEST(brief_mounts)
{
	struct mntcr_tree *t = sample_tree(), *u = NULL;
	_cleanup_free_ char *img = NULL, *manifest = NULL, *plain = NULL, *moved = NULL,
			    *slave = NULL, *unb = NULL;
	size_t len = 0, k_plain = 1, k_moved = 7;

	CHECK(t != NULL);
	if (!t)
		return;
	/* /mnt/back\\slash (id 28): a source of its own, not its superblock's (id 27's) */
	CHECK_INT(t->mounts[k_moved].id, 28);
	set_source(&t->mounts[k_moved], "elsewhere");
	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK_INT(extract_member(img, len, "manifest.json", &manifest), 0);
	CHECK_INT(read_bytes(img, len, &u), 0);
	CHECK(u && trees_equal(t, u, true));
	mntcr_tree_free(u);
	u = NULL;
	if (!manifest)
		return;
	/* /proc (id 22): nothing but what every mount says */
	CHECK_INT(t->mounts[k_plain].id, 22);
	plain = mount_line(manifest, t->mounts[k_plain].id);
	CHECK(plain && !strstr(plain, "\"fstype\"") && !strstr(plain, "\"source\"") &&
	      !strstr(plain, "\"sb_options\"") && !strstr(plain, "\"shared\"") &&
	      !strstr(plain, "\"master\"") && !strstr(plain, "\"propagate_from\"") &&
	      !strstr(plain, "\"unbindable\"") && strstr(plain, "\"type\": "));
	moved = mount_line(manifest, t->mounts[k_moved].id);
	CHECK(moved && strstr(moved, "\"source\": \"elsewhere\"") && !strstr(moved, "\"fstype\""));
	/* /mnt/x: master:2 propagate_from:7; /mnt/with space: unbindable */
	slave = mount_line(manifest, 25);
	CHECK(slave && strstr(slave, "\"master\": 2, \"propagate_from\": 7") &&
	      !strstr(slave, "\"shared\""));
	unb = mount_line(manifest, 26);
	CHECK(unb && strstr(unb, "\"unbindable\": true"));
	/* superblocks: what is null is left out (proc's: no ext_path, ext_root, content; sysfs's: no source) */
	{
		const char *proc = strstr(manifest, "{ \"dev\": \"0:20\""), *sysfs = strstr(manifest, "{ \"dev\": \"0:21\""),
			   *ext4 = strstr(manifest, "{ \"dev\": \"8:1\"");
		const char *proc_end = proc ? strchr(proc, '\n') : NULL, *sysfs_end = sysfs ? strchr(sysfs, '\n') : NULL;

		CHECK(proc && proc_end && !memmem(proc, (size_t)(proc_end - proc), "ext_", 4) &&
		      !memmem(proc, (size_t)(proc_end - proc), "content", 7) &&
		      memmem(proc, (size_t)(proc_end - proc), "\"source\": \"proc\"", 16));
		CHECK(sysfs && sysfs_end && !memmem(sysfs, (size_t)(sysfs_end - sysfs), "\"source\"", 8));
		CHECK(ext4 && strstr(ext4, "\"ext_path\": \"/host/with space/new\\nline\""));
	}

	/* a null source stays null; a missing one is the superblock's */
	{
		struct json_object *root = json_tokener_parse(manifest);
		const char *text;

		jset(jpath(root, "mounts", k_plain), "source", NULL);
		text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								    JSON_C_TO_STRING_NOSLASHESCAPE);
		CHECK_INT(read_manifest(text, &u), 0);
		CHECK(u && u->mounts[k_plain].source == NULL &&
		      streq_ptr(u->mounts[k_plain + 1].source, t->mounts[k_plain + 1].source) &&
		      streq_ptr(u->mounts[k_plain].fstype, "proc"));
		mntcr_tree_free(u);
		u = NULL;
		json_object_put(root);
	}
	/* every key written, as versions 1 to 3 must: the same table */
	for (unsigned version = 1; version <= 3; version++) {
		struct json_object *root = manifest_as_version(json_tokener_parse(manifest), version);
		const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
									  JSON_C_TO_STRING_NOSLASHESCAPE);

		CHECK(strstr(text, "\"propagate_from\":0") || strstr(text, "\"propagate_from\": 0"));
		CHECK_INT(read_manifest(text, &u), 0);
		CHECK(u && trees_equal(t, u, true));
		mntcr_tree_free(u);
		u = NULL;
		json_object_put(root);
	}
	mntcr_tree_free(t);
}

TEST(round_trip_nonblocking_pipe)
{
	struct mntcr_tree *t = big_tree(3000), *u = NULL;
	int p[2], status = 0;
	pid_t pid;

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK_INT(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		_exit(mntcr_image_write(p[1], t, 0) < 0 ? 1 : 0);
	}
	close(p[1]);
	CHECK_INT(mntcr_image_read(p[0], &u), 0);
	close(p[0]);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(u && trees_equal(t, u, true));
	mntcr_tree_free(t);
	mntcr_tree_free(u);
}

/* A hand-built tree with random bytes in every path component. */
TEST(round_trip_random_paths)
{
	int failures = 0;

	for (int iter = 0; iter < 200; iter++) {
		struct mntcr_tree *t = NULL, *u = NULL;
		_cleanup_free_ char *img = NULL;
		size_t len = 0, n = 2 + rnd() % 6;

		if (tree_new(&t) < 0)
			return;
		for (size_t i = 0; i < n; i++) {
			struct mntcr_mount m = {
				.id = 100 + i,
				.parent_id = i == 0 ? 1 : 100,
				.old_id = (uint32_t)(100 + i),
				.dev_major = 0,
				.dev_minor = (uint32_t)(10 + i % 3),
				.attr = MOUNT_ATTR_RELATIME,
				.type = (enum node_type)(i % 3),
			};
			char comp[40], src[40];

			do
				random_bytes(comp, 1 + rnd() % 30);
			while (strchr(comp, '/') || streq(comp, ".") || streq(comp, ".."));
			random_bytes(src, rnd() % 30);
			m.point = i == 0 ? strdup("/") : path_join("/", comp);
			m.root = path_join("/", src[0] ? src : "r");
			m.fstype = strdup("tmpfs");
			m.source = strdup(src);
			m.sb_opts = strdup(comp);
			tree_add_mount(t, &m);
		}
		if (tree_index(t) < 0) { /* two random names may collide */
			mntcr_tree_free(t);
			continue;
		}
		t->sbs[0].owned = false;
		t->sbs[0].ext_path = path_join("/ext", t->mounts[n - 1].point);
		t->sbs[0].ext_root = strdup(t->mounts[n - 1].root);
		if (image_bytes(t, &img, &len) < 0 || read_bytes(img, len, &u) < 0 ||
		    !trees_equal(t, u, failures == 0))
			failures++;
		mntcr_tree_free(t);
		mntcr_tree_free(u);
	}
	CHECK_INT(failures, 0);
}

TEST(compressed_image_reads)
{
	struct mntcr_tree *t = sample_tree(), *u = NULL;
	_cleanup_free_ char *img = NULL, *magic = NULL, *manifest = NULL, *msum = NULL, *sum = NULL,
			    *gz = NULL;
	size_t len = 0, gzlen = 0;

	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK_INT(extract_member(img, len, "mntcr-image", &magic), 0);
	CHECK_INT(extract_member(img, len, "manifest.json", &manifest), 0);
	CHECK_INT(extract_member(img, len, "manifest.checksum", &msum), 0);
	CHECK_INT(extract_member(img, len, "checksum", &sum), 0);
	{
		struct member m[] = {
			{ "mntcr-image", magic },
			{ "manifest.json", manifest },
			{ "manifest.checksum", msum },
			{ "checksum", sum },
		};

		CHECK_INT(make_tar(m, ARRAY_SIZE(m), true, &gz, &gzlen), 0);
	}
	CHECK(gzlen > 2 && (unsigned char)gz[0] == 0x1f && (unsigned char)gz[1] == 0x8b);
	CHECK_INT(read_bytes(gz, gzlen, &u), 0);
	CHECK(u && trees_equal(t, u, true));
	mntcr_tree_free(t);
	mntcr_tree_free(u);
}

/*
 * A stream whose header names a decompressor libarchive would run as an
 * external program (lrzip): refused as not an image, and the program
 * (a stand-in first on PATH that leaves a mark) never runs.
 */
TEST(no_external_decompressor)
{
	char dir[] = "/tmp/mntcr-test-XXXXXX", prog[64], mark[64];
	char stream[4096] = "LRZI\0\x06";
	const char *old_path = getenv("PATH");
	_cleanup_free_ char *saved = old_path ? strdup(old_path) : NULL;
	struct mntcr_tree *u = NULL;
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(prog, sizeof(prog), "%s/lrzip", dir);
	snprintf(mark, sizeof(mark), "%s/ran", dir);
	f = fopen(prog, "we");
	CHECK(f != NULL);
	if (!f)
		return;
	fprintf(f, "#!/bin/sh\ntouch %s\ncat >/dev/null\n", mark);
	fclose(f);
	CHECK_INT(chmod(prog, 0755), 0);
	setenv("PATH", dir, 1);
	CHECK_INT(read_bytes(stream, sizeof(stream), &u), -EBADMSG);
	if (saved)
		setenv("PATH", saved, 1);
	CHECK(access(mark, F_OK) < 0);
	unlink(mark);
	unlink(prog);
	rmdir(dir);
	mntcr_tree_free(u);
}

/* -------------------------------------------------------------------------- */
/* The writer refuses what the reader would refuse, and then writes nothing. */

TEST(write_refuses)
{
	struct mntcr_tree *t = sample_tree(), *e = NULL;
	int fd = memfd_create("image", MFD_CLOEXEC), ro;
	uint64_t attr;
	char *mp;

	CHECK_INT(mntcr_image_write(-1, t, 0), -EINVAL);
	CHECK_INT(mntcr_image_write(fd, NULL, 0), -EINVAL);
	CHECK_INT(mntcr_image_write(fd, t, 1u << 7), -EINVAL);
	CHECK_INT(mntcr_image_write(fd, t, MNTCR_IMAGE_NO_CONTENT), 0);
	CHECK_INT(ftruncate(fd, 0), 0);
	lseek(fd, 0, SEEK_SET);

	tree_new(&e);
	CHECK_INT(mntcr_image_write(fd, e, 0), -EINVAL); /* no mounts, not indexed */
	mntcr_tree_free(e);

	attr = t->mounts[1].attr;
	t->mounts[1].attr |= 1ULL << 40; /* a flag without a name */
	CHECK_INT(mntcr_image_write(fd, t, 0), -EINVAL);
	t->mounts[1].attr = attr;

	mp = t->mounts[1].point; /* "/proc": what follows "/" is written */
	t->mounts[1].point = (char *)"/proc/../etc";
	CHECK_INT(mntcr_image_write(fd, t, 0), -EINVAL);
	t->mounts[1].point = mp;
	CHECK_INT(lseek(fd, 0, SEEK_END), 0); /* nothing written */

	ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK_INT(mntcr_image_write(ro, t, 0), -EBADF);
	close(ro);
	close(fd);
	mntcr_tree_free(t);
}

TEST(write_epipe)
{
	struct mntcr_tree *t = sample_tree();
	int p[2];

	signal(SIGPIPE, SIG_IGN);
	CHECK_INT(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	CHECK_INT(mntcr_image_write(p[1], t, 0), -EPIPE);
	close(p[1]);
	mntcr_tree_free(t);
}

/* -------------------------------------------------------------------------- */
/* Damaged streams */

/* Offsets of a member's header, data end and padded end in a tar in memory. */
static bool find_member(const char *tar, size_t len, const char *name, size_t *hdr,
			size_t *data_end, size_t *padded_end)
{
	for (size_t off = 0; off + 512 <= len; off += 512) {
		if (strncmp(tar + off, name, 100) == 0 && tar[off + 257] == 'u') {
			size_t size = strtoul(tar + off + 124, NULL, 8);

			*hdr = off;
			*data_end = off + 512 + size;
			*padded_end = off + 512 + (size + 511) / 512 * 512;
			return true;
		}
	}
	return false;
}

TEST(truncated)
{
	struct mntcr_tree *t = sample_tree();
	_cleanup_free_ char *img = NULL;
	size_t len = 0, hdr = 0, data_end = 0, padded_end = 0, wrong = 0, accepted = 0;

	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK(find_member(img, len, "checksum", &hdr, &data_end, &padded_end));
	printf("# image %zu bytes, checksum member header at %zu, data ends at %zu\n", len, hdr,
	       data_end);
	for (size_t cut = 0; cut < len; cut += cut < padded_end + 1024 ? 1 : 61) {
		struct mntcr_tree *u = NULL;
		int r = read_bytes(img, cut, &u);

		if (cut < padded_end) {
			/* every cut before the end of the checksum member, including just before it
			 * and inside it */
			if (r != -EBADMSG) {
				if (wrong++ < 5)
					printf("#   cut at %zu: %d\n", cut, r);
			}
		} else if (r == 0) {
			/* only the end-of-archive blocks are missing: everything was there and
			 * checked */
			accepted++;
			if (!trees_equal(t, u, true))
				wrong++;
		} else if (r != -EBADMSG)
			wrong++;
		mntcr_tree_free(u);
	}
	printf("# %zu cuts after the checksum member accepted with identical data\n", accepted);
	CHECK_INT(wrong, 0);
	CHECK(hdr > 0 && data_end > hdr);
	mntcr_tree_free(t);
}

TEST(flipped_bytes)
{
	static const unsigned char masks[] = { 0x01, 0x20, 0x80, 0xff };
	struct mntcr_tree *t = sample_tree();
	_cleanup_free_ char *img = NULL;
	size_t len = 0, wrong = 0, accepted = 0, tries = 0, hdr = 0, data_end = 0, padded_end = 0;
	int fd = -1;

	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK(find_member(img, len, "checksum", &hdr, &data_end, &padded_end));
	fd = memfd_create("flip", MFD_CLOEXEC);
	/* Every byte up to the end-of-archive blocks; a sample of the block padding after them. */
	for (size_t off = 0; off < len; off += off < padded_end + 1024 ? 1 : 61) {
		for (size_t k = 0; k < ARRAY_SIZE(masks); k++) {
			struct mntcr_tree *u = NULL;
			char orig = img[off];
			int r;

			img[off] = (char)(orig ^ masks[k]);
			if (pwrite(fd, img, len, 0) != (ssize_t)len)
				wrong++;
			lseek(fd, 0, SEEK_SET);
			r = mntcr_image_read(fd, &u);
			img[off] = orig;
			tries++;
			if (r == 0) {
				accepted++;
				if (!trees_equal(t, u, true)) {
					printf("#   flip %#x at %zu accepted with different data\n",
					       masks[k], off);
					wrong++;
				}
			} else if (r != -EBADMSG && r != -EPROTO) {
				printf("#   flip %#x at %zu: %d\n", masks[k], off, r);
				wrong++;
			}
			mntcr_tree_free(u);
		}
	}
	printf("# %zu flips, %zu accepted with identical data (padding and the like)\n", tries,
	       accepted);
	CHECK_INT(wrong, 0);
	close(fd);
	mntcr_tree_free(t);
}

TEST(versions)
{
	struct mntcr_tree *t = sample_tree();
	struct json_object *v1 = manifest_as_version(sample_manifest(), 1);
	_cleanup_free_ char *img = NULL, *manifest = NULL, *msum = NULL, *sum = NULL, *sum1 = NULL;
	/* magic texts around a version 1 manifest (layout 1) and around the writer's (layout 5) */
	static const struct {
		const char *magic;
		unsigned layout;
		int want;
	} cases[] = {
		{ "mntcr-image\nversion 1\n", 1, 0 },
		{ "mntcr-image\nversion 1\nfuture: ignored\n", 1, 0 },
		{ "mntcr-image\nversion 5\n", 5, 0 },
		{ "mntcr-image\nversion 5\nfuture: ignored\n", 5, 0 },
		/* versions 2 to 4 exist: the manifest must say the same, and manifest.checksum must follow */
		{ "mntcr-image\nversion 2\n", 1, -EBADMSG },
		{ "mntcr-image\nversion 3\n", 1, -EBADMSG },
		{ "mntcr-image\nversion 3\n", 5, -EBADMSG },
		{ "mntcr-image\nversion 4\n", 5, -EBADMSG },
		/* version 5 with version 1's layout and manifest */
		{ "mntcr-image\nversion 5\n", 1, -EBADMSG },
		{ "mntcr-image\nversion 1\n", 5, -EBADMSG },
		{ "mntcr-image\nversion 6\n", 5, -EPROTO },
		{ "mntcr-image\nversion 6\n", 1, -EPROTO },
		{ "mntcr-image\nversion 4294967296\n", 1, -EPROTO },
		{ "mntcr-image\nversion 99999999999999999999999999\n", 1, -EPROTO },
		{ "mntcr-image\nversion 0\n", 1, -EBADMSG },
		{ "mntcr-image\nversion 01\n", 1, -EBADMSG },
		{ "mntcr-image\nversion -1\n", 1, -EBADMSG },
		{ "mntcr-image\nversion 1", 1, -EBADMSG },
		{ "mntcr-image\nversion \n", 1, -EBADMSG },
		{ "mntcr-image\nversion 1x\n", 1, -EBADMSG },
		{ "mntcr-imagE\nversion 1\n", 1, -EBADMSG },
		{ "", 1, -EBADMSG },
	};
	const char *text1 = v1 ? json_object_to_json_string_ext(v1, JSON_C_TO_STRING_PRETTY |
									JSON_C_TO_STRING_NOSLASHESCAPE)
			       : "";
	size_t len = 0;

	CHECK(v1 != NULL);
	CHECK_INT(image_bytes(t, &img, &len), 0);
	CHECK_INT(extract_member(img, len, "manifest.json", &manifest), 0);
	CHECK_INT(extract_member(img, len, "manifest.checksum", &msum), 0);
	CHECK_INT(extract_member(img, len, "checksum", &sum), 0);
	sum1 = checksum_json(text1, XXH3_64bits(NULL, 0), 2);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool l1 = cases[i].layout == 1;
		struct member m[] = {
			{ "mntcr-image", cases[i].magic },
			{ "manifest.json", l1 ? text1 : manifest },
			{ l1 ? "checksum" : "manifest.checksum", l1 ? sum1 : msum },
			{ "checksum", sum },
		};
		_cleanup_free_ char *tar = NULL;
		struct mntcr_tree *u = NULL;
		size_t n = 0;
		int r;

		CHECK_INT(make_tar(m, l1 ? 3 : 4, false, &tar, &n), 0);
		r = read_bytes(tar, n, &u);
		if (r != cases[i].want)
			printf("#   magic case %zu\n", i);
		CHECK_INT(r, cases[i].want);
		if (r == 0)
			CHECK(trees_equal(t, u, true));
		mntcr_tree_free(u);
	}
	/* A newer version in a real image, patched in place: the magic is not under the checksum.
	 */
	{
		char *v = memmem(img, len, "version 5\n", 10);
		struct mntcr_tree *u = NULL;

		CHECK(v != NULL);
		if (v) {
			v[8] = '7';
			CHECK_INT(read_bytes(img, len, &u), -EPROTO);
		}
	}
	json_object_put(v1);
	mntcr_tree_free(t);
}

TEST(not_an_image)
{
	static const char *texts[] = { "", "hello world\n", "{\"format\": \"mntcr-manifest\"}",
				       "mntcr-image\nversion 1\n" };
	char junk[20000];
	struct mntcr_tree *u = NULL;
	_cleanup_free_ char *tar1 = NULL, *tar2 = NULL, *tar3 = NULL;
	size_t n1 = 0, n2 = 0, n3 = 0;

	for (size_t i = 0; i < ARRAY_SIZE(texts); i++)
		CHECK_INT(read_bytes(texts[i], strlen(texts[i]), &u), -EBADMSG);
	for (int iter = 0; iter < 50; iter++) {
		size_t n = 1 + rnd() % (sizeof(junk) - 1);

		for (size_t i = 0; i < n; i++)
			junk[i] = (char)rnd();
		CHECK_INT(read_bytes(junk, n, &u), -EBADMSG);
	}
	memset(junk, 0, sizeof(junk));
	CHECK_INT(read_bytes(junk, sizeof(junk), &u), -EBADMSG); /* an empty tar */

	{
		struct member m[] = { { "etc/passwd", "root:x:0:0::/root:/bin/sh\n" } };
		CHECK_INT(make_tar(m, 1, false, &tar1, &n1), 0);
		CHECK_INT(read_bytes(tar1, n1, &u), -EBADMSG);
	}
	{
		/* the right members in the wrong order */
		struct member m[] = { { "manifest.json", "{}" },
				      { "mntcr-image", "mntcr-image\nversion 1\n" } };
		CHECK_INT(make_tar(m, 2, false, &tar2, &n2), 0);
		CHECK_INT(read_bytes(tar2, n2, &u), -EBADMSG);
	}
	{
		/* the magic as a directory */
		struct member m[] = { { "mntcr-image", NULL, 0, AE_IFDIR } };
		CHECK_INT(make_tar(m, 1, false, &tar3, &n3), 0);
		CHECK_INT(read_bytes(tar3, n3, &u), -EBADMSG);
	}
	CHECK(u == NULL);
	CHECK_INT(mntcr_image_read(-1, &u), -EINVAL);
	CHECK_INT(mntcr_image_read(0, NULL), -EINVAL);
	{
		int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		CHECK_INT(mntcr_image_read(fd, &u), -EISDIR);
		close(fd);
	}
}

/* -------------------------------------------------------------------------- */
/* Checksum and member structure, with hand-made tars */

static int read_members(const struct member *m, size_t n)
{
	_cleanup_free_ char *tar = NULL;
	struct mntcr_tree *u = NULL;
	size_t len = 0;
	int r;

	r = make_tar(m, n, false, &tar, &len);
	if (r < 0)
		return r;
	r = read_bytes(tar, len, &u);
	mntcr_tree_free(u);
	return r;
}

TEST(checksum_member)
{
	struct json_object *root = manifest_as_version(sample_manifest(), 1);
	const char *manifest;
	static const char magic[] = "mntcr-image\nversion 1\n";
	uint64_t empty = XXH3_64bits(NULL, 0);
	_cleanup_free_ char *good = NULL, *bad_manifest = NULL, *bad_content = NULL,
			    *bad_count = NULL;
	char *p;

	CHECK(root != NULL);
	if (!root)
		return;
	manifest = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								JSON_C_TO_STRING_NOSLASHESCAPE);
	good = checksum_json(manifest, empty, 2);
	bad_manifest = checksum_json(manifest, empty, 2);
	p = strstr(bad_manifest, "\"manifest\": \"") + 13;
	*p = *p == '0' ? '1' : '0';
	bad_content = checksum_json(manifest, empty ^ 1, 2);
	bad_count = checksum_json(manifest, empty, 3);

	{
		struct member m[] = { { "mntcr-image", magic },
				      { "manifest.json", manifest },
				      { "checksum", good } };
		CHECK_INT(read_members(m, 3), 0);
	}
	{
		struct member m[] = { { "mntcr-image", magic },
				      { "manifest.json", manifest },
				      { "checksum", bad_manifest } };
		CHECK_INT(read_members(m, 3), -EBADMSG);
	}
	{
		struct member m[] = { { "mntcr-image", magic },
				      { "manifest.json", manifest },
				      { "checksum", bad_content } };
		CHECK_INT(read_members(m, 3), -EBADMSG);
	}
	{
		struct member m[] = { { "mntcr-image", magic },
				      { "manifest.json", manifest },
				      { "checksum", bad_count } };
		CHECK_INT(read_members(m, 3), -EBADMSG);
	}
	{
		/* no checksum: truncated */
		struct member m[] = { { "mntcr-image", magic }, { "manifest.json", manifest } };
		CHECK_INT(read_members(m, 2), -EBADMSG);
	}
	{
		/* no manifest */
		struct member m[] = { { "mntcr-image", magic }, { "checksum", good } };
		CHECK_INT(read_members(m, 2), -EBADMSG);
	}
	{
		/* something after the checksum */
		struct member m[] = { { "mntcr-image", magic },
				      { "manifest.json", manifest },
				      { "checksum", good },
				      { "content/0/x", "x" } };
		CHECK_INT(read_members(m, 4), -EBADMSG);
	}
	{
		/* an unknown member */
		struct member m[] = { { "mntcr-image", magic },
				      { "manifest.json", manifest },
				      { "notes.txt", "hi" },
				      { "checksum", good } };
		CHECK_INT(read_members(m, 4), -EBADMSG);
	}
	{
		/* malformed checksum members */
		static const char *sums[] = {
			"",
			"{}",
			"[1]",
			"{\"algorithm\": \"xxh64\", \"manifest\": \"0000000000000000\", "
			"\"content\": \"0000000000000000\", \"members\": 2}",
			"{\"algorithm\": \"xxh3-64\", \"manifest\": \"00\", \"content\": "
			"\"0000000000000000\", \"members\": 2}",
			"{\"algorithm\": \"xxh3-64\", \"manifest\": 5, \"content\": "
			"\"0000000000000000\", \"members\": 2}",
			"{\"algorithm\": \"xxh3-64\", \"manifest\": \"0000000000000000\", "
			"\"content\": \"0000000000000000\", \"members\": -2}",
		};
		for (size_t i = 0; i < ARRAY_SIZE(sums); i++) {
			struct member m[] = { { "mntcr-image", magic },
					      { "manifest.json", manifest },
					      { "checksum", sums[i] } };
			CHECK_INT(read_members(m, 3), -EBADMSG);
		}
	}
	json_object_put(root);
}

TEST(content_members)
{
	struct json_object *root = manifest_as_version(sample_manifest(), 1);
	static const char magic[] = "mntcr-image\nversion 1\n";
	const char *manifest;
	XXH3_state_t *h = XXH3_createState();
	uint64_t digest;
	size_t n_sbs;
	char last_sb[32];

	CHECK(root != NULL);
	if (!root)
		return;
	manifest = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								JSON_C_TO_STRING_NOSLASHESCAPE);
	n_sbs = json_object_array_length(json_object_object_get(root, "superblocks"));
	snprintf(last_sb, sizeof(last_sb), "content/%zu/file", n_sbs - 1);

	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, "hello", 5);
	XXH3_64bits_update(h, "world!", 6);
	digest = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	{
		_cleanup_free_ char *sum = checksum_json(manifest, digest, 6);
		struct member m[] = {
			{ "mntcr-image", magic },
			{ "manifest.json", manifest },
			{ "content/0", NULL, 0, AE_IFDIR },
			{ "content/0/etc/hostname", "hello" },
			{ "content/0/etc/dir/", NULL, 0, AE_IFDIR },
			{ last_sb, "world!" },
			{ "checksum", sum },
		};
		CHECK_INT(read_members(m, ARRAY_SIZE(m)), 0);
		/* content in another order: another digest */
		struct member swapped[] = { m[0], m[1], m[2], m[5], m[4], m[3], m[6] };
		CHECK_INT(read_members(swapped, ARRAY_SIZE(swapped)), -EBADMSG);
	}
	{
		static const char *bad[] = {
			"content/",	    "content/x",     "content/01/a",
			"content/0/../etc", "content/0/./a", "content/0//a",
			"content/-1/a",	    "content0/a",    "content/4294967296/a",
			"contents/0/a"
		};
		for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
			_cleanup_free_ char *sum = checksum_json(manifest, XXH3_64bits("x", 1), 3);
			struct member m[] = {
				{ "mntcr-image", magic },
				{ "manifest.json", manifest },
				{ bad[i], "x" },
				{ "checksum", sum },
			};
			int r = read_members(m, ARRAY_SIZE(m));
			if (r != -EBADMSG)
				printf("#   content name %s: %d\n", bad[i], r);
			CHECK_INT(r, -EBADMSG);
		}
	}
	{
		/* a superblock index past the manifest's superblocks */
		char name[32];
		_cleanup_free_ char *sum = checksum_json(manifest, XXH3_64bits("x", 1), 3);

		snprintf(name, sizeof(name), "content/%zu/a", n_sbs);
		struct member m[] = {
			{ "mntcr-image", magic },
			{ "manifest.json", manifest },
			{ name, "x" },
			{ "checksum", sum },
		};
		CHECK_INT(read_members(m, ARRAY_SIZE(m)), -EBADMSG);
	}
	json_object_put(root);
}

/* -------------------------------------------------------------------------- */
/* Hostile manifests, each with a correct checksum */

TEST(manifest_baseline)
{
	struct json_object *root = sample_manifest();

	CHECK(root != NULL);
	/* Unknown keys are ignored, at every level. */
	jset(root, "future", json_object_new_string("x"));
	jset(jpath(root, "mounts", 0), "future", json_object_new_array());
	jset(jpath(root, "superblocks", 0), "future", json_object_new_int(1));
	jset(json_object_object_get(root, "counts"), "future", json_object_new_int(1));
	CHECK_INT(read_edited(root), 0);
}

TEST(manifest_counts)
{
	struct json_object *root;
	struct json_object *counts;
	size_t n;

	root = sample_manifest();
	counts = json_object_object_get(root, "counts");
	n = json_object_array_length(json_object_object_get(root, "mounts"));
	jset(counts, "mounts", json_object_new_int64((int64_t)n + 1));
	CHECK_INT(read_edited(root), -EBADMSG);

	root = sample_manifest();
	jset(json_object_object_get(root, "counts"), "mounts", json_object_new_int64(2000000000));
	CHECK_INT(read_edited(root), -EBADMSG);

	root = sample_manifest();
	jset(json_object_object_get(root, "counts"), "mounts", json_object_new_int64(-1));
	CHECK_INT(read_edited(root), -EBADMSG);

	root = sample_manifest();
	jset(json_object_object_get(root, "counts"), "superblocks",
	     json_object_new_uint64(UINT64_MAX));
	CHECK_INT(read_edited(root), -EBADMSG);

	root = sample_manifest();
	jset(json_object_object_get(root, "counts"), "superblocks", json_object_new_int64(3));
	CHECK_INT(read_edited(root), -EBADMSG);

	root = sample_manifest();
	json_object_array_del_idx(json_object_object_get(root, "mounts"), 0, 1);
	CHECK_INT(read_edited(root), -EBADMSG);

	/* more superblocks than mounts */
	root = sample_manifest();
	{
		struct json_object *sbs = json_object_object_get(root, "superblocks");
		size_t nm = json_object_array_length(json_object_object_get(root, "mounts"));

		while (json_object_array_length(sbs) <= nm)
			json_object_array_add(sbs,
					      json_object_get(json_object_array_get_idx(sbs, 0)));
		jset(json_object_object_get(root, "counts"), "superblocks",
		     json_object_new_int64((int64_t)json_object_array_length(sbs)));
	}
	CHECK_INT(read_edited(root), -EBADMSG);

	/* no mounts at all */
	CHECK_INT(read_manifest("{\"format\": \"mntcr-manifest\", \"version\": 1, \"source\": "
				"null, \"kernel\": null, "
				"\"hostname\": null, \"pid\": 0, \"ns_id\": 0, \"unique_ids\": "
				"false, \"root_id\": 0, "
				"\"counts\": {\"mounts\": 0, \"superblocks\": 0}, \"superblocks\": "
				"[], \"mounts\": []}",
				NULL),
		  -EBADMSG);
}

TEST(manifest_superblock_index)
{
	static const int64_t bad[] = { 99, -1, 1000000 };
	struct json_object *root;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		root = sample_manifest();
		jset(jpath(root, "mounts", 1), "sb", json_object_new_int64(bad[i]));
		CHECK_INT(read_edited(root), -EBADMSG);
	}
	root = sample_manifest();
	jset(jpath(root, "mounts", 1), "sb", json_object_new_string("0"));
	CHECK_INT(read_edited(root), -EBADMSG);
	root = sample_manifest();
	jset(jpath(root, "mounts", 1), "sb", json_object_new_double(0.0));
	CHECK_INT(read_edited(root), -EBADMSG);
}

TEST(manifest_paths)
{
	struct json_object *root;
	char path[5000];

	/* 4096 bytes is the limit: accepted */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	for (size_t i = 200; i < 4096; i += 200)
		path[i] = '/';
	path[4096] = 0;
	root = sample_manifest();
	jset(jpath(root, "mounts", 1), "mountpoint", json_object_new_string(path));
	CHECK_INT(read_edited(root), 0);
	/* 4097: refused, as mountpoint, root, ext_path, ext_root */
	path[4096] = 'a';
	path[4097] = 0;
	static const char *keys[] = { "mountpoint", "root" };
	for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
		root = sample_manifest();
		jset(jpath(root, "mounts", 1), keys[k], json_object_new_string(path));
		CHECK_INT(read_edited(root), -EBADMSG);
	}
	static const char *sbkeys[] = { "ext_path", "ext_root" };
	for (size_t k = 0; k < ARRAY_SIZE(sbkeys); k++) {
		root = sample_manifest();
		jset(jpath(root, "superblocks", 0), sbkeys[k], json_object_new_string(path));
		CHECK_INT(read_edited(root), -EBADMSG);
	}
	/* 4096 bytes after decoding, but written with escapes: decoded length counts */
	{
		struct strbuf b = { 0 };

		strbuf_puts(&b, "/");
		for (int i = 0; i < 4096; i++)
			strbuf_puts(&b, "\\xff");
		root = sample_manifest();
		jset(jpath(root, "mounts", 1), "root", json_object_new_string(b.buf));
		CHECK_INT(read_edited(root), -EBADMSG);
		strbuf_release(&b);
	}

	static const struct {
		const char *key, *value;
	} cases[] = {
		{ "mountpoint", "relative/../path" },
		{ "mountpoint", "relative//path" },
		{ "mountpoint", "relative/" },
		{ "mountpoint", "./relative" },
		{ "mountpoint", ".." },
		{ "mountpoint", "/a/../b" },
		{ "mountpoint", "/a//b" },
		{ "mountpoint", "/a/" },
		{ "root", "relative" },
		{ "root", "" },
		{ "root", "/bad\\escape" },
		{ "root", "/nul\\x00byte" },
		{ "fstype", "" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		root = sample_manifest();
		jset(jpath(root, "mounts", 1), cases[i].key,
		     json_object_new_string(cases[i].value));
		CHECK_INT(read_edited(root), -EBADMSG);
	}
	/* Relative to the parent's (from version 5), "" on the parent's root; absolute ones too. */
	{
		static const char *const ok[] = { "relative/path", "", "/proc" };

		for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
			root = sample_manifest();
			jset(jpath(root, "mounts", 1), "mountpoint", json_object_new_string(ok[i]));
			CHECK_INT(read_edited(root), 0);
		}
	}
	/* Before version 5, only absolute ones. */
	root = manifest_as_version(sample_manifest(), 4);
	jset(jpath(root, "mounts", 1), "mountpoint", json_object_new_string("proc"));
	CHECK_INT(read_edited(root), -EBADMSG);
	root = manifest_as_version(sample_manifest(), 4);
	CHECK_INT(read_edited(root), 0);
	/* The absolute path that relative ones make is bounded as an absolute one is (4096 bytes). */
	{
		struct strbuf b = { 0 };
		size_t k30 = SIZE_MAX, k32 = SIZE_MAX;
		struct json_object *mounts;

		root = sample_manifest();
		mounts = json_object_object_get(root, "mounts");
		for (size_t i = 0; i < json_object_array_length(mounts); i++) {
			int64_t id = json_object_get_int64(json_object_object_get(jpath(root, "mounts", i), "id"));

			k30 = id == 30 ? i : k30;
			k32 = id == 32 ? i : k32;
		}
		CHECK(k30 != SIZE_MAX && k32 != SIZE_MAX);
		for (int i = 0; i < 4000; i++)
			strbuf_puts(&b, "x");
		jset(jpath(root, "mounts", k30), "mountpoint", json_object_new_string(b.buf));
		jset(jpath(root, "mounts", k32), "mountpoint", json_object_new_string(b.buf + 3800));
		CHECK_INT(read_edited(root), -EBADMSG);
		strbuf_release(&b);
	}
	/* A NUL inside the JSON string itself. */
	root = sample_manifest();
	jset(jpath(root, "mounts", 1), "source", json_object_new_string_len("a\0b", 3));
	CHECK_INT(read_edited(root), -EBADMSG);
	/* An overlong fstype. */
	memset(path, 'f', 256);
	path[256] = 0;
	root = sample_manifest();
	jset(jpath(root, "mounts", 1), "fstype", json_object_new_string(path));
	CHECK_INT(read_edited(root), -EBADMSG);
	/* The root mount's root may be "//deleted"-style, not normalised: accepted. */
	root = sample_manifest();
	jset(jpath(root, "mounts", 1), "root", json_object_new_string("/gone//deleted"));
	CHECK_INT(read_edited(root), 0);
}

TEST(manifest_types)
{
	static const struct {
		const char *array; /* NULL: top level */
		const char *key;
		const char *json; /* the replacement value */
	} cases[] = {
		{ NULL, "format", "\"mntcr-manifesto\"" },
		{ NULL, "format", "null" },
		{ NULL, "version", "2" },
		{ NULL, "version", "\"1\"" },
		{ NULL, "source", "\"proc\"" },
		{ NULL, "source", "7" },
		{ NULL, "pid", "-5" },
		{ NULL, "pid", "4294967296" },
		{ NULL, "pid", "1.5" },
		{ NULL, "ns_id", "\"1\"" },
		{ NULL, "unique_ids", "1" },
		{ NULL, "root_id", "22" },
		{ NULL, "root_id", "null" },
		{ NULL, "counts", "[]" },
		{ NULL, "mounts", "{}" },
		{ NULL, "superblocks", "null" },
		{ NULL, "kernel", "[\"6.1\"]" },
		{ "mounts", "id", "\"21\"" },
		{ "mounts", "id", "null" },
		{ "mounts", "id", "-21" },
		{ "mounts", "parent_id", "true" },
		{ "mounts", "old_id", "4294967296" },
		{ "mounts", "flags", "\"rw,nosuid\"" },
		{ "mounts", "flags", "[\"rw\", \"bogus\"]" },
		{ "mounts", "flags", "[\"rw\", 1]" },
		{ "mounts", "flags", "[\"rw\", \"ro\\u0000\"]" },
		{ "mounts", "flags",
		  "[\"rw\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\","
		  "\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\","
		  "\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\","
		  "\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\","
		  "\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\","
		  "\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\",\"ro\"]" },
		{ "mounts", "unbindable", "0" },
		{ "mounts", "type", "\"socket\"" },
		{ "mounts", "type", "1" },
		{ "mounts", "shared", "-1" },
		{ "mounts", "fstype", "null" },
		{ "mounts", "root", "null" },
		{ "mounts", "mountpoint", "{}" },
		{ "superblocks", "dev", "\"8:1:2\"" },
		{ "superblocks", "dev", "\"08:1\"" },
		{ "superblocks", "dev", "\"8:\"" },
		{ "superblocks", "dev", "\"4294967296:0\"" },
		{ "superblocks", "dev", "\" 8:1\"" },
		{ "superblocks", "dev", "801" },
		{ "superblocks", "owned", "\"yes\"" },
		{ "superblocks", "owned", "null" },
		{ "superblocks", "fstype", "\"\"" },
		{ "superblocks", "ext_path", "\"relative\"" },
		{ "superblocks", "ext_path", "\"/a/./b\"" },
		{ "superblocks", "ext_root", "\"relative\"" },
		{ "superblocks", "options", "[]" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct json_object *root = sample_manifest(), *target;
		int r;

		target = cases[i].array ? jpath(root, cases[i].array, 1) : root;
		jset(target, cases[i].key, json_tokener_parse(cases[i].json));
		r = read_edited(root);
		if (r != -EBADMSG)
			printf("#   %s.%s = %s: %d\n", cases[i].array ? cases[i].array : "",
			       cases[i].key, cases[i].json, r);
		CHECK_INT(r, -EBADMSG);
	}
	/*
	 * Deleting a required key: the first 7 in every version, the rest up to
	 * version 3 (version 4 leaves them out when they say what the
	 * superblock or the default says).
	 */
	static const char *required[] = { "id",	    "parent_id",  "old_id",	    "sb",
					  "root",   "mountpoint", "flags",	    "fstype",
					  "shared", "master",	  "propagate_from", "unbindable" };
	for (unsigned version = 1; version <= 4; version++)
		for (size_t i = 0; i < ARRAY_SIZE(required); i++) {
			struct json_object *root = manifest_as_version(sample_manifest(), version);
			int want = version < 4 || i < 7 ? -EBADMSG : 0, r;

			json_object_object_del(jpath(root, "mounts", 2), required[i]);
			r = read_edited(root);
			if (r != want)
				printf("#   version %u without %s\n", version, required[i]);
			CHECK_INT(r, want);
		}
	/* Nullable keys may be null or absent. */
	static const char *nullable[] = { "source", "sb_options", "type" };
	for (unsigned version = 1; version <= 4; version++)
		for (size_t i = 0; i < ARRAY_SIZE(nullable); i++) {
			struct json_object *root = manifest_as_version(sample_manifest(), version);

			json_object_object_del(jpath(root, "mounts", 2), nullable[i]);
			CHECK_INT(read_edited(root), 0);
		}
}

TEST(manifest_structure)
{
	struct json_object *root;

	/* duplicate ids */
	root = sample_manifest();
	jset(jpath(root, "mounts", 2), "id", json_object_new_int64(22));
	CHECK_INT(read_edited(root), -EBADMSG);
	/* a missing parent: two roots */
	root = sample_manifest();
	jset(jpath(root, "mounts", 2), "parent_id", json_object_new_int64(999));
	CHECK_INT(read_edited(root), -EBADMSG);
	/* a cycle: 22 -> 23 -> 22 */
	root = sample_manifest();
	jset(jpath(root, "mounts", 1), "parent_id", json_object_new_int64(23));
	jset(jpath(root, "mounts", 2), "parent_id", json_object_new_int64(22));
	jset(jpath(root, "mounts", 2), "mountpoint", json_object_new_string("/proc"));
	CHECK_INT(read_edited(root), -EBADMSG);
	/* a child outside its parent: only an absolute mountpoint can say so */
	root = sample_manifest();
	jset(jpath(root, "mounts", 2), "parent_id", json_object_new_int64(22));
	jset(jpath(root, "mounts", 2), "mountpoint", json_object_new_string("/sys"));
	CHECK_INT(read_edited(root), -EBADMSG);
	/* root_id names a mount that is not the root */
	root = sample_manifest();
	jset(root, "root_id", json_object_new_int64(22));
	CHECK_INT(read_edited(root), -EBADMSG);
	/* an array where an object belongs */
	root = sample_manifest();
	json_object_array_put_idx(json_object_object_get(root, "mounts"), 1,
				  json_object_new_array());
	CHECK_INT(read_edited(root), -EBADMSG);
	root = sample_manifest();
	json_object_array_put_idx(json_object_object_get(root, "superblocks"), 0,
				  json_object_new_int(0));
	CHECK_INT(read_edited(root), -EBADMSG);
}

/*
 * The superblocks and mounts are converted as they are parsed: any member
 * order reads the same tree, and of a repeated key the last one counts
 * (an earlier array's items are converted too, so they must be valid).
 */
TEST(manifest_member_order)
{
	static const char *const first[] = {
		"\"mounts\": [], \"superblocks\": [],",		  /* replaced by the real ones */
		"\"mounts\": [{}],",				  /* an invalid earlier item */
		"\"superblocks\": [{\"dev\": 1}],",
	};
	struct json_object *root = sample_manifest(), *rev = json_object_new_object();
	struct mntcr_tree *a = NULL, *b = NULL;
	_cleanup_free_ char *text = NULL;
	const char *keys[64];
	size_t n = 0;

	CHECK(root != NULL && rev != NULL);
	text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	CHECK_INT(read_manifest(text, &a), 0);

	/* members in reverse order: the mounts (naming superblocks) before the superblocks and counts */
	json_object_object_foreach(root, key, val) {
		(void)val;
		if (n < ARRAY_SIZE(keys))
			keys[n++] = key;
	}
	for (size_t i = n; i > 0; i--)
		json_object_object_add(rev, keys[i - 1], json_object_get(json_object_object_get(root, keys[i - 1])));
	CHECK(streq(keys[0], "format") && n > 10);
	CHECK_INT(read_manifest(json_object_to_json_string_ext(rev, JSON_C_TO_STRING_PRETTY), &b), 0);
	CHECK(a && b && trees_equal(a, b, true));
	mntcr_tree_free(b);
	b = NULL;

	/* repeated keys */
	CHECK(text[0] == '{');
	for (size_t i = 0; i < ARRAY_SIZE(first); i++) {
		_cleanup_free_ char *edited = NULL;

		CHECK(asprintf(&edited, "{%s%s", first[i], text + 1) > 0);
		CHECK_INT(read_manifest(edited, i == 0 ? &b : NULL), i == 0 ? 0 : -EBADMSG);
		if (i == 0)
			CHECK(b && trees_equal(a, b, true));
	}
	{
		/* the last "mounts" is empty: the counts do not match it */
		_cleanup_free_ char *edited = NULL;
		size_t len = strlen(text);

		while (len > 0 && text[len - 1] != '}')
			len--;
		CHECK(asprintf(&edited, "%.*s, \"mounts\": []}", (int)(len - 1), text) > 0);
		CHECK_INT(read_manifest(edited, NULL), -EBADMSG);
	}
	mntcr_tree_free(a);
	mntcr_tree_free(b);
	json_object_put(root);
	json_object_put(rev);
}

TEST(manifest_not_json)
{
	static const char *texts[] = {
		"",
		"hello",
		"[]",
		"null",
		"{\"format\": \"mntcr-manifest\"",
		"{} {}",
		"{}\n\0{}",
		"{\"a\": \"\xff\"}", /* invalid UTF-8 in JSON text */
	};
	struct strbuf deep = { 0 };

	for (size_t i = 0; i < ARRAY_SIZE(texts); i++)
		CHECK_INT(read_manifest(texts[i], NULL), -EBADMSG);
	/* Deep nesting stops at json-c's depth limit, well before the stack does. */
	for (int i = 0; i < 100000; i++)
		strbuf_puts(&deep, "[");
	CHECK_INT(read_manifest(deep.buf, NULL), -EBADMSG);
	strbuf_release(&deep);
	/* A manifest with a NUL byte in the middle (the checksum covers all of it). */
	{
		static const char magic[] = "mntcr-image\nversion 1\n";
		static const char text[] = "{}\n\0{}";
		_cleanup_free_ char *sum = NULL;

		if (asprintf(&sum,
			     "{\"algorithm\": \"xxh3-64\", \"manifest\": \"%016" PRIx64
			     "\", \"content\": \"%016" PRIx64 "\", \"members\": 2}",
			     XXH3_64bits(text, sizeof(text) - 1), XXH3_64bits(NULL, 0)) > 0) {
			struct member m[] = { { "mntcr-image", magic },
					      { "manifest.json", text, sizeof(text) - 1 },
					      { "checksum", sum } };
			CHECK_INT(read_members(m, 3), -EBADMSG);
		}
	}
}

TEST(oversized_members)
{
	static const char magic[] = "mntcr-image\nversion 1\n";
	_cleanup_free_ char *big = malloc(70000);
	struct member m[3];

	memset(big, ' ', 69999);
	big[69999] = 0;
	memcpy(big, magic, sizeof(magic) - 1);
	/* magic member over 4096 bytes */
	m[0] = (struct member){ "mntcr-image", big };
	m[1] = (struct member){ "manifest.json", "{}" };
	CHECK_INT(read_members(m, 2), -EBADMSG);
	/* checksum member over 64 KiB */
	m[0] = (struct member){ "mntcr-image", magic };
	m[2] = (struct member){ "checksum", big };
	CHECK_INT(read_members(m, 3), -EBADMSG);
}

/*
 * Random edits to the manifest text under a correct checksum: the reader
 * must answer 0 or -EBADMSG, never crash or leak (run under ASan/UBSan).
 */
TEST(manifest_mutations)
{
	static const char *tokens[] = { "{",
					"}",
					"[",
					"]",
					",",
					":",
					"\"",
					"\\",
					"null",
					"true",
					"-1",
					"0",
					"18446744073709551616",
					"1e308",
					"\"\\u0000\"",
					"\"/\"",
					"\xff",
					"4096" };
	struct json_object *root = sample_manifest();
	const char *text;
	size_t len, unexpected = 0, accepted = 0;

	CHECK(root != NULL);
	if (!root)
		return;
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
							    JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(text);
	for (int iter = 0; iter < 3000; iter++) {
		struct strbuf b = { 0 };
		int edits = 1 + (int)(rnd() % 4), r;

		strbuf_add(&b, text, len);
		for (int k = 0; k < edits && b.len > 0; k++) {
			size_t off = rnd() % b.len, n = 1 + rnd() % 16;
			const char *tok = tokens[rnd() % ARRAY_SIZE(tokens)];

			switch (rnd() % 3) {
			case 0: /* flip a byte (not into a NUL, which the strbuf cannot carry here)
				 */
				b.buf[off] ^= (char)(1 + rnd() % 255);
				if (!b.buf[off])
					b.buf[off] = 'x';
				break;
			case 1: /* delete a run */
				n = n > b.len - off ? b.len - off : n;
				memmove(b.buf + off, b.buf + off + n, b.len - off - n + 1);
				b.len -= n;
				break;
			default: { /* insert a token */
				size_t tl = strlen(tok);

				strbuf_reserve(&b, tl);
				memmove(b.buf + off + tl, b.buf + off, b.len - off + 1);
				memcpy(b.buf + off, tok, tl);
				b.len += tl;
			}
			}
		}
		r = read_manifest(b.buf, NULL);
		if (r == 0)
			accepted++;
		else if (r != -EBADMSG) {
			if (unexpected++ < 5)
				printf("#   mutation %d: %d\n", iter, r);
		}
		strbuf_release(&b);
	}
	printf("# 3000 mutated manifests, %zu still valid\n", accepted);
	CHECK_INT(unexpected, 0);
	json_object_put(root);
}

/* How many mounts and superblocks the last read took from their lines (the reader's debug line), or -1. */
static long raw_taken = -1, raw_sbs = -1;

static void watch_raw(int level, const char *msg, void *userdata)
{
	long k, total, sbs;

	(void)level;
	(void)userdata;
	if (sscanf(msg, "Manifest: %ld of %ld mounts and %ld of", &k, &total, &sbs) == 3) {
		raw_taken = k;
		raw_sbs = sbs;
	}
}

/* Read manifest with the mounts taken from their lines, and again all through the parser. */
static int read_raw_and_parsed(const char *manifest, unsigned version, int *ret_parsed,
			       struct mntcr_tree **a, struct mntcr_tree **b)
{
	int r;

	raw_taken = raw_sbs = -1;
	mntcr_set_log_func(watch_raw, NULL, MNTCR_LOG_DEBUG);
	r = version < 2 ? read_manifest(manifest, a) : read_manifest_vn(manifest, version, a);
	mntcr_set_log_func(NULL, NULL, MNTCR_LOG_ERROR);
	setenv("MNTCR_MANIFEST_RAW", "0", 1);
	*ret_parsed = version < 2 ? read_manifest(manifest, b) : read_manifest_vn(manifest, version, b);
	unsetenv("MNTCR_MANIFEST_RAW");
	return r;
}

/*
 * The superblocks and mounts of a manifest in the writer's layout are read
 * from their lines without the general parser (sb_raw(), mount_raw()):
 * the same trees as through the parser, and the same errors, for the
 * writer's own manifests (with namespaces and processes too: "ns") and
 * for thousands of edits of their lines.
 */
TEST(manifest_raw_mounts)
{
	static const char *tokens[] = { "{", "}", "[", "]", ",", ":", "\"", "\\", " ", "null", "true",
					"false", "-1", "0", "01", "00", "1.5", "1e3", "18446744073709551615",
					"18446744073709551616", "99999999999999999999", "\"\\u0041\"",
					"\"/\"", "\"relatime\"", "\"idmapped\"", "\"bogus\"", "\xff",
					"\x7f", "\t", "4096", ", \"ns\": 1", ", \"x\": 1", "\"dir\"",
					"\"file\"" };
	static const char *values[] = { "0", "1", "7", "4294967295", "4294967296", "18446744073709551615",
					"18446744073709551616", "1234567890123456789", "01", "-1", "1.5",
					"null", "true", "false", "\"\"", "\"/\"", "\"/m/1/d\\\\040x\"",
					"\"/a/../b\"", "\"/a//b\"", "\"relative\"", "\"x\"", "\"dir\"",
					"\"file\"", "\"tmpfs\"", "\"\\u0041\"", "\"caf\xc3\xa9\"", "[ ]",
					"[ \"ro\" ]", "[ \"rw\", \"nosuid\", \"relatime\" ]",
					"[ \"rw\", \"bogus\" ]", "[ \"idmapped\" ]", "[ 1 ]", "{ }" };
	struct mntcr_tree *trees[] = { sample_tree(), big_tree(300), two_ns_tree() };
	size_t edited = 0, same = 0, taken = 0, accepted = 0;

	for (size_t k = 0; k < ARRAY_SIZE(trees); k++) {
		_cleanup_free_ char *img = NULL, *manifest = NULL, *magic = NULL;
		struct mntcr_tree *a = NULL, *b = NULL;
		unsigned version = 0;
		const char *lines;
		size_t len, from, n;
		int ra, rb;

		CHECK(trees[k] != NULL);
		if (!trees[k] || image_bytes(trees[k], &img, &len) < 0 ||
		    extract_member(img, len, "manifest.json", &manifest) < 0 ||
		    extract_member(img, len, "mntcr-image", &magic) < 0 ||
		    sscanf(magic, "mntcr-image\nversion %u", &version) != 1) {
			CHECK(!"the writer's manifest");
			mntcr_tree_free(trees[k]);
			continue;
		}
		/* as written: every mount from its line */
		ra = read_raw_and_parsed(manifest, version, &rb, &a, &b);
		CHECK_INT(ra, 0);
		CHECK_INT(rb, 0);
		/* the sample's paths with spaces and UTF-8 are escaped: the parser reads those */
		CHECK(raw_taken > 0 && raw_taken <= (long)trees[k]->n_mounts);
		CHECK(k != 1 || raw_taken == (long)trees[k]->n_mounts);
		CHECK(raw_sbs > 0 && raw_sbs <= (long)trees[k]->n_sbs);
		CHECK(k != 1 || raw_sbs == (long)trees[k]->n_sbs);
		CHECK(a && b && trees_equal(trees[k], a, true) && trees_equal(a, b, true));
		mntcr_tree_free(a);
		mntcr_tree_free(b);

		/* edits inside the superblock and mount lines */
		lines = strstr(manifest, "\"superblocks\": [");
		CHECK(lines != NULL);
		if (!lines) {
			mntcr_tree_free(trees[k]);
			continue;
		}
		n = strlen(manifest);
		for (int iter = 0; iter < 2000; iter++) {
			struct strbuf e = { 0 };
			int edits = 1 + (int)(rnd() % 3);

			/* the superblocks (and on), or the mounts only */
			from = (size_t)((iter % 2 ? strstr(manifest, "\"mounts\": [") : lines) - manifest);

			strbuf_add(&e, manifest, n);
			for (int j = 0; j < edits; j++) {
				size_t off = from + rnd() % (e.len - from), del = 1 + rnd() % 8;
				const char *tok, *colon, *next;
				size_t tl;

				if (rnd() % 2) {
					/* a value of a mount for another one: the text stays JSON, mostly */
					tok = values[rnd() % ARRAY_SIZE(values)];
					colon = strstr(e.buf + off, "\": ");
					next = colon ? strpbrk(colon + 3, ",}\n") : NULL;
					if (!next)
						continue;
					off = (size_t)(colon + 3 - e.buf);
					del = (size_t)(next - e.buf) - off;
					if (next[0] == '}' || (next[0] == ',' && next[-1] == ' '))
						del--; /* the space before " }", or inside "[ ..., ... ]" */
				} else {
					/* a token in place of a short run, or inserted */
					tok = tokens[rnd() % ARRAY_SIZE(tokens)];
					if (rnd() % 2)
						del = 0;
				}
				tl = strlen(tok);
				del = del > e.len - off ? e.len - off : del;
				memmove(e.buf + off, e.buf + off + del, e.len - off - del + 1);
				e.len -= del;
				strbuf_reserve(&e, tl);
				memmove(e.buf + off + tl, e.buf + off, e.len - off + 1);
				memcpy(e.buf + off, tok, tl);
				e.len += tl;
			}
			a = b = NULL;
			ra = read_raw_and_parsed(e.buf, version, &rb, &a, &b);
			edited++;
			taken += raw_taken > 0 || raw_sbs > 0;
			accepted += ra == 0;
			if (ra == rb && (ra < 0 || (a && b && trees_equal(a, b, false))))
				same++;
			else if (edited - same <= 3) {
				printf("#   edit %d of tree %zu: %d with lines, %d parsed\n", iter, k, ra, rb);
				if (a && b)
					trees_equal(a, b, true);
			}
			mntcr_tree_free(a);
			mntcr_tree_free(b);
			strbuf_release(&e);
		}
		mntcr_tree_free(trees[k]);
	}
	printf("# %zu edited manifests: %zu read from lines in part, %zu valid, %zu the same both ways\n",
	       edited, taken, accepted, same);
	CHECK_INT(same, edited);
	CHECK(taken > edited / 2);
	CHECK(accepted > 0);
}

TAP_MAIN
