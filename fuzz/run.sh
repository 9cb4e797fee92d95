#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build the libFuzzer targets with clang, ASan and UBSan, and run each one:
#
#	bash fuzz/run.sh [SECONDS]	(default 60 per target; CI gives each 20)
#
# New inputs go to a scratch copy of the corpus, so the seed corpus in
# fuzz/corpus/ stays as committed. Prints, per target, the executions and
# the coverage libFuzzer reached, and exits non-zero on any crash, leak or
# undefined behaviour (the reproducer is kept and its path printed).
set -uo pipefail

cd "$(dirname "$0")/.."
secs=${1:-60}
build=${FUZZ_BUILD:-build-fuzz}

if [[ ! -f $build/build.ninja ]]; then
	CC=clang meson setup "$build" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
		-Db_lundef=false >/dev/null || exit 1
fi
ninja -C "$build" >/dev/null || exit 1

work=$(mktemp -d /tmp/mntcr-fuzz.XXXXXX)
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
rc=0
for t in mountinfo image plan json; do
	mkdir -p "$work/$t"
	# -close_fd_mask=3: the targets print nothing useful; keep libFuzzer's own stats
	"$build/fuzz/fuzz-$t" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$work/$t-" \
		-timeout=10 -rss_limit_mb=2048 "$work/$t" "fuzz/corpus/$t" >"$work/$t.log" 2>&1
	r=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
	cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -n1)
	ft=$(grep -o 'ft: [0-9]*' "$work/$t.log" | tail -n1)
	if ((r != 0)); then
		echo "fuzz-$t: FAILED after ${execs:-?} executions; log and reproducer in $work"
		grep -m1 -A20 'ERROR\|runtime error\|Leak' "$work/$t.log"
		rc=1
	else
		echo "fuzz-$t: ${execs:-?} executions in ${secs}s, ${cov:-cov: ?}, ${ft:-ft: ?}, no crash, leak or UB"
	fi
done
((rc == 0)) && rm -rf "$work"
exit $rc
