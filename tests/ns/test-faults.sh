#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Fault injection: for several topologies (over-mounts, propagation,
# content, several namespaces, superblocks made on a second thread),
# make the k-th mount-changing
# syscall of a restore fail, for every k until the restore gets past the
# last one (tests/ns/restore-faults.c), with EPERM, ENOMEM, EBUSY and
# ENOSPC. Each time: the injected error comes back with a report naming the
# phase, the caller's fd table and mount table are unchanged, and no
# process is left behind.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${MNTCR_FAULTS:=$(dirname "$MNTCR")/../tests/restore-faults}"

# run_faults TOPOLOGY ERRNO [in-process]: the restores in a child (the library's default) or in
# the calling process (mntcr_restore_opts.in_process, as mntcr(1) restores).
run_faults() {
	local name=$1 err=$2 how=${3:-} before
	before=$(cat /proc/self/mountinfo)
	[[ -n $how ]] && name+=" ($how)"
	if MNTCR_IN_PROCESS=$([[ -n $how ]] && echo 1) "$MNTCR_FAULTS" "$NS_TMP/$1.img" "$err" >"$OUT" 2>"$ERR"; then
		ok "$name, $err: every call failed in turn ($(grep -c '^ok' "$OUT") restores), cleanly"
	else
		not_ok "$name, $err: every call failed in turn, cleanly" "$(grep -A1 '^not ok' "$OUT" | head -20)" \
			"$(cat "$ERR")"
	fi
	is "$(cat /proc/self/mountinfo)" "$before" "$name, $err: the caller's mount table is unchanged"
	check "$name, $err: no mntcr process left" no_process_left mntcr
	check "$name, $err: no restore-faults process left" no_process_left restore-faults
}

ns_start overmount '
	mount -t tmpfs base $D; mkdir -p $D/a/b $D/s $D/m
	mount -t tmpfs L $D/a; mkdir -p $D/a/b; mount -t tmpfs B $D/a/b; mount -t tmpfs T $D/a
	mount -t tmpfs s1 $D/s; mount -t tmpfs -o ro s2 $D/s
	mount --bind $D/m $D/m; mount -o remount,bind,ro,nosuid $D/m'
mntcr_dump "$(ns_pid overmount)" "$NS_TMP/overmount.img"
ns_start propagation '
	mount --bind $D $D; mount --make-shared $D
	mkdir -p $D/a/b/c $D/d $D/e $D/f $D/u
	mount --bind $D/a $D/d; mount --bind $D/a/b $D/e; mount --bind $D/f $D/a/b/c
	mount --bind $D/a $D/u; mount --make-slave $D/u; mount --make-shared $D/u
	mkdir -p $D/g $D/gp $D/gs; mount -t tmpfs G $D/g; mount --make-shared $D/g; mkdir $D/g/d
	mount --bind $D/g $D/gp; mount --bind $D/g/d $D/gs; mount --make-slave $D/gs'
mntcr_dump "$(ns_pid propagation)" "$NS_TMP/propagation.img"

# Content: files in a tmpfs, hidden under an over-mount too, streamed while the calls fail.
ns_start content '
	mount -t tmpfs C $D; mkdir -p $D/d/sub $D/o
	for i in 1 2 3; do echo "file $i" >$D/d/sub/f$i; done; ln -s f1 $D/d/sub/l; mkfifo $D/d/p
	echo hidden >$D/o/under; mount -t tmpfs O $D/o; echo top >$D/o/top'
mntcr_dump "$(ns_pid content)" "$NS_TMP/content.img"
# Enough superblocks for the executor to make them on a second thread
# (exec.c, "ahead"): its failures come back the same way.
ns_start many '
	mount -t tmpfs M $D
	for i in $(seq 1 24); do mkdir $D/m$i; mount -t tmpfs m$i $D/m$i; done
	mkdir $D/m1/deep; mount -t tmpfs deep $D/m1/deep; echo file >$D/m2/f
	echo hidden >$D/m3/under; mount -t tmpfs over $D/m3'
mntcr_dump "$(ns_pid many)" "$NS_TMP/many.img"
topologies=(overmount propagation content many)
# Several namespaces (mount-api engine only): a child's copy sharing a group with its parent.
if [[ ${MNTCR_ENGINE:-} != compat ]]; then
	ns_start mpar 'mount -t tmpfs P $D; mkdir -p $D/sh $D/a; mount -t tmpfs SH $D/sh; mount --make-shared $D/sh'
	NS_PARENT=$(ns_pid mpar) NS_PROPAGATION=unchanged ns_start mkid '
		mount -t tmpfs K $S/mpar/a; echo kid >$S/mpar/a/f; mount --make-slave $S/mpar/sh'
	"$MNTCR" dump --pid "$(ns_pid mpar)" --pid "$(ns_pid mkid)" -o "$NS_TMP/multins.img" 2>"$ERR" ||
		not_ok "multins: dump" "$(cat "$ERR")"
	topologies+=(multins)
fi

for err in EPERM ENOMEM EBUSY ENOSPC; do
	for topo in "${topologies[@]}"; do
		run_faults "$topo" $err
	done
done
for topo in "${topologies[@]}"; do
	run_faults "$topo" EPERM in-process
done
