/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bytes <-> UTF-8 text. The image manifest stores paths, which are bytes,
 * as JSON strings, reversibly; mntcr show --json shows them as valid
 * UTF-8 too, as its table does. Built into the library and into the
 * command-line tool.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Length of the well-formed UTF-8 sequence (RFC 3629) at s[0..n), 0 if there is none. */
size_t utf8_sequence_len(const unsigned char *s, size_t n);
/* s is well-formed UTF-8 throughout. */
bool utf8_valid(const char *s);
enum utf8_style {
	UTF8_IMAGE,   /* a backslash becomes "\\": utf8_unescape_bytes() gives the bytes back */
	UTF8_DISPLAY, /* a backslash before an "x" becomes "\x5c", as util-linux's tables show it */
};
/*
 * Escape a byte string into valid UTF-8: well-formed sequences are copied
 * and each byte of an ill-formed sequence becomes "\xHH" (lowercase hex);
 * backslashes as style says. Either way the bytes can be told back from
 * the text. *ret is a new string.
 */
int utf8_escape(const char *s, enum utf8_style style, char **ret);
/*
 * The inverse of utf8_escape(s, UTF8_IMAGE) for the n bytes at s. -EINVAL on any
 * other backslash sequence, on a decoded or literal NUL byte. *ret is new.
 */
int utf8_unescape_bytes(const char *s, size_t n, char **ret);
/* The same, with the length of *ret in *ret_len (when not NULL). */
int utf8_unescape_bytes_full(const char *s, size_t n, char **ret, size_t *ret_len);
/* The same into out, which has room for n + 1 bytes (decoding never lengthens). */
int utf8_unescape_bytes_into(const char *s, size_t n, char *out, size_t *ret_len);
