# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP library for the namespace tests (tests/ns/test-*.sh). Source it first:
#
#	#!/bin/bash
#	. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#	ns_start flat 'mount -t tmpfs A "$D/a"'
#	is "$(ns_inspect flat)" "/a root=/ ..." "flat: the model"
#
# Sourcing it re-executes the test script inside `unshare -m --propagation
# private`, so that nothing the script mounts (scratch tmpfs, topologies,
# --persist binds) reaches the host's mount namespace. The outer copy, still
# in the host namespace, waits, then checks that the host's
# /proc/self/mountinfo is byte for byte what it was before, prints that as
# the last test, the plan and a summary, and exits non-zero on any failure.
# Not root, or no unshare: "1..0 # SKIP ..." and exit 0.
#
# In the test script (the inner copy):
#	$S		the scratch tmpfs (a mkdtemp dir on the host, mounted here only)
#	$NS_TMP		the mkdtemp dir itself, on the host's filesystem: logs, images
#	$MNTCR		the mntcr binary; $MNTCR_INSPECT the model printer; $JSON_CHECK
#			checks that its standard input is valid JSON
#
#	ok DESC / not_ok DESC [DIAG...] / skip DESC REASON / diag MSG...
#				(these and is/check/check_exit return 0 either way: the script's
#				exit status is for crashes, and a non-zero one is one more failure)
#	is GOT WANT DESC	string comparison, a unified diff on failure
#	check DESC CMD...	ok when CMD exits 0, its output as diagnostics if not ($OUT and
#				$ERR are left alone: check DESC grep -q x "$OUT" works)
#	check_exit CODE DESC CMD...	ok when CMD exits with CODE; output in $OUT/$ERR files
#	plan N			optional: the number of tests the script runs
#	skip_all REASON		before any test: skip the whole file
#
#	ns_start NAME 'CMDS'	run CMDS (with set -e, $D=$S/NAME, $S) in a process in a NEW
#				private mount namespace and keep it alive; its pid is $(ns_pid NAME)
#				(NS_PROPAGATION=unchanged keeps the copied mounts' propagation;
#				NS_PARENT=PID starts it in a namespace made from PID's, and with
#				NS_UNSHARE=0 in PID's namespace itself)
#	restore_check NAME [ARGS]	dump NAME, restore it (--persist $NSF), diff image, original
#				and restored; sets NSF and RPID (a process in it, unless NO_ENTER=1)
#	restored_sh 'CMDS'	run CMDS in a private copy of the restored namespace
#	done_with NAME		end the restored namespace and NAME
#				(also $NS_PID_NAME); non-zero status if CMDS failed (log in diag)
#	ns_stop NAME		end it (all of them are ended at exit anyway)
#	ns_inspect NAME [ARGS]	$MNTCR_INSPECT --prefix $D ARGS PID: the model of NAME's mounts
#	mntcr_dump PID FILE [ARGS]	$MNTCR dump --pid PID -o FILE; exit code in $MNTCR_RC,
#				stderr in $MNTCR_ERR
#	mntcr_show ARGS...	$MNTCR show ARGS (e.g. --image FILE): stdout; $MNTCR_RC, $MNTCR_ERR
#	ns_mountinfo NAME	/proc/PID/mountinfo of NAME's process; ns_dir NAME: $S/NAME
#	cli_has VERB		the CLI implements VERB (its --help exits 0)
#
# The library owns the EXIT trap of the test script (it ends the processes).

NS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${MNTCR_TESTS:=$(dirname "$NS_LIB_DIR")}"
: "${MNTCR:=$(dirname "$MNTCR_TESTS")/build/cli/mntcr}"
: "${MNTCR_INSPECT:=$(dirname "$MNTCR")/../tests/mntcr-inspect}"
: "${JSON_CHECK:=$(dirname "$MNTCR_INSPECT")/json-check}"
export MNTCR MNTCR_INSPECT MNTCR_TESTS JSON_CHECK

# ------------------------------------------------------------------------------------------------
# Outer copy: host namespace.

ns__outer() {
	local script=$1 rc n=0 ran pass=0 fail=0 skips=0 planned='' line pid
	shift

	if [[ $(id -u) != 0 ]]; then
		echo "1..0 # SKIP not root"
		exit 0
	fi
	if ! unshare -m --propagation private true 2>/dev/null; then
		echo "1..0 # SKIP cannot create a mount namespace (unshare -m)"
		exit 0
	fi
	if [[ ! -x $MNTCR ]]; then
		echo "1..0 # SKIP no mntcr binary at $MNTCR (set MNTCR)"
		exit 0
	fi

	NS_TMP=$(mktemp -d /tmp/mntcr-ns.XXXXXX) || exit 1
	cat /proc/self/mountinfo >"$NS_TMP/host-mountinfo.before"
	: >"$NS_TMP/results"

	MNTCR_NS_INNER=1 NS_TMP=$NS_TMP unshare -m --propagation private bash "$script" "$@"
	rc=$?

	# The inner copy ends what it started; this is for an inner copy that was killed.
	if [[ -s $NS_TMP/pids ]]; then
		while read -r pid; do
			if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "NS_TMP=$NS_TMP"; then
				kill -9 "$pid" 2>/dev/null
			fi
		done <"$NS_TMP/pids"
	fi

	cat /proc/self/mountinfo >"$NS_TMP/host-mountinfo.after"

	while read -r line; do
		n=$((n + 1))
		case $line in
		pass) pass=$((pass + 1)) ;;
		skip) skips=$((skips + 1)) ;;
		*) fail=$((fail + 1)) ;;
		esac
	done <"$NS_TMP/results"
	ran=$n
	[[ -f $NS_TMP/plan ]] && planned=$(<"$NS_TMP/plan")

	if [[ -f $NS_TMP/skip_all && $n == 0 ]] &&
		cmp -s "$NS_TMP/host-mountinfo.before" "$NS_TMP/host-mountinfo.after"; then
		echo "1..0 # SKIP $(<"$NS_TMP/skip_all")"
		rm -rf --one-file-system "$NS_TMP"
		exit 0
	fi

	n=$((n + 1))
	if cmp -s "$NS_TMP/host-mountinfo.before" "$NS_TMP/host-mountinfo.after"; then
		echo "ok $n - the host mount table is unchanged"
		pass=$((pass + 1))
	else
		echo "not ok $n - the host mount table is unchanged"
		diff -u "$NS_TMP/host-mountinfo.before" "$NS_TMP/host-mountinfo.after" | sed 's/^/# /'
		fail=$((fail + 1))
	fi
	if [[ $rc != 0 && ! -f $NS_TMP/skip_all ]]; then
		n=$((n + 1))
		echo "not ok $n - the test script exited with status $rc"
		fail=$((fail + 1))
	fi
	if [[ -n $planned && $planned != "$ran" ]]; then
		n=$((n + 1))
		echo "not ok $n - planned $planned tests, ran $ran"
		fail=$((fail + 1))
	fi
	echo "1..$n"
	echo "# $pass passed, $fail failed, $skips skipped"
	if ((fail == 0)); then
		rm -rf --one-file-system "$NS_TMP"
	else
		echo "# logs kept in $NS_TMP"
	fi
	((fail == 0))
	exit $?
}

if [[ -z ${MNTCR_NS_INNER:-} ]]; then
	ns__outer "$0" "$@"
fi

# ------------------------------------------------------------------------------------------------
# Inner copy: a private mount namespace of its own.

unset MNTCR_NS_INNER
S=$NS_TMP/s
OUT=$NS_TMP/out
ERR=$NS_TMP/err
export NS_TMP S

ns__record() {
	echo "$1" >>"$NS_TMP/results"
	wc -l <"$NS_TMP/results"
}

# Each argument, and each line of it, as a "# " line.
diag() {
	local line
	printf '%s\n' "$@" | while IFS= read -r line; do
		echo "# $line"
	done
}

ok() {
	echo "ok $(ns__record pass) - $1"
}

not_ok() {
	echo "not ok $(ns__record fail) - $1"
	shift
	[[ $# -gt 0 ]] && diag "$@"
	return 0
}

skip() {
	echo "ok $(ns__record skip) - $1 # SKIP $2"
}

plan() {
	echo "$1" >"$NS_TMP/plan"
}

skip_all() {
	echo "$1" >"$NS_TMP/skip_all"
	exit 0
}

is() {
	local got=$1 want=$2 desc=$3

	if [[ $got == "$want" ]]; then
		ok "$desc"
	else
		not_ok "$desc" "$(diff -u --label want --label got <(printf '%s\n' "$want") \
			<(printf '%s\n' "$got"))"
	fi
}

check() {
	local desc=$1 rc
	shift
	"$@" >"$NS_TMP/check.out" 2>&1
	rc=$?
	if ((rc == 0)); then
		ok "$desc"
	else
		not_ok "$desc" "'$*' exited with status $rc" "$(cat "$NS_TMP/check.out")"
	fi
}

check_exit() {
	local code=$1 desc=$2 rc
	shift 2
	"$@" >"$OUT" 2>"$ERR"
	rc=$?
	if ((rc == code)); then
		ok "$desc"
	else
		not_ok "$desc" "'$*' exited with status $rc, not $code" "$(cat "$OUT" "$ERR")"
	fi
}

# ------------------------------------------------------------------------------------------------
# Topologies in namespaces of their own.

ns__valid_name() {
	[[ $1 =~ ^[A-Za-z0-9_]+$ ]] || {
		echo "lib.sh: bad namespace name '$1'" >&2
		exit 1
	}
}

ns_start() {
	local name=$1 cmds=$2 fifo line fd pid
	ns__valid_name "$name"
	fifo=$NS_TMP/$name.fifo
	mkdir -p "$S/$name"
	rm -f "$fifo"
	mkfifo "$fifo"

	# The bash that runs the commands is the process whose namespace the tests
	# read: unshare without --fork execs it, and it execs sleep at the end.
	# NS_TMP in its environment lets the outer copy recognise it.
	# shellcheck disable=SC2016 # expanded by the inner bash
	# The log and the fifo are opened before the commands run: they may pivot_root away.
	# NS_PARENT=PID: start it from PID's namespace (a nested namespace);
	# NS_UNSHARE=0 with it: a second process in PID's namespace itself.
	local -a how=(unshare -m --propagation "${NS_PROPAGATION:-private}")
	[[ ${NS_UNSHARE:-1} == 0 ]] && how=()
	[[ -n ${NS_PARENT:-} ]] && how=(nsenter -m -t "$NS_PARENT" -- "${how[@]}")
	D=$S/$name NS_CMDS=$cmds "${how[@]}" bash -c '
		exec 8>"$1" 9>"$2"
		(set -e; eval "$NS_CMDS") >&8 2>&1
		if [ $? = 0 ]; then
			echo ready >&9
			exec 8>&- 9>&-
			exec sleep infinity
		fi
		echo failed >&9
		exit 1' ns-"$name" "$NS_TMP/$name.log" "$fifo" </dev/null &
	pid=$!
	echo "$pid" >>"$NS_TMP/pids"
	echo "$pid" >"$NS_TMP/$name.pid"
	printf -v "NS_PID_$name" %s "$pid"

	# read-write open: does not block if the child never opens the fifo
	exec {fd}<>"$fifo"
	line=
	read -r -t 60 line <&"$fd"
	exec {fd}<&-
	rm -f "$fifo"
	if [[ $line != ready ]]; then
		diag "ns_start $name failed (${line:-timeout}):" "$(cat "$NS_TMP/$name.log" 2>/dev/null)"
		return 1
	fi
	return 0
}

ns_pid() {
	ns__valid_name "$1"
	cat "$NS_TMP/$1.pid"
}

ns_dir() {
	echo "$S/$1"
}

ns_stop() {
	local pid
	pid=$(ns_pid "$1") || return 1
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -f "$NS_TMP/$1.pid"
	return 0
}

ns__cleanup() {
	local pid
	if [[ -s $NS_TMP/pids ]]; then
		while read -r pid; do
			kill "$pid" 2>/dev/null
		done <"$NS_TMP/pids"
		while read -r pid; do
			wait "$pid" 2>/dev/null
		done <"$NS_TMP/pids"
		: >"$NS_TMP/pids"
	fi
}

ns_inspect() {
	local name=$1
	shift
	"$MNTCR_INSPECT" --prefix "$S/$name" "$@" "$(ns_pid "$name")"
}

# The target's mount table as it shows it.
ns_mountinfo() {
	cat "/proc/$(ns_pid "$1")/mountinfo"
}

# ------------------------------------------------------------------------------------------------
# The CLI.

MNTCR_RC=0
MNTCR_ERR=$NS_TMP/mntcr.err

mntcr_dump() {
	local pid=$1 file=$2
	shift 2
	"$MNTCR" dump --pid "$pid" -o "$file" "$@" 2>"$MNTCR_ERR"
	MNTCR_RC=$?
	return $MNTCR_RC
}

mntcr_show() {
	"$MNTCR" show "$@" 2>"$MNTCR_ERR"
	MNTCR_RC=$?
	return $MNTCR_RC
}

cli_has() {
	"$MNTCR" "$1" --help >/dev/null 2>&1
}

# True when no process of this test run named NAME (default mntcr) is left.
# Processes of this run carry NS_TMP=$NS_TMP in their environment, so other
# runs on the same machine do not count.
no_process_left() {
	local name=${1:-mntcr} p
	for p in /proc/[0-9]*; do
		[[ $(cat "$p/comm" 2>/dev/null) == "$name" ]] || continue
		if tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "NS_TMP=$NS_TMP"; then
			echo "left: $name pid ${p#/proc/}"
			return 1
		fi
	done
	return 0
}

# ------------------------------------------------------------------------------------------------
# Restores. MNTCR_ENGINE=compat runs them with the compat engine.

ENGINE_ARGS=()
[[ -n ${MNTCR_ENGINE:-} ]] && ENGINE_ARGS=(--engine="$MNTCR_ENGINE")

# A process in the namespace persisted at $1; its pid on stdout. nsenter
# execs sleep once it has entered, so wait for that.
enter() {
	local nsf=$1 pid i
	nsenter --mount="$nsf" sleep infinity </dev/null >/dev/null 2>&1 &
	pid=$!
	echo "$pid" >>"$NS_TMP/pids"
	for ((i = 0; i < 500; i++)); do
		[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */sleep ]] && break
		sleep 0.01
	done
	echo "$pid"
}

# restore_check NAME [RESTORE ARGS...]: dump, restore, diff both ways. Sets RPID and NSF.
restore_check() {
	local name=$1 pid img
	shift
	pid=$(ns_pid "$name")
	img=$NS_TMP/$name.img
	NSF=$NS_TMP/$name.ns
	RPID=
	if ! mntcr_dump "$pid" "$img"; then
		not_ok "$name: dump" "$(cat "$MNTCR_ERR")"
		return 1
	fi
	: >"$NSF"
	check_exit 0 "$name: restore --persist" "$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$img" \
		--persist "$NSF" "$@" || return 1
	check_exit 0 "$name: diff image ns:restored finds no difference" "$MNTCR" diff "$img" "ns:$NSF"
	check_exit 0 "$name: diff pid:original ns:restored finds no difference" \
		"$MNTCR" diff "pid:$pid" "ns:$NSF"
	if [[ -z ${NO_ENTER:-} ]]; then
		RPID=$(enter "$NSF")
		check_exit 0 "$name: diff pid:original pid:restored (a process in it) finds no difference" \
			"$MNTCR" diff "pid:$pid" "pid:$RPID"
	fi
}

# restored_sh 'CMDS': run CMDS in a private copy of the restored namespace.
restored_sh() {
	nsenter --mount="$NSF" unshare -m --propagation private sh -c "$1"
}

done_with() {
	[[ -n $RPID ]] && kill "$RPID" 2>/dev/null
	umount "$NSF" 2>/dev/null
	ns_stop "$1"
}

# ------------------------------------------------------------------------------------------------
# Set up: the scratch tmpfs, and cleanup at exit.

trap ns__cleanup EXIT
mkdir -p "$S"
if ! mount -t tmpfs -o size=256m,mode=0755 mntcr-scratch "$S"; then
	skip_all "cannot mount a tmpfs in a private namespace"
fi
