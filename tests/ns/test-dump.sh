#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# mntcr dump and the model it is built on, on real topologies: each one is
# built by a process in a mount namespace of its own, then
#  - the library's model of it (tests/ns/mntcr-inspect) must be exactly the
#    expected lines, read through statmount and through mountinfo;
#  - `mntcr dump --pid` must exit 0 and the image must describe the same
#    namespace (until the image writer lands: a clean one-line error, and
#    the checks are skipped);
#  - the dump must leave the target's mount table as it was.
# The topologies are single-quoted: $D and $S expand in the namespace that builds them.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Compare the model of NAME's mounts with the expected lines, from both sources.
expect_model() {
	local name=$1 want=$2 got_sm got_mi
	got_sm=$(ns_inspect "$name" 2>&1)
	is "$got_sm" "$want" "$name: the model (statmount)"
	got_mi=$(ns_inspect "$name" --mountinfo 2>&1)
	is "$got_mi" "$want" "$name: the model (mountinfo)"
}

# The two sources agree on the whole namespace, host mounts included; and so do
# statmount's reads: the mounts from the process's mountinfo numbered by listmount
# (the default, =0; on one thread or two), or every mount from statmount itself (=1).
expect_sources_agree() {
	local name=$1 pid a b
	pid=$(ns_pid "$name")
	a=$("$MNTCR_INSPECT" "$pid" 2>&1)
	b=$("$MNTCR_INSPECT" --mountinfo "$pid" 2>&1)
	is "$b" "$a" "$name: statmount and mountinfo agree on the whole namespace"
	b=$(MNTCR_STATMOUNT_STRINGS=1 "$MNTCR_INSPECT" "$pid" 2>&1)
	is "$b" "$a" "$name: statmount's own strings agree"
	b=$(MNTCR_STATMOUNT_STRINGS=0 "$MNTCR_INSPECT" "$pid" 2>&1)
	is "$b" "$a" "$name: the mounts from its process's mountinfo agree"
	b=$(MNTCR_STATMOUNT_STRINGS=0 MNTCR_THREADS=1 "$MNTCR_INSPECT" "$pid" 2>&1)
	is "$b" "$a" "$name: ... read on one thread"
}

# Dump NAME; check the image (or the error), and that the target is unchanged.
expect_dump() {
	local name=$1 pid img before after live image rc
	pid=$(ns_pid "$name")
	img=$NS_TMP/$name.img
	before=$(ns_mountinfo "$name")

	if mntcr_dump "$pid" "$img"; then
		ok "$name: dump --pid exits 0"
		check "$name: dump wrote an image" test -s "$img"
		check "$name: dump wrote nothing to stderr" test ! -s "$MNTCR_ERR"
		live=$(ns_inspect "$name")
		image=$("$MNTCR_INSPECT" --image "$img" --prefix "$(ns_dir "$name")" 2>&1)
		rc=$?
		if ((rc == 77)); then
			skip "$name: the image holds the same model" "image reader not available"
		else
			is "$image" "$live" "$name: the image holds the same model"
		fi
		check_exit 0 "$name: show --image reads the image" "$MNTCR" show --image "$img"
		is "$(<"$OUT")" "$("$MNTCR" show --pid "$pid" 2>&1)" \
			"$name: show of the image is show of the live namespace"
		check_exit 0 "$name: show --image --json reads the image" "$MNTCR" show --image "$img" --json
		check "$name: show --json prints valid JSON" "$JSON_CHECK" <"$OUT"
		is "$(<"$OUT")" "$("$MNTCR" show --pid "$pid" --json 2>&1)" \
			"$name: show --json of the image is show --json of the live namespace"
		if cli_has diff; then
			check_exit 0 "$name: diff image pid:$name finds no difference" \
				"$MNTCR" diff "$img" "pid:$pid"
		else
			skip "$name: diff image pid:$name finds no difference" "mntcr diff not available"
		fi
	else
		local err lines
		err=$(<"$MNTCR_ERR")
		lines=$(wc -l <"$MNTCR_ERR")
		if [[ $lines == 1 && $err == "mntcr dump: "* ]]; then
			ok "$name: a failed dump says why in one line"
		else
			not_ok "$name: a failed dump says why in one line" "exit $MNTCR_RC" "$err"
		fi
		if compgen -G "$img*" >/dev/null; then
			not_ok "$name: a failed dump leaves no file behind" "$(ls -l "$img"*)"
		else
			ok "$name: a failed dump leaves no file behind"
		fi
		if [[ $MNTCR_RC == 1 && $err == *"Operation not supported"* ]]; then
			skip "$name: dump --pid exits 0" "image writer not available"
		else
			not_ok "$name: dump --pid exits 0" "exit $MNTCR_RC" "$err"
		fi
	fi
	after=$(ns_mountinfo "$name")
	is "$after" "$before" "$name: dump leaves the target's mount table unchanged"
}

topology() {
	local name=$1 cmds=$2 want=$3
	if ! ns_start "$name" "$cmds"; then
		not_ok "$name: build the topology"
		return
	fi
	ok "$name: build the topology"
	expect_model "$name" "$want"
	expect_sources_agree "$name"
	expect_dump "$name"
	ns_stop "$name"
}

# ------------------------------------------------------------------------------------------------

# Three tmpfs side by side, on a directory of the scratch tmpfs (external).
topology flat '
	mkdir "$D/a" "$D/b" "$D/c"
	mount -t tmpfs A "$D/a"
	mount -t tmpfs -o ro,nosuid B "$D/b"
	mount -t tmpfs -o nodev,noexec,noatime,size=1m C "$D/c"
' "\
/a root=/ fs=tmpfs src=A opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/b root=/ fs=tmpfs src=B opts=ro,nosuid,relatime sb=ro prop=private cover=none hidden=no type=d owned
/c root=/ fs=tmpfs src=C opts=rw,nodev,noexec,noatime sb=rw,size=1024k prop=private cover=none hidden=no type=d owned"

# Per-mount flags apart from the superblock's: a read-only bind of a writable tmpfs (the
# remount without an atime option makes it relatime).
topology flags '
	mount -t tmpfs -o mode=0755 base "$D"
	mkdir "$D/o" "$D/ro"
	mount -t tmpfs -o nodiratime,nosymfollow,strictatime O "$D/o"
	mount --bind "$D/o" "$D/ro"
	mount -o remount,bind,ro,nosuid "$D/ro"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw,mode=755 prop=private cover=none hidden=no type=d owned
/o root=/ fs=tmpfs src=O opts=rw,nodiratime,nosymfollow sb=rw prop=private cover=none hidden=no type=d owned
/ro root=/ fs=tmpfs src=O opts=ro,nosuid,nodiratime,relatime,nosymfollow sb=rw prop=private cover=none hidden=no type=d owned"

topology nested '
	mount -t tmpfs base "$D"
	mkdir -p "$D/a"
	mount -t tmpfs A "$D/a"
	mkdir "$D/a/b"
	mount -t tmpfs B "$D/a/b"
	mkdir "$D/a/b/c with space"
	mount -t tmpfs "C source" "$D/a/b/c with space"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/a root=/ fs=tmpfs src=A opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/a/b root=/ fs=tmpfs src=B opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/a/b/c\\040with\\040space root=/ fs=tmpfs src=C\\040source opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned"

# Paths and sources that are bytes, not UTF-8, and a literal "\x": the image keeps them,
# show --json shows them in valid UTF-8 as its table does (a\xffb, c\x5cx41).
topology bytes '
	mount -t tmpfs base "$D"
	a=$(printf "a\377b") c="c\\x41"
	mkdir "$D/$a" "$D/$c"
	mount -t tmpfs "$(printf "s\376")" "$D/$a"
	mount -t tmpfs t "$D/$c"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/a"$'\xff'"b root=/ fs=tmpfs src=s"$'\xfe'" opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/c\\134x41 root=/ fs=tmpfs src=t opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned"

out=$(mntcr_show --image "$NS_TMP/bytes.img" --json)
check "bytes: show --json has a\\xffb, s\\xfe and c\\x5cx41 as text" \
	grep -qF -e '/bytes/a\\xffb",' -e '"source": "s\\xfe",' -e '/bytes/c\\x5cx41",' <<<"$out"
is "$(grep -c -F -e '/bytes/a\\xffb",' -e '"source": "s\\xfe",' -e '/bytes/c\\x5cx41",' <<<"$out")" 3 \
	"bytes: show --json: each of them once"
out=$(mntcr_show --image "$NS_TMP/bytes.img")
check "bytes: the table shows a\\xffb and s\\xfe so too" grep -qE '/bytes/a\\xffb +s\\xfe ' <<<"$out"
check "bytes: the table shows c\\x5cx41 so too" grep -qE '/bytes/c\\x5cx41 +t ' <<<"$out"

# KERNEL-FACTS 2(a): L at a, B at a/b, T over a (T's parent is L); and S over c hides C at c/x/y.
# Hidden leaves have no type, no path reaches them, unless the root of a
# tmpfs is theirs, which is a directory: f (T's file bound under S) has none.
topology overmount '
	mount -t tmpfs base "$D"
	mkdir "$D/a" "$D/c"
	mount -t tmpfs L "$D/a"
	mkdir "$D/a/b"
	touch "$D/a/b/under_B_in_L"
	mount -t tmpfs B "$D/a/b"
	touch "$D/a/b/B_file"
	mount -t tmpfs T "$D/a"
	touch "$D/a/T_file"
	mkdir -p "$D/c/x/y"
	mount -t tmpfs C "$D/c/x/y"
	touch "$D/c/x/f"
	mount --bind "$D/a/T_file" "$D/c/x/f"
	mount -t tmpfs S "$D/c"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/c/x/f root=/T_file fs=tmpfs src=T opts=rw,relatime sb=rw prop=private cover=sibling:/c hidden=yes type=? owned
/c/x/y root=/ fs=tmpfs src=C opts=rw,relatime sb=rw prop=private cover=sibling:/c hidden=yes type=d owned
/a root=/ fs=tmpfs src=L opts=rw,relatime sb=rw prop=private cover=root:/a hidden=yes type=d owned
/a/b root=/ fs=tmpfs src=B opts=rw,relatime sb=rw prop=private cover=sibling:/a hidden=yes type=d owned
/a root=/ fs=tmpfs src=T opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/c root=/ fs=tmpfs src=S opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned"

# Three tmpfs stacked on one path.
topology stack3 '
	mount -t tmpfs base "$D"
	mkdir "$D/s"
	mount -t tmpfs X1 "$D/s"
	mount -t tmpfs -o nosuid X2 "$D/s"
	mount -t tmpfs -o ro X3 "$D/s"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/s root=/ fs=tmpfs src=X1 opts=rw,relatime sb=rw prop=private cover=root:/s hidden=yes type=d owned
/s root=/ fs=tmpfs src=X2 opts=rw,nosuid,relatime sb=rw prop=private cover=root:/s hidden=yes type=d owned
/s root=/ fs=tmpfs src=X3 opts=ro,relatime sb=ro prop=private cover=none hidden=no type=d owned"

# A stack (Y over X, W on X below Y) that a sibling S of X hides as a whole: X is covered
# by S, not by Y; Y is hidden below X; W is covered by Y.
topology stackcover '
	mount -t tmpfs base "$D"
	mkdir -p "$D/x/y"
	mount -t tmpfs X "$D/x/y"
	mkdir "$D/x/y/w"
	mount -t tmpfs W "$D/x/y/w"
	mount -t tmpfs Y "$D/x/y"
	mount -t tmpfs S "$D/x"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/x/y root=/ fs=tmpfs src=X opts=rw,relatime sb=rw prop=private cover=sibling:/x hidden=yes type=d owned
/x/y/w root=/ fs=tmpfs src=W opts=rw,relatime sb=rw prop=private cover=sibling:/x/y hidden=yes type=d owned
/x/y root=/ fs=tmpfs src=Y opts=rw,relatime sb=rw prop=private cover=none hidden=yes type=d owned
/x root=/ fs=tmpfs src=S opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned"

# Peers: binds of a shared mount join its group; two groups, numbered in order of appearance.
topology shared '
	mount -t tmpfs base "$D"
	mkdir "$D/p1" "$D/p2" "$D/p3" "$D/q1" "$D/q2"
	mount -t tmpfs Q "$D/q1"
	mount --make-shared "$D/q1"
	mount -t tmpfs P "$D/p1"
	mount --make-shared "$D/p1"
	mount --bind "$D/p1" "$D/p2"
	mount --bind "$D/p1" "$D/p3"
	mount --bind "$D/q1" "$D/q2"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/p1 root=/ fs=tmpfs src=P opts=rw,relatime sb=rw prop=shared:1 cover=none hidden=no type=d owned
/p2 root=/ fs=tmpfs src=P opts=rw,relatime sb=rw prop=shared:1 cover=none hidden=no type=d owned
/p3 root=/ fs=tmpfs src=P opts=rw,relatime sb=rw prop=shared:1 cover=none hidden=no type=d owned
/q1 root=/ fs=tmpfs src=Q opts=rw,relatime sb=rw prop=shared:2 cover=none hidden=no type=d owned
/q2 root=/ fs=tmpfs src=Q opts=rw,relatime sb=rw prop=shared:2 cover=none hidden=no type=d owned"

# A slave (bind of a shared mount, made slave) and a shared slave (bind, slave, shared).
topology slave '
	mount -t tmpfs base "$D"
	mkdir "$D/m" "$D/sl" "$D/ss"
	mount -t tmpfs M "$D/m"
	mount --make-shared "$D/m"
	mount --bind "$D/m" "$D/sl"
	mount --make-slave "$D/sl"
	mount --bind "$D/m" "$D/ss"
	mount --make-slave "$D/ss"
	mount --make-shared "$D/ss"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/m root=/ fs=tmpfs src=M opts=rw,relatime sb=rw prop=shared:1 cover=none hidden=no type=d owned
/sl root=/ fs=tmpfs src=M opts=rw,relatime sb=rw prop=master:1 cover=none hidden=no type=d owned
/ss root=/ fs=tmpfs src=M opts=rw,relatime sb=rw prop=shared:2,master:1 cover=none hidden=no type=d owned"

topology unbindable '
	mount -t tmpfs base "$D"
	mkdir "$D/u"
	mount -t tmpfs U "$D/u"
	mount --make-unbindable "$D/u"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/u root=/ fs=tmpfs src=U opts=rw,relatime sb=rw prop=unbindable cover=none hidden=no type=d owned"

# A file bind, a subdirectory bind, and a bind of the scratch tmpfs (external: not typed).
topology binds '
	mount -t tmpfs base "$D"
	echo data >"$D/file"
	touch "$D/target"
	mount --bind "$D/file" "$D/target"
	mkdir -p "$D/sub/dir" "$D/bsub" "$D/ext" "$S/binds-ext/in"
	mount --bind "$D/sub" "$D/bsub"
	mount --bind "$S/binds-ext/in" "$D/ext"
' "\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/bsub root=/sub fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/ext root=/binds-ext/in fs=tmpfs src=mntcr-scratch opts=rw,relatime sb=rw,size=262144k,mode=755 prop=private cover=none hidden=no type=? external
/target root=/file fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=f owned"

# 300 file binds and 300 subdirectory binds: their types are looked up by path, on two threads
# (with two CPUs).
want="/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
$(for ((i = 0; i < 300; i++)); do
	echo "/bd$i root=/sub$i fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned"
	echo "/bf$i root=/f$i fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=f owned"
done | LC_ALL=C sort)"
topology manybinds '
	mount -t tmpfs base "$D"
	for ((i = 0; i < 300; i++)); do
		mkdir "$D/sub$i" "$D/bd$i"
		touch "$D/f$i" "$D/bf$i"
		mount --bind "$D/sub$i" "$D/bd$i"
		mount --bind "$D/f$i" "$D/bf$i"
	done
' "$want"

# ------------------------------------------------------------------------------------------------
# Namespace files: a bind of an nsfs file has the root "mnt:[INODE]", not a path.

# Bind a new mount namespace on FILE, as `mntcr restore --persist FILE` does: from a child
# that unshared. Linux 6.18 refuses (EINVAL, mnt_ns_loop()) to bind a namespace whose id is
# not above the binder's own, and hands out namespace ids in per-CPU batches: a namespace
# made on another CPU can get a lower id though it is newer. So try one CPU after another.
BIND_NEW_MNTNS='
	bind_new_mntns() {
		local pid i cpu
		for ((cpu = 0; cpu < $(nproc --all); cpu++)); do
			taskset -c $cpu unshare -m --propagation private sleep infinity \
				</dev/null >/dev/null 2>&1 &
			pid=$!
			for ((i = 0; i < 500; i++)); do
				[[ $(readlink /proc/$pid/ns/mnt) != "$(readlink /proc/self/ns/mnt)" ]] && break
				kill -0 $pid 2>/dev/null || break
				sleep 0.01
			done
			if mount --bind /proc/$pid/ns/mnt "$1" 2>/dev/null; then
				kill $pid
				wait $pid 2>/dev/null || true
				return 0
			fi
			kill $pid 2>/dev/null || true
			wait $pid 2>/dev/null || true
		done
		echo "bind_new_mntns: cannot bind a new mount namespace on $1" >&2
		return 1
	}'
eval "$BIND_NEW_MNTNS"

# In the reader's own namespace, as after `mntcr restore --persist`: reading must still work.
touch "$S/persist.ns"
if bind_new_mntns "$S/persist.ns" && grep -q " mnt:\[[0-9]*\] $S/persist.ns " /proc/self/mountinfo; then
	ok "a namespace file bound in the reader's namespace"
	topology reader_nsfs '
		mkdir "$D/a"
		mount -t tmpfs A "$D/a"
	' "\
/a root=/ fs=tmpfs src=A opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned"
	check "unbind the namespace file" umount "$S/persist.ns"
else
	not_ok "a namespace file bound in the reader's namespace"
fi

# In the target: the model shows it (INODE normalised here); dump writes it or refuses cleanly.
if ns_start nsfile "$BIND_NEW_MNTNS"'
	mount -t tmpfs base "$D"
	touch "$D/mnt.ns"
	bind_new_mntns "$D/mnt.ns"
'; then
	ok "nsfile: build the topology"
	want="\
/ root=/ fs=tmpfs src=base opts=rw,relatime sb=rw prop=private cover=none hidden=no type=d owned
/mnt.ns root=mnt:[N] fs=nsfs src=nsfs opts=rw sb=rw prop=private cover=none hidden=no type=f owned"
	is "$(ns_inspect nsfile 2>&1 | sed 's/:\[[0-9]*\]/:[N]/')" "$want" "nsfile: the model (statmount)"
	is "$(ns_inspect nsfile --mountinfo 2>&1 | sed 's/:\[[0-9]*\]/:[N]/')" "$want" \
		"nsfile: the model (mountinfo)"
	expect_sources_agree nsfile
	before=$(ns_mountinfo nsfile)
	if mntcr_dump "$(ns_pid nsfile)" "$NS_TMP/nsfile.img"; then
		ok "nsfile: dump exits 0 or refuses in one line (exit 0)"
	elif [[ $(wc -l <"$MNTCR_ERR") == 1 && $(<"$MNTCR_ERR") == "mntcr dump: "* ]]; then
		ok "nsfile: dump exits 0 or refuses in one line (exit $MNTCR_RC: $(<"$MNTCR_ERR"))"
		check "nsfile: a refused dump leaves no file behind" \
			bash -c '! compgen -G "$1*" >/dev/null' - "$NS_TMP/nsfile.img"
	else
		not_ok "nsfile: dump exits 0 or refuses in one line" "exit $MNTCR_RC" "$(<"$MNTCR_ERR")"
	fi
	is "$(ns_mountinfo nsfile)" "$before" "nsfile: dump leaves the target's mount table unchanged"
	ns_stop nsfile
else
	not_ok "nsfile: build the topology"
fi

# ------------------------------------------------------------------------------------------------
# Many mounts (8,193): each rbind of a into a subdirectory of its own doubles them. Past a few
# thousand the read and the manifest are shared between threads; the image must be the one a
# single thread writes, byte for byte.

if ns_start many 'mount -t tmpfs M $D; mkdir $D/a; mount -t tmpfs A $D/a; mkdir $D/a/1 $D/a/2 $D/a/3 $D/a/4 $D/a/5 $D/a/6 $D/a/7 $D/a/8 $D/a/9 $D/a/10 $D/a/11 $D/a/12 $D/a/13; for k in 1 2 3 4 5 6 7 8 9 10 11 12 13; do mount --rbind $D/a $D/a/$k || exit 1; done'; then
	n_many=$(grep -c "$S/many" "/proc/$(ns_pid many)/mountinfo")
	is "$n_many" 8193 "many: the topology has 8,193 mounts under its tmpfs"
	check_exit 0 "many: dump on one thread" env MNTCR_THREADS=1 "$MNTCR" dump --no-content \
		--compress=none --pid "$(ns_pid many)" -o "$NS_TMP/many1.img"
	check_exit 0 "many: dump on threads" "$MNTCR" dump --no-content --compress=none \
		--pid "$(ns_pid many)" -o "$NS_TMP/many.img"
	check "many: the same image from one thread and from several" \
		cmp "$NS_TMP/many1.img" "$NS_TMP/many.img"
	if [[ -n ${MNTCR_VG_LOGS:-} ]]; then
		# valgrind 3.19 knows neither listmount nor statmount: mntcr reads the mountinfo alone
		skip "many: read from the mountinfo, numbered by listmount, and by statmount alone" \
			"valgrind has no listmount or statmount"
	else
		MNTCR_DEBUG=1 "$MNTCR" dump --no-content --compress=none --pid "$(ns_pid many)" \
			-o "$NS_TMP/many-debug.img" 2>"$NS_TMP/many.err"
		check "many: its mounts are read from its process's mountinfo" \
			grep -q "Namespace [0-9]*: [0-9]* mounts, read from its process's mountinfo" "$NS_TMP/many.err"
		check_exit 0 "many: dump with every mount read by statmount" env MNTCR_STATMOUNT_STRINGS=1 \
			"$MNTCR" dump --no-content --compress=none --pid "$(ns_pid many)" -o "$NS_TMP/many-sm.img"
		check "many: the same image read from the mountinfo and by statmount" \
			cmp "$NS_TMP/many.img" "$NS_TMP/many-sm.img"
	fi
	check "many: the image has every mount" \
		test "$("$MNTCR" show --image "$NS_TMP/many.img" --mountinfo | grep -c " $S/many")" = 8193
	ns_stop many
else
	not_ok "many: build the topology"
fi

# A namespace that changes while it is read: a subtree moved back and forth every 20 ms, its
# root and its child made before and after 4,096 other mounts, so that a read (some 4 ms, in
# mount id order) meets them far apart. A read that a move overlaps is made again, so every dump
# succeeds and holds the subtree whole on one side (a read torn by a move would have the child
# on one side and its parent on the other, and fail).
if [[ -n ${MNTCR_VG_LOGS:-} ]]; then
	skip "moving: dumps of a namespace that changes while it is read" "under valgrind a read outlasts the 20 ms between moves"
elif ns_start moving 'mount -t tmpfs M $D; mkdir $D/big $D/a $D/b; mount -t tmpfs m $D/a; mkdir $D/a/c; mount -t tmpfs B $D/big; mkdir $D/big/1 $D/big/2 $D/big/3 $D/big/4 $D/big/5 $D/big/6 $D/big/7 $D/big/8 $D/big/9 $D/big/10 $D/big/11 $D/big/12; for k in 1 2 3 4 5 6 7 8 9 10 11 12; do mount --rbind $D/big $D/big/$k || exit 1; done; mount -t tmpfs c $D/a/c'; then
	D=$(ns_dir moving)
	nsenter -t "$(ns_pid moving)" -m sh -c "while :; do mount --move $D/a $D/b; sleep 0.02; mount --move $D/b $D/a; sleep 0.02; done" &
	mover=$!
	good=0 whole=0
	for ((i = 0; i < 30; i++)); do
		if "$MNTCR" dump --no-content --compress=none --pid "$(ns_pid moving)" -o "$NS_TMP/moving.img" 2>"$ERR"; then
			good=$((good + 1))
			sides=$("$MNTCR_INSPECT" --image "$NS_TMP/moving.img" --prefix "$D" | grep -E '^/(a|b)(/c)? ' | awk '{ print $1 }' | tr '\n' ' ')
			[[ $sides == "/a /a/c " || $sides == "/b /b/c " ]] && whole=$((whole + 1))
		else
			diag "dump $i: $(cat "$ERR")"
		fi
	done
	kill "$mover"
	wait "$mover" 2>/dev/null
	is "$good" 30 "moving: 30 dumps of a namespace that changes while it is read all succeed"
	is "$whole" 30 "moving: each image has the moved subtree whole, on one side"
	ns_stop moving
else
	not_ok "moving: build the topology"
fi

# ------------------------------------------------------------------------------------------------
# Errors.

pid_max=$(cat /proc/sys/kernel/pid_max)
check_exit 3 "dump of a nonexistent pid exits 3" "$MNTCR" dump --pid "$pid_max" -o "$NS_TMP/none.img"
is "$(cat "$ERR")" "mntcr dump: No process with pid $pid_max" "dump of a nonexistent pid: one clear line"
is "$(wc -c <"$OUT")" 0 "dump of a nonexistent pid: nothing on stdout"
check "dump of a nonexistent pid: no image file" test ! -e "$NS_TMP/none.img"

check_exit 2 "dump without arguments exits 2" "$MNTCR" dump
check "dump without arguments: says what is missing" grep -q "^mntcr dump: .*--pid" "$ERR"
check_exit 2 "dump without --output exits 2" "$MNTCR" dump --pid $$
check_exit 2 "dump without --pid exits 2" "$MNTCR" dump -o "$NS_TMP/x.img"
check_exit 2 "dump --pid abc exits 2" "$MNTCR" dump --pid abc -o "$NS_TMP/x.img"
is "$(cat "$ERR")" "mntcr dump: Invalid pid 'abc'" "dump --pid abc: one clear line"
check_exit 2 "dump --pid 0 exits 2" "$MNTCR" dump --pid 0 -o "$NS_TMP/x.img"
check_exit 2 "dump --pid -5 exits 2" "$MNTCR" dump --pid -5 -o "$NS_TMP/x.img"
check_exit 2 "dump with an unknown option exits 2" "$MNTCR" dump --bogus --pid $$ -o "$NS_TMP/x.img"
check_exit 2 "dump with an extra argument exits 2" "$MNTCR" dump --pid $$ -o "$NS_TMP/x.img" extra
check "dump with bad arguments leaves no file" test ! -e "$NS_TMP/x.img"

# The model printer itself: a nonexistent pid.
check_exit 3 "mntcr-inspect of a nonexistent pid exits 3" "$MNTCR_INSPECT" "$pid_max"
