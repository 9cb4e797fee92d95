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
 * Mount sm as the tree keeps it, its mountpoint past its first skip bytes
 * (the path below its parent's: point_below()). Its strings go into one allocation:
 * fstype as "type" or "type.subtype", the superblock options as mountinfo
 * prints them ("rw" or "ro", superblock flags, the filesystem's options),
 * "none" for a missing source.
 */
static int fill_mount(const struct mntcr_statmount *sm, struct mntcr_mount *m, size_t skip)
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
	point += skip;
	len[MOUNT_STR_MOUNTPOINT] = strlen(point);
	len[MOUNT_STR_FSTYPE] = strlen(type) + (*subtype ? 1 + strlen(subtype) : 0);
	len[MOUNT_STR_SOURCE] = strlen(source);
	len[MOUNT_STR_SB_OPTS] = flags_len + (*opts ? 1 + strlen(opts) : 0);
	r = mount_strings_alloc(m, len);
	if (r < 0)
		return r;
	memcpy(m->root, root, len[MOUNT_STR_ROOT] + 1);
	memcpy(m->point, point, len[MOUNT_STR_MOUNTPOINT] + 1);
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
	struct point_sum *sums; /* per slot: its mountpoint's (each share writes its own) */
};

/*
 * Where mount i's mountpoint (sm's) lies below its parent's when the share
 * [lo, i) read the parent (ids ascend): its path below it, as the tree
 * keeps it; else 0, the absolute path.
 */
static size_t stat_skip(const struct stat_ids *s, size_t lo, size_t i, const struct mntcr_statmount *sm)
{
	const char *point = sm_str(sm, MNTCR_STATMOUNT_MNT_POINT, sm->mnt_point, NULL);
	size_t hi = i;

	if (!point)
		return 0;
	s->sums[i] = point_sum_of(point, strlen(point));
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->ids[mid] < sm->mnt_parent_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo >= i || s->ids[lo] != sm->mnt_parent_id || s->out[lo].id == 0)
		return 0;
	return point_below(point, s->sums[i].len, &s->sums[lo]);
}

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
			r = fill_mount(buf, &s->out[i], stat_skip(s, lo, i, buf));
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

	_cleanup_free_ struct point_sum *sums = malloc((n ? n : 1) * sizeof(*sums));

	if (!sums)
		return -ENOMEM;
	r = GROW_EXACT(t->mounts, t->cap_mounts, n);
	if (r < 0)
		return r;
	r = parallel_ranges(n, STAT_SHARE_MIN, stat_ids_run,
			    &(struct stat_ids){ .ns_id = ns_id, .ids = ids, .out = t->mounts, .sums = sums });
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
 * The text read, through a process of the namespace: its mountinfo, parsed
 * as it is read, with the mounts numbered by listmount's unique ids.
 * Both list a namespace's mounts in the order of those ids (the namespace
 * keeps its mounts in a tree by them, Linux >= 6.8), so line k is mount
 * ids[k] as long as the namespace did not change in between, which
 * events_fd tells. statmount costs a system call a mount: 0.3 us on one
 * machine, 3 us on another whose system calls are dearer (page-table
 * isolation); mountinfo prints a page of lines a call. Past one chunk of
 * ids, a second thread lists the rest while this one reads the text.
 *
 * statmount reads the parent of a mount whose parent the text does not
 * show (it lies outside the namespace), and TEXT_CHECKS mounts spread
 * over the list, which must be the text's: a kernel that ordered the two
 * otherwise fails there. A process whose root is not its namespace's sees
 * only part of it in its mountinfo: the counts differ. Either way the
 * answer is -EXDEV, and statmount reads every mount.
 */

#define TEXT_CHECKS 8	      /* mounts checked against statmount, spread over the list */
#define TEXT_ORPHANS_MAX 16   /* mounts whose parent is not in the text */
#define OLD_ID_MAX (1U << 24) /* the text's ids index a table */
/*
 * The mounts a text holds when the list is not whole yet: fs.mount-max's
 * default, the most a namespace holds unless raised. Room that the parse
 * does not fill costs address space only, and goes back after it.
 */
#define TEXT_EXPECT 100000

struct listing {
	uint64_t ns_id;
	struct id_list *list;
	int r;
};

static void *list_run(void *arg)
{
	struct listing *l = arg;

	l->r = list_rest(l->ns_id, l->list);
	return NULL;
}

/* statmount's numbers of m (numbered with its unique id) into *buf: its old id and device must be the text's. */
static int stat_check(uint64_t ns_id, const struct mntcr_mount *m, struct mntcr_statmount **buf,
		      size_t *bufsize)
{
	int r = stat_one(ns_id, m->id, STATMOUNT_BASIC, buf, bufsize);

	if (r == -ENOENT)
		return -EXDEV;
	if (r < 0)
		return r;
	if ((*buf)->mnt_id_old != m->old_id || (*buf)->sb_dev_major != m->dev_major ||
	    (*buf)->sb_dev_minor != m->dev_minor)
		return log_debug_errno(-EXDEV, "Mount %" PRIu64 " is not mountinfo's mount %" PRIu32, m->id,
				       m->old_id);
	return 0;
}

/*
 * The parsed lines of t (ids as mountinfo gives them) numbered with the
 * list's unique ids, each parent's too; then the checks.
 */
static int text_number(uint64_t ns_id, const struct id_list *list, struct mntcr_tree *t)
{
	_cleanup_free_ uint32_t *at = NULL; /* old id -> 1 + index */
	_cleanup_free_ struct mntcr_statmount *buf = NULL;
	size_t n = t->n_mounts, bufsize = 4096, orphans = 0;
	uint64_t max_old = 0;
	int r;

	assert(n == list->n && n > 0);
	for (size_t i = 0; i < n; i++)
		if (t->mounts[i].id > max_old)
			max_old = t->mounts[i].id;
	if (max_old >= OLD_ID_MAX)
		return log_debug_errno(-EXDEV, "Mount id %" PRIu64 " in mountinfo is too large", max_old);
	at = calloc(max_old + 1, sizeof(*at));
	buf = malloc(bufsize);
	if (!at || !buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (at[t->mounts[i].id])
			return log_debug_errno(-EXDEV, "Mount id %" PRIu64 " twice in mountinfo", t->mounts[i].id);
		at[t->mounts[i].id] = (uint32_t)(i + 1);
	}
	for (size_t i = 0; i < n; i++) {
		struct mntcr_mount *m = &t->mounts[i];
		uint64_t parent_old = m->parent_id;
		uint32_t k = parent_old <= max_old ? at[parent_old] : 0;

		m->id = list->ids[i];
		if (k) {
			m->parent_id = list->ids[k - 1];
			continue;
		}
		if (++orphans > TEXT_ORPHANS_MAX)
			return log_debug_errno(-EXDEV, "More than %d mounts' parents are not in mountinfo",
					       TEXT_ORPHANS_MAX);
		r = stat_check(ns_id, m, &buf, &bufsize);
		if (r == 0 && buf->mnt_parent_id_old != parent_old)
			r = log_debug_errno(-EXDEV, "Mount %" PRIu64 "'s parent is not mountinfo's", m->id);
		if (r < 0)
			return r;
		m->parent_id = buf->mnt_parent_id;
	}
	for (size_t c = 0; c < TEXT_CHECKS; c++) {
		const struct mntcr_mount *m = &t->mounts[(n - 1) * c / (TEXT_CHECKS - 1)];

		r = stat_check(ns_id, m, &buf, &bufsize);
		if (r == 0 && buf->mnt_parent_id != m->parent_id)
			r = log_debug_errno(-EXDEV, "Mount %" PRIu64 "'s parent is not mountinfo's", m->id);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * The mounts of namespace ns_id into t from text_fd (the mountinfo of one
 * of its processes), numbered by list (its first chunk read). -EXDEV: the
 * two do not describe the same mounts; t is then left empty.
 */
static int text_read(uint64_t ns_id, int text_fd, struct id_list *list, struct mntcr_tree *t)
{
	struct listing l = { .ns_id = ns_id, .list = list };
	pthread_t list_thread;
	bool threaded = !list->done && parallel_shares(2, 1) > 1 &&
			thread_start(&list_thread, list_run, &l) == 0;
	int r;

	if (!threaded)
		list_run(&l);
	r = lseek(text_fd, 0, SEEK_SET) < 0 ? -errno :
		mountinfo_text_load(text_fd, list->done ? list->n : TEXT_EXPECT, t);
	if (r == -EBADMSG)
		r = -EXDEV;
	if (threaded)
		pthread_join(list_thread, NULL);
	if (r == 0)
		r = l.r;
	if (r == 0 && t->n_mounts != list->n)
		r = log_debug_errno(-EXDEV, "Namespace %" PRIu64 ": %zu mounts, %zu mountinfo lines", ns_id,
				    list->n, t->n_mounts);
	if (r == 0 && list->n >= UINT32_MAX) /* text_number()'s table */
		r = -E2BIG;
	if (r == 0)
		r = text_number(ns_id, list, t);
	if (r < 0)
		tree_clear_mounts(t);
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
 * MNTCR_STATMOUNT_STRINGS=1: every mount through statmount, not through
 * the text (=0, as unset: the text). The tests compare the reads.
 */
static bool statmount_strings(void)
{
	const char *e = getenv("MNTCR_STATMOUNT_STRINGS");

	return e && *e && !streq(e, "0");
}

/*
 * Read the namespace with id ns_id. -ENOSYS (or -EINVAL from an older
 * kernel's statmount) tells the caller to fall back to mountinfo.
 * text_fd: as statmount_read(); *text: try the text read, cleared when
 * it cannot be had.
 */
static int statmount_read_once(uint64_t ns_id, int events_fd, int text_fd, bool *text,
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
	/*
	 * A second chunk here too: a namespace of up to 8,191 mounts is then
	 * listed whole without a thread, which costs more than the listing
	 * (some 20 ms a read under ASan, which made each read of a namespace
	 * moving every 20 ms overlap a move).
	 */
	if (r == 0 && !list.done)
		r = list_more(ns_id, &list);
	if (r < 0)
		goto fail;
	if (*text && list.n > 0) {
		r = text_read(ns_id, text_fd, &list, t);
		if (r == 0) {
			log_debug("Namespace %" PRIu64 ": %zu mounts, read from its process's mountinfo",
				  ns_id, t->n_mounts);
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
			  "(a root of its own, or a change), reading every mount with statmount",
			  ns_id);
		*text = false;
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

/*
 * Reads that a change overlapped are made again: a namespace that changes
 * every 20 ms while each read takes as long (4,000 mounts under ASan)
 * needed more than ten attempts in 2 dumps of 100.
 */
#define READ_ATTEMPTS 50

int statmount_read(uint64_t ns_id, int events_fd, int text_fd, struct mntcr_tree **ret_tree)
{
	bool text = events_fd >= 0 && text_fd >= 0 && !statmount_strings();

	for (unsigned attempt = 0;; attempt++) {
		struct mntcr_tree *t = NULL;
		bool stable = false;
		int r = statmount_read_once(ns_id, events_fd, text_fd, &text, &t, &stable);

		if (r < 0)
			return r;
		if (stable) {
			*ret_tree = t;
			return 0;
		}
		mntcr_tree_free(t);
		if (attempt + 1 >= READ_ATTEMPTS)
			return log_debug_errno(-EAGAIN, "Mount namespace %" PRIu64 " kept changing while read",
					       ns_id);
	}
}
