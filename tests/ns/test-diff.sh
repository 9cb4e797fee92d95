#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# mntcr diff on live namespaces: two namespaces built the same way are
# equivalent, whatever their mount ids and peer group numbers; namespaces
# that differ in one respect give exit 1 and a line naming the mount.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The same topology twice, under the same path (each namespace mounts its own tmpfs on $S/same).
build_same='
	mount -t tmpfs base $S/same; mkdir -p $S/same/a/b $S/same/c $S/same/p1 $S/same/p2
	mount -t tmpfs -o size=1m a $S/same/a; mkdir -p $S/same/a/b
	mount -t tmpfs b $S/same/a/b; mount -t tmpfs top $S/same/a
	mount --bind $S/same/c $S/same/c; mount --make-shared $S/same/c
	mount --bind $S/same/c $S/same/p1; mount --bind $S/same/c $S/same/p2; mount --make-slave $S/same/p2'
mkdir -p "$S/same"
ns_start same1 "$build_same"
# same1's peer group is still alive: same2's gets another number, and other mount ids.
ns_start same2 "$build_same"
check_exit 0 "identical topologies: diff pid:A pid:B exits 0" \
	"$MNTCR" diff "pid:$(ns_pid same1)" "pid:$(ns_pid same2)"
check "identical topologies: and prints nothing" test ! -s "$OUT"
g1=$(grep " $S/same/c " "/proc/$(ns_pid same1)/mountinfo" | grep -o "shared:[0-9]*")
g2=$(grep " $S/same/c " "/proc/$(ns_pid same2)/mountinfo" | grep -o "shared:[0-9]*")
check "identical topologies: with different peer group numbers ($g1, $g2)" test "$g1" != "$g2"

# One difference each.
variant() {
	local name=$1 extra=$2 want=$3
	mkdir -p "$S/same"
	ns_start "$name" "$build_same; $extra"
	check_exit 1 "$name: diff exits 1" "$MNTCR" diff "pid:$(ns_pid same1)" "pid:$(ns_pid "$name")"
	check "$name: a line names $want" grep -q -- "$want" "$OUT"
	ns_stop "$name"
}
variant extra 'mkdir -p $S/same/c/x; mount -t tmpfs x $S/same/c/x' "$S/same/c/x"
variant flag 'mount -o remount,bind,ro $S/same/p1' "$S/same/p1"
variant order 'umount $S/same/a; umount $S/same/a/b; mount -t tmpfs top $S/same/a' "$S/same/a"
variant prop 'mount --make-private $S/same/p1' "$S/same/p1"
variant sbopts 'mount -o remount,size=2m $S/same/a 2>/dev/null || mount -t tmpfs -o size=3m z $S/same/c' "$S/same"

check_exit 2 "a missing pid gives exit 2" "$MNTCR" diff "pid:$(ns_pid same1)" pid:999999999
check_exit 2 "a missing image gives exit 2" "$MNTCR" diff "pid:$(ns_pid same1)" "$NS_TMP/nothing.img"
