/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small shared helpers: cleanup attributes, logging, growable buffers,
 * an open-addressing hash map keyed by 64-bit integers, path helpers.
 */
#pragma once

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "utf8.h"

#define MNTCR_EXPORT __attribute__((visibility("default")))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int *_p = &(fd);                                                                   \
		int _v = *_p;                                                                      \
		*_p = -EBADF;                                                                      \
		_v;                                                                                \
	})

#define TAKE_PTR(ptr)                                                                              \
	({                                                                                         \
		__typeof__(ptr) *_pp = &(ptr);                                                     \
		__typeof__(ptr) _pv = *_pp;                                                        \
		*_pp = NULL;                                                                       \
		_pv;                                                                               \
	})

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static inline bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* -------------------------------------------------------------------------- */
/* Logging. Library code logs at debug level; the caller decides what is fatal. */

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARNING = 1,
	LOG_LVL_INFO = 2,
	LOG_LVL_DEBUG = 3,
};

void log_internal(int level, const char *fmt, ...) _printf_(2, 3);
int log_level_get(void);
/* Nothing is logged on the calling thread from now on: a helper whose work is checked by the caller. */
void log_thread_quiet(void);

/* Every log_*_errno() returns its (negative) error argument. */
#define log_full_errno(level, r, ...)                                                              \
	({                                                                                         \
		int _r = (r);                                                                      \
		if ((level) <= log_level_get())                                                    \
			log_internal((level), __VA_ARGS__);                                        \
		_r;                                                                                \
	})
#define log_debug(...) (void)log_full_errno(LOG_LVL_DEBUG, 0, __VA_ARGS__)
#define log_warning(...) (void)log_full_errno(LOG_LVL_WARNING, 0, __VA_ARGS__)
#define log_debug_errno(r, ...) log_full_errno(LOG_LVL_DEBUG, r, __VA_ARGS__)
#define log_error_errno(r, ...) log_full_errno(LOG_LVL_ERROR, r, __VA_ARGS__)

/* -------------------------------------------------------------------------- */
/* Growable byte buffer. */

struct strbuf {
	char *buf;
	size_t len;
	size_t cap;
};

int strbuf_reserve(struct strbuf *sb, size_t extra);
int strbuf_reserve_exact(struct strbuf *sb, size_t extra); /* grow_array_exact() */
int strbuf_add(struct strbuf *sb, const void *data, size_t n);
int strbuf_puts(struct strbuf *sb, const char *s);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) _printf_(2, 3);
void strbuf_release(struct strbuf *sb);
/* Returns the NUL-terminated buffer (never NULL on success) and empties sb. */
char *strbuf_detach(struct strbuf *sb);

/*
 * Grow an array of elements to hold at least `need` items: to the next
 * power of two, or (exact) to need alone, for a size known in advance.
 * Room reserved but never written costs no memory, but a large block's
 * last page partly used does: 2 MiB with the heap in huge pages.
 */
int grow_array(void **arr, size_t *cap, size_t need, size_t elem_size);
int grow_array_exact(void **arr, size_t *cap, size_t need, size_t elem_size);
#define GROW(arr, cap, need) grow_array((void **)&(arr), &(cap), (need), sizeof(*(arr)))
#define GROW_EXACT(arr, cap, need) grow_array_exact((void **)&(arr), &(cap), (need), sizeof(*(arr)))
/* The room past n elements (n > 0) back to the heap. */
int shrink_array(void **arr, size_t *cap, size_t n, size_t elem_size);
#define SHRINK(arr, cap, n) shrink_array((void **)&(arr), &(cap), (n), sizeof(*(arr)))

/* -------------------------------------------------------------------------- */
/* Hash map: uint64_t key -> size_t value. Open addressing, linear probing. */

struct u64map {
	uint64_t *keys;
	size_t *vals;
	uint8_t *used;
	size_t cap; /* power of two */
	size_t n;
};

int u64map_put(struct u64map *m, uint64_t key, size_t val); /* replaces */
int u64map_add(struct u64map *m, uint64_t key, size_t val); /* -EEXIST when key is there */
int u64map_reserve(struct u64map *m, size_t n);		    /* room for n keys without growing */
bool u64map_get(const struct u64map *m, uint64_t key, size_t *ret_val);
void u64map_release(struct u64map *m);

/* Hash map: string key (borrowed, must outlive the map) -> size_t value. */
struct strmap {
	const char **keys;
	size_t *vals;
	size_t cap;
	size_t n;
};

int strmap_put(struct strmap *m, const char *key, size_t val); /* replaces */
/*
 * Room for n keys, so that the next puts up to n do not grow it step by
 * step; an empty map that its first table holds is left to its first put.
 */
int strmap_reserve(struct strmap *m, size_t n);
bool strmap_get(const struct strmap *m, const char *key, size_t *ret_val);
void strmap_release(struct strmap *m);

uint64_t hash_bytes(const void *data, size_t n, uint64_t seed);
uint64_t hash_u64(uint64_t x);
/* FNV-1a of data, carried on from h (FNV1A_START): the hash of a longer string from its prefix's. */
#define FNV1A_START 0xcbf29ce484222325ULL
uint64_t fnv1a(uint64_t h, const void *data, size_t n);

/* -------------------------------------------------------------------------- */
/* Paths (absolute, '/'-separated, no trailing slash except "/"). */

/* True if `path` equals `prefix` or lies below it. */
bool path_startswith(const char *path, const char *prefix);
/*
 * The part of `path` below `prefix`, without a leading '/': "" when equal.
 * NULL when path is not at or below prefix.
 */
const char *path_relative(const char *path, const char *prefix);
/* Join a and b with exactly one '/'. */
char *path_join(const char *a, const char *b);
/*
 * Bytes 8 at a time. load8(): byte k of the word is p[k]. bytes_eq(): the
 * top bit of each byte of w that equals c, and no other bit (no carry
 * crosses a byte). bytes_below_0x20(): the same for the bytes of w below
 * 0x20, for words whose bytes are all below 0x80.
 */
static inline uint64_t load8(const char *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return le64toh(w);
}

static inline uint64_t bytes_eq(uint64_t w, unsigned char c)
{
	uint64_t x = w ^ (0x0101010101010101ull * c);

	return ~(((x & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | x) & 0x8080808080808080ull;
}

static inline uint64_t bytes_below_0x20(uint64_t w)
{
	return ~((w & 0x7f7f7f7f7f7f7f7full) + 0x6060606060606060ull) & 0x8080808080808080ull;
}

/* Number of components ("/" = 0, "/a/b" = 2). */
size_t path_depth(const char *path);
/* A path is sane: absolute, no "." or ".." components, no empty components. */
bool path_is_normalized(const char *path);

char *xstrdup(const char *s); /* strdup that returns NULL for NULL */
int safe_atou64(const char *s, uint64_t *ret);
int read_full_fd(int fd, char **ret_buf, size_t *ret_len, size_t max);
/*
 * Fault in the whole pages of [p, p + n), memory about to be written all
 * over, in one call (MADV_POPULATE_WRITE, Linux 5.14) instead of a fault
 * per page. Only a hint: the contents are unchanged, failures ignored.
 */
void memory_prefault(void *p, size_t n);

/*
 * An arena: many small allocations, freed together (a JSON document's
 * tree, a plan's paths). Blocks of 256 KiB (or one as large as a bigger
 * request), faulted in at once; allocations never move. arena_alloc()'s
 * are 16-byte aligned, arena_strdup()'s strings packed end to end. A mark
 * taken, the arena can go back to it (arena_rewind).
 */
struct arena_block;
struct arena {
	struct arena_block *head;
};
struct arena_mark {
	struct arena_block *block;
	size_t used;
};
void *arena_alloc(struct arena *a, size_t n); /* NULL: out of memory */
char *arena_strdup(struct arena *a, const char *s);
struct arena_mark arena_mark(const struct arena *a);
void arena_rewind(struct arena *a, struct arena_mark m);
void arena_release(struct arena *a);

/* File descriptors over a unix socket (SCM_RIGHTS), at most this many per message. */
#define SOCK_FDS_MAX 200
/* Send len bytes of buf (len > 0) and n fds in one message. EINTR is retried. 0 or -errno. */
int sock_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n);
/*
 * Receive one message: up to len bytes into buf, and the fds it carries
 * (O_CLOEXEC) into fds, at most max, their number in *ret_n; any beyond
 * max are closed. Returns the bytes received (0: the peer is gone) or
 * -errno.
 */
ssize_t sock_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max, size_t *ret_n);

/* -------------------------------------------------------------------------- */
/*
 * MNTCR_TIMING=1: the wall time of each phase of a dump or restore on
 * stderr, one line per phase: "mntcr timing: PHASE MS ms (at MS ms)", the
 * second figure counted from the library's load. One clock_gettime per
 * phase; nothing at all when the variable is unset.
 */
bool timing_enabled(void);
double timing_now_ms(void);
/* End the running phase: print it with the time since the previous mark. */
void timing_mark(const char *phase);
/*
 * Print a phase of `ms` that ran within the running one, which the next
 * mark then excludes (a dump's read of the mounts, inside its parse).
 */
void timing_report(const char *phase, double ms);

/* -------------------------------------------------------------------------- */
/*
 * Work split into shares of one array, run on up to PARALLEL_MAX threads.
 * parallel_shares() says how many shares n items make, at least per_share
 * items each; parallel_run() runs fn on each share (share k at
 * (char *)shares + k * size), share 0 on the calling thread, and returns
 * when all are done. A thread that cannot start leaves its share to the
 * caller: the result never depends on how many threads ran. fn must not
 * log (a library's log function is called from the caller's thread only).
 */
#define PARALLEL_MAX 2
/* pthread_create(), on another CPU than the caller's when it can: -errno. */
int thread_start(pthread_t *ret, void *(*fn)(void *), void *arg);
/* The same for a thread that allocates megabytes: its heap in huge pages (mntcr_set_huge_pages()). */
int thread_start_heap(pthread_t *ret, void *(*fn)(void *), void *arg);
/* Whether malloc gives threads heaps of their own, glibc's way (not a sanitizer's or valgrind's). */
bool malloc_has_arenas(void);
size_t parallel_shares(size_t n, size_t per_share);
void parallel_run(void *(*fn)(void *), void *shares, size_t size, size_t k);
/*
 * fn(arg, lo, hi) on each share [lo, hi) of [0, n) (parallel_shares(n,
 * per_share) of them, through parallel_run()); the first share's error,
 * in share order, or 0.
 */
int parallel_ranges(size_t n, size_t per_share, int (*fn)(void *arg, size_t lo, size_t hi), void *arg);
