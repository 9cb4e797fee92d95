/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One-time kernel feature probe. Each call is made so that it fails before
 * doing anything when the syscall exists (bad fd, bad flags), and ENOSYS (or
 * a seccomp filter's ENOSYS/EPERM) tells us it does not.
 */
#include <fcntl.h>

#include "mntcr/mntcr.h"
#include "sys.h"
#include "util.h"

static struct mntcr_features cached;
static bool probed;

/* True when the call's error means "exists" rather than "not implemented". */
static bool exists(long rc)
{
	return rc >= 0 || (errno != ENOSYS && errno != EPERM);
}

static void probe_all(struct mntcr_features *f)
{
	struct mntcr_mnt_id_req req = { .size = MNTCR_MNT_ID_REQ_SIZE_VER1, .mnt_id = LSMT_ROOT };
	uint64_t id;
	long rc;
	int fd;

	/* statmount(id 0) gives EINVAL where it exists */
	rc = syscall(__NR_statmount, &req, NULL, 0, 0);
	f->statmount = exists(rc);
	rc = sys_listmount(&req, &id, 1, 0);
	f->listmount = exists(rc);

	fd = (int)syscall(__NR_open_tree, -EBADF, "", 0);
	f->open_tree = exists(fd);
	if (fd >= 0)
		close(fd);
	rc = syscall(__NR_move_mount, -EBADF, "", -EBADF, "", 0);
	f->move_mount = exists(rc);
	/*
	 * The flag bits are checked before the fds: an unknown flag gives
	 * EINVAL, a known one gets as far as EBADF.
	 */
	rc = syscall(__NR_move_mount, -EBADF, "", -EBADF, "",
		     MOVE_MOUNT_SET_GROUP | MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
	f->move_mount_set_group = f->move_mount && rc < 0 && errno == EBADF;
	rc = syscall(__NR_move_mount, -EBADF, "", -EBADF, "",
		     MOVE_MOUNT_BENEATH | MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
	f->move_mount_beneath = f->move_mount && rc < 0 && errno == EBADF;
	rc = syscall(__NR_mount_setattr, -EBADF, "", 0, NULL, 0);
	f->mount_setattr = exists(rc);
	fd = (int)syscall(__NR_fsopen, "", 0);
	f->fsopen = exists(fd);
	if (fd >= 0)
		close(fd);
	{
		struct mntcr_open_how how = { .flags = O_PATH | O_CLOEXEC };
		fd = sys_openat2(AT_FDCWD, "/", &how);
		f->openat2 = exists(fd);
		if (fd >= 0)
			close(fd);
	}
}

MNTCR_EXPORT int mntcr_probe(struct mntcr_features *ret)
{
	if (!probed) {
		int saved = errno;
		probe_all(&cached);
		errno = saved;
		probed = true;
	}
	if (ret)
		*ret = cached;
	return 0;
}

MNTCR_EXPORT enum mntcr_engine mntcr_engine_pick(const struct mntcr_features *f)
{
	if (f->open_tree && f->move_mount && f->fsopen && f->mount_setattr && f->move_mount_set_group)
		return MNTCR_ENGINE_MOUNT_API;
	return MNTCR_ENGINE_COMPAT;
}

MNTCR_EXPORT const char *mntcr_engine_name(enum mntcr_engine e)
{
	switch (e) {
	case MNTCR_ENGINE_MOUNT_API:
		return "mount-api";
	case MNTCR_ENGINE_COMPAT:
		return "compat";
	case MNTCR_ENGINE_NONE:
		break;
	}
	return "none";
}
