#compdef dialogctl
# zsh completion for dialogctl (generated from the Typer app by 'python -m dialogctl.cli.docs'; do not edit).
# Install: copy to a folder in $fpath as _dialogctl, or source it from ~/.zshrc after compinit.
_dialogctl() {
    local line kind rest value help
    local -a described
    for line in "${(@f)$(_DIALOGCTL_COMPLETE=zsh "${words[1]}" "${(@)words[2,CURRENT]}" 2>/dev/null)}"; do
        [[ -n $line ]] || continue
        kind=${line%%$'\t'*} rest=${line#*$'\t'}
        value=${rest%%$'\t'*} help=${rest#*$'\t'}
        case $kind in
            file) _files; return ;;
            dir) _files -/; return ;;
            *) described+=("${value//:/\\:}:$help") ;;
        esac
    done
    (( ${#described} )) && _describe -t values 'dialogctl' described
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _dialogctl "$@"
else
    compdef _dialogctl dialogctl
fi
