#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Print a random mount topology as shell commands, reproducibly from a seed:
#
#	bash tests/ns/gen-topology.sh SEED [STEPS]
#
# The commands work below $D (a directory on the test's scratch tmpfs) and
# use mount, bind, rbind, over-mounts, stacks, moves, umounts, propagation
# changes (shared, slave, private, unbindable) and proc, devpts and mqueue
# mounts. Every command may fail (a move of a shared mount, a bind of an
# unbindable one...): failures are ignored, so the result is whatever the
# kernel made of the sequence. The output is meant for ns_start.
set -u

seed=${1:?seed}
steps=${2:-12}
RANDOM=$seed

# A small pool of paths so that operations collide: over-mounts, stacks, moves.
dirs=(a b c a/x a/y b/x c/z a/x/q b/x/r)
pick() { echo "${dirs[RANDOM % ${#dirs[@]}]}"; }

echo "mkdir -p \$D; mount -t tmpfs gen$seed \$D"
echo "for p in ${dirs[*]}; do mkdir -p \$D/\$p; done"
for ((i = 0; i < steps; i++)); do
	p=$(pick)
	q=$(pick)
	case $((RANDOM % 16)) in
	0 | 1) echo "mount -t tmpfs t$i \$D/$p && for s in x y z q r; do mkdir -p \$D/$p/\$s; done" ;;
	2) echo "mount -t tmpfs -o size=$((RANDOM % 8 + 1))m,mode=0$((RANDOM % 2 ? 755 : 700)) s$i \$D/$p && mkdir -p \$D/$p/x \$D/$p/y" ;;
	3 | 4) echo "mount --bind \$D/$p \$D/$q" ;;
	5) echo "mount --rbind \$D/$p \$D/$q" ;;
	6) echo "mount --move \$D/$p \$D/$q" ;;
	7) echo "umount \$D/$p" ;;
	8 | 9) echo "mount --make-shared \$D/$p" ;;
	10) echo "mount --make-slave \$D/$p" ;;
	11) echo "mount --make-private \$D/$p" ;;
	12) echo "mount --make-unbindable \$D/$p" ;;
	13) echo "mount -o remount,bind,$( ((RANDOM % 2)) && echo ro || echo nosuid,nodev) \$D/$p" ;;
	14)
		case $((RANDOM % 3)) in
		0) echo "mount -t proc proc \$D/$p" ;;
		1) echo "mount -t devpts -o newinstance,ptmxmode=0666 devpts \$D/$p" ;;
		2) echo "mount -t mqueue mqueue \$D/$p" ;;
		esac
		;;
	15) echo "mount --bind \$D/$p \$D/$p && mount --make-shared \$D/$p && mount --bind \$D/$p \$D/$q" ;;
	esac | sed 's/$/ 2>\/dev\/null || true/'
done
echo "true"
