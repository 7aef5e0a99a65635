"""The man page (midbox.1) and the bash completion script, generated from the CLI's argparse tree.

    python -m midbox_build.clidoc man|bash [--out FILE]

Lives with the build tools so the frozen binary carries none of it; build/bundle puts both files in
the Linux bundle. Reads argparse's private fields (_actions, _choices_actions): stable since 3.2 and
the only way to walk a parser, and a test walks the same tree, so a change there fails loudly.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The options every leaf gets from appliance.cli._common_parent: documented once, not per leaf.
COMMON_DESTS = frozenset({"state_dir", "json", "verbose", "quiet", "log_format"})
# Words the completion script embeds unquoted; anything else would be a script-injection bug.
_SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]*|-[A-Za-z0-9-]+")

DESCRIPTION = (
    "midbox is a security-hardened, minimal ServiceNow MID Server: one binary that connects out to the "
    "instance over mutual TLS, takes probe jobs from the ECC queue (SSH, SNMP, HTTP, TCP scan) against "
    "targets allowlisted by a config signed by its administrators, keeps credentials in an encrypted "
    "local store and writes a tamper-evident audit log."
)
EXIT_STATUS = (
    ("0", "success; for checks (doctor, config verify, policy explain, status): all good or allowed"),
    ("1", "a check failed or was refused: bad signature, denied target, expired config, broken audit chain"),
    ("2", "usage: the command line or a file the user wrote is not usable as given"),
    ("3", "the instance or the running appliance could not be reached, or the appliance is down"),
)
FILES = (
    ("/etc/midbox/midbox.toml", "the signed config, with midbox.toml.sig beside it"),
    ("/etc/midbox/appliance.key, appliance.crt", "the appliance's mTLS key (encrypted) and certificate"),
    ("/var/lib/midbox", "state: trust root, credential store, pinned host keys, audit log, status file"),
    ("/etc/systemd/system/midbox.service", "the systemd unit (midbox service render-unit)"),
)
SEE_ALSO_DOCS = ("INSTALL.md", "operations.md", "config.md", "topics.md", "servicenow.md")


@dataclass(frozen=True)
class Node:
    """One command or leaf: its words after `midbox`, help line, parser, and child commands."""

    path: tuple[str, ...]
    help: str
    parser: argparse.ArgumentParser
    children: tuple[Node, ...]


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), help: str = "") -> Node:
    sub = _subparsers(parser)
    children: list[Node] = []
    if sub is not None:
        helps = {a.dest: a.help or "" for a in sub._choices_actions}
        for name, child in sub.choices.items():
            children.append(tree(child, (*path, name), helps.get(name, "")))
    return Node(path, help, parser, tuple(children))


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def documented(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS and not isinstance(action, argparse._SubParsersAction)


def own_options(node: Node) -> list[argparse.Action]:
    """Options of this parser minus -h and the common ones (those are in their own section)."""
    return [
        a
        for a in node.parser._actions
        if a.option_strings
        and documented(a)
        and not isinstance(a, argparse._HelpAction)
        and (not node.path or a.dest not in COMMON_DESTS)
    ]


def positionals(node: Node) -> list[argparse.Action]:
    return [a for a in node.parser._actions if not a.option_strings and documented(a)]


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    # argparse's own expansion: %(default)s and friends, and %% for a literal percent.
    return str(parser._get_formatter()._expand_help(action))


def _metavar(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return str(formatter._format_args(action, action.dest.upper()))


# --- troff -------------------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Text safe in a troff line: backslashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _bold_opt(action: argparse.Action) -> str:
    return ", ".join(f"\\fB{_roff(s)}\\fR" for s in action.option_strings)


def _option_entry(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    head = _bold_opt(action)
    if takes_value(action):
        head += f" \\fI{_roff(_metavar(parser, action))}\\fR"
    # An option without help still gets its entry; "\\&" is an empty body line.
    return [".TP", head, _roff(_help_text(parser, action)) or "\\&"]


def _synopsis(node: Node) -> str:
    parts = [f"\\fBmidbox {_roff(' '.join(node.path))}\\fR"]
    if node.children:
        parts.append("\\fISUBCOMMAND\\fR")
    for a in own_options(node):
        word = f"\\fB{_roff(a.option_strings[-1])}\\fR"
        if takes_value(a):
            word += f" \\fI{_roff(_metavar(node.parser, a))}\\fR"
        parts.append(word if a.required else f"[{word}]")
    parts.extend(f"\\fI{_roff(_metavar(node.parser, a))}\\fR" for a in positionals(node))
    return " ".join(parts)


def render_man(parser: argparse.ArgumentParser, version: str) -> str:
    root = tree(parser)
    lines = [
        '.\\" Generated from the argparse tree by build/tools/midbox_build/clidoc.py; do not edit.',
        f'.TH MIDBOX 1 "" "midbox {_roff(version)}" "midbox manual"',
        ".SH NAME",
        "midbox \\- a hardened, minimal ServiceNow MID Server appliance",
        ".SH SYNOPSIS",
        "\\fBmidbox\\fR [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fISUBCOMMAND\\fR] [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        _roff(DESCRIPTION),
        ".PP",
        "Every command and subcommand takes \\fB\\-h\\fR, \\fB\\-\\-help\\fR. The commands:",
    ]
    for child in root.children:
        lines += [".TP", f"\\fB{_roff(child.path[-1])}\\fR", _roff(child.help)]
    lines += [".SH OPTIONS"]
    for a in own_options(root):
        lines += _option_entry(root.parser, a)
    leaves = [n for n in walk(root) if n.path and not n.children]
    if leaves:
        lines += [".SS Common options", "Every command that does not take a subcommand also takes:"]
        first = leaves[0]
        for a in first.parser._actions:
            if a.dest in COMMON_DESTS and documented(a):
                lines += _option_entry(first.parser, a)
    lines += [".SH COMMANDS"]
    for node in walk(root):
        if not node.path:
            continue
        lines += [f'.SS "midbox {_roff(" ".join(node.path))}"', _roff(node.help) or "(no description)"]
        lines += [".PP", _synopsis(node)]
        if node.children:
            lines += [
                ".PP",
                "Subcommands: " + ", ".join(f"\\fB{_roff(c.path[-1])}\\fR" for c in node.children),
            ]
        for a in positionals(node):
            lines += [
                ".TP",
                f"\\fI{_roff(_metavar(node.parser, a))}\\fR",
                _roff(_help_text(node.parser, a)) or "\\&",
            ]
        for a in own_options(node):
            lines += _option_entry(node.parser, a)
    lines += [".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", _roff(meaning)]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBMIDBOX_STATE_DIR\\fR",
        "the state directory when \\fB\\-\\-state\\-dir\\fR is not given (default /var/lib/midbox)",
        ".SH FILES",
    ]
    for path, meaning in FILES:
        lines += [".TP", f"\\fI{_roff(path)}\\fR", _roff(meaning)]
    lines += [
        ".SH SEE ALSO",
        "The reference documents installed with midbox (/usr/local/share/doc/midbox/ by default): "
        + ", ".join(f"\\fI{_roff(d)}\\fR" for d in SEE_ALSO_DOCS)
        + ".",
        ".PP",
        "\\fBsystemctl\\fR(1), \\fBrunuser\\fR(1), \\fBminisign\\fR(1)",
    ]
    return "\n".join(lines) + "\n"


# --- bash completion ---------------------------------------------------------------------------


def _words(items: list[str]) -> str:
    for w in items:
        if not _SAFE_WORD.fullmatch(w):
            raise ValueError(
                f"{w!r} cannot go into the completion script: use plain option and command names"
            )
    return " ".join(items)


def _key(node: Node) -> str:
    return "/" + "/".join(node.path) if node.path else ""


def render_bash(parser: argparse.ArgumentParser) -> str:
    root = tree(parser)
    nodes = [n for n in walk(root) if n.path]
    node_keys = "|".join(_key(n) for n in nodes)
    out = [
        "# bash completion for midbox; generated from its argparse tree by build/bundle. Do not edit.",
        "_midbox() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" key="" w i',
        '    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    # The command path so far: words that name a known (sub)command under the path before them.",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        f'        case "$key/$w" in {node_keys}) key="$key/$w" ;; esac',
        "    done",
        '    local subs="" opts=""',
        '    case "$key" in',
    ]
    for node in walk(root):
        opts = [
            s for a in node.parser._actions if a.option_strings and documented(a) for s in a.option_strings
        ]
        subs = [c.path[-1] for c in node.children]
        out.append(f'        "{_key(node)}") subs="{_words(subs)}"; opts="{_words(opts)}" ;;')
    out += ["    esac", '    case "$key $prev" in']
    for node in walk(root):
        for a in node.parser._actions:
            if a.option_strings and a.choices is not None and documented(a):
                pattern = "|".join(f'"{_key(node)} {s}"' for s in _words(list(a.option_strings)).split())
                choices = _words([str(c) for c in a.choices])
                out.append(f'        {pattern}) COMPREPLY=($(compgen -W "{choices}" -- "$cur")); return 0 ;;')
    out += [
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        '    elif [ -n "$subs" ]; then',
        '        COMPREPLY=($(compgen -W "$subs" -- "$cur"))',
        "    else",
        "        COMPREPLY=()  # an operand or an option's value: file names (complete -o default)",
        "    fi",
        "}",
        "complete -o bashdefault -o default -F _midbox midbox",
    ]
    return "\n".join(out) + "\n"


def generated(parser: argparse.ArgumentParser, version: str) -> dict[str, bytes]:
    """The bundle's two files, by name."""
    return {
        "midbox.1": render_man(parser, version).encode("utf-8"),
        "midbox.bash-completion": render_bash(parser).encode("utf-8"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="clidoc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("kind", choices=("man", "bash"))
    p.add_argument("--out", type=Path, help="write here instead of stdout")
    args = p.parse_args(argv)
    from appliance import __version__
    from appliance.cli import build_parser

    text = render_man(build_parser(), __version__) if args.kind == "man" else render_bash(build_parser())
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
