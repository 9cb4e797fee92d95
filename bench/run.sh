#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The mntcr benchmark: dump and restore against the kernel's own cost.
# See bench/README.md. As root, from the source tree:
#
#	bash bench/run.sh [--build DIR] [--sizes 1000,10000,50000] [--topos tmpfs,binds,chain,mix]
#	                  [--reps 5] [--quick] [--chain-depth D] [--out DIR] [--no-plot] [--keep-going]
#	                  [--content-mb 1024]          (--sizes '' runs the content benchmark alone)
#
# Everything runs inside `unshare -m --propagation private`, under a scratch
# tmpfs; the host's /proc/self/mountinfo is compared before and after, and a
# difference fails the run. Writes DIR/bench-<date>.json, DIR/latest.json and
# DIR/latest.png (gnuplot, when installed).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
build=$src/build
sizes=1000,10000,50000
topos=tmpfs,binds,chain,mix
reps=5
chain_depth=
out=$here/results
plot=1
keep_going=0
content_mb=1024

usage() {
	sed -n '4,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

while [[ $# -gt 0 ]]; do
	case $1 in
	--build) build=$2; shift ;;
	--sizes) sizes=$2; shift ;;
	--topos) topos=$2; shift ;;
	--reps) reps=$2; shift ;;
	--quick) sizes=1000,10000; reps=3; content_mb=256 ;;
	--chain-depth) chain_depth=$2; shift ;;
	--out) out=$2; shift ;;
	--no-plot) plot=0 ;;
	--keep-going) keep_going=1 ;; # a failed dump or restore is recorded, not fatal
	--content-mb) content_mb=$2; shift ;; # 0: no content benchmark
	-h | --help) usage 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; usage ;;
	esac
	shift
done
if [[ -z ${MNTCR_BENCH_INNER:-} ]]; then
	build=$(cd "$build" 2>/dev/null && pwd) || { echo "run.sh: no build directory $build (meson setup)" >&2; exit 1; }
	mkdir -p "$out" && out=$(cd "$out" && pwd)
	MNTCR=$build/cli/mntcr
	FLOOR=$build/bench/floor
	TIMEIT=$build/bench/timeit
	export MNTCR FLOOR TIMEIT
fi

# ------------------------------------------------------------------------------------------------
# Outer copy: host namespace. Check, re-run inside a private mount namespace, compare.

if [[ -z ${MNTCR_BENCH_INNER:-} ]]; then
	if [[ $(id -u) != 0 ]]; then
		echo "run.sh: must run as root (it mounts, in a private mount namespace)" >&2
		exit 1
	fi
	for b in "$MNTCR" "$FLOOR" "$TIMEIT"; do
		[[ -x $b ]] || { echo "run.sh: $b is missing: ninja -C $build" >&2; exit 1; }
	done
	if ! grep -q '"buildtype", "value": "release"' "$build/meson-info/intro-buildoptions.json" 2>/dev/null &&
		! python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); sys.exit(0 if any(x["name"]=="buildtype" and x["value"]=="release" for x in o) else 1)' \
			"$build/meson-info/intro-buildoptions.json" 2>/dev/null; then
		echo "run.sh: warning: $build is not a release build (meson setup -Dbuildtype=release)" >&2
	fi
	work=$(mktemp -d /tmp/mntcr-bench.XXXXXX) || exit 1
	cat /proc/self/mountinfo >"$work/host-mountinfo.before"
	MNTCR_BENCH_INNER=1 WORK=$work SIZES=$sizes TOPOS=$topos REPS=$reps CHAIN_DEPTH=$chain_depth \
		KEEP_GOING=$keep_going CONTENT_MB=$content_mb \
		unshare -m --propagation private bash "${BASH_SOURCE[0]}"
	rc=$?
	cat /proc/self/mountinfo >"$work/host-mountinfo.after"
	if ! cmp -s "$work/host-mountinfo.before" "$work/host-mountinfo.after"; then
		echo "run.sh: THE HOST MOUNT TABLE CHANGED:" >&2
		diff -u "$work/host-mountinfo.before" "$work/host-mountinfo.after" >&2
		exit 1
	fi
	if [[ $rc != 0 || ! -s $work/raw.jsonl ]]; then
		echo "run.sh: the benchmark failed (exit status $rc); logs in $work" >&2
		exit 1
	fi
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	# --sizes '': the content benchmark alone, in files of its own
	name=bench latest=latest
	[[ -z $sizes ]] && name=content latest=latest-content plot=0
	python3 "$here/report.py" --raw "$work/raw.jsonl" --json "$out/$name-$stamp.json" \
		--gnuplot-data "$work/plot" || exit 1
	cp "$out/$name-$stamp.json" "$out/$latest.json"
	if ((plot)); then
		if command -v gnuplot >/dev/null; then
			gnuplot -e "dir='$work/plot'; out='$out/latest.png'" "$here/plot.gp" &&
				cp "$out/latest.png" "$out/bench-$stamp.png" &&
				echo "plot: $out/latest.png"
		else
			echo "run.sh: no gnuplot, no plot (apt-get install -y gnuplot-nox)" >&2
		fi
	fi
	echo "results: $out/$name-$stamp.json (and $latest.json); the host mount table is unchanged"
	rm -rf --one-file-system "$work"
	exit 0
fi

# ------------------------------------------------------------------------------------------------
# Inner copy: a private mount namespace of our own. Nothing here reaches the host.

S=$WORK/s
mkdir -p "$S"
mount -t tmpfs -o mode=700 mntcr-bench "$S" || exit 1
mkdir "$S/t"
raw=$WORK/raw.jsonl
: >"$raw"
holder=

cleanup() {
	[[ -n $holder ]] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null
	umount "$S/ns" "$S/r" "$S/x" 2>/dev/null
}
trap cleanup EXIT

# timeit's line ("timeit wall_ms=W maxrss_kb=R status=S") and the tool's own
# output, as one JSON object on stdout.
# run_timed KIND CMD... -> appends {"kind":..., "wall_ms":..., ..., "out": "...", "timing": {...}}
run_timed() {
	local kind=$1
	shift
	# A pause first: after umount of a namespace returns, the kernel goes on freeing its
	# mounts for tens of ms (RCU callbacks, on either CPU). Right after the previous
	# restore's 10,000 binds were unmounted, the next restore read its image in 16-20 ms
	# instead of 11-12; 50 ms of pause were enough. Every timed step waits the same.
	sleep 0.1
	"$TIMEIT" "$@" >"$WORK/o" 2>"$WORK/e"
	local rc=$?
	python3 - "$kind" "$rc" "$WORK/o" "$WORK/e" <<'EOF'
import json, re, sys
kind, rc, o, e = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read(), open(sys.argv[4]).read()
rec = {"kind": kind, "rc": rc}
for line in e.splitlines():
    m = re.match(r"timeit wall_ms=([\d.]+) maxrss_kb=(\d+) status=(\d+)", line)
    if m:
        rec["wall_ms"] = float(m.group(1)); rec["maxrss_kb"] = int(m.group(2))
    m = re.match(r"mntcr timing: (\S+)\s+([\d.]+) ms \(at\s+([\d.]+) ms\)", line)
    if m:
        t = rec.setdefault("phases", {})
        t[m.group(1)] = t.get(m.group(1), 0.0) + float(m.group(2))
        if m.group(1) == "built":
            rec["built_ms"] = float(m.group(3))
for kv in re.findall(r"(\w+)=([\d.]+)", o):
    rec[kv[0]] = float(kv[1])
if rc != 0:
    rec["stderr"] = e[-2000:]
print(json.dumps(rec))
EOF
	return $rc
}

failed() { # failed WHAT RECORD: fatal unless --keep-going
	echo "run.sh: $1 failed: $2" >&2
	((KEEP_GOING)) || exit 1
}

emit() { # emit TOPO N JSON-OBJECT
	python3 -c 'import json,sys; r=json.loads(sys.argv[3]); r["topo"]=sys.argv[1]; r["n"]=int(sys.argv[2]); print(json.dumps(r))' \
		"$1" "$2" "$3" >>"$raw"
}

# The mount table alone, as the floor has it: no tmpfs content, no compression (when this
# mntcr has those options at all).
core=
"$MNTCR" dump --help 2>&1 | grep -q -- --no-content && core+=" --no-content"
"$MNTCR" dump --help 2>&1 | grep -q -- --compress && core+=" --compress=none"

IFS=, read -r -a size_list <<<"$SIZES"
IFS=, read -r -a topo_list <<<"$TOPOS"
depth_arg=()
[[ -n $CHAIN_DEPTH ]] && depth_arg=(--chain-depth "$CHAIN_DEPTH")

for n in "${size_list[@]}"; do
	# Runs at 1,000 mounts take some 10-40 ms, where one slow page fault moves a run by 10%
	# or more: three times as many of them.
	reps=$REPS
	((n <= 1000)) && reps=$((REPS * 3))
	for topo in "${topo_list[@]}"; do
		echo "== $topo N=$n" >&2
		touch "$S/ns" "$S/r"
		# 1. The namespace to dump, made by the floor (untimed: the timed floors go in turn
		# with the restores below).
		"$FLOOR" build --persist "$S/ns" "${depth_arg[@]}" "$topo" "$n" "$S/t" >/dev/null ||
			{ echo "floor failed ($topo, $n mounts)" >&2; exit 1; }
		nsenter --mount="$S/ns" sleep infinity &
		holder=$!
		self_ns=$(readlink /proc/self/ns/mnt)
		for ((w = 0; w < 500; w++)); do
			ns=$(readlink "/proc/$holder/ns/mnt" 2>/dev/null)
			[[ -n $ns && $ns != "$self_ns" && $(readlink "/proc/$holder/exe") == */sleep ]] && break
			sleep 0.02
		done
		emit "$topo" "$n" "{\"kind\": \"namespace\", \"mounts_in_ns\": $(wc -l <"/proc/$holder/mountinfo")}"
		# 2. The floor of a dump, reading mountinfo, and the dumps, in turn.
		for ((i = 0; i < reps; i++)); do
			rec=$(run_timed mountinfo "$FLOOR" mountinfo "$holder") || { echo "$rec" >&2; exit 1; }
			emit "$topo" "$n" "$rec"
			rec=$(MNTCR_TIMING=1 run_timed dump "$MNTCR" dump $core --pid "$holder" -o "$S/img") ||
				failed "dump" "$rec"
			emit "$topo" "$n" "$rec"
			rec=$(MNTCR_TIMING=1 run_timed dump_mountinfo "$MNTCR" dump $core --mountinfo \
				--pid "$holder" -o "$S/img-mi") || failed "dump --mountinfo" "$rec"
			emit "$topo" "$n" "$rec"
		done
		# With its defaults (tmpfs content, here nearly empty, and zstd): once, recorded, not required.
		rec=$(MNTCR_TIMING=1 run_timed dump_content timeout "${CONTENT_TIMEOUT:-120}" \
			"$MNTCR" dump --pid "$holder" -o "$S/img-c")
		emit "$topo" "$n" "$rec"
		emit "$topo" "$n" "{\"kind\": \"image\", \"image_bytes\": $(stat -c %s "$S/img")}"
		kill "$holder"
		wait "$holder" 2>/dev/null
		holder=
		umount "$S/ns" # one big namespace at a time
		# 3. The floor and the restore in turn, the first restore checked against the image.
		for ((i = 0; i < reps; i++)); do
			rec=$(run_timed floor "$FLOOR" build --persist "$S/ns" "${depth_arg[@]}" "$topo" "$n" "$S/t") ||
				{ echo "floor failed: $rec" >&2; exit 1; }
			emit "$topo" "$n" "$rec"
			umount "$S/ns"
			[[ -s $S/img ]] || continue
			rec=$(MNTCR_TIMING=1 run_timed restore "$MNTCR" restore --image "$S/img" --persist "$S/r") ||
				{ failed "restore" "$rec"; emit "$topo" "$n" "$rec"; rm -f "$S/img"; continue; }
			emit "$topo" "$n" "$rec"
			if ((i == 0)); then
				if "$MNTCR" diff --quiet "$S/img" "ns:$S/r"; then
					emit "$topo" "$n" '{"kind": "verify", "equal": true}'
				else
					emit "$topo" "$n" '{"kind": "verify", "equal": false}'
					echo "run.sh: the restored namespace differs from the image ($topo N=$n)" >&2
				fi
			fi
			umount "$S/r"
		done
		rm -f "$S/img" "$S/img-mi" "$S/img-c"
	done
done
# ------------------------------------------------------------------------------------------------
# Content: one tmpfs of CONTENT_MB MiB (1 MiB files, and 4 KiB files for 1/16 of it), dumped and
# restored with its files, next to GNU tar writing and extracting the same files. Both write their
# archive uncompressed (mntcr --compress=none) into a pipe that cat drains, as in
# `tar -cf - . | tar -xf -`, and read it from a file on the scratch tmpfs; mntcr's default (zstd)
# is recorded too, into a file.
if ((CONTENT_MB > 0)) && "$MNTCR" dump --help 2>&1 | grep -q -- --compress; then
	echo "== content ${CONTENT_MB} MiB" >&2
	c=$S/c
	mkdir -p "$c" "$S/x"
	big=$((CONTENT_MB * 15 / 16)) small=$((CONTENT_MB * 256 / 16))
	# The namespace is held by the process that made it, not bound on a file: on Linux 6.18,
	# binding a new namespace's file from its creator's namespace (unshare --mount=FILE) fails
	# with EINVAL about half the time (the loop check compares namespace ids, which are not
	# handed out in creation order across CPUs; mntcr restore --persist unshares again then).
	unshare -m --propagation private sh -c '
		mount -t tmpfs -o size=$(('"$CONTENT_MB"' * 2))m,mode=755 data "$1" &&
		mkdir "$1/big" "$1/small" &&
		head -c $(('"$big"' * 1048576)) /dev/urandom | split -b 1M -a 4 - "$1/big/f" &&
		mkdir -p "$1/small/d" && head -c $(('"$small"' * 4096)) /dev/urandom | split -b 4K -a 5 - "$1/small/d/s" &&
		exec sleep infinity
	' sh "$c" &
	holder=$!
	while kill -0 "$holder" 2>/dev/null && [[ $(readlink "/proc/$holder/exe") != */sleep ]]; do
		sleep 0.05
	done
	kill -0 "$holder" 2>/dev/null || { echo "run.sh: could not build the content namespace" >&2; exit 1; }
	cns=/proc/$holder/ns/mnt
	bytes=$(nsenter --mount="$cns" du -sb "$c" | cut -f1)
	files=$(nsenter --mount="$cns" find "$c" -type f | wc -l)
	emit content "$CONTENT_MB" "{\"kind\": \"content_data\", \"bytes\": $bytes, \"files\": $files}"
	# The archives go into a pipe: written into a file on this VM, 1 GiB took 0.5 s or 1.5-2.5 s
	# at random, for mntcr and tar alike (a guest page the host has not backed yet, or has taken
	# back a while after it was freed, costs a host fault on its first write). A first, untimed
	# round comes before the timed ones.
	for ((i = 0; i <= REPS && i <= 3; i++)); do
		timed=$((i > 0)) # round 0 warms
		rec=$(MNTCR_TIMING=1 run_timed content_dump bash -o pipefail -c \
			"\"\$1\" dump --compress=none --pid $holder -o - | cat >/dev/null" sh "$MNTCR") ||
			{ failed "content dump" "$rec"; emit content "$CONTENT_MB" "$rec"; break; }
		((timed)) && emit content "$CONTENT_MB" "$rec"
		rec=$(run_timed content_tar_c bash -o pipefail -c \
			"nsenter --mount=$cns tar -cf - -C $c . | cat >/dev/null") || failed "tar -c" "$rec"
		((timed)) && emit content "$CONTENT_MB" "$rec"
	done
	# The archives the restores and tar -x read, untimed.
	"$MNTCR" dump --compress=none --pid "$holder" -o "$S/cimg" || failed "content dump" "{}"
	nsenter --mount="$cns" tar -cf "$S/c.tar" -C "$c" . || failed "tar -c" "{}"
	# Restores and tar -x: each writes 1 GiB of files into a new tmpfs, right after the step before
	# it freed as much (memory freed just before took 0.5-0.6 s for 1 GiB, memory the host had not
	# backed 3.0-3.6 s, by tar -x and mntcr alike). In the order restore, tar -x, restore, tar -x.
	for ((i = 0; i <= REPS && i <= 3; i++)); do
		timed=$((i > 0))
		rec=$(MNTCR_TIMING=1 run_timed content_restore "$MNTCR" restore --image "$S/cimg" --persist "$S/r") ||
			{ failed "content restore" "$rec"; emit content "$CONTENT_MB" "$rec"; break; }
		((timed)) && emit content "$CONTENT_MB" "$rec"
		if ((i == 1)); then
			# the files came back: the same tree, byte for byte
			if diff -r <(nsenter --mount="$cns" sh -c "cd $c && find . -type f -exec md5sum {} + | sort") \
				<(nsenter --mount="$S/r" sh -c "cd $c && find . -type f -exec md5sum {} + | sort") >/dev/null; then
				emit content "$CONTENT_MB" '{"kind": "verify", "equal": true}'
			else
				emit content "$CONTENT_MB" '{"kind": "verify", "equal": false}'
				echo "run.sh: the restored content differs" >&2
			fi
		fi
		umount "$S/r"
		mount -t tmpfs -o size=$((CONTENT_MB * 2))m x "$S/x"
		rec=$(run_timed content_tar_x tar -xf "$S/c.tar" -C "$S/x") || failed "tar -x" "$rec"
		((timed)) && emit content "$CONTENT_MB" "$rec"
		umount "$S/x"
	done
	rm -f "$S/cimg" "$S/c.tar"
	rec=$(MNTCR_TIMING=1 run_timed content_dump_zstd "$MNTCR" dump --pid "$holder" -o "$S/cimg")
	emit content "$CONTENT_MB" "$rec"
	[[ -s $S/cimg ]] && emit content "$CONTENT_MB" "{\"kind\": \"content_zstd_image\", \"bytes\": $(stat -c %s "$S/cimg")}"
	rm -f "$S/cimg"
	kill "$holder"
	wait "$holder" 2>/dev/null
	holder=
fi
exit 0
