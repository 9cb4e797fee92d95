/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small JSON writer and reader for the image manifest (json.h says why
 * and what they accept). Both are linear in the text and allocate nothing
 * per value: the writer appends to one buffer, the reader decodes strings
 * in place and keeps the tree in an arena. A split stream's helper thread
 * parses a copy of its part of the text, so that the two never write to
 * the same bytes.
 */
#include <assert.h>
#include <pthread.h>
#include <sys/mman.h>

#include "json.h"

/* -------------------------------------------------------------------------- */
/* Writer */

/* Room for n more bytes and the NUL after them; NULL once an error is set. */
static inline char *jw_room(struct jw *w, size_t n)
{
	struct strbuf *b = w->out;

	if (w->err)
		return NULL;
	if (b->cap - b->len <= n && strbuf_reserve(b, n) < 0) {
		w->err = -ENOMEM;
		return NULL;
	}
	return b->buf + b->len;
}

/* The bytes written from jw_room() up to end are taken. */
static inline void jw_took(struct jw *w, char *end)
{
	struct strbuf *b = w->out;

	b->len = (size_t)(end - b->buf);
	*end = 0;
}

static inline void jw_puts(struct jw *w, const char *s, size_t n)
{
	char *p = jw_room(w, n);

	if (p) {
		memcpy(p, s, n);
		jw_took(w, p + n);
	}
}

static void jw_indent(struct jw *w, int level)
{
	char *p = jw_room(w, (size_t)level * 2);

	if (p) {
		memset(p, ' ', (size_t)level * 2);
		jw_took(w, p + (size_t)level * 2);
	}
}

/* Bytes json_escape_str() rewrites: C0 controls, '"' and '\\' (and '/', unless NOSLASHESCAPE). */
static const uint8_t escape_class[256] = {
	[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, ['/'] = 2,
};

/* The classes that need an escape. */
static inline uint8_t escape_stop(const struct jw *w)
{
	return w->escape_slash ? 3 : 1;
}

/* json-c's json_escape_str(): \" \\ \b \f \n \r \t, "\/" unless told not to, other C0 as \u00xx. */
static void jw_escaped(struct jw *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t stop = escape_stop(w);
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t k = 2;

		if (!(escape_class[c] & stop))
			continue;
		esc[0] = '\\';
		switch (c) {
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '/': esc[1] = '/'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			k = 6;
		}
		jw_puts(w, s + start, i - start);
		jw_puts(w, esc, k);
		start = i + 1;
	}
	jw_puts(w, s + start, n - start);
}

/*
 * Write into p what precedes a value: a comma, a new line and the indent
 * (or a space on a flat line), the key; returns the end. Room: prefix_max().
 */
static char *put_prefix(struct jw *w, char *p, const char *key, size_t klen)
{
	bool more = w->has_children[w->depth - 1];

	w->has_children[w->depth - 1] = true;
	if (w->flat_depth && w->depth > w->flat_depth) {
		/* in a container on one line: json-c's SPACED without PRETTY */
		if (more)
			*p++ = ',';
		*p++ = ' ';
	} else {
		size_t indent = (size_t)w->depth * 2;

		if (more)
			*p++ = ',';
		*p++ = '\n';
		memset(p, ' ', indent);
		p += indent;
	}
	if (key) {
		*p++ = '"';
		memcpy(p, key, klen);
		p += klen;
		memcpy(p, "\": ", 3);
		p += 3;
	}
	return p;
}

static inline size_t prefix_max(const struct jw *w, size_t klen)
{
	return 2 + (size_t)w->depth * 2 + klen + 4;
}

/* A value written as it is (a number, a literal, a plain string in quotes), with its prefix, in one piece. */
static void jw_value(struct jw *w, const char *key, const char *s, size_t n, bool quoted)
{
	size_t klen = key ? strlen(key) : 0, q = quoted;
	char *p = jw_room(w, prefix_max(w, klen) + n + 2 * q);

	if (!p)
		return;
	if (w->depth > 0)
		p = put_prefix(w, p, key, klen);
	if (quoted)
		*p++ = '"';
	memcpy(p, s, n);
	p += n;
	if (quoted)
		*p++ = '"';
	jw_took(w, p);
}

/* What precedes a value: a comma, a new line and the indent, the key. */
static void jw_prefix(struct jw *w, const char *key)
{
	jw_value(w, key, "", 0, false);
}

static void jw_open(struct jw *w, const char *key, char c)
{
	jw_prefix(w, key);
	jw_puts(w, &c, 1);
	if (w->depth >= JW_MAX_DEPTH) {
		if (w->err == 0)
			w->err = -EINVAL;
		return;
	}
	w->has_children[w->depth++] = false;
}

/*
 * json-c ends every container, empty or not, with a new line and the outer
 * indent; a container on one line (flat_depth), with a space.
 */
static void jw_close(struct jw *w, char c)
{
	if (w->depth == 0) {
		if (w->err == 0)
			w->err = -EINVAL;
		return;
	}
	w->depth--;
	if (w->flat_depth && w->depth >= w->flat_depth) {
		const char end[2] = { ' ', c };

		jw_puts(w, end, 2);
		return;
	}
	jw_puts(w, "\n", 1);
	jw_indent(w, w->depth);
	jw_puts(w, &c, 1);
}

void jw_object_begin(struct jw *w, const char *key)
{
	jw_open(w, key, '{');
}

void jw_object_end(struct jw *w)
{
	jw_close(w, '}');
}

void jw_array_begin(struct jw *w, const char *key)
{
	jw_open(w, key, '[');
}

void jw_array_end(struct jw *w)
{
	jw_close(w, ']');
}

void jw_string_len(struct jw *w, const char *key, const char *s, size_t n)
{
	const uint8_t stop = escape_stop(w);
	size_t i = 0;

	while (i < n && !(escape_class[(unsigned char)s[i]] & stop))
		i++;
	if (i == n) {
		jw_value(w, key, s, n, true);
		return;
	}
	jw_prefix(w, key);
	jw_puts(w, "\"", 1);
	jw_escaped(w, s, n);
	jw_puts(w, "\"", 1);
}

void jw_string(struct jw *w, const char *key, const char *s)
{
	if (!s)
		jw_null(w, key);
	else
		jw_string_len(w, key, s, strlen(s));
}

void jw_u64(struct jw *w, const char *key, uint64_t u)
{
	char buf[24], *p = buf + sizeof(buf);

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	jw_value(w, key, p, (size_t)(buf + sizeof(buf) - p), false);
}

void jw_bool(struct jw *w, const char *key, bool b)
{
	jw_value(w, key, b ? "true" : "false", b ? 4 : 5, false);
}

void jw_null(struct jw *w, const char *key)
{
	jw_value(w, key, "null", 4, false);
}

void jw_raw(struct jw *w, const char *key, const char *json, size_t n)
{
	jw_value(w, key, json, n, false);
}

/* -------------------------------------------------------------------------- */
/* Reader */

#define JSON_MAX_DEPTH 32
struct parser {
	char *p, *end, *start;
	struct arena arena;
	struct jval *items; /* pending array items of every open array */
	size_t n_items, cap_items;
	struct jmember *members; /* pending members of every open object */
	size_t n_members, cap_members;
	const char *err;
	char *err_at;
	int depth;
	const struct jstream *streams; /* arrays of the top-level object handed over item by item */
	size_t n_streams;
	struct helper *helpers; /* per stream: its split's helper thread */
};

/* A stream's second thread (struct jsplit): a parser of its own, on a copy of the text from at. */
struct helper {
	const struct jsplit *split;
	jstream_raw_fn raw; /* the stream's */
	const char *at;
	char *copy; /* the text from at to the end */
	size_t len;
	pthread_t thread;
	bool running; /* started and not joined */
	int r;	      /* 0: it went to the array's end */
	size_t n;     /* items handed over */
	size_t used;  /* bytes of the copy parsed, the closing ']' included */
};

static int fail_at(struct parser *ps, char *at, const char *msg)
{
	ps->err = msg;
	ps->err_at = at;
	return -EBADMSG;
}

/* Byte classes: JSON white space; bytes a string holds as is (printable ASCII but '"', '\\'). */
enum {
	C_WS = 1,
	C_PLAIN = 2,
};

static const uint8_t byte_class[256] = {
	['\n'] = C_WS,
	['\t'] = C_WS,
	['\r'] = C_WS,
	[' '] = C_WS | C_PLAIN,
	['!'] = C_PLAIN,
	['#' ... '['] = C_PLAIN,
	[']' ... 0x7f] = C_PLAIN,
};

static inline void skip_ws(struct parser *ps)
{
	char *p = ps->p, *end = ps->end;

	if (p < end && !(byte_class[(unsigned char)*p] & C_WS))
		return;
	/*
	 * Pretty-printed text: a new line and an indent, each value on its own
	 * line. The indent's spaces are counted 8 at a time, without a branch
	 * per space.
	 */
	if (p < end && *p == '\n')
		p++;
	while (end - p >= 8) {
		uint64_t w = load8(p) ^ 0x2020202020202020ull;

		if (w) {
			p += __builtin_ctzll(w) / 8;
			break;
		}
		p += 8;
	}
	while (p < end && (byte_class[(unsigned char)*p] & C_WS))
		p++;
	ps->p = p;
}

static int hex4(const char *s, const char *end, unsigned *ret)
{
	unsigned v = 0;

	if (end - s < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*ret = v;
	return 0;
}

static char *put_utf8(char *w, unsigned cp)
{
	if (cp < 0x80)
		*w++ = (char)cp;
	else if (cp < 0x800) {
		*w++ = (char)(0xc0 | cp >> 6);
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*w++ = (char)(0xe0 | cp >> 12);
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*w++ = (char)(0xf0 | cp >> 18);
		*w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	}
	return w;
}

/*
 * The string at ps->p (its opening quote), decoded in place: the decoded
 * bytes never outgrow the text, so they are written over it and end with a
 * NUL where the closing quote (or an escape) was.
 */
static int parse_string(struct parser *ps, const char **ret, uint32_t *ret_len)
{
	char *r = ps->p + 1, *w = r, *begin = r;
	unsigned cont = 0; /* UTF-8 continuation bytes still expected */

	for (;;) {
		unsigned char c;

		/* the common case: plain ASCII, nothing to rewrite yet; 8 bytes at a time first */
		if (w == r) {
			while (ps->end - r >= 8) {
				uint64_t x = load8(r);

				if ((x & 0x8080808080808080ull) || bytes_below_0x20(x) || bytes_eq(x, '"') ||
				    bytes_eq(x, '\\'))
					break;
				r += 8;
			}
			while (r < ps->end && (byte_class[(unsigned char)*r] & C_PLAIN))
				r++;
			w = r;
		}
		if (r >= ps->end)
			return fail_at(ps, r, "unexpected end of the JSON text in a string");
		c = (unsigned char)*r;
		if (cont) {
			if ((c & 0xc0) != 0x80)
				return fail_at(ps, r, "invalid utf-8 string");
			cont--;
			*w++ = *r++;
			continue;
		}
		if (c == '"')
			break;
		if (c >= 0x80) {
			if ((c & 0xe0) == 0xc0)
				cont = 1;
			else if ((c & 0xf0) == 0xe0)
				cont = 2;
			else if ((c & 0xf8) == 0xf0)
				cont = 3;
			else
				return fail_at(ps, r, "invalid utf-8 string");
			*w++ = *r++;
			continue;
		}
		if (c != '\\') {
			*w++ = *r++; /* json-c takes raw control characters too */
			continue;
		}
		if (r + 1 >= ps->end)
			return fail_at(ps, r, "unexpected end of the JSON text in a string");
		switch (r[1]) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '/': *w++ = '/'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'u': {
			unsigned cp, lo;

			if (hex4(r + 2, ps->end, &cp) < 0)
				return fail_at(ps, r, "invalid \\u escape in a string");
			r += 6;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				/* a high surrogate: with a low one, a pair; alone, U+FFFD (as json-c) */
				if (ps->end - r >= 6 && r[0] == '\\' && r[1] == 'u' &&
				    hex4(r + 2, ps->end, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					r += 6;
				} else
					cp = 0xfffd;
			} else if (cp >= 0xdc00 && cp <= 0xdfff)
				cp = 0xfffd;
			w = put_utf8(w, cp);
			continue;
		}
		default:
			return fail_at(ps, r, "invalid escape in a string");
		}
		r += 2;
	}
	if (r - begin > UINT32_MAX)
		return fail_at(ps, begin, "string too long");
	*w = 0;
	*ret = begin;
	*ret_len = (uint32_t)(w - begin);
	ps->p = r + 1;
	return 0;
}

/*
 * A number, as json-c's strict tokener takes it (which is looser than RFC
 * 8259 for doubles: "1.", "-.5", "00.5"): an int unless it has a fraction
 * or an exponent. Doubles are only told apart, never used.
 */
static int parse_number(struct parser *ps, struct jval *v)
{
	char *q = ps->p, *digits;
	bool neg = false, frac = false, overflow = false, nonzero;
	size_t n_int, n_frac = 0;
	uint64_t u = 0;

	if (q < ps->end && *q == '-') {
		neg = true;
		q++;
	}
	for (digits = q; q < ps->end && *q >= '0' && *q <= '9'; q++) {
		unsigned d = (unsigned)(*q - '0');

		/* 19 digits are below 10^19 < UINT64_MAX: no need to check those */
		if (q - digits >= 19 && u > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			u = u * 10 + d;
	}
	n_int = (size_t)(q - digits);
	nonzero = u != 0 || overflow; /* a digit other than 0 */
	if (q < ps->end && *q == '.') {
		frac = true;
		for (q++; q < ps->end && *q >= '0' && *q <= '9'; q++)
			n_frac++;
	}
	if (n_int == 0 && !(neg && n_frac > 0))
		return fail_at(ps, q, "number expected");
	if (q < ps->end && (*q == 'e' || *q == 'E')) {
		frac = true;
		q++;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			return fail_at(ps, q, "number expected");
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	ps->p = q;
	if (frac) {
		*v = (struct jval){ .type = JT_DOUBLE };
		return 0;
	}
	/* "01" is refused, "00" and "-01" are not (json-c 0.16) */
	if (!neg && n_int > 1 && digits[0] == '0' && nonzero)
		return fail_at(ps, digits, "number expected");
	/* json-c clamps: above UINT64_MAX to UINT64_MAX, below INT64_MIN to INT64_MIN */
	if (neg) {
		if (overflow || u > (uint64_t)INT64_MAX + 1)
			u = (uint64_t)INT64_MAX + 1;
		*v = (struct jval){ .type = JT_INT, .neg = u != 0,
				    .i = u ? (uint64_t)(-(int64_t)(u - 1) - 1) : 0 };
	} else
		*v = (struct jval){ .type = JT_INT, .i = overflow ? UINT64_MAX : u };
	return 0;
}

static int parse_value(struct parser *ps, struct jval *v);

static int push_item(struct parser *ps, const struct jval *v)
{
	if (ps->n_items == ps->cap_items && GROW(ps->items, ps->cap_items, ps->n_items + 1) < 0)
		return -ENOMEM;
	ps->items[ps->n_items++] = *v;
	return 0;
}

static int push_member(struct parser *ps, const char *key, const struct jval *v)
{
	if (ps->n_members == ps->cap_members &&
	    GROW(ps->members, ps->cap_members, ps->n_members + 1) < 0)
		return -ENOMEM;
	ps->members[ps->n_members++] = (struct jmember){ .key = key, .v = *v };
	return 0;
}

/*
 * Where the value at ps->p goes when it is a scalar and the stack (members
 * of an object, items of an array) has room: straight into its next slot.
 * Parsed into a local and copied, the value would be loaded right after
 * its fields were stored one at a time, and wait for those stores. NULL
 * for a container, which pushes onto the stacks itself and may move them.
 */
static struct jval *scalar_slot(struct parser *ps, bool object)
{
	if (ps->p >= ps->end || *ps->p == '{' || *ps->p == '[')
		return NULL;
	if (object)
		return ps->n_members < ps->cap_members ? &ps->members[ps->n_members].v : NULL;
	return ps->n_items < ps->cap_items ? &ps->items[ps->n_items] : NULL;
}

/*
 * A key as a C string: one holding "\u0000" ends there, as in json-c.
 * Keys are short: a loop, not a strcmp() call, which costs more to set up.
 */
static inline bool key_is(const struct jmember *m, const char *key)
{
	const char *a = m->key;

	while (*a && *a == *key) {
		a++;
		key++;
	}
	return *a == *key;
}

/* A hash of a key's first 4 bytes, 0 to 255: most keys of an object differ there. */
static unsigned key_hash(const char *key)
{
	uint32_t h = 0;

	for (size_t i = 0; i < 4 && key[i]; i++)
		h = h << 8 | (unsigned char)key[i];
	return (h * 0x9e3779b1u) >> 24;
}

/*
 * Whether two of an object's members have the same key: only then must
 * jval_get() search from the end. A 256-bit filter of the keys finds the
 * candidates; an object too large for it is assumed to have some, which
 * keeps this linear.
 */
static bool has_dup_keys(const struct jmember *m, size_t n)
{
	uint64_t seen[4] = { 0 };

	if (n > 64)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned h = key_hash(m[i].key);
		uint64_t bit = (uint64_t)1 << (h & 63);

		if (seen[h >> 6] & bit)
			for (size_t j = 0; j < i; j++)
				if (key_is(&m[j], m[i].key))
					return true;
		seen[h >> 6] |= bit;
	}
	return false;
}

/* After an item of a container: 1 at a ',' (another item follows), 0 at its closing bracket. */
static inline int item_end(struct parser *ps, char close)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail_at(ps, ps->p, "unexpected end of the JSON text");
	if (*ps->p != ',' && *ps->p != close)
		return fail_at(ps, ps->p, "unexpected character");
	return *ps->p++ == ',';
}

static const struct jstream *stream_for(const struct parser *ps, const char *key)
{
	for (size_t i = 0; i < ps->n_streams; i++)
		if (streq(ps->streams[i].key, key))
			return &ps->streams[i];
	return NULL;
}

/*
 * The parse is at h's guess, an item's start: take the items the helper
 * parsed from there, and skip to the array's end (1); or, if the helper
 * failed or the consumer declines them, drop them and go on (0).
 */
static int helper_join(struct parser *ps, struct helper *h, const struct jstream *s, size_t *n)
{
	int r = 1;

	pthread_join(h->thread, NULL);
	h->running = false;
	if (h->r == 0 && h->n < UINT32_MAX - *n)
		r = h->split->join(s->userdata, h->split->helper_userdata, h->n);
	if (r != 0) {
		h->split->drop(h->split->helper_userdata);
		return r < 0 ? r : 0;
	}
	*n += h->n;
	ps->p = (char *)h->at + h->used;
	return 1;
}

/*
 * The items of a streamed array, from ps->p to its closing ']' included,
 * each handed to item(userdata, *n, ...) with *n counting them. The arena
 * is rewound after each one: the items are parsed into the same memory,
 * which stays in the cache. With h, at h's guess the helper's items are
 * taken instead, up to the array's end (s: the stream they are for).
 */
static int stream_items(struct parser *ps, int (*item)(void *userdata, size_t idx, const struct jval *v),
			jstream_raw_fn raw, void *userdata, size_t *n, struct helper *h, const struct jstream *s)
{
	int r;

	do {
		struct arena_mark mark;
		const char *after;
		struct jval v;

		skip_ws(ps);
		if (h && h->running && ps->p == h->at) {
			r = helper_join(ps, h, s, n);
			if (r != 0)
				return r < 0 ? r : 0;
		}
		if (raw && *n < UINT32_MAX && (r = raw(userdata, *n, ps->p, ps->end, &after)) != 0) {
			if (r < 0)
				return r;
			assert(after > ps->p && after <= ps->end);
			ps->p = (char *)after;
			(*n)++;
			r = item_end(ps, ']');
			continue;
		}
		mark = arena_mark(&ps->arena);
		r = parse_value(ps, &v);
		if (r < 0)
			return r;
		if (*n == UINT32_MAX)
			return fail_at(ps, ps->p, "too many items");
		r = item(userdata, (*n)++, &v);
		if (r < 0)
			return r;
		arena_rewind(&ps->arena, mark);
		r = item_end(ps, ']');
	} while (r > 0);
	return r;
}

/* The array at ps->p, a member of the top-level object, handed to s item by item. */
static int parse_streamed(struct parser *ps, const struct jstream *s, struct jval *v)
{
	struct helper *h = ps->helpers ? &ps->helpers[s - ps->streams] : NULL;
	size_t n = 0;
	int r;

	if (++ps->depth > JSON_MAX_DEPTH)
		return fail_at(ps, ps->p, "nesting too deep");
	if (s->begin && (r = s->begin(s->userdata)) < 0)
		return r;
	/* a block to come back to, not one allocated and freed per item */
	if (!ps->arena.head && !arena_alloc(&ps->arena, 1))
		return -ENOMEM;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']')
		ps->p++;
	else if ((r = stream_items(ps, s->item, s->raw, s->userdata, &n, h, s)) < 0)
		return r;
	*v = (struct jval){ .type = JT_ARRAY, .streamed = true, .n = (uint32_t)n };
	ps->depth--;
	return 0;
}

static int parse_container(struct parser *ps, struct jval *v, bool object)
{
	size_t base = object ? ps->n_members : ps->n_items, n;
	char close = object ? '}' : ']';
	int r;

	if (++ps->depth > JSON_MAX_DEPTH)
		return fail_at(ps, ps->p, "nesting too deep");
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close)
		ps->p++;
	else
		for (;;) {
			const struct jstream *stream;
			struct jval item, *slot;
			const char *key = NULL;
			uint32_t klen;

			skip_ws(ps);
			if (object) {
				if (ps->p >= ps->end || *ps->p != '"')
					return fail_at(ps, ps->p, "object key expected");
				r = parse_string(ps, &key, &klen);
				if (r < 0)
					return r;
				skip_ws(ps);
				if (ps->p >= ps->end || *ps->p != ':')
					return fail_at(ps, ps->p, "':' expected");
				ps->p++;
			}
			skip_ws(ps);
			if (object && ps->depth == 1 && ps->n_streams && ps->p < ps->end &&
			    *ps->p == '[' && (stream = stream_for(ps, key))) {
				slot = NULL;
				r = parse_streamed(ps, stream, &item);
			} else {
				slot = scalar_slot(ps, object);
				r = parse_value(ps, slot ? slot : &item);
			}
			if (r < 0)
				return r;
			if (!slot)
				r = object ? push_member(ps, key, &item) : push_item(ps, &item);
			else if (object)
				ps->members[ps->n_members++].key = key;
			else
				ps->n_items++;
			if (r < 0)
				return r;
			r = item_end(ps, close);
			if (r < 0)
				return r;
			if (r == 0)
				break;
		}
	n = (object ? ps->n_members : ps->n_items) - base;
	if (n > UINT32_MAX)
		return fail_at(ps, ps->p, "too many items");
	*v = (struct jval){ .type = object ? JT_OBJECT : JT_ARRAY, .n = (uint32_t)n };
	if (n > 0) {
		size_t size = n * (object ? sizeof(struct jmember) : sizeof(struct jval));
		void *a = arena_alloc(&ps->arena, size);

		if (!a)
			return -ENOMEM;
		if (object) {
			memcpy(a, ps->members + base, size);
			v->members = a;
			v->dup_keys = has_dup_keys(v->members, n);
			ps->n_members = base;
		} else {
			memcpy(a, ps->items + base, size);
			v->items = a;
			ps->n_items = base;
		}
	}
	ps->depth--;
	return 0;
}

static int parse_literal(struct parser *ps, const char *word, struct jval *v, const struct jval *val)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail_at(ps, ps->p, "unexpected character");
	ps->p += n;
	*v = *val;
	return 0;
}

static int parse_value(struct parser *ps, struct jval *v)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail_at(ps, ps->p, "unexpected end of the JSON text");
	switch (*ps->p) {
	case '{':
		return parse_container(ps, v, true);
	case '[':
		return parse_container(ps, v, false);
	case '"': {
		const char *s;
		uint32_t n;
		int r = parse_string(ps, &s, &n);

		if (r < 0)
			return r;
		*v = (struct jval){ .type = JT_STRING, .n = n, .s = s };
		return 0;
	}
	case 't':
		return parse_literal(ps, "true", v, &(struct jval){ .type = JT_BOOLEAN, .b = true });
	case 'f':
		return parse_literal(ps, "false", v, &(struct jval){ .type = JT_BOOLEAN, .b = false });
	case 'n':
		return parse_literal(ps, "null", v, &(struct jval){ .type = JT_NULL });
	default:
		return parse_number(ps, v);
	}
}

int jdoc_parse(char *text, size_t len, struct jdoc *ret, const char **ret_err_msg, size_t *ret_err_pos)
{
	return jdoc_parse_streams(text, len, NULL, 0, ret, ret_err_msg, ret_err_pos);
}

/*
 * The helper thread: the items from its guess to the array's end, as
 * parse_streamed() would parse them there (two levels deep: the top-level
 * object, the array), on its copy of the text.
 */
static void *helper_run(void *arg)
{
	struct helper *h = arg;
	struct parser ps = { .p = h->copy, .end = h->copy + h->len, .start = h->copy, .depth = 2 };

	log_thread_quiet();
	h->r = -ENOMEM;
	if (arena_alloc(&ps.arena, 1))
		h->r = stream_items(&ps, h->split->item, h->raw, h->split->helper_userdata, &h->n, NULL, NULL);
	h->used = (size_t)(ps.p - ps.start);
	arena_release(&ps.arena);
	free(ps.items);
	free(ps.members);
	return NULL;
}

/* Start the helpers of the streams that have a split, each on its copy of the text. */
static void helpers_start(struct parser *ps, struct helper *helpers)
{
	for (size_t i = 0; i < ps->n_streams; i++) {
		const struct jsplit *sp = ps->streams[i].split;
		struct helper *h = &helpers[i];

		*h = (struct helper){ .split = sp, .raw = ps->streams[i].raw };
		if (!sp || sp->at <= ps->start || sp->at >= ps->end)
			continue;
		h->at = sp->at;
		h->len = (size_t)(ps->end - sp->at);
		/* populated at once: a fault per page costs twice as much */
		h->copy = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
			       -1, 0);
		if (h->copy == MAP_FAILED) {
			h->copy = NULL;
			continue; /* no helper: the parse does all */
		}
		memcpy(h->copy, sp->at, h->len);
		h->running = thread_start_heap(&h->thread, helper_run, h) == 0;
		ps->helpers = helpers;
	}
}

/* The helpers the parse did not join: their items are dropped. */
static void helpers_finish(struct parser *ps)
{
	for (size_t i = 0; ps->helpers && i < ps->n_streams; i++) {
		struct helper *h = &ps->helpers[i];

		if (h->running) {
			pthread_join(h->thread, NULL);
			h->split->drop(h->split->helper_userdata);
		}
		if (h->copy)
			munmap(h->copy, h->len);
	}
}

int jdoc_parse_streams(char *text, size_t len, const struct jstream *streams, size_t n_streams,
		       struct jdoc *ret, const char **ret_err_msg, size_t *ret_err_pos)
{
	struct parser ps = { .p = text, .end = text + len, .start = text,
			     .streams = streams, .n_streams = n_streams };
	struct helper helpers[n_streams ? n_streams : 1];
	int r;

	*ret = (struct jdoc){ 0 };
	helpers_start(&ps, helpers);
	r = parse_value(&ps, &ret->root);
	if (r == 0) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			r = fail_at(&ps, ps.p, "trailing data");
	}
	helpers_finish(&ps);
	free(ps.items);
	free(ps.members);
	ret->arena = ps.arena;
	if (r < 0) {
		jdoc_release(ret);
		if (r == -EBADMSG) {
			/* ps.err is NULL when a stream's consumer refused an item */
			if (ret_err_msg)
				*ret_err_msg = ps.err;
			if (ret_err_pos)
				*ret_err_pos = ps.err ? (size_t)(ps.err_at - text) : 0;
		}
		return r;
	}
	return 0;
}

void jdoc_release(struct jdoc *d)
{
	arena_release(&d->arena);
	*d = (struct jdoc){ 0 };
}

const struct jval *jval_get_hint(const struct jval *obj, const char *key, uint32_t *hint)
{
	uint32_t start;

	if (!obj || obj->type != JT_OBJECT)
		return NULL;
	/* From the end: the last of repeated keys counts, as in json-c. */
	if (obj->dup_keys) {
		for (uint32_t i = obj->n; i > 0; i--)
			if (key_is(&obj->members[i - 1], key))
				return &obj->members[i - 1].v;
		return NULL;
	}
	/* Each key is there once: from *hint to the end, then from the start. */
	start = *hint < obj->n ? *hint : 0;
	for (uint32_t k = 0; k < obj->n; k++) {
		uint32_t i = start + k < obj->n ? start + k : start + k - obj->n;

		if (key_is(&obj->members[i], key)) {
			*hint = i + 1;
			return &obj->members[i].v;
		}
	}
	return NULL;
}

void jval_get_many(const struct jval *obj, const char *const keys[], size_t n, const struct jval *ret[])
{
	size_t next = 0;

	for (size_t k = 0; k < n; k++)
		ret[k] = NULL;
	if (!obj || obj->type != JT_OBJECT)
		return;
	for (uint32_t i = 0; i < obj->n; i++)
		for (size_t j = 0; j < n; j++) {
			size_t k = next + j < n ? next + j : next + j - n;

			if (key_is(&obj->members[i], keys[k])) {
				ret[k] = &obj->members[i].v;
				next = k + 1;
				break;
			}
		}
}

const struct jval *jval_get(const struct jval *obj, const char *key)
{
	uint32_t hint = 0;

	return jval_get_hint(obj, key, &hint);
}

const char *jtype_name(enum jtype t)
{
	static const char *const names[] = {
		[JT_NULL] = "null",	[JT_BOOLEAN] = "boolean", [JT_DOUBLE] = "double", [JT_INT] = "int",
		[JT_OBJECT] = "object", [JT_ARRAY] = "array",	  [JT_STRING] = "string",
	};
	return (unsigned)t < ARRAY_SIZE(names) ? names[t] : "?";
}
