/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t utf8_sequence_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
	size_t len;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	/* RFC 3629, section 4: no overlong forms, no surrogates, nothing above U+10FFFF. */
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	for (size_t i = 0, l; i < n; i += l)
		if ((l = utf8_sequence_len(p + i, n - i)) == 0)
			return false;
	return true;
}

int utf8_escape(const char *s, enum utf8_style style, char **ret)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), len = 0;
	char *b;

	/* Worst case: every byte becomes four characters. */
	if (n > (SIZE_MAX - 1) / 4)
		return -ENOMEM;
	b = malloc(n * 4 + 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_sequence_len(p + i, n - i);

		if (l == 0 || (style == UTF8_DISPLAY && p[i] == '\\' && p[i + 1] == 'x')) {
			b[len++] = '\\';
			b[len++] = 'x';
			b[len++] = hex[p[i] >> 4];
			b[len++] = hex[p[i] & 15];
			i++;
			continue;
		}
		if (style == UTF8_IMAGE && p[i] == '\\')
			b[len++] = '\\';
		memcpy(b + len, p + i, l);
		len += l;
		i += l;
	}
	b[len] = 0;
	*ret = b;
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int utf8_unescape_bytes_into(const char *s, size_t n, char *out, size_t *ret_len)
{
	char *o = out;

	for (size_t i = 0; i < n;) {
		/* The bytes up to the next escape, as they are: no NUL among them. */
		const char *esc = memchr(s + i, '\\', n - i);
		size_t run = esc ? (size_t)(esc - (s + i)) : n - i;

		if (memchr(s + i, 0, run))
			return -EINVAL;
		memmove(o, s + i, run);
		o += run;
		i += run;
		if (i == n)
			break;
		if (i + 1 < n && s[i + 1] == '\\') {
			*o++ = '\\';
			i += 2;
			continue;
		}
		if (i + 3 < n && s[i + 1] == 'x' && hex_digit(s[i + 2]) >= 0 &&
		    hex_digit(s[i + 3]) >= 0) {
			int v = hex_digit(s[i + 2]) << 4 | hex_digit(s[i + 3]);

			if (v == 0)
				return -EINVAL;
			*o++ = (char)v;
			i += 4;
			continue;
		}
		return -EINVAL;
	}
	*o = 0;
	if (ret_len)
		*ret_len = (size_t)(o - out);
	return 0;
}

int utf8_unescape_bytes_full(const char *s, size_t n, char **ret, size_t *ret_len)
{
	char *d;
	int r;

	if (n == SIZE_MAX)
		return -ENOMEM;
	d = malloc(n + 1);
	if (!d)
		return -ENOMEM;
	r = utf8_unescape_bytes_into(s, n, d, ret_len);
	if (r < 0) {
		free(d);
		return r;
	}
	*ret = d;
	return 0;
}

int utf8_unescape_bytes(const char *s, size_t n, char **ret)
{
	return utf8_unescape_bytes_full(s, n, ret, NULL);
}
