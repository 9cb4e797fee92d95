/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mountinfo text -> tree. Takes a FILE*, never opens /proc itself.
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

/* Decode \ooo escapes into a new string. */
static int unescape(const char *s, char **ret)
{
	size_t n = strlen(s);
	char *d = malloc(n + 1), *o = d;

	if (!d)
		return -ENOMEM;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 4;
		} else
			*o++ = *s++;
	}
	*o = 0;
	*ret = d;
	return 0;
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

/* Parse one line (modified in place) into m. */
int mountinfo_parse_line(char *line, struct mntcr_mount *m)
{
	char *p = line, *f[6], *fstype, *source, *sbopts, *opt;
	uint64_t id, parent;
	int r;

	*m = (struct mntcr_mount){ 0 };
	for (unsigned i = 0; i < ARRAY_SIZE(f); i++)
		if (!(f[i] = next_field(&p)))
			return -EBADMSG;
	if (parse_u64_field(f[0], &id) < 0 || parse_u64_field(f[1], &parent) < 0)
		return -EBADMSG;
	if (parse_dev(f[2], &m->dev_major, &m->dev_minor) < 0)
		return -EBADMSG;
	m->id = id;
	m->parent_id = parent;
	m->old_id = id <= UINT32_MAX ? (uint32_t)id : 0;

	while ((opt = next_field(&p)) && !streq(opt, "-")) {
		r = parse_optional(opt, m);
		if (r < 0)
			goto fail;
	}
	if (!opt) {
		r = -EBADMSG; /* no separator */
		goto fail;
	}
	/* (9) (10) (11): exactly one space apart; only the source may be empty */
	fstype = next_field_exact(&p);
	source = next_field_exact(&p);
	sbopts = next_field_exact(&p);
	if (!fstype || !source || !sbopts || p || !*fstype || !*sbopts) {
		r = -EBADMSG;
		goto fail;
	}
	r = attr_from_options(f[5], &m->attr);
	if (r < 0) {
		r = -EBADMSG;
		goto fail;
	}
	if ((r = unescape(f[3], &m->root)) < 0 || (r = unescape(f[4], &m->mountpoint)) < 0 ||
	    (r = unescape(fstype, &m->fstype)) < 0 || (r = unescape(source, &m->source)) < 0 ||
	    (r = unescape(sbopts, &m->sb_opts)) < 0)
		goto fail;
	if (!mount_root_is_valid(m->fstype, m->root) || m->mountpoint[0] != '/') {
		r = -EBADMSG;
		goto fail;
	}
	return 0;
fail:
	mount_clear(m);
	return r;
}

MNTCR_EXPORT int mntcr_tree_parse_mountinfo(FILE *f, struct mntcr_tree **ret_tree)
{
	struct mntcr_tree *t = NULL;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	int r;

	if (!f || !ret_tree)
		return -EINVAL;
	r = tree_new(&t);
	if (r < 0)
		return r;
	t->source = MNTCR_SOURCE_MOUNTINFO;

	while ((n = getline(&line, &cap, f)) >= 0) {
		struct mntcr_mount m;

		lineno++;
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = 0;
		if (n == 0)
			continue;
		if ((size_t)n > MOUNTINFO_MAX_LINE || memchr(line, 0, (size_t)n)) {
			r = log_debug_errno(-EBADMSG, "mountinfo line %zu is malformed", lineno);
			goto fail;
		}
		r = mountinfo_parse_line(line, &m);
		if (r < 0) {
			log_debug_errno(r, "mountinfo line %zu is malformed", lineno);
			goto fail;
		}
		r = tree_add_mount(t, &m);
		if (r < 0) {
			mount_clear(&m);
			goto fail;
		}
	}
	if (ferror(f)) {
		r = -EIO;
		goto fail;
	}
	r = tree_index(t);
	if (r < 0)
		goto fail;
	*ret_tree = t;
	return 0;
fail:
	mntcr_tree_free(t);
	return r;
}
