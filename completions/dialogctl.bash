# bash completion for dialogctl (generated from the Typer app by 'python -m dialogctl.cli.docs'; do not edit).
# Install: copy to /usr/share/bash-completion/completions/dialogctl, or source it from ~/.bashrc.
_dialogctl() {
    local cur prev words cword split
    if declare -F _init_completion >/dev/null; then
        # bash-completion: keep "--opt=value" and "team:alice" as one word
        _init_completion -s -n : || return
    else
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]}
    fi
    local line kind value
    local -a lines found=()
    mapfile -t lines < <(_DIALOGCTL_COMPLETE=bash "${words[0]}" "${words[@]:1:cword-1}" "${words[cword]}" 2>/dev/null)
    for line in "${lines[@]}"; do
        kind=${line%%$'\t'*} value=${line#*$'\t'}
        value=${value%%$'\t'*}
        case $kind in
            file | dir)
                if declare -F _filedir >/dev/null; then
                    if [[ $kind == dir ]]; then _filedir -d; else _filedir; fi
                else
                    COMPREPLY=($(compgen -"${kind:0:1}" -- "$cur"))
                fi
                return ;;
            *) printf -v value '%q' "$value"; found+=("$value") ;;
        esac
    done
    COMPREPLY=("${found[@]}")
    if [[ $cur == *:* ]] && declare -F __ltrim_colon_completions >/dev/null; then
        __ltrim_colon_completions "$cur"
    fi
}
complete -F _dialogctl dialogctl
