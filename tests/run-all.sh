#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run every test suite of a meson build directory (unit; ns when root) and
# check that the host's mount table is the same afterwards.
#
#	bash tests/run-all.sh [BUILD]		(BUILD defaults to "build")
#
# The last line of output is "N passed, N failed, N skipped", counting meson
# tests (passed includes expected failures; failed includes timeouts and
# unexpected passes). A run that produced no meson summary (the build
# failed) or that changed the host mount table counts as one more failure.
# The exit status is non-zero when anything failed.
set -uo pipefail

build=${1:-build}
if [[ ! -f $build/build.ninja ]]; then
	echo "run-all.sh: '$build' is not a meson build directory (meson setup $build)" >&2
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi

tmp=$(mktemp -d /tmp/mntcr-run-all.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

cat /proc/self/mountinfo >"$tmp/mountinfo.before"
meson test -C "$build" --print-errorlogs 2>&1 | tee "$tmp/log"
rc=${PIPESTATUS[0]}
cat /proc/self/mountinfo >"$tmp/mountinfo.after"

# meson's summary: "Ok:                 4   " and so on.
count() {
	local n
	n=$(sed -n "s/^$1: *\([0-9][0-9]*\) *$/\1/p" "$tmp/log" | tail -n1)
	echo "${n:-}"
}
ok=$(count Ok)
xfail=$(count "Expected Fail")
fail=$(count Fail)
xpass=$(count "Unexpected Pass")
skipped=$(count Skipped)
timeout=$(count Timeout)

if [[ -z $ok || -z $fail ]]; then
	echo "run-all.sh: meson test printed no summary (exit status $rc)" >&2
	passed=0 failed=1 skipped=0
else
	passed=$((ok + ${xfail:-0}))
	failed=$((fail + ${xpass:-0} + ${timeout:-0}))
	skipped=${skipped:-0}
	if ((rc != 0 && failed == 0)); then
		echo "run-all.sh: meson test exited with status $rc" >&2
		failed=1
	fi
fi

if ! cmp -s "$tmp/mountinfo.before" "$tmp/mountinfo.after"; then
	echo "run-all.sh: THE HOST MOUNT TABLE CHANGED during the tests:" >&2
	diff -u "$tmp/mountinfo.before" "$tmp/mountinfo.after" >&2
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
