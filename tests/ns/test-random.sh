#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Random topologies: each seed gives a namespace built by a random sequence of
# mount operations (tests/ns/gen-topology.sh); it must dump, restore and diff
# equal, with the engine of MNTCR_ENGINE (default: the best one).
#
#	MNTCR_RANDOM_COUNT=N	how many seeds (default 100)
#	MNTCR_RANDOM_SEED=S	the first seed (default: a new one each run, printed)
#	MNTCR_RANDOM_STEPS=K	operations per topology (default 12)
#
# A failure prints the seed and the commands; replay one seed with
#	MNTCR_RANDOM_SEED=S MNTCR_RANDOM_COUNT=1 bash tests/ns/test-random.sh
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

count=${MNTCR_RANDOM_COUNT:-100}
first=${MNTCR_RANDOM_SEED:-$(((RANDOM << 15 | RANDOM) % 1000000))}
steps=${MNTCR_RANDOM_STEPS:-12}
diag "random topologies: seeds $first..$((first + count - 1)), $steps steps each${MNTCR_ENGINE:+, engine $MNTCR_ENGINE}"

failures=0
for ((seed = first; seed < first + count; seed++)); do
	name=r$seed
	cmds=$(bash "$MNTCR_TESTS/ns/gen-topology.sh" "$seed" "$steps")
	if ! ns_start "$name" "$cmds"; then
		not_ok "seed $seed: the topology builds" "$cmds"
		continue
	fi
	pid=$(ns_pid "$name")
	img=$NS_TMP/$name.img
	NSF=$NS_TMP/$name.ns
	: >"$NSF"
	if ! "$MNTCR" dump --pid "$pid" -o "$img" 2>"$ERR"; then
		not_ok "seed $seed: dump" "$(cat "$ERR")" "$cmds"
	elif "$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$img" --persist "$NSF" >"$OUT" 2>"$ERR"; rc=$?; ((rc != 0)); then
		# the compat engine refuses what it cannot rebuild exactly (docs/engines.md)
		if [[ $rc == 7 && ${MNTCR_ENGINE:-} == compat ]]; then
			skip "seed $seed: restore" "$(head -n1 "$ERR")"
		else
			not_ok "seed $seed: restore" "$(cat "$ERR")" "$cmds"
			failures=$((failures + 1))
		fi
	elif ! "$MNTCR" diff "pid:$pid" "ns:$NSF" >"$OUT" 2>&1; then
		not_ok "seed $seed: the restored namespace equals the original" "$(cat "$OUT")" "$cmds" \
			"$(grep " $S/$name" "/proc/$pid/mountinfo")"
		failures=$((failures + 1))
	else
		ok "seed $seed"
	fi
	umount "$NSF" 2>/dev/null
	rm -f "$img" "$NSF"
	ns_stop "$name"
	# keep the log short when everything is broken
	if ((failures >= 20)); then
		diag "stopping after 20 failures"
		break
	fi
done
