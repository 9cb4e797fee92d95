#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Load: 50 restores of 50 different images at once (random topologies of
# tests/ns/gen-topology.sh), all succeed, all equal their originals, and
# the host is clean afterwards (lib.sh checks the mount table; here no
# mntcr process may be left).
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=${MNTCR_LOAD_COUNT:-50}
first=$(((RANDOM << 15 | RANDOM) % 1000000))
diag "seeds $first..$((first + n - 1))"

for ((i = 0; i < n; i++)); do
	seed=$((first + i))
	ns_start "l$i" "$(bash "$MNTCR_TESTS/ns/gen-topology.sh" "$seed" 10)" || not_ok "load $i: the topology builds"
	"$MNTCR" dump --pid "$(ns_pid "l$i")" -o "$NS_TMP/l$i.img" 2>"$ERR" || not_ok "load $i: dump" "$(cat "$ERR")"
	: >"$NS_TMP/l$i.ns"
done

start=$(date +%s.%N)
pids=()
for ((i = 0; i < n; i++)); do
	"$MNTCR" restore --image "$NS_TMP/l$i.img" --persist "$NS_TMP/l$i.ns" >"$NS_TMP/l$i.out" 2>&1 &
	pids+=($!)
done
good=0
for ((i = 0; i < n; i++)); do
	if wait "${pids[$i]}"; then
		good=$((good + 1))
	else
		diag "restore $i (seed $((first + i))): $(cat "$NS_TMP/l$i.out")"
	fi
done
end=$(date +%s.%N)
is "$good" "$n" "$n restores at once all succeed ($(echo "$end - $start" | bc 2>/dev/null || echo ?) s)"

same=0
for ((i = 0; i < n; i++)); do
	if "$MNTCR" diff "pid:$(ns_pid "l$i")" "ns:$NS_TMP/l$i.ns" >"$OUT" 2>&1; then
		same=$((same + 1))
	else
		diag "restore $i (seed $((first + i))) differs:" "$(cat "$OUT")"
	fi
	umount "$NS_TMP/l$i.ns" 2>/dev/null
	ns_stop "l$i"
done
is "$same" "$n" "all $n restored namespaces equal their originals"
check "no mntcr process is left" no_process_left mntcr
