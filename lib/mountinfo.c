/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mountinfo text -> tree, from a FILE* or a file descriptor; never opens /proc itself.
 *
 * A line (proc_pid_mountinfo(5)):
 *
 *   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 *   (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
 *
 *  (1) mount ID            (2) parent ID       (3) major:minor of the superblock
 *  (4) root inside the fs ("mnt:[N]" for a bind of a namespace file)
 *  (5) mount point         (6) per-mount options
 *  (7) zero or more optional fields: shared:N master:N propagate_from:N unbindable
 *  (8) "-"                 (9) fstype[.subtype] (10) source ("none" without one,
 *                                                  an empty field for "")
 * (11) superblock options
 *
 * Fields 4, 5, 10 and 11 escape space, tab, newline and backslash as
 * \040 \011 \012 \134; any \ooo octal escape is decoded. Lines come in
 * mount-id order, which is not topological order.
 */
#include <inttypes.h>

#include "flags.h"
#include "internal.h"
#include "mntcr/mntcr.h"
#include "tree.h"

#define MOUNTINFO_MAX_LINE (1U << 20)

/* Split off the next space-separated field; NULL at end of line. */
static char *next_field(char **p)
{
	char *s = *p, *e;

	if (!s)
		return NULL;
	while (*s == ' ')
		s++;
	if (*s == 0) {
		*p = NULL;
		return NULL;
	}
	e = strchr(s, ' ');
	if (e) {
		*e = 0;
		*p = e + 1;
	} else
		*p = NULL;
	return s;
}

/*
 * Split off the next field at exactly one space. Fields 9-11 use this: the
 * kernel prints an empty source as an empty field ("tmpfs  rw" after
 * mount -t tmpfs "" dir), which next_field() would skip.
 */
static char *next_field_exact(char **p)
{
	char *s = *p, *e;

	if (!s)
		return NULL;
	e = strchr(s, ' ');
	if (e) {
		*e = 0;
		*p = e + 1;
	} else
		*p = NULL;
	return s;
}

/* Decode the \ooo escapes of s into out (room for strlen(s) + 1). */
static void unescape_into(const char *s, char *out)
{
	char *o = out;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 4;
		} else
			*o++ = *s++;
	}
	*o = 0;
}

static int parse_u64_field(const char *s, uint64_t *ret)
{
	return safe_atou64(s, ret) < 0 ? -EBADMSG : 0;
}

static int parse_dev(const char *s, uint32_t *ret_major, uint32_t *ret_minor)
{
	unsigned long maj, min;
	char *e;

	errno = 0;
	maj = strtoul(s, &e, 10);
	if (errno || e == s || *e != ':' || maj > UINT32_MAX)
		return -EBADMSG;
	s = e + 1;
	min = strtoul(s, &e, 10);
	if (errno || e == s || *e != 0 || min > UINT32_MAX)
		return -EBADMSG;
	*ret_major = (uint32_t)maj;
	*ret_minor = (uint32_t)min;
	return 0;
}

static int parse_optional(const char *f, struct mntcr_mount *m)
{
	if (streq(f, "unbindable")) {
		m->unbindable = true;
		return 0;
	}
	if (strncmp(f, "shared:", 7) == 0)
		return parse_u64_field(f + 7, &m->shared);
	if (strncmp(f, "master:", 7) == 0)
		return parse_u64_field(f + 7, &m->master);
	if (strncmp(f, "propagate_from:", 15) == 0)
		return parse_u64_field(f + 15, &m->propagate_from);
	/* Unknown optional fields are allowed by the format: skip them. */
	log_debug("Ignoring unknown optional mountinfo field '%s'", f);
	return 0;
}

/* The fields of a line, split in place; the optional ones (7) go into m (parse_optional()). */
struct line_fields {
	char *id, *parent, *dev, *opts;
	char *str[_MOUNT_STR_MAX]; /* (4) root, (5) mount point, (9) fstype, (10) source, (11) sb options */
};

static int split_line(char *line, struct line_fields *l, struct mntcr_mount *m)
{
	char *p = line, *opt;
	int r;

	if (!(l->id = next_field(&p)) || !(l->parent = next_field(&p)) || !(l->dev = next_field(&p)) ||
	    !(l->str[MOUNT_STR_ROOT] = next_field(&p)) || !(l->str[MOUNT_STR_MOUNTPOINT] = next_field(&p)) ||
	    !(l->opts = next_field(&p)))
		return -EBADMSG;
	while ((opt = next_field(&p)) && !streq(opt, "-"))
		if ((r = parse_optional(opt, m)) < 0)
			return r;
	if (!opt)
		return -EBADMSG; /* no separator */
	/* (9) (10) (11): exactly one space apart; only the source may be empty */
	l->str[MOUNT_STR_FSTYPE] = next_field_exact(&p);
	l->str[MOUNT_STR_SOURCE] = next_field_exact(&p);
	l->str[MOUNT_STR_SB_OPTS] = next_field_exact(&p);
	if (!l->str[MOUNT_STR_FSTYPE] || !l->str[MOUNT_STR_SOURCE] || !l->str[MOUNT_STR_SB_OPTS] || p ||
	    !*l->str[MOUNT_STR_FSTYPE] || !*l->str[MOUNT_STR_SB_OPTS])
		return -EBADMSG;
	return 0;
}

/* The line's numbers: (1) mount id, (2) parent id, (3) major:minor. */
static int line_numbers(const struct line_fields *l, uint64_t *ret_id, uint64_t *ret_parent,
			uint32_t *ret_major, uint32_t *ret_minor)
{
	if (parse_u64_field(l->id, ret_id) < 0 || parse_u64_field(l->parent, ret_parent) < 0 ||
	    parse_dev(l->dev, ret_major, ret_minor) < 0)
		return -EBADMSG;
	return 0;
}

/*
 * m's strings, unescaped from the line's fields: into one allocation, or
 * in place (in_text: a text the tree keeps; unescaping only shortens).
 */
static int take_strings(const struct line_fields *l, struct mntcr_mount *m, bool in_text)
{
	size_t room[_MOUNT_STR_MAX];
	int r;

	if (in_text) {
		for (size_t k = 0; k < _MOUNT_STR_MAX; k++) {
			unescape_into(l->str[k], l->str[k]);
			*mount_str(m, k) = l->str[k];
		}
		m->in_text = true;
	} else {
		for (size_t k = 0; k < _MOUNT_STR_MAX; k++)
			room[k] = strlen(l->str[k]);
		r = mount_strings_alloc(m, room);
		if (r < 0)
			return r;
		for (size_t k = 0; k < _MOUNT_STR_MAX; k++)
			unescape_into(l->str[k], *mount_str(m, k));
	}
	if (!mount_root_is_valid(m->fstype, m->root) || m->mountpoint[0] != '/')
		return -EBADMSG;
	return 0;
}

/* Parse one line (modified in place) into m; its strings stay in the line with in_text. */
static int parse_line(char *line, struct mntcr_mount *m, bool in_text)
{
	struct line_fields l;
	uint64_t id, parent;
	int r;

	*m = (struct mntcr_mount){ 0 };
	r = split_line(line, &l, m);
	if (r < 0)
		goto fail;
	if (line_numbers(&l, &id, &parent, &m->dev_major, &m->dev_minor) < 0 ||
	    attr_from_options(l.opts, &m->attr) < 0) {
		r = -EBADMSG;
		goto fail;
	}
	m->id = id;
	m->parent_id = parent;
	m->old_id = id <= UINT32_MAX ? (uint32_t)id : 0;
	r = take_strings(&l, m, in_text);
	if (r < 0)
		goto fail;
	return 0;
fail:
	mount_clear(m);
	return r;
}

int mountinfo_parse_line(char *line, struct mntcr_mount *m)
{
	return parse_line(line, m, false);
}

/*
 * A whole mountinfo text, its lines split (NUL-terminated in place). The
 * kernel prints as many lines as a read asks for, and each read is a
 * system call that first looks up where the last one stopped: reads of
 * 1 MiB, as the benchmark's floor does (a FILE's 4 KiB buffer made the
 * 10,000 binds' text 150 reads).
 */
#define TEXT_READ (1U << 20)

static int text_lines(struct mountinfo_text *x)
{
	char *p = x->buf, *end = x->buf + x->len;
	int r;

	if (memchr(x->buf, 0, x->len))
		return log_debug_errno(-EBADMSG, "mountinfo holds a NUL byte");
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl)
			nl = end; /* a last line without its newline: x->buf has room for the NUL */
		if ((size_t)(nl - p) > MOUNTINFO_MAX_LINE)
			return log_debug_errno(-EBADMSG, "mountinfo line %zu is too long", x->n_lines + 1);
		*nl = 0;
		if (nl > p) {
			r = GROW(x->line_at, x->cap_lines, x->n_lines + 1);
			if (r < 0)
				return r;
			x->line_at[x->n_lines++] = (size_t)(p - x->buf);
		}
		p = nl + 1;
	}
	return 0;
}

/* A read of up to n bytes from a file descriptor or a FILE: the bytes, 0 at the end, or -errno. */
typedef ssize_t (*text_source)(void *src, char *buf, size_t n);

static ssize_t fd_source(void *src, char *buf, size_t n)
{
	ssize_t k;

	do
		k = read(*(int *)src, buf, n);
	while (k < 0 && errno == EINTR);
	return k < 0 ? -errno : k;
}

static ssize_t file_source(void *src, char *buf, size_t n)
{
	size_t k = fread(buf, 1, n, src);

	return k == 0 && ferror((FILE *)src) ? -EIO : (ssize_t)k;
}

static int read_text(text_source read_fn, void *src, struct mountinfo_text *x)
{
	char *p;
	int r;

	*x = (struct mountinfo_text){ 0 };
	for (;;) {
		ssize_t n;

		r = GROW(x->buf, x->cap, x->len + TEXT_READ + 1);
		if (r < 0)
			return r;
		n = read_fn(src, x->buf + x->len, x->cap - x->len - 1);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		x->len += (size_t)n;
	}
	/* the room left goes back to the heap, for what comes next */
	p = realloc(x->buf, x->len + 1);
	if (p) {
		x->buf = p;
		x->cap = x->len + 1;
	}
	return text_lines(x);
}

int mountinfo_text_read(int fd, struct mountinfo_text *x)
{
	return read_text(fd_source, &fd, x);
}

void mountinfo_text_free(struct mountinfo_text *x)
{
	free(x->buf);
	free(x->line_at);
	*x = (struct mountinfo_text){ 0 };
}

struct parse_lines {
	const struct mountinfo_text *x;
	struct mntcr_mount *out;
};

static int parse_lines_run(void *arg, size_t lo, size_t hi)
{
	const struct parse_lines *p = arg;

	for (size_t i = lo; i < hi; i++) {
		int r = parse_line(p->x->buf + p->x->line_at[i], &p->out[i], true);

		if (r < 0)
			return log_debug_errno(r, "mountinfo line %zu is malformed", i + 1);
	}
	return 0;
}

/* Below this many lines a second thread costs more than it saves. */
#define PARSE_SHARE_MIN 2048

int mountinfo_text_parse(struct mountinfo_text *x, struct mntcr_tree *t)
{
	int r;

	assert(t->n_mounts == 0);
	r = GROW_EXACT(t->mounts, t->cap_mounts, x->n_lines);
	if (r == 0)
		r = parallel_ranges(x->n_lines, PARSE_SHARE_MIN, parse_lines_run,
				    &(struct parse_lines){ .x = x, .out = t->mounts });
	if (r == 0)
		r = tree_add_text(t, x->buf);
	if (r < 0)
		return r; /* the mounts parsed own nothing: their strings are in the text */
	x->buf = NULL; /* the tree's now */
	t->n_mounts = x->n_lines;
	return 0;
}

/* The mountinfo text read from src into a new tree, indexed. */
static int source_tree(text_source read_fn, void *src, struct mntcr_tree **ret_tree)
{
	struct mountinfo_text x;
	struct mntcr_tree *t = NULL;
	int r = read_text(read_fn, src, &x);

	if (r == 0)
		r = tree_new(&t);
	if (r == 0) {
		t->source = MNTCR_SOURCE_MOUNTINFO;
		r = mountinfo_text_parse(&x, t);
	}
	mountinfo_text_free(&x);
	if (r == 0)
		r = tree_index(t);
	if (r < 0) {
		mntcr_tree_free(t);
		return r;
	}
	*ret_tree = t;
	return 0;
}

int mountinfo_read_fd(int fd, struct mntcr_tree **ret_tree)
{
	return source_tree(fd_source, &fd, ret_tree);
}

MNTCR_EXPORT int mntcr_tree_parse_mountinfo(FILE *f, struct mntcr_tree **ret_tree)
{
	if (!f || !ret_tree)
		return -EINVAL;
	return source_tree(file_source, f, ret_tree);
}
