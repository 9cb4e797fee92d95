#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Several mount namespaces in one image: dump --pid A --pid B / --tree PID,
# restore --persist DIR, diff and show of several namespaces, peer groups
# that span namespaces (checked live), nested namespaces with another root,
# chroot'd processes.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# multi_check NAME PIDS...: dump the namespaces of PIDS into $NS_TMP/NAME.img,
# restore them into $R=$NS_TMP/NAME.d/nsK, and compare both ways.
multi_check() {
	local name=$1 n i list=
	shift
	IMG=$NS_TMP/$name.img
	R=$NS_TMP/$name.d
	local -a args=()
	for i in "$@"; do args+=(--pid "$i"); done
	check_exit 0 "$name: dump ${args[*]}" "$MNTCR" dump "${args[@]}" -o "$IMG" || return 1
	check_exit 0 "$name: restore --persist DIR" "$MNTCR" restore -i "$IMG" --persist "$R" || return 1
	MAP=$(cat "$OUT")
	n=$(wc -l <"$OUT")
	for ((i = 0; i < n; i++)); do list+=${list:+,}$R/ns$i; done
	NSLIST=$list
	check_exit 0 "$name: diff image ns:restored (all namespaces) finds no difference" \
		"$MNTCR" diff "$IMG" "ns:$NSLIST"
	check_exit 0 "$name: diff pid:originals ns:restored finds no difference" \
		"$MNTCR" diff "pid:$(IFS=,; echo "$*")" "ns:$NSLIST"
}

# in_ns K 'CMDS': run CMDS in restored namespace K itself (not a copy).
in_ns() {
	nsenter --mount="$R/ns$1" sh -c "$2"
}

multi_done() {
	local f
	for f in "$R"/ns*; do umount "$f" 2>/dev/null; done
	for f in "$@"; do ns_stop "$f"; done
}

# ------------------------------------------------------------------------------------------------
# A parent namespace and a child that ran unshare -m and changed its copy:
# unmounted one mount, mounted another, made a shared one private. One
# group stays shared between them.
ns_start par '
	mount -t tmpfs P $D; mkdir $D/a $D/b $D/c $D/sh $D/only
	mount -t tmpfs A $D/a; echo parent-a >$D/a/f
	mount -t tmpfs B $D/b
	mount -t tmpfs C $D/c; mount --make-shared $D/c
	mount -t tmpfs SH $D/sh; mount --make-shared $D/sh; mkdir $D/sh/in'
P=$(ns_pid par)
NS_PARENT=$P NS_PROPAGATION=unchanged ns_start kid '
	D=$S/par
	umount $D/a
	mount -t tmpfs K $D/b; echo kid-b >$D/b/f
	mount --make-private $D/c
	mount -t tmpfs KO $D/only'
K=$(ns_pid kid)
multi_check unshared "$P" "$K"
is "$(wc -l <<<"$MAP")" 2 "unshared: two namespaces bound, one line each"
is "$(awk '{print $3}' <<<"$MAP" | tr '\n' ' ')" "$P $K " "unshared: the mapping names the processes"
is "$(in_ns 0 "cat $S/par/a/f; cat $S/par/b/f 2>/dev/null || echo none")" "parent-a
none" "unshared: namespace 0 has A on a, B on b"
is "$(in_ns 1 "cat $S/par/a/f 2>/dev/null || echo none; cat $S/par/b/f")" "none
kid-b" "unshared: namespace 1 has nothing on a and K over b"
is "$(in_ns 0 "grep -c ' $S/par/c ' /proc/self/mountinfo; grep ' $S/par/c ' /proc/self/mountinfo | grep -c shared:")" "1
1" "unshared: c is shared in namespace 0"
is "$(in_ns 1 "grep ' $S/par/c ' /proc/self/mountinfo | grep -c shared:")" 0 \
	"unshared: c is private in namespace 1"
# The shared group spans both namespaces: a mount in one appears in the other.
in_ns 0 "mount -t tmpfs LIVE0 $S/par/sh/in"
is "$(in_ns 1 "grep -c ' $S/par/sh/in .* LIVE0 ' /proc/self/mountinfo")" 1 \
	"unshared: a mount under the shared group in namespace 0 appears in namespace 1"
in_ns 1 "umount $S/par/sh/in; mkdir -p $S/par/sh/x; mount -t tmpfs LIVE1 $S/par/sh/x"
is "$(in_ns 0 "grep -c ' LIVE0 ' /proc/self/mountinfo; grep -c ' LIVE1 ' /proc/self/mountinfo")" "0
1" "unshared: and back: an unmount and a mount in namespace 1 propagate to namespace 0"
is "$(in_ns 0 "grep -c ' $S/par/c/.* ' /proc/self/mountinfo" ; in_ns 1 "mount -t tmpfs PRIV $S/par/c; grep -c PRIV /proc/self/mountinfo")" "0
1" "unshared: the private copy of c does not propagate"
is "$(in_ns 0 "grep -c PRIV /proc/self/mountinfo")" 0 "unshared: ... to namespace 0"
# Content that only the child's namespace has.
is "$(in_ns 1 "cat $S/par/b/f")" kid-b "unshared: tmpfs content of the child's own mount"
# show and plan of several namespaces.
check "unshared: show names both namespaces" sh -c \
	"\"$MNTCR\" show -i \"$IMG\" | grep -c '^namespace [01] ' | grep -qx 2"
is "$("$MNTCR" show --pid "$P" --pid "$K" 2>&1)" "$("$MNTCR" show -i "$IMG" 2>&1)" \
	"unshared: show --pid P --pid K is show of the image"
check "unshared: restore --dry-run plans both roots" sh -c \
	"\"$MNTCR\" restore -n -i \"$IMG\" | grep -c 'becomes / of namespace' | grep -qx 2"
check_exit 7 "unshared: the compat engine refuses several namespaces" \
	"$MNTCR" restore --engine=compat -i "$IMG" --persist "$NS_TMP/compat.d"
check "unshared: ... naming the reason" grep -q "compat engine restores one namespace" "$ERR"
# diff sees differences between namespaces.
check_exit 1 "unshared: diff finds the namespaces swapped" "$MNTCR" diff "$IMG" "pid:$K,$P"
check "unshared: ... in namespace 1's lines" grep -q "ns1:" "$OUT"
check_exit 1 "unshared: diff finds a different number of namespaces (one given twice)" \
	"$MNTCR" diff "$IMG" "ns:$R/ns0,$R/ns0"
check_exit 1 "unshared: diff finds a different number of namespaces" "$MNTCR" diff "$IMG" "ns:$R/ns0"
# -- CMD runs in the first process's namespace.
is "$("$MNTCR" restore -i "$IMG" -- cat "$S/par/a/f" 2>&1)" parent-a \
	"unshared: restore -- CMD runs in the first namespace"
multi_done kid par

# ------------------------------------------------------------------------------------------------
# A slave in the child of a group in the parent, and a group whose members
# are in both namespaces at different roots.
ns_start mpar '
	mount -t tmpfs M $D; mkdir -p $D/m/sub $D/s $D/t
	mount -t tmpfs G $D/m; mkdir -p $D/m/sub; mount --make-shared $D/m
	mount --bind $D/m/sub $D/s'
MP=$(ns_pid mpar)
NS_PARENT=$MP NS_PROPAGATION=unchanged ns_start mkid '
	D=$S/mpar
	mount --make-slave $D/m
	mount --bind $S/mpar/s $D/t'
MK=$(ns_pid mkid)
multi_check master "$MP" "$MK"
R0=$R
in_ns 0 "mkdir -p $S/mpar/m/x; mount -t tmpfs DOWN $S/mpar/m/x"
is "$(in_ns 1 "grep -c ' $S/mpar/m/x .* DOWN ' /proc/self/mountinfo")" 1 \
	"master: a mount on the master in namespace 0 reaches the slave in namespace 1"
in_ns 1 "mkdir -p $S/mpar/m/y; mount -t tmpfs UP $S/mpar/m/y"
is "$(in_ns 0 "grep -c ' UP ' /proc/self/mountinfo")" 0 \
	"master: a mount on the slave in namespace 1 does not reach namespace 0"
multi_done mkid mpar

# ------------------------------------------------------------------------------------------------
# A nested namespace whose root is another tmpfs after pivot_root.
ns_start host '
	mount -t tmpfs H $D; mkdir -p $D/r $D/data; mount -t tmpfs DATA $D/data; echo host-data >$D/data/f'
HP=$(ns_pid host)
NS_PARENT=$HP ns_start guest '
	R=$S/host/r; mount -t tmpfs -o mode=755 groot $R
	mkdir -p $R/usr $R/old $R/proc $R/data
	mount --bind /usr $R/usr; ln -s usr/bin $R/bin; ln -s usr/lib $R/lib; ln -s usr/lib64 $R/lib64
	mount -t proc proc $R/proc
	mount --bind $S/host/data $R/data
	echo guest-root >$R/marker
	cd $R; pivot_root . old; umount -l /old; cd /'
GP=$(ns_pid guest)
multi_check nested "$HP" "$GP"
is "$(in_ns 1 "cat /marker /data/f")" "guest-root
host-data" "nested: namespace 1's root is the tmpfs, with its file, and the shared data bind"
is "$(in_ns 0 "cat $S/host/data/f; test -e /marker && echo marker || echo no-marker")" "host-data
no-marker" "nested: namespace 0 keeps the host's root"
in_ns 0 "echo written >$S/host/data/g"
is "$(in_ns 1 "cat /data/g")" written "nested: the data superblock is one, shared by both namespaces"
multi_done guest host

# ------------------------------------------------------------------------------------------------
# Three namespaces from one process tree (dump --tree), and a chroot'd process.
ns_start top '
	mount -t tmpfs T $D; mkdir -p $D/one $D/jail
	mount -t tmpfs ONE $D/one
	mount -t tmpfs -o mode=755 J $D/jail; echo in-jail >$D/jail/marker
	mkdir -p $D/jail/usr $D/jail/work; ln -s usr/bin $D/jail/bin; ln -s usr/lib $D/jail/lib
	ln -s usr/lib64 $D/jail/lib64; mount --bind /usr $D/jail/usr'
TP=$(ns_pid top)
NS_PARENT=$TP ns_start mid 'mount -t tmpfs MID $S/top/one'
MP2=$(ns_pid mid)
NS_PARENT=$MP2 ns_start leaf 'mount -t tmpfs LEAF $S/top/one'
LP=$(ns_pid leaf)
# The chroot'd process: in top's namespace, root and cwd in the jail.
nsenter -m -t "$TP" -- chroot "$S/top/jail" sh -c 'cd /work && exec sleep infinity' &
JP=$!
echo "$JP" >>"$NS_TMP/pids"
for _ in $(seq 50); do [[ $(readlink /proc/$JP/cwd 2>/dev/null) == */work ]] && break; sleep 0.1; done
# A tree of processes: top, with mid and leaf as its children (not descendants
# in the process tree here: they are started by the test), so --tree is
# checked on a subreaper-free chain: a shell that forks the three.
TREE_IMG=$NS_TMP/tree.img
sh -c "nsenter -m -t $LP -- sleep infinity & nsenter -m -t $MP2 -- sleep infinity & nsenter -m -t $TP -- sleep infinity & wait" &
TREEP=$!
echo "$TREEP" >>"$NS_TMP/pids"
for _ in $(seq 50); do [[ $(pgrep -c -P "$TREEP") == 3 ]] && break; sleep 0.1; done
pgrep -P "$TREEP" >>"$NS_TMP/pids"
check_exit 0 "tree: dump --tree PID" "$MNTCR" dump --tree "$TREEP" -o "$TREE_IMG"
check "tree: three namespaces besides the shell's own" sh -c \
	"\"$MNTCR\" show -i \"$TREE_IMG\" | grep -c '^namespace ' | grep -qx 4"
check "tree: four processes recorded" sh -c \
	"tar xOf \"$TREE_IMG\" manifest.json 2>/dev/null | grep -c '\"pid\": ' | grep -qx 5"
check_exit 0 "tree: restore of four namespaces" "$MNTCR" restore -i "$TREE_IMG" --persist "$NS_TMP/tree.d"
is "$(wc -l <"$OUT")" 4 "tree: four namespaces bound"
list=$NS_TMP/tree.d/ns0,$NS_TMP/tree.d/ns1,$NS_TMP/tree.d/ns2,$NS_TMP/tree.d/ns3
check_exit 0 "tree: diff image ns:restored finds no difference" "$MNTCR" diff "$TREE_IMG" "ns:$list"
for f in "$NS_TMP"/tree.d/ns*; do umount "$f"; done
pkill -P "$TREEP" 2>/dev/null; kill "$TREEP" 2>/dev/null; wait "$TREEP" 2>/dev/null

multi_check threens "$TP" "$MP2" "$LP" "$JP"
is "$(wc -l <<<"$MAP")" 3 "threens: four processes, three namespaces"
is "$(in_ns 0 "grep -c ' $S/top/one ' /proc/self/mountinfo"; in_ns 1 "grep -c ' $S/top/one ' /proc/self/mountinfo"; in_ns 2 "grep -c ' $S/top/one ' /proc/self/mountinfo")" "1
2
3" "threens: each nested namespace stacks one more tmpfs on one"
check "threens: the chroot'd process's root and cwd are recorded" sh -c \
	"tar xOf \"$IMG\" manifest.json | grep -A3 '\"pid\": $JP' | grep -q '\"root\": \"$S/top/jail\"'"
check "threens: ... its cwd" sh -c \
	"tar xOf \"$IMG\" manifest.json | grep -A4 '\"pid\": $JP' | grep -q '\"cwd\": \"$S/top/jail/work\"'"
# A dump of the chroot'd process alone: its mountinfo shows only the mounts in its jail, so
# statmount reads them all (after the mountinfo, tried first, has too few), and the image is
# the one of a process of the same namespace.
MNTCR_DEBUG=1 "$MNTCR" dump --pid "$JP" -o "$NS_TMP/jail.img" 2>"$NS_TMP/jail.err"
is "$?" 0 "chroot: dump --pid CHROOTED"
check "chroot: ... reads its mounts with statmount" grep -q "mountinfo and statmount differ" "$NS_TMP/jail.err"
check_exit 0 "chroot: dump --pid TOP" "$MNTCR" dump --pid "$TP" -o "$NS_TMP/top.img"
is "$("$MNTCR" show -i "$NS_TMP/jail.img" --mountinfo 2>&1)" "$("$MNTCR" show -i "$NS_TMP/top.img" --mountinfo 2>&1)" \
	"chroot: its mount table is its namespace's, as read through an unconfined process"
# -- CMD runs in the first process's root and cwd: dump the chroot'd one first.
check_exit 0 "chroot: dump --pid CHROOTED --pid TOP" "$MNTCR" dump --pid "$JP" --pid "$TP" -o "$NS_TMP/chroot.img"
is "$("$MNTCR" restore -i "$NS_TMP/chroot.img" -- sh -c 'cat /marker; pwd' 2>&1)" "in-jail
/work" "chroot: restore -- CMD runs in the chroot'd process's root and cwd"
check "chroot: one namespace for the two processes" sh -c \
	"\"$MNTCR\" show -i \"$NS_TMP/chroot.img\" | grep -q \"process $JP: root $S/top/jail, cwd $S/top/jail/work\""
kill "$JP" 2>/dev/null
multi_done leaf mid top

# ------------------------------------------------------------------------------------------------
# Bad input.
ns_start bad 'true'
BP=$(ns_pid bad)
check_exit 3 "bad: a missing pid among several" "$MNTCR" dump --pid "$BP" --pid 999999999 -o "$NS_TMP/bad.img"
check "bad: ... named" grep -q "999999999" "$ERR"
check "bad: ... and no image left" test ! -e "$NS_TMP/bad.img"
check_exit 3 "bad: --tree of a missing pid" "$MNTCR" dump --tree 999999999 -o "$NS_TMP/bad.img"
check_exit 2 "bad: an empty pid in a list" "$MNTCR" diff "pid:$BP," "pid:$BP"
check_exit 2 "bad: a namespace file that is not one" "$MNTCR" diff "ns:/etc/hostname,/etc/hostname" "pid:$BP"
# --persist DIR where one namespace cannot be bound (DIR/ns1 is a directory): none is.
mkdir -p "$NS_TMP/half.d/ns1"
check_exit 1 "bad: --persist DIR with ns1 unbindable fails" \
	"$MNTCR" restore -i "$NS_TMP/unshared.img" --persist "$NS_TMP/half.d"
check "bad: ... naming the file" grep -q "half.d/ns1" "$ERR"
check "bad: ... and ns0 is not left bound" sh -c "! grep -q ' $NS_TMP/half.d/ns0 ' /proc/self/mountinfo"
ns_stop bad

no_process_left
