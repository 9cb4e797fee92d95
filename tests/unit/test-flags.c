/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The per-mount flag table, in both directions: mountinfo option names ->
 * MOUNT_ATTR_* (attr_from_options) -> names (mntcr_attr_format) for every
 * combination, and MOUNT_ATTR_* -> MS_* (attr_to_ms) checked against the
 * kernel's constants and inverted through the table.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#include "flags.h"
#include "mntcr/mntcr.h"
#include "sys.h"
#include "tap.h"
#include "util.h"

TAP_MAIN

/* The kernel's values (include/uapi/linux/mount.h), spelled out so a typo in a header shows. */
#define K_MS_RDONLY 1UL
#define K_MS_NOSUID 2UL
#define K_MS_NODEV 4UL
#define K_MS_NOEXEC 8UL
#define K_MS_NOSYMFOLLOW 256UL
#define K_MS_NOATIME 1024UL
#define K_MS_NODIRATIME 2048UL
#define K_MS_RELATIME (1UL << 21)
#define K_MS_STRICTATIME (1UL << 24)

static const struct {
	uint64_t attr;
	const char *name;
	unsigned long ms;
} simple[] = {
	{ MOUNT_ATTR_RDONLY, "ro", K_MS_RDONLY },
	{ MOUNT_ATTR_NOSUID, "nosuid", K_MS_NOSUID },
	{ MOUNT_ATTR_NODEV, "nodev", K_MS_NODEV },
	{ MOUNT_ATTR_NOEXEC, "noexec", K_MS_NOEXEC },
	{ MOUNT_ATTR_NODIRATIME, "nodiratime", K_MS_NODIRATIME },
	{ MOUNT_ATTR_NOSYMFOLLOW, "nosymfollow", K_MS_NOSYMFOLLOW },
};

static const struct {
	uint64_t attr;
	const char *name; /* as mountinfo prints it; strictatime prints nothing */
	unsigned long ms;
} atimes[] = {
	{ MOUNT_ATTR_RELATIME, "relatime", K_MS_RELATIME },
	{ MOUNT_ATTR_NOATIME, "noatime", K_MS_NOATIME },
	{ MOUNT_ATTR_STRICTATIME, NULL, K_MS_STRICTATIME },
};

TEST(uapi_constants)
{
	CHECK_INT(MOUNT_ATTR_RDONLY, 0x1);
	CHECK_INT(MOUNT_ATTR_NOSUID, 0x2);
	CHECK_INT(MOUNT_ATTR_NODEV, 0x4);
	CHECK_INT(MOUNT_ATTR_NOEXEC, 0x8);
	CHECK_INT(MOUNT_ATTR__ATIME, 0x70);
	CHECK_INT(MOUNT_ATTR_RELATIME, 0x0);
	CHECK_INT(MOUNT_ATTR_NOATIME, 0x10);
	CHECK_INT(MOUNT_ATTR_STRICTATIME, 0x20);
	CHECK_INT(MOUNT_ATTR_NODIRATIME, 0x80);
	CHECK_INT(MOUNT_ATTR_IDMAP, 0x100000);
	CHECK_INT(MOUNT_ATTR_NOSYMFOLLOW, 0x200000);
}

TEST(table_is_consistent)
{
	uint64_t seen = 0;

	CHECK_INT(n_mount_flags, 9);
	for (unsigned i = 0; i < n_mount_flags; i++) {
		const struct mount_flag *f = &mount_flags[i];

		/* an entry decides only bits in its mask, and names are unique */
		CHECK((f->attr & ~f->attr_mask) == 0);
		CHECK(f->ms != 0);
		for (unsigned j = 0; j < i; j++)
			CHECK(!streq(f->name, mount_flags[j].name));
		if (f->attr_mask != MOUNT_ATTR__ATIME)
			seen |= f->attr;
	}
	CHECK_INT(seen, MNTCR_ATTR_KNOWN & ~(uint64_t)MOUNT_ATTR__ATIME);
	/* mountinfo's order (fs/proc_namespace.c show_mnt_opts): ro first */
	CHECK_STREQ(mount_flags[0].name, "ro");
}

/* attr -> the option string mountinfo would print, built independently of the table. */
static void expected_options(uint64_t attr, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s%s%s%s%s%s", (attr & MOUNT_ATTR_RDONLY) ? "ro" : "rw",
		 (attr & MOUNT_ATTR_NOSUID) ? ",nosuid" : "",
		 (attr & MOUNT_ATTR_NODEV) ? ",nodev" : "",
		 (attr & MOUNT_ATTR_NOEXEC) ? ",noexec" : "",
		 (attr & MOUNT_ATTR__ATIME) == MOUNT_ATTR_NOATIME ? ",noatime" : "",
		 (attr & MOUNT_ATTR_NODIRATIME) ? ",nodiratime" : "",
		 (attr & MOUNT_ATTR__ATIME) == MOUNT_ATTR_RELATIME ? ",relatime" : "",
		 (attr & MOUNT_ATTR_NOSYMFOLLOW) ? ",nosymfollow" : "");
}

TEST(round_trip_every_combination)
{
	unsigned n = 0;

	for (unsigned bits = 0; bits < (1U << ARRAY_SIZE(simple)); bits++)
		for (size_t a = 0; a < ARRAY_SIZE(atimes); a++) {
			uint64_t attr = atimes[a].attr, back = 0xdead;
			char buf[256], want[256];
			int len, before = tap_failed_checks;

			for (size_t i = 0; i < ARRAY_SIZE(simple); i++)
				if (bits & (1U << i))
					attr |= simple[i].attr;
			expected_options(attr, want, sizeof(want));
			len = mntcr_attr_format(attr, buf, sizeof(buf));
			CHECK_INT(len, (int)strlen(want));
			CHECK_STREQ(buf, want);
			CHECK_INT(attr_from_options(buf, &back), 0);
			CHECK_INT(back, attr);
			/* the expected string parses to the same flags too */
			CHECK_INT(attr_from_options(want, &back), 0);
			CHECK_INT(back, attr);
			if (tap_failed_checks != before)
				printf("#   (attr 0x%llx)\n", (unsigned long long)attr);
			n++;
		}
	CHECK_INT(n, 64 * 3);
}

/* MS_* -> MOUNT_ATTR_* through the table: the inverse of attr_to_ms. */
static uint64_t attr_from_ms(unsigned long ms)
{
	uint64_t attr = MOUNT_ATTR_RELATIME; /* mount(2) without an atime flag gives relatime */

	for (unsigned i = 0; i < n_mount_flags; i++)
		if (ms & mount_flags[i].ms)
			attr = (attr & ~mount_flags[i].attr_mask) | mount_flags[i].attr;
	return attr;
}

TEST(attr_to_ms_every_combination)
{
	for (unsigned bits = 0; bits < (1U << ARRAY_SIZE(simple)); bits++)
		for (size_t a = 0; a < ARRAY_SIZE(atimes); a++) {
			uint64_t attr = atimes[a].attr;
			unsigned long want = atimes[a].ms, ms;

			for (size_t i = 0; i < ARRAY_SIZE(simple); i++)
				if (bits & (1U << i)) {
					attr |= simple[i].attr;
					want |= simple[i].ms;
				}
			ms = attr_to_ms(attr);
			CHECK_INT(ms, want);
			/* exactly one atime mode */
			CHECK_INT(__builtin_popcountl(
					  ms & (K_MS_NOATIME | K_MS_RELATIME | K_MS_STRICTATIME)),
				  1);
			CHECK_INT(attr_from_ms(ms), attr);
		}
	CHECK_INT(attr_to_ms(0), K_MS_RELATIME);
	/* idmap has no MS_* equivalent */
	CHECK_INT(attr_to_ms(MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOATIME), K_MS_NOATIME);
}

TEST(atime_normalisation)
{
	CHECK_INT(attr_atime(MOUNT_ATTR_RELATIME), MOUNT_ATTR_RELATIME);
	CHECK_INT(attr_atime(MOUNT_ATTR_NOATIME | MOUNT_ATTR_NOSUID), MOUNT_ATTR_NOATIME);
	CHECK_INT(attr_atime(MOUNT_ATTR_STRICTATIME | MOUNT_ATTR_RDONLY), MOUNT_ATTR_STRICTATIME);
	/* an invalid mode (two bits) counts as the default, relatime */
	CHECK_INT(attr_atime(MOUNT_ATTR_NOATIME | MOUNT_ATTR_STRICTATIME), MOUNT_ATTR_RELATIME);
}

TEST(names_one_by_one)
{
	uint64_t attr;

	for (size_t i = 0; i < ARRAY_SIZE(simple); i++) {
		attr = 0;
		CHECK_INT(attr_from_name(simple[i].name, &attr), 0);
		CHECK_INT(attr, simple[i].attr);
	}
	/* an atime name replaces the previous mode; "rw" clears ro; others are kept */
	attr = MOUNT_ATTR_NOATIME | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
	CHECK_INT(attr_from_name("strictatime", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_STRICTATIME | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV);
	CHECK_INT(attr_from_name("relatime", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_RELATIME | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV);
	CHECK_INT(attr_from_name("rw", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_NODEV);
	attr = 7;
	CHECK_INT(attr_from_name("bogus", &attr), -EINVAL);
	CHECK_INT(attr, 7);
}

TEST(options_strings)
{
	uint64_t attr;

	/* no atime name: strict */
	CHECK_INT(attr_from_options("rw", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_STRICTATIME);
	CHECK_INT(attr_from_options("ro", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_STRICTATIME);
	/* order does not matter; the last atime name wins */
	CHECK_INT(attr_from_options("relatime,nosuid,ro", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_RELATIME);
	CHECK_INT(attr_from_options("rw,noatime,relatime", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_RELATIME);
	CHECK_INT(attr_from_options("rw,strictatime", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_STRICTATIME);
	/* idmapped (Linux >= 5.12 prints it) */
	CHECK_INT(attr_from_options("rw,relatime,idmapped", &attr), 0);
	CHECK_INT(attr, MOUNT_ATTR_RELATIME | MOUNT_ATTR_IDMAP);
}

TEST(unknown_or_malformed_options)
{
	static const char *bad[] = {
		"rw,bogus",
		"bogus",
		"rw,nosuid,sync",
		"rw,,nosuid",
		",rw",
		"rw,",
		"",
		"rw,NOSUID",
		"rw,nosuid=1",
		"rw,relatime ",
		"rw,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t attr = 0x1234;
		int r = attr_from_options(bad[i], &attr);

		if (r != -EINVAL) {
			printf("#   '%s' gave %d, not -EINVAL\n", bad[i], r);
			tap_failed_checks++;
		}
		CHECK_INT(attr, 0x1234); /* not written on failure */
	}
}

TEST(format_small_buffers)
{
	uint64_t attr = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
			MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOATIME | MOUNT_ATTR_NODIRATIME |
			MOUNT_ATTR_NOSYMFOLLOW | MOUNT_ATTR_IDMAP;
	const char *want = "ro,nosuid,nodev,noexec,noatime,nodiratime,nosymfollow,idmapped";
	char buf[128];

	CHECK_INT(mntcr_attr_format(attr, buf, sizeof(buf)), (int)strlen(want));
	CHECK_STREQ(buf, want);
	/* exactly enough room, and one byte too little at every length */
	CHECK_INT(mntcr_attr_format(attr, buf, strlen(want) + 1), (int)strlen(want));
	for (size_t size = 1; size <= strlen(want); size++)
		CHECK_INT(mntcr_attr_format(attr, buf, size), -ENOBUFS);
	CHECK_INT(mntcr_attr_format(0, buf, 3), -ENOBUFS); /* "rw,relatime" */
	CHECK_INT(mntcr_attr_format(MOUNT_ATTR_STRICTATIME, buf, 3), 2);
	CHECK_STREQ(buf, "rw");
}
