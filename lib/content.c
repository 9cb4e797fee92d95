/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Filesystem content of owned tmpfs and ramfs superblocks (content.h).
 *
 * Dump. The files are read through a private, non-recursive clone of one
 * of the superblock's mounts (open_tree(OPEN_TREE_CLONE)): a childless
 * detached mount that shows the filesystem's own directory, files
 * shadowed by child mounts included (KERNEL-FACTS §2(a)). The clone is
 * made ro, noatime, nodev, noexec, nosuid before a byte is read, so the
 * dump changes no atime and cannot open a device. The kernel refuses to
 * clone a mount of another namespace (EINVAL on Linux 6.18), so a helper
 * process enters the target's namespace and passes the clones back over a
 * unix socket (SCM_RIGHTS):
 *  - a mount that a path walk reaches is cloned right there, and the
 *    clone is checked to be that very mount (statx mount id): the
 *    namespace itself does not change;
 *  - when every mount with that root is hidden (under an over-mount, the
 *    lower layer of a stack), the helper makes a private copy of the
 *    namespace (unshare(CLONE_NEWNS), then MS_REC|MS_PRIVATE so that
 *    nothing propagates back) and lazily unmounts, in the copy, whatever
 *    the mount's path lands on until it lands on the mount itself: the
 *    topmost mount at a path is the one a path walk ends in, and unmounting
 *    it uncovers the one below. A copy costs as much as the namespace has
 *    mounts, so it is kept (an fd of it) and re-entered for the next hidden
 *    root: what earlier roots unmounted there cannot mislead the peeling,
 *    which accepts only a mount of the wanted superblock and root. A fresh
 *    copy is made when the mount is gone from the kept one.
 * The helper also enters the namespace's user namespace when it has one of
 * its own, so that the copy is owned by the same user namespace and its
 * mounts are not locked.
 *
 * The files are streamed in a pre-order walk, names sorted, with their
 * data read in bounded chunks; sparse files are stored sparse
 * (SEEK_DATA/SEEK_HOLE, GNU sparse 1.0 in pax); hard links as links to the
 * first name. Memory grows with the depth of the tree and the largest
 * directory, never with the size of the data.
 *
 * Restore. Members are created beneath the fresh superblock's root fd:
 * parents are resolved with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
 * RESOLVE_NO_XDEV, nothing from the archive is ever followed, and
 * image.c has already refused names with "..", links that lead out and
 * unknown attributes. Owner before mode (chown clears setuid bits), data
 * before file capabilities (a write clears them), and a directory's mode,
 * attributes and times after its children (a default ACL would be
 * inherited, and every entry made in it moves its mtime).
 */
#include <archive.h>
#include <dirent.h>
#include <assert.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "content.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tree.h"

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif
#ifndef NS_GET_USERNS
#define NS_GET_USERNS _IO(0xb7, 0x1)
#endif
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

#define DATA_BUF_SIZE ((size_t)256 << 10)
#define XATTR_VALUE_MAX ((size_t)64 << 10) /* XATTR_SIZE_MAX */
#define XATTR_LIST_MAX_ ((size_t)64 << 10) /* XATTR_LIST_MAX */
#define XATTR_NAME_MAX_ 255

static const char *const xattr_namespaces[] = { "user.", "trusted.", "security.", "system." };

/* -------------------------------------------------------------------------- */
/* Shared: which filesystems, which roots, member names, attributes */

bool content_fstype(const char *fstype)
{
	return fstype && (streq(fstype, "tmpfs") || streq(fstype, "ramfs"));
}

void content_roots_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int content_roots(const struct mntcr_tree *t, size_t sb, char ***ret, size_t *ret_n)
{
	const struct mntcr_sb *s = &t->sbs[sb];
	char **v = NULL, **out;
	size_t n = 0, kept = 0;

	*ret = NULL;
	*ret_n = 0;
	if (!s->owned || !content_fstype(s->fstype) || s->n_mounts == 0)
		return 0;
	v = calloc(s->n_mounts, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (size_t k = 0; k < s->n_mounts; k++) {
		const char *root = t->mounts[tree_sb_mount_idx(t, s, k)].root;

		/* A deleted root ("/x//deleted") cannot be restored: the planner refuses it. */
		if (!path_is_normalized(root))
			continue;
		v[n] = strdup(root);
		if (!v[n]) {
			content_roots_free(v, n);
			return -ENOMEM;
		}
		n++;
	}
	qsort(v, n, sizeof(char *), cmp_str);
	/* Keep the roots that no other root contains: look each one's ancestors up. */
	out = calloc(n ? n : 1, sizeof(char *));
	if (!out) {
		content_roots_free(v, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *p = NULL;
		bool below = i > 0 && streq(v[i], v[i - 1]);
		char *slash;

		if (!below && !streq(v[i], "/")) {
			p = strdup(v[i]);
			if (!p) {
				free(out);
				content_roots_free(v, n);
				return -ENOMEM;
			}
			while (!below && (slash = strrchr(p, '/'))) {
				char *key = p;

				if (slash == p) {
					p[1] = 0;
					below = bsearch(&key, v, n, sizeof(char *), cmp_str) !=
						NULL;
					break;
				}
				*slash = 0;
				below = bsearch(&key, v, n, sizeof(char *), cmp_str) != NULL;
			}
		}
		if (!below)
			out[kept++] = v[i];
	}
	/* v and out hold the same strings in the same order: free the ones not kept. */
	for (size_t i = 0, k = 0; i < n; i++) {
		if (k < kept && out[k] == v[i])
			k++;
		else
			free(v[i]);
	}
	free(v);
	v = out;
	if (kept == 0) {
		free(v);
		return 0;
	}
	*ret = v;
	*ret_n = kept;
	return 0;
}

int content_name_parse(const char *name, uint64_t *ret_sb, const char **ret_rel, size_t *ret_len)
{
	const char *p = name, *rel;
	uint64_t sb = 0;
	size_t digits = 0, len;

	if (strncmp(name, CONTENT_PREFIX, strlen(CONTENT_PREFIX)) != 0 ||
	    strlen(name) > CONTENT_NAME_MAX)
		return -EINVAL;
	p += strlen(CONTENT_PREFIX);
	while (p[digits] >= '0' && p[digits] <= '9') {
		if (digits == 10)
			return -EINVAL;
		sb = sb * 10 + (uint64_t)(p[digits] - '0');
		digits++;
	}
	if (digits == 0 || (digits > 1 && p[0] == '0') || sb > UINT32_MAX)
		return -EINVAL;
	p += digits;
	if (*p && *p != '/')
		return -EINVAL;
	if (*p == '/')
		p++;
	rel = p;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		p = *e ? e + 1 : e;
	}
	len = strlen(rel);
	if (len > 0 && rel[len - 1] == '/')
		len--;
	*ret_sb = sb;
	*ret_rel = rel;
	*ret_len = len;
	return 0;
}

bool content_rel_in_roots(const char *rel, size_t len, char *const *roots, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *r = roots[i] + 1; /* roots are absolute */
		size_t rn = strlen(r);

		if (rn == 0)
			return true;
		if (len >= rn && memcmp(rel, r, rn) == 0 && (len == rn || rel[rn] == '/'))
			return true;
	}
	return false;
}

static int cmp_xattr(const void *a, const void *b)
{
	return strcmp(((const struct content_xattr *)a)->name,
		      ((const struct content_xattr *)b)->name);
}

static bool xattr_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n > XATTR_NAME_MAX_)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(xattr_namespaces); i++) {
		size_t k = strlen(xattr_namespaces[i]);

		if (n > k && strncmp(name, xattr_namespaces[i], k) == 0)
			return true;
	}
	return false;
}

void content_attrs_release(struct content_attrs *a)
{
	free(a->x);
	*a = (struct content_attrs){ 0 };
}

int content_attrs_get(struct archive_entry *e, struct content_attrs *ret)
{
	struct content_attrs a = { 0 };
	const char *name;
	const void *value;
	size_t size, k = 0;
	int r;

	content_attrs_release(ret);
	(void)archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (!name)
			goto bad;
		if (streq(name, CONTENT_ATTR_TYPE)) {
			if (size != strlen(CONTENT_TYPE_SOCKET) ||
			    memcmp(value, CONTENT_TYPE_SOCKET, size) != 0)
				goto bad;
			a.socket = true;
			continue;
		}
		if (!xattr_name_ok(name) || size > XATTR_VALUE_MAX)
			goto bad;
		r = GROW(a.x, a.cap, a.n + 1);
		if (r < 0) {
			content_attrs_release(&a);
			return r;
		}
		a.x[a.n++] = (struct content_xattr){ .name = name, .value = value, .size = size };
	}
	if (a.n > 1)
		qsort(a.x, a.n, sizeof(*a.x), cmp_xattr);
	/* Each name once: libarchive reads a pax xattr from both of its records. */
	for (size_t i = 0; i < a.n; i++) {
		if (k > 0 && streq(a.x[k - 1].name, a.x[i].name)) {
			if (a.x[k - 1].size != a.x[i].size ||
			    (a.x[i].size &&
			     memcmp(a.x[k - 1].value, a.x[i].value, a.x[i].size) != 0))
				goto bad;
			continue;
		}
		a.x[k++] = a.x[i];
	}
	a.n = k;
	if (a.socket && (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) ||
			 archive_entry_size(e) != 0))
		goto bad;
	*ret = a;
	return 0;
bad:
	content_attrs_release(&a);
	return -EBADMSG;
}

/* -------------------------------------------------------------------------- */
/* Dump: the helper that reaches the mounts */

struct helper_req {
	uint32_t sb;
	uint32_t root;
};

/* Requests the dumper has sent and the helper not answered yet, at most (send_ahead()). */
#define REQ_WINDOW 32

struct helper_reply {
	int32_t err;
	char msg[480];
};

#define NEAR_MAX 64 /* ancestors resolve_near() keeps, each an fd */

struct helper {
	const struct mntcr_tree *t;
	char **const *roots;
	const size_t *n_roots;
	const int *nsfds; /* the target's mount namespaces (one per namespace of the tree) */
	int *copies;      /* per namespace: the private copy made last (fresh_copy), or -EBADF */
	int procfd;       /* the dumper's /proc, to name the copy we are in */
	size_t cur;       /* the namespace we are in (or in a copy of) */
	bool in_copy;     /* we are in a private copy of it, not in it */
	char *msg;    /* room for the reply's message */
	int yard;         /* a detached tmpfs the sent clones are parked in (park_clone) */
	size_t n_parked;
	struct u64map sb_of_dev; /* device number -> superblock, of those with content roots */
	struct u64map done;      /* root_key(): a clone kept for it (save_cover), or SERVED */
	size_t n_kept;
	/*
	 * Mounts of namespace near_ns reached by a path walk (reach_root),
	 * each an ancestor of the next, with an fd on each: the next mount's
	 * path is walked from the nearest of its ancestors among them, not
	 * from "/" (resolve_near).
	 */
	size_t near_idx[NEAR_MAX];
	int near_fd[NEAR_MAX];
	size_t n_near, near_ns;
	bool *near_on; /* per mount: it is among them */
	struct strbuf path; /* mpath()'s */
};

/* The absolute mountpoint of m, in h->path until the next call; "?" when out of memory. */
static const char *mpath(struct helper *h, const struct mntcr_mount *m)
{
	const char *p = mount_path(h->t, (size_t)(m - h->t->mounts), &h->path);

	return p ? p : "?";
}

#define SERVED SIZE_MAX
#define KEPT_MAX 1024 /* clones save_cover() keeps at most, each an fd */

static uint64_t root_key(size_t sb, size_t ri)
{
	return (uint64_t)sb << 32 | ri;
}

int yard_park(int *yard, size_t n, int fd)
{
	char name[24];

	if (*yard < 0) {
		_cleanup_close_ int fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC);

		if (fsfd < 0 || fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
			return -errno;
		*yard = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
		if (*yard < 0)
			return -errno;
	}
	snprintf(name, sizeof(name), "%zu", n);
	if (mkdirat(*yard, name, 0700) < 0 || move_mount(fd, "", *yard, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return -errno;
	return 0;
}

int yard_open(int yard, size_t n, unsigned flags)
{
	char name[24];

	snprintf(name, sizeof(name), "%zu", n);
	return open_tree(yard, name, flags | OPEN_TREE_CLOEXEC);
}

/*
 * A clone sent to the dumper, parked before the helper closes its fd: each
 * unmount waits for an RCU grace period (50-100 us, KERNEL-FACTS 4.2); this
 * way all of them go in one, when the helper exits. Each in a directory of
 * its own: mounted on the one parked before, each move would check the
 * whole stack beneath (move_mount refuses a loop), 45 us a move at 10,000.
 * A mount that cannot be moved (a bind made by bind_private) is closed as
 * it is.
 */
static void park_clone(struct helper *h, int fd)
{
	(void)yard_park(&h->yard, h->n_parked++, fd);
}

static void hmsg(struct helper *h, const char *fmt, ...) _printf_(2, 3);
static void hmsg(struct helper *h, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h->msg, sizeof(((struct helper_reply *)0)->msg), fmt, ap);
	va_end(ap);
}

/*
 * What openat2(RESOLVE_NO_SYMLINKS) does, by hand, for kernels before 5.6
 * and for valgrind (which does not know openat2): one component at a time,
 * each opened O_NOFOLLOW (and O_DIRECTORY but the last), so no symlink is
 * followed; mounts are crossed as by any walk, unless same_dev, which
 * refuses (EXDEV) a component on another device than dfd. "." and ".."
 * are refused: the names given here never hold them. -1 and errno, as
 * openat2.
 */
static int walk_open(int dfd, const char *path, int flags, bool same_dev)
{
	_cleanup_close_ int cur = -EBADF;
	struct stat root, st;
	const char *p = path;

	while (*p == '/')
		p++;
	if (same_dev && fstat(dfd, &root) < 0)
		return -1;
	if (!*p)
		return openat(dfd, ".", flags | O_CLOEXEC);
	cur = openat(dfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -1;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		bool last = !*e || !e[1 + strspn(e + 1, "/")];
		char comp[NAME_MAX + 1];
		int fd;

		if (n == 0 || n > NAME_MAX || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.')) {
			errno = n > NAME_MAX ? ENAMETOOLONG : EINVAL;
			return -1;
		}
		memcpy(comp, p, n);
		comp[n] = 0;
		fd = openat(cur, comp,
			    last ? flags | O_NOFOLLOW | O_CLOEXEC
				 : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -1;
		close(cur);
		cur = fd;
		if (same_dev && (fstat(cur, &st) < 0 || st.st_dev != root.st_dev)) {
			errno = EXDEV;
			return -1;
		}
		p = e;
		while (*p == '/')
			p++;
	}
	return TAKE_FD(cur);
}

static int resolve(const char *path)
{
	struct mntcr_open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd = sys_openat2(AT_FDCWD, path, &how);

	if (fd < 0 && errno == ENOSYS) {
		_cleanup_close_ int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);

		fd = root < 0 ? -1 : walk_open(root, path, O_PATH, false);
	}
	return fd;
}

static void near_drop(struct helper *h, size_t k)
{
	h->near_on[h->near_idx[k]] = false;
	close(h->near_fd[k]);
}

/*
 * Where a path walk to m's mountpoint lands, in the target namespace m is
 * in (the helper is there): the same walk as resolve()'s, but from the
 * nearest ancestor of m that an earlier walk reached. The walk to that
 * ancestor's mountpoint ended on it, so going on from there with the rest
 * of m's path lands where a walk from "/" would; for a child, the rest is
 * one component. A chain of 10,000 nested mounts has paths of thousands of
 * components: walked from "/" each time, that was most of its dump.
 */
static int resolve_near(struct helper *h, const struct mntcr_mount *m, const char *path)
{
	const struct mntcr_tree *t = h->t;
	struct mntcr_open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	size_t a = m->parent, plen;
	const char *rel;
	int fd;

	if (!h->near_on || h->near_ns != m->ns)
		while (h->n_near > 0)
			near_drop(h, --h->n_near);
	h->near_ns = m->ns;
	while (a != IDX_NONE && !(h->near_on && h->near_on[a]))
		a = t->mounts[a].parent;
	/* the ones after a are not m's ancestors (after none, none is) */
	while (h->n_near > 0 && h->near_idx[h->n_near - 1] != a)
		near_drop(h, --h->n_near);
	if (a == IDX_NONE)
		return resolve(path);
	plen = t->mounts[a].path_len;
	rel = path + (plen > 1 ? plen : 0);
	while (*rel == '/')
		rel++;
	if (!*rel) /* on a's own path: a walk from "/" goes up a's stack */
		return resolve(path);
	fd = sys_openat2(h->near_fd[h->n_near - 1], rel, &how);
	if (fd < 0 && errno == ENOSYS)
		fd = walk_open(h->near_fd[h->n_near - 1], rel, O_PATH, false);
	return fd;
}

/*
 * m, reached by resolve_near() at fd: the nearest ancestor of the mounts
 * that follow. The fd is the helper's from then on (the caller may use it
 * until its next resolve_near()); false: it is still the caller's.
 */
static bool near_keep(struct helper *h, const struct mntcr_mount *m, int fd)
{
	size_t idx = (size_t)(m - h->t->mounts);

	if (!h->near_on)
		return false;
	if (h->n_near == NEAR_MAX) { /* the farthest goes */
		near_drop(h, 0);
		memmove(h->near_idx, h->near_idx + 1, (NEAR_MAX - 1) * sizeof(h->near_idx[0]));
		memmove(h->near_fd, h->near_fd + 1, (NEAR_MAX - 1) * sizeof(h->near_fd[0]));
		h->n_near--;
	}
	h->near_idx[h->n_near] = idx;
	h->near_fd[h->n_near++] = fd;
	h->near_on[idx] = true;
	return true;
}

/* The id of the mount fd lies in, consistent within one namespace; whether fd is its root. */
static int mount_of(int fd, uint64_t *ret_id, bool *ret_unique, bool *ret_is_root, dev_t *ret_dev)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID_UNIQUE | STATX_MNT_ID,
		  &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & (STATX_MNT_ID | STATX_MNT_ID_UNIQUE)))
		return -EOPNOTSUPP;
	*ret_id = stx.stx_mnt_id;
	*ret_unique = stx.stx_mask & STATX_MNT_ID_UNIQUE;
	*ret_is_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
		       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	*ret_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	return 0;
}

/* A path walk to m's mountpoint lands on m itself (its id as the tree has it). */
static bool lands_on(const struct mntcr_tree *t, int fd, const struct mntcr_mount *m)
{
	struct statx stx;
	unsigned mask = t->unique_ids ? STATX_MNT_ID_UNIQUE : STATX_MNT_ID;

	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, mask, &stx) < 0)
		return false;
	if (t->unique_ids)
		return (stx.stx_mask & STATX_MNT_ID_UNIQUE) && stx.stx_mnt_id == m->id;
	return !(stx.stx_mask & STATX_MNT_ID_UNIQUE) && (stx.stx_mask & STATX_MNT_ID) &&
	       stx.stx_mnt_id == m->old_id;
}

/* The root of mount `id` of our own namespace, when statmount can tell (Linux >= 6.8); or NULL. */
static char *root_of(uint64_t id)
{
	struct mntcr_mnt_id_req req = { .size = 24,
					.mnt_id = id,
					.param = MNTCR_STATMOUNT_MNT_ROOT };
	size_t size = 8192;
	_cleanup_free_ struct mntcr_statmount *sm = NULL;

	sm = malloc(size);
	if (!sm || sys_statmount(&req, sm, size, 0) < 0 || !(sm->mask & MNTCR_STATMOUNT_MNT_ROOT))
		return NULL;
	return strdup(sm->str + sm->mnt_root);
}

static bool root_is(uint64_t id, bool unique, const char *root)
{
	_cleanup_free_ char *r = unique ? root_of(id) : NULL;

	return !r || streq(r, root); /* cannot tell: the device number matched */
}

/*
 * The mountpoint of mount `id`, which the walk of the first `upto` bytes
 * of path ends in: the shortest prefix of them that resolves into it (the
 * shorter ones end in the mounts it sits on).
 */
static int mountpoint_of(const char *path, size_t upto, uint64_t id, char **ret)
{
	for (size_t i = 1; i <= upto; i++) {
		_cleanup_free_ char *q = NULL;
		_cleanup_close_ int fd = -EBADF;
		uint64_t got;
		bool unique, is_root;
		dev_t dev;

		/* The prefixes: "/", then each one that ends before a '/', then the whole. */
		if (i > 1 && i < upto && path[i] != '/')
			continue;
		q = strndup(path, i);
		if (!q)
			return -ENOMEM;
		fd = resolve(q);
		if (fd < 0)
			continue;
		if (mount_of(fd, &got, &unique, &is_root, &dev) < 0 || got != id)
			continue;
		*ret = TAKE_PTR(q);
		return 0;
	}
	return -ENOENT;
}

static int clone_private(struct helper *h, int fd, const char *what, int *ret_fd);

/*
 * Before peel() unmounts mount `id` (mounted at q) in a copy: when its
 * root is a content root not sent yet, keep a clone of it for that
 * request. The copy is reused for the next hidden root, and the layers of
 * a stack are asked for from the bottom up: without this, each of them
 * would need a fresh copy. Best effort: at worst, the request makes one.
 */
static void save_cover(struct helper *h, uint64_t id, bool unique, dev_t dev, const char *q)
{
	_cleanup_free_ char *root = NULL;
	_cleanup_close_ int fd = -EBADF;
	char *const *hit;
	size_t sb, ri, old;
	uint64_t got;
	bool u, is_root;
	dev_t d;
	int c;

	if (!unique || h->n_kept >= KEPT_MAX || !u64map_get(&h->sb_of_dev, dev, &sb))
		return;
	root = root_of(id);
	hit = root ? bsearch(&root, h->roots[sb], h->n_roots[sb], sizeof(char *), cmp_str) : NULL;
	if (!hit)
		return;
	ri = (size_t)(hit - h->roots[sb]);
	if (u64map_get(&h->done, root_key(sb, ri), &old))
		return;
	fd = resolve(q);
	if (fd < 0 || mount_of(fd, &got, &u, &is_root, &d) < 0 || got != id || !is_root)
		return;
	if (clone_private(h, fd, q, &c) < 0) {
		h->msg[0] = 0;
		return;
	}
	if (u64map_put(&h->done, root_key(sb, ri), (size_t)c) < 0) {
		close(c);
		return;
	}
	h->n_kept++;
}

/*
 * In a private copy of the namespace: unmount whatever m's mountpoint
 * lands on until it lands on a mount of m's superblock and root, at its
 * root. Each round unmounts one mount (with what is mounted on it).
 */
static int peel(struct helper *h, const struct mntcr_mount *m, int *ret_fd)
{
	const char *p = mpath(h, m); /* nothing below makes another */
	size_t plen = strlen(p);

	for (size_t round = 0; round <= h->t->n_mounts + 1; round++) {
		_cleanup_free_ char *q = NULL;
		_cleanup_close_ int fd = -EBADF;
		size_t upto = plen;
		uint64_t id;
		bool unique, is_root;
		dev_t dev;
		int r;

		fd = resolve(p);
		if (fd < 0) {
			/* Something covers a prefix of p: find the longest prefix that exists. */
			r = -errno;
			if (r != -ENOENT && r != -ENOTDIR) {
				hmsg(h, "openat2 %s: %s", p, strerror(-r));
				return r;
			}
			while (fd < 0 && upto > 1) {
				_cleanup_free_ char *pre = NULL;

				while (upto > 1 && p[--upto] != '/')
					;
				pre = strndup(p, upto ? upto : 1);
				if (!pre)
					return -ENOMEM;
				fd = resolve(pre);
			}
			if (fd < 0) {
				r = -errno;
				hmsg(h, "openat2 /: %s", strerror(-r));
				return r;
			}
		}
		r = mount_of(fd, &id, &unique, &is_root, &dev);
		if (r < 0) {
			hmsg(h, "statx %s: %s", p, strerror(-r));
			return r;
		}
		if (upto == plen && is_root && dev == makedev(m->dev_major, m->dev_minor) &&
		    root_is(id, unique, m->root)) {
			*ret_fd = TAKE_FD(fd);
			return 0;
		}
		r = mountpoint_of(p, upto, id, &q);
		if (r < 0) {
			hmsg(h, "no mountpoint found for the mount that %s lands on", p);
			return -EOPNOTSUPP;
		}
		if (streq(q, "/")) {
			hmsg(h, "%s is covered by the namespace's root mount itself", p);
			return -EOPNOTSUPP;
		}
		save_cover(h, id, unique, dev, q);
		log_debug("Uncovering %s in a private copy: umount2 %s MNT_DETACH", p, q);
		if (umount2(q, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
			r = -errno;
			hmsg(h, "umount2 %s in a private copy of the namespace: %s%s", q,
			     strerror(-r), r == -EINVAL ? " (a locked mount?)" : "");
			return r == -EINVAL ? -EOPNOTSUPP : r;
		}
	}
	hmsg(h, "%s stays covered", p);
	return -EOPNOTSUPP;
}

/* A private, read-only, noatime, childless clone of the mount fd is on. */
static int clone_private(struct helper *h, int fd, const char *what, int *ret_fd)
{
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME | MOUNT_ATTR_NODEV |
			    MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOSUID,
		.attr_clr = MOUNT_ATTR__ATIME,
		.propagation = MS_PRIVATE,
	};
	static bool no_open_tree_attr; /* the helper is one thread */
	_cleanup_close_ int c = -EBADF;
	int r;

	/* Both steps in one call (Linux 6.15); on a failure, the two calls below say which step. */
	if (!no_open_tree_attr) {
		c = sys_open_tree_attr(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH, &attr,
				       sizeof(attr));
		if (c >= 0) {
			*ret_fd = TAKE_FD(c);
			return 0;
		}
		no_open_tree_attr = errno == ENOSYS;
	}
	c = open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (c < 0 && errno == ENOSYS)
		return -ENOSYS; /* bind_private() */
	if (c < 0) {
		r = -errno;
		hmsg(h, "open_tree OPEN_TREE_CLONE %s: %s", what, strerror(-r));
		return r;
	}
	/* A clone of a shared mount is a peer of it until made private: do it first. */
	if (mount_setattr(c, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
		r = -errno;
		hmsg(h, "mount_setattr ro,noatime on the clone of %s: %s", what, strerror(-r));
		return r;
	}
	*ret_fd = TAKE_FD(c);
	return 0;
}

static int enter_target(struct helper *h, size_t ns)
{
	if (setns(h->nsfds[ns], CLONE_NEWNS) < 0) {
		int r = -errno;
		hmsg(h, "setns into mount namespace %zu: %s", ns, strerror(-r));
		return r;
	}
	h->cur = ns;
	h->in_copy = false;
	return 0;
}

static int fresh_copy(struct helper *h, size_t ns)
{
	int r = enter_target(h, ns);

	if (r < 0)
		return r;
	if (unshare(CLONE_NEWNS) < 0) {
		r = -errno;
		hmsg(h, "unshare CLONE_NEWNS: %s", strerror(-r));
		return r;
	}
	h->in_copy = true;
	log_debug("A private copy of mount namespace %zu, to uncover hidden mounts in", ns);
	/* Before anything is unmounted: nothing in the copy may propagate anywhere. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		r = -errno;
		hmsg(h, "mount MS_REC|MS_PRIVATE / in the private copy: %s", strerror(-r));
		return r;
	}
	/* Kept, to come back to: a copy costs as much as the namespace has mounts. */
	if (h->copies) {
		if (h->copies[ns] >= 0)
			close(h->copies[ns]);
		h->copies[ns] = h->procfd < 0 ? -EBADF
					       : openat(h->procfd, "thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
	}
	return 0;
}

/* Back into the copy of namespace ns made last, as earlier uncoverings left it. */
static bool reenter_copy(struct helper *h, size_t ns)
{
	if (!h->copies || h->copies[ns] < 0)
		return false;
	if (h->in_copy && h->cur == ns)
		return true;
	if (setns(h->copies[ns], CLONE_NEWNS) < 0)
		return false;
	h->cur = ns;
	h->in_copy = true;
	return true;
}

/*
 * Without open_tree (Linux before 5.2; valgrind): the same childless,
 * read-only, noatime view made with mount(2), in a private copy of the
 * namespace: m uncovered there (peel), a non-recursive bind of it on
 * itself, remounted read-only and noatime, opened. fd: m in the copy, from
 * peel(), or -1 to enter a fresh copy and peel first.
 */
static int bind_private(struct helper *h, const struct mntcr_mount *m, int fd, int *ret_fd)
{
	_cleanup_close_ int own = -EBADF, top = -EBADF;
	const char *path;
	char src[64];
	int r;

	if (fd < 0) {
		if ((r = fresh_copy(h, m->ns)) < 0 || (r = peel(h, m, &own)) < 0)
			return r;
		fd = own;
	}
	snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
	path = mpath(h, m);
	if (mount(src, path, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, path, NULL,
		  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOATIME | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		r = -errno;
		hmsg(h, "mount MS_BIND of %s on itself, ro and noatime, in a private copy: %s", path,
		     strerror(-r));
		return r;
	}
	top = resolve(path);
	if (top < 0) {
		r = -errno;
		hmsg(h, "openat2 %s in a private copy: %s", path, strerror(-r));
		return r;
	}
	*ret_fd = TAKE_FD(top);
	return 0;
}

static int reach_root(struct helper *h, size_t sb, size_t ri, int *ret_fd)
{
	const struct mntcr_tree *t = h->t;
	const struct mntcr_sb *s = &t->sbs[sb];
	const char *root = h->roots[sb][ri], *path;
	int r = -ENOENT;

	/* 1. A mount with that root that a path walk reaches: clone it where it is. */
	for (size_t k = 0; k < s->n_mounts; k++) {
		const struct mntcr_mount *m = &t->mounts[tree_sb_mount_idx(t, s, k)];
		_cleanup_close_ int own = -EBADF;
		int fd;

		if (m->hidden || !streq(m->root, root))
			continue;
		if ((h->in_copy || h->cur != m->ns) && (r = enter_target(h, m->ns)) < 0)
			return r;
		path = mpath(h, m);
		fd = own = resolve_near(h, m, path);
		if (fd < 0 || !lands_on(t, fd, m))
			continue;
		if (near_keep(h, m, fd))
			own = -EBADF;
		log_debug("Content of superblock %zu root %s: through mount %" PRIu64 " at %s", sb,
			  root, m->id, path);
		r = clone_private(h, fd, path, ret_fd);
		if (r == -ENOSYS)
			return bind_private(h, m, -1, ret_fd);
		/* EINVAL: an unbindable mount, which the private copy makes private. */
		if (r != -EINVAL)
			return r;
		h->msg[0] = 0;
	}
	/*
	 * 2. All hidden (or moved since the dump read the table, or unbindable):
	 * uncover one in a private copy, where every mount is private.
	 */
	for (size_t k = 0; k < s->n_mounts; k++) {
		const struct mntcr_mount *m = &t->mounts[tree_sb_mount_idx(t, s, k)];
		_cleanup_close_ int fd = -EBADF;

		if (!streq(m->root, root))
			continue;
		/*
		 * The copy made for an earlier root first: peel() only accepts a
		 * mount of m's superblock and root, whatever was unmounted there
		 * before; a fresh copy when m is gone from it.
		 */
		r = reenter_copy(h, m->ns) ? peel(h, m, &fd) : -ENOENT;
		if (r < 0) {
			r = fresh_copy(h, m->ns);
			if (r < 0)
				return r;
			r = peel(h, m, &fd);
		}
		if (r < 0)
			continue;
		path = mpath(h, m);
		log_debug("Content of superblock %zu root %s: through mount %" PRIu64
			  " at %s, uncovered in a private copy",
			  sb, root, m->id, path);
		r = clone_private(h, fd, path, ret_fd);
		return r == -ENOSYS ? bind_private(h, m, fd, ret_fd) : r;
	}
	if (!h->msg[0])
		hmsg(h, "no mount of superblock %u:%u with root %s is reachable", s->dev_major,
		     s->dev_minor, root);
	return r < 0 ? r : -ENOENT;
}

static int helper_clone(struct helper *h, size_t sb, size_t ri, int *ret_fd)
{
	size_t kept;
	int r;

	if (u64map_get(&h->done, root_key(sb, ri), &kept) && kept != SERVED) {
		*ret_fd = (int)kept;
		h->n_kept--;
	} else {
		r = reach_root(h, sb, ri, ret_fd);
		if (r < 0)
			return r;
	}
	/* Nothing is kept for it any more: it is sent once. */
	if (u64map_put(&h->done, root_key(sb, ri), SERVED) < 0) {
		close(*ret_fd);
		return -ENOMEM;
	}
	return 0;
}

static int send_reply(int sock, const struct helper_reply *rep, int fd)
{
	return sock_send_fds(sock, rep, sizeof(*rep), &fd, fd >= 0 ? 1 : 0);
}

static int recv_reply(int sock, struct helper_reply *rep, int *ret_fd)
{
	size_t n_fds;
	ssize_t n;

	*ret_fd = -EBADF;
	n = sock_recv_fds(sock, rep, sizeof(*rep), ret_fd, 1, &n_fds);
	if (n < 0)
		return (int)n;
	if (n != sizeof(*rep)) {
		if (n_fds) {
			close(*ret_fd);
			*ret_fd = -EBADF;
		}
		return -EPIPE; /* the helper died */
	}
	rep->msg[sizeof(rep->msg) - 1] = 0;
	return 0;
}

/* Enter the user namespace that owns the target's mount namespace, if it is not ours. */
static void enter_userns(int nsfd)
{
	_cleanup_close_ int userns = -EBADF;
	struct stat a, b;

	userns = ioctl(nsfd, NS_GET_USERNS);
	if (userns < 0 || fstat(userns, &a) < 0 || stat("/proc/self/ns/user", &b) < 0)
		return;
	if (a.st_ino == b.st_ino && a.st_dev == b.st_dev)
		return;
	/* Not fatal: a namespace we may not enter is tried from ours (its mounts may be locked). */
	if (setns(userns, CLONE_NEWUSER) < 0)
		log_debug("Failed to setns into the target's user namespace: %s", strerror(errno));
}

static _Noreturn void helper_main(const struct mntcr_tree *t, char **const *roots,
				  const size_t *n_roots, const int *nsfds, int sock)
{
	struct helper_reply rep = { 0 };
	struct helper h = { .t = t, .roots = roots, .n_roots = n_roots, .nsfds = nsfds,
			    .msg = rep.msg, .yard = -EBADF };
	int setup;

	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	/* Without them, each hidden root gets a fresh copy, as it did before. */
	h.procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	h.copies = malloc(t->n_ns * sizeof(int));
	h.near_on = calloc(t->n_mounts + 1, sizeof(bool)); /* without it, every walk is from "/" */
	for (size_t k = 0; h.copies && k < t->n_ns; k++)
		h.copies[k] = -EBADF;
	for (size_t sb = 0; sb < t->n_sbs; sb++)
		if (n_roots[sb])
			(void)u64map_put(&h.sb_of_dev, makedev(t->sbs[sb].dev_major, t->sbs[sb].dev_minor), sb);
	enter_userns(nsfds[0]);
	rep.msg[0] = 0;
	setup = enter_target(&h, 0);
	for (;;) {
		struct helper_req reqs[REQ_WINDOW];
		ssize_t n;

		n = recv(sock, reqs, sizeof(reqs), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || n % sizeof(reqs[0]))
			_exit(0); /* the dumper is done (or gone) */
		for (size_t i = 0; i < (size_t)n / sizeof(reqs[0]); i++) {
			const struct helper_req *req = &reqs[i];
			_cleanup_close_ int fd = -EBADF;

			if (setup < 0)
				rep.err = setup;
			else {
				rep.msg[0] = 0;
				if (req->sb >= t->n_sbs || !roots[req->sb])
					rep.err = -EINVAL;
				else
					rep.err = helper_clone(&h, req->sb, req->root, &fd);
			}
			if (send_reply(sock, &rep, rep.err < 0 ? -EBADF : fd) < 0)
				_exit(1);
			if (rep.err == 0)
				park_clone(&h, fd);
		}
	}
}

/* -------------------------------------------------------------------------- */
/* Dump: the walk */

struct dump {
	struct image_writer *w;
	const struct mntcr_tree *t;
	int sock;
	struct helper_req *q; /* every (superblock, root) to ask for, in order */
	size_t q_n, q_sent, q_done;
	size_t sb;
	dev_t dev;
	bool sized_dirs;     /* tmpfs: a directory's size says how many entries it has (empty_dir()) */
	char *buf;	     /* DATA_BUF_SIZE */
	struct strbuf name;  /* the member name being built */
	struct u64map links; /* inode -> index into link_names, for inodes with several links */
	char **link_names;
	size_t n_links, cap_links;
	uint64_t files, bytes;
};

struct extent {
	int64_t off, len;
};

static void dump_links_reset(struct dump *d)
{
	for (size_t i = 0; i < d->n_links; i++)
		free(d->link_names[i]);
	free(d->link_names);
	d->link_names = NULL;
	d->n_links = d->cap_links = 0;
	u64map_release(&d->links);
}

/* Where a node's extended attributes are read: an fd on it, else its path (at), a symlink not followed unless follow. */
struct xattr_at {
	int fd;
	int dirfd;	   /* with name: the node is name in dirfd */
	const char *name;  /* NULL: xpath only */
	const char *xpath; /* /proc/self/fd/<dirfd>[/name] */
	bool follow;
};

/*
 * Not opened: listxattrat(2) (Linux 6.13) finds the name in its directory;
 * before it, the path through /proc/self/fd costs twice as much.
 */
static ssize_t xattr_list(const struct xattr_at *at, char *list, size_t size)
{
	static atomic_bool no_listxattrat;

	if (at->fd >= 0)
		return flistxattr(at->fd, list, size);
	if (at->name && !no_listxattrat) {
		long n = sys_listxattrat(at->dirfd, at->name, AT_SYMLINK_NOFOLLOW, list, size);

		if (n >= 0 || errno != ENOSYS)
			return n;
		no_listxattrat = true;
	}
	return at->follow ? listxattr(at->xpath, list, size) : llistxattr(at->xpath, list, size);
}

/* The attributes of the node at, added to e. */
static int read_xattrs(const struct xattr_at *at, struct archive_entry *e)
{
	_cleanup_free_ char *list = NULL, *val = NULL;
	const char *xpath = at->fd >= 0 ? NULL : at->xpath;
	bool follow = at->follow;
	int fd = at->fd;
	ssize_t n;

	n = xattr_list(at, NULL, 0);
	if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP))
		return 0;
	if (n < 0)
		return -errno;
	if (n == 0)
		return 0;
	list = malloc(XATTR_LIST_MAX_);
	val = malloc(XATTR_VALUE_MAX);
	if (!list || !val)
		return -ENOMEM;
	n = xattr_list(at, list, XATTR_LIST_MAX_);
	if (n < 0)
		return -errno;
	for (char *p = list; p < list + n; p += strlen(p) + 1) {
		ssize_t k = xpath ? (follow ? getxattr(xpath, p, val, XATTR_VALUE_MAX)
					    : lgetxattr(xpath, p, val, XATTR_VALUE_MAX))
				  : fgetxattr(fd, p, val, XATTR_VALUE_MAX);

		if (k < 0 && errno == ENODATA)
			continue; /* removed meanwhile */
		if (k < 0)
			return log_debug_errno(-errno, "Failed to getxattr %s", p);
		if (!xattr_name_ok(p))
			return log_debug_errno(-EOPNOTSUPP,
					       "Cannot store extended attribute %.256s", p);
		archive_entry_xattr_add_entry(e, p, val, (size_t)k);
	}
	return 0;
}

/* Data extents of a regular file: one for a file without holes. */
static int file_extents(int fd, int64_t size, int64_t blocks, struct extent **ret, size_t *ret_n)
{
	struct extent *x = NULL;
	size_t n = 0, cap = 0;
	int64_t off = 0;
	int r;

	if (size == 0) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if (blocks * 512 >= size) {
		/* Fully allocated: no holes to find. */
		x = malloc(sizeof(*x));
		if (!x)
			return -ENOMEM;
		x[0] = (struct extent){ 0, size };
		*ret = x;
		*ret_n = 1;
		return 0;
	}
	while (off < size) {
		off_t d = lseek(fd, off, SEEK_DATA), h;

		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0 || d >= size) {
			if (d >= size)
				break;
			r = -errno;
			free(x);
			return r;
		}
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0) {
			r = -errno;
			free(x);
			return r;
		}
		if (h > size)
			h = size;
		r = GROW(x, cap, n + 1);
		if (r < 0) {
			free(x);
			return r;
		}
		x[n++] = (struct extent){ d, h - d };
		off = h;
	}
	*ret = x;
	*ret_n = n;
	return 0;
}

static int write_file_data(struct dump *d, int fd, int64_t size, const struct extent *x, size_t n)
{
	int64_t pos = 0;
	int r;

	for (size_t i = 0; i < n; i++) {
		int64_t end = x[i].off + x[i].len;

		if (x[i].off > pos &&
		    (r = image_write_data(d->w, NULL, (size_t)(x[i].off - pos))) < 0)
			return r;
		for (pos = x[i].off; pos < end;) {
			size_t want = (size_t)MIN((int64_t)DATA_BUF_SIZE, end - pos);
			ssize_t k = pread(fd, d->buf, want, pos);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return log_debug_errno(-errno, "Failed to read %s", d->name.buf);
			if (k == 0) {
				/* Shrunk while we read: what the header promised, as zeros. */
				memset(d->buf, 0, want);
				k = (ssize_t)want;
			}
			r = image_write_data(d->w, d->buf, (size_t)k);
			if (r < 0)
				return r;
			pos += k;
		}
	}
	if (pos < size)
		return image_write_data(d->w, NULL, (size_t)(size - pos));
	return 0;
}

static unsigned ae_type(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return AE_IFDIR;
	case S_IFLNK:
		return AE_IFLNK;
	case S_IFIFO:
		return AE_IFIFO;
	case S_IFCHR:
		return AE_IFCHR;
	case S_IFBLK:
		return AE_IFBLK;
	default:
		return AE_IFREG; /* regular files, and sockets with the marker */
	}
}

/*
 * One member: the node `name` in dirfd (name NULL: the clone's root, fd
 * dirfd). *ret_dirfd: an open fd of it when it is a directory to walk.
 */
/*
 * A directory that tmpfs says is empty: tmpfs counts 20 bytes of size per
 * entry, "." and ".." included, and its directories have one link per
 * subdirectory and two more. Most directories a dump meets are empty
 * mountpoints; without it, each would be opened, listed (two getdents64)
 * and closed.
 */
#define TMPFS_DIRENT_SIZE 20

static bool empty_dir(const struct dump *d, const struct stat *st)
{
	return d->sized_dirs && S_ISDIR(st->st_mode) && st->st_size == 2 * TMPFS_DIRENT_SIZE &&
	       st->st_nlink == 2;
}

static int dump_node(struct dump *d, int dirfd, const char *name, const struct stat *st0,
		     int *ret_dirfd)
{
	struct archive_entry *e = NULL;
	_cleanup_close_ int fd = -EBADF;
	_cleanup_free_ struct extent *x = NULL;
	char xpath[64 + NAME_MAX + 1];
	struct stat st = *st0;
	size_t nx = 0;
	size_t li;
	int r;

	*ret_dirfd = -EBADF;
	if (d->name.len > CONTENT_NAME_MAX)
		return log_debug_errno(-ENAMETOOLONG,
				       "Content path %.256s... is longer than %d bytes",
				       d->name.buf, CONTENT_NAME_MAX);
	if (name)
		snprintf(xpath, sizeof(xpath), "/proc/self/fd/%d/%s", dirfd, name);
	else
		snprintf(xpath, sizeof(xpath), "/proc/self/fd/%d", dirfd);

	/* A further name of an inode already stored: a hard link to the first. */
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && u64map_get(&d->links, st.st_ino, &li)) {
		e = archive_entry_new();
		if (!e)
			return -ENOMEM;
		archive_entry_set_pathname(e, d->name.buf);
		archive_entry_set_filetype(e, ae_type(st.st_mode));
		archive_entry_set_perm(e, st.st_mode & 07777);
		archive_entry_set_hardlink(e, d->link_names[li]);
		r = image_write_entry(d->w, e, d->sb);
		archive_entry_free(e);
		d->files++;
		return r;
	}

	if (S_ISREG(st.st_mode) || (S_ISDIR(st.st_mode) && !empty_dir(d, &st))) {
		int flags = O_RDONLY | O_CLOEXEC | O_NOATIME | O_NONBLOCK |
			    (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);

		fd = name ? openat(dirfd, name, flags | O_NOFOLLOW) : openat(dirfd, ".", flags);
		if (fd < 0 && !name && S_ISREG(st.st_mode))
			fd = open(xpath, flags); /* a file mount's root: reopen the clone */
		if (fd < 0 && errno == ENOENT)
			return 0; /* gone meanwhile */
		if (fd < 0)
			return log_debug_errno(-errno, "Failed to open %s", d->name.buf);
		if (fstat(fd, &st) < 0)
			return -errno;
		if (st.st_ino != st0->st_ino || (st.st_mode & S_IFMT) != (st0->st_mode & S_IFMT))
			return 0; /* replaced meanwhile: the walk is of a live filesystem */
	}

	e = archive_entry_new();
	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, d->name.buf);
	archive_entry_set_filetype(e, ae_type(st.st_mode));
	archive_entry_set_perm(e, st.st_mode & 07777);
	archive_entry_set_uid(e, st.st_uid);
	archive_entry_set_gid(e, st.st_gid);
	archive_entry_set_mtime(e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	archive_entry_set_atime(e, st.st_atim.tv_sec, st.st_atim.tv_nsec);
	archive_entry_set_size(e, 0);
	if (S_ISSOCK(st.st_mode))
		archive_entry_xattr_add_entry(e, CONTENT_ATTR_TYPE, CONTENT_TYPE_SOCKET,
					      strlen(CONTENT_TYPE_SOCKET));
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
		archive_entry_set_rdevmajor(e, major(st.st_rdev));
		archive_entry_set_rdevminor(e, minor(st.st_rdev));
	}
	if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlinkat(dirfd, name ? name : "", d->buf, DATA_BUF_SIZE - 1);

		if (n < 0 && errno == ENOENT)
			goto skip;
		if (n < 0) {
			r = log_debug_errno(-errno, "Failed to readlink %s", d->name.buf);
			goto out;
		}
		d->buf[n] = 0;
		archive_entry_set_symlink(e, d->buf);
	}
	r = read_xattrs(&(struct xattr_at){ .fd = fd, .dirfd = dirfd, .name = name, .xpath = xpath, .follow = !name },
			e);
	if (r < 0) {
		log_debug_errno(r, "Failed to read the extended attributes of %s", d->name.buf);
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		archive_entry_set_size(e, st.st_size);
		r = file_extents(fd, st.st_size, st.st_blocks, &x, &nx);
		if (r < 0) {
			log_debug_errno(r, "Failed to find the data of %s (SEEK_DATA)",
					d->name.buf);
			goto out;
		}
		/* Holes: GNU sparse entries; a file of holes only gets an empty one at its end. */
		if (st.st_size > 0 && !(nx == 1 && x[0].off == 0 && x[0].len == st.st_size)) {
			for (size_t i = 0; i < nx; i++)
				archive_entry_sparse_add_entry(e, x[i].off, x[i].len);
			if (nx == 0)
				archive_entry_sparse_add_entry(e, st.st_size, 0);
		}
	}

	r = image_write_entry(d->w, e, d->sb);
	if (r < 0)
		goto out;
	d->files++;
	if (S_ISREG(st.st_mode)) {
		r = write_file_data(d, fd, st.st_size, x, nx);
		if (r < 0)
			goto out;
		d->bytes += (uint64_t)st.st_size;
	}
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
		r = GROW(d->link_names, d->cap_links, d->n_links + 1);
		if (r < 0)
			goto out;
		d->link_names[d->n_links] = strdup(d->name.buf);
		if (!d->link_names[d->n_links]) {
			r = -ENOMEM;
			goto out;
		}
		r = u64map_put(&d->links, st.st_ino, d->n_links++);
		if (r < 0)
			goto out;
	}
	if (S_ISDIR(st.st_mode))
		*ret_dirfd = TAKE_FD(fd);
	r = 0;
	goto out;
skip:
	r = 0;
out:
	archive_entry_free(e);
	return r;
}

static void strv_free_n(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * The names in the directory dirfd (opened by dump_node(), its offset at the
 * start, which this moves), sorted: the image is a function of the tree.
 * Read with getdents64 into buf: no second open, no DIR (fdopendir's fstat
 * and fcntls), 5 system calls a directory fewer.
 */
static int list_dir(int dirfd, char *buf, size_t size, char ***ret, size_t *ret_n)
{
	char **v = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	for (;;) {
		ssize_t got = getdents64(dirfd, buf, size);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r = got < 0 ? -errno : 0;
			break;
		}
		for (size_t off = 0; off < (size_t)got && r == 0;) {
			const struct dirent64 *de = (const struct dirent64 *)(buf + off);

			off += de->d_reclen;
			if (streq(de->d_name, ".") || streq(de->d_name, ".."))
				continue;
			r = GROW(v, cap, n + 1);
			if (r < 0)
				break;
			v[n] = strdup(de->d_name);
			if (!v[n])
				r = -ENOMEM;
			else
				n++;
		}
		if (r < 0)
			break;
	}
	if (r < 0) {
		strv_free_n(v, n);
		return r;
	}
	if (n > 1)
		qsort(v, n, sizeof(char *), cmp_str);
	*ret = v;
	*ret_n = n;
	return 0;
}

static int dump_dir(struct dump *d, int dirfd, unsigned depth)
{
	char **names = NULL;
	size_t n = 0, base = d->name.len;
	int r;

	if (depth > CONTENT_NAME_MAX / 2)
		return -ELOOP;
	r = list_dir(dirfd, d->buf, DATA_BUF_SIZE, &names, &n);
	if (r < 0)
		return log_debug_errno(r, "Failed to read directory %s", d->name.buf);
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_close_ int sub = -EBADF;
		struct stat st;

		if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			r = log_debug_errno(-errno, "Failed to stat %s/%s", d->name.buf, names[i]);
			break;
		}
		if (st.st_dev != d->dev)
			continue; /* cannot happen in a childless clone */
		d->name.len = base;
		d->name.buf[base] = 0;
		if ((r = strbuf_puts(&d->name, "/")) < 0 ||
		    (r = strbuf_puts(&d->name, names[i])) < 0)
			break;
		r = dump_node(d, dirfd, names[i], &st, &sub);
		if (r >= 0 && sub >= 0)
			r = dump_dir(d, sub, depth + 1);
	}
	d->name.len = base;
	d->name.buf[base] = 0;
	strv_free_n(names, n);
	return r;
}

/*
 * Requests go ahead of the replies, up to REQ_WINDOW: the helper clones the
 * next roots while the dumper reads this one, and a namespace of many small
 * tmpfs does not pay a round trip between two processes for each. They go
 * in batches, one message each, once half the window is free: one send and
 * one recv for many roots.
 */
static int send_ahead(struct dump *d)
{
	size_t out = d->q_sent - d->q_done, k;

	if (d->q_sent == d->q_n || out > REQ_WINDOW / 2)
		return 0;
	k = REQ_WINDOW - out;
	if (k > d->q_n - d->q_sent)
		k = d->q_n - d->q_sent;
	while (send(d->sock, d->q + d->q_sent, k * sizeof(struct helper_req), MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -errno;
	d->q_sent += k;
	return 0;
}

static int ask_helper(struct dump *d, size_t sb, size_t root, const char *root_path, int *ret_fd)
{
	struct helper_reply rep;
	int r;

	/* the reply to request q_done, which is (sb, root): requests are made in the walk's order */
	assert(d->q_done < d->q_n && d->q[d->q_done].sb == sb && d->q[d->q_done].root == root);
	r = send_ahead(d);
	if (r < 0)
		return r;
	d->q_done++;
	r = recv_reply(d->sock, &rep, ret_fd);
	if (r < 0)
		return log_debug_errno(r, "The content helper process failed");
	if (rep.err < 0) {
		if (*ret_fd >= 0)
			close(*ret_fd);
		*ret_fd = -EBADF;
		/* EPERM, EACCES: not allowed into the namespace (not root over it): the same. */
		r = rep.err == -EINVAL || rep.err == -ENOENT || rep.err == -EPERM || rep.err == -EACCES
			    ? -EOPNOTSUPP
			    : rep.err;
		if (r == -EOPNOTSUPP)
			/* Not fatal: under a locked mount (a container's, inherited from its host) no copy of the namespace can uncover it. */
			log_warning(
				"The content of superblock %zu (%s %u:%u) at %s cannot be reached "
				"and is not saved: %s",
				sb, d->t->sbs[sb].fstype, d->t->sbs[sb].dev_major,
				d->t->sbs[sb].dev_minor, root_path,
				rep.msg[0] ? rep.msg : strerror(-rep.err));
		else
			log_debug_errno(
				r,
				"Cannot reach the content of superblock %zu (%u:%u), root %s: %s",
				sb, d->t->sbs[sb].dev_major, d->t->sbs[sb].dev_minor, root_path,
				rep.msg[0] ? rep.msg : strerror(-rep.err));
		return r;
	}
	if (*ret_fd < 0)
		return -EPROTO;
	return 0;
}

static int dump_root(struct dump *d, size_t sb, size_t ri, const char *root)
{
	_cleanup_close_ int fd = -EBADF, dfd = -EBADF;
	struct stat st;
	int r;

	r = ask_helper(d, sb, ri, root, &fd);
	if (r == -EOPNOTSUPP)
		return 0; /* unreachable: warned, and the superblock is restored without these files */
	if (r < 0)
		return r;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	d->dev = st.st_dev;
	d->name.len = 0;
	r = strbuf_printf(&d->name, CONTENT_PREFIX "%zu%s", sb, streq(root, "/") ? "" : root);
	if (r < 0)
		return r;
	r = dump_node(d, fd, NULL, &st, &dfd);
	if (r >= 0 && dfd >= 0)
		r = dump_dir(d, dfd, 0);
	return r;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	/* One fd per directory level while walking. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int content_dump(struct image_writer *w, const struct mntcr_tree *t, char **const *roots,
		 const size_t *n_roots)
{
	struct dump d = { .w = w, .t = t, .sock = -EBADF };
	_cleanup_free_ int *nsfds = NULL;
	int sv[2] = { -EBADF, -EBADF }, r, status;
	pid_t pid = 0;

	/* One fd per namespace, opened through a process of it and checked to be it still. */
	nsfds = malloc(t->n_ns * sizeof(int));
	if (!nsfds)
		return -ENOMEM;
	for (size_t k = 0; k < t->n_ns; k++)
		nsfds[k] = -EBADF;
	for (size_t k = 0; k < t->n_ns; k++) {
		char path[64];
		uint64_t id = 0;

		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)t->nss[k].pid);
		nsfds[k] = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfds[k] < 0) {
			r = log_debug_errno(errno == ENOENT ? -ESRCH : -errno, "Failed to open %s", path);
			goto out_ns;
		}
		/* The pid may have been reused, or the process may have moved. */
		if (t->nss[k].id && ioctl(nsfds[k], NS_GET_MNTNS_ID, &id) == 0 && id != t->nss[k].id) {
			r = log_debug_errno(-ESTALE, "Process %d is in mount namespace %" PRIu64 " now, not %" PRIu64,
					    (int)t->nss[k].pid, id, t->nss[k].id);
			goto out_ns;
		}
	}
	d.buf = malloc(DATA_BUF_SIZE);
	if (!d.buf) {
		r = -ENOMEM;
		goto out_ns;
	}
	raise_nofile();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	if (pid == 0) {
		close(sv[0]);
		helper_main(t, roots, n_roots, nsfds, sv[1]);
	}
	close(sv[1]);
	sv[1] = -EBADF;
	d.sock = sv[0];

	for (size_t sb = 0; sb < t->n_sbs; sb++)
		d.q_n += n_roots[sb];
	d.q = malloc((d.q_n + 1) * sizeof(*d.q));
	if (!d.q) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t sb = 0, i = 0; sb < t->n_sbs; sb++)
		for (size_t k = 0; k < n_roots[sb]; k++)
			d.q[i++] = (struct helper_req){ .sb = (uint32_t)sb, .root = (uint32_t)k };
	r = 0;
	for (size_t sb = 0; sb < t->n_sbs && r >= 0; sb++) {
		if (!n_roots[sb])
			continue;
		d.sb = sb;
		d.sized_dirs = streq(t->sbs[sb].fstype, "tmpfs");
		d.files = d.bytes = 0;
		for (size_t k = 0; k < n_roots[sb] && r >= 0; k++)
			r = dump_root(&d, sb, k, roots[sb][k]);
		dump_links_reset(&d);
		if (r >= 0)
			log_debug("Content of superblock %zu (%s %u:%u): %" PRIu64
				  " members, %" PRIu64 " bytes",
				  sb, t->sbs[sb].fstype, t->sbs[sb].dev_major, t->sbs[sb].dev_minor,
				  d.files, d.bytes);
	}
out:
	if (sv[0] >= 0)
		close(sv[0]); /* the helper exits */
	if (sv[1] >= 0)
		close(sv[1]);
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	dump_links_reset(&d);
	strbuf_release(&d.name);
	free(d.buf);
	free(d.q);
out_ns:
	for (size_t k = 0; k < t->n_ns; k++)
		if (nsfds[k] >= 0)
			close(nsfds[k]);
	return r;
}

/* -------------------------------------------------------------------------- */
/* Restore: members into a fresh superblock */

/* A directory whose mode, attributes and times wait until its children are made. */
struct pending_dir {
	char *rel; /* "" for the filesystem's root */
	mode_t mode;
	struct timespec ts[2];
	struct content_xattr *x; /* copies: the entry goes away */
	size_t nx;
};

struct extract {
	struct mntcr_image *img;
	int rootfd;
	struct pending_dir *dirs;
	size_t n_dirs, cap_dirs;
	char *parent; /* the parent resolved last, and its fd */
	int parent_fd;
	const char *call;
	const char *member;
};

static void pending_release(struct pending_dir *p)
{
	for (size_t i = 0; i < p->nx; i++) {
		free((char *)p->x[i].name);
		free((void *)p->x[i].value);
	}
	free(p->x);
	free(p->rel);
	*p = (struct pending_dir){ 0 };
}

static int fail_call(struct extract *ex, const char *call)
{
	int r = -errno;

	ex->call = call;
	return r ? r : -EIO;
}

static int open_beneath(int dfd, const char *path, int flags)
{
	struct mntcr_open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
			   RESOLVE_NO_XDEV,
	};

	int fd = sys_openat2(dfd, *path ? path : ".", &how);

	if (fd < 0 && errno == ENOSYS)
		fd = walk_open(dfd, path, flags, /* same_dev= */ true);
	return fd;
}

static struct timespec entry_time(struct archive_entry *e, bool atime)
{
	if (atime)
		return (struct timespec){
			.tv_sec = archive_entry_atime_is_set(e) ? archive_entry_atime(e) : 0,
			.tv_nsec = archive_entry_atime_is_set(e) ? archive_entry_atime_nsec(e) : 0
		};
	return (struct timespec){ .tv_sec = archive_entry_mtime(e),
				  .tv_nsec = archive_entry_mtime_nsec(e) };
}

/* The fd of directory `parent` (relative), made with its missing ancestors (0755) if needed. */
static int parent_dir(struct extract *ex, const char *parent)
{
	int fd;

	if (ex->parent && streq(ex->parent, parent))
		return ex->parent_fd;
	if (ex->parent_fd >= 0 && ex->parent_fd != ex->rootfd)
		close(ex->parent_fd);
	free(ex->parent);
	ex->parent = NULL;
	ex->parent_fd = -EBADF;

	if (!*parent)
		fd = ex->rootfd;
	else {
		fd = open_beneath(ex->rootfd, parent, O_PATH | O_DIRECTORY);
		if (fd < 0 && errno == ENOENT) {
			/* Above a content root, or a member before its directory: mkdir -p. */
			_cleanup_free_ char *p = strdup(parent);

			if (!p)
				return -ENOMEM;
			for (char *s = p;; s++) {
				if (*s == '/' || *s == 0) {
					char c = *s;
					_cleanup_close_ int up = -EBADF;
					char *slash;

					*s = 0;
					slash = strrchr(p, '/');
					if (slash) {
						*slash = 0;
						up = open_beneath(ex->rootfd, p,
								  O_PATH | O_DIRECTORY);
						*slash = '/';
					} else
						up = open_beneath(ex->rootfd, "",
								  O_PATH | O_DIRECTORY);
					if (up < 0)
						return fail_call(ex, "openat2");
					if (mkdirat(up, slash ? slash + 1 : p, 0755) < 0 &&
					    errno != EEXIST)
						return fail_call(ex, "mkdirat");
					*s = c;
					if (!c)
						break;
				}
			}
			fd = open_beneath(ex->rootfd, parent, O_PATH | O_DIRECTORY);
		}
		if (fd < 0) {
			/* ELOOP: a symlink in the way; ENOTDIR: a file. Never followed. */
			if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV) {
				ex->call = "openat2 (a parent is not a directory)";
				return -EBADMSG;
			}
			return fail_call(ex, "openat2");
		}
	}
	ex->parent = strdup(parent);
	if (!ex->parent) {
		if (fd != ex->rootfd)
			close(fd);
		return -ENOMEM;
	}
	ex->parent_fd = fd;
	return fd;
}

static int set_xattrs_fd(struct extract *ex, int fd, const struct content_xattr *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fsetxattr(fd, x[i].name, x[i].value, x[i].size, 0) < 0)
			return fail_call(ex, "fsetxattr");
	return 0;
}

static int set_xattrs_path(struct extract *ex, const char *path, const struct content_xattr *x,
			   size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lsetxattr(path, x[i].name, x[i].value, x[i].size, 0) < 0)
			return fail_call(ex, "lsetxattr");
	return 0;
}

static int apply_dir(struct extract *ex, struct pending_dir *p)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	fd = open_beneath(ex->rootfd, p->rel, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fail_call(ex, "openat2");
	if (fchmod(fd, p->mode) < 0)
		return fail_call(ex, "fchmod");
	r = set_xattrs_fd(ex, fd, p->x, p->nx);
	if (r < 0)
		return r;
	if (futimens(fd, p->ts) < 0)
		return fail_call(ex, "futimens");
	return 0;
}

/* Finish the directories that rel does not lie in (all of them for rel NULL). */
static int pop_dirs(struct extract *ex, const char *rel)
{
	while (ex->n_dirs > 0) {
		struct pending_dir *p = &ex->dirs[ex->n_dirs - 1];
		size_t n = strlen(p->rel);
		int r;

		if (rel && (n == 0 || (strncmp(rel, p->rel, n) == 0 && rel[n] == '/')))
			return 0;
		r = apply_dir(ex, p);
		pending_release(p);
		ex->n_dirs--;
		if (r < 0)
			return r;
	}
	return 0;
}

static int push_dir(struct extract *ex, const char *rel, struct archive_entry *e,
		    const struct content_attrs *a)
{
	struct pending_dir p = { .mode = archive_entry_perm(e) & 07777 };
	int r;

	p.ts[0] = entry_time(e, true);
	p.ts[1] = entry_time(e, false);
	p.rel = strdup(rel);
	p.x = calloc(a->n ? a->n : 1, sizeof(*p.x));
	if (!p.rel || !p.x) {
		pending_release(&p);
		return -ENOMEM;
	}
	for (size_t i = 0; i < a->n; i++) {
		p.x[i].name = strdup(a->x[i].name);
		p.x[i].value = malloc(a->x[i].size ? a->x[i].size : 1);
		p.nx = i + 1;
		if (!p.x[i].name || !p.x[i].value) {
			pending_release(&p);
			return -ENOMEM;
		}
		memcpy((void *)p.x[i].value, a->x[i].value, a->x[i].size);
		p.x[i].size = a->x[i].size;
	}
	r = GROW(ex->dirs, ex->cap_dirs, ex->n_dirs + 1);
	if (r < 0) {
		pending_release(&p);
		return r;
	}
	ex->dirs[ex->n_dirs++] = p;
	return 0;
}

static int write_regular(struct extract *ex, int fd, struct archive_entry *e)
{
	const void *buf;
	size_t n;
	int64_t off;
	int r;

	while ((r = image_content_data(ex->img, &buf, &n, &off)) > 0) {
		const char *p = buf;

		while (n > 0) {
			ssize_t k = pwrite(fd, p, n, off);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return fail_call(ex, "pwrite");
			p += k;
			off += k;
			n -= (size_t)k;
		}
	}
	if (r < 0) {
		ex->call = "read image";
		return r;
	}
	/* The size, trailing hole included. */
	if (ftruncate(fd, archive_entry_size(e)) < 0)
		return fail_call(ex, "ftruncate");
	return 0;
}

/* Owner, mode, attributes, times of a node made by name (not a directory, not a regular file). */
static int finish_node(struct extract *ex, int pfd, const char *base, struct archive_entry *e,
		       const struct content_attrs *a)
{
	struct timespec ts[2] = { entry_time(e, true), entry_time(e, false) };
	char path[64 + NAME_MAX + 1];
	bool lnk = archive_entry_filetype(e) == AE_IFLNK;
	int r;

	if (fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
		     AT_SYMLINK_NOFOLLOW) < 0)
		return fail_call(ex, "fchownat");
	/* Not a symlink: we just made it, and nothing else writes to this filesystem yet. */
	if (!lnk && fchmodat(pfd, base, archive_entry_perm(e) & 07777, 0) < 0)
		return fail_call(ex, "fchmodat");
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", pfd, base);
	r = set_xattrs_path(ex, path, a->x, a->n);
	if (r < 0)
		return r;
	if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return fail_call(ex, "utimensat");
	return 0;
}

static int extract_member(struct extract *ex, struct archive_entry *e, const char *rel,
			  const struct content_attrs *a)
{
	const char *hl = archive_entry_hardlink(e), *base;
	unsigned type = archive_entry_filetype(e);
	_cleanup_free_ char *parent = NULL;
	_cleanup_close_ int fd = -EBADF;
	int pfd, r;

	r = pop_dirs(ex, rel);
	if (r < 0)
		return r;
	if (!*rel) {
		/* The filesystem's root: it exists; owner now, the rest after its children. */
		fd = open_beneath(ex->rootfd, "", O_RDONLY | O_DIRECTORY);
		if (fd < 0)
			return fail_call(ex, "openat2");
		if (fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
			return fail_call(ex, "fchown");
		return push_dir(ex, rel, e, a);
	}
	base = strrchr(rel, '/');
	parent = base ? strndup(rel, (size_t)(base - rel)) : strdup("");
	if (!parent)
		return -ENOMEM;
	base = base ? base + 1 : rel;
	pfd = parent_dir(ex, parent);
	if (pfd < 0)
		return pfd;

	if (hl) {
		uint64_t hsb;
		const char *hrel, *hbase;
		size_t hlen;
		_cleanup_free_ char *hpath = NULL, *hparent = NULL;
		_cleanup_close_ int hfd = -EBADF;

		/* image.c checked: content of this superblock, inside its roots. */
		if (content_name_parse(hl, &hsb, &hrel, &hlen) < 0)
			return -EBADMSG;
		hpath = strndup(hrel, hlen);
		if (!hpath)
			return -ENOMEM;
		hbase = strrchr(hpath, '/');
		hparent = hbase ? strndup(hpath, (size_t)(hbase - hpath)) : strdup("");
		if (!hparent)
			return -ENOMEM;
		hbase = hbase ? hbase + 1 : hpath;
		hfd = open_beneath(ex->rootfd, hparent, O_PATH | O_DIRECTORY);
		if (hfd < 0) {
			if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) {
				ex->call = "openat2 (the hard link's target)";
				return -EBADMSG;
			}
			return fail_call(ex, "openat2");
		}
		/* No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink. */
		if (linkat(hfd, hbase, pfd, base, 0) < 0)
			return fail_call(ex, "linkat");
		return 0;
	}

	switch (type) {
	case AE_IFDIR:
		if (mkdirat(pfd, base, 0700) < 0) {
			struct stat st;

			if (errno != EEXIST)
				return fail_call(ex, "mkdirat");
			if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return fail_call(ex, "fstatat");
			if (!S_ISDIR(st.st_mode)) {
				errno = EEXIST;
				return fail_call(ex, "mkdirat");
			}
		}
		if (fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
			     AT_SYMLINK_NOFOLLOW) < 0)
			return fail_call(ex, "fchownat");
		return push_dir(ex, rel, e, a);
	case AE_IFREG:
		if (a->socket) {
			if (mknodat(pfd, base, S_IFSOCK | 0600, 0) < 0)
				return fail_call(ex, "mknodat S_IFSOCK");
			return finish_node(ex, pfd, base, e, a);
		}
		fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return fail_call(ex, "openat O_CREAT|O_EXCL");
		r = write_regular(ex, fd, e);
		if (r < 0)
			return r;
		/* Owner first: chown clears setuid/setgid and file capabilities. */
		if (fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
			return fail_call(ex, "fchown");
		if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
			return fail_call(ex, "fchmod");
		r = set_xattrs_fd(ex, fd, a->x, a->n);
		if (r < 0)
			return r;
		{
			struct timespec ts[2] = { entry_time(e, true), entry_time(e, false) };

			if (futimens(fd, ts) < 0)
				return fail_call(ex, "futimens");
		}
		return 0;
	case AE_IFLNK:
		if (symlinkat(archive_entry_symlink(e), pfd, base) < 0)
			return fail_call(ex, "symlinkat");
		return finish_node(ex, pfd, base, e, a);
	case AE_IFIFO:
	case AE_IFCHR:
	case AE_IFBLK: {
		mode_t fmt = type == AE_IFIFO ? S_IFIFO : type == AE_IFCHR ? S_IFCHR : S_IFBLK;
		dev_t dev = type == AE_IFIFO ? 0
					     : makedev(archive_entry_rdevmajor(e),
						       archive_entry_rdevminor(e));

		if (mknodat(pfd, base, fmt | 0600, dev) < 0)
			return fail_call(ex, "mknodat");
		return finish_node(ex, pfd, base, e, a);
	}
	default:
		return -EBADMSG;
	}
}

int content_extract(struct mntcr_image *img, size_t sb, int rootfd, char **ret_member,
		    const char **ret_call)
{
	struct extract ex = { .img = img, .rootfd = rootfd, .parent_fd = -EBADF };
	uint64_t n = 0;
	size_t s;
	int r;

	*ret_member = NULL;
	*ret_call = NULL;
	while ((r = image_content_peek(img, &s)) > 0 && s == sb) {
		const struct content_attrs *a;
		struct archive_entry *e;
		const char *name, *rel;
		_cleanup_free_ char *relz = NULL;
		size_t len;

		r = image_content_take(img, &e, &name, &rel, &len, &a);
		if (r < 0)
			break;
		relz = strndup(rel, len);
		if (!relz) {
			r = -ENOMEM;
			break;
		}
		ex.member = name;
		ex.call = NULL;
		r = extract_member(&ex, e, relz, a);
		if (r < 0) {
			*ret_member = strdup(name);
			break;
		}
		n++;
	}
	if (r >= 0) {
		ex.member = NULL;
		r = pop_dirs(&ex, NULL);
	}
	/* A member the reader refused by its name or place: name it too. */
	if (r < 0 && !*ret_member && image_content_bad_member(img))
		*ret_member = strdup(image_content_bad_member(img));
	if (r < 0)
		*ret_call = ex.call;
	else
		log_debug("Restored %" PRIu64 " members of superblock %zu", n, sb);
	while (ex.n_dirs > 0)
		pending_release(&ex.dirs[--ex.n_dirs]);
	free(ex.dirs);
	if (ex.parent_fd >= 0 && ex.parent_fd != rootfd)
		close(ex.parent_fd);
	free(ex.parent);
	return r < 0 ? r : 0;
}

int content_op(struct mntcr_image *img, size_t sb, int rootfd, size_t *left, const char **ret_call,
	       char *detail, size_t detail_size)
{
	_cleanup_free_ char *member = NULL;
	const char *call = NULL;
	int r;

	if (!img) {
		*ret_call = "content";
		snprintf(detail, detail_size, "no image stream to read the content from");
		return -ENODATA;
	}
	r = content_extract(img, sb, rootfd, &member, &call);
	if (r == 0 && --*left == 0) {
		r = image_content_end(img);
		call = "read image";
	}
	if (r < 0) {
		*ret_call = call ? call : "read image";
		snprintf(detail, detail_size, "%s%s%s", member ? "image member " : "", member ? member : "",
			 r == -EBADMSG ? (member ? ": a corrupt or hostile image" : "the image is corrupt or truncated")
				       : "");
	}
	return r;
}
