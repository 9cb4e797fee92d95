#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Propagation: peer groups, slaves, shared slaves, unbindable and private
# mounts, and the copies the kernel made by itself, restored exactly. Each
# topology is dumped, restored and diffed (lib.sh restore_check), and then
# checked live: a tmpfs mounted at the same place in the original and in
# the restored namespace must show up at exactly the same mountpoints.
# The topologies live on the scratch tmpfs (the restorer has it too), so the
# probe directories exist on both sides.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
	tag=probe$PROBES
	pid=$(ns_pid "$name")
	if ! nsenter -t "$pid" -m mount -t tmpfs "$tag" "$S/$name/$rel" 2>"$ERR"; then
		not_ok "$name: probe at $rel" "$(cat "$ERR")"
		return
	fi
	if ! nsenter --mount="$NSF" mount -t tmpfs "$tag" "$S/$name/$rel" 2>"$ERR"; then
		not_ok "$name: probe at $rel in the restored namespace" "$(cat "$ERR")"
		return
	fi
	want=$(where "/proc/$pid/mountinfo" "$tag")
	got=$(nsenter --mount="$NSF" cat /proc/self/mountinfo >"$NS_TMP/probe.mi" && where "$NS_TMP/probe.mi" "$tag")
	if [[ -z $want ]]; then
		not_ok "$name: probe at $rel shows up in the original" "no mount with source $tag"
		return
	fi
	is "$got" "$want" "$name: a mount at $rel propagates to the same $(wc -l <<<"$want") places"
}

ns_start peers '
	mount --bind $D $D; mount --make-shared $D
	mkdir -p $D/x/pr $D/p1 $D/p2
	mount --bind $D/x $D/p1; mount --bind $D/x $D/p2'
restore_check peers
probe peers p1/pr
done_with peers

ns_start subdir '
	mount --bind $D $D; mount --make-shared $D
	mkdir -p $D/a/b/c $D/d $D/e $D/f
	mount --bind $D/a $D/d; mount --bind $D/a/b $D/e; mount --bind $D/f $D/a/b/c'
restore_check subdir
is "$(grep -c " $S/subdir/" "/proc/$RPID/mountinfo")" "$(grep -c " $S/subdir/" "/proc/$(ns_pid subdir)/mountinfo")" \
	"subdir: the kernel's propagated copies, not one more or less"
probe subdir d
probe subdir e
done_with subdir

ns_start slaves '
	mkdir -p $D/m/pr $D/m/pr2 $D/s $D/s2 $D/t
	mount --bind $D/m $D/m; mount --make-shared $D/m
	mount --bind $D/m $D/s; mount --make-slave $D/s
	mount --bind $D/m $D/s2; mount --make-slave $D/s2; mount --make-shared $D/s2
	mount --bind $D/s2 $D/t; mount --make-slave $D/t'
restore_check slaves
probe slaves m/pr
probe slaves s2/pr2
probe slaves s/pr2
done_with slaves

# A slave that is also shared, with a peer of its own.
ns_start slaveshared '
	mkdir -p $D/m/pr $D/m/q $D/s1 $D/s2
	mount --bind $D/m $D/m; mount --make-shared $D/m
	mount --bind $D/m $D/s1; mount --make-slave $D/s1; mount --make-shared $D/s1
	mount --bind $D/s1 $D/s2'
restore_check slaveshared
probe slaveshared m/pr
probe slaveshared s1/q
done_with slaveshared

ns_start unbindable '
	mkdir -p $D/u $D/v; mount --bind $D/u $D/u; mount --make-unbindable $D/u
	mount --bind $D/v $D/v; mount --make-rshared $D/v'
restore_check unbindable
# (in the namespace itself: a copy of a namespace turns unbindable mounts private)
check "unbindable: a bind of it is refused in the restored namespace" \
	sh -c "! nsenter --mount=$NSF mount --bind $S/unbindable/u /mnt 2>/dev/null"
done_with unbindable

# A private mount inside a propagated set, and peers with different children.
ns_start mixed '
	mount --bind $D $D; mount --make-shared $D
	mkdir -p $D/x/a/pr $D/x/c $D/p1 $D/p2 $D/p3
	mount --bind $D/x $D/p1
	mount -t tmpfs only-in-p1 $D/p1/c
	mount --bind $D/p1 $D/p2
	mount --bind $D/x/a $D/p3; mount --make-private $D/p3'
restore_check mixed
probe mixed p1/a/pr
done_with mixed

# The over-mount with a shared parent that the seed refused.
ns_start seedshared '
	mount --bind $D $D; mount --make-shared $D
	mkdir -p $D/a/b/c $D/d/pr
	mount --bind $D/a/b $D/a; mount --bind $D/d $D/a/c'
restore_check seedshared
probe seedshared a/c/pr
done_with seedshared

# A mount tucked under another by propagation.
ns_start tucked '
	mkdir -p $D/x/c $D/p1 $D/p2
	mount --bind $D/x $D/x; mount --make-shared $D/x
	mount --bind $D/x $D/p1; mount --bind $D/x $D/p2
	mount -t tmpfs first $D/p1/c
	mount -t tmpfs second $D/p2/c'
restore_check tucked
done_with tucked

# The rich mix.
ns_start rich '
	mkdir -p $D/t/priv $D/t/sh $D/t/sl $D/t/slsh $D/src/priv/pr $D/src/sh/pr $D/src/sl/pr $D/src/slsh/pr
	mount --bind $D/t $D/t; mount --make-shared $D/t
	for i in 1 2 3 4; do mkdir -p $D/p$i; mount --bind $D/t $D/p$i; done
	mount --bind $D/src/priv $D/src/priv
	for k in sh sl slsh; do mount --bind $D/src/$k $D/src/$k; mount --make-shared $D/src/$k; done
	mount --bind $D/src/priv $D/p1/priv
	mount --bind $D/src/sh $D/p1/sh
	mount --bind $D/src/sl $D/p1/sl; mount --make-slave $D/p1/sl
	mount --bind $D/src/slsh $D/p1/slsh; mount --make-slave $D/p1/slsh; mount --make-shared $D/p1/slsh
	for k in priv sh sl slsh; do
		mount --make-private $D/p2/$k
		mount --make-slave $D/p3/$k
		mount --make-private $D/p4/$k; mount --make-shared $D/p4/$k
	done
	mount -o remount,bind,ro $D/p2/sh; mount -o remount,bind,ro $D/p3/sh'
restore_check rich
probe rich src/sh/pr
probe rich src/slsh/pr
probe rich p4/slsh/pr
probe rich p1/priv/pr
done_with rich

# Groups of new filesystems whose mounts are all childless clones: the
# filesystem's mount is made shared as it is made, and every clone of it is
# born a peer (plan.c, prop_early): no SET_GROUP. A group with a read-only
# peer, a slave, a shared slave; and one with no member at the filesystem's
# root (its shared mount was unmounted), whose common root no member has;
# one whose filesystem's own mount became a slave (the clones are taken of
# it, so it becomes one last).
ns_start born '
	mount -t tmpfs base $D; mkdir -p $D/a $D/p $D/s $D/ss $D/r $D/q1 $D/q2
	mount -t tmpfs A $D/a; mount --make-shared $D/a; mkdir -p $D/a/d/pr $D/a/e
	mount --bind $D/a $D/p; mount -o remount,bind,ro $D/p
	mount --bind $D/a/d $D/s; mount --make-slave $D/s
	mount --bind $D/a $D/ss; mount --make-slave $D/ss; mount --make-shared $D/ss
	mount -t tmpfs B $D/r; mount --make-shared $D/r; mkdir -p $D/r/x/pr $D/r/y
	mount --bind $D/r/x $D/q1; mount --bind $D/r/y $D/q2; umount $D/r
	mkdir -p $D/c $D/cp; mount -t tmpfs C $D/c; mount --make-shared $D/c; mkdir $D/c/pr
	mount --bind $D/c $D/cp; mount --make-slave $D/c'
restore_check born
# The mount-api engine's plan (the compat engine, which valgrind gets too, has no such ops).
if [[ ${MNTCR_ENGINE:-} != compat ]]; then
	"$MNTCR" plan --image "$NS_TMP/born.img" >"$NS_TMP/born.plan" 2>"$ERR"
	is "$(grep -c ', shared$' "$NS_TMP/born.plan")" 3 "born: the three filesystems are made shared as they are made"
	is "$(grep -c 'set-group' "$NS_TMP/born.plan")" 0 "born: ... and no mount joins a group afterwards"
fi
probe born a/d/pr
probe born ss/e
probe born q1/pr
probe born cp/pr
done_with born

# A slave of a peer group that only the restorer's namespace has (here: the test's).
mkdir -p "$S/extm/pr"
mount --bind "$S/extm" "$S/extm"
mount --make-shared "$S/extm"
# Few fds: without CAP_SYS_RESOURCE the restorer cannot raise RLIMIT_NOFILE
# to an fd per mount, and keeps few open (exec.c "economy"): the mounts the
# propagation phase needs are closed after they are attached, and reopened.
# Templates with clones wait for them in a detached tmpfs, not as fds.
ns_start fewfds '
	for i in $(seq 100); do
		mkdir -p $D/u$i/a $D/u$i/p $D/u$i/s; mount -t tmpfs u$i $D/u$i/a; mount --make-shared $D/u$i/a
		mkdir $D/u$i/a/d; mount --bind $D/u$i/a $D/u$i/p
		mount --bind $D/u$i/a/d $D/u$i/s; mount --make-slave $D/u$i/s
	done'
mntcr_dump "$(ns_pid fewfds)" "$NS_TMP/fewfds.img" --no-content
check "fewfds: dump" test "$MNTCR_RC" = 0
NSF=$NS_TMP/fewfds.ns
: >"$NSF"
fewfds=(prlimit --nofile=64:64 setpriv --bounding-set -sys_resource
	"$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$NS_TMP/fewfds.img" --persist "$NSF")
if [[ ${MNTCR_ENGINE:-} == compat ]]; then
	# The compat engine holds an fd per mount: it says so, and leaves nothing.
	check_exit 6 "fewfds: the compat engine refuses 300 mounts with 64 fds" "${fewfds[@]}"
	check "fewfds: ... saying why" grep -q "Failed to raise the open file limit" "$ERR"
	check "fewfds: ... and nothing is restored" test ! -s "$NSF"
else
	check_exit 0 "fewfds: restore of 300 shared and slave mounts with at most 64 fds" "${fewfds[@]}"
	check_exit 0 "fewfds: diff image ns:restored finds no difference" \
		"$MNTCR" diff "$NS_TMP/fewfds.img" "ns:$NSF"
	RPID=$(enter "$NSF")
	probe fewfds u100/p
fi
done_with fewfds

NS_PROPAGATION=unchanged ns_start extmaster 'mount --make-slave $S/extm'
restore_check extmaster
mount -t tmpfs extprobe "$S/extm/pr"
is "$(grep -c " - tmpfs extprobe " "/proc/$RPID/mountinfo")" "1" \
	"extmaster: a mount in the master's group reaches the restored slave"
is "$(grep -c " - tmpfs extprobe " "/proc/$(ns_pid extmaster)/mountinfo")" "1" \
	"extmaster: ... as it reaches the original"
umount "$S/extm/pr"
done_with extmaster

# A slave of a group that the restorer does not have: refused, or private on request.
NS_PROPAGATION=private ns_start outer '
	mkdir -p $D/g; mount --bind $D/g $D/g; mount --make-shared $D/g
	unshare -m --propagation unchanged sh -c "mount --make-slave $D/g; echo \$\$ >$D/inner.pid; exec sleep infinity" &
	for i in $(seq 100); do [ -s $D/inner.pid ] && break; sleep 0.05; done'
inner=$(cat "$S/outer/inner.pid")
echo "$inner" >>"$NS_TMP/pids"
mntcr_dump "$inner" "$NS_TMP/orphan.img"
check_exit 6 "orphan master: restore refuses a slave whose master group is not here" \
	"$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$NS_TMP/orphan.img" --persist "$NS_TMP/orphan.ns"
check "orphan master: the message says what to do" grep -q -- "--external-master=private" "$ERR"
: >"$NS_TMP/orphan.ns"
check_exit 0 "orphan master: --external-master=private restores it" \
	"$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$NS_TMP/orphan.img" --persist "$NS_TMP/orphan.ns" \
	--external-master=private
check "orphan master: with a warning naming the mount" grep -q "$S/outer/g" "$ERR"
check_exit 1 "orphan master: diff reports the lost master" "$MNTCR" diff "$NS_TMP/orphan.img" "ns:$NS_TMP/orphan.ns"
umount "$NS_TMP/orphan.ns"
kill "$inner" 2>/dev/null
ns_stop outer
