/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Restore: validate and plan in the caller, then build the namespace in a
 * child process. The child enters a new mount namespace and makes every
 * mount in it private before anything else, so nothing it mounts can
 * propagate to the caller. On success the caller opens the child's
 * namespace and lets the child exit; on failure the child exits and takes
 * the half-built namespace with it. Either way no process is left behind.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
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

static _Noreturn void child_main(const struct mntcr_plan *p, struct mntcr_image *img, int status_fd,
				  int go_fd)
{
	struct mntcr_report rep = { .op_index = MNTCR_NONE };
	struct wire_report w = { 0 };
	char c;
	int r;

	/* Never outlive the caller: a restorer killed mid-way takes its namespace along. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);

	/* With content, this process reads the rest of the image's stream. */
	r = plan_execute_full(p, img, &rep);

	w.err = r;
	w.phase = phase_from_name(rep.phase);
	w.op_index = rep.op_index == MNTCR_NONE ? UINT64_MAX : rep.op_index;
	w.mount_id = rep.mount_id;
	w.msg_len = rep.msg ? (uint32_t)strlen(rep.msg) : 0;
	w.path_len = rep.path ? (uint32_t)strlen(rep.path) : 0;
	if (write_all(status_fd, &w, sizeof(w)) < 0 || write_all(status_fd, rep.msg ? rep.msg : "", w.msg_len) < 0 ||
	    write_all(status_fd, rep.path ? rep.path : "", w.path_len) < 0)
		_exit(1);
	if (r < 0)
		_exit(1);
	/* Keep the namespace alive until the caller has opened it (it closes go_fd). */
	while (read(go_fd, &c, 1) < 0 && errno == EINTR)
		;
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

/*
 * image: the mount table; img: the image stream its content comes from,
 * NULL for none (a tree alone restores no content).
 */
static int restore_run(const struct mntcr_tree *image, struct mntcr_image *img,
		       const struct mntcr_restore_opts *opts, int *ret_nsfd,
		       struct mntcr_report *report)
{
	bool want_content = false;
	struct mntcr_tree *host = NULL;
	struct mntcr_plan *plan = NULL;
	struct wire_report w;
	int status_pipe[2] = { -EBADF, -EBADF }, go_pipe[2] = { -EBADF, -EBADF };
	int r, nsfd = -EBADF, wstatus;
	pid_t pid;
	char path[64];

	if (!image || !ret_nsfd)
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
		if (!img || !mntcr_image_has_content(img))
			o.no_content = true;
		else if (o.no_content) {
			/* The mount table alone, as asked; the rest of the image is still checked first. */
			r = mntcr_image_finish(img);
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

	if (pipe2(status_pipe, O_CLOEXEC) < 0 || pipe2(go_pipe, O_CLOEXEC) < 0) {
		r = -errno;
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "pipe2", r, "Failed to create a pipe: %s",
			   strerror(-r));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "fork", r, "Failed to fork: %s", strerror(-r));
		goto out;
	}
	if (pid == 0) {
		close(status_pipe[0]);
		close(go_pipe[1]);
		child_main(plan, want_content ? img : NULL, status_pipe[1], go_pipe[0]);
	}
	/* The child reads the image's content now: this copy of the reader is stale. */
	if (want_content)
		image_content_handed_over(img);
	close(status_pipe[1]);
	status_pipe[1] = -EBADF;
	close(go_pipe[0]);
	go_pipe[0] = -EBADF;

	r = read_all(status_pipe[0], &w, sizeof(w));
	timing_mark("child");
	if (r < 0) {
		report_set(report, "namespace", MNTCR_NONE, 0, NULL, "read", -EIO, "The restoring process died");
		r = -EIO;
	} else if (w.err < 0) {
		char *msg = read_str(status_pipe[0], w.msg_len), *rpath = read_str(status_pipe[0], w.path_len);

		mntcr_report_clear(report);
		if (report) {
			report->phase = w.phase < _PHASE_MAX ? plan_phase_name(w.phase) : "namespace";
			report->op_index = w.op_index == UINT64_MAX ? MNTCR_NONE : (size_t)w.op_index;
			report->mount_id = w.mount_id;
			report->err = w.err;
			report->msg = msg;
			report->path = rpath;
			if (report->op_index != MNTCR_NONE && report->op_index < plan->n_ops)
				report->op = plan_op_name(plan->ops[report->op_index].type);
		} else {
			free(msg);
			free(rpath);
		}
		r = w.err;
	} else {
		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
		nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0) {
			r = -errno;
			report_set(report, "namespace", MNTCR_NONE, 0, path, "open", r,
				   "Failed to open the restored namespace %s: %s", path, strerror(-r));
		}
	}
	/* Let the child go and reap it. */
	close(go_pipe[1]);
	go_pipe[1] = -EBADF;
	while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	timing_mark("exit");
	if (r == 0)
		*ret_nsfd = nsfd;
out:
	for (int i = 0; i < 2; i++) {
		if (status_pipe[i] >= 0)
			close(status_pipe[i]);
		if (go_pipe[i] >= 0)
			close(go_pipe[i]);
	}
	mntcr_plan_free(plan);
	mntcr_tree_free(host);
	return r;
}

MNTCR_EXPORT int mntcr_restore(const struct mntcr_tree *image, const struct mntcr_restore_opts *opts,
			       int *ret_nsfd, struct mntcr_report *report)
{
	return restore_run(image, NULL, opts, ret_nsfd, report);
}

MNTCR_EXPORT int mntcr_restore_image(struct mntcr_image *img, const struct mntcr_restore_opts *opts,
				     int *ret_nsfd, struct mntcr_report *report)
{
	if (!img || !mntcr_image_tree(img))
		return -EINVAL;
	return restore_run(mntcr_image_tree(img), img, opts, ret_nsfd, report);
}
