/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The executor: runs a plan with the new mount API. The only code in mntcr
 * that mounts. It runs in a process that has just entered a fresh mount
 * namespace whose mounts are all private (restore.c), so nothing it does
 * can reach the caller's namespace.
 *
 * Every mount-changing syscall goes through a *_verbose helper that logs
 * its arguments at debug level and passes the test-only fault hook.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "content.h"
#include "mntcr/mntcr.h"
#include "plan.h"
#include "sys.h"
#include "tree.h"

/*
 * The executor's arrays, carved from one private mapping made for them.
 * The executor runs in a process forked from the planner: memory from its
 * heap is the planner's, and each page of it is copied on the first write,
 * one fault at a time (for 10,000 mounts with 2 KB paths, the arrays took
 * 12 ms that way). Fresh pages, faulted in at once, cost a fraction.
 */
struct arrays {
	char *base;
	size_t size, used;
};

static void *arrays_take(struct arrays *a, size_t n, size_t size)
{
	size_t bytes = (n ? n : 1) * size, off = (a->used + 15) & ~(size_t)15;
	void *r;

	if (size && n > SIZE_MAX / size)
		return NULL;
	if (off > a->size || bytes > a->size - off)
		return NULL;
	r = a->base + off;
	a->used = off + bytes;
	return r;
}

/* Room for every array of plan p (eco_init, plan_execute_full, plan_direct): zeroed. */
static int arrays_map(struct arrays *a, const struct mntcr_plan *p)
{
	size_t ns = p->n_slots + 1, n = 0;

	/* eco_init: next; head, tail, last_pre, last, mount, tmpl, id, clones; keep, aliased, parked,
	 * alias_parked; alias */
	n += (p->n_ops + 1) * sizeof(size_t) + 16;
	n += 8 * (ns * sizeof(size_t) + 16) + 4 * (ns + 16) + ns * sizeof(int) + 16;
	/* fds, attached; plan_direct: direct, content */
	n += (p->n_slots + 1) * sizeof(int) + 16 + ns + 16;
	n += p->tree->n_mounts + 1 + 16 + (p->tree->n_sbs + 1) * sizeof(bool) + 16;
	n += (p->n_slots + 1) * sizeof(bool) + 16; /* plain */
	/* ahead_start: order, state, fd (one per superblock at most); entry */
	n += (p->tree->n_sbs + 1) * (sizeof(size_t) + 1 + sizeof(int)) + 3 * 16;
	n += (p->n_slots + 1) * sizeof(size_t) + 16;
	a->base = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (a->base == MAP_FAILED) {
		a->base = NULL;
		return -ENOMEM;
	}
	a->size = n;
	a->used = 0;
	return 0;
}

static void arrays_unmap(struct arrays *a)
{
	if (a->base)
		munmap(a->base, a->size);
	*a = (struct arrays){ 0 };
}

struct exec_ctx {
	const struct mntcr_plan *p;
	struct arrays mem;    /* where the arrays below come from */
	int *fds;
	struct mntcr_report *report;
	size_t op;            /* index of the running op */
	const char *syscall;  /* the call that failed */
	char kmsg[256];       /* the kernel's fs_context message, if any */
	bool *attached;       /* per slot: attached by OP_ATTACH or OP_SET_ROOT (park_detached) */
	uint8_t *direct;      /* per image mount: attach by name, without openat2 (plan_direct) */
	bool *plain;          /* per slot: a template of ours without content (plan_direct): mkpath by name */
	struct economy *eco;  /* lazy ops, few fds: see "economy" below */
	struct ahead *ahead;  /* superblocks made ahead on a second thread, or NULL: see "ahead" below */
	struct mntcr_image *img; /* the image stream OP_CONTENT reads, or NULL */
	size_t content_left;     /* OP_CONTENT ops still to run: the last one checks the trailer */
	/* Several namespaces: the building namespace, and one per tree (make_namespaces). */
	int base_ns;
	int *nsfds;
	size_t cur_ns; /* the namespace we are in, or IDX_NONE for the building one */
};

static int sys_fail(struct exec_ctx *c, const char *syscall_name);
static int ahead_take(struct exec_ctx *c, const struct plan_op *op);

/* Several namespaces: enter namespace k (IDX_NONE: the building one), if not in it yet. */
static int enter_ns(struct exec_ctx *c, size_t k)
{
	if (c->cur_ns == k)
		return 0;
	if (setns(k == IDX_NONE ? c->base_ns : c->nsfds[k], CLONE_NEWNS) < 0) {
		int r = sys_fail(c, "setns");

		if (k == IDX_NONE)
			snprintf(c->kmsg, sizeof(c->kmsg), "into the namespace the trees are built in");
		else
			snprintf(c->kmsg, sizeof(c->kmsg), "into restored namespace %zu", k);
		return r;
	}
	c->cur_ns = k;
	return 0;
}

/* Fail op with the current errno, naming the syscall. Returns -errno. */
static int sys_fail(struct exec_ctx *c, const char *syscall_name)
{
	int r = -errno;

	c->syscall = syscall_name;
	return r ? r : -EIO;
}

/* openat2 beneath dfd, never following symlinks nor crossing mounts. */
static int open_beneath(int dfd, const char *path, int flags)
{
	struct mntcr_open_how how = {
		/* no O_NOFOLLOW: with it a trailing symlink would be opened, not refused */
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};

	return sys_openat2(dfd, *path ? path : ".", &how);
}

/* Read the messages the kernel left in an fs_context ("e tmpfs: Unknown parameter 'x'"). */
static void read_fs_messages(struct exec_ctx *c, int fsfd)
{
	char buf[256];
	ssize_t n;

	while ((n = read(fsfd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = 0;
		if (buf[n - 1] == '\n')
			buf[n - 1] = 0;
		snprintf(c->kmsg, sizeof(c->kmsg), "%s", buf[0] && buf[1] == ' ' ? buf + 2 : buf);
	}
}

/* The propagation prop (MS_SHARED, MS_SLAVE, ...) of the mount fd is open on, mount_setattr(2). */
static int set_propagation(struct exec_ctx *c, int fd, size_t slot, uint32_t prop)
{
	log_debug("mount_setattr #%zu propagation 0x%" PRIx32, slot, prop);
	if (FAULT_OR(mount_setattr(fd, "", AT_EMPTY_PATH, &(struct mount_attr){ .propagation = prop },
				   sizeof(struct mount_attr))) < 0)
		return sys_fail(c, "mount_setattr propagation");
	return 0;
}

/*
 * op's new superblock and its detached mount, made shared when op says
 * so: the mount's fd, or -errno (c->syscall, c->kmsg say more).
 */
static int sb_create(struct exec_ctx *c, const struct plan_op *op)
{
	const struct mntcr_sb *sb = &c->p->tree->sbs[op->sb];
	_cleanup_close_ int fsfd = -EBADF;
	int fd;

	log_debug("fsopen %s source=%s options=%s", sb->fstype, sb->source ? sb->source : "none",
		  sb->opts ? sb->opts : "");
	fsfd = (int)FAULT_OR(fsopen(sb->fstype, FSOPEN_CLOEXEC));
	if (fsfd < 0)
		return sys_fail(c, "fsopen");
	/* No source reads back as "none" (mountinfo and statmount alike): one call less. */
	if (sb->source && !streq(sb->source, "none") &&
	    fsconfig(fsfd, FSCONFIG_SET_STRING, "source", sb->source, 0) < 0) {
		int r = sys_fail(c, "fsconfig source");
		read_fs_messages(c, fsfd);
		return r;
	}
	for (const char *o = sb->opts ? sb->opts : ""; *o;) {
		const char *e = strchrnul(o, ',');
		_cleanup_free_ char *opt = strndup(o, (size_t)(e - o));
		char *eq;
		int rc;

		if (!opt)
			return -ENOMEM;
		o = *e ? e + 1 : e;
		/* ro is applied after content is in place (OP_SB_RDONLY) */
		if (!*opt || streq(opt, "rw") || streq(opt, "ro"))
			continue;
		eq = strchr(opt, '=');
		if (eq) {
			*eq = 0;
			rc = fsconfig(fsfd, FSCONFIG_SET_STRING, opt, eq + 1, 0);
		} else
			rc = fsconfig(fsfd, FSCONFIG_SET_FLAG, opt, NULL, 0);
		if (rc < 0) {
			int r = -errno;
			read_fs_messages(c, fsfd);
			if (!c->kmsg[0])
				snprintf(c->kmsg, sizeof(c->kmsg), "option %s%s%s", opt, eq ? "=" : "",
					 eq ? eq + 1 : "");
			c->syscall = "fsconfig";
			return r;
		}
	}
	if (FAULT_OR(fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) < 0) {
		int r = sys_fail(c, "fsconfig create");
		read_fs_messages(c, fsfd);
		return r;
	}
	fd = (int)FAULT_OR(fsmount(fsfd, FSMOUNT_CLOEXEC, 0));
	if (fd < 0)
		return sys_fail(c, "fsmount");
	/* Shared before anything is cloned of it: each clone is a peer (prop_early()). */
	if (op->propagation) {
		int r = set_propagation(c, fd, op->slot, op->propagation);

		if (r < 0) {
			close(fd);
			return r;
		}
	}
	return fd;
}

static int do_sb_create(struct exec_ctx *c, const struct plan_op *op)
{
	int fd = c->ahead ? ahead_take(c, op) : sb_create(c, op);

	if (fd < 0)
		return fd;
	c->fds[op->slot] = fd;
	return 0;
}

static int do_template_bind(struct exec_ctx *c, const struct plan_op *op)
{
	struct mount_attr attr = { .propagation = MS_PRIVATE };
	int fd;

	log_debug("open_tree %s OPEN_TREE_CLONE", op->path);
	fd = (int)FAULT_OR(open_tree(AT_FDCWD, op->path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
	if (fd < 0)
		return sys_fail(c, "open_tree");
	c->fds[op->slot] = fd;
	/* A clone of a shared mount joins its peer group: the template must not. */
	if (FAULT_OR(mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof(attr))) < 0)
		return sys_fail(c, "mount_setattr private");
	return 0;
}

static int mknode_at(int at, const char *name, bool dir)
{
	return dir ? mkdirat(at, name, 0755) : mknodat(at, name, S_IFREG | 0644, 0);
}

/*
 * Make path, and the parents it lacks, in the filesystem of root. Each
 * parent is opened beneath root first (openat2, no symlink followed) but
 * in a plain template (one of ours, without content: its directories are
 * the ones mkpath made, and nothing is mounted on a template), where the
 * path is used as it is and a parent made only when it is missing.
 */
static int make_node(struct exec_ctx *c, int root, const char *path, bool dir, bool plain,
		     unsigned depth)
{
	_cleanup_free_ char *parent = NULL;
	_cleanup_close_ int dfd = -EBADF;
	const char *base = strrchr(path, '/'), *name = path;
	struct stat st;
	int at = root, r;

	if (depth > 4096)
		return -ELOOP;
	if (plain && path[0] != '/') {
		r = mknode_at(root, path, dir);
		if (r < 0 && errno == ENOENT && base) { /* the parent is missing: made first */
			parent = strndup(path, (size_t)(base - path));
			if (!parent)
				return -ENOMEM;
			r = make_node(c, root, parent, true, true, depth + 1);
			if (r < 0)
				return r;
			r = mknode_at(root, path, dir);
		}
	} else {
		/* A name in root itself: root is the directory (openat2 of "" would reopen it). */
		if (base > path) {
			parent = strndup(path, (size_t)(base - path));
			if (!parent)
				return -ENOMEM;
			dfd = open_beneath(root, parent, O_PATH | O_DIRECTORY);
			if (dfd < 0 && errno == ENOENT) {
				r = make_node(c, root, parent, true, false, depth + 1);
				if (r < 0)
					return r;
				dfd = open_beneath(root, parent, O_PATH | O_DIRECTORY);
			}
			if (dfd < 0)
				return sys_fail(c, "openat2");
			at = dfd;
		}
		name = base ? base + 1 : path;
		r = mknode_at(at, name, dir);
	}
	if (r == 0)
		return 0;
	if (errno != EEXIST)
		return sys_fail(c, dir ? "mkdirat" : "mknodat");
	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return sys_fail(c, "fstatat");
	if (S_ISDIR(st.st_mode) != dir) {
		c->syscall = dir ? "mkdirat" : "mknodat";
		return dir ? -ENOTDIR : -EISDIR;
	}
	return 0;
}

static int do_mkpath(struct exec_ctx *c, const struct plan_op *op)
{
	bool dir = op->node != NODE_FILE;

	if (op->node == NODE_UNKNOWN && op->like_slot != IDX_NONE) {
		struct stat st;

		if (fstat(c->fds[op->like_slot], &st) < 0)
			return sys_fail(c, "fstat");
		dir = S_ISDIR(st.st_mode);
	}
	return make_node(c, c->fds[op->slot], op->path, dir, c->plain && c->plain[op->slot], 0);
}

static int do_setattr(struct exec_ctx *c, const struct plan_op *op);

/*
 * A clone, and with_attr: NULL, or the OP_SETATTR of the same slot that
 * comes right after it, made in the same call (open_tree_attr, Linux 6.15;
 * the flags of a read-only bind come with it). Without that call, the two.
 */
static int do_clone(struct exec_ctx *c, const struct plan_op *op, const struct plan_op *with_attr)
{
	static _Atomic bool no_open_tree_attr;
	_cleanup_close_ int at = -EBADF;
	int fd, from;

	log_debug("open_tree #%zu:/%s OPEN_TREE_CLONE", op->src, op->path);
	if (*op->path) {
		at = open_beneath(c->fds[op->src], op->path, O_PATH);
		if (at < 0)
			return sys_fail(c, "openat2");
	}
	from = at >= 0 ? at : c->fds[op->src];
	if (with_attr && !no_open_tree_attr) {
		struct mount_attr attr = { .attr_set = with_attr->attr_set, .attr_clr = with_attr->attr_clr };

		log_debug("  with set 0x%" PRIx32 " clear 0x%" PRIx32, with_attr->attr_set, with_attr->attr_clr);
		fd = (int)FAULT_OR(sys_open_tree_attr(from, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH,
						      &attr, sizeof(attr)));
		if (fd >= 0) {
			c->fds[op->slot] = fd;
			return 0;
		}
		if (errno != ENOSYS)
			return sys_fail(c, "open_tree_attr");
		no_open_tree_attr = true;
	}
	fd = (int)FAULT_OR(open_tree(from, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
	if (fd < 0)
		return sys_fail(c, "open_tree");
	c->fds[op->slot] = fd;
	if (!with_attr)
		return 0;
	c->op = (size_t)(with_attr - c->p->ops); /* a failure names the setattr */
	return do_setattr(c, with_attr);
}

static int do_attach(struct exec_ctx *c, const struct plan_op *op)
{
	_cleanup_close_ int at = -EBADF;

	log_debug("move_mount #%zu -> #%zu:/%s", op->slot, op->src, op->path);
	if (c->direct && op->mount != IDX_NONE && c->direct[op->mount]) {
		/* plan_direct(): the name is a directory or file mkpath made, nothing is on it */
		if (FAULT_OR(move_mount(c->fds[op->slot], "", c->fds[op->src], op->path,
					MOVE_MOUNT_F_EMPTY_PATH)) < 0)
			return sys_fail(c, "move_mount");
		c->attached[op->slot] = true;
		return 0;
	}
	if (*op->path) {
		at = open_beneath(c->fds[op->src], op->path, O_PATH);
		if (at < 0)
			return sys_fail(c, "openat2");
	}
	if (FAULT_OR(move_mount(c->fds[op->slot], "", at >= 0 ? at : c->fds[op->src], "",
				MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) < 0)
		return sys_fail(c, "move_mount");
	if (c->attached)
		c->attached[op->slot] = true;
	return 0;
}

static int do_setattr(struct exec_ctx *c, const struct plan_op *op)
{
	struct mount_attr attr = { .attr_set = op->attr_set, .attr_clr = op->attr_clr };

	log_debug("mount_setattr #%zu set 0x%" PRIx32 " clear 0x%" PRIx32, op->slot, op->attr_set,
		  op->attr_clr);
	if (FAULT_OR(mount_setattr(c->fds[op->slot], "", AT_EMPTY_PATH, &attr, sizeof(attr))) < 0)
		return sys_fail(c, "mount_setattr");
	return 0;
}

static int do_sb_rdonly(struct exec_ctx *c, const struct plan_op *op)
{
	_cleanup_close_ int fsfd = -EBADF;

	log_debug("fspick #%zu, reconfigure ro", op->slot);
	fsfd = (int)FAULT_OR(fspick(c->fds[op->slot], "", FSPICK_EMPTY_PATH | FSPICK_CLOEXEC));
	if (fsfd < 0)
		return sys_fail(c, "fspick");
	if (fsconfig(fsfd, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0 ||
	    FAULT_OR(fsconfig(fsfd, FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0)) < 0) {
		int r = -errno;
		read_fs_messages(c, fsfd);
		c->syscall = "fsconfig reconfigure";
		return r;
	}
	return 0;
}

static int do_propagation(struct exec_ctx *c, const struct plan_op *op)
{
	/* mount_setattr acts on mounts of the caller's own namespace only */
	if (c->nsfds && op->mount != IDX_NONE) {
		int r = enter_ns(c, c->p->tree->mounts[op->mount].ns);
		if (r < 0)
			return r;
	}

	return set_propagation(c, c->fds[op->slot], op->slot, op->propagation);
}

static int do_set_group(struct exec_ctx *c, const struct plan_op *op)
{
	log_debug("move_mount #%zu -> #%zu MOVE_MOUNT_SET_GROUP", op->src, op->slot);
	if (FAULT_OR(move_mount(c->fds[op->src], "", c->fds[op->slot], "",
				MOVE_MOUNT_SET_GROUP | MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) < 0)
		return sys_fail(c, "move_mount MOVE_MOUNT_SET_GROUP");
	return 0;
}

/* A clone of a shared mount is a peer of it: exactly what a slave of that group needs. */
static int do_peer_bind(struct exec_ctx *c, const struct plan_op *op)
{
	int fd;

	log_debug("open_tree %s OPEN_TREE_CLONE (peer)", op->path);
	fd = (int)FAULT_OR(open_tree(AT_FDCWD, op->path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
	if (fd < 0)
		return sys_fail(c, "open_tree");
	c->fds[op->slot] = fd;
	return 0;
}

/*
 * Attach the finished tree on / and make it the namespace's root:
 * pivot_root(".", ".") stacks the old root on the new one, and a lazy
 * unmount of "." drops it, with everything that was mounted in it.
 */
static int do_set_root(struct exec_ctx *c, const struct plan_op *op)
{
	int fd = c->fds[op->slot];
	size_t k = c->p->tree->mounts[op->mount].ns;
	int r;

	/* Several namespaces: each tree, built detached, is attached in its own namespace. */
	if (c->nsfds && (r = enter_ns(c, k)) < 0)
		return r;
	log_debug("move_mount #%zu -> /, pivot_root", op->slot);
	if (FAULT_OR(move_mount(fd, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH)) < 0)
		return sys_fail(c, "move_mount /");
	if (c->attached)
		c->attached[op->slot] = true;
	if (fchdir(fd) < 0)
		return sys_fail(c, "fchdir");
	if (FAULT_OR(sys_pivot_root(".", ".")) < 0)
		return sys_fail(c, "pivot_root");
	if (FAULT_OR(umount2(".", MNT_DETACH)) < 0)
		return sys_fail(c, "umount2 old root");
	if (chdir("/") < 0)
		return sys_fail(c, "chdir /");
	return 0;
}

/*
 * The image's files of one superblock, into its fresh template. The last
 * content op reads the image's trailer: a content digest that does not
 * match fails the restore here, before anything is assembled.
 */
static int do_content(struct exec_ctx *c, const struct plan_op *op)
{
	log_debug("content #%zu <- image content of superblock %zu", op->slot, op->sb);
	return content_op(c->img, op->sb, c->fds[op->slot], &c->content_left, &c->syscall, c->kmsg,
			  sizeof(c->kmsg));
}

static int run_op(struct exec_ctx *c, const struct plan_op *op)
{
	switch (op->type) {
	case OP_SB_CREATE:
		return do_sb_create(c, op);
	case OP_TEMPLATE_BIND:
		return do_template_bind(c, op);
	case OP_MKPATH:
		return do_mkpath(c, op);
	case OP_CLONE:
		return do_clone(c, op, NULL);
	case OP_ATTACH:
		return do_attach(c, op);
	case OP_SETATTR:
		return do_setattr(c, op);
	case OP_SB_RDONLY:
		return do_sb_rdonly(c, op);
	case OP_SET_PROPAGATION:
		return do_propagation(c, op);
	case OP_SET_ROOT:
		return do_set_root(c, op);
	case OP_SET_GROUP:
		return do_set_group(c, op);
	case OP_PEER_BIND:
		return do_peer_bind(c, op);
	case OP_CONTENT:
		return do_content(c, op);
	}
	return -EINVAL;
}

/* Enough fds for every slot: root may raise the hard limit up to fs.nr_open. */
int raise_fd_limit(size_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur >= need)
		return 0;
	rl.rlim_cur = need;
	if (rl.rlim_max < need)
		rl.rlim_max = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	return 0;
}

/* asprintf that leaves NULL on failure (the message is then shorter, never wrong). */
static void r_asprintf(char **ret, const char *fmt, ...) _printf_(2, 3);
static void r_asprintf(char **ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(ret, fmt, ap) < 0)
		*ret = NULL;
	va_end(ap);
}

/* -------------------------------------------------------------------------- */
/*
 * Lazy ops and few fds ("economy"). A plan of N mounts has more than N
 * slots, and its create phase makes every clone before the assemble phase
 * attaches the first: N detached mounts alive at once, each an fd. That is
 * slow (building 10,000 binds that way takes 20% longer than cloning,
 * attaching and closing each in turn: the kernel's objects are cold by the
 * time they are attached and closed) and, without CAP_SYS_RESOURCE to raise
 * RLIMIT_NOFILE (a container; a sandbox with a hard limit of 20,000),
 * impossible at 50,000 mounts. So the executor runs an op when its result
 * is needed, and keeps only the fds it needs at a time:
 *  - the ops that touch nothing but their own slot (OP_SB_CREATE, OP_CLONE
 *    of a mount, OP_SETATTR, OP_MKPATH) wait in a queue per slot, in plan order, and
 *    run when an op that has to run needs the slot; an attach onto a mount
 *    also runs the queue of its superblock's template (the mountpoint);
 *  - after its last use an fd is closed (an attached mount) or parked
 *    first (a mount never attached: one RCU wait for all, as at the end),
 *    unless clones are taken of it;
 *  - when fds are scarce (the limit could not be raised; MNTCR_FD_ECONOMY=1
 *    forces it, for the tests), an attached mount that only the propagation
 *    phase needs again, and that no other mount hides, is closed before
 *    that phase and reopened then by its path, checked to be the same
 *    mount by its unique id.
 * The calls are the same; only calls on independent slots change order.
 */
struct economy {
	size_t *next;	     /* per op: the next queued op of the same slot */
	size_t *head, *tail; /* per slot: its queue */
	size_t *last_pre;    /* per slot: the last running op before propagation that needs it */
	size_t *last;	     /* per slot: the last running op that needs it */
	size_t *mount;	     /* per slot: the image mount attached from it, or IDX_NONE */
	size_t *tmpl;	     /* per slot: the template of that mount's superblock, or IDX_NONE */
	bool *keep;	     /* per slot: a clone source or a "like" mount: open until the end */
	uint64_t *id;	     /* per slot: unique mount id of a mount closed to be reopened */
	int *alias;	     /* per slot: a pristine clone of a template that is also a mount */
	size_t *clones;	     /* per slot: clones still to be taken of it */
	bool *aliased;	     /* per slot: clones are taken of its alias */
	bool reopen;	     /* close attached mounts before the propagation phase, reopen them there */
	bool *parked;	     /* per slot: a template parked in the yard after its content (eco_park_template) */
	bool *alias_parked;  /* per slot: its alias lies in the yard; alias[] may hold a handle on it */
	size_t handles, handles_max; /* handles on parked aliases kept open, and how many may be */
	int yard;	     /* mounts parked before their fd is closed */
};

/* Op i at the end of slot s's queue (the economy's, or ahead_order()'s dry copy). */
static void eco_enqueue(size_t *head, size_t *tail, size_t *next, size_t s, size_t i)
{
	next[i] = IDX_NONE;
	if (tail[s] == IDX_NONE)
		head[s] = i;
	else
		next[tail[s]] = i;
	tail[s] = i;
}

static bool eco_queued(const struct economy *e, const struct plan_op *op)
{
	switch (op->type) {
	case OP_SB_CREATE:
	case OP_SETATTR:
	case OP_MKPATH:
		return true;
	case OP_SET_PROPAGATION:
		/* a clone born a peer, made a slave before its attach (plan.c, prop_born()) */
		return op->phase == PHASE_CREATE;
	case OP_CLONE:
		/*
		 * A mount's clone runs before its attach, while everything is still
		 * private. A group's temporary source runs when the propagation phase needs
		 * it, so only if its template is never attached, or has an alias: cloned of
		 * a template that is shared by then, it would join the template's group.
		 */
		return op->mount != IDX_NONE || e->aliased[op->src] || e->mount[op->src] == IDX_NONE;
	default:
		return false;
	}
}

/* The slots op needs (its own first), at most 3. */
static size_t eco_refs(const struct mntcr_plan *p, const struct plan_op *op, size_t refs[static 3])
{
	size_t n = 0;

	if (op->slot < p->n_slots)
		refs[n++] = op->slot;
	if (op->src < p->n_slots && op->src != op->slot)
		refs[n++] = op->src;
	if (op->type == OP_MKPATH && op->like_slot < p->n_slots)
		refs[n++] = op->like_slot;
	return n;
}

/*
 * The template of the superblock of the mount attached from slot s, or
 * IDX_NONE: looked up once a slot (eco_init()), not for each op that
 * needs it, where the mount and its superblock were a cache miss each
 * (restore of 50,000 mix: 5 ms).
 */
static size_t eco_template(const struct economy *e, size_t s)
{
	return e->tmpl[s];
}

/*
 * The slots an op that runs where the plan has it needs ready: eco_refs(),
 * and for an attach the template of the filesystem it is attached in
 * (mkpath made the mountpoint there). At most 4.
 */
static size_t eco_needed(const struct exec_ctx *c, const struct economy *e, const struct plan_op *op,
			 size_t refs[static 4])
{
	size_t n = eco_refs(c->p, op, refs);

	if (op->type == OP_ATTACH && op->src < c->p->n_slots &&
	    (refs[n] = eco_template(e, op->src)) < c->p->n_slots)
		n++;
	return n;
}

static void eco_release(struct economy *e)
{
	/* The arrays are the executor's (struct arrays). */
	if (e->yard >= 0)
		close(e->yard);
	*e = (struct economy){ .yard = -EBADF };
}

static int eco_init(struct exec_ctx *c, struct economy *e)
{
	const struct mntcr_plan *p = c->p;
	size_t ns = p->n_slots + 1;

	*e = (struct economy){ .yard = -EBADF };
	e->next = arrays_take(&c->mem, p->n_ops + 1, sizeof(size_t));
	e->head = arrays_take(&c->mem, ns, sizeof(size_t));
	e->tail = arrays_take(&c->mem, ns, sizeof(size_t));
	e->last_pre = arrays_take(&c->mem, ns, sizeof(size_t));
	e->last = arrays_take(&c->mem, ns, sizeof(size_t));
	e->mount = arrays_take(&c->mem, ns, sizeof(size_t));
	e->tmpl = arrays_take(&c->mem, ns, sizeof(size_t));
	e->keep = arrays_take(&c->mem, ns, sizeof(bool));
	e->id = arrays_take(&c->mem, ns, sizeof(uint64_t));
	e->alias = arrays_take(&c->mem, ns, sizeof(int));
	e->clones = arrays_take(&c->mem, ns, sizeof(size_t));
	e->aliased = arrays_take(&c->mem, ns, sizeof(bool));
	e->parked = arrays_take(&c->mem, ns, sizeof(bool));
	e->alias_parked = arrays_take(&c->mem, ns, sizeof(bool));
	if (!e->parked || !e->alias_parked || !e->next || !e->head || !e->tail || !e->last_pre || !e->last || !e->mount ||
	    !e->tmpl || !e->keep || !e->id || !e->alias || !e->clones || !e->aliased)
		return -ENOMEM;
	for (size_t s = 0; s < ns; s++) {
		e->head[s] = e->tail[s] = e->last_pre[s] = e->last[s] = e->mount[s] = IDX_NONE;
		e->alias[s] = -EBADF;
	}
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct plan_op *op = &p->ops[i];

		if ((op->type == OP_ATTACH || op->type == OP_SET_ROOT) && op->slot < p->n_slots)
			e->mount[op->slot] = op->mount;
		if (op->type == OP_CLONE && op->src < p->n_slots)
			e->clones[op->src]++;
		if (op->type == OP_MKPATH && op->like_slot < p->n_slots)
			e->keep[op->like_slot] = true;
	}
	for (size_t s = 0; s < ns; s++)
		e->tmpl[s] = e->mount[s] == IDX_NONE ? IDX_NONE : p->sb_slot[p->tree->mounts[e->mount[s]].sb];
	return 0;
}

/* Slot s is a superblock's template, is also a mount, and has clones. */
static bool eco_template_mount(const struct economy *e, size_t s)
{
	return e->clones[s] && eco_template(e, s) == s;
}

/*
 * The rest of the economy, once it is known whether fds are scarce
 * (e->reopen). Clones of a superblock's template that is also a mount are
 * taken of its alias. Not when that mount stays bare, with no children
 * and no flags of its own, in the only namespace, while fds are plenty:
 * a clone of it after its attach is what its alias would be, without the
 * alias's clone, parking and unmount. Other clone sources stay open.
 */
static void eco_sources(struct exec_ctx *c, struct economy *e)
{
	const struct mntcr_plan *p = c->p;
	bool bare_ok = !e->reopen && p->tree->n_ns == 1;
	size_t refs[4];

	for (size_t s = 0; s < p->n_slots; s++)
		e->aliased[s] = eco_template_mount(e, s) &&
				(!bare_ok || p->tree->mounts[e->mount[s]].n_children > 0);
	for (size_t i = 0; bare_ok && i < p->n_ops; i++) {
		const struct plan_op *op = &p->ops[i];

		if (op->type == OP_SETATTR && op->slot < p->n_slots && eco_template_mount(e, op->slot))
			e->aliased[op->slot] = true;
	}
	for (size_t s = 0; s < p->n_slots; s++)
		if (e->clones[s] && !e->aliased[s])
			e->keep[s] = true;
	/* Last uses, by the ops that run where the plan has them. */
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct plan_op *op = &p->ops[i];
		size_t n;

		if (eco_queued(e, op))
			continue;
		n = eco_needed(c, e, op, refs);
		for (size_t k = 0; k < n; k++) {
			e->last[refs[k]] = i;
			if (op->phase != PHASE_PROPAGATION)
				e->last_pre[refs[k]] = i;
		}
	}
}

static int eco_ready(struct exec_ctx *c, struct economy *e, size_t s);

/*
 * What the economy parks in its yard, each kind under names of its own
 * (row * slots + slot): a mount never attached, when its fd is closed; an
 * alias, after its last clone; and when fds are scarce, a template after
 * its content, and an alias waiting for its clones.
 */
enum yard_row { YARD_UNATTACHED, YARD_ALIAS, YARD_TEMPLATE, YARD_WAITING_ALIAS };

static size_t yard_name(const struct mntcr_plan *p, enum yard_row row, size_t s)
{
	return (size_t)row * p->n_slots + s;
}

static void eco_park(struct economy *e, size_t s, int fd);

/* op, and with_attr (a clone's flags, do_clone()) or NULL. */
static int run_op_with(struct exec_ctx *c, const struct plan_op *op, const struct plan_op *with_attr)
{
	return op->type == OP_CLONE ? do_clone(c, op, with_attr) : run_op(c, op);
}

/*
 * A queued op (with_attr: as do_clone()'s). A clone runs later than planned, and its template may by
 * then be attached, carry flags and have mounts on it (it is also one of
 * the mounts): so clones are taken of an alias instead, a clone of the
 * template made right after the superblock, still private, bare and alone.
 */
static int eco_run(struct exec_ctx *c, struct economy *e, const struct plan_op *op,
		   const struct plan_op *with_attr)
{
	size_t n_slots = c->p->n_slots;
	int r, saved;

	if (op->type == OP_CLONE && op->src < n_slots && (e->alias[op->src] >= 0 || e->alias_parked[op->src])) {
		bool once = false;

		if (e->alias[op->src] < 0) {
			/*
			 * A handle on the alias where it lies in the yard: kept until its last
			 * clone while few are kept (a superblock's clones mostly come
			 * together), else taken for this clone alone.
			 */
			e->alias[op->src] = yard_open(e->yard, yard_name(c->p, YARD_WAITING_ALIAS, op->src), 0);
			if (e->alias[op->src] < 0)
				return sys_fail(c, "open_tree (parked alias)");
			once = e->handles >= e->handles_max;
			e->handles += !once;
		}
		saved = c->fds[op->src];
		c->fds[op->src] = e->alias[op->src];
		r = run_op_with(c, op, with_attr);
		c->fds[op->src] = saved;
		if (r == 0 && --e->clones[op->src] == 0) { /* the last clone of it */
			if (!e->alias_parked[op->src])
				eco_park(e, yard_name(c->p, YARD_ALIAS, op->src), e->alias[op->src]);
			else if (!once)
				e->handles--;
			once = true;
		}
		if (once) { /* in the yard already, if parked: closing the handle drops nothing */
			close(e->alias[op->src]);
			e->alias[op->src] = -EBADF;
		}
		return r;
	}
	r = run_op_with(c, op, with_attr);
	if (r < 0 || op->type != OP_SB_CREATE || !e->aliased[op->slot])
		return r;
	e->alias[op->slot] = open_tree(c->fds[op->slot], "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (e->alias[op->slot] < 0)
		return sys_fail(c, "open_tree (alias)");
	/* Few fds: it waits in the yard for its first clone, not as an fd (one per superblock). */
	if (e->reopen &&
	    yard_park(&e->yard, yard_name(c->p, YARD_WAITING_ALIAS, op->slot), e->alias[op->slot]) == 0) {
		close(e->alias[op->slot]);
		e->alias[op->slot] = -EBADF;
		e->alias_parked[op->slot] = true;
	}
	return 0;
}

/* A template parked after its content (eco_park_template), back: a clone of it is as good. */
static int eco_unpark(struct exec_ctx *c, struct economy *e, size_t s)
{
	int fd;

	if (!e->parked[s])
		return 0;
	fd = yard_open(e->yard, yard_name(c->p, YARD_TEMPLATE, s), OPEN_TREE_CLONE);
	if (fd < 0)
		return sys_fail(c, "open_tree (parked template)");
	c->fds[s] = fd;
	e->parked[s] = false;
	return 0;
}

/* Run slot s's queue. */
static int eco_flush(struct exec_ctx *c, struct economy *e, size_t s)
{
	size_t saved = c->op;
	int r0 = e->head[s] != IDX_NONE ? eco_unpark(c, e, s) : 0;

	if (r0 < 0)
		return r0;

	while (e->head[s] != IDX_NONE) {
		size_t j = e->head[s], refs[3], n;
		const struct plan_op *with_attr = NULL;
		int r;

		e->head[s] = e->next[j];
		/* a clone and the flags it is given next: one call */
		if (c->p->ops[j].type == OP_CLONE && c->p->ops[j].slot == s && e->head[s] != IDX_NONE &&
		    c->p->ops[e->head[s]].type == OP_SETATTR && c->p->ops[e->head[s]].slot == s) {
			with_attr = &c->p->ops[e->head[s]];
			e->head[s] = e->next[e->head[s]];
		}
		n = eco_refs(c->p, &c->p->ops[j], refs);
		/* What it reads: the template of a clone (or its alias, then only made), a like mount. */
		for (size_t k = 1; k < n; k++) {
			bool alias = c->p->ops[j].type == OP_CLONE && refs[k] == c->p->ops[j].src &&
				     e->aliased[refs[k]];

			if ((r = alias ? eco_flush(c, e, refs[k]) : eco_ready(c, e, refs[k])) < 0)
				return r;
		}
		c->op = j; /* a failure names the op that failed */
		c->syscall = NULL;
		c->kmsg[0] = 0;
		r = eco_run(c, e, &c->p->ops[j], with_attr);
		if (r < 0)
			return r;
		c->op = saved;
	}
	e->tail[s] = IDX_NONE;
	return 0;
}

/* Slot s, about to be used: its queue run, its fd reopened if it was closed for the propagation phase. */
static int eco_ready(struct exec_ctx *c, struct economy *e, size_t s)
{
	_cleanup_(strbuf_release) struct strbuf buf = { 0 };
	const char *path;
	struct statx stx;
	int r, fd;

	r = eco_unpark(c, e, s);
	if (r == 0)
		r = eco_flush(c, e, s);
	if (r < 0 || c->fds[s] >= 0 || !e->id[s])
		return r;
	path = mount_path(c->p->tree, e->mount[s], &buf);
	if (!path)
		return -ENOMEM;
	fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
	if (fd < 0)
		return sys_fail(c, "open_tree (reopen)");
	if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE, &stx) < 0 ||
	    !(stx.stx_mask & STATX_MNT_ID_UNIQUE) || stx.stx_mnt_id != e->id[s]) {
		close(fd);
		c->syscall = "open_tree (reopen)";
		snprintf(c->kmsg, sizeof(c->kmsg), "%s is no longer the mount restored there", path);
		return -ESTALE;
	}
	c->fds[s] = fd;
	return 0;
}

/* Move a never attached mount into the yard, so that closing its fd unmounts nothing yet. */
static void eco_park(struct economy *e, size_t s, int fd)
{
	(void)yard_park(&e->yard, s, fd);
}

/* Before op c->op runs: the queues of the slots it needs run (a failure names the queued op). */
static int eco_needs(struct exec_ctx *c, struct economy *e, const struct plan_op *op)
{
	size_t i = c->op, refs[4], n = eco_needed(c, e, op, refs);
	int r = 0;

	c->syscall = NULL;
	c->kmsg[0] = 0;
	for (size_t k = 0; k < n && r == 0; k++)
		r = eco_ready(c, e, refs[k]);
	if (r == 0)
		c->op = i;
	return r;
}

/*
 * When fds are scarce: a template whose content was just written, parked
 * in the yard until it is needed (eco_ready() clones it back). The
 * content comes in the image's order, so each template of a superblock
 * with files would otherwise stay open from its content to its attach:
 * 30,000 tmpfs with content, all at once.
 */
static void eco_park_template(struct exec_ctx *c, struct economy *e, size_t s)
{
	if (c->fds[s] < 0 || e->head[s] != IDX_NONE ||
	    yard_park(&e->yard, yard_name(c->p, YARD_TEMPLATE, s), c->fds[s]) < 0)
		return; /* stays open */
	close(c->fds[s]);
	c->fds[s] = -EBADF;
	e->parked[s] = true;
}

/* After op i: close the fds it was the last to need. */
static void eco_done(struct exec_ctx *c, struct economy *e, size_t i)
{
	const struct plan_op *op = &c->p->ops[i];
	size_t refs[4], n = eco_needed(c, e, op, refs);

	if (op->type == OP_CONTENT && e->reopen && op->slot < c->p->n_slots && e->last[op->slot] != i)
		eco_park_template(c, e, op->slot);

	for (size_t k = 0; k < n; k++) {
		size_t s = refs[k];
		const struct mntcr_mount *m;
		struct statx stx;

		if (c->fds[s] < 0 || e->keep[s] || e->head[s] != IDX_NONE)
			continue;
		if (e->last[s] == i) {
			if (!c->attached[s])
				eco_park(e, yard_name(c->p, YARD_UNATTACHED, s), c->fds[s]);
			close(c->fds[s]);
			c->fds[s] = -EBADF;
			continue;
		}
		/* Needed again by the propagation phase only: reopened then, by path (one namespace). */
		if (!e->reopen || e->last_pre[s] != i || op->phase == PHASE_PROPAGATION || !c->attached[s] ||
		    e->mount[s] == IDX_NONE || c->nsfds)
			continue;
		m = &c->p->tree->mounts[e->mount[s]];
		if (m->hidden || m->path_len >= PATH_MAX - 1 ||
		    statx(c->fds[s], "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE, &stx) < 0 ||
		    !(stx.stx_mask & STATX_MNT_ID_UNIQUE))
			continue;
		e->id[s] = stx.stx_mnt_id;
		close(c->fds[s]);
		c->fds[s] = -EBADF;
	}
}

/* -------------------------------------------------------------------------- */
/*
 * Superblocks made ahead ("ahead"). Making a tmpfs (fsopen, fsconfig,
 * fsmount) costs more than attaching it, so a second thread makes
 * superblocks while the executor attaches them. The thread takes the
 * OP_SB_CREATE ops in the order the executor will need them
 * (ahead_order(): the economy's walk, done dry) and keeps at most
 * AHEAD_WINDOW mounts made and not yet taken (fewer, or none, when fds
 * are scarce). The executor takes each
 * at its OP_SB_CREATE (ahead_take()): made, it has its fd; not yet begun,
 * it makes it itself; being made, it makes the thread's next one
 * meanwhile, so that both CPUs make superblocks. A wrong guess of the
 * order costs time, never a different result. The making stops at the
 * first failure, which the executor reports when it reaches that op, as
 * if it had run it.
 *
 * Every new mount and superblock takes the kernel's per-CPU allocator
 * lock, so the two threads contend there: 10,000 tmpfs are attached 22%
 * faster (91 -> 71 ms), 10,000 nested ones 28% (135 -> 97 ms), but a plan
 * that also clones many mounts got 50% slower (mix: 78 -> 116 ms). So only
 * plans of AHEAD_MIN superblocks or more that clone few mounts
 * (AHEAD_CLONES), and in a single namespace (setns needs a process of one
 * thread).
 */
#define AHEAD_WINDOW 64
#define AHEAD_MIN 16	/* superblocks */
#define AHEAD_CLONES 64 /* clones any plan may have (the host's mounts), beyond one per 8 superblocks */

enum ahead_state { AHEAD_QUEUED, AHEAD_RUNNING, AHEAD_MADE, AHEAD_FAILED, AHEAD_TAKEN };

struct ahead {
	pthread_mutex_t lock;
	pthread_cond_t wake_worker;
	bool worker_waits, stop;
	pthread_t thread;
	size_t *order;	/* the OP_SB_CREATE ops, in the order of need expected */
	size_t *entry;	/* per slot: its entry in order, or IDX_NONE */
	uint8_t *state; /* per entry: enum ahead_state */
	int *fd;	/* per entry: the mount made (AHEAD_MADE), or -errno (AHEAD_FAILED) */
	size_t n, next; /* entries; the next one the thread looks at */
	size_t reached; /* 1 + the furthest entry the executor has asked for */
	size_t made;	/* made and not yet taken */
	size_t window;	/* how many may be: AHEAD_WINDOW, fewer when fds are scarce */
	const char *fail_syscall; /* the first failure, which stopped the making */
	char fail_kmsg[256];
	/* The contexts that make them, the thread's and the executor's: same plan, kmsg and syscall of their own */
	struct exec_ctx wc, mc;
};

/* Slot s needed: its queue, as eco_flush() would run it, appending its OP_SB_CREATE ops to a->order. */
static void ahead_walk(const struct exec_ctx *c, struct ahead *a, size_t *head, const size_t *next, size_t s)
{
	while (head[s] != IDX_NONE) {
		size_t j = head[s], refs[3], n = eco_refs(c->p, &c->p->ops[j], refs);

		head[s] = next[j];
		for (size_t k = 1; k < n; k++)
			ahead_walk(c, a, head, next, refs[k]);
		if (c->p->ops[j].type == OP_SB_CREATE) {
			a->entry[s] = a->n;
			a->order[a->n++] = j;
		}
	}
}

/* run_ops() done dry: the order in which the executor will need the superblocks. */
static int ahead_order(const struct exec_ctx *c, struct ahead *a)
{
	const struct mntcr_plan *p = c->p;
	_cleanup_free_ size_t *head = malloc((p->n_slots + 1) * sizeof(size_t));
	_cleanup_free_ size_t *tail = malloc((p->n_slots + 1) * sizeof(size_t));
	_cleanup_free_ size_t *next = malloc((p->n_ops + 1) * sizeof(size_t));
	size_t refs[4];

	if (!head || !tail || !next)
		return -ENOMEM;
	for (size_t s = 0; s < p->n_slots; s++)
		head[s] = tail[s] = IDX_NONE;
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct plan_op *op = &p->ops[i];

		if (op->type == OP_PEER_BIND)
			continue;
		if (eco_queued(c->eco, op)) {
			eco_enqueue(head, tail, next, op->slot, i);
			continue;
		}
		for (size_t k = 0, n = eco_needed(c, c->eco, op, refs); k < n; k++)
			ahead_walk(c, a, head, next, refs[k]);
	}
	for (size_t s = 0; s < p->n_slots; s++)
		ahead_walk(c, a, head, next, s);
	return 0;
}

/*
 * Entry k's state, changed under a->lock, and read without it only by an
 * executor that waits for one being made to be made (ahead_take()).
 */
static void ahead_set(struct ahead *a, size_t k, enum ahead_state st)
{
	__atomic_store_n(&a->state[k], (uint8_t)st, __ATOMIC_RELEASE);
}

/* Room for the thread: how many more it may make now. Under a->lock. */
static size_t ahead_room(const struct ahead *a)
{
	size_t by_made, by_reach;

	if (a->made >= a->window || a->next >= a->reached + a->window)
		return 0;
	by_made = a->window - a->made;
	by_reach = a->reached + a->window - a->next;
	return by_made < by_reach ? by_made : by_reach;
}

/*
 * Make entry k, with the context x (the thread's or the executor's own
 * spare): called and returns with a->lock held, released meanwhile.
 */
static void ahead_make(struct ahead *a, struct exec_ctx *x, size_t k)
{
	const struct plan_op *op = &x->p->ops[a->order[k]];
	int fd;

	ahead_set(a, k, AHEAD_RUNNING);
	pthread_mutex_unlock(&a->lock);
	fd = sb_create(x, op);
	pthread_mutex_lock(&a->lock);
	a->fd[k] = fd;
	if (fd >= 0)
		a->made++;
	else if (!a->stop) { /* the first failure: kept for the executor to report, and no more made */
		a->fail_syscall = x->syscall;
		memcpy(a->fail_kmsg, x->kmsg, sizeof(a->fail_kmsg));
		a->stop = true;
	}
	ahead_set(a, k, fd >= 0 ? AHEAD_MADE : AHEAD_FAILED);
}

static void *ahead_run(void *arg)
{
	struct ahead *a = arg;

	pthread_mutex_lock(&a->lock);
	while (!a->stop && a->next < a->n) {
		size_t k = a->next;

		if (ahead_room(a) == 0) {
			a->worker_waits = true;
			pthread_cond_wait(&a->wake_worker, &a->lock);
			a->worker_waits = false;
			continue;
		}
		a->next++;
		if (a->state[k] == AHEAD_QUEUED) /* else the executor made it */
			ahead_make(a, &a->wc, k);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* OP_SB_CREATE op: its mount, made ahead or now. Returns the fd, or -errno. */
static int ahead_take(struct exec_ctx *c, const struct plan_op *op)
{
	struct ahead *a = c->ahead;
	size_t k = a->entry[op->slot];
	int r;

	if (k == IDX_NONE)
		return sb_create(c, op);
	pthread_mutex_lock(&a->lock);
	if (a->reached < k + 1)
		a->reached = k + 1;
	if (a->state[k] == AHEAD_QUEUED) {
		ahead_set(a, k, AHEAD_TAKEN);
		pthread_mutex_unlock(&a->lock);
		return sb_create(c, op);
	}
	/*
	 * Being made: the executor makes the thread's next one meanwhile, so
	 * that both CPUs make superblocks; with nothing left to make, it
	 * spins (a matter of microseconds: sleeping on a condition would cost
	 * more, a futex wait and a wake-up of this CPU), yielding.
	 */
	while (a->state[k] == AHEAD_RUNNING) {
		if (!a->stop && a->next < a->n && ahead_room(a) > 0) {
			size_t j = a->next++;

			if (a->state[j] == AHEAD_QUEUED)
				ahead_make(a, &a->mc, j);
			continue;
		}
		pthread_mutex_unlock(&a->lock);
		while (__atomic_load_n(&a->state[k], __ATOMIC_ACQUIRE) == AHEAD_RUNNING)
			sched_yield();
		pthread_mutex_lock(&a->lock);
	}
	r = a->fd[k];
	if (a->state[k] == AHEAD_MADE)
		a->made--;
	else { /* a failure, reported as this op's */
		c->syscall = a->fail_syscall;
		memcpy(c->kmsg, a->fail_kmsg, sizeof(c->kmsg));
	}
	ahead_set(a, k, AHEAD_TAKEN);
	/* Woken when half the window is free, not at every mount taken. */
	if (a->worker_waits && ahead_room(a) >= a->window / 2)
		pthread_cond_signal(&a->wake_worker);
	pthread_mutex_unlock(&a->lock);
	return r;
}

/* Start the thread, if it is worth one. Without it the executor makes every superblock itself. */
static void ahead_start(struct exec_ctx *c, struct ahead *a)
{
	const struct mntcr_plan *p = c->p;
	size_t n = 0, clones = 0;

	for (size_t i = 0; i < p->n_ops; i++) {
		n += p->ops[i].type == OP_SB_CREATE;
		clones += p->ops[i].type == OP_CLONE || p->ops[i].type == OP_PEER_BIND ||
			  p->ops[i].type == OP_TEMPLATE_BIND;
	}
	if (n < AHEAD_MIN || clones > AHEAD_CLONES + n / 8 || p->tree->n_ns > 1 || parallel_shares(2, 1) < 2)
		return;
	*a = (struct ahead){ .wc = *c, .mc = *c, .window = AHEAD_WINDOW };
	if (c->eco->reopen) { /* few fds: a share of them, or none */
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur / 256 < 8)
			return;
		if (rl.rlim_cur / 256 < a->window)
			a->window = rl.rlim_cur / 256;
	}
	a->order = arrays_take(&c->mem, n, sizeof(size_t));
	a->entry = arrays_take(&c->mem, p->n_slots, sizeof(size_t));
	a->state = arrays_take(&c->mem, n, sizeof(uint8_t));
	a->fd = arrays_take(&c->mem, n, sizeof(int));
	if (!a->order || !a->entry || !a->state || !a->fd)
		return;
	for (size_t s = 0; s < p->n_slots; s++)
		a->entry[s] = IDX_NONE;
	if (ahead_order(c, a) < 0 || a->n == 0)
		return;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->wake_worker, NULL);
	if (thread_start(&a->thread, ahead_run, a) < 0) {
		pthread_mutex_destroy(&a->lock);
		pthread_cond_destroy(&a->wake_worker);
		return;
	}
	log_debug("making %zu superblocks ahead on a second thread", a->n);
	c->ahead = a;
}

/* Stop the thread; close what it made that the executor did not take (after a failure). */
static void ahead_stop(struct exec_ctx *c)
{
	struct ahead *a = c->ahead;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_signal(&a->wake_worker);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	for (size_t k = 0; k < a->n; k++)
		if (a->state[k] == AHEAD_MADE)
			close(a->fd[k]);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->wake_worker);
	c->ahead = NULL;
}

/* The report of op c->op failing with r. */
static int report_failure(struct exec_ctx *c, int r)
{
	const struct mntcr_plan *p = c->p;
	const struct plan_op *op = &p->ops[c->op];
	const struct mntcr_mount *m = op->mount != IDX_NONE ? &p->tree->mounts[op->mount] : NULL;
	const char *call = c->syscall ? c->syscall : plan_op_name(op->type);
	struct strbuf line = { 0 };
	_cleanup_free_ char *who = NULL;

	(void)plan_op_format(p, c->op, &line);
	if (m)
		r_asprintf(&who, " for mount %" PRIu64 " at %s", m->id, mount_abs(p->tree, m));
	else if (op->path && op->type != OP_MKPATH)
		r_asprintf(&who, " of %s", op->path);
	report_op_failure(c->report, plan_phase_name(op->phase), c->op, m, op->path, call, who, r, c->kmsg,
			  &line);
	strbuf_release(&line);
	return r;
}

static int run_ops(struct exec_ctx *c, bool peers)
{
	const struct mntcr_plan *p = c->p;
	int r = 0;

	for (c->op = 0; c->op < p->n_ops; c->op++) {
		const struct plan_op *op = &p->ops[c->op];

		if ((op->type == OP_PEER_BIND) != peers)
			continue;
		/* The ops come phase by phase: time each (MNTCR_TIMING). */
		if (!peers && c->op > 0 && op->phase != p->ops[c->op - 1].phase)
			timing_mark(plan_phase_name(p->ops[c->op - 1].phase));
		if (eco_queued(c->eco, op)) { /* runs when its slot is needed */
			eco_enqueue(c->eco->head, c->eco->tail, c->eco->next, op->slot, c->op);
			continue;
		}
		r = eco_needs(c, c->eco, op);
		if (r == 0) {
			c->syscall = NULL;
			c->kmsg[0] = 0;
			r = run_op(c, op);
		}
		if (r < 0)
			return report_failure(c, r);
		eco_done(c, c->eco, c->op);
	}
	/* Whatever is still queued (nothing, in a plan where every slot is used). */
	for (size_t s = 0; !peers && s < p->n_slots; s++) {
		r = eco_flush(c, c->eco, s);
		if (r < 0)
			return report_failure(c, r);
	}
	if (!peers && p->n_ops > 0) {
		timing_mark(plan_phase_name(p->ops[p->n_ops - 1].phase));
		timing_mark("built");
	}
	return 0;
}

static int mntns_id(uint64_t *ret)
{
	_cleanup_close_ int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, NS_GET_MNTNS_ID, ret) < 0)
		return -errno;
	return 0;
}

/* unshare(CLONE_NEWNS): 1 when the new namespace's id is above cur (or cannot be had), 0 when not, or -errno. */
static int unshare_above(uint64_t cur)
{
	uint64_t id = 0;

	if (FAULT_OR(unshare(CLONE_NEWNS)) < 0)
		return -errno;
	if (mntns_id(&id) < 0 || id > cur)
		return 1;
	log_debug("Namespace id %" PRIu64 " on CPU %d is not above %" PRIu64 ", trying again", id, sched_getcpu(),
		  cur);
	return 0;
}

/*
 * unshare(CLONE_NEWNS), making sure the new namespace's id is above our
 * current one. Binding a namespace file (restore --persist) fails with
 * EINVAL unless the bound namespace's id is above the binder's (the loop
 * check), and Linux 6.18 hands out namespace ids from per-CPU batches, so a
 * namespace made on one CPU can get a lower id than an older one made on
 * another. The CPU it runs on first, which mostly gives a newer id (always
 * above a namespace as old as the host's), then each CPU in turn until one
 * does. 1,000 binds: the namespace phase 0.45-0.52 -> 0.40 ms.
 */
int unshare_newer(void)
{
	cpu_set_t orig, one;
	uint64_t cur = 0;
	int r;

	if (mntns_id(&cur) < 0 || sched_getaffinity(0, sizeof(orig), &orig) < 0)
		return FAULT_OR(unshare(CLONE_NEWNS)) < 0 ? -errno : 0;
	r = unshare_above(cur);
	for (unsigned round = 0; round < 2 && r == 0; round++)
		for (int cpu = 0; cpu < CPU_SETSIZE && r == 0; cpu++) {
			if (!CPU_ISSET(cpu, &orig))
				continue;
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			(void)sched_setaffinity(0, sizeof(one), &one);
			r = unshare_above(cur);
			(void)sched_setaffinity(0, sizeof(orig), &orig);
		}
	if (r == 0)
		log_debug("No CPU gave a namespace id above %" PRIu64 "; --persist may fail", cur);
	return r < 0 ? r : 0;
}

/*
 * Which mounts can be attached by name below their parent's fd, without
 * opening the mountpoint with openat2 (RESOLVE_BENEATH | NO_SYMLINKS |
 * NO_XDEV) first. The parent's superblock is
 * one we made and hold no content in, and no other child of the parent
 * sits on the same path (a stack). A name of one component: move_mount
 * follows no symlink in it. A longer path only in a tmpfs or ramfs (one
 * of ours, "plain"): its directories are the ones mkpath made, no symlink
 * among them (proc and sysfs have their own, magic ones included, which
 * would lead out), and no other child of the parent may sit on a
 * directory the path goes through (its walk would enter that mount): the
 * children's paths are hashed, and a collision only costs an openat2.
 */
static int plan_direct(struct exec_ctx *c)
{
	const struct mntcr_tree *t = c->p->tree;
	bool *content = arrays_take(&c->mem, t->n_sbs + 1, sizeof(bool));
	struct u64map paths = { 0 };
	int r = 0;

	c->direct = arrays_take(&c->mem, t->n_mounts + 1, 1);
	c->plain = arrays_take(&c->mem, c->p->n_slots + 1, sizeof(bool));
	if (!content || !c->direct || !c->plain)
		return -ENOMEM;
	for (size_t i = 0; i < c->p->n_ops; i++)
		if (c->p->ops[i].type == OP_CONTENT && c->p->ops[i].sb < t->n_sbs)
			content[c->p->ops[i].sb] = true;
	for (size_t sb = 0; sb < t->n_sbs; sb++)
		if (t->sbs[sb].owned && !content[sb] && content_fstype(t->sbs[sb].fstype) &&
		    c->p->sb_slot[sb] < c->p->n_slots)
			c->plain[c->p->sb_slot[sb]] = true;
	for (size_t pi = 0; pi < t->n_mounts && r == 0; pi++) {
		const struct mntcr_mount *pm = &t->mounts[pi];
		bool plain = content_fstype(t->sbs[pm->sb].fstype), nested = false;

		if (!t->sbs[pm->sb].owned || content[pm->sb] || pm->n_children == 0)
			continue;
		for (size_t k = 0; plain && k < pm->n_children && !nested; k++)
			nested = strchr(mount_relpath(t, tree_child(t, pm, k)), '/') != NULL;
		/* The children's paths, when one of them has several components. */
		u64map_release(&paths);
		if (nested)
			r = u64map_reserve(&paths, pm->n_children);
		for (size_t k = 0; nested && k < pm->n_children && r == 0; k++) {
			const char *rel = mount_relpath(t, tree_child(t, pm, k));

			r = u64map_put(&paths, fnv1a(FNV1A_START, rel, strlen(rel)), k);
		}
		/* children in attach order: the same paths are next to each other */
		for (size_t k = 0; k < pm->n_children && r == 0; k++) {
			size_t ci = tree_child_idx(t, pm, k), any;
			const struct mntcr_mount *m = &t->mounts[ci];
			const char *rel = mount_relpath(t, m), *q = rel, *slash;
			uint64_t h = FNV1A_START;
			bool through = false;

			if (!*rel || (!plain && strchr(rel, '/')))
				continue;
			if ((k > 0 && streq(mount_relpath(t, tree_child(t, pm, k - 1)), rel)) ||
			    (k + 1 < pm->n_children && streq(mount_relpath(t, tree_child(t, pm, k + 1)), rel)))
				continue;
			while (!through && (slash = strchr(q, '/'))) {
				h = fnv1a(h, q, (size_t)(slash - q));
				through = u64map_get(&paths, h, &any);
				h = fnv1a(h, "/", 1);
				q = slash + 1;
			}
			if (!through)
				c->direct[ci] = 1;
		}
	}
	u64map_release(&paths);
	return r;
}

/*
 * Closing the last fd of a mount that was never attached unmounts it, and
 * every unmount waits for an RCU grace period (KERNEL-FACTS §4.2; 50-100 us
 * here): with a temporary source per peer group that was most of a
 * restore's time. So the mounts that stayed detached (templates, temporary
 * sources, peer clones) are first moved into one detached tmpfs, and
 * closing that drops them all after a single wait. Cleanup, not part of
 * the plan (no fault injection); a mount that cannot be moved is closed
 * on its own, as before.
 */
static void park_detached(struct exec_ctx *c)
{
	_cleanup_close_ int yard = -EBADF;
	size_t n = 0;

	for (size_t i = 0; i < c->p->n_slots; i++)
		n += c->fds[i] >= 0 && !c->attached[i];
	if (n < 2)
		return;
	for (size_t i = 0; i < c->p->n_slots; i++) {
		if (c->fds[i] < 0 || c->attached[i])
			continue;
		if (yard_park(&yard, i, c->fds[i]) < 0) {
			if (yard < 0)
				return; /* no yard: they are closed as they are */
			continue;
		}
		close(c->fds[i]);
		c->fds[i] = -EBADF;
	}
}

/*
 * Several namespaces: one new namespace per tree, all made from the
 * building namespace before any mount of the trees exists. listmount(2)
 * from outside a namespace finds its root among the mounts whose ids
 * follow the namespace's own root mount's (Linux 6.18), so a tree made
 * before its namespace could not be listed from outside it.
 */
static int make_namespaces(struct exec_ctx *c)
{
	const char *call = "open /proc/self/ns/mnt";
	int r;

	c->base_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (c->base_ns < 0)
		goto fail;
	for (size_t k = 0; k < c->p->tree->n_ns; k++) {
		if (k > 0 && setns(c->base_ns, CLONE_NEWNS) < 0) {
			call = "setns";
			goto fail;
		}
		r = unshare_newer();
		if (r < 0) {
			errno = -r;
			call = "unshare CLONE_NEWNS";
			goto fail;
		}
		c->nsfds[k] = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
		if (c->nsfds[k] < 0)
			goto fail;
	}
	if (setns(c->base_ns, CLONE_NEWNS) < 0) {
		call = "setns";
		goto fail;
	}
	c->cur_ns = IDX_NONE;
	return 0;
fail:
	r = -errno;
	report_set(c->report, "namespace", MNTCR_NONE, 0, NULL, call, r,
		   "Restore failed in phase namespace: %s for %zu namespaces: %s", call, c->p->tree->n_ns,
		   strerror(-r));
	return r;
}

/*
 * Enter a new mount namespace and run the plan in it. The new namespace is
 * a copy of ours; before anything is mounted in it every mount is made
 * private, so nothing can propagate back. The only thing done before that:
 * clones of our mounts that must stay peers of their groups (masters of
 * slaves the image restores), which attach nothing anywhere.
 */
int plan_execute(const struct mntcr_plan *p, struct mntcr_report *report)
{
	return plan_execute_full(p, NULL, NULL, report);
}

int plan_execute_full(const struct mntcr_plan *p, struct mntcr_image *img, int *ret_nsfds,
		      struct mntcr_report *report)
{
	struct economy eco = { .yard = -EBADF };
	struct ahead ahead;
	struct exec_ctx c = { .p = p, .report = report, .img = img, .eco = &eco, .base_ns = -EBADF,
			      .cur_ns = IDX_NONE };
	size_t n_fds = p->n_slots + 64;
	int r;

	sys_fault_begin();
	for (size_t i = 0; i < p->n_ops; i++)
		c.content_left += p->ops[i].type == OP_CONTENT;

	if (p->engine == MNTCR_ENGINE_COMPAT)
		return compat_execute(p, img, report);

	if (arrays_map(&c.mem, p) < 0)
		return -ENOMEM;
	if (eco_init(&c, c.eco) < 0) {
		arrays_unmap(&c.mem);
		return -ENOMEM;
	}
	/* An fd per slot, and one per alias (eco_run): the most that can be open at once. */
	for (size_t s = 0; s < p->n_slots; s++)
		n_fds += eco_template_mount(&eco, s);
	r = raise_fd_limit(n_fds);
	if (r == -EPERM || getenv("MNTCR_FD_ECONOMY")) {
		/* Not allowed to raise the hard limit (no CAP_SYS_RESOURCE): make do with it. */
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
		}
		log_debug("%zu fds for %zu slots are not allowed: keeping few fds open", n_fds, p->n_slots);
		eco.reopen = true;
		eco.handles_max = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (size_t)rl.rlim_cur / 8 : 0;
		r = 0;
	}
	eco_sources(&c, &eco);
	if (r < 0) {
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "setrlimit", r,
			   "Restore failed in phase namespace: setrlimit RLIMIT_NOFILE to %zu for %zu mounts: %s",
			   n_fds, p->tree->n_mounts, strerror(-r));
		eco_release(&eco);
		arrays_unmap(&c.mem);
		return r;
	}
	c.fds = arrays_take(&c.mem, p->n_slots, sizeof(int));
	if (!c.fds) {
		eco_release(&eco);
		arrays_unmap(&c.mem);
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->n_slots; i++)
		c.fds[i] = -EBADF;
	c.attached = arrays_take(&c.mem, p->n_slots + 1, sizeof(bool));
	if (!c.attached || plan_direct(&c) < 0) {
		r = -ENOMEM;
		goto out;
	}

	r = unshare_newer();
	if (r < 0) {
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "unshare", r,
			   "Restore failed in phase namespace: unshare CLONE_NEWNS: %s", strerror(-r));
		goto out;
	}
	r = run_ops(&c, /* peers= */ true);
	if (r < 0)
		goto out;
	if (FAULT_OR(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) < 0) {
		r = -errno;
		report_set(report, "namespace", MNTCR_NONE, 0, "/", "mount", r,
			   "Restore failed in phase namespace: mount MS_REC|MS_PRIVATE of / in the new namespace: %s",
			   strerror(-r));
		goto out;
	}
	timing_mark("namespace");
	if (p->tree->n_ns > 1) {
		if (!ret_nsfds) {
			r = -EINVAL;
			goto out;
		}
		c.nsfds = ret_nsfds;
		for (size_t k = 0; k < p->tree->n_ns; k++)
			c.nsfds[k] = -EBADF;
		r = make_namespaces(&c);
		if (r < 0)
			goto out;
	}
	ahead_start(&c, &ahead);
	r = run_ops(&c, /* peers= */ false);
	ahead_stop(&c);
out:
	if (c.base_ns >= 0)
		close(c.base_ns);
	for (size_t k = 0; r < 0 && c.nsfds && k < p->tree->n_ns; k++)
		if (c.nsfds[k] >= 0) {
			close(c.nsfds[k]);
			c.nsfds[k] = -EBADF;
		}
	if (r == 0)
		park_detached(&c);
	for (size_t i = 0; i < p->n_slots; i++)
		if (c.fds[i] >= 0)
			close(c.fds[i]);
	for (size_t i = 0; eco.alias && i < p->n_slots; i++)
		if (eco.alias[i] >= 0) {
			eco_park(&eco, yard_name(p, YARD_ALIAS, i), eco.alias[i]);
			close(eco.alias[i]);
		}
	eco_release(&eco);
	arrays_unmap(&c.mem);
	timing_mark("close");
	return r;
}
