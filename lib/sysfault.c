/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test-only fault injection: with MNTCR_FAULT_AT=k in the environment, the
 * k-th mount-changing syscall of the executor (counting from 1) fails with
 * MNTCR_FAULT_ERRNO (a number or a name: EPERM, ENOMEM, EBUSY, ENOSPC;
 * default EPERM) without being made. The calls of the executor's second
 * thread (superblocks made ahead) count too, in whatever order they come.
 * The count starts at each run of the executor (sys_fault_begin()), in a
 * child or in the caller.
 */
#include "sys.h"
#include "util.h"

static long fault_at;
static int fault_errno = EPERM;
static _Atomic long fault_count; /* the executor may make superblocks on a second thread */

static int errno_from_name(const char *s)
{
	static const struct {
		const char *name;
		int err;
	} names[] = { { "EPERM", EPERM }, { "ENOMEM", ENOMEM }, { "EBUSY", EBUSY },
		      { "ENOSPC", ENOSPC }, { "EINVAL", EINVAL }, { "EIO", EIO } };
	uint64_t v;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (streq(s, names[i].name))
			return names[i].err;
	if (safe_atou64(s, &v) == 0 && v > 0 && v < 4096)
		return (int)v;
	return EPERM;
}

void sys_fault_begin(void)
{
	const char *at = getenv("MNTCR_FAULT_AT"), *e = getenv("MNTCR_FAULT_ERRNO");
	uint64_t v;

	fault_at = (at && safe_atou64(at, &v) == 0) ? (long)v : 0;
	fault_errno = e ? errno_from_name(e) : EPERM;
	fault_count = 0;
}

/* Returns -errno when this call is the one to fail, 0 otherwise. */
int sys_fault_check(void)
{
	if (fault_at == 0)
		return 0;
	if (++fault_count == fault_at)
		return -fault_errno;
	return 0;
}
