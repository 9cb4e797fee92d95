#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Filesystem content: the files of the tmpfs and ramfs filesystems a
# namespace owns go into the image and come back in the restored namespace,
# hidden ones included. Each topology lists its trees with $MNTCR_TREESUM
# (path, type, mode, owner, size, blocks, times in ns, link target, rdev,
# hard link groups, attributes, data digest) before the dump, and the lists
# are compared with those of the restored namespace, and of the original
# after the dump (the dump must change nothing, not even an atime).
# The topologies are single-quoted: $D, $S and $T expand where they run.
# shellcheck disable=SC2016
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T=${MNTCR_TREESUM:-$(dirname "$MNTCR")/../tests/mntcr-treesum}
export T
[[ -x $T ]] || skip_all "no mntcr-treesum at $T (set MNTCR_TREESUM)"

# treesum NAME DIR: the listing of DIR in NAME's namespace (nothing is mounted or changed there).
treesum() {
	nsenter -t "$(ns_pid "$1")" -m "$T" "$2"
}

# same_tree NAME LABEL DIR: DIR in the restored namespace lists as $NS_TMP/NAME.LABEL did.
same_tree() {
	local got
	got=$(restored_sh "$T $3")
	is "$got" "$(cat "$NS_TMP/$1.$2")" "$1: $2 comes back with all its metadata"
}

# untouched NAME LABEL DIR: the dump changed nothing in the original (times included).
untouched() {
	is "$(treesum "$1" "$3")" "$(cat "$NS_TMP/$1.$2")" "$1: the dump leaves $2 untouched"
}

# ------------------------------------------------------------------------------------------------
# Every kind of file, and every piece of metadata.

ns_start kinds '
	mount -t tmpfs -o size=64m,mode=0751,uid=7,gid=8 kinds $D; cd $D
	echo hello >reg; chown 1234:5678 reg; chmod 0640 reg
	printf x >suid; chmod 4755 suid; printf y >sgid; chown 0:100 sgid; chmod 2711 sgid
	mkdir sticky; chmod 1777 sticky; mkdir -p setgid-dir; chmod 2775 setgid-dir
	mkdir -p d/e/f; echo deep >d/e/f/file; chmod 0700 d/e
	ln -s reg symrel; ln -s /nonexistent/abs symabs; ln -s ../.. d/e/up
	chown -h 42:43 symrel
	ln reg hard1; ln reg d/hard2; echo two >pair; ln pair pair2
	mkfifo -m 0620 fifo; mknod -m 0600 chr c 1 3; mknod -m 0640 blk b 7 0
	$T --socket $D/sock; chmod 0700 sock
	$T --socket $D/d/sock2; ln d/sock2 sockhard
	: >empty; printf "\0\0\0" >zeros
	$T --setxattr reg user.color 626c7565
	$T --setxattr reg trusted.secret 00ff00
	$T --setxattr d user.dirattr 78
	$T --setxattr symrel trusted.onlink 6c
	mkdir emptyx; $T --setxattr emptyx user.mark 6d; $T --setxattr emptyx trusted.t 01
	setcap cap_net_raw,cap_net_bind_service+ep suid
	mkdir "with space"; echo s >"with space/f i"; n=$(printf "bad\377\376name"); printf xy >"$n"
	touch -h -d "2001-02-03 04:05:06.123456789" symrel symabs d/e/up
	touch -a -d "2002-03-04 05:06:07.000000001" reg suid sgid fifo chr blk sock
	touch -m -d "2003-04-05 06:07:08.999999999" reg suid sgid fifo chr blk sock
	touch -d "1999-12-31 23:59:59.5" d/e/f d/e d sticky setgid-dir "with space" emptyx
	touch -d "2010-01-01 00:00:00.25" .
	$T $D >$NS_TMP/kinds.before'
mntcr_dump "$(ns_pid kinds)" "$NS_TMP/kinds.probe"
check "kinds: dump" test "$MNTCR_RC" = 0
untouched kinds before "$(ns_dir kinds)"
restore_check kinds
same_tree kinds before "$S/kinds"
is "$(restored_sh "stat -c '%F %a %h' $S/kinds/sock $S/kinds/sockhard")" "socket 700 1
socket 755 2" "kinds: unix sockets come back as sockets, a hard link to one too"
is "$(restored_sh "getcap $S/kinds/suid | sed 's/.* //'")" "$(nsenter -t "$(ns_pid kinds)" -m getcap "$S/kinds/suid" | sed 's/.* //')" \
	"kinds: the file capability comes back"
out=$(mntcr_show --image "$NS_TMP/kinds.img" --content)
check "kinds: show --content lists the superblock" grep -Eq "tmpfs +kinds +[0-9]+ +[0-9]+ /$" <<<"$out"
done_with kinds

# ------------------------------------------------------------------------------------------------
# Empty directories, which the dump knows from their size on tmpfs and does not open: the
# root of M, with an attribute; M's mountpoint in E beneath it; a directory emptied again.

ns_start empties '
	mount -t tmpfs -o mode=0705,uid=3 E $D; $T --setxattr $D user.rootmark 72
	mkdir -p $D/s/mp $D/gone; echo x >$D/gone/f; rm $D/gone/f; mount -t tmpfs -o mode=0700 M $D/s/mp
	$T --setxattr $D/s/mp trusted.onroot 01
	touch -d "2004-05-06 07:08:09.1" $D/s $D/gone $D
	$T $D >$NS_TMP/empties.before; $T $D/s/mp >$NS_TMP/empties.mp'
mntcr_dump "$(ns_pid empties)" "$NS_TMP/empties.probe"
check "empties: dump" test "$MNTCR_RC" = 0
untouched empties before "$(ns_dir empties)"
restore_check empties
same_tree empties before "$S/empties"
same_tree empties mp "$S/empties/s/mp"
check "empties: the listing shows the attribute of M's root" grep -q "onroot" "$NS_TMP/empties.mp"
done_with empties

# ------------------------------------------------------------------------------------------------
# Hidden content (KERNEL-FACTS §2(a)): L at a, a file in L under B's mount
# point, B at a/b, then T over a. L is the lower layer of a stack, B lies
# below it: neither is reachable by path, both come back.

ns_start stack '
	mkdir -p $D/a; mount -t tmpfs L $D/a
	mkdir -p $D/a/b; echo under_B_in_L >$D/a/b/under_B_in_L; echo L >$D/a/L_file
	$T $D/a >$NS_TMP/stack.L
	mount -t tmpfs B $D/a/b; echo B >$D/a/b/B_file
	$T $D/a/b >$NS_TMP/stack.B
	mount -t tmpfs T $D/a; echo T >$D/a/T_file
	$T $D/a >$NS_TMP/stack.T'
mntcr_dump "$(ns_pid stack)" "$NS_TMP/stack.probe"
check "stack: dump" test "$MNTCR_RC" = 0
is "$(ns_mountinfo stack | grep -c " $S/stack/a")" "3" "stack: the target still has its 3 mounts"
restore_check stack
same_tree stack T "$S/stack/a"
is "$(restored_sh "umount $S/stack/a && $T $S/stack/a")" "$(cat "$NS_TMP/stack.L")" \
	"stack: the lower layer's files, those under B's mount point included"
is "$(restored_sh "umount $S/stack/a && $T $S/stack/a/b")" "$(cat "$NS_TMP/stack.B")" \
	"stack: the files of B, which lies below the lower layer"
done_with stack

# A stack of four layers, its lowest first in the image, and two over-mounts
# beside it: every hidden root is uncovered in one private copy of the
# namespace (a copy costs as much as the namespace has mounts).
ns_start layers '
	mkdir -p $D/s $D/o1/in $D/o2
	for i in 1 2 3 4; do mount -t tmpfs L$i $D/s; echo $i >$D/s/f$i; $T $D/s >$NS_TMP/layers.L$i; done
	for o in o1 o2; do
		mount -t tmpfs $o $D/$o; echo low >$D/$o/low; $T $D/$o >$NS_TMP/layers.$o
		mount -t tmpfs $o-top $D/$o
	done'
MNTCR_DEBUG=1 mntcr_dump "$(ns_pid layers)" "$NS_TMP/layers.probe"
check "layers: dump" test "$MNTCR_RC" = 0
if [[ -n ${MNTCR_VG_LOGS:-} ]]; then
	skip "layers: one private copy" "valgrind knows no open_tree: the bind fallback takes more"
else
	is "$(grep -c "A private copy of mount namespace" "$MNTCR_ERR")" "1" \
		"layers: five hidden roots, one private copy"
fi
restore_check layers
for i in 3 2 1; do
	is "$(restored_sh "for k in \$(seq $i 3); do umount $S/layers/s; done; $T $S/layers/s")" \
		"$(cat "$NS_TMP/layers.L$i")" "layers: layer $i of the stack comes back"
done
same_tree layers L4 "$S/layers/s"
for o in o1 o2; do
	is "$(restored_sh "umount $S/layers/$o && $T $S/layers/$o")" "$(cat "$NS_TMP/layers.$o")" \
		"layers: the mount under $o's over-mount"
done
done_with layers

# Few fds: 300 tmpfs, each with a file, restored with RLIMIT_NOFILE 64 and
# no CAP_SYS_RESOURCE. The content comes in the image's order, long before
# the mounts are attached; each template is parked in a detached tmpfs
# after its content instead of holding an fd until then.
ns_start manyfs '
	for i in $(seq 300); do mkdir -p $D/m$i; mount -t tmpfs fs$i $D/m$i; echo $i >$D/m$i/f; done
	$T $D >$NS_TMP/manyfs.before'
mntcr_dump "$(ns_pid manyfs)" "$NS_TMP/manyfs.img"
check "manyfs: dump" test "$MNTCR_RC" = 0
NSF=$NS_TMP/manyfs.ns
: >"$NSF"
if [[ ${MNTCR_ENGINE:-} == compat ]]; then
	skip "manyfs: restore with 64 fds" "the compat engine holds an fd per mount"
else
	check_exit 0 "manyfs: restore of 300 tmpfs with content, with at most 64 fds" \
		prlimit --nofile=64:64 setpriv --bounding-set -sys_resource \
		"$MNTCR" restore "${ENGINE_ARGS[@]}" --image "$NS_TMP/manyfs.img" --persist "$NSF"
	check_exit 0 "manyfs: diff image ns:restored finds no difference" \
		"$MNTCR" diff "$NS_TMP/manyfs.img" "ns:$NSF"
	is "$(restored_sh "cat $S/manyfs/m1/f $S/manyfs/m150/f $S/manyfs/m300/f" | paste -sd' ')" "1 150 300" \
		"manyfs: the files are there"
fi
RPID=
done_with manyfs

# A chain of 150 nested tmpfs, a file in each, and a branch of 3 beside it at depth 100: each
# root is reached from the nearest ancestor reached before it (more than the 64 kept), and
# the branch's walks start from the chain's depth 99.
ns_start chain '
	p=$D
	for i in $(seq 150); do
		mkdir -p $p/c; mount -t tmpfs c$i $p/c; p=$p/c; echo $i >$p/f
		if [ $i = 99 ]; then q=$p; fi
	done
	for k in 1 2 3; do mkdir -p $q/b$k; mount -t tmpfs b$k $q/b$k; echo b$k >$q/b$k/f; done
	$T $D >$NS_TMP/chain.all'
restore_check chain
same_tree chain all "$S/chain"
done_with chain

# A sibling mounted on a shorter path covers X: X's path does not even exist in it.
ns_start sibling '
	mount -t tmpfs P $D; mkdir -p $D/p/q; mount -t tmpfs X $D/p/q; echo x >$D/p/q/x_file
	$T $D/p/q >$NS_TMP/sibling.X
	echo in_P >$D/p/in_P; $T $D >$NS_TMP/sibling.P
	mount -t tmpfs C $D/p; echo c >$D/p/c_file'
restore_check sibling
is "$(restored_sh "umount $S/sibling/p && $T $S/sibling/p/q")" "$(cat "$NS_TMP/sibling.X")" \
	"sibling: the files of the covered mount"
# (a non-recursive clone of the parent lists its own files, whatever is mounted on them)
is "$(restored_sh "$T $S/sibling")" "$(cat "$NS_TMP/sibling.P")" \
	"sibling: the parent's files under the cover"
done_with sibling

# A file shadowed by a child mount: the clone shows the parent's own directory.
ns_start shadow '
	mount -t tmpfs S $D; mkdir -p $D/m; echo shadowed >$D/m/f; $T $D >$NS_TMP/shadow.S
	mount -t tmpfs child $D/m; echo child >$D/m/g'
restore_check shadow
is "$(restored_sh "umount $S/shadow/m && $T $S/shadow")" "$(cat "$NS_TMP/shadow.S")" \
	"shadow: the file under the child mount"
done_with shadow

# ------------------------------------------------------------------------------------------------
# A tmpfs that only a bind of a subdirectory shows: the content is that subtree.

ns_start subdir '
	mkdir -p $D/tmp $D/view; mount -t tmpfs only $D/tmp
	mkdir -p $D/tmp/sub/deeper; echo s >$D/tmp/sub/f; echo d >$D/tmp/sub/deeper/g
	echo outside >$D/tmp/outside; echo file >$D/tmp/file1; chmod 0604 $D/tmp/file1
	touch $D/fileview; mount --bind $D/tmp/file1 $D/fileview
	mount --bind $D/tmp/sub $D/view; umount $D/tmp
	$T $D/view >$NS_TMP/subdir.view
	stat -c "%a %s %Y" $D/fileview >$NS_TMP/subdir.file'
restore_check subdir
same_tree subdir view "$S/subdir/view"
is "$(restored_sh "stat -c '%a %s %Y' $S/subdir/fileview; cat $S/subdir/fileview")" \
	"$(cat "$NS_TMP/subdir.file")
file" "subdir: a file bind's file comes back"
out=$(mntcr_show --image "$NS_TMP/subdir.img" --content)
check "subdir: the content covers /file1 and /sub only" grep -Eq " 5 +9 /file1 /sub$" <<<"$out"
done_with subdir

# A read-only superblock: its content is written before it is made ro.
ns_start rosb '
	mkdir -p $D/ro; mount -t tmpfs rosb $D/ro; echo frozen >$D/ro/f; mkdir $D/ro/d
	mount -o remount,ro $D/ro; $T $D/ro >$NS_TMP/rosb.ro'
restore_check rosb
same_tree rosb ro "$S/rosb/ro"
check "rosb: still read-only" restored_sh "! touch $S/rosb/ro/x 2>/dev/null"
done_with rosb

# A ramfs, and --no-content.
ns_start ramfs '
	mkdir -p $D/r; mount -t ramfs ram $D/r; echo r >$D/r/f; mkdir $D/r/d; $T $D/r >$NS_TMP/ramfs.r'
restore_check ramfs
same_tree ramfs r "$S/ramfs/r"
mntcr_dump "$(ns_pid ramfs)" "$NS_TMP/ramfs-nc.img" --no-content
: >"$NS_TMP/ramfs-nc.ns"
check "ramfs: restore of a dump --no-content" "$MNTCR" restore --image "$NS_TMP/ramfs-nc.img" \
	--persist "$NS_TMP/ramfs-nc.ns"
is "$(nsenter --mount="$NS_TMP/ramfs-nc.ns" ls -A "$S/ramfs/r")" "" "ramfs: --no-content leaves it empty"
umount "$NS_TMP/ramfs-nc.ns"
: >"$NS_TMP/ramfs-nc.ns"
check "ramfs: restore --no-content of an image with content" "$MNTCR" restore --no-content \
	--image "$NS_TMP/ramfs.img" --persist "$NS_TMP/ramfs-nc.ns"
is "$(nsenter --mount="$NS_TMP/ramfs-nc.ns" ls -A "$S/ramfs/r")" "" "ramfs: restore --no-content leaves it empty"
umount "$NS_TMP/ramfs-nc.ns"
done_with ramfs

# ------------------------------------------------------------------------------------------------
# Many files, a large sparse file, a pipe, compression.

ns_start many '
	mkdir -p $D/m; mount -t tmpfs -o size=256m many $D/m; mkdir $D/m/small
	for i in $(seq 1 10000); do echo "$i" >$D/m/small/$i; done
	truncate -s 200M $D/m/sparse; printf tail | dd of=$D/m/sparse bs=1 seek=104857600 conv=notrunc 2>/dev/null
	$T $D/m >$NS_TMP/many.m'
start=$(date +%s%N)
restore_check many
diag "many: dump, restore and three diffs of 10,000 files and a 200 MiB sparse file in $((($(date +%s%N) - start) / 1000000)) ms"
same_tree many m "$S/many/m"
is "$(restored_sh "stat -c '%s %b' $S/many/m/sparse")" "209715200 8" \
	"many: the 200 MiB sparse file stays sparse (st_blocks)"
mntcr_dump "$(ns_pid many)" "$NS_TMP/many.tar" --compress=none
size=$(stat -c %s "$NS_TMP/many.tar")
diag "many: image $(stat -c %s "$NS_TMP/many.img") bytes (zstd), $size bytes uncompressed"
check "many: the sparse file's holes are not in the image ($size bytes uncompressed)" \
	test "$size" -lt $((64 << 20))
bytes=$(awk '$2 == "file" { sub("size=", "", $5); s += $5 } END { print s }' "$NS_TMP/many.m")
out=$(mntcr_show --image "$NS_TMP/many.img" --content)
check "many: show --content counts 10,003 members and $bytes bytes" \
	grep -Eq " 10003 +$bytes /$" <<<"$out"
done_with many

ns_start piped '
	mkdir -p $D/p; mount -t tmpfs piped $D/p; echo through >$D/p/f; mkdir $D/p/d
	truncate -s 1M $D/p/hole; $T $D/p >$NS_TMP/piped.p'
NSF=$NS_TMP/piped.ns RPID=
: >"$NSF"
"$MNTCR" dump --pid "$(ns_pid piped)" -o - | "$MNTCR" restore --image - --persist "$NSF" 2>"$ERR"
check "piped: dump -o - | restore -i - exits 0" test "${PIPESTATUS[0]}${PIPESTATUS[1]}" = 00
same_tree piped p "$S/piped/p"
umount "$NSF"
for c in gzip none; do
	: >"$NSF"
	"$MNTCR" dump --compress=$c --pid "$(ns_pid piped)" -o - | "$MNTCR" restore --image - --persist "$NSF"
	check "piped: --compress=$c through a pipe" test "${PIPESTATUS[0]}${PIPESTATUS[1]}" = 00
	same_tree piped p "$S/piped/p"
	umount "$NSF"
done
mntcr_dump "$(ns_pid piped)" "$NS_TMP/piped.tar" --compress=none
check "piped: --compress=none is a plain tar with the files" sh -c \
	"tar tf '$NS_TMP/piped.tar' 2>/dev/null | grep -qx 'content/[0-9]*/f'"

# A corrupt image: the restore fails, exit 4, and leaves nothing behind.
before=$(cat /proc/self/mountinfo)
off=$(grep -abo through "$NS_TMP/piped.tar" | head -1 | cut -d: -f1)
cp "$NS_TMP/piped.tar" "$NS_TMP/corrupt.tar"
printf T | dd of="$NS_TMP/corrupt.tar" bs=1 seek="$off" conv=notrunc 2>/dev/null
: >"$NSF"
check_exit 4 "corrupt: a content digest mismatch fails the restore with exit 4" \
	"$MNTCR" restore --image "$NS_TMP/corrupt.tar" --persist "$NSF"
check "corrupt: the message says so" grep -qi "corrupt" "$ERR"
is "$(cat /proc/self/mountinfo)" "$before" "corrupt: no mount left here"
check "corrupt: nothing bound on the namespace file" sh -c "! findmnt '$NSF' >/dev/null"
check_exit 4 "corrupt: show --content refuses it too" "$MNTCR" show --image "$NS_TMP/corrupt.tar" --content
done_with piped

# ------------------------------------------------------------------------------------------------
# Memory: dumping and restoring 1 GiB of content stays within a bounded size.

ns_start big '
	mkdir -p $D/b; mount -t tmpfs -o size=1100m big $D/b
	for i in 1 2 3 4; do dd if=/dev/urandom of=$D/b/r$i bs=1M count=16 2>/dev/null; done
	dd if=/dev/zero of=$D/b/zeros bs=1M count=960 2>/dev/null'
# Under AddressSanitizer the allocator's quarantine and shadow alone are larger.
limit=65536
ldd "$MNTCR" 2>/dev/null | grep -q libasan && limit=$((512 << 10))
if [[ -x /usr/bin/time ]]; then
	start=$(date +%s%N)
	/usr/bin/time -f %M -o "$NS_TMP/dump.rss" "$MNTCR" dump --pid "$(ns_pid big)" -o - >"$NS_TMP/big.img"
	ms=$((($(date +%s%N) - start) / 1000000))
	rss=$(tail -1 "$NS_TMP/dump.rss")
	diag "big: dump of 1 GiB of content: peak RSS $rss KiB, $ms ms, image $(stat -c %s "$NS_TMP/big.img") bytes"
	check "big: peak RSS of the dump under $((limit >> 10)) MiB ($rss KiB)" test "$rss" -lt "$limit"
	NSF=$NS_TMP/big.ns RPID=
	: >"$NSF"
	start=$(date +%s%N)
	/usr/bin/time -f %M -o "$NS_TMP/restore.rss" "$MNTCR" restore --image "$NS_TMP/big.img" --persist "$NSF"
	ms=$((($(date +%s%N) - start) / 1000000))
	rss=$(tail -1 "$NS_TMP/restore.rss")
	diag "big: restore of 1 GiB of content: peak RSS $rss KiB (restorer and its child), $ms ms"
	check "big: peak RSS of the restore under $((limit >> 10)) MiB ($rss KiB)" test "$rss" -lt "$limit"
	is "$(restored_sh "$T $S/big/b")" "$(treesum big "$S/big/b")" "big: 1 GiB comes back"
	rm -f "$NS_TMP/big.img"
	done_with big
else
	skip "big: peak RSS of the dump" "no /usr/bin/time"
	ns_stop big
fi
