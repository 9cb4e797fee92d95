# bash completion for mntcr(1)                              -*- shell-script -*-
# SPDX-License-Identifier: LGPL-2.1-or-later

# Pids of running processes.
_mntcr_pids()
{
	local p pids=()

	for p in /proc/[0-9]*; do
		pids+=("${p#/proc/}")
	done
	compgen -W "${pids[*]}" -- "$1"
}

_mntcr_files()
{
	compopt -o filenames 2>/dev/null
	compgen -f -- "$1"
}

_mntcr_dirs()
{
	compopt -o filenames 2>/dev/null
	compgen -d -- "$1"
}

# diff operands: image files or pid:N.
_mntcr_namespaces()
{
	local cur=$1 p

	if [[ $cur == pid:* ]]; then
		for p in $(_mntcr_pids "${cur#pid:}"); do
			echo "pid:$p"
		done
		return
	fi
	compgen -W "pid:" -- "$cur"
	_mntcr_files "$cur"
}

_mntcr()
{
	local cur prev words cword
	local commands="dump restore plan show diff check"
	local verb i

	COMPREPLY=()
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	words=("${COMP_WORDS[@]}")
	cword=$COMP_CWORD

	# "pid:1" splits into "pid" ":" "1" when ':' is in COMP_WORDBREAKS
	if declare -F _get_comp_words_by_ref >/dev/null; then
		_get_comp_words_by_ref -n := cur prev words cword
	fi

	if ((cword == 1)); then
		mapfile -t COMPREPLY < <(compgen -W "$commands --help --version" -- "$cur")
		return
	fi
	verb=${words[1]}

	# restore: after "--", complete a command and its arguments
	if [[ $verb == restore ]]; then
		for ((i = 2; i < cword; i++)); do
			if [[ ${words[i]} == -- ]]; then
				if declare -F _command_offset >/dev/null; then
					_command_offset $((i + 1))
				else
					mapfile -t COMPREPLY < <(compgen -c -- "$cur")
				fi
				return
			fi
		done
	fi

	# option arguments
	case $verb:$prev in
	dump:-p | dump:--pid | dump:-t | dump:--tree | show:-p | show:--pid)
		mapfile -t COMPREPLY < <(_mntcr_pids "$cur")
		return
		;;
	dump:-o | dump:--output | show:-i | show:--image | restore:-i | restore:--image | \
		plan:-i | plan:--image | restore:-p | restore:--persist)
		mapfile -t COMPREPLY < <(_mntcr_files "$cur")
		return
		;;
	dump:--compress)
		mapfile -t COMPREPLY < <(compgen -W "zstd gzip none" -- "$cur")
		return
		;;
	restore:-r | restore:--root)
		mapfile -t COMPREPLY < <(_mntcr_dirs "$cur")
		return
		;;
	restore:-e | restore:--external)
		# KEY=PATH: complete the path after '='. Where '=' breaks words,
		# readline replaces only the part after it.
		if [[ $cur == *=* ]]; then
			local key=${cur%%=*} path
			compopt -o filenames 2>/dev/null
			while IFS= read -r path; do
				if [[ $COMP_WORDBREAKS == *=* ]]; then
					COMPREPLY+=("$path")
				else
					COMPREPLY+=("$key=$path")
				fi
			done < <(compgen -f -- "${cur#*=}")
		fi
		return
		;;
	esac

	local opts
	case $verb in
	dump) opts="--pid --tree --output --mountinfo --no-content --compress= --help" ;;
	restore) opts="--image --persist --root --external --dry-run --no-content --help --" ;;
	plan) opts="--image --help" ;;
	show) opts="--pid --image --json --mountinfo --all --content --help" ;;
	diff) opts="--quiet --help" ;;
	check) opts="--help" ;;
	*) return ;;
	esac

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		return
	fi
	if [[ $verb == diff ]]; then
		mapfile -t COMPREPLY < <(_mntcr_namespaces "$cur")
		[[ ${COMPREPLY[*]} == pid: ]] && compopt -o nospace 2>/dev/null
		if declare -F __ltrim_colon_completions >/dev/null; then
			__ltrim_colon_completions "$cur"
		fi
		return
	fi
	mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
}

complete -F _mntcr mntcr
