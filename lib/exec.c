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
#include <stdarg.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "mntcr/mntcr.h"
#include "plan.h"
#include "sys.h"
#include "tree.h"

struct exec_ctx {
	const struct mntcr_plan *p;
	int *fds;
	struct mntcr_report *report;
	size_t op;            /* index of the running op */
	const char *syscall;  /* the call that failed */
	char kmsg[256];       /* the kernel's fs_context message, if any */
};

#define FAULT_OR(call)                                                                             \
	({                                                                                         \
		int _f = sys_fault_check();                                                        \
		long _rc;                                                                          \
		if (_f < 0) {                                                                      \
			errno = -_f;                                                               \
			_rc = -1;                                                                  \
		} else                                                                             \
			_rc = (long)(call);                                                        \
		_rc;                                                                               \
	})

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

static int do_sb_create(struct exec_ctx *c, const struct plan_op *op)
{
	const struct mntcr_sb *sb = &c->p->tree->sbs[op->sb];
	_cleanup_close_ int fsfd = -EBADF;
	int fd;

	log_debug("fsopen %s source=%s options=%s", sb->fstype, sb->source ? sb->source : "none",
		  sb->opts ? sb->opts : "");
	fsfd = (int)FAULT_OR(fsopen(sb->fstype, FSOPEN_CLOEXEC));
	if (fsfd < 0)
		return sys_fail(c, "fsopen");
	if (sb->source && fsconfig(fsfd, FSCONFIG_SET_STRING, "source", sb->source, 0) < 0) {
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

static int make_node(struct exec_ctx *c, int root, const char *path, bool dir, unsigned depth)
{
	_cleanup_free_ char *parent = NULL;
	_cleanup_close_ int dfd = -EBADF;
	const char *base = strrchr(path, '/');
	struct stat st;
	int r;

	if (depth > 4096)
		return -ELOOP;
	parent = base ? strndup(path, (size_t)(base - path)) : strdup("");
	if (!parent)
		return -ENOMEM;
	base = base ? base + 1 : path;

	dfd = open_beneath(root, parent, O_PATH | O_DIRECTORY);
	if (dfd < 0 && errno == ENOENT && *parent) {
		r = make_node(c, root, parent, true, depth + 1);
		if (r < 0)
			return r;
		dfd = open_beneath(root, parent, O_PATH | O_DIRECTORY);
	}
	if (dfd < 0)
		return sys_fail(c, "openat2");
	if (dir)
		r = mkdirat(dfd, base, 0755);
	else
		r = mknodat(dfd, base, S_IFREG | 0644, 0);
	if (r == 0)
		return 0;
	if (errno != EEXIST)
		return sys_fail(c, dir ? "mkdirat" : "mknodat");
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
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
	return make_node(c, c->fds[op->slot], op->path, dir, 0);
}

static int do_clone(struct exec_ctx *c, const struct plan_op *op)
{
	_cleanup_close_ int at = -EBADF;
	int fd;

	log_debug("open_tree #%zu:/%s OPEN_TREE_CLONE", op->src, op->path);
	if (*op->path) {
		at = open_beneath(c->fds[op->src], op->path, O_PATH);
		if (at < 0)
			return sys_fail(c, "openat2");
	}
	fd = (int)FAULT_OR(open_tree(at >= 0 ? at : c->fds[op->src], "",
				     OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
	if (fd < 0)
		return sys_fail(c, "open_tree");
	c->fds[op->slot] = fd;
	return 0;
}

static int do_attach(struct exec_ctx *c, const struct plan_op *op)
{
	_cleanup_close_ int at = -EBADF;

	log_debug("move_mount #%zu -> #%zu:/%s", op->slot, op->src, op->path);
	if (*op->path) {
		at = open_beneath(c->fds[op->src], op->path, O_PATH);
		if (at < 0)
			return sys_fail(c, "openat2");
	}
	if (FAULT_OR(move_mount(c->fds[op->slot], "", at >= 0 ? at : c->fds[op->src], "",
				MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) < 0)
		return sys_fail(c, "move_mount");
	return 0;
}

static int do_setattr(struct exec_ctx *c, const struct plan_op *op)
{
	struct mount_attr attr = { .attr_set = op->attr_set, .attr_clr = op->attr_clr };

	log_debug("mount_setattr #%zu set 0x%" PRIx64 " clear 0x%" PRIx64, op->slot, op->attr_set,
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
	struct mount_attr attr = { .propagation = op->propagation };

	log_debug("mount_setattr #%zu propagation 0x%" PRIx64, op->slot, op->propagation);
	if (FAULT_OR(mount_setattr(c->fds[op->slot], "", AT_EMPTY_PATH, &attr, sizeof(attr))) < 0)
		return sys_fail(c, "mount_setattr propagation");
	return 0;
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

	log_debug("move_mount #%zu -> /, pivot_root", op->slot);
	if (FAULT_OR(move_mount(fd, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH)) < 0)
		return sys_fail(c, "move_mount /");
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
		return do_clone(c, op);
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
	}
	return -EINVAL;
}

/* Enough fds for every slot: root may raise the hard limit up to fs.nr_open. */
static int raise_fd_limit(size_t need)
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

static int run_ops(struct exec_ctx *c, bool peers)
{
	const struct mntcr_plan *p = c->p;
	int r = 0;

	for (c->op = 0; c->op < p->n_ops; c->op++) {
		const struct plan_op *op = &p->ops[c->op];

		if ((op->type == OP_PEER_BIND) != peers)
			continue;
		c->syscall = NULL;
		c->kmsg[0] = 0;
		r = run_op(c, op);
		if (r < 0) {
			const struct mntcr_mount *m = op->mount != IDX_NONE ? &p->tree->mounts[op->mount] : NULL;
			const char *call = c->syscall ? c->syscall : plan_op_name(op->type);
			struct strbuf line = { 0 };
			_cleanup_free_ char *who = NULL;

			(void)plan_op_format(p, c->op, &line);
			if (m)
				r_asprintf(&who, " for mount %" PRIu64 " at %s", m->id, m->mountpoint);
			else if (op->path && op->type != OP_MKPATH)
				r_asprintf(&who, " of %s", op->path);
			report_set(c->report, plan_phase_name(op->phase), c->op, m ? m->id : 0,
				   m ? m->mountpoint : op->path, call, r,
				   "Restore failed in phase %s: %s%s: %s%s%s%s (operation %s)",
				   plan_phase_name(op->phase), call, who ? who : "", strerror(-r),
				   c->kmsg[0] ? " (" : "", c->kmsg, c->kmsg[0] ? ")" : "",
				   line.buf ? line.buf + strspn(line.buf, " ") : "?");
			strbuf_release(&line);
			return r;
		}
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

/*
 * unshare(CLONE_NEWNS), making sure the new namespace's id is above our
 * current one. Binding a namespace file (restore --persist) fails with
 * EINVAL unless the bound namespace's id is above the binder's (the loop
 * check), and Linux 6.18 hands out namespace ids from per-CPU batches, so a
 * namespace made on one CPU can get a lower id than an older one made on
 * another. Each CPU is tried in turn until one gives a newer id.
 */
static int unshare_newer(void)
{
	cpu_set_t orig, one;
	uint64_t cur = 0, id = 0;
	int r;

	if (mntns_id(&cur) < 0 || sched_getaffinity(0, sizeof(orig), &orig) < 0)
		return FAULT_OR(unshare(CLONE_NEWNS)) < 0 ? -errno : 0;
	for (unsigned round = 0; round < 2; round++)
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (!CPU_ISSET(cpu, &orig))
				continue;
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			(void)sched_setaffinity(0, sizeof(one), &one);
			if (FAULT_OR(unshare(CLONE_NEWNS)) < 0) {
				r = -errno;
				(void)sched_setaffinity(0, sizeof(orig), &orig);
				return r;
			}
			if (mntns_id(&id) < 0 || id > cur) {
				(void)sched_setaffinity(0, sizeof(orig), &orig);
				return 0;
			}
			log_debug("Namespace id %" PRIu64 " on CPU %d is not above %" PRIu64 ", trying again",
				  id, cpu, cur);
		}
	(void)sched_setaffinity(0, sizeof(orig), &orig);
	log_debug("No CPU gave a namespace id above %" PRIu64 "; --persist may fail", cur);
	return 0;
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
	struct exec_ctx c = { .p = p, .report = report };
	int r;

	if (p->engine == MNTCR_ENGINE_COMPAT)
		return compat_execute(p, report);

	r = raise_fd_limit(p->n_slots + 64);
	if (r < 0) {
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "setrlimit", r,
			   "Restore failed in phase namespace: setrlimit RLIMIT_NOFILE to %zu for %zu mounts: %s",
			   p->n_slots + 64,
			   p->tree->n_mounts, strerror(-r));
		return r;
	}
	c.fds = malloc((p->n_slots ? p->n_slots : 1) * sizeof(int));
	if (!c.fds)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_slots; i++)
		c.fds[i] = -EBADF;

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
	r = run_ops(&c, /* peers= */ false);
out:
	for (size_t i = 0; i < p->n_slots; i++)
		if (c.fds[i] >= 0)
			close(c.fds[i]);
	free(c.fds);
	return r;
}
