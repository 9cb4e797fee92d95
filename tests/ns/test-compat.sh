#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The compat engine (mount(2), umount2(2) and pivot_root(2) only) on real
# topologies. Each one is built by a process in a mount namespace of its
# own and dumped; then it is restored twice:
#  - with --engine=compat;
#  - under $NONEWAPI (a seccomp filter that makes open_tree, move_mount,
#    fsopen, fsconfig, fsmount, fspick, mount_setattr, open_tree_attr,
#    statmount and listmount fail with ENOSYS) with the default engine,
#    which must then be compat;
# and each time the restored namespace (a process started in it with
# `restore -- sleep`) must equal the image and the original (mntcr diff),
# and the restorer's own mount table must be exactly what it was. The
# propagation topologies are also probed live: a tmpfs mounted at the same
# place in the original and in the restored namespace must show up at the
# same mountpoints. lib.sh checks the host's mount table at the end.
# The topologies are single-quoted: $D and $S expand in the namespace that builds them.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -z ${NONEWAPI:-} || ! -x $NONEWAPI ]]; then
	NONEWAPI=$(dirname "$MNTCR")/../tests/nonewapi
fi

# ------------------------------------------------------------------------------------------------

# The kernel check and the dump under the filter.
check_exit 0 "nonewapi: mntcr check exits 0" "$NONEWAPI" "$MNTCR" check
check "nonewapi: check reports the compat engine" grep -qE '^restore engine +compat$' "$OUT"
check "nonewapi: check reports mountinfo as the dump source" grep -qE '^dump source +mountinfo$' "$OUT"
check "nonewapi: check finds no open_tree" grep -qE '^open_tree +no$' "$OUT"

RPID=
# Start `mntcr restore IMAGE -- sleep` (its arguments in "$@"), wait until sleep runs in
# the restored namespace; RPID is its pid, or empty if the restore failed (stderr in $ERR).
restore_run() {
	local i
	RPID=
	"$@" -- sleep infinity </dev/null >"$OUT" 2>"$ERR" &
	local pid=$!
	echo "$pid" >>"$NS_TMP/pids"
	for ((i = 0; i < 1000; i++)); do
		if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */sleep ]]; then
			RPID=$pid
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.01
	done
	wait "$pid" 2>/dev/null
	return 1
}

# compat_check NAME: dump NAME, restore it with both runners, diff, check our table.
compat_check() {
	local name=$1 pid img mode before after
	pid=$(ns_pid "$name")
	img=$NS_TMP/$name.img
	if ! mntcr_dump "$pid" "$img"; then
		not_ok "$name: dump" "$(cat "$MNTCR_ERR")"
		return 1
	fi
	for mode in compat nonewapi; do
		local -a cmd=("$MNTCR" restore --engine=compat --image "$img")
		[[ $mode == nonewapi ]] && cmd=("$NONEWAPI" "$MNTCR" restore --image "$img")
		before=$(cat /proc/self/mountinfo)
		if ! restore_run "${cmd[@]}"; then
			not_ok "$name ($mode): restore" "$(cat "$ERR")"
			continue
		fi
		ok "$name ($mode): restore"
		check_exit 0 "$name ($mode): diff image pid:restored finds no difference" \
			"$MNTCR" diff "$img" "pid:$RPID"
		check_exit 0 "$name ($mode): diff pid:original pid:restored finds no difference" \
			"$MNTCR" diff "pid:$pid" "pid:$RPID"
		after=$(cat /proc/self/mountinfo)
		is "$after" "$before" "$name ($mode): the restorer's mount table is unchanged"
		[[ $mode == compat ]] && CPID=$RPID
		[[ $mode == nonewapi ]] && { kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; }
	done
	RPID=$CPID
}

done_with_compat() {
	[[ -n $RPID ]] && { kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; }
	RPID=
	ns_stop "$1"
}

# In the restored namespace (a private copy of it): run CMDS.
restored_sh() {
	nsenter -t "$RPID" -m unshare -m --propagation private sh -c "$1"
}

# The mountpoints where a tmpfs with source $2 shows up in mountinfo $1, sorted.
where() {
	awk -v tag="$2" '{ for (i = 7; $i != "-"; i++); if ($(i + 1) == "tmpfs" && $(i + 2) == tag) print $5 }' \
		"$1" | sort
}

# probe NAME REL: mount a tmpfs at $S/NAME/REL in the original and in the restored namespace.
PROBES=0
probe() {
	local name=$1 rel=$2 tag pid want got
	PROBES=$((PROBES + 1))
	tag=cprobe$PROBES
	pid=$(ns_pid "$name")
	if ! nsenter -t "$pid" -m mount -t tmpfs "$tag" "$S/$name/$rel" 2>"$ERR" ||
		! nsenter -t "$RPID" -m mount -t tmpfs "$tag" "$S/$name/$rel" 2>>"$ERR"; then
		not_ok "$name: probe at $rel" "$(cat "$ERR")"
		return
	fi
	want=$(where "/proc/$pid/mountinfo" "$tag")
	got=$(where "/proc/$RPID/mountinfo" "$tag")
	if [[ -z $want ]]; then
		not_ok "$name: probe at $rel shows up in the original" "no mount with source $tag"
		return
	fi
	is "$got" "$want" "$name: a mount at $rel propagates to the same $(wc -l <<<"$want") places"
}

# ------------------------------------------------------------------------------------------------
# Topology

ns_start flat '
	mkdir -p $D/a $D/b $D/c; echo A >$D/a/marker
	mount -t tmpfs ta $D/a; mount -t tmpfs -o size=2m tb $D/b; mount --bind $S $D/c'
compat_check flat
is "$(restored_sh "cat $S/flat/c/flat/a/marker")" "A" "flat: marker under an external bind"
done_with_compat flat

ns_start nested '
	mount -t tmpfs n1 $D; mkdir $D/x; mount -t tmpfs n2 $D/x; mkdir $D/x/y
	mount -t tmpfs -o mode=700 n3 $D/x/y; mkdir $D/x/y/z; mount -t ramfs r4 $D/x/y/z'
compat_check nested
done_with_compat nested

# The seed's case: a tmpfs mounted over a path that has mounts under it.
ns_start seed '
	mkdir -p $D/a/b $D/m; echo seed >$D/m/marker
	mount -t tmpfs L $D/a; mkdir $D/a/b; mount --bind $D/m $D/a/b
	mount -t tmpfs T $D/a; echo top >$D/a/T_file'
compat_check seed
is "$(restored_sh "umount $S/seed/a && cat $S/seed/a/b/marker")" "seed" \
	"seed: the bind under the over-mount"
done_with_compat seed

ns_start stack3 '
	mount -t tmpfs s1 $D; mount -t tmpfs -o size=1m s2 $D; mount -t tmpfs -o mode=711 s3 $D'
compat_check stack3
is "$(grep " $S/stack3 " "/proc/$RPID/mountinfo" | awk '{print $(NF-1)}' | tr '\n' ' ')" "s1 s2 s3 " \
	"stack3: three layers in order"
done_with_compat stack3

# An over-mount covering a subtree that holds a bind.
ns_start cover_bind '
	mkdir -p $D/t/sub $D/src; echo inner >$D/src/marker
	mount -t tmpfs inner $D/t/sub; mkdir -p $D/t/sub/deep
	mount --bind $D/src $D/t/sub/deep
	mount -t tmpfs cover $D/t'
compat_check cover_bind
is "$(restored_sh "umount $S/cover_bind/t && cat $S/cover_bind/t/sub/deep/marker")" "inner" \
	"cover_bind: the bind under the covered subtree"
done_with_compat cover_bind

ns_start filebind '
	echo one >$D/f1; echo two >$D/f2; echo three >$D/f3; touch $D/target
	mount --bind $D/f1 $D/target; mount --bind $D/f2 $D/target
	mkdir $D/dir; mount -t tmpfs over $D/dir
	touch $D/dir/ft; mount --bind $D/f3 $D/dir/ft; mount --bind $D/f1 $D/dir/ft'
compat_check filebind
is "$(restored_sh "cat $S/filebind/target")" "two" "filebind: the top file bind"
is "$(restored_sh "umount $S/filebind/target && cat $S/filebind/target")" "one" "filebind: the lower file bind"
done_with_compat filebind

# Binds of three subdirectories of one tmpfs, one of them covered later.
ns_start subdirs '
	mkdir -p $D/pool $D/x $D/y $D/z; mount -t tmpfs pool $D/pool; mkdir -p $D/pool/a $D/pool/b $D/pool/c
	mount --bind $D/pool/a $D/x; mount --bind $D/pool/b $D/y; mount --bind $D/pool/c $D/z
	mount -t tmpfs hide $D/y'
compat_check subdirs
done_with_compat subdirs

# A chain of over-mounts over over-mounts.
ns_start overover '
	mkdir -p $D/a/b/c
	mount -t tmpfs l1 $D/a/b/c
	mount -t tmpfs l2 $D/a/b; mkdir -p $D/a/b/c; mount -t tmpfs l3 $D/a/b/c
	mount -t tmpfs l4 $D/a; mkdir -p $D/a/b; mount -t tmpfs l5 $D/a/b
	mount -t tmpfs l6 $D'
compat_check overover
done_with_compat overover

ns_start pseudo '
	mkdir -p $D/proc $D/sys $D/pts $D/mq
	mount -t proc -o hidepid=invisible proc $D/proc
	mount -t sysfs sysfs $D/sys
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $D/pts
	mount -t mqueue mqueue $D/mq'
compat_check pseudo
done_with_compat pseudo

ns_start flags '
	mkdir -p $D/t $D/ro $D/rosb $D/nx $D/na
	mount -t tmpfs rw-tmpfs $D/t; mkdir $D/t/sub
	mount --bind $D/t/sub $D/ro; mount -o remount,bind,ro $D/ro
	mount -t tmpfs -o ro rosb $D/rosb
	mount -t tmpfs -o nosuid,nodev,noexec nx $D/nx
	mount -t tmpfs -o noatime,nodiratime na $D/na'
compat_check flags
check "flags: the ro bind is read-only" restored_sh "! touch $S/flags/ro/x 2>/dev/null"
check "flags: the rw tmpfs under it is writable" restored_sh "touch $S/flags/t/x"
check "flags: the ro superblock is read-only" restored_sh "! touch $S/flags/rosb/x 2>/dev/null"
done_with_compat flags

# ------------------------------------------------------------------------------------------------
# Propagation

# The propagation topologies live on the scratch tmpfs (the restorer has it too, external), so that
# the probes' directories exist on both sides.

# Peers made by bind, then a mount under one of them that the kernel copies to the others.
ns_start peers '
	mount --bind $D $D; mount --make-shared $D
	mkdir -p $D/x/pr $D/x/y $D/p1 $D/p2
	mount --bind $D/x $D/p1; mount --bind $D/x $D/p2
	mount -t tmpfs X $D/x/pr'
compat_check peers
probe peers p1/y
probe peers p2/pr
done_with_compat peers

# A peer made after a mount under another peer: the kernel did not copy that mount into it.
ns_start latepeer '
	mount --bind $D $D; mount --make-shared $D
	mkdir -p $D/x/pr $D/x/y $D/p1 $D/p2
	mount --bind $D/x $D/p1
	mount -t tmpfs X $D/x/pr
	mount --bind $D/x $D/p2'
compat_check latepeer
is "$(grep -c " $S/latepeer/p2/pr " "/proc/$RPID/mountinfo")" 0 "latepeer: the late peer has no copy"
probe latepeer p2/y
done_with_compat latepeer

# A slave, which received a mount from its master, and a shared slave.
ns_start slave '
	mkdir -p $D/m/x $D/m/y $D/m/z $D/s $D/ss
	mount --bind $D/m $D/m; mount --make-shared $D/m
	mount --bind $D/m $D/s; mount --make-slave $D/s
	mount --bind $D/m $D/ss; mount --make-slave $D/ss; mount --make-shared $D/ss
	mount -t tmpfs X $D/m/x'
compat_check slave
probe slave m/y
probe slave ss/z
probe slave s/x
done_with_compat slave

ns_start unbindable '
	mount -t tmpfs pu $D; mkdir -p $D/u $D/p; mount -t tmpfs U $D/u; mount --make-unbindable $D/u
	mount -t tmpfs P $D/p; mount --make-private $D/p'
compat_check unbindable
# (in the restored namespace itself: a copy of a namespace is never unbindable)
check "unbindable: a bind of the unbindable mount is refused" \
	sh -c "! nsenter -t $RPID -m mount --bind $S/unbindable/u $S/unbindable/p 2>/dev/null"
done_with_compat unbindable

# The D example: the kernel propagates the last bind into two other peers by itself.
ns_start dexample '
	mount --bind $D $D; mount --make-shared $D; mkdir -p $D/a/b/c $D/d $D/e $D/f
	mount --bind $D/a $D/d; mount --bind $D/a/b $D/e; mount --bind $D/f $D/a/b/c'
compat_check dexample
is "$(grep -c " $S/dexample" "/proc/$RPID/mountinfo")" "$(grep -c " $S/dexample" "/proc/$(ns_pid dexample)/mountinfo")" \
	"dexample: the kernel's propagated copies, not one more or less"
probe dexample f
probe dexample d
done_with_compat dexample

# ------------------------------------------------------------------------------------------------
# What the compat engine refuses: before mounting anything, with one clear message.

# The root mount in a peer group with another mount: pivot_root(2) refuses a shared new root.
ns_start sharedroot 'mount --make-shared /; mkdir -p $D/r; mount --bind / $D/r'
mntcr_dump "$(ns_pid sharedroot)" "$NS_TMP/sharedroot.img"
before=$(cat /proc/self/mountinfo)
check_exit 7 "sharedroot: the compat engine refuses (exit 7)" \
	"$MNTCR" restore --engine=compat --image "$NS_TMP/sharedroot.img" --persist "$NS_TMP/sharedroot.ns"
check "sharedroot: the message names pivot_root and the mount-api engine" \
	grep -q "pivot_root.*mount-api engine" "$ERR"
is "$(wc -l <"$ERR")" 1 "sharedroot: one line on stderr"
is "$(cat /proc/self/mountinfo)" "$before" "sharedroot: nothing mounted here"
check_exit 7 "sharedroot: so does --dry-run" \
	"$MNTCR" restore --engine=compat --image "$NS_TMP/sharedroot.img" --dry-run
ns_stop sharedroot

# --dry-run prints the compat plan and mounts nothing; under the filter it is the default.
ns_start dry 'mount -t tmpfs dry $D; mkdir $D/a; mount -t tmpfs dry2 $D/a; mount -t tmpfs dry3 $D/a'
mntcr_dump "$(ns_pid dry)" "$NS_TMP/dry.img"
before=$(cat /proc/self/mountinfo)
check_exit 0 "dry-run: exits 0" "$MNTCR" restore --engine=compat --image "$NS_TMP/dry.img" --dry-run
check "dry-run: the plan starts with the yard's namespace" grep -q "namespace   unshare" "$OUT"
check "dry-run: the stacked tmpfs is built in a slot of the yard" grep -q "bind        @t/[0-9]* -> @r/" "$OUT"
check "dry-run: ... and moved into place" grep -q "move        #" "$OUT"
check_exit 0 "dry-run under the filter: exits 0" "$NONEWAPI" "$MNTCR" restore --image "$NS_TMP/dry.img" --dry-run
check "dry-run under the filter: the compat plan" grep -q "pivot       the root mount becomes /" "$OUT"
is "$(cat /proc/self/mountinfo)" "$before" "dry-run: mounts nothing"
check_exit 6 "mount-api under the filter: refused, the kernel lacks it" \
	"$NONEWAPI" "$MNTCR" restore --engine=mount-api --image "$NS_TMP/dry.img" --persist "$NS_TMP/dry.ns"
ns_stop dry

# Failures in the executor: a fault at several mount(2) calls aborts with one message naming the
# phase and leaves nothing here.
ns_start cfaults '
	mount -t tmpfs f0 $D; mkdir -p $D/a/b $D/c; mount -t tmpfs f1 $D/a
	mkdir -p $D/a/b; mount -t tmpfs f2 $D/a/b; mount -t tmpfs f3 $D/a
	mount --bind $D/c $D/c; mount --make-shared $D/c; mkdir $D/c/d $D/e; mount --bind $D/c/d $D/e'
mntcr_dump "$(ns_pid cfaults)" "$NS_TMP/cfaults.img"
before=$(cat /proc/self/mountinfo)
for k in 1 2 3 4 7 20; do
	MNTCR_FAULT_AT=$k MNTCR_FAULT_ERRNO=ENOSPC "$MNTCR" restore --engine=compat \
		--image "$NS_TMP/cfaults.img" -- true >"$OUT" 2>"$ERR"
	rc=$?
	if [[ $rc == 6 ]] && grep -q "No space left on device" "$ERR" && grep -q "phase" "$ERR" &&
		[[ $(wc -l <"$ERR") == 1 ]]; then
		ok "fault at call $k: exit 6 and one message naming the phase"
	else
		not_ok "fault at call $k: exit 6 and one message naming the phase" "exit $rc" "$(cat "$ERR")"
	fi
done
is "$(cat /proc/self/mountinfo)" "$before" "faults: no mount left here"
ns_stop cfaults
