/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading a live namespace: pick the source (statmount or mountinfo), index
 * the tree, then classify superblocks against the caller's own namespace
 * and find what each leaf mount's root is (directory or not). Nothing here
 * changes the target namespace.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "internal.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tree.h"

static int open_mountinfo(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static int read_mountinfo_pid(pid_t pid, struct mntcr_tree **ret)
{
	_cleanup_close_ int fd = open_mountinfo(pid);

	if (fd < 0)
		return -errno;
	return mountinfo_read_fd(fd, ret);
}

/*
 * /proc/PID/mountinfo, to learn whether namespace ns_id changes while it
 * is read (statmount_read()); negative if it cannot be had, or if the
 * process is in another namespace by the time it is open.
 */
static int open_mount_events(pid_t pid, uint64_t ns_id)
{
	uint64_t now = 0;
	int fd = open_mountinfo(pid);

	if (fd >= 0 && (statmount_ns_id_of_pid(pid, &now) < 0 || now != ns_id)) {
		close(fd);
		fd = -EBADF;
	}
	return fd;
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
		_cleanup_close_ int events_fd = open_mount_events(pid, ns_id);
		/* the strings come from the text of another open (statmount_read) */
		_cleanup_close_ int text_fd = events_fd >= 0 ? open_mountinfo(pid) : -EBADF;
		struct mntcr_tree *t = NULL;

		r = statmount_read(ns_id, events_fd, text_fd, &t);
		if (r == 0) {
			r = tree_index(t);
			if (r < 0) {
				mntcr_tree_free(t);
				return r;
			}
			*ret = t;
			return 0;
		}
		if (r == -EAGAIN)
			return r; /* kept changing: mountinfo alone would not tell */
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
	_cleanup_(strbuf_release) struct strbuf buf = { 0 };
	const char *path;
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
		path = mount_path(self, i, &buf);
		sb->ext_path = path ? strdup(path) : NULL;
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
	/*
	 * No openat2 (Linux before 5.6, valgrind): a plain lookup below the
	 * root. An absolute symlink on the way may lead elsewhere, but the
	 * answer counts only if it lands on the very mount (statx_is_mount).
	 */
	if (fd < 0 && errno == ENOSYS)
		fd = openat(rootfd, path[1] ? path + 1 : ".", O_PATH | O_NOFOLLOW | O_CLOEXEC);
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

/* A mount whose type is looked up by path: at the top of its stack. */
struct lookup {
	size_t mount, top;
};

/* What find_types() looks up, a share of it at a time (parallel_ranges()). */
struct lookups {
	struct mntcr_tree *t;
	int rootfd;
	const struct lookup *todo;
};

/*
 * A plain statx of the path below the root first: one call where the
 * lookup beneath it (stat_in_root()) takes three, for the same answer
 * whenever the path leads to the very mount, which statx_is_mount()
 * checks. It does not when a symlink on the way (an absolute one leads
 * out of the target's root) or a change got in between: the lookup
 * beneath the root then has the last word. The 4,166 lookups of 50,000
 * mounts of `mix`: 8.7 -> 6.5 ms on two threads (a path walk, 3 us each).
 */
static bool stat_mount(const struct lookups *l, size_t top, struct strbuf *buf, struct statx *stx)
{
	unsigned mask = l->t->unique_ids ? STATX_MNT_ID_UNIQUE : STATX_MNT_ID;
	const struct mntcr_mount *m = &l->t->mounts[top];
	const char *path = mount_path(l->t, top, buf), *rel;

	if (!path)
		return false;
	rel = path[1] ? path + 1 : ".";
	if (statx(l->rootfd, rel, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | mask, stx) == 0 &&
	    statx_is_mount(l->t, stx, m))
		return true;
	return stat_in_root(l->rootfd, path, mask, stx) == 0 && statx_is_mount(l->t, stx, m);
}

static int lookups_run(void *arg, size_t lo, size_t hi)
{
	const struct lookups *l = arg;
	_cleanup_(strbuf_release) struct strbuf buf = { 0 };

	for (size_t i = lo; i < hi; i++) {
		struct mntcr_mount *m = &l->t->mounts[l->todo[i].mount];
		struct statx stx;

		if (stat_mount(l, l->todo[i].top, &buf, &stx))
			m->type = S_ISDIR(stx.stx_mode) ? NODE_DIR : NODE_FILE;
	}
	return 0;
}

/* Below this many lookups a second thread costs more than it saves. */
#define TYPES_SHARE_MIN 256

/*
 * What each mount's root is. A mount with children below its root is a directory. Any other
 * is looked up by path in the target (beneath its root, symlinks resolved
 * in it); the answer counts only if the path lands on that very mount. The
 * lower layers of a stack take the type of the top. Only owned superblocks
 * need this: an external mount's root is looked at when it is restored.
 * The lookups (3 us each) are shared among threads: 833 of the 10,000
 * mounts of `mix` take 1.7-1.9 ms on two, 2.5 on one (they contend in the
 * kernel's path walk).
 */
static int find_types(struct mntcr_tree *t, size_t ns, pid_t pid)
{
	_cleanup_close_ int rootfd = -EBADF;
	_cleanup_free_ struct lookup *todo = NULL;
	size_t n = 0;
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

		if (m->ns != ns || m->type != NODE_UNKNOWN || !t->sbs[m->sb].owned)
			continue;
		/*
		 * The root of one of these filesystems is a directory: what the
		 * statx would say, without an openat2 and a statx per mount
		 * (2 us each, as much as reading the mount itself), and also for a
		 * mount no path reaches.
		 */
		if (streq(m->root, "/") && root_is_dir(m->fstype)) {
			m->type = NODE_DIR;
			continue;
		}
		while (top->cover == COVER_ROOT)
			top = &t->mounts[top->covered_by];
		if (top->hidden)
			continue;
		/* the same for the top of its stack, whose root has the same type */
		if (streq(top->root, "/") && root_is_dir(top->fstype)) {
			m->type = NODE_DIR;
			continue;
		}
		if (!todo && !(todo = malloc(t->n_mounts * sizeof(*todo))))
			return -ENOMEM;
		todo[n++] = (struct lookup){ .mount = i, .top = (size_t)(top - t->mounts) };
	}
	return parallel_ranges(n, TYPES_SHARE_MIN, lookups_run,
			       &(struct lookups){ .t = t, .rootfd = rootfd, .todo = todo });
}

/*
 * The tail of every read: classify superblocks against the caller's own
 * namespace, then (live trees) find what each owned mount's root is,
 * looking through a process of each namespace.
 */
static int finish_read(struct mntcr_tree *t, unsigned flags)
{
	struct mntcr_tree *self = NULL;
	struct utsname u;
	int r;

	if (t->live && uname(&u) == 0) {
		t->kernel = strdup(u.release);
		t->hostname = strdup(u.nodename);
	}
	if (flags & MNTCR_READ_NO_CLASSIFY)
		return 0;
	r = read_raw(getpid(), flags, &self);
	if (r < 0)
		return r;
	r = tree_classify(t, self);
	mntcr_tree_free(self);
	if (r < 0)
		return r;
	timing_mark("self");
	for (size_t k = 0; t->live && k < t->n_ns; k++) {
		r = find_types(t, k, t->nss[k].pid);
		if (r < 0)
			return r;
	}
	if (t->live)
		timing_mark("types");
	return 0;
}

/* A merged tree: index it, finish the read, hand it over (*t is NULL then). */
static int index_and_finish(struct mntcr_tree **t, unsigned flags, struct mntcr_tree **ret_tree)
{
	int r = tree_index(*t);

	if (r == 0)
		r = finish_read(*t, flags);
	if (r == 0)
		*ret_tree = TAKE_PTR(*t);
	return r;
}

static int check_pid(pid_t pid)
{
	char path[64];

	if (pid <= 0)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	return access(path, F_OK) < 0 ? -ESRCH : 0;
}

MNTCR_EXPORT int mntcr_tree_read_pid(pid_t pid, unsigned flags, struct mntcr_tree **ret_tree)
{
	struct mntcr_tree *t = NULL;
	int r;

	if (!ret_tree)
		return -EINVAL;
	r = check_pid(pid);
	if (r < 0)
		return r;
	r = read_raw(pid, flags, &t);
	if (r < 0)
		return r;
	if (t->source == MNTCR_SOURCE_STATMOUNT)
		timing_report("read", statmount_read_ms);
	timing_mark(t->source == MNTCR_SOURCE_STATMOUNT ? "parse" : "read+parse");
	t->pid = t->nss[0].pid = pid;
	t->nss[0].id = t->ns_id;
	t->live = true; /* mntcr_image_write() may read its content */
	r = finish_read(t, flags);
	if (r < 0) {
		mntcr_tree_free(t);
		return r;
	}
	*ret_tree = t;
	return 0;
}

int tree_merge(struct mntcr_tree **parts, size_t n, struct mntcr_tree **ret)
{
	struct mntcr_tree *t = NULL;
	size_t total = 0;
	int r;

	for (size_t k = 0; k < n; k++)
		total += parts[k]->n_mounts;
	r = tree_new(&t);
	if (r < 0)
		return r;
	if ((r = tree_set_namespaces(t, n)) < 0 || (r = GROW(t->mounts, t->cap_mounts, total)) < 0)
		goto fail;
	t->source = parts[0]->source;
	t->unique_ids = parts[0]->unique_ids;
	for (size_t k = 0; k < n; k++) {
		struct mntcr_tree *p = parts[k];

		if (p->unique_ids != t->unique_ids) {
			r = log_debug_errno(-EPROTO, "Namespaces read with different kinds of mount ids");
			goto fail;
		}
		t->nss[k].id = p->ns_id;
		for (size_t i = 0; i < p->n_mounts; i++) {
			p->mounts[i].ns = k;
			r = tree_add_mount(t, &p->mounts[i]);
			if (r < 0)
				goto fail;
		}
		p->n_mounts = 0; /* moved */
		for (; p->n_texts > 0; p->n_texts--) {
			r = tree_add_text(t, p->texts[p->n_texts - 1]);
			if (r < 0)
				goto fail;
		}
	}
	t->ns_id = t->nss[0].id;
	*ret = t;
	return 0;
fail:
	mntcr_tree_free(t);
	return r;
}

/* The namespace key of a process: its mount namespace id, else the nsfs inode. */
static int pid_ns_key(pid_t pid, uint64_t *ret)
{
	char path[64];
	struct stat st;
	uint64_t id = 0;

	if (statmount_ns_id_of_pid(pid, &id) == 0 && id) {
		*ret = id;
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	if (stat(path, &st) < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	*ret = (uint64_t)st.st_ino;
	return 0;
}

/* Where /proc/PID/<what> (root, cwd) is, as a path in the process's namespace. */
static int proc_link(pid_t pid, const char *what, char **ret)
{
	char path[64], buf[PATH_MAX + 1];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	/* unreachable from ours, or deleted: the kernel says so in the text, keep it as it is */
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

/*
 * Read each namespace through its process. Both kinds of mount ids cannot
 * mix in one tree: if one namespace fell back to mountinfo and another did
 * not, all are read again from mountinfo.
 */
static int read_parts(const pid_t *ns_pid, size_t n, unsigned flags, struct mntcr_tree **parts)
{
	size_t unique = 0;
	int r;

	for (size_t k = 0; k < n; k++) {
		r = read_raw(ns_pid[k], flags, &parts[k]);
		if (r < 0)
			return r;
		unique += parts[k]->unique_ids;
	}
	if (unique == 0 || unique == n)
		return 0;
	for (size_t k = 0; k < n; k++)
		parts[k] = mntcr_tree_free(parts[k]);
	return read_parts(ns_pid, n, flags | MNTCR_READ_MOUNTINFO, parts);
}

MNTCR_EXPORT int mntcr_tree_read_pids(const pid_t *pids, size_t n_pids, unsigned flags,
				      struct mntcr_tree **ret_tree)
{
	_cleanup_free_ uint64_t *keys = NULL;
	_cleanup_free_ size_t *pid_ns = NULL;
	_cleanup_free_ pid_t *ns_pid = NULL;
	struct mntcr_tree **parts = NULL, *t = NULL;
	size_t n = 0;
	int r;

	if (!pids || n_pids == 0 || !ret_tree)
		return -EINVAL;
	keys = calloc(n_pids, sizeof(*keys));
	pid_ns = calloc(n_pids, sizeof(*pid_ns));
	ns_pid = calloc(n_pids, sizeof(*ns_pid));
	parts = calloc(n_pids, sizeof(*parts));
	if (!keys || !pid_ns || !ns_pid || !parts) {
		r = -ENOMEM;
		goto out;
	}
	/* Each namespace once, in the order of its first process. */
	for (size_t i = 0; i < n_pids; i++) {
		uint64_t key = 0;
		size_t k;

		r = check_pid(pids[i]);
		if (r == 0)
			r = pid_ns_key(pids[i], &key);
		if (r < 0)
			goto out;
		for (k = 0; k < n && keys[k] != key; k++)
			;
		if (k == n) {
			keys[n] = key;
			ns_pid[n++] = pids[i];
		}
		pid_ns[i] = k;
	}
	r = read_parts(ns_pid, n, flags, parts);
	if (r < 0)
		goto out;
	timing_mark("read+parse");
	r = tree_merge(parts, n, &t);
	if (r < 0)
		goto out;
	for (size_t k = 0; k < n; k++) {
		t->nss[k].pid = ns_pid[k];
		if (!t->nss[k].id)
			t->nss[k].id = keys[k];
	}
	t->ns_id = t->nss[0].id;
	t->pid = pids[0];
	t->live = true;
	for (size_t i = 0; i < n_pids; i++) {
		char *root = NULL, *cwd = NULL;

		if ((r = proc_link(pids[i], "root", &root)) < 0 || (r = proc_link(pids[i], "cwd", &cwd)) < 0) {
			free(root);
			r = r == -ENOENT ? -ESRCH : r;
			goto out;
		}
		r = tree_add_proc(t, pids[i], pid_ns[i], root, cwd);
		if (r < 0)
			goto out;
	}
	r = index_and_finish(&t, flags, ret_tree);
out:
	for (size_t k = 0; parts && k < n; k++)
		mntcr_tree_free(parts[k]);
	free(parts);
	mntcr_tree_free(t);
	return r;
}

/* The mount namespace id of a namespace file. */
static int nsfile_id(const char *nsfile, uint64_t *ret)
{
	_cleanup_close_ int fd = -EBADF;

	fd = open(nsfile, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* ENOTTY: not a namespace file; EINVAL: not a mount namespace */
	if (ioctl(fd, NS_GET_MNTNS_ID, ret) < 0)
		return errno == ENOTTY || errno == EINVAL ? -ENOTTY : -errno;
	return 0;
}

MNTCR_EXPORT int mntcr_tree_read_nsfiles(const char *const *nsfiles, size_t n_files, unsigned flags,
					 struct mntcr_tree **ret_tree)
{
	struct mntcr_tree **parts = NULL, *t = NULL;
	size_t n = 0;
	int r = 0;

	if (!nsfiles || n_files == 0 || !ret_tree)
		return -EINVAL;
	parts = calloc(n_files, sizeof(*parts));
	if (!parts)
		return -ENOMEM;
	for (size_t i = 0; i < n_files; i++) {
		uint64_t id;
		bool seen = false;

		r = nsfile_id(nsfiles[i], &id);
		if (r < 0)
			goto out;
		for (size_t k = 0; k < n; k++)
			seen = seen || parts[k]->ns_id == id;
		if (seen)
			continue; /* each namespace once */
		r = statmount_read(id, -EBADF, -EBADF, &parts[n]);
		if (r < 0)
			goto out;
		parts[n++]->ns_id = id;
	}
	if (n == 1) {
		t = TAKE_PTR(parts[0]);
	} else {
		r = tree_merge(parts, n, &t);
		if (r < 0)
			goto out;
	}
	r = index_and_finish(&t, flags, ret_tree);
out:
	for (size_t k = 0; k < n; k++)
		mntcr_tree_free(parts[k]);
	free(parts);
	mntcr_tree_free(t);
	return r;
}

MNTCR_EXPORT int mntcr_tree_read_ns(const char *nsfile, unsigned flags, struct mntcr_tree **ret_tree)
{
	return mntcr_tree_read_nsfiles(&nsfile, 1, flags, ret_tree);
}

/* The caller's own namespace, unclassified: the restorer's view of external superblocks. */
int tree_read_self(struct mntcr_tree **ret_tree)
{
	return read_raw(getpid(), 0, ret_tree);
}
