/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Restore: validate and plan in the caller, then build the namespace in a
 * child process. The child enters a new mount namespace and makes every
 * mount in it private before anything else, so nothing it mounts can
 * propagate to the caller. On success the child passes the namespace's fd
 * to the caller and exits; on failure it exits and takes the half-built
 * namespace with it. Either way no process is left behind. With
 * opts->in_process the calling thread does the same itself and then goes
 * back to its own namespace (build_here()).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "content.h"
#include "internal.h"
#include "mntcr/mntcr.h"
#include "plan.h"
#include "tree.h"

MNTCR_EXPORT void mntcr_report_clear(struct mntcr_report *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->msg);
	*r = (struct mntcr_report){ .op_index = MNTCR_NONE };
}

/* The child's report, sent over a pipe: fixed header, then the message. */
struct wire_report {
	int err;
	uint32_t phase; /* enum plan_phase, or _PHASE_MAX for "namespace" */
	uint32_t op_type; /* enum plan_op_type of op_index, or UINT32_MAX */
	uint64_t op_index;
	uint64_t mount_id;
	uint32_t msg_len;
	uint32_t path_len;
};

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n > 0) {
		ssize_t k = read(fd, p, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -EPIPE;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static enum plan_phase phase_from_name(const char *name)
{
	for (unsigned i = 0; i < _PHASE_MAX; i++)
		if (name && streq(name, plan_phase_name(i)))
			return i;
	return _PHASE_MAX;
}

/* Send n fds, SOCK_FDS_MAX per message. */
static int send_fds(int sock, const int *fds, size_t n)
{
	for (size_t off = 0; off < n; off += SOCK_FDS_MAX) {
		size_t k = n - off < SOCK_FDS_MAX ? n - off : SOCK_FDS_MAX;
		int r = sock_send_fds(sock, "N", 1, fds + off, k);

		if (r < 0)
			return r;
	}
	return 0;
}

/* Receive n fds (send_fds); on failure the ones received are closed. */
static int recv_fds(int sock, int *fds, size_t n)
{
	size_t got = 0;

	while (got < n) {
		size_t k = n - got < SOCK_FDS_MAX ? n - got : SOCK_FDS_MAX, n_fds;
		char byte;
		ssize_t r = sock_recv_fds(sock, &byte, 1, fds + got, k, &n_fds);

		got += n_fds;
		if (r <= 0 || n_fds != k) {
			for (size_t i = 0; i < got; i++)
				close(fds[i]);
			return r < 0 ? (int)r : -EPROTO;
		}
	}
	return 0;
}

/*
 * Run the plan; one namespace's fd is then its own (this thread's, entered
 * by the executor), several come from the executor. A child and
 * build_here() both build this way.
 */
static int build_namespaces(const struct mntcr_plan *p, struct mntcr_image *img, int *nsfds,
			    struct mntcr_report *report)
{
	int r = plan_execute_full(p, img, nsfds, report);

	if (r == 0 && p->tree->n_ns == 1 &&
	    (nsfds[0] = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		report_set(report, "namespace", MNTCR_NONE, 0, "/proc/thread-self/ns/mnt", "open", r,
			   "Failed to open the restored namespace: %s", strerror(-r));
	}
	return r;
}

/*
 * The child: build the namespaces, report, and pass their fds to the
 * caller. The fds in flight keep the namespaces alive after it exits.
 */
static _Noreturn void child_main(const struct mntcr_plan *p, struct mntcr_image *img, int sock)
{
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	struct wire_report w = { 0 };
	size_t n_ns = p->tree->n_ns;
	_cleanup_free_ int *nsfds = calloc(n_ns, sizeof(int));
	int r;

	/* Never outlive the caller: a restorer killed mid-way takes its namespace along. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1 || !nsfds)
		_exit(1);

	/* With content, this process reads the rest of the image's stream. */
	r = build_namespaces(p, img, nsfds, &rep);

	w.err = r;
	w.phase = phase_from_name(rep.phase);
	w.op_index = rep.op_index == MNTCR_NONE ? UINT64_MAX : rep.op_index;
	w.op_type = rep.op_index < p->n_ops ? (uint32_t)p->ops[rep.op_index].type : UINT32_MAX;
	w.mount_id = rep.mount_id;
	w.msg_len = rep.msg ? (uint32_t)strlen(rep.msg) : 0;
	w.path_len = rep.path ? (uint32_t)strlen(rep.path) : 0;
	if (write_all(sock, &w, sizeof(w)) < 0 || write_all(sock, rep.msg ? rep.msg : "", w.msg_len) < 0 ||
	    write_all(sock, rep.path ? rep.path : "", w.path_len) < 0)
		_exit(1);
	if (r < 0 || send_fds(sock, nsfds, n_ns) < 0)
		_exit(1);
	_exit(0);
}

static char *read_str(int fd, uint32_t len)
{
	char *s;

	if (len > (1U << 20))
		return NULL;
	s = malloc((size_t)len + 1);
	if (!s)
		return NULL;
	if (read_all(fd, s, len) < 0) {
		free(s);
		return NULL;
	}
	s[len] = 0;
	return s;
}

/* fd is the namespace at path (no fd needed: the fd table may be full). */
static bool same_ns(int fd, const char *path)
{
	struct stat sa, sb;

	return fstat(fd, &sa) == 0 && stat(path, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/*
 * opts->in_process: what child_main() does, in the calling thread. The
 * executor's first step is unshare(CLONE_NEWNS), which gives the thread a
 * filesystem context of its own; whatever happens, the thread then goes
 * back to its namespace (setns, which resets root and cwd: they are set
 * back too). On failure, nothing refers to the new namespace any more and
 * it goes, as with a child's exit.
 */
static int build_here(const struct mntcr_plan *plan, struct mntcr_image *img, int *ret_nsfds,
		      struct mntcr_report *report)
{
	_cleanup_close_ int own = -EBADF, root = -EBADF, cwd = -EBADF;
	int r;

	own = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
	root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (own < 0 || root < 0 || cwd < 0) {
		r = -errno;
		report_set(report, "namespace", MNTCR_NONE, 0, own < 0 ? "/proc/thread-self/ns/mnt" : ".", "open", r,
			   "Failed to open this thread's namespace, root and working directory: %s", strerror(-r));
		return r;
	}
	r = build_namespaces(plan, img, ret_nsfds, report);
	/* Still in its own namespace (a failure before the unshare): nothing to undo. */
	if (same_ns(own, "/proc/thread-self/ns/mnt"))
		return r;
	if (setns(own, CLONE_NEWNS) < 0 || fchdir(root) < 0 || chroot(".") < 0 || fchdir(cwd) < 0) {
		(void)log_error_errno(-errno, "Cannot go back to this thread's mount namespace, root and working "
					      "directory after the restore (%s): aborting",
				      strerror(errno));
		abort();
	}
	timing_mark("exit");
	return r;
}

/*
 * image: the mount table; img: the image stream its content comes from,
 * NULL for none (a tree alone restores no content). ret_nsfds: one fd per
 * namespace of the image.
 */
static int restore_run(const struct mntcr_tree *image, struct mntcr_image *img,
		       const struct mntcr_restore_opts *opts, int *ret_nsfds,
		       struct mntcr_report *report)
{
	bool want_content = false, here = opts && opts->in_process;
	struct mntcr_tree *host = NULL;
	struct mntcr_plan *plan = NULL;
	struct wire_report w;
	int sv[2] = { -EBADF, -EBADF };
	int r, wstatus;
	pid_t pid;

	if (!image || !ret_nsfds)
		return -EINVAL;
	mntcr_report_clear(report);
	timing_mark("read");

	r = tree_read_self(&host);
	if (r < 0) {
		report_set(report, "plan", MNTCR_NONE, 0, "/proc/self/mountinfo", "read", r,
			   "Failed to read this process's own mount table: %s", strerror(-r));
		return r;
	}
	/* The engine: as asked, else the best the running kernel supports. */
	{
		struct mntcr_restore_opts o = opts ? *opts : (struct mntcr_restore_opts){ 0 };
		struct mntcr_features f;

		mntcr_probe(&f);
		if (o.engine == MNTCR_ENGINE_NONE)
			o.engine = mntcr_engine_pick(&f);
		else if (o.engine == MNTCR_ENGINE_MOUNT_API && mntcr_engine_pick(&f) != MNTCR_ENGINE_MOUNT_API) {
			r = -ENOSYS;
			report_set(report, "probe", MNTCR_NONE, 0, NULL, NULL, r,
				   "The mount-api engine needs open_tree, move_mount with MOVE_MOUNT_SET_GROUP, fsopen "
				   "and mount_setattr, which this kernel does not offer (see mntcr check)");
			goto out;
		}
		if (!img || !mntcr_image_has_content(img) || o.no_content) {
			o.no_content = true;
			/* The mount table alone: the rest of the image is still checked first. */
			r = img ? mntcr_image_finish(img) : 0;
			if (r < 0) {
				report_set(report, "validate", MNTCR_NONE, 0, NULL, "read image", r,
					   "The image is corrupt or truncated: %s", strerror(-r));
				goto out;
			}
		}
		want_content = !o.no_content;
		timing_mark("self");
		r = mntcr_plan_build(image, host, &o, &plan, report);
		if (r < 0)
			goto out;
		timing_mark("plan");
	}

	if (here) {
		r = build_here(plan, want_content ? img : NULL, ret_nsfds, report);
		goto out;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "socketpair", r,
			   "Failed to create a socket pair: %s", strerror(-r));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "fork", r, "Failed to fork: %s", strerror(-r));
		goto out;
	}
	if (pid == 0) {
		close(sv[0]);
		child_main(plan, want_content ? img : NULL, sv[1]);
	}
	/* The child reads the image's content now: this copy of the reader is stale. */
	if (want_content)
		image_content_handed_over(img);
	close(sv[1]);
	sv[1] = -EBADF;
	/* The child has its own copy: this one is freed while it works, on another CPU. */
	plan = mntcr_plan_free(plan);
	mntcr_tree_free(TAKE_PTR(host));

	r = read_all(sv[0], &w, sizeof(w));
	timing_mark("child");
	if (r < 0) {
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "read", -EIO, "The restoring process died");
		r = -EIO;
	} else if (w.err < 0) {
		char *msg = read_str(sv[0], w.msg_len), *rpath = read_str(sv[0], w.path_len);

		mntcr_report_clear(report);
		if (report) {
			report->phase = w.phase < _PHASE_MAX ? plan_phase_name(w.phase) : "namespace";
			report->op_index = w.op_index == UINT64_MAX ? MNTCR_NONE : (size_t)w.op_index;
			report->mount_id = w.mount_id;
			report->err = w.err;
			report->msg = msg;
			report->path = rpath;
			if (report->op_index != MNTCR_NONE && w.op_type != UINT32_MAX)
				report->op = plan_op_name((enum plan_op_type)w.op_type);
		} else {
			free(msg);
			free(rpath);
		}
		r = w.err;
	} else {
		char *msg = read_str(sv[0], w.msg_len), *rpath = read_str(sv[0], w.path_len);

		free(msg);
		free(rpath);
		r = recv_fds(sv[0], ret_nsfds, image->n_ns);
		if (r < 0)
			report_set(report, "namespace", MNTCR_NONE, 0, NULL, "recvmsg", r,
				   "Failed to receive the restored namespaces from the restoring process: %s",
				   strerror(-r));
	}
	close(sv[0]);
	sv[0] = -EBADF;
	while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	timing_mark("exit");
out:
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	mntcr_plan_free(plan);
	mntcr_tree_free(host);
	return r;
}

/* The first namespace's fd; the others, if any, are closed. */
static int restore_first(const struct mntcr_tree *image, struct mntcr_image *img,
			 const struct mntcr_restore_opts *opts, int *ret_nsfd, struct mntcr_report *report)
{
	_cleanup_free_ int *fds = NULL;
	int r;

	if (!image || !ret_nsfd)
		return -EINVAL;
	fds = calloc(image->n_ns ? image->n_ns : 1, sizeof(int));
	if (!fds)
		return -ENOMEM;
	r = restore_run(image, img, opts, fds, report);
	if (r < 0)
		return r;
	for (size_t k = 1; k < image->n_ns; k++)
		close(fds[k]);
	*ret_nsfd = fds[0];
	return 0;
}

MNTCR_EXPORT int mntcr_restore(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts,
			       int *ret_nsfd, struct mntcr_report *report)
{
	return restore_first(image, NULL, opts, ret_nsfd, report);
}

MNTCR_EXPORT int mntcr_restore_image(struct mntcr_image *img, const struct mntcr_restore_opts *opts,
				     int *ret_nsfd, struct mntcr_report *report)
{
	if (!img || !mntcr_image_tree(img))
		return -EINVAL;
	return restore_first(mntcr_image_tree(img), img, opts, ret_nsfd, report);
}

MNTCR_EXPORT int mntcr_restore_all(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts,
				   int *ret_nsfds, struct mntcr_report *report)
{
	return restore_run(image, NULL, opts, ret_nsfds, report);
}

MNTCR_EXPORT int mntcr_restore_image_all(struct mntcr_image *img, const struct mntcr_restore_opts *opts,
					 int *ret_nsfds, struct mntcr_report *report)
{
	if (!img || !mntcr_image_tree(img))
		return -EINVAL;
	return restore_run(mntcr_image_tree(img), img, opts, ret_nsfds, report);
}
