/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * listmount(2) + statmount(2) source (Linux >= 6.8): one consistent id list,
 * 64-bit unique ids, and no text parsing. The mount namespace is named by its
 * id (NS_GET_MNTNS_ID on /proc/PID/ns/mnt), so the caller never has to enter it.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>

#include "internal.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tree.h"

#ifndef SB_RDONLY
#define SB_RDONLY 1
#define SB_SYNCHRONOUS 16
#define SB_MANDLOCK 64
#define SB_DIRSYNC 128
#define SB_LAZYTIME (1 << 25)
#endif

/* What fill_basic() takes; fill_mount() takes the strings too. */
#define STATMOUNT_BASIC                                                                            \
	(MNTCR_STATMOUNT_SB_BASIC | MNTCR_STATMOUNT_MNT_BASIC | MNTCR_STATMOUNT_PROPAGATE_FROM)
#define STATMOUNT_WANT                                                                             \
	(STATMOUNT_BASIC | MNTCR_STATMOUNT_MNT_ROOT | MNTCR_STATMOUNT_MNT_POINT |                   \
	 MNTCR_STATMOUNT_FS_TYPE | MNTCR_STATMOUNT_MNT_OPTS | MNTCR_STATMOUNT_FS_SUBTYPE |          \
	 MNTCR_STATMOUNT_SB_SOURCE)

/* Mount ids of a namespace, read a chunk at a time (listmount). */
struct id_list {
	uint64_t *ids;
	size_t n, cap;
	bool done; /* a chunk came back short: the list is whole */
};

#define LIST_CHUNK 4096

/* The next chunk of namespace ns_id's mount ids onto l: the ones after its last. */
static int list_more(uint64_t ns_id, struct id_list *l)
{
	struct mntcr_mnt_id_req req = {
		.size = MNTCR_MNT_ID_REQ_SIZE_VER1,
		.mnt_id = LSMT_ROOT,
		.param = l->n > 0 ? l->ids[l->n - 1] : 0,
		.mnt_ns_id = ns_id,
	};
	long got;
	int r = GROW(l->ids, l->cap, l->n + LIST_CHUNK);

	if (r < 0)
		return r;
	got = sys_listmount(&req, l->ids + l->n, LIST_CHUNK, 0);
	if (got < 0)
		return -errno;
	l->n += (size_t)got;
	l->done = got < LIST_CHUNK;
	return 0;
}

/* The rest of the list: all mount ids of the namespace, in one consistent list. */
static int list_rest(uint64_t ns_id, struct id_list *l)
{
	int r = 0;

	while (r == 0 && !l->done)
		r = list_more(ns_id, l);
	return r;
}

/* How long the last read took in the kernel and copying its strings (MNTCR_TIMING). */
double statmount_read_ms;

static int stat_one(uint64_t ns_id, uint64_t id, uint64_t mask, struct mntcr_statmount **buf,
		    size_t *bufsize)
{
	struct mntcr_mnt_id_req req = {
		.size = MNTCR_MNT_ID_REQ_SIZE_VER1,
		.mnt_id = id,
		.param = mask,
		.mnt_ns_id = ns_id,
	};

	for (;;) {
		if (sys_statmount(&req, *buf, *bufsize, 0) == 0)
			return 0;
		if (errno != EOVERFLOW)
			return -errno;
		/* Too small a string area: retry with a larger buffer. */
		if (*bufsize >= (64U << 20))
			return -E2BIG;
		free(*buf);
		*bufsize *= 2;
		*buf = malloc(*bufsize);
		if (!*buf)
			return -ENOMEM;
	}
}

/* A string of sm, or dflt when the kernel did not give it. */
static const char *sm_str(const struct mntcr_statmount *sm, uint64_t bit, uint32_t off, const char *dflt)
{
	return (sm->mask & bit) ? sm->str + off : dflt;
}

/* The "rw" or "ro" and superblock flags mountinfo prints before the fs options; returns the length. */
static size_t sb_flags_text(uint32_t flags, char buf[static 64])
{
	static const struct {
		uint32_t flag;
		const char *name;
	} names[] = {
		{ SB_SYNCHRONOUS, ",sync" },
		{ SB_DIRSYNC, ",dirsync" },
		{ SB_MANDLOCK, ",mand" },
		{ SB_LAZYTIME, ",lazytime" },
	};
	size_t n = 2;

	memcpy(buf, (flags & SB_RDONLY) ? "ro" : "rw", 2);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (flags & names[i].flag) {
			size_t k = strlen(names[i].name);

			memcpy(buf + n, names[i].name, k);
			n += k;
		}
	buf[n] = 0;
	return n;
}

/* The fields of m that statmount gives without strings (STATMOUNT_BASIC). */
static void fill_basic(const struct mntcr_statmount *sm, struct mntcr_mount *m)
{
	*m = (struct mntcr_mount){
		.id = sm->mnt_id,
		.parent_id = sm->mnt_parent_id,
		.old_id = sm->mnt_id_old,
		.dev_major = sm->sb_dev_major,
		.dev_minor = sm->sb_dev_minor,
		.attr = sm->mnt_attr,
		.unbindable = !!(sm->mnt_propagation & MS_UNBINDABLE),
	};
	if (sm->mnt_propagation & MS_SHARED)
		m->shared = sm->mnt_peer_group;
	if (sm->mnt_propagation & MS_SLAVE) {
		m->master = sm->mnt_master;
		/* mountinfo omits propagate_from when it equals the master; so do we */
		if (sm->propagate_from != sm->mnt_master)
			m->propagate_from = sm->propagate_from;
	}
}

/*
 * Mount sm as the tree keeps it. Its strings go into one allocation:
 * fstype as "type" or "type.subtype", the superblock options as mountinfo
 * prints them ("rw" or "ro", superblock flags, the filesystem's options),
 * "none" for a missing source.
 */
static int fill_mount(const struct mntcr_statmount *sm, struct mntcr_mount *m)
{
	const char *root = sm_str(sm, MNTCR_STATMOUNT_MNT_ROOT, sm->mnt_root, NULL),
		   *point = sm_str(sm, MNTCR_STATMOUNT_MNT_POINT, sm->mnt_point, NULL),
		   *type = sm_str(sm, MNTCR_STATMOUNT_FS_TYPE, sm->fs_type, NULL),
		   *subtype = sm_str(sm, MNTCR_STATMOUNT_FS_SUBTYPE, sm->fs_subtype, ""),
		   *source = sm_str(sm, MNTCR_STATMOUNT_SB_SOURCE, sm->sb_source, "none"),
		   *opts = sm_str(sm, MNTCR_STATMOUNT_MNT_OPTS, sm->mnt_opts, "");
	size_t len[_MOUNT_STR_MAX], flags_len;
	char flags[64];
	int r;

	fill_basic(sm, m);
	if (!root || !point || !type)
		return -EBADMSG;
	flags_len = sb_flags_text(sm->sb_flags, flags);
	len[MOUNT_STR_ROOT] = strlen(root);
	len[MOUNT_STR_MOUNTPOINT] = strlen(point);
	len[MOUNT_STR_FSTYPE] = strlen(type) + (*subtype ? 1 + strlen(subtype) : 0);
	len[MOUNT_STR_SOURCE] = strlen(source);
	len[MOUNT_STR_SB_OPTS] = flags_len + (*opts ? 1 + strlen(opts) : 0);
	r = mount_strings_alloc(m, len);
	if (r < 0)
		return r;
	memcpy(m->root, root, len[MOUNT_STR_ROOT] + 1);
	memcpy(m->mountpoint, point, len[MOUNT_STR_MOUNTPOINT] + 1);
	memcpy(m->source, source, len[MOUNT_STR_SOURCE] + 1);
	if (*subtype)
		snprintf(m->fstype, len[MOUNT_STR_FSTYPE] + 1, "%s.%s", type, subtype);
	else
		memcpy(m->fstype, type, len[MOUNT_STR_FSTYPE] + 1);
	if (*opts)
		snprintf(m->sb_opts, len[MOUNT_STR_SB_OPTS] + 1, "%s,%s", flags, opts);
	else
		memcpy(m->sb_opts, flags, flags_len + 1);
	return 0;
}

int statmount_ns_id_of_pid(pid_t pid, uint64_t *ret_ns_id)
{
	_cleanup_close_ int fd = -EBADF;
	char path[64];
	uint64_t id = 0;

	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, NS_GET_MNTNS_ID, &id) < 0)
		return -errno;
	*ret_ns_id = id;
	return 0;
}

/*
 * The ids, read a share at a time on threads of their own
 * (parallel_ranges()): statmount takes the namespace lock shared, so two
 * readers overlap, and one copies strings while the other is in the kernel
 * (10,000 mounts on 2 cores: 17 ms on one thread, 12 on two).
 * Slot i of out is the mount of ids[i]; one gone since listmount is left
 * zeroed (no mount has id 0).
 */
struct stat_ids {
	uint64_t ns_id;
	const uint64_t *ids;
	struct mntcr_mount *out;
};

static int stat_ids_run(void *arg, size_t lo, size_t hi)
{
	const struct stat_ids *s = arg;
	size_t bufsize = 16384;
	struct mntcr_statmount *buf = malloc(bufsize);
	int r = 0;

	/* each share zeroes its own slots: the page faults of a large table on both CPUs */
	memset(s->out + lo, 0, (hi - lo) * sizeof(*s->out));
	if (!buf)
		return -ENOMEM;
	for (size_t i = lo; i < hi && r == 0; i++) {
		r = stat_one(s->ns_id, s->ids[i], STATMOUNT_WANT, &buf, &bufsize);
		if (r == -ENOENT) { /* unmounted since listmount: not part of the snapshot */
			r = 0;
			continue;
		}
		if (r == 0)
			r = fill_mount(buf, &s->out[i]);
	}
	free(buf);
	return r;
}

/* Below this many mounts a second thread costs more than it saves. */
#define STAT_SHARE_MIN 2048

/* statmount every id into t->mounts, in id order, the ids shared among threads. */
static int stat_all(uint64_t ns_id, const uint64_t *ids, size_t n, struct mntcr_tree *t)
{
	size_t kept = 0;
	int r;

	r = GROW(t->mounts, t->cap_mounts, n);
	if (r < 0)
		return r;
	r = parallel_ranges(n, STAT_SHARE_MIN, stat_ids_run,
			    &(struct stat_ids){ .ns_id = ns_id, .ids = ids, .out = t->mounts });
	/* Keep the mounts read, in order; on failure free every slot. */
	for (size_t i = 0; i < n; i++) {
		if (r < 0 || t->mounts[i].id == 0)
			mount_clear(&t->mounts[i]);
		else
			t->mounts[kept++] = t->mounts[i];
	}
	t->n_mounts = r < 0 ? 0 : kept;
	return r;
}

/* -------------------------------------------------------------------------- */
/*
 * The quick read, through a process of the namespace. statmount's strings
 * cost 0.4 us a mount more than its numbers, and two threads reading
 * them contend in the kernel; mountinfo prints a mount's strings in 0.4
 * (binds) to 1 us (a tmpfs each). So this thread reads the strings from
 * the process's mountinfo, line by line, while a second one lists the
 * mounts and reads their numbers with statmount (0.3 us a mount); when
 * that is done before the text, the second thread reads the mounts the
 * text has not reached yet from the end of the list, strings included, and
 * the text stops where the two meet (claim_line(), claim_tail(): mountinfo
 * lists the mounts in listmount's order). The lines are then joined to
 * their mounts by the 32-bit ids both give, checked field by field
 * (mountinfo_line_strings()), on both threads. Dumps, interleaved medians:
 * 10,000 binds 16.8 -> 15.7 ms, 50,000 binds 79.1 -> 68.2 ms, 50,000 tmpfs
 * 106.3 -> 101.1 ms. It needs the process to see every mount (its root is
 * its namespace's root): mountinfo leaves out what lies outside the root,
 * the two then disagree (-EXDEV), and statmount reads all.
 */

#define BOUND_OPEN UINT32_MAX /* tail: the list is not read yet */
#define QUICK_MIN 768	      /* mounts: fewer are read faster without a thread (500: 0.25 ms) */

struct quick {
	uint64_t ns_id;
	int text_fd;
	struct id_list *list;		   /* its first chunk read; statmount's thread reads the rest */
	struct mntcr_tree *t;		   /* the mounts: numbers, strings from the tail on */
	uint32_t *parent_old;		   /* per mount, its parent's old id */
	_Atomic uint64_t bounds;	   /* lines claimed (low 32 bits), tail (high: from it on, statmount's) */
	bool tail;			   /* statmount reads the mounts the text has not reached */
	char *buf;			   /* the mountinfo text, its lines NUL-terminated */
	size_t *line_at;		   /* the lines claimed, in order: where each starts in buf */
	size_t n_lines, cap_lines;
	int r_text, r_stat;
};

static inline uint32_t bound_lo(uint64_t v)
{
	return (uint32_t)v;
}

static inline uint32_t bound_hi(uint64_t v)
{
	return (uint32_t)(v >> 32);
}

/* Line i of the text is the text's to join, unless the tail got there first. */
static bool claim_line(struct quick *q, uint32_t i)
{
	uint64_t v = atomic_load(&q->bounds);

	do {
		if (bound_lo(v) != i || i >= bound_hi(v))
			return false;
	} while (!atomic_compare_exchange_weak(&q->bounds, &v, v + 1));
	return true;
}

/* The last mount neither side has: statmount's to read whole; false when they met. */
static bool claim_tail(struct quick *q, uint32_t *ret)
{
	uint64_t v = atomic_load(&q->bounds);

	do {
		if (bound_hi(v) <= bound_lo(v))
			return false;
		*ret = bound_hi(v) - 1;
	} while (!atomic_compare_exchange_weak(&q->bounds, &v, ((uint64_t)*ret << 32) | bound_lo(v)));
	return true;
}

/* The text, read and claimed line by line until its end or the tail. */
static int quick_text(struct quick *q)
{
	size_t len = 0, cap = 0, scanned = 0;
	int r;

	if (lseek(q->text_fd, 0, SEEK_SET) < 0)
		return -errno;
	for (;;) {
		ssize_t n;
		char *nl;

		r = GROW(q->buf, cap, len + 65536 + 1);
		if (r < 0)
			return r;
		n = read(q->text_fd, q->buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
		while ((nl = memchr(q->buf + scanned, '\n', len - scanned))) {
			if (!claim_line(q, (uint32_t)q->n_lines))
				goto claimed;
			r = GROW(q->line_at, q->cap_lines, q->n_lines + 1);
			if (r < 0)
				return r;
			q->line_at[q->n_lines++] = scanned;
			*nl = 0;
			scanned = (size_t)(nl - q->buf) + 1;
		}
	}
claimed:
	return 0;
}

/* The mounts' numbers, then the ones the text has not reached, whole. */
static int quick_statmount(struct quick *q)
{
	size_t bufsize = 4096, n;
	struct mntcr_statmount *buf = malloc(bufsize);
	const uint64_t *ids;
	uint64_t v;
	uint32_t i;
	int r = buf ? list_rest(q->ns_id, q->list) : -ENOMEM;

	n = q->list->n;
	ids = q->list->ids;
	if (r == 0 && n >= BOUND_OPEN)
		r = -E2BIG;
	if (r == 0)
		r = GROW(q->t->mounts, q->t->cap_mounts, n);
	if (r == 0 && !(q->parent_old = malloc((n + 1) * sizeof(*q->parent_old))))
		r = -ENOMEM;
	if (r < 0) {
		/* nothing for the text to wait for: it stops at once */
		atomic_store(&q->bounds, 0);
		free(buf);
		return r;
	}
	/* the tail starts at the end of the list */
	v = atomic_load(&q->bounds);
	while (!atomic_compare_exchange_weak(&q->bounds, &v, ((uint64_t)n << 32) | bound_lo(v)))
		;
	for (size_t k = 0; k < n && r == 0; k++) {
		r = stat_one(q->ns_id, ids[k], STATMOUNT_BASIC, &buf, &bufsize);
		if (r == 0) {
			fill_basic(buf, &q->t->mounts[k]);
			q->parent_old[k] = buf->mnt_parent_id_old;
			q->t->n_mounts = k + 1;
		}
	}
	while (r == 0 && q->tail && claim_tail(q, &i)) {
		struct mntcr_mount *m = &q->t->mounts[i];

		r = stat_one(q->ns_id, ids[i], STATMOUNT_WANT, &buf, &bufsize);
		if (r == 0)
			r = fill_mount(buf, m);
	}
	free(buf);
	/* a mount gone since listmount: the namespace changed, and the caller sees it */
	return r == -ENOENT ? -EXDEV : r;
}

static void *quick_stat_run(void *arg)
{
	struct quick *q = arg;

	q->r_stat = quick_statmount(q);
	return NULL;
}

/* Strings for the mounts [lo, hi) of the quick read from their lines (parallel_ranges()). */
static int join_lines(void *arg, size_t lo, size_t hi)
{
	struct quick *q = arg;
	int r = 0;

	for (size_t i = lo; i < hi && r == 0; i++)
		r = mountinfo_line_strings(q->buf + q->line_at[i], &q->t->mounts[i], q->parent_old[i]);
	return r;
}

/*
 * The mounts of namespace ns_id into t, their strings from text_fd (the
 * mountinfo of one of its processes); list: its mount ids, from the first
 * chunk on. -EXDEV: the two do not describe the same mounts; t is then
 * left empty.
 */
static int quick_read(uint64_t ns_id, int text_fd, struct id_list *list, struct mntcr_tree *t)
{
	struct quick q = { .ns_id = ns_id, .text_fd = text_fd, .list = list, .t = t,
			   .bounds = (uint64_t)BOUND_OPEN << 32 };
	pthread_t stat_thread;
	bool threaded;
	size_t lo, hi;
	uint64_t v;
	int r;

	q.tail = parallel_shares(2, 1) > 1;
	threaded = q.tail && thread_start(&stat_thread, quick_stat_run, &q) == 0;
	if (!threaded) { /* one CPU: the numbers first, then all lines */
		q.tail = false;
		quick_stat_run(&q);
	}
	q.r_text = quick_text(&q);
	if (threaded)
		pthread_join(stat_thread, NULL);
	v = atomic_load(&q.bounds);
	lo = bound_lo(v);
	hi = bound_hi(v);
	r = q.r_text < 0 ? q.r_text : q.r_stat;
	/*
	 * The text's lines and statmount's tail met: the text did not end
	 * before (fewer lines than mounts) or run past the end of the list
	 * (more lines).
	 */
	if (r == 0 && (lo != hi || lo != q.n_lines))
		r = -EXDEV;
	if (r == 0) {
		r = parallel_ranges(lo, STAT_SHARE_MIN, join_lines, &q);
		if (r == -ESTALE || r == -EBADMSG)
			r = -EXDEV;
	}
	if (r < 0) {
		for (size_t i = 0; i < t->n_mounts; i++)
			mount_clear(&t->mounts[i]);
		t->n_mounts = 0;
	} else
		log_debug("Namespace %" PRIu64 ": %zu mounts, the strings of %zu from mountinfo, "
			  "of the last %zu from statmount",
			  ns_id, t->n_mounts, lo, t->n_mounts - lo);
	free(q.buf);
	free(q.line_at);
	free(q.parent_old);
	return r;
}

/*
 * Whether the namespace changed since events_fd was opened or last asked:
 * the kernel marks an open mountinfo file when a mount is added, removed,
 * moved or remounted in its namespace (poll: POLLPRI), which is what
 * findmnt --poll waits for.
 */
static bool mounts_changed(int events_fd)
{
	struct pollfd p = { .fd = events_fd, .events = POLLPRI };

	return poll(&p, 1, 0) != 0; /* an error counts as a change: read again */
}

/*
 * MNTCR_STATMOUNT_STRINGS: 1, every string through statmount; 0, the
 * quick read whatever the size of the namespace; unset, the quick read
 * from QUICK_MIN mounts on. The tests compare the reads.
 */
static int statmount_strings(void)
{
	const char *e = getenv("MNTCR_STATMOUNT_STRINGS");

	if (!e || !*e)
		return -1;
	return !streq(e, "0");
}

/*
 * Read the namespace with id ns_id. -ENOSYS (or -EINVAL from an older
 * kernel's statmount) tells the caller to fall back to mountinfo.
 * text_fd: as statmount_read(); *quick: try the quick read, cleared when
 * it cannot be had.
 */
static int statmount_read_once(uint64_t ns_id, int events_fd, int text_fd, bool *quick,
			       struct mntcr_tree **ret_tree, bool *ret_stable)
{
	_cleanup_free_ uint64_t *ids = NULL;
	struct mntcr_tree *t = NULL;
	struct id_list list = { 0 };
	size_t n = 0;
	double t0 = timing_enabled() ? timing_now_ms() : 0;
	int r;

	r = tree_new(&t);
	if (r < 0)
		return r;
	t->source = MNTCR_SOURCE_STATMOUNT;
	t->unique_ids = true;
	t->ns_id = ns_id;

	r = list_more(ns_id, &list);
	if (r < 0)
		goto fail;
	/* a namespace of a few mounts (the caller's own, often) is read quicker without a thread */
	if (*quick && (!list.done || list.n >= QUICK_MIN || statmount_strings() == 0)) {
		r = quick_read(ns_id, text_fd, &list, t);
		if (r == 0) {
			if (timing_enabled())
				statmount_read_ms = timing_now_ms() - t0;
			free(list.ids);
			*ret_stable = !mounts_changed(events_fd);
			*ret_tree = t;
			return 0;
		}
		if (r != -EXDEV)
			goto fail;
		log_debug("Namespace %" PRIu64 ": its process's mountinfo and statmount differ "
			  "(a root of its own, or a change), reading every string with statmount",
			  ns_id);
		*quick = false;
	}
	r = list_rest(ns_id, &list);
	if (r < 0)
		goto fail;
	ids = TAKE_PTR(list.ids);
	n = list.n;
	r = stat_all(ns_id, ids, n, t);
	if (r < 0)
		goto fail;
	if (timing_enabled())
		statmount_read_ms = timing_now_ms() - t0;
	/*
	 * One consistent snapshot: the namespace must not have changed while
	 * we read it; the caller retries when it did. The kernel says so
	 * through events_fd; without one, list again (0.035 us a mount: 2 ms
	 * for 50,000) and compare, which sees mounts come and go but not
	 * move.
	 */
	if (events_fd >= 0)
		*ret_stable = t->n_mounts == n && !mounts_changed(events_fd);
	else {
		struct id_list again = { 0 };

		r = list_rest(ns_id, &again);
		*ret_stable = r == 0 && again.n == n && t->n_mounts == n &&
			      memcmp(again.ids, ids, n * sizeof(*ids)) == 0;
		free(again.ids);
		if (r < 0)
			goto fail;
	}
	*ret_tree = t;
	return 0;
fail:
	free(list.ids);
	mntcr_tree_free(t);
	return r;
}

int statmount_read(uint64_t ns_id, int events_fd, int text_fd, struct mntcr_tree **ret_tree)
{
	bool quick = events_fd >= 0 && text_fd >= 0 && statmount_strings() != 1;

	for (unsigned attempt = 0;; attempt++) {
		struct mntcr_tree *t = NULL;
		bool stable = false;
		int r = statmount_read_once(ns_id, events_fd, text_fd, &quick, &t, &stable);

		if (r < 0)
			return r;
		if (stable) {
			*ret_tree = t;
			return 0;
		}
		mntcr_tree_free(t);
		if (attempt >= 9)
			return log_debug_errno(-EAGAIN, "Mount namespace %" PRIu64 " kept changing while read",
					       ns_id);
	}
}
