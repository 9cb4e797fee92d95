/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading a live namespace: pick the source (statmount or mountinfo), index
 * the tree, then classify superblocks against the caller's own namespace
 * and find what each leaf mount's root is (directory or not). Nothing here
 * changes the target namespace.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "internal.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tree.h"

static int read_mountinfo_pid(pid_t pid, struct mntcr_tree **ret)
{
	_cleanup_fclose_ FILE *f = NULL;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	return mntcr_tree_parse_mountinfo(f, ret);
}

static int read_raw(pid_t pid, unsigned flags, struct mntcr_tree **ret)
{
	struct mntcr_features feat;
	uint64_t ns_id = 0;
	int r;

	(void)mntcr_probe(&feat);
	r = statmount_ns_id_of_pid(pid, &ns_id);
	if (r < 0 && r != -ENOTTY && r != -EINVAL)
		return r;

	if (!(flags & MNTCR_READ_MOUNTINFO) && feat.statmount && feat.listmount && ns_id) {
		struct mntcr_tree *t = NULL;

		r = statmount_read(ns_id, &t);
		if (r == 0) {
			r = tree_index(t);
			if (r < 0) {
				mntcr_tree_free(t);
				return r;
			}
			*ret = t;
			return 0;
		}
		log_debug_errno(r, "statmount of namespace %" PRIu64 " failed (%s), reading mountinfo",
				ns_id, strerror(-r));
	}
	r = read_mountinfo_pid(pid, ret);
	if (r < 0)
		return r;
	(*ret)->ns_id = ns_id;
	return 0;
}

/*
 * Among the caller's mounts of one superblock, the best source for binds:
 * reachable by path, with the shortest root (it contains the most).
 */
int tree_classify(struct mntcr_tree *t, const struct mntcr_tree *self)
{
	struct u64map best = { 0 }; /* dev -> index in self */
	int r = 0;

	for (size_t i = 0; i < self->n_mounts; i++) {
		const struct mntcr_mount *m = &self->mounts[i];
		uint64_t key = ((uint64_t)m->dev_major << 32) | m->dev_minor;
		size_t cur;

		if (m->hidden)
			continue;
		if (u64map_get(&best, key, &cur) && strlen(self->mounts[cur].root) <= strlen(m->root))
			continue;
		r = u64map_put(&best, key, i);
		if (r < 0)
			goto out;
	}
	for (size_t s = 0; s < t->n_sbs; s++) {
		struct mntcr_sb *sb = &t->sbs[s];
		uint64_t key = ((uint64_t)sb->dev_major << 32) | sb->dev_minor;
		size_t i;

		if (!u64map_get(&best, key, &i)) {
			sb->owned = true;
			continue;
		}
		sb->owned = false;
		sb->ext_path = strdup(self->mounts[i].mountpoint);
		sb->ext_root = strdup(self->mounts[i].root);
		if (!sb->ext_path || !sb->ext_root) {
			r = -ENOMEM;
			goto out;
		}
	}
out:
	u64map_release(&best);
	return r;
}

/*
 * Open path (absolute in the target) beneath the target's root and statx it.
 * mask asks for the kind of mount id the tree has: given both
 * STATX_MNT_ID and STATX_MNT_ID_UNIQUE, Linux >= 6.8 answers with the unique
 * id only, which a tree read from mountinfo cannot match.
 */
static int stat_in_root(int rootfd, const char *path, unsigned mask, struct statx *stx)
{
	struct mntcr_open_how how = {
		.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	_cleanup_close_ int fd = -EBADF;

	fd = sys_openat2(rootfd, path[1] ? path + 1 : ".", &how);
	if (fd < 0)
		return -errno;
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_TYPE | mask, stx) < 0)
		return -errno;
	return 0;
}

static bool statx_is_mount(const struct mntcr_tree *t, const struct statx *stx, const struct mntcr_mount *m)
{
	if (!(stx->stx_mask & (STATX_MNT_ID | STATX_MNT_ID_UNIQUE)))
		return false;
	if (t->unique_ids)
		return (stx->stx_mask & STATX_MNT_ID_UNIQUE) && stx->stx_mnt_id == m->id;
	return !(stx->stx_mask & STATX_MNT_ID_UNIQUE) && stx->stx_mnt_id == m->old_id;
}

static bool root_is_dir(const char *fstype)
{
	static const char *const types[] = {
		"tmpfs", "ramfs", "proc", "sysfs", "devpts", "mqueue", "cgroup2", "cgroup",
	};

	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (streq(fstype, types[i]))
			return true;
	return false;
}

/*
 * What each mount's root is. A mount with children below its root is a directory. Any other
 * is looked up by path in the target (beneath its root, symlinks resolved
 * in it); the answer counts only if the path lands on that very mount. The
 * lower layers of a stack take the type of the top. Only owned superblocks
 * need this: an external mount's root is looked at when it is restored.
 */
static int find_types(struct mntcr_tree *t, pid_t pid)
{
	_cleanup_close_ int rootfd = -EBADF;
	char path[64];

	/* A child below a mount's root makes the root a directory; one on the root says nothing. */
	for (size_t i = 0; i < t->n_mounts; i++) {
		struct mntcr_mount *m = &t->mounts[i];

		if (m->parent != IDX_NONE && *mount_relpath(t, m))
			t->mounts[m->parent].type = NODE_DIR;
	}

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return log_debug_errno(-errno, "Failed to open %s", path);

	for (size_t i = 0; i < t->n_mounts; i++) {
		struct mntcr_mount *m = &t->mounts[i], *top = m;
		struct statx stx;

		if (m->type != NODE_UNKNOWN || !t->sbs[m->sb].owned)
			continue;
		while (top->cover == COVER_ROOT)
			top = &t->mounts[top->covered_by];
		if (top->hidden)
			continue;
		/*
		 * The root of one of these filesystems is a directory: what the
		 * statx below would say, without an openat2 and a statx per mount
		 * (2 us each, as much as reading the mount itself).
		 */
		if (streq(top->root, "/") && root_is_dir(top->fstype)) {
			m->type = NODE_DIR;
			continue;
		}
		if (stat_in_root(rootfd, top->mountpoint,
				 t->unique_ids ? STATX_MNT_ID_UNIQUE : STATX_MNT_ID, &stx) < 0 ||
		    !statx_is_mount(t, &stx, top))
			continue;
		m->type = S_ISDIR(stx.stx_mode) ? NODE_DIR : NODE_FILE;
	}
	return 0;
}

MNTCR_EXPORT int mntcr_tree_read_pid(pid_t pid, unsigned flags, struct mntcr_tree **ret_tree)
{
	struct mntcr_tree *t = NULL, *self = NULL;
	struct utsname u;
	char path[64];
	int r;

	if (pid <= 0 || !ret_tree)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (access(path, F_OK) < 0)
		return -ESRCH;

	r = read_raw(pid, flags, &t);
	if (r < 0)
		return r;
	if (t->source == MNTCR_SOURCE_STATMOUNT)
		timing_report("read", statmount_kernel_ms);
	timing_mark(t->source == MNTCR_SOURCE_STATMOUNT ? "parse" : "read+parse");
	t->pid = pid;
	t->live = true; /* mntcr_image_write() may read its content */
	if (uname(&u) == 0) {
		t->kernel = strdup(u.release);
		t->hostname = strdup(u.nodename);
	}

	if (!(flags & MNTCR_READ_NO_CLASSIFY)) {
		r = read_raw(getpid(), flags, &self);
		if (r < 0)
			goto fail;
		r = tree_classify(t, self);
		if (r < 0)
			goto fail;
		timing_mark("self");
		r = find_types(t, pid);
		if (r < 0)
			goto fail;
		timing_mark("types");
	}
	mntcr_tree_free(self);
	*ret_tree = t;
	return 0;
fail:
	mntcr_tree_free(self);
	mntcr_tree_free(t);
	return r;
}

MNTCR_EXPORT int mntcr_tree_read_ns(const char *nsfile, unsigned flags, struct mntcr_tree **ret_tree)
{
	struct mntcr_tree *t = NULL, *self = NULL;
	_cleanup_close_ int fd = -EBADF;
	uint64_t ns_id = 0;
	int r;

	if (!nsfile || !ret_tree)
		return -EINVAL;
	fd = open(nsfile, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* ENOTTY: not a namespace file; EINVAL: not a mount namespace */
	if (ioctl(fd, NS_GET_MNTNS_ID, &ns_id) < 0)
		return errno == ENOTTY || errno == EINVAL ? -ENOTTY : -errno;
	r = statmount_read(ns_id, &t);
	if (r < 0)
		return r;
	r = tree_index(t);
	if (r < 0)
		goto fail;
	if (!(flags & MNTCR_READ_NO_CLASSIFY)) {
		r = read_raw(getpid(), flags, &self);
		if (r < 0)
			goto fail;
		r = tree_classify(t, self);
		if (r < 0)
			goto fail;
	}
	mntcr_tree_free(self);
	*ret_tree = t;
	return 0;
fail:
	mntcr_tree_free(self);
	mntcr_tree_free(t);
	return r;
}

/* The caller's own namespace, unclassified: the restorer's view of external superblocks. */
int tree_read_self(struct mntcr_tree **ret_tree)
{
	return read_raw(getpid(), 0, ret_tree);
}
