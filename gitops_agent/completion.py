"""Shell completion scripts (bash, zsh, fish), generated from the CLI's own parser.

A leaf of `cli`: commands and flags come from the argparse parser, so a new flag
completes without editing this file; object names (`describe`, `logs`) come at
TAB time from `gitops-agent completion --objects`, i.e. from the last applied
revision. Pure text: must not read the store or talk to Podman itself.
"""

from __future__ import annotations

import argparse
from typing import Any, Iterator

SHELLS = ("bash", "zsh", "fish")
OBJECT_COMMANDS = ("describe", "logs")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(sp: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in sp._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            yield action


def _help(parser: argparse.ArgumentParser, name: str) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help or ""
    return ""


def bash(parser: argparse.ArgumentParser, prog: str) -> str:
    cmds = _commands(parser)
    flags = "\n".join(f'        {c}) opts="{" ".join(o for a in _options(sp) for o in a.option_strings)}";;'
                      for c, sp in cmds.items())
    choices = "\n".join(f'        "{c} {o}") COMPREPLY=($(compgen -W "{_words(a.choices)}" -- "$cur")); return;;'
                        for c, sp in cmds.items() for a in _options(sp) if a.choices for o in a.option_strings)
    func = "_" + prog.replace("-", "_")
    return f'''# {prog} completion for bash: {prog} completion bash > /etc/bash_completion.d/{prog}
{func}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="${{COMP_WORDS[1]}}" opts=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{' '.join(cmds)}" -- "$cur")); return
    fi
    case "$cmd $prev" in
{choices}
    esac
    case "$cmd" in
{flags}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur")); return
    fi
    case "$cmd" in
        {"|".join(OBJECT_COMMANDS)})
            local cfg=() i
            for ((i = 2; i < COMP_CWORD; i++)); do
                case "${{COMP_WORDS[i]}}" in
                    -c|--config|--state-dir|--source) cfg+=("${{COMP_WORDS[i]}}" "${{COMP_WORDS[i+1]}}");;
                esac
            done
            COMPREPLY=($(compgen -W "$({prog} completion --objects "${{cfg[@]}}" 2>/dev/null)" -- "$cur"));;
    esac
}}
complete -o default -F {func} {prog}
'''


def zsh(parser: argparse.ArgumentParser, prog: str) -> str:
    return (f"#compdef {prog}\n# {prog} completion for zsh (through bashcompinit): "
            f"{prog} completion zsh > \"${{fpath[1]}}/_{prog}\"\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash(parser, prog).split("\n", 1)[1])


def fish(parser: argparse.ArgumentParser, prog: str) -> str:
    cmds = _commands(parser)
    lines = [f"# {prog} completion for fish: {prog} completion fish > ~/.config/fish/completions/{prog}.fish",
             f"complete -c {prog} -f"]
    for c in cmds:
        lines.append(f"complete -c {prog} -n __fish_use_subcommand -a {c} -d {_quote(_help(parser, c))}")
    for c, sp in cmds.items():
        for a in _options(sp):
            spec = " ".join(f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}" for o in a.option_strings)
            values = f" -xa {_quote(_words(a.choices))}" if a.choices else (" -r" if a.nargs != 0 else "")
            when = f"'__fish_seen_subcommand_from {c}'"
            lines.append(f"complete -c {prog} -n {when} {spec}{values} -d {_quote(a.help or '')}")
    lines.append(f"complete -c {prog} -n '__fish_seen_subcommand_from {' '.join(OBJECT_COMMANDS)}' "
                 f"-a '({prog} completion --objects 2>/dev/null)'")
    return "\n".join(lines) + "\n"


def _words(choices: Any) -> str:
    return " ".join(map(str, choices))


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def script(shell: str, parser: argparse.ArgumentParser, prog: str = "gitops-agent") -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](parser, prog)
