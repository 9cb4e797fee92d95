/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A minimal TAP producer for the unit tests: ok/not ok lines, a plan at the
 * end, exit status 1 when any check failed.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_STREQ(s, "a"); }
 *   int main(void) { return tap_run(); }
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tap_test {
	const char *name;
	void (*fn)(void);
	struct tap_test *next;
};

extern struct tap_test *tap_tests;
extern int tap_failed_checks;

#define TEST(name)                                                                                 \
	static void test_##name(void);                                                             \
	static struct tap_test tap_t_##name = { #name, test_##name, NULL };                        \
	__attribute__((constructor)) static void tap_register_##name(void)                        \
	{                                                                                          \
		struct tap_test **p = &tap_tests;                                                  \
		while (*p)                                                                         \
			p = &(*p)->next;                                                           \
		*p = &tap_t_##name;                                                                \
	}                                                                                          \
	static void test_##name(void)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
			tap_failed_checks++;                                                       \
		}                                                                                  \
	} while (0)

#define CHECK_STREQ(a, b)                                                                          \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                           \
			printf("#   %s:%d: '%s' != '%s' (%s vs %s)\n", __FILE__, __LINE__,            \
			       _a ? _a : "(null)", _b ? _b : "(null)", #a, #b);                    \
			tap_failed_checks++;                                                       \
		}                                                                                  \
	} while (0)

#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b) {                                                                    \
			printf("#   %s:%d: %lld != %lld (%s vs %s)\n", __FILE__, __LINE__, _a, _b,    \
			       #a, #b);                                                            \
			tap_failed_checks++;                                                       \
		}                                                                                  \
	} while (0)

/* Define once per test program (in the file with main). */
#define TAP_MAIN                                                                                   \
	struct tap_test *tap_tests;                                                                \
	int tap_failed_checks;                                                                     \
	int main(void)                                                                             \
	{                                                                                          \
		int n = 0, failed = 0;                                                             \
		for (struct tap_test *t = tap_tests; t; t = t->next) {                             \
			int before = tap_failed_checks;                                            \
			t->fn();                                                                   \
			n++;                                                                       \
			if (tap_failed_checks != before) {                                         \
				failed++;                                                          \
				printf("not ok %d - %s\n", n, t->name);                            \
			} else                                                                     \
				printf("ok %d - %s\n", n, t->name);                                \
			fflush(stdout);                                                            \
		}                                                                                  \
		printf("1..%d\n", n);                                                              \
		return failed ? 1 : 0;                                                             \
	}
