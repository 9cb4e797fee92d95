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
#include <assert.h>
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
	if (!mount_root_is_valid(m->fstype, m->root) || m->point[0] != '/')
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
 * The text is read in chunks and parsed as it comes. The kernel prints
 * mountinfo at about 1 us a line on a machine with dear system calls, and
 * parsing a line costs a fraction of that: past the first chunk a second
 * thread parses each chunk while this one reads the next, so the parse
 * hides behind the read. A read of mountinfo returns one page of lines
 * however much it asks for (the kernel fills its page-sized buffer, then
 * looks up where it stopped in its tree of mounts on the next read): a
 * chunk is TEXT_CHUNK bytes of reads, so that a 10,000-line text makes
 * ten. A chunk holds whole lines; the end of a line the chunk cut off
 * starts the next one. The strings stay in the chunks, which the tree
 * keeps as its texts.
 */
#define TEXT_CHUNK (64U << 10)

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

struct chunk {
	struct chunk *next;
	char *text; /* len bytes of whole lines, and room for a NUL after them */
	size_t len;
};

struct text_load {
	struct mntcr_tree *t; /* the parser's alone while it runs */
	struct point_sum *sums; /* per mount of t */
	size_t cap_sums;
	bool ids_sorted;  /* the lines so far in id order: a parent is found by binary search */
	struct u64map by_id; /* else by id, once a compact_chunk() needs it (old ids are reused) */
	bool mapped;
	struct chunk *held;   /* the first chunk, until a second one says whether a thread pays */
	bool may_thread, threaded;
	pthread_t thread;
	/* the chunks read and not parsed yet, from the reader to the parser thread */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct chunk *head, **tail;
	bool eof;
	int r; /* the parser thread's first error */
};

static void chunk_free(struct chunk *c)
{
	free(c->text);
	free(c);
}

/*
 * Mountpoints longer than this on average in a chunk (a deep tree: its lines
 * are kilobytes) are kept below their parent's (compact_chunk()).
 */
#define COMPACT_MIN_POINT 256

/* The mount with id `id` among those parsed so far. */
static bool find_mount(struct text_load *l, uint64_t id, size_t *ret)
{
	const struct mntcr_mount *ms = l->t->mounts;
	size_t lo = 0, hi = l->t->n_mounts;

	if (!l->ids_sorted) {
		if (!l->mapped) {
			for (size_t i = 0; i < l->t->n_mounts; i++)
				if (u64map_put(&l->by_id, ms[i].id, i) < 0)
					return false;
			l->mapped = true;
		}
		return u64map_get(&l->by_id, id, ret);
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ms[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret = lo;
	return lo < l->t->n_mounts && ms[lo].id == id;
}

/* Where mount i's path below its parent's starts in its point, or 0: its parent is not in the text so far. */
static size_t point_rel_off(struct text_load *l, size_t i)
{
	const struct mntcr_mount *m = &l->t->mounts[i];
	size_t p;

	if (!find_mount(l, m->parent_id, &p) || p == i)
		return 0;
	/* 0 when not below it: tree_index() says so */
	return point_below(m->point, l->sums[i].len, &l->sums[p]);
}

/*
 * The mounts parsed from a chunk, from index first: when their mountpoints
 * are long, their strings are copied out into the tree's arena, each
 * mountpoint as the path below its parent's where the parent is among the
 * lines read so far (nearly always: a child is mounted after its parent),
 * and the chunk's text, the last of the tree's texts, is freed. A chain of
 * 10,000 nested mounts holds 2 KB of text a mount otherwise.
 */
static int compact_chunk(struct text_load *l, size_t first)
{
	struct mntcr_tree *t = l->t;
	size_t n = t->n_mounts, sum = 0, total = 0;
	char *block, *p;

	for (size_t i = first; i < n; i++)
		sum += l->sums[i].len;
	if (n == first || sum / (n - first) < COMPACT_MIN_POINT)
		return 0;
	for (size_t i = first; i < n; i++) {
		struct mntcr_mount *m = &t->mounts[i];

		m->point += point_rel_off(l, i);
		for (size_t k = 0; k < _MOUNT_STR_MAX; k++)
			total += strlen(*mount_str(m, k)) + 1;
	}
	block = arena_alloc(&t->text_arena, total);
	if (!block)
		return -ENOMEM;
	p = block;
	for (size_t i = first; i < n; i++)
		for (size_t k = 0; k < _MOUNT_STR_MAX; k++) {
			char **s = mount_str(&t->mounts[i], k);
			size_t len = strlen(*s) + 1;

			memcpy(p, *s, len);
			*s = p;
			p += len;
		}
	free(t->texts[--t->n_texts]);
	return 0;
}

/* A chunk's lines into l->t's mounts; the tree takes the text. */
static int chunk_parse(struct text_load *l, struct chunk *c)
{
	struct mntcr_tree *t = l->t;
	char *p = c->text, *end = c->text + c->len;
	size_t first = t->n_mounts;
	int r = tree_add_text(t, c->text);

	if (r < 0) {
		free(c->text);
		return r;
	}
	if (memchr(c->text, 0, c->len))
		return log_debug_errno(-EBADMSG, "mountinfo holds a NUL byte");
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl)
			nl = end; /* the last line, without its newline */
		if ((size_t)(nl - p) > MOUNTINFO_MAX_LINE)
			return log_debug_errno(-EBADMSG, "mountinfo line %zu is too long", t->n_mounts + 1);
		*nl = 0;
		if (nl > p) {
			struct mntcr_mount *m;
			size_t len;

			r = GROW(t->mounts, t->cap_mounts, t->n_mounts + 1);
			if (r < 0)
				return r;
			r = GROW(l->sums, l->cap_sums, t->n_mounts + 1);
			if (r < 0)
				return r;
			r = parse_line(p, &t->mounts[t->n_mounts], true);
			if (r < 0)
				return log_debug_errno(r, "mountinfo line %zu is malformed", t->n_mounts + 1);
			m = &t->mounts[t->n_mounts];
			len = strlen(m->point);
			l->sums[t->n_mounts] = point_sum_of(m->point, len);
			if (t->n_mounts > 0 && t->mounts[t->n_mounts - 1].id >= m->id)
				l->ids_sorted = false;
			if (l->mapped && (r = u64map_put(&l->by_id, m->id, t->n_mounts)) < 0)
				return r;
			t->n_mounts++; /* owns nothing: its strings are in the text */
		}
		p = nl + 1;
	}
	return compact_chunk(l, first);
}

static void *parse_run(void *arg)
{
	struct text_load *l = arg;
	int r = 0;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		struct chunk *c;

		while (!l->head && !l->eof)
			pthread_cond_wait(&l->cond, &l->lock);
		c = l->head;
		if (!c)
			break;
		l->head = c->next;
		if (!l->head)
			l->tail = &l->head;
		pthread_mutex_unlock(&l->lock);
		if (r == 0) {
			r = chunk_parse(l, c);
			free(c);
		} else
			chunk_free(c); /* after an error: drained until the reader stops */
		pthread_mutex_lock(&l->lock);
		if (r < 0 && l->r == 0)
			l->r = r;
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* To the parser thread, or parsed here; takes c. */
static int chunk_pass(struct text_load *l, struct chunk *c)
{
	int r;

	if (!l->threaded && l->held) {
		/* a second chunk: the text is long enough for a thread */
		if (l->may_thread && thread_start(&l->thread, parse_run, l) == 0)
			l->threaded = true;
		else {
			l->may_thread = false;
			r = chunk_parse(l, l->held);
			free(TAKE_PTR(l->held));
			if (r < 0) {
				chunk_free(c);
				return r;
			}
		}
	}
	if (!l->threaded) {
		l->held = c;
		return 0;
	}
	pthread_mutex_lock(&l->lock);
	if (l->held) { /* the thread's first chunk */
		*l->tail = TAKE_PTR(l->held);
		l->tail = &(*l->tail)->next;
	}
	r = l->r;
	if (r == 0) {
		*l->tail = c;
		l->tail = &c->next;
		pthread_cond_signal(&l->cond);
	}
	pthread_mutex_unlock(&l->lock);
	if (r < 0)
		chunk_free(c);
	return r;
}

/* The held chunk parsed, or the parser thread told the text ended and joined. */
static int load_finish(struct text_load *l)
{
	int r = 0;

	if (l->threaded) {
		pthread_mutex_lock(&l->lock);
		l->eof = true;
		pthread_cond_signal(&l->cond);
		pthread_mutex_unlock(&l->lock);
		pthread_join(l->thread, NULL);
		r = l->r;
	} else if (l->held) {
		r = chunk_parse(l, l->held);
		free(TAKE_PTR(l->held));
	}
	return r;
}

/*
 * Read the text into chunks of whole lines, each passed on as soon as it
 * is read: buf[0..len) is the chunk being filled, its first bytes the end
 * of the last chunk's cut line.
 */
static int load_chunks(struct text_load *l, text_source read_fn, void *src)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	int r;

	for (;;) {
		struct chunk *c;
		char *nl, *next = NULL;
		size_t whole, cut;
		ssize_t n;

		if (cap - len <= 1) { /* full, or none yet */
			r = GROW_EXACT(buf, cap, len + TEXT_CHUNK + 1);
			if (r < 0)
				return r;
		}
		n = read_fn(src, buf + len, cap - len - 1);
		if (n < 0)
			return (int)n;
		if (n == 0 && len == 0)
			return 0;
		len += (size_t)n;
		if (n > 0 && cap - len > 1)
			continue; /* a read of mountinfo returns a page of lines */
		nl = n == 0 ? buf + len - 1 : memrchr(buf, '\n', len); /* at the end, a last line without '\n' */
		if (!nl) {
			if (len > MOUNTINFO_MAX_LINE) /* chunk_parse() refuses it: read no more of it */
				return log_debug_errno(-EBADMSG, "mountinfo has a line longer than %u bytes",
						       MOUNTINFO_MAX_LINE);
			continue; /* one line longer than a chunk: read on */
		}
		whole = (size_t)(nl - buf) + 1;
		cut = len - whole;
		if (n > 0) {
			next = malloc(cut + TEXT_CHUNK + 1);
			if (!next)
				return -ENOMEM;
			memcpy(next, buf + whole, cut);
		}
		c = malloc(sizeof(*c));
		if (!c) {
			free(next);
			return -ENOMEM;
		}
		*c = (struct chunk){ .text = TAKE_PTR(buf), .len = whole };
		r = chunk_pass(l, c);
		buf = next;
		len = cut;
		cap = next ? cut + TEXT_CHUNK + 1 : 0;
		if (r < 0 || n == 0)
			return r;
	}
}

static int load_text(text_source read_fn, void *src, size_t expect, struct mntcr_tree *t)
{
	struct text_load l = {
		.t = t,
		.ids_sorted = true,
		.may_thread = parallel_shares(2, 1) > 1,
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	int r, k;

	assert(t->n_mounts == 0);
	/* room made here, not on the parser thread: there glibc's heap is another one, without huge pages */
	r = GROW_EXACT(t->mounts, t->cap_mounts, expect);
	if (r < 0)
		return r;
	l.tail = &l.head;
	r = load_chunks(&l, read_fn, src);
	k = load_finish(&l);
	if (r == 0)
		r = k;
	free(l.sums);
	u64map_release(&l.by_id);
	if (r == 0)
		(void)SHRINK(t->mounts, t->cap_mounts, t->n_mounts);
	if (r < 0)
		tree_clear_mounts(t);
	return r;
}

int mountinfo_text_load(int fd, size_t expect, struct mntcr_tree *t)
{
	return load_text(fd_source, &fd, expect, t);
}

/* The mountinfo text read from src into a new tree, indexed. */
static int source_tree(text_source read_fn, void *src, struct mntcr_tree **ret_tree)
{
	struct mntcr_tree *t = NULL;
	int r = tree_new(&t);

	if (r == 0) {
		t->source = MNTCR_SOURCE_MOUNTINFO;
		r = load_text(read_fn, src, 0, t);
	}
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
