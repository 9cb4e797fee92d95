#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Hostile input for restore: what the restorer finds on its own side differs
# from what was dumped, or the options point nowhere. Each case must fail
# with a clear message and a non-zero exit before anything is mounted (lib.sh
# checks the host mount table; here the test's own mount table is compared
# too), or resolve strictly inside the new namespace.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# refused CODE DESC PATTERN RESTORE-ARGS...: restore fails with CODE, a message matching PATTERN,
# and leaves our mount table as it was.
refused() {
	local code=$1 desc=$2 pattern=$3 before
	shift 3
	before=$(cat /proc/self/mountinfo)
	: >"$NS_TMP/h.ns"
	check_exit "$code" "$desc: refused (exit $code)" "$MNTCR" restore "$@" --persist "$NS_TMP/h.ns"
	check "$desc: the message says why" grep -q -- "$pattern" "$ERR"
	check "$desc: one line" test "$(wc -l <"$ERR")" -le 1
	is "$(cat /proc/self/mountinfo)" "$before" "$desc: nothing mounted here"
	umount "$NS_TMP/h.ns" 2>/dev/null || true
}

# A mountpoint on the restorer's side that has become a symlink leading out:
# absolute and relative.
ns_start link 'mkdir -p $D/real/abs $D/real/rel; mount -t tmpfs a $D/real/abs; mount -t tmpfs r $D/real/rel'
mntcr_dump "$(ns_pid link)" "$NS_TMP/link.img"
ns_stop link
rmdir "$S/link/real/abs" "$S/link/real/rel"
ln -s / "$S/link/real/abs"
refused 6 "mountpoint now an absolute symlink" "symbolic links" --image "$NS_TMP/link.img"
rm "$S/link/real/abs"
mkdir "$S/link/real/abs"
ln -s ../../.. "$S/link/real/rel"
refused 6 "mountpoint now a relative symlink" "symbolic links" --image "$NS_TMP/link.img"

# A bind whose source directory has become a symlink.
ns_start src 'mkdir -p $D/s/dir $D/t; mount --bind $D/s/dir $D/t'
mntcr_dump "$(ns_pid src)" "$NS_TMP/src.img"
ns_stop src
rmdir "$S/src/s/dir"
ln -s /etc "$S/src/s/dir"
refused 6 "bind source now a symlink" "symbolic links" --image "$NS_TMP/src.img"

# --external and --root pointing nowhere.
ns_start ext 'mkdir -p $D/x'
mntcr_dump "$(ns_pid ext)" "$NS_TMP/ext.img"
refused 2 "--root to a missing directory" "missing-root" --image "$NS_TMP/ext.img" --root "$NS_TMP/missing-root"
refused 6 "--external to a missing path" "No such file" --image "$NS_TMP/ext.img" --external "/=$NS_TMP/missing-ext"
refused 2 "--external without =" "KEY=PATH" --image "$NS_TMP/ext.img" --external "/"
ns_stop ext

# Not an image at all, an empty file, a directory.
printf 'not an image' >"$NS_TMP/garbage"
refused 4 "garbage" "not a valid mntcr image" --image "$NS_TMP/garbage"
: >"$NS_TMP/empty"
refused 4 "an empty file" "not a valid mntcr image" --image "$NS_TMP/empty"
refused 4 "a directory" "image" --image "$NS_TMP"
