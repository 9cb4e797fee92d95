#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Namespace test suites with every mntcr process under valgrind memcheck:
#
#	bash tests/valgrind/run.sh [BUILD] [SUITE...]	(default: cli hostile diff dump)
#
# Each suite runs with MNTCR_ENGINE=compat (what mntcr picks under valgrind,
# which lacks the new mount syscalls). Passes when every suite passes and no
# valgrind log reports an error or a definite or indirect leak. The suites
# run side by side, as many as there are CPUs (MNTCR_VG_JOBS=N sets it). Prints
# "N passed, N failed" last.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
shift || true
suites=("$@")
((${#suites[@]})) || suites=(cli hostile diff dump)
[[ $build == /* ]] || build=$root/$build

if ! command -v valgrind >/dev/null; then
	echo "valgrind is not installed"
	echo "0 passed, 1 failed"
	exit 1
fi
logs=$(mktemp -d /tmp/mntcr-vg.XXXXXX)
export MNTCR_VG_LOGS=$logs MNTCR_REAL=$build/cli/mntcr MNTCR=$root/tests/valgrind/mntcr
export MNTCR_ENGINE=compat MNTCR_INSPECT=$build/tests/mntcr-inspect MNTCR_TREESUM=$build/tests/mntcr-treesum
export MNTCR_FORGE=$build/tests/mntcr-forge MNTCR_FAULTS=$build/tests/restore-faults NONEWAPI=$build/tests/nonewapi
export JSON_CHECK=$build/tests/json-check
export MNTCR_TESTS=$root/tests MNTCR_BUILD=$build
# The suites run side by side, one per CPU (MNTCR_VG_JOBS), and report in order.
jobs=${MNTCR_VG_JOBS:-$(nproc)}
run_suite() {
	local start=$SECONDS rc
	bash "$root/tests/ns/test-$1.sh" >"$logs/$1.tap" 2>&1
	rc=$?
	echo "$rc $((SECONDS - start))" >"$logs/$1.rc"
}
for s in "${suites[@]}"; do
	while (($(jobs -pr | wc -l) >= jobs)); do
		wait -n
	done
	run_suite "$s" &
done
wait
pass=0 fail=0
for s in "${suites[@]}"; do
	read -r rc secs <"$logs/$s.rc" 2>/dev/null || rc=1 secs=?
	if ((rc == 0)); then
		echo "ns-$s under valgrind: $(tail -n1 "$logs/$s.tap" | sed 's/^# //') ($secs s)"
		pass=$((pass + 1))
	else
		echo "ns-$s under valgrind: FAILED ($secs s)"
		grep -A3 '^not ok' "$logs/$s.tap" | head -40
		fail=$((fail + 1))
	fi
done
n=$(find "$logs" -name 'vg.*' | wc -l)
bad=$(grep -l -E 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]|Invalid (read|write)|uninitialised|Conditional jump' "$logs"/vg.* 2>/dev/null || true)
# Reports about the syscalls valgrind does not know are not mntcr's errors; any other line is.
if [[ -n $bad ]]; then
	echo "valgrind reported errors in $(wc -w <<<"$bad") of $n processes:"
	for f in $bad; do
		echo "--- $f"
		head -40 "$f"
	done
	fail=$((fail + 1))
else
	echo "valgrind: $n mntcr processes, no error, no definite or indirect leak"
fi
if ((fail == 0)); then
	rm -rf "$logs"
else
	echo "logs in $logs"
fi
echo "$pass passed, $fail failed"
((fail == 0))
