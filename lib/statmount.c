/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * listmount(2) + statmount(2) source (Linux >= 6.8): one consistent id list,
 * 64-bit unique ids, and no text parsing. The mount namespace is named by its
 * id (NS_GET_MNTNS_ID on /proc/PID/ns/mnt), so the caller never has to enter it.
 */
#include <fcntl.h>
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

#define STATMOUNT_WANT                                                                             \
	(MNTCR_STATMOUNT_SB_BASIC | MNTCR_STATMOUNT_MNT_BASIC | MNTCR_STATMOUNT_PROPAGATE_FROM |    \
	 MNTCR_STATMOUNT_MNT_ROOT | MNTCR_STATMOUNT_MNT_POINT | MNTCR_STATMOUNT_FS_TYPE |           \
	 MNTCR_STATMOUNT_MNT_OPTS | MNTCR_STATMOUNT_FS_SUBTYPE | MNTCR_STATMOUNT_SB_SOURCE)

/* All mount ids of a namespace, in one consistent list. */
static int list_ids(uint64_t ns_id, uint64_t **ret_ids, size_t *ret_n)
{
	struct mntcr_mnt_id_req req = {
		.size = MNTCR_MNT_ID_REQ_SIZE_VER1,
		.mnt_id = LSMT_ROOT,
		.mnt_ns_id = ns_id,
	};
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0;

	for (;;) {
		long got;
		int r = GROW(ids, cap, n + 4096);

		if (r < 0) {
			free(ids);
			return r;
		}
		req.param = n > 0 ? ids[n - 1] : 0;
		got = sys_listmount(&req, ids + n, 4096, 0);
		if (got < 0) {
			r = -errno;
			free(ids);
			return r;
		}
		n += (size_t)got;
		if (got < 4096)
			break;
	}
	*ret_ids = ids;
	*ret_n = n;
	return 0;
}

/* How long the last read took in the kernel and copying its strings (MNTCR_TIMING). */
double statmount_read_ms;

static int stat_one(uint64_t ns_id, uint64_t id, struct mntcr_statmount **buf, size_t *bufsize)
{
	struct mntcr_mnt_id_req req = {
		.size = MNTCR_MNT_ID_REQ_SIZE_VER1,
		.mnt_id = id,
		.param = STATMOUNT_WANT,
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

static int dup_str(const struct mntcr_statmount *sm, uint64_t bit, uint32_t off, const char *dflt,
		   char **ret)
{
	const char *s = (sm->mask & bit) ? sm->str + off : dflt;

	*ret = s ? strdup(s) : NULL;
	return (s && !*ret) ? -ENOMEM : 0;
}

/* Superblock options as mountinfo prints them: "rw" or "ro", sb flags, fs options. */
static int sb_options(const struct mntcr_statmount *sm, char **ret)
{
	struct strbuf b = { 0 };
	int r;

	r = strbuf_puts(&b, (sm->sb_flags & SB_RDONLY) ? "ro" : "rw");
	if (r == 0 && (sm->sb_flags & SB_SYNCHRONOUS))
		r = strbuf_puts(&b, ",sync");
	if (r == 0 && (sm->sb_flags & SB_DIRSYNC))
		r = strbuf_puts(&b, ",dirsync");
	if (r == 0 && (sm->sb_flags & SB_MANDLOCK))
		r = strbuf_puts(&b, ",mand");
	if (r == 0 && (sm->sb_flags & SB_LAZYTIME))
		r = strbuf_puts(&b, ",lazytime");
	if (r == 0 && (sm->mask & MNTCR_STATMOUNT_MNT_OPTS) && sm->str[sm->mnt_opts] &&
	    (r = strbuf_puts(&b, ",")) == 0)
		r = strbuf_puts(&b, sm->str + sm->mnt_opts);
	if (r < 0) {
		strbuf_release(&b);
		return r;
	}
	*ret = strbuf_detach(&b);
	return *ret ? 0 : -ENOMEM;
}

static int fill_mount(const struct mntcr_statmount *sm, struct mntcr_mount *m)
{
	int r;

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
	if ((r = dup_str(sm, MNTCR_STATMOUNT_MNT_ROOT, sm->mnt_root, NULL, &m->root)) < 0 ||
	    (r = dup_str(sm, MNTCR_STATMOUNT_MNT_POINT, sm->mnt_point, NULL, &m->mountpoint)) < 0 ||
	    (r = dup_str(sm, MNTCR_STATMOUNT_SB_SOURCE, sm->sb_source, "none", &m->source)) < 0 ||
	    (r = sb_options(sm, &m->sb_opts)) < 0)
		goto fail;
	if (!(sm->mask & MNTCR_STATMOUNT_FS_TYPE) || !m->root || !m->mountpoint) {
		r = -EBADMSG;
		goto fail;
	}
	if ((sm->mask & MNTCR_STATMOUNT_FS_SUBTYPE) && sm->str[sm->fs_subtype])
		r = asprintf(&m->fstype, "%s.%s", sm->str + sm->fs_type, sm->str + sm->fs_subtype) < 0
			    ? -ENOMEM
			    : 0;
	else
		r = dup_str(sm, MNTCR_STATMOUNT_FS_TYPE, sm->fs_type, NULL, &m->fstype);
	if (r < 0)
		goto fail;
	return 0;
fail:
	mount_clear(m);
	return r;
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
 * A share of the ids, read on a thread of its own: statmount takes the
 * namespace lock shared, so two readers overlap, and one copies strings
 * while the other is in the kernel (10,000 mounts on 2 cores: 17 ms on one
 * thread, 12 on two).
 * Slot i of out is the mount of ids[i]; one gone since listmount is left
 * zeroed (no mount has id 0).
 */
struct stat_share {
	uint64_t ns_id;
	const uint64_t *ids;
	struct mntcr_mount *out;
	size_t n;
	int r;
};

static void *stat_share_run(void *arg)
{
	struct stat_share *s = arg;
	size_t bufsize = 16384;
	struct mntcr_statmount *buf = malloc(bufsize);

	if (!buf) {
		s->r = -ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < s->n && s->r == 0; i++) {
		int r = stat_one(s->ns_id, s->ids[i], &buf, &bufsize);

		if (r == -ENOENT) /* unmounted since listmount: not part of the snapshot */
			continue;
		s->r = r < 0 ? r : fill_mount(buf, &s->out[i]);
	}
	free(buf);
	return NULL;
}

/* Below this many mounts a second thread costs more than it saves. */
#define STAT_SHARE_MIN 2048

/* statmount every id into t->mounts, in id order, the ids shared among threads. */
static int stat_all(uint64_t ns_id, const uint64_t *ids, size_t n, struct mntcr_tree *t)
{
	struct stat_share share[PARALLEL_MAX];
	size_t k = parallel_shares(n, STAT_SHARE_MIN), kept = 0;
	int r;

	r = GROW(t->mounts, t->cap_mounts, n);
	if (r < 0)
		return r;
	memset(t->mounts, 0, n * sizeof(*t->mounts));
	for (size_t j = 0; j < k; j++)
		share[j] = (struct stat_share){
			.ns_id = ns_id,
			.ids = ids + n * j / k,
			.out = t->mounts + n * j / k,
			.n = n * (j + 1) / k - n * j / k,
		};
	parallel_run(stat_share_run, share, sizeof(share[0]), k);
	r = 0;
	for (size_t j = 0; j < k && r == 0; j++)
		r = share[j].r;
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

/*
 * Read the namespace with id ns_id. -ENOSYS (or -EINVAL from an older
 * kernel's statmount) tells the caller to fall back to mountinfo.
 */
static int statmount_read_once(uint64_t ns_id, struct mntcr_tree **ret_tree, bool *ret_stable)
{
	_cleanup_free_ uint64_t *ids = NULL;
	struct mntcr_tree *t = NULL;
	size_t n = 0;
	double t0 = timing_enabled() ? timing_now_ms() : 0;
	int r;

	r = list_ids(ns_id, &ids, &n);
	if (r < 0)
		return r;
	r = tree_new(&t);
	if (r < 0)
		return r;
	t->source = MNTCR_SOURCE_STATMOUNT;
	t->unique_ids = true;
	t->ns_id = ns_id;

	r = stat_all(ns_id, ids, n, t);
	if (r < 0)
		goto fail;
	if (timing_enabled())
		statmount_read_ms = timing_now_ms() - t0;
	/*
	 * One consistent snapshot: the namespace must not have changed while
	 * we read it. listmount is cheap (0.05 us per mount), so list again and
	 * compare; the caller retries when it changed.
	 */
	{
		_cleanup_free_ uint64_t *again = NULL;
		size_t n2 = 0;

		r = list_ids(ns_id, &again, &n2);
		if (r < 0)
			goto fail;
		*ret_stable = n2 == n && t->n_mounts == n && memcmp(again, ids, n * sizeof(*ids)) == 0;
	}
	*ret_tree = t;
	return 0;
fail:
	mntcr_tree_free(t);
	return r;
}

int statmount_read(uint64_t ns_id, struct mntcr_tree **ret_tree)
{
	for (unsigned attempt = 0;; attempt++) {
		struct mntcr_tree *t = NULL;
		bool stable = false;
		int r = statmount_read_once(ns_id, &t, &stable);

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
