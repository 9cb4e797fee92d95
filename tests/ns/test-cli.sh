#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The command-line frame: mntcr --help, --version, unknown commands, mntcr check.
# shellcheck source=tests/ns/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

verbs=(dump restore plan show diff check)

# --help: usage on stdout, every command listed, exit 0
check_exit 0 "mntcr --help exits 0" "$MNTCR" --help
help=$(<"$OUT")
missing=
for v in "${verbs[@]}"; do
	grep -qE "^  $v " <<<"$help" || missing+=" $v"
done
if [[ -z $missing ]]; then
	ok "--help lists every command"
else
	not_ok "--help lists every command" "missing:$missing" "$help"
fi
is "$(head -n1 <<<"$help")" "Usage: mntcr COMMAND [OPTIONS]" "--help starts with the usage line"
is "$(wc -c <"$ERR")" 0 "--help writes nothing to stderr"
check_exit 0 "mntcr -h exits 0" "$MNTCR" -h
check_exit 0 "mntcr help exits 0" "$MNTCR" help

check_exit 0 "mntcr --version exits 0" "$MNTCR" --version
if grep -qE '^mntcr [0-9]+\.[0-9]+\.[0-9]+$' "$OUT"; then
	ok "--version prints 'mntcr X.Y.Z'"
else
	not_ok "--version prints 'mntcr X.Y.Z'" "$(cat "$OUT")"
fi

# no command, unknown command: usage on stderr, exit 2
check_exit 2 "mntcr without a command exits 2" "$MNTCR"
is "$(wc -c <"$OUT")" 0 "without a command: nothing on stdout"
check "without a command: usage on stderr" grep -q '^Usage: mntcr' "$ERR"

check_exit 2 "an unknown command exits 2" "$MNTCR" frobnicate
is "$(head -n1 "$ERR")" "mntcr: unknown command 'frobnicate'" "an unknown command is named on stderr"
is "$(wc -c <"$OUT")" 0 "an unknown command: nothing on stdout"
check_exit 2 "an unknown option as the command exits 2" "$MNTCR" --frobnicate

# every command has --help (those being written may not have it yet)
for v in "${verbs[@]}"; do
	if cli_has "$v"; then
		check_exit 0 "mntcr $v --help exits 0" "$MNTCR" "$v" --help
		check "mntcr $v --help prints its usage" grep -q "^Usage: mntcr $v" "$OUT"
	else
		skip "mntcr $v --help" "mntcr $v not implemented yet"
		skip "mntcr $v --help prints its usage" "mntcr $v not implemented yet"
	fi
done

# mntcr check: the kernel features, the dump source and the restore engine.
# Each line is "KEY   VALUE", the key possibly with a space in it.
value() {
	awk -v k="$1" '{ v = $NF; key = $0; sub(/[ ]+[^ ]+$/, "", key); if (key == k) print v }' <<<"$out"
}
check_exit 0 "mntcr check exits 0" "$MNTCR" check
out=$(<"$OUT")
is "$(wc -c <"$ERR")" 0 "mntcr check writes nothing to stderr"
for feature in kernel statmount listmount open_tree move_mount "move_mount SET_GROUP" \
	"move_mount BENEATH" mount_setattr fsopen openat2 "dump source" "restore engine"; do
	if [[ $(value "$feature" | wc -l) == 1 ]]; then
		ok "check reports '$feature' once"
	else
		not_ok "check reports '$feature' once" "$out"
	fi
done
is "$(value kernel)" "$(uname -r)" "check reports the running kernel"
for feature in statmount listmount open_tree move_mount "move_mount SET_GROUP" "move_mount BENEATH" \
	mount_setattr fsopen openat2; do
	v=$(value "$feature")
	check "check: '$feature' is yes or no ($v)" test "$v" = yes -o "$v" = no
done
engine=$(value "restore engine")
case $engine in
mount-api | compat | none) ok "check names a restore engine ($engine)" ;;
*) not_ok "check names a restore engine" "got '$engine'" ;;
esac
source=$(value "dump source")
sm=$(value statmount)
lm=$(value listmount)
if [[ $sm == yes && $lm == yes ]]; then want=statmount; else want=mountinfo; fi
is "$source" "$want" "the dump source follows statmount/listmount"
# what check found is what the kernel has (KERNEL-FACTS: all present since 6.8)
if [[ $(uname -r | cut -d. -f1) -ge 7 || ($(uname -r | cut -d. -f1) -eq 6 && $(uname -r | cut -d. -f2) -ge 8) ]]; then
	is "$sm $lm" "yes yes" "statmount and listmount found on Linux >= 6.8"
	is "$engine" "mount-api" "the mount API engine on Linux >= 6.8"
else
	skip "statmount and listmount found on Linux >= 6.8" "kernel $(uname -r)"
	skip "the mount API engine on Linux >= 6.8" "kernel $(uname -r)"
fi
check_exit 2 "mntcr check with an argument exits 2" "$MNTCR" check extra
check_exit 2 "mntcr check with an unknown option exits 2" "$MNTCR" check --bogus
check_exit 0 "mntcr check --help exits 0" "$MNTCR" check --help
