"""Shell completion: the bash, zsh and fish scripts, and the answers dialogctl gives them.

Each script runs ``_DIALOGCTL_COMPLETE=<shell> dialogctl WORD...`` with the
words before the cursor and then the word being completed (possibly empty)
as plain arguments, so no quoting is lost on the way. dialogctl answers before
it parses anything (see ``DialogGroup._main_shell_completion``), through
Click's own completion machinery in Typer: the same parser that would run the
command decides what is being completed, so commands, options, choices and
the journal's ids (completers in :mod:`dialogctl.cli.options`) always match
the installed version. Completing ids reads folder names only and never
writes anything.

An answer is one candidate per line, ``type<TAB>value<TAB>help``; a type of
``file`` or ``dir`` asks the shell to complete a path itself.
"""

from __future__ import annotations

import sys
from typing import Any

from typer._click.shell_completion import CompletionItem, ShellComplete

from .state import COMPLETE_VAR

SHELLS = ("bash", "zsh", "fish")
GENERATED = "generated from the Typer app by 'python -m dialogctl.cli.docs'; do not edit"

BASH = """\
# bash completion for %(prog)s (%(generated)s).
# Install: copy to /usr/share/bash-completion/completions/%(prog)s, or source it from ~/.bashrc.
_%(func)s() {
    local cur prev words cword split
    if declare -F _init_completion >/dev/null; then
        # bash-completion: keep "--opt=value" and "team:alice" as one word
        _init_completion -s -n : || return
    else
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]}
    fi
    local line kind value
    local -a lines found=()
    mapfile -t lines < <(%(var)s=bash "${words[0]}" "${words[@]:1:cword-1}" "${words[cword]}" 2>/dev/null)
    for line in "${lines[@]}"; do
        kind=${line%%%%$'\\t'*} value=${line#*$'\\t'}
        value=${value%%%%$'\\t'*}
        case $kind in
            file | dir)
                if declare -F _filedir >/dev/null; then
                    if [[ $kind == dir ]]; then _filedir -d; else _filedir; fi
                else
                    COMPREPLY=($(compgen -"${kind:0:1}" -- "$cur"))
                fi
                return ;;
            *) printf -v value '%%q' "$value"; found+=("$value") ;;
        esac
    done
    COMPREPLY=("${found[@]}")
    if [[ $cur == *:* ]] && declare -F __ltrim_colon_completions >/dev/null; then
        __ltrim_colon_completions "$cur"
    fi
}
complete -F _%(func)s %(prog)s
"""

ZSH = """\
#compdef %(prog)s
# zsh completion for %(prog)s (%(generated)s).
# Install: copy to a folder in $fpath as _%(prog)s, or source it from ~/.zshrc after compinit.
_%(func)s() {
    local line kind rest value help
    local -a described
    for line in "${(@f)$(%(var)s=zsh "${words[1]}" "${(@)words[2,CURRENT]}" 2>/dev/null)}"; do
        [[ -n $line ]] || continue
        kind=${line%%%%$'\\t'*} rest=${line#*$'\\t'}
        value=${rest%%%%$'\\t'*} help=${rest#*$'\\t'}
        case $kind in
            file) _files; return ;;
            dir) _files -/; return ;;
            *) described+=("${value//:/\\\\:}:$help") ;;
        esac
    done
    (( ${#described} )) && _describe -t values '%(prog)s' described
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _%(func)s "$@"
else
    compdef _%(func)s %(prog)s
fi
"""

FISH = """\
# fish completion for %(prog)s (%(generated)s).
# Install: copy to ~/.config/fish/completions/%(prog)s.fish (or the system's vendor_completions.d).
function __%(func)s_complete
    set -l words (commandline -opc)
    set -l current (commandline -ct)
    for line in (env %(var)s=fish $words $current 2>/dev/null)
        set -l parts (string split -m 2 \\t -- $line)
        switch $parts[1]
            case file
                __fish_complete_path $current
            case dir
                __fish_complete_directories $current
            case '*'
                printf '%%s\\t%%s\\n' $parts[2] $parts[3]
        end
    end
end
complete -c %(prog)s -f -a '(__%(func)s_complete)'
"""

TEMPLATES = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def script(shell: str, prog: str = "dialogctl") -> str:
    """The completion script for ``shell``."""

    return TEMPLATES[shell] % {"prog": prog, "func": prog.replace("-", "_"), "var": COMPLETE_VAR, "generated": GENERATED}


class Answer(ShellComplete):
    """Click's completion resolution, fed with argv instead of shell variables."""

    name = "dialogctl"
    source_template = ""

    def __init__(self, cli: Any, prog_name: str, shell: str, words: list[str]) -> None:
        super().__init__(cli, {}, prog_name, "")
        self.shell = shell
        self.words = words

    def source_vars(self) -> dict[str, Any]:
        return {}

    def get_completion_args(self) -> tuple[list[str], str]:
        # bash and zsh hand over the words as typed, quotes included ('/my journal'); fish unquotes them.
        words = [_unquoted(word) for word in self.words] if self.shell != "fish" else self.words
        return words[:-1], words[-1] if words else ""

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        from typer._click.shell_completion import _resolve_context, _resolve_incomplete
        from typer.models import TyperPath

        ctx = _resolve_context(self.cli, self.ctx_args, self.prog_name, args)
        words = list(args)  # _resolve_incomplete appends "--opt" of a "--opt=value" word
        target, incomplete = _resolve_incomplete(ctx, words, incomplete)
        if words and words[-1] in getattr(target, "opts", ()):
            # An option waiting for its value stops Click's lenient parse before the
            # arguments (USER...) are read; parse the words before it for the completer.
            ctx = _resolve_context(self.cli, self.ctx_args, self.prog_name, words[:-1])
        path = getattr(target, "type", None)
        if isinstance(path, TyperPath):  # Typer offers nothing for paths: the shell completes them
            return [CompletionItem(incomplete, type="file" if path.file_okay else "dir")]
        return target.shell_complete(ctx, incomplete)

    def format_completion(self, item: CompletionItem) -> str:
        help_text = " ".join((item.help or "").split())
        return f"{item.type}\t{item.value}\t{help_text}"

    def complete(self) -> str:
        args, incomplete = self.get_completion_args()
        items = self.get_completions(args, incomplete)
        # "--format=js": bash replaces only what follows the "=" (a word break there);
        # zsh and fish replace the whole word, so their values carry the option back.
        prefix = ""
        if self.shell != "bash" and incomplete.startswith("-") and "=" in incomplete:
            prefix = incomplete.partition("=")[0] + "="
        return "".join(self.format_completion(CompletionItem(prefix + str(i.value), i.type, i.help)) + "\n" for i in items)


def _unquoted(word: str) -> str:
    """A word as the shell will pass it: quotes and backslashes removed (an unfinished quote is fine)."""
    from typer._click.shell_completion import split_arg_string

    parts = split_arg_string(word)
    return parts[0] if len(parts) == 1 else word


def answer(cli: Any, shell: str, prog_name: str, words: list[str]) -> int:
    """Print the completions for ``words`` (the last one is being completed); the exit status."""
    if shell not in SHELLS:
        print(f"dialogctl: completion for {shell!r} is not supported; use one of {', '.join(SHELLS)}", file=sys.stderr)
        return 2
    sys.stdout.write(Answer(cli, prog_name, shell, words).complete())
    return 0
