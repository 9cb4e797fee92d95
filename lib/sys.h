/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Syscall shims and the UAPI pieces that Debian 12's headers (linux-libc-dev
 * 6.1, glibc 2.36) lack. glibc's wrappers win where they exist; the rest go
 * through syscall(2) with libc semantics (-1 and errno).
 */
#pragma once

#include <fcntl.h>
#include <linux/types.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/mount.h>

#ifndef __NR_statmount
#define __NR_statmount 457
#endif
#ifndef __NR_listmount
#define __NR_listmount 458
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef __NR_listxattrat
#define __NR_listxattrat 465 /* Linux 6.13 */
#endif
#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467 /* Linux 6.15 */
#endif
#ifndef __NR_pivot_root
#define __NR_pivot_root 155
#endif

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1 */
#endif
/* A transparent huge page: one PMD of 4 KiB pages (x86-64, arm64 with 4 KiB pages). */
#define HUGE_PAGE_SIZE ((size_t)2 << 20)

#ifndef MOVE_MOUNT_SET_GROUP
#define MOVE_MOUNT_SET_GROUP 0x00000100
#endif
#ifndef MOVE_MOUNT_BENEATH
#define MOVE_MOUNT_BENEATH 0x00000200 /* Linux 6.5 */
#endif
#ifndef FSCONFIG_CMD_CREATE_EXCL
#define FSCONFIG_CMD_CREATE_EXCL 8
#endif
#ifndef MOUNT_ATTR_NOSYMFOLLOW
#define MOUNT_ATTR_NOSYMFOLLOW 0x00200000
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#ifndef LSMT_ROOT
#define LSMT_ROOT 0xffffffffffffffffULL
#endif

#define MNTCR_STATMOUNT_SB_BASIC 0x00000001U
#define MNTCR_STATMOUNT_MNT_BASIC 0x00000002U
#define MNTCR_STATMOUNT_PROPAGATE_FROM 0x00000004U
#define MNTCR_STATMOUNT_MNT_ROOT 0x00000008U
#define MNTCR_STATMOUNT_MNT_POINT 0x00000010U
#define MNTCR_STATMOUNT_FS_TYPE 0x00000020U
#define MNTCR_STATMOUNT_MNT_NS_ID 0x00000040U
#define MNTCR_STATMOUNT_MNT_OPTS 0x00000080U
#define MNTCR_STATMOUNT_FS_SUBTYPE 0x00000100U
#define MNTCR_STATMOUNT_SB_SOURCE 0x00000200U

#define MNTCR_MNT_ID_REQ_SIZE_VER1 32

/* struct statmount as of Linux 6.18 (sizeof 512, strings at str). */
struct mntcr_statmount {
	__u32 size;
	__u32 mnt_opts;
	__u64 mask;
	__u32 sb_dev_major;
	__u32 sb_dev_minor;
	__u64 sb_magic;
	__u32 sb_flags;
	__u32 fs_type;
	__u64 mnt_id;
	__u64 mnt_parent_id;
	__u32 mnt_id_old;
	__u32 mnt_parent_id_old;
	__u64 mnt_attr;
	__u64 mnt_propagation;
	__u64 mnt_peer_group;
	__u64 mnt_master;
	__u64 propagate_from;
	__u32 mnt_root;
	__u32 mnt_point;
	__u64 mnt_ns_id;
	__u32 fs_subtype;
	__u32 sb_source;
	__u32 opt_num;
	__u32 opt_array;
	__u32 opt_sec_num;
	__u32 opt_sec_array;
	__u64 supported_mask;
	__u32 mnt_uidmap_num;
	__u32 mnt_uidmap;
	__u32 mnt_gidmap_num;
	__u32 mnt_gidmap;
	__u64 __spare2[43];
	char str[];
};

struct mntcr_mnt_id_req {
	__u32 size;
	__u32 mnt_ns_fd; /* "spare" before Linux 6.18; must be 0 unless meant */
	__u64 mnt_id;
	__u64 param;
	__u64 mnt_ns_id;
};

#ifndef NS_GET_MNTNS_ID
#define NS_GET_MNTNS_ID _IOR(0xb7, 0x5, __u64)
#endif

#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10
#endif

struct mntcr_open_how {
	__u64 flags;
	__u64 mode;
	__u64 resolve;
};

/*
 * Every mount-changing syscall of the executor goes through these, so a test
 * hook can make the k-th one fail (MNTCR_FAULT_AT=k, MNTCR_FAULT_ERRNO=E).
 */
int sys_fault_check(void);
/* At the start of each run of the executor: read the environment, count from 0. */
void sys_fault_begin(void);

/* Make the syscall expression call, unless the fault hook says this one fails (errno set, -1). */
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

static inline int sys_statmount(const struct mntcr_mnt_id_req *req, struct mntcr_statmount *buf,
				size_t bufsize, unsigned int flags)
{
	return (int)syscall(__NR_statmount, req, buf, bufsize, flags);
}

static inline long sys_listmount(const struct mntcr_mnt_id_req *req, uint64_t *ids, size_t nr,
				 unsigned int flags)
{
	return syscall(__NR_listmount, req, ids, nr, flags);
}

static inline int sys_openat2(int dfd, const char *path, struct mntcr_open_how *how)
{
	return (int)syscall(__NR_openat2, dfd, path, how, sizeof(*how));
}

static inline long sys_listxattrat(int dfd, const char *path, unsigned int at_flags, char *list,
				   size_t size)
{
	return syscall(__NR_listxattrat, dfd, path, at_flags, list, size);
}

/* open_tree(2) and mount_setattr(2) of the result in one call. */
static inline int sys_open_tree_attr(int dfd, const char *path, unsigned int flags, struct mount_attr *attr,
				     size_t size)
{
	return (int)syscall(__NR_open_tree_attr, dfd, path, flags, attr, size);
}

static inline int sys_pivot_root(const char *new_root, const char *put_old)
{
	return (int)syscall(__NR_pivot_root, new_root, put_old);
}
