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

# ------------------------------------------------------------------------------------------------
# Whole images around hostile manifests, every digest right (tests/ns/mntcr-forge.c), so that
# the manifest's own checks are what refuses them: each before anything is mounted.
: "${MNTCR_FORGE:=$(dirname "$MNTCR")/../tests/mntcr-forge}"
# manifest_version FILE: the format version a dumped manifest states (the forged image's)
manifest_version() { sed -n 's/^  "version": \([0-9]*\),$/\1/p' "$1"; }
ns_start forge 'mount -t tmpfs F $D; mkdir -p $D/a; mount -t tmpfs A $D/a; mkdir -p $D/a/b; mount --bind $D/a $D/a/b'
mntcr_dump "$(ns_pid forge)" "$NS_TMP/forge.img" --no-content --compress=none
tar --warning=no-unknown-keyword -xOf "$NS_TMP/forge.img" manifest.json >"$NS_TMP/forge.json"
# The manifest gives each mountpoint below its parent's: the bind $S/forge/a/b is "b" under "a".
B=b
# forge DESC SED-SCRIPT: the dumped manifest edited, in an image of its own ($FORGED).
forge() {
	FORGED=$NS_TMP/forged.img
	sed -e "$2" "$NS_TMP/forge.json" >"$NS_TMP/forged.json"
	if cmp -s "$NS_TMP/forge.json" "$NS_TMP/forged.json" && [[ -n $2 ]]; then
		not_ok "$1: the edit applies" "sed -e '$2' changed nothing"
	fi
	"$MNTCR_FORGE" "$(manifest_version "$NS_TMP/forge.json")" "$NS_TMP/forged.json" "$FORGED"
}
root_id=$(sed -n 's/^  "root_id": \([0-9]*\),$/\1/p' "$NS_TMP/forge.json")
# one mount per line: the bind's line
b_id=$(grep "\"mountpoint\": \"$B\"" "$NS_TMP/forge.json" | sed -n 's/^ *{ "id": \([0-9]*\),.*/\1/p' | head -n1)
check "forge: the manifest names the root and the bind" test -n "$root_id" -a -n "$b_id"
forge "forge: the manifest as dumped" ''
check_exit 0 "forge: the manifest as dumped, forged, restores (the forger is right)" \
	"$MNTCR" restore --image "$FORGED" --persist "$NS_TMP/forged.ns"
umount "$NS_TMP/forged.ns" 2>/dev/null
forge "a mountpoint with .." "s|\"mountpoint\": \"$B\"|\"mountpoint\": \"$B/../../../../etc\"|"
refused 4 "a mountpoint with .." "not a valid mntcr image" --image "$FORGED"
forge "an absolute mountpoint with .." "s|\"mountpoint\": \"$B\"|\"mountpoint\": \"$S/forge/a/b/../../../../etc\"|"
refused 4 "an absolute mountpoint with .." "not a valid mntcr image" --image "$FORGED"
forge "a mountpoint outside its parent's" "s|\"mountpoint\": \"$B\"|\"mountpoint\": \"$S/elsewhere\"|"
refused 4 "a mountpoint outside its parent's" "not a valid mntcr image" --image "$FORGED"
forge "a bind root escaping its filesystem" "/\"id\": $b_id,/s|\"root\": \"/\"|\"root\": \"/../../etc\"|"
refused 4 "a bind root escaping its filesystem" "unsafe path" --image "$FORGED"
forge "a cycle in parent ids" "/\"id\": $root_id,/s|\"parent_id\": [0-9]*|\"parent_id\": $b_id|"
refused 4 "a cycle in parent ids" "not a valid mntcr image" --image "$FORGED"
forge "a duplicate id" "s|\"id\": $b_id,|\"id\": $root_id,|"
refused 4 "a duplicate id" "not a valid mntcr image" --image "$FORGED"
forge "a missing parent" "/\"id\": $b_id,/s|\"parent_id\": [0-9]*|\"parent_id\": 999999999|"
refused 4 "a missing parent" "not a valid mntcr image" --image "$FORGED"
forge "absurd counts" 's|^    "mounts": [0-9]*|    "mounts": 4000000000|'
refused 4 "absurd counts" "not a valid mntcr image" --image "$FORGED"
forge "a superblock index out of range" 's|"sb": 0,|"sb": 99999,|'
refused 4 "a superblock index out of range" "not a valid mntcr image" --image "$FORGED"
ns_stop forge

# A mountpoint through a symlink of a filesystem the restore makes itself: proc's magic
# self/cwd leads to the restorer's working directory. Refused (no symlink is followed below a
# new filesystem but in a tmpfs or ramfs of ours, which holds only the directories it made),
# and nothing is made where the link points.
ns_start magic 'mkdir -p $D/p; mount -t proc proc $D/p; mount -t tmpfs T $D/p/fs'
mntcr_dump "$(ns_pid magic)" "$NS_TMP/magic.img" --no-content --compress=none
tar --warning=no-unknown-keyword -xOf "$NS_TMP/magic.img" manifest.json >"$NS_TMP/magic.json"
ns_stop magic
# T is "fs" below proc's mountpoint
sed -e "s|\"mountpoint\": \"fs\"|\"mountpoint\": \"self/cwd/escaped\"|" \
	"$NS_TMP/magic.json" >"$NS_TMP/magic-forged.json"
if cmp -s "$NS_TMP/magic.json" "$NS_TMP/magic-forged.json"; then
	not_ok "magic: the edit applies" "the mountpoint fs (of $S/magic/p/fs) is not in the manifest"
fi
check "magic: the proc filesystem is restored, not borrowed" grep -q '"fstype": "proc",' "$NS_TMP/magic.json"
"$MNTCR_FORGE" "$(manifest_version "$NS_TMP/magic.json")" "$NS_TMP/magic-forged.json" "$NS_TMP/magic-forged.img"
mkdir -p "$NS_TMP/cwd"
before=$(cat /proc/self/mountinfo)
: >"$NS_TMP/magic.ns"
(cd "$NS_TMP/cwd" && "$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$NS_TMP/magic-forged.img" --persist "$NS_TMP/magic.ns" 2>"$ERR")
check "magic: a mountpoint through proc's self/cwd is refused" test $? = 6
check "magic: the message names the mountpoint" grep -q "p/self/cwd/escaped" "$ERR"
check "magic: nothing made where the link points" test ! -e "$NS_TMP/cwd/escaped"
is "$(cat /proc/self/mountinfo)" "$before" "magic: nothing mounted here"
umount "$NS_TMP/magic.ns" 2>/dev/null || true

# ------------------------------------------------------------------------------------------------
# Hostile content, driven from the CLI: the good manifest, then members that try to write out
# of the new filesystem (through a symlink of their own, with ..). The manifest is checked
# (its digest is right); the content is refused at the member, nothing is written outside, and
# the half-built namespace goes.
ns_start hc 'mount -t tmpfs HC $D; mkdir -p $D/d; echo x >$D/d/f'
mntcr_dump "$(ns_pid hc)" "$NS_TMP/hc.img" --compress=none
mkdir -p "$NS_TMP/hc" "$S/outside"
tar --warning=no-unknown-keyword -C "$NS_TMP/hc" -xf "$NS_TMP/hc.img" mntcr-image manifest.json manifest.checksum
sb=$(tar --warning=no-unknown-keyword -tf "$NS_TMP/hc.img" | sed -n 's,^content/\([0-9]*\)/*$,\1,p' | head -n1)
check "hostile content: the image has content" test -n "$sb"
mkdir -p "$NS_TMP/hc/content/$sb"
ln -s "$S/outside" "$NS_TMP/hc/content/$sb/link"
echo evil >"$NS_TMP/hc/evil"
# hostile_content DESC NAME: the member evil stored as NAME after content/SB and content/SB/link.
hostile_content() {
	tar -C "$NS_TMP/hc" --format=pax -P --no-recursion -cf "$NS_TMP/hc-bad.img" \
		--transform "s,^evil\$,$2," mntcr-image manifest.json manifest.checksum \
		"content/$sb" "content/$sb/link" evil
	check "$1: the member is in the image" sh -c "tar --warning=no-unknown-keyword -tPf '$NS_TMP/hc-bad.img' | grep -qxF '$2'"
	refused 4 "$1" "content/$sb" --image "$NS_TMP/hc-bad.img"
	check "$1: nothing written outside" test ! -e "$S/outside/x" -a ! -e "$S/x"
	check "$1: no mntcr process left" no_process_left mntcr
}
hostile_content "content through its own symlink" "content/$sb/link/x"
hostile_content "content with .. in its name" "content/$sb/../../x"
ns_stop hc
