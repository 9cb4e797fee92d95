/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The image manifest's JSON, without json-c: json-c builds an object per
 * value and a hash table per JSON object, and costs 10-15 us per mount to
 * write and to read a manifest (most of a dump or restore of 10,000 mounts).
 *
 * The writer streams into a strbuf and prints exactly what json-c 0.16
 * prints with JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED (and,
 * optionally, NOSLASHESCAPE). Given a flat depth, the containers it opens
 * there or deeper go on one line, as json-c prints them with SPACED alone:
 * the manifest has one mount per line, a third smaller than fully
 * indented and as quick to read for people and for grep.
 *
 * The reader parses into a compact tree allocated in one arena, and accepts
 * and refuses what json-c's tokener does with JSON_TOKENER_STRICT |
 * JSON_TOKENER_VALIDATE_UTF8: no comments, no trailing commas, no leading
 * zeros; raw control characters in strings are accepted, UTF-8 is checked
 * for structure only; a lone surrogate escape becomes U+FFFD; integers out
 * of range are clamped to [INT64_MIN, UINT64_MAX]; a repeated key: the last
 * one counts; at most 32 levels of nesting. Large arrays of the top-level
 * object can be handed over item by item instead (jstream), and their
 * items shared with a second thread (jsplit).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* -------------------------------------------------------------------------- */
/* Writer */

#define JW_MAX_DEPTH 16

struct jw {
	struct strbuf *out;
	bool escape_slash;		/* "/" as "\/" (json-c's default) */
	int flat_depth;			/* > 0: containers opened at this depth or deeper go on one line */
	int depth;			/* open containers */
	bool has_children[JW_MAX_DEPTH];
	int err;			/* first error (-ENOMEM, -EINVAL), sticky */
};

/*
 * Each writes one value: a member of the open object (key != NULL) or an
 * item of the open array / the top level (key == NULL). Keys are the
 * writer's own names, written as they are: ASCII that JSON does not escape.
 */
void jw_object_begin(struct jw *w, const char *key);
void jw_object_end(struct jw *w);
void jw_array_begin(struct jw *w, const char *key);
void jw_array_end(struct jw *w);
/* s == NULL writes null. */
void jw_string(struct jw *w, const char *key, const char *s);
void jw_string_len(struct jw *w, const char *key, const char *s, size_t n);
void jw_u64(struct jw *w, const char *key, uint64_t u);
void jw_bool(struct jw *w, const char *key, bool b);
void jw_null(struct jw *w, const char *key);
/* A value given as its JSON text (n bytes), written as it is. */
void jw_raw(struct jw *w, const char *key, const char *json, size_t n);

/* -------------------------------------------------------------------------- */
/* Reader */

enum jtype {
	JT_NULL,
	JT_BOOLEAN,
	JT_DOUBLE,
	JT_INT,
	JT_OBJECT,
	JT_ARRAY,
	JT_STRING,
};

struct jmember;

struct jval {
	uint8_t type;	   /* enum jtype */
	bool neg;	   /* JT_INT: negative (i is then an int64_t) */
	bool dup_keys;	   /* JT_OBJECT: a key may be there twice (jval_get: from the end) */
	bool streamed;	   /* JT_ARRAY: its items went to a jstream, items is NULL */
	uint32_t n;	   /* JT_STRING: length; JT_ARRAY, JT_OBJECT: number of items */
	union {
		bool b;
		uint64_t i;
		const char *s;		  /* NUL-terminated, but may hold NULs: use n */
		struct jval *items;	  /* JT_ARRAY */
		struct jmember *members;  /* JT_OBJECT, in text order */
	};
};

struct jmember {
	const char *key; /* NUL-terminated (a key holding "\u0000" ends there) */
	struct jval v;
};

struct jdoc {
	struct jval root;
	struct arena arena;
};

/*
 * Parse text[0..len) (decoding strings in place, so text is modified and
 * must outlive the document). -EBADMSG with *ret_err_msg and *ret_err_pos
 * describing the error, -ENOMEM.
 */
int jdoc_parse(char *text, size_t len, struct jdoc *ret, const char **ret_err_msg, size_t *ret_err_pos);

/*
 * An array member of the top-level object handed over item by item as it
 * is parsed: each item's memory is reused for the next, so an array of
 * many objects never sits whole in memory. begin() is called where the
 * array starts (again, should the key be repeated: the last one counts),
 * item() with each item. Its value in the document is a JT_ARRAY with
 * streamed set, n its number of items and no items.
 */
struct jsplit;

/*
 * Optional, before an item is parsed: the item taken from the text as it
 * is, by a reader that knows the layout its writer gives it (the
 * manifest's mounts, one per line). 1 when it took the item (*ret_end just
 * after it), 0 to have it parsed and handed to item(), or a negative
 * errno. It may take only text that parses as a JSON value, and must make
 * of it just what item() makes of that value, errors included.
 */
typedef int (*jstream_raw_fn)(void *userdata, size_t idx, const char *p, const char *end,
			      const char **ret_end);

struct jstream {
	const char *key;
	int (*begin)(void *userdata);
	int (*item)(void *userdata, size_t idx, const struct jval *v);
	void *userdata;
	const struct jsplit *split; /* optional: the items after split->at on a second thread */
	jstream_raw_fn raw;	   /* optional: see above (with userdata, or the split's helper_userdata) */
};

/*
 * A stream's items shared with a second thread. The caller guesses where
 * one of its items starts, far into the text (at); from there to the
 * array's end a helper thread parses a copy of the text, handing the
 * items to item() with helper_userdata and indexes from 0; nothing is
 * logged on that thread (log_thread_quiet()). When the parse reaches that
 * very place at an item's start, join() takes the helper's n items (0),
 * or declines (1: they are dropped and the parse goes on as without a
 * helper), and the parse skips to the array's end. When the guess was
 * wrong, or the helper met an error, drop() frees what it made, and the
 * parse does all: the result, errors included, is the same as without a
 * split.
 */
struct jsplit {
	const char *at;
	int (*item)(void *helper_userdata, size_t idx, const struct jval *v);
	int (*join)(void *userdata, void *helper_userdata, size_t n);
	void (*drop)(void *helper_userdata);
	void *helper_userdata;
};

/*
 * jdoc_parse(), with the arrays streams[] name handed to them. An error
 * from begin() or item() ends the parse with it; *ret_err_msg is then NULL
 * (the consumer says why).
 */
int jdoc_parse_streams(char *text, size_t len, const struct jstream *streams, size_t n_streams,
		       struct jdoc *ret, const char **ret_err_msg, size_t *ret_err_pos);
void jdoc_release(struct jdoc *d);

/* obj[key] (the last member of that name); NULL when there is none or obj is not a JT_OBJECT. */
const struct jval *jval_get(const struct jval *obj, const char *key);
/*
 * The same, searching from member *hint on and leaving *hint after the
 * member found: keys looked up in the order they were written are found
 * at once. Any *hint gives the same result.
 */
const struct jval *jval_get_hint(const struct jval *obj, const char *key, uint32_t *hint);
/*
 * ret[k] = obj[keys[k]] for the n keys (NULL: none), the last member of a
 * name counting, in one pass over obj's members: each is compared first
 * with the key after the one its predecessor was, so an object written in
 * the keys' order takes one comparison a member, and a missing key none.
 */
void jval_get_many(const struct jval *obj, const char *const keys[], size_t n, const struct jval *ret[]);
/* json-c's names: "null", "boolean", "double", "int", "object", "array", "string". */
const char *jtype_name(enum jtype t);
