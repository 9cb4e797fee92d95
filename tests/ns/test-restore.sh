#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# mntcr restore on real topologies. Each one is built by a process in a
# mount namespace of its own, dumped, restored into a fresh namespace
# (--persist, then a process entered with nsenter), and then
#  - `mntcr diff IMAGE pid:RESTORED` and `mntcr diff pid:ORIGINAL pid:RESTORED`
#    must find no difference;
#  - marker files must be readable where the topology put them. Markers live
#    on the test's scratch tmpfs, which the restorer's namespace has too
#    (external), so they are there without content restore.
# The topologies are single-quoted: $D and $S expand in the namespace that builds them.
# MNTCR_ENGINE=compat runs the same tests with the compat engine.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ------------------------------------------------------------------------------------------------

ns_start flat '
	mkdir -p $D/a $D/b $D/c; echo A >$D/a/marker
	mount -t tmpfs ta $D/a; mount -t tmpfs -o size=2m tb $D/b; mount --bind $S $D/c'
restore_check flat
is "$(restored_sh "cat $S/flat/c/flat/a/marker")" "A" "flat: marker under an external bind"
done_with flat

ns_start nested '
	mount -t tmpfs n1 $D; mkdir $D/x; mount -t tmpfs n2 $D/x; mkdir $D/x/y
	mount -t tmpfs -o mode=700 n3 $D/x/y; mkdir $D/x/y/z; mount -t ramfs r4 $D/x/y/z'
restore_check nested
done_with nested

ns_start chain50 '
	p=$D
	for i in $(seq 1 50); do mkdir -p $p/c; mount -t tmpfs c$i $p/c; p=$p/c; done'
restore_check chain50
is "$(grep -c " - tmpfs c[0-9]* " "/proc/$RPID/mountinfo")" "50" "chain50: 50 mounts in the chain"
done_with chain50

# The seed's case: a tmpfs mounted over a path that has mounts under it.
ns_start seed '
	mkdir -p $D/a/b $D/m; echo seed >$D/m/marker
	mount --bind $D/m $D/a/b
	mount -t tmpfs T $D/a; echo top >$D/a/T_file'
restore_check seed
is "$(restored_sh "umount $S/seed/a && cat $S/seed/a/b/marker")" "seed" \
	"seed: the covered bind is restored under the over-mount"
done_with seed

ns_start stack3 '
	mount -t tmpfs s1 $D; mount -t tmpfs -o size=1m s2 $D; mount -t tmpfs -o mode=711 s3 $D'
restore_check stack3
is "$(grep " $S/stack3 " "/proc/$RPID/mountinfo" | awk '{print $(NF-1)}' | tr '\n' ' ')" "s1 s2 s3 " \
	"stack3: three layers in order"
done_with stack3

# An over-mount covering a subtree that holds a bind.
ns_start cover_bind '
	mkdir -p $D/t/sub/deep $D/src; echo inner >$D/src/marker
	mount -t tmpfs inner $D/t/sub; mkdir -p $D/t/sub/deep
	mount --bind $D/src $D/t/sub/deep
	mount -t tmpfs cover $D/t'
restore_check cover_bind
is "$(restored_sh "umount $S/cover_bind/t && cat $S/cover_bind/t/sub/deep/marker")" "inner" \
	"cover_bind: the bind under the covered subtree"
done_with cover_bind

ns_start filebind '
	echo one >$D/f1; echo two >$D/f2; echo three >$D/f3; touch $D/target
	mount --bind $D/f1 $D/target; mount --bind $D/f2 $D/target; mount --bind $D/f3 $D/other 2>/dev/null || true
	mount -t tmpfs over $D/dir 2>/dev/null || { mkdir $D/dir; mount -t tmpfs over $D/dir; }
	touch $D/dir/ft; mount --bind $D/f3 $D/dir/ft; mount --bind $D/f1 $D/dir/ft'
restore_check filebind
is "$(restored_sh "cat $S/filebind/target")" "two" "filebind: the top file bind"
is "$(restored_sh "umount $S/filebind/target && cat $S/filebind/target")" "one" \
	"filebind: the lower file bind"
done_with filebind

# Binds of three subdirectories of one tmpfs, one of them covered later.
ns_start subdirs '
	mount -t tmpfs pool $D; mkdir -p $D/pool/a $D/pool/b $D/pool/c $D/x $D/y $D/z
	mount --bind $D/pool/a $D/x; mount --bind $D/pool/b $D/y; mount --bind $D/pool/c $D/z
	mount -t tmpfs hide $D/y'
restore_check subdirs
done_with subdirs

# A chain of over-mounts over over-mounts.
ns_start overover '
	mkdir -p $D/a/b/c
	mount -t tmpfs l1 $D/a/b/c
	mount -t tmpfs l2 $D/a/b; mkdir -p $D/a/b/c; mount -t tmpfs l3 $D/a/b/c
	mount -t tmpfs l4 $D/a; mkdir -p $D/a/b; mount -t tmpfs l5 $D/a/b
	mount -t tmpfs l6 $D'
restore_check overover
done_with overover

ns_start pseudo '
	mkdir -p $D/proc $D/sys $D/pts $D/mq $D/cg
	mount -t proc -o hidepid=invisible proc $D/proc
	mount -t sysfs sysfs $D/sys
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $D/pts
	mount -t mqueue mqueue $D/mq
	mount -t cgroup2 cgroup2 $D/cg'
restore_check pseudo
done_with pseudo

ns_start flags '
	mkdir -p $D/t $D/ro $D/rosb $D/nx $D/na
	mount -t tmpfs rw-tmpfs $D/t; mkdir $D/t/sub
	mount --bind $D/t/sub $D/ro; mount -o remount,bind,ro $D/ro
	mount -t tmpfs -o ro rosb $D/rosb
	mount -t tmpfs -o nosuid,nodev,noexec nx $D/nx
	mount -t tmpfs -o noatime,nodiratime na $D/na'
restore_check flags
check "flags: the ro bind is read-only" restored_sh "! touch $S/flags/ro/x 2>/dev/null"
check "flags: the rw tmpfs under it is writable" restored_sh "touch $S/flags/t/x"
if [[ -z ${ENGINE_ARGS[*]} ]]; then
	# The ro bind's clone is made with its flags in one call (open_tree_attr, Linux 6.15);
	# without that call, the flags are set on the clone after it (mount_setattr).
	for how in attr noattr; do
		wrap=()
		[[ $how == noattr ]] && wrap=("$NONEWAPI" --only open_tree_attr)
		: >"$NSF.$how"
		check_exit 0 "flags ($how): restore" env MNTCR_DEBUG=1 "${wrap[@]}" "$MNTCR" restore \
			--image "$NS_TMP/flags.img" --persist "$NSF.$how"
		cp "$ERR" "$NS_TMP/flags.$how.log"
		check_exit 0 "flags ($how): diff image ns:restored finds no difference" \
			"$MNTCR" diff "$NS_TMP/flags.img" "ns:$NSF.$how"
		umount "$NSF.$how"
	done
	check "flags: a clone made with its flags" grep -q "debug:  *with set 0x" "$NS_TMP/flags.attr.log"
	check "flags: without open_tree_attr, set after the clone" \
		grep -q "mount_setattr #[0-9]* set 0x" "$NS_TMP/flags.noattr.log"
fi
done_with flags

# A runc-like container: its own root after pivot_root.
ns_start container '
	R=$D/rootfs; mkdir -p $R
	mount --bind $R $R
	mkdir -p $R/proc $R/dev $R/sys $R/etc $R/usr $R/old
	echo ctr-hosts >$D/hosts; echo ctr-resolv >$D/resolv.conf; echo ctr-name >$D/hostname
	touch $R/etc/hosts $R/etc/resolv.conf $R/etc/hostname
	mount --bind /usr $R/usr; mount -o remount,bind,ro $R/usr
	ln -s usr/bin $R/bin; ln -s usr/lib $R/lib; ln -s usr/lib64 $R/lib64
	mount -t proc proc $R/proc
	mount -t tmpfs -o mode=755,size=65536k tmpfs $R/dev
	mkdir -p $R/dev/pts $R/dev/shm $R/dev/mqueue; touch $R/dev/null
	mount --bind /dev/null $R/dev/null
	mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts $R/dev/pts
	mount -t tmpfs -o mode=1777,size=65536k shm $R/dev/shm
	mount -t mqueue mqueue $R/dev/mqueue
	mount -t sysfs -o ro sysfs $R/sys
	mkdir -p $R/sys/fs/cgroup 2>/dev/null || true
	mount -t cgroup2 -o ro cgroup2 $R/sys/fs/cgroup
	mount --bind $D/hosts $R/etc/hosts; mount --bind $D/resolv.conf $R/etc/resolv.conf
	mount --bind $D/hostname $R/etc/hostname
	for f in kcore keys timer_list; do [ -e $R/proc/$f ] && mount --bind /dev/null $R/proc/$f; done
	for d in acpi scsi; do [ -d $R/proc/$d ] && mount -t tmpfs -o ro tmpfs $R/proc/$d; done
	for p in sys sysrq-trigger; do
		[ -e $R/proc/$p ] || continue
		mount --bind $R/proc/$p $R/proc/$p; mount -o remount,bind,ro $R/proc/$p
	done
	cd $R; pivot_root . old; umount -l /old; cd /'
restore_check container
is "$(restored_sh "cat /etc/hosts /etc/hostname")" "ctr-hosts
ctr-name" "container: file binds over /etc"
check "container: /proc/sys is read-only" restored_sh "! touch /proc/sys/x 2>/dev/null"
done_with container

# The whole namespace of a process that only ran unshare -m.
ns_start plain 'true'
restore_check plain
done_with plain

# A namespace whose root is a tmpfs after pivot_root.
ns_start tmpfsroot '
	mkdir -p $D/r; mount -t tmpfs -o mode=755 newroot $D/r
	mkdir -p $D/r/usr $D/r/old $D/r/data $D/r/proc
	mount -t proc proc $D/r/proc
	mount --bind /usr $D/r/usr; ln -s usr/bin $D/r/bin; ln -s usr/lib $D/r/lib; ln -s usr/lib64 $D/r/lib64
	mount -t tmpfs data $D/r/data
	cd $D/r; pivot_root . old; umount -l /old; cd /'
# (no process can run in it: the tmpfs's own files come back with content restore)
NO_ENTER=1 restore_check tmpfsroot
"$MNTCR" diff "$NS_TMP/tmpfsroot.img" "ns:$NSF" >/dev/null 2>&1
check "tmpfsroot: a tmpfs root differs from the host's root" \
	sh -c "! \"$MNTCR\" diff pid:$$ ns:$NSF >/dev/null 2>&1"
done_with tmpfsroot

# Restore from standard input.
ns_start stdin 'mount -t tmpfs si $D; mkdir $D/a; mount -t tmpfs sa $D/a'
pid=$(ns_pid stdin)
NSF=$NS_TMP/stdin.ns
: >"$NSF"
if "$MNTCR" dump --pid "$pid" -o - | "$MNTCR" restore "${ENGINE_ARGS[@]}" --image - --persist "$NSF" \
	2>"$NS_TMP/stdin.err"; then
	ok "stdin: dump -o - | restore --image -"
	RPID=$(enter "$NSF")
	check_exit 0 "stdin: the restored namespace equals the original" \
		"$MNTCR" diff "pid:$pid" "pid:$RPID"
else
	not_ok "stdin: dump -o - | restore --image -" "$(cat "$NS_TMP/stdin.err")"
fi
done_with stdin

# --dry-run prints the plan and mounts nothing.
ns_start dry 'mount -t tmpfs dry $D; mkdir $D/a; mount -t tmpfs dry2 $D/a'
mntcr_dump "$(ns_pid dry)" "$NS_TMP/dry.img"
before=$(cat /proc/self/mountinfo)
check_exit 0 "dry-run: exits 0" "$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$NS_TMP/dry.img" --dry-run
check "dry-run: prints the plan" grep -q "set-root\|root" "$OUT"
is "$(cat /proc/self/mountinfo)" "$before" "dry-run: mounts nothing"
check_exit 0 "plan: mntcr plan prints the same" "$MNTCR" plan --image "$NS_TMP/dry.img"
ns_stop dry

# Failures: a fault injected at several points aborts the restore with one
# message naming the phase, mount and syscall, a distinct exit code, and
# leaves neither mounts here nor a mntcr process.
ns_start faults '
	mount -t tmpfs f0 $D; mkdir -p $D/a/b $D/c; mount -t tmpfs f1 $D/a
	mkdir -p $D/a/b; mount -t tmpfs f2 $D/a/b; mount -t tmpfs f3 $D/a
	mount --bind $D/c $D/c; mount --make-shared $D/c; mkdir $D/c/d; mount --bind $D/c/d $D/c/d'
mntcr_dump "$(ns_pid faults)" "$NS_TMP/faults.img"
n_ops=$("$MNTCR" plan "${ENGINE_ARGS[@]/--engine=*/}" --image "$NS_TMP/faults.img" | wc -l)
before=$(cat /proc/self/mountinfo)
for k in 1 2 3 5 8 13 21 34 55 $((n_ops / 2)) $((n_ops - 2)) $((n_ops - 1)); do
	[[ $k -ge 1 ]] || continue
	: >"$NS_TMP/faults.ns"
	MNTCR_FAULT_AT=$k MNTCR_FAULT_ERRNO=ENOSPC "$MNTCR" restore "${ENGINE_ARGS[@]}" \
		--image "$NS_TMP/faults.img" --persist "$NS_TMP/faults.ns" >"$OUT" 2>"$ERR"
	rc=$?
	if [[ $rc == 6 ]] && grep -q "No space left on device" "$ERR" && grep -q "phase" "$ERR" &&
		[[ $(wc -l <"$ERR") -le 2 ]]; then
		ok "fault at call $k: exit 6 and one message naming the phase"
	elif [[ $rc == 0 ]]; then
		# fewer mount calls than k: the restore simply succeeded
		umount "$NS_TMP/faults.ns"
		ok "fault at call $k: beyond the last call, restore succeeded"
	else
		not_ok "fault at call $k: exit 6 and one message naming the phase" "exit $rc" "$(cat "$ERR")"
	fi
	is "$(cat /proc/self/mountinfo)" "$before" "fault at call $k: no mount left here"
	check "fault at call $k: no mntcr process left" no_process_left mntcr
done
ns_stop faults

# Errors: a missing image, a corrupt image, an unsupported filesystem.
check_exit 4 "error: a missing image gives exit 4" "$MNTCR" restore --image "$NS_TMP/none.img" --persist "$NS_TMP/x"
check "error: the message names the file" grep -q "none.img" "$ERR"
# Half of it: an image is compressed (dump's default zstd) and may be small.
head -c $(($(stat -c %s "$NS_TMP/flat.img") / 2)) "$NS_TMP/flat.img" >"$NS_TMP/cut.img"
check_exit 4 "error: a truncated image gives exit 4" "$MNTCR" restore --image "$NS_TMP/cut.img" --persist "$NS_TMP/x"
check_exit 2 "error: --persist with a command is refused" "$MNTCR" restore --image "$NS_TMP/flat.img" \
	--persist "$NS_TMP/x" -- true
