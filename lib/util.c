/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "mntcr/mntcr.h"
#include "sys.h"

/* -------------------------------------------------------------------------- */
/* Logging */

static mntcr_log_func_t log_func;
static void *log_userdata;
static int log_max_level = -1; /* -1: not yet initialised from MNTCR_DEBUG */

static __thread bool log_quiet;

void log_thread_quiet(void)
{
	log_quiet = true;
}

int log_level_get(void)
{
	if (log_quiet)
		return -1;
	if (log_max_level < 0) {
		const char *e = getenv("MNTCR_DEBUG");
		log_max_level = (e && *e && !streq(e, "0")) ? LOG_LVL_DEBUG : LOG_LVL_ERROR;
	}
	return log_max_level;
}

MNTCR_EXPORT void mntcr_set_log_func(mntcr_log_func_t fn, void *userdata, int level)
{
	log_func = fn;
	log_userdata = userdata;
	log_max_level = level;
	if (getenv("MNTCR_DEBUG"))
		log_max_level = LOG_LVL_DEBUG;
}

void log_internal(int level, const char *fmt, ...)
{
	int saved = errno;
	char msg[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (log_func)
		log_func(level, msg, log_userdata);
	else
		fprintf(stderr, "mntcr: %s%s\n", level == LOG_LVL_DEBUG ? "debug: " : "", msg);
	errno = saved;
}

/* -------------------------------------------------------------------------- */
/* strbuf */

/* *arr to exactly ncap elements (at least need). */
static int resize_array(void **arr, size_t *cap, size_t ncap, size_t elem_size)
{
	void *p;

	if (ncap > SIZE_MAX / elem_size)
		return -ENOMEM;
	p = realloc(*arr, ncap * elem_size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

int grow_array(void **arr, size_t *cap, size_t need, size_t elem_size)
{
	size_t ncap;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 8;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	return resize_array(arr, cap, ncap, elem_size);
}

int grow_array_exact(void **arr, size_t *cap, size_t need, size_t elem_size)
{
	return need <= *cap ? 0 : resize_array(arr, cap, need, elem_size);
}

int shrink_array(void **arr, size_t *cap, size_t n, size_t elem_size)
{
	return n == 0 || n >= *cap ? 0 : resize_array(arr, cap, n, elem_size);
}

int strbuf_reserve(struct strbuf *sb, size_t extra)
{
	if (sb->len + extra + 1 < sb->len)
		return -ENOMEM;
	return grow_array((void **)&sb->buf, &sb->cap, sb->len + extra + 1, 1);
}

int strbuf_reserve_exact(struct strbuf *sb, size_t extra)
{
	if (sb->len + extra + 1 < sb->len)
		return -ENOMEM;
	return grow_array_exact((void **)&sb->buf, &sb->cap, sb->len + extra + 1, 1);
}

int strbuf_add(struct strbuf *sb, const void *data, size_t n)
{
	int r = strbuf_reserve(sb, n);
	if (r < 0)
		return r;
	memcpy(sb->buf + sb->len, data, n);
	sb->len += n;
	sb->buf[sb->len] = 0;
	return 0;
}

int strbuf_puts(struct strbuf *sb, const char *s)
{
	return strbuf_add(sb, s, strlen(s));
}

int strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	r = strbuf_reserve(sb, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
	return 0;
}

void strbuf_release(struct strbuf *sb)
{
	free(sb->buf);
	*sb = (struct strbuf){ 0 };
}

char *strbuf_detach(struct strbuf *sb)
{
	char *p;

	if (!sb->buf && strbuf_reserve(sb, 0) < 0)
		return NULL;
	sb->buf[sb->len] = 0;
	p = sb->buf;
	*sb = (struct strbuf){ 0 };
	return p;
}

/* -------------------------------------------------------------------------- */
/* Hashing (splitmix64 finaliser, FNV-1a for bytes) */

uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t hash_bytes(const void *data, size_t n, uint64_t seed)
{
	return hash_u64(fnv1a(FNV1A_START ^ seed, data, n));
}

/* -------------------------------------------------------------------------- */
/* u64map */

static int u64map_resize(struct u64map *m, size_t cap)
{
	struct u64map n = { 0 };

	n.cap = cap;
	n.keys = calloc(n.cap, sizeof(*n.keys));
	n.vals = calloc(n.cap, sizeof(*n.vals));
	n.used = calloc(n.cap, 1);
	if (!n.keys || !n.vals || !n.used) {
		u64map_release(&n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++)
		if (m->used[i])
			(void)u64map_put(&n, m->keys[i], m->vals[i]);
	u64map_release(m);
	*m = n;
	return 0;
}

#define MAP_FIRST_CAP 64 /* the table a map's first put allocates */

/*
 * The capacity a map of capacity cap grows to, by doublings from
 * MAP_FIRST_CAP, for n keys at most 3/4 full (what its put would reach key
 * by key); 0 when too large.
 */
static size_t map_cap_for(size_t cap, size_t n)
{
	if (cap == 0)
		cap = MAP_FIRST_CAP;
	while ((n + 1) * 4 > cap * 3) {
		if (cap > SIZE_MAX / 8)
			return 0;
		cap *= 2;
	}
	return cap;
}

int u64map_reserve(struct u64map *m, size_t n)
{
	size_t cap = map_cap_for(m->cap, n);

	if (cap == 0)
		return -ENOMEM;
	return cap == m->cap ? 0 : u64map_resize(m, cap);
}

/* key -> val; a key there already gets val (replace) or -EEXIST. */
static int u64map_insert(struct u64map *m, uint64_t key, size_t val, bool replace)
{
	size_t i;

	if ((m->n + 1) * 4 > m->cap * 3) {
		int r = u64map_resize(m, m->cap ? m->cap * 2 : MAP_FIRST_CAP);
		if (r < 0)
			return r;
	}
	for (i = hash_u64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->used[i]) {
			m->used[i] = 1;
			m->keys[i] = key;
			m->vals[i] = val;
			m->n++;
			return 0;
		}
		if (m->keys[i] == key) {
			if (!replace)
				return -EEXIST;
			m->vals[i] = val;
			return 0;
		}
	}
}

int u64map_put(struct u64map *m, uint64_t key, size_t val)
{
	return u64map_insert(m, key, val, true);
}

int u64map_add(struct u64map *m, uint64_t key, size_t val)
{
	return u64map_insert(m, key, val, false);
}

bool u64map_get(const struct u64map *m, uint64_t key, size_t *ret_val)
{
	if (m->cap == 0)
		return false;
	for (size_t i = hash_u64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->used[i])
			return false;
		if (m->keys[i] == key) {
			if (ret_val)
				*ret_val = m->vals[i];
			return true;
		}
	}
}

void u64map_release(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
	free(m->used);
	*m = (struct u64map){ 0 };
}

/* -------------------------------------------------------------------------- */
/* strmap */

static int strmap_resize(struct strmap *m, size_t cap)
{
	struct strmap n = { .cap = cap };

	n.keys = calloc(n.cap, sizeof(*n.keys));
	n.vals = calloc(n.cap, sizeof(*n.vals));
	if (!n.keys || !n.vals) {
		strmap_release(&n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++)
		if (m->keys[i])
			(void)strmap_put(&n, m->keys[i], m->vals[i]);
	strmap_release(m);
	*m = n;
	return 0;
}

int strmap_reserve(struct strmap *m, size_t n)
{
	size_t cap = map_cap_for(m->cap, n);

	/*
	 * An empty map for a few keys: a table for them alone. The planner has
	 * a set of paths per filesystem it makes; in a chain of nested tmpfs
	 * each gets one, and 10,000 first tables of 64 took 10 MiB.
	 */
	if (m->cap == 0 && n > 0 && cap == MAP_FIRST_CAP) {
		for (cap = 4; (n + 1) * 4 > cap * 3; cap *= 2)
			;
		return strmap_resize(m, cap);
	}
	if (cap == 0)
		return -ENOMEM;
	/* An empty map that its first table holds: that table comes with a first key, if one comes. */
	if (cap == m->cap || (m->cap == 0 && cap == MAP_FIRST_CAP))
		return 0;
	return strmap_resize(m, cap);
}

int strmap_put(struct strmap *m, const char *key, size_t val)
{
	if ((m->n + 1) * 4 > m->cap * 3) {
		int r = strmap_resize(m, m->cap ? m->cap * 2 : MAP_FIRST_CAP);
		if (r < 0)
			return r;
	}
	for (size_t i = hash_bytes(key, strlen(key), 0) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i]) {
			m->keys[i] = key;
			m->vals[i] = val;
			m->n++;
			return 0;
		}
		if (streq(m->keys[i], key)) {
			m->vals[i] = val;
			return 0;
		}
	}
}

bool strmap_get(const struct strmap *m, const char *key, size_t *ret_val)
{
	if (m->cap == 0)
		return false;
	for (size_t i = hash_bytes(key, strlen(key), 0) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i])
			return false;
		if (streq(m->keys[i], key)) {
			if (ret_val)
				*ret_val = m->vals[i];
			return true;
		}
	}
}

void strmap_release(struct strmap *m)
{
	free(m->keys);
	free(m->vals);
	*m = (struct strmap){ 0 };
}

/* -------------------------------------------------------------------------- */
/* Paths */

const char *path_relative(const char *path, const char *prefix)
{
	size_t n;

	if (streq(prefix, "/"))
		return path[0] == '/' ? path + 1 : NULL;
	n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0)
		return NULL;
	if (path[n] == 0)
		return path + n;
	if (path[n] != '/')
		return NULL;
	return path + n + 1;
}

bool path_startswith(const char *path, const char *prefix)
{
	return path_relative(path, prefix) != NULL;
}

char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb;
	char *p;

	while (la > 0 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++;
	if (*b == 0)
		return la == 0 ? strdup("/") : strndup(a, la);
	/* Not asprintf(): the planner joins a path a mount, and printf costs more than the copy. */
	lb = strlen(b);
	p = malloc(la + 1 + lb + 1);
	if (!p)
		return NULL;
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

/* Paths of thousands of bytes (a deep tree) are checked several times per mount: 8 bytes at a time (util.h). */
size_t path_depth(const char *path)
{
	size_t len = strlen(path), n = 0, i = 0;

	/* A component starts at a '/' followed by neither '/' nor the end. */
	for (; i + 8 <= len; i += 8) {
		uint64_t b = load8(path + i + 1);
		uint64_t m = bytes_eq(load8(path + i), '/') & ~bytes_eq(b, '/') & ~bytes_eq(b, 0);

		n += (size_t)(((m >> 7) * 0x0101010101010101ull) >> 56); /* the bytes set */
	}
	for (const char *p = path + i; *p; p++)
		if (*p == '/' && p[1] != 0 && p[1] != '/')
			n++;
	return n;
}

bool path_is_normalized(const char *path)
{
	const char *p = path;
	size_t len, i = 0;

	if (!path || path[0] != '/')
		return false;
	if (!path[1])
		return true;
	/*
	 * A component is empty, "." or "..": a '/' followed by '/', the end,
	 * "./", "." and the end, "../", or ".." and the end.
	 */
	len = strlen(path);
	for (; i + 10 <= len; i += 8) {
		uint64_t b = load8(path + i + 1), bdot = bytes_eq(b, '.'), c, d;
		uint64_t slash = bytes_eq(load8(path + i), '/') & (bytes_eq(b, '/') | bdot);

		if (!slash) /* no '/' followed by '/' or '.' (the end comes later) */
			continue;
		c = load8(path + i + 2);
		d = load8(path + i + 3);
		if (slash & ~bdot) /* "//" */
			return false;
		if (slash & (bytes_eq(c, '/') | bytes_eq(c, 0) |
			     (bytes_eq(c, '.') & (bytes_eq(d, '/') | bytes_eq(d, 0)))))
			return false; /* "/./", "/." at the end, "/../", "/.." at the end */
	}
	/* The rest, one component at a time, from the last '/' the words did not pass. */
	while (i > 0 && path[i] != '/')
		i--;
	p = path + i;
	/* Components are short: a loop of our own, not a strchrnul() call per component. */
	while (*p) {
		const char *c = p + 1, *e = c;
		size_t n;

		while (*e && *e != '/')
			e++;
		n = (size_t)(e - c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		p = e;
	}
	return true;
}

char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

int safe_atou64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -errno;
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

void memory_prefault(void *p, size_t n)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)p + n) & ~(page - 1);

	if (end > start)
		(void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

/* -------------------------------------------------------------------------- */
/* Arena */

/*
 * Blocks grow from ARENA_FIRST to ARENA_BLOCK by doubling: a block is
 * faulted in as a whole when it is made, and a small document (an image's
 * checksum, a plan of 1,000 mounts) filled 16 KiB of a 256 KiB one.
 */
#define ARENA_FIRST ((size_t)16 << 10)
#define ARENA_BLOCK ((size_t)256 << 10)

struct arena_block {
	struct arena_block *next;
	size_t used, size;
	max_align_t data[];
};

/* n bytes at a multiple of align (a power of 2, at most 16) */
static void *arena_take(struct arena *a, size_t n, size_t align)
{
	struct arena_block *b = a->head;
	size_t at = b ? (b->used + align - 1) & ~(align - 1) : 0;
	void *r;

	if (!b || at > b->size || b->size - at < n) {
		size_t size = ARENA_FIRST;

		if (b) /* twice the last block, at most ARENA_BLOCK */
			size = b->size < ARENA_BLOCK / 2 ? b->size * 2 : ARENA_BLOCK;
		if (size < n)
			size = n;
		b = malloc(sizeof(*b) + size);
		if (!b)
			return NULL;
		memory_prefault(b->data, size); /* it is filled next */
		b->size = size;
		b->used = at = 0;
		b->next = a->head;
		a->head = b;
	}
	r = (char *)b->data + at;
	b->used = at + n;
	return r;
}

void *arena_alloc(struct arena *a, size_t n)
{
	return arena_take(a, n, 16);
}

char *arena_strdup(struct arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *r = arena_take(a, n, 1);

	return r ? memcpy(r, s, n) : NULL;
}

struct arena_mark arena_mark(const struct arena *a)
{
	return (struct arena_mark){ a->head, a->head ? a->head->used : 0 };
}

void arena_rewind(struct arena *a, struct arena_mark m)
{
	while (a->head != m.block) {
		struct arena_block *b = a->head;

		a->head = b->next;
		free(b);
	}
	if (a->head)
		a->head->used = m.used;
}

void arena_release(struct arena *a)
{
	arena_rewind(a, (struct arena_mark){ NULL, 0 });
}

int read_full_fd(int fd, char **ret_buf, size_t *ret_len, size_t max)
{
	struct strbuf sb = { 0 };

	for (;;) {
		ssize_t n;
		int r = strbuf_reserve(&sb, 65536);
		if (r < 0) {
			strbuf_release(&sb);
			return r;
		}
		n = read(fd, sb.buf + sb.len, sb.cap - sb.len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			strbuf_release(&sb);
			return r;
		}
		if (n == 0)
			break;
		sb.len += (size_t)n;
		if (sb.len > max) {
			strbuf_release(&sb);
			return -EFBIG;
		}
	}
	*ret_len = sb.len;
	*ret_buf = strbuf_detach(&sb);
	return *ret_buf ? 0 : -ENOMEM;
}

/* -------------------------------------------------------------------------- */
/* Phase timing (MNTCR_TIMING=1) */

#include <time.h>

static int timing_state = -1; /* -1: not yet read from the environment */
static double timing_t0, timing_last, timing_sub;

double timing_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The origin: when the library was loaded, about when the program started. */
__attribute__((constructor)) static void timing_init(void)
{
	timing_t0 = timing_last = timing_now_ms();
}

bool timing_enabled(void)
{
	if (timing_state < 0) {
		const char *e = getenv("MNTCR_TIMING");
		timing_state = e && *e && !streq(e, "0");
	}
	return timing_state;
}

void timing_report(const char *phase, double ms)
{
	if (!timing_enabled())
		return;
	fprintf(stderr, "mntcr timing: %-12s %10.3f ms (at %10.3f ms)\n", phase, ms,
		timing_now_ms() - timing_t0);
	timing_sub += ms;
}

void timing_mark(const char *phase)
{
	double now;

	if (!timing_enabled())
		return;
	now = timing_now_ms();
	fprintf(stderr, "mntcr timing: %-12s %10.3f ms (at %10.3f ms)\n", phase,
		now - timing_last - timing_sub, now - timing_t0);
	timing_sub = 0;
	timing_last = timing_now_ms();
}

/* -------------------------------------------------------------------------- */
/* Parallel shares */

/* The CPUs online, read once: sysconf() opens and reads a sysfs file each time. */
static long cpus_online(void)
{
	static _Atomic long cached;
	long n = cached;

	if (n == 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		cached = n > 0 ? n : 1;
	}
	return n > 0 ? n : 1;
}

size_t parallel_shares(size_t n, size_t per_share)
{
	const char *e = getenv("MNTCR_THREADS");
	long cpus = cpus_online();
	size_t k = per_share ? n / per_share : 1;
	uint64_t v;

	/* MNTCR_THREADS=N: at most N threads (1: the caller's alone) */
	if (e && safe_atou64(e, &v) == 0 && v > 0 && (long)v < cpus)
		cpus = (long)v;
	if (cpus > 0 && k > (size_t)cpus)
		k = (size_t)cpus;
	if (k > PARALLEL_MAX)
		k = PARALLEL_MAX;
	return k ? k : 1;
}

/*
 * pthread_create() on a CPU other than the caller's, when it may run on
 * several: the scheduler often puts a new thread on its creator's CPU,
 * where it waits for the busy creator's time slice to end (4 ms here),
 * while the other CPU idles.
 */
int thread_start(pthread_t *ret, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	cpu_set_t cpus;
	int cpu = sched_getcpu(), r;

	if (pthread_attr_init(&attr) != 0)
		return -ENOMEM;
	if (cpu >= 0 && sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_ISSET(cpu, &cpus) &&
	    CPU_COUNT(&cpus) > 1) {
		CPU_CLR(cpu, &cpus);
		(void)pthread_attr_setaffinity_np(&attr, sizeof(cpus), &cpus);
	}
	r = pthread_create(ret, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -r;
}

static atomic_bool huge_pages;

MNTCR_EXPORT void mntcr_set_huge_pages(bool on)
{
	huge_pages = on;
}

/*
 * glibc's heaps for threads (arenas): HEAP_MAX_SIZE each (64 MiB on 64-bit),
 * aligned to it. With mntcr(1)'s M_TOP_PAD the whole of one is writable at
 * once. Its first 2 MiB, where its first bytes were just written, are
 * collapsed into a huge page; the rest stays in 4 KiB pages, since a huge
 * page is resident whole and the last one such a thread touches is mostly
 * empty (at 10,000 mounts, 2 MiB of 4).
 */
#define ARENA_SPAN ((uintptr_t)64 << 20)

bool malloc_has_arenas(void)
{
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	const char *preload = getenv("LD_PRELOAD");

	/* valgrind's malloc, preloaded, has none */
	return !(preload && strstr(preload, "vgpreload"));
#else
	return false;
#endif
}

static void arena_huge(void)
{
	void *p;

	if (!malloc_has_arenas())
		return;
	/* larger than tcache takes: from this thread's arena, made now */
	p = malloc(4096);
	/* above the main heap: an arena's */
	if (p && (uintptr_t)p > (uintptr_t)sbrk(0)) {
		void *base = (void *)((uintptr_t)p & ~(ARENA_SPAN - 1));

		(void)madvise(base, HUGE_PAGE_SIZE, MADV_COLLAPSE);
	}
	free(p);
}

struct thread_call {
	void *(*fn)(void *);
	void *arg;
};

static void *thread_heap_run(void *arg)
{
	struct thread_call call = *(struct thread_call *)arg;

	free(arg);
	arena_huge();
	return call.fn(call.arg);
}

int thread_start_heap(pthread_t *ret, void *(*fn)(void *), void *arg)
{
	struct thread_call *call;
	int r;

	if (!huge_pages)
		return thread_start(ret, fn, arg);
	call = malloc(sizeof(*call));
	if (!call)
		return -ENOMEM;
	*call = (struct thread_call){ fn, arg };
	r = thread_start(ret, thread_heap_run, call);
	if (r < 0)
		free(call);
	return r;
}

void parallel_run(void *(*fn)(void *), void *shares, size_t size, size_t k)
{
	pthread_t tid[PARALLEL_MAX];
	size_t started = 0;

	assert(k >= 1 && k <= PARALLEL_MAX);
	while (started + 1 < k && thread_start(&tid[started + 1], fn, (char *)shares + (started + 1) * size) == 0)
		started++;
	fn(shares);
	for (size_t j = 1; j < k; j++) {
		if (j <= started)
			pthread_join(tid[j], NULL);
		else
			fn((char *)shares + j * size);
	}
}

/* A range of parallel_ranges(), on a cache line of its own. */
struct range_share {
	int (*fn)(void *arg, size_t lo, size_t hi);
	void *arg;
	size_t lo, hi;
	int r;
} __attribute__((aligned(64)));

static void *range_share_run(void *arg)
{
	struct range_share *s = arg;

	s->r = s->fn(s->arg, s->lo, s->hi);
	return NULL;
}

int parallel_ranges(size_t n, size_t per_share, int (*fn)(void *arg, size_t lo, size_t hi), void *arg)
{
	struct range_share share[PARALLEL_MAX];
	size_t k = parallel_shares(n, per_share);
	int r = 0;

	for (size_t j = 0; j < k; j++)
		share[j] = (struct range_share){ .fn = fn, .arg = arg, .lo = n * j / k, .hi = n * (j + 1) / k };
	parallel_run(range_share_run, share, sizeof(share[0]), k);
	for (size_t j = 0; j < k && r == 0; j++)
		r = share[j].r;
	return r;
}

/* -------------------------------------------------------------------------- */
/* File descriptors over a unix socket */

union fd_cmsg {
	struct cmsghdr h;
	char buf[CMSG_SPACE(SOCK_FDS_MAX * sizeof(int))];
};

int sock_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t n)
{
	union fd_cmsg u = { 0 };
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (n > SOCK_FDS_MAX)
		return -EINVAL;
	if (n > 0) {
		struct cmsghdr *c;

		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

ssize_t sock_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max, size_t *ret_n)
{
	union fd_cmsg u;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	ssize_t r;

	*ret_n = 0;
	do
		r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*ret_n < max)
				fds[(*ret_n)++] = fd;
			else
				close(fd);
		}
	}
	return r;
}
