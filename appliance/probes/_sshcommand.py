"""What an SSHCommand job sends to its target, built as Discovery writes the job (no I/O here).

The instance writes the command in the ECC ``name`` with ``${variable}`` tokens (a job parameter of that
name) and at most one ``${File:x.sh}`` include (a job parameter holding the script). ServiceNow's MID
replaces the tokens as text and copies scripts to the target's disk; midbox does neither:

- A ``${variable}`` value stays data. Inside single quotes it is inserted with each ``'`` written as
  ``'\\''``; anywhere else the token becomes a reference to a shell variable that holds the value
  (``__midbox_v1='...'`` set before the command), so the value may split into words and glob as the
  MID's text substitution would, but is never parsed as shell syntax: no ``;``, ``|``, ``$(...)`` or
  quote in a value can change the command its author wrote.
- A script goes on the channel's stdin to ``sh -s -- ARGS`` (or the shell its ``#!`` line names),
  wrapped in ``{ ...; } </dev/null`` so the whole script is parsed before it runs and a command in it
  that reads stdin cannot eat the rest of the script. Nothing is written on the target.
- PATH is set to ``/usr/sbin:/usr/bin:/bin:/sbin`` followed by the login PATH unless ``set_path=false``;
  ``path_override`` replaces the default list (``append:``, ``prepend:``, ``replace:`` prefixes as the
  ServiceNow SSH client accepts them).
- ``must_sudo`` runs the command under ``sudo -n`` (key credentials) or ``sudo -S -p ''`` with the
  password on stdin (password credentials), never in argv.
- ``allow_unsupported_shells`` sends the command as written (tokens substituted as plain text) for
  devices without a POSIX shell: no PATH, no scripts, no sudo.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.errors import PayloadError

DEFAULT_PATH = "/usr/sbin:/usr/bin:/bin:/sbin"
# Run in the login shell before any command unless allow_unsupported_shells: only a POSIX shell prints
# "midbox-sh:42" (csh cannot expand $((...)); a router's CLI does not know echo).
SHELL_CHECK = 'echo "midbox-sh:$((6*7))"'
SHELL_CHECK_OK = "midbox-sh:42"

MAX_COMMAND_CHARS = 65_536  # the ECC name as the instance wrote it
MAX_EXEC_CHARS = 200_000  # the exec request after substitution (OpenSSH accepts packets up to 256 KiB)
MAX_PATH_CHARS = 4096

_TOKEN = re.compile(r"\$\{(?:File:([A-Za-z0-9_.+@-]{1,255})|([A-Za-z_][A-Za-z0-9_.]{0,127}))\}")
_PATH_DIRS = re.compile(r"/[A-Za-z0-9_.+@%,=/-]*(?::/[A-Za-z0-9_.+@%,=/-]*)*")
_SCRIPT_SHELLS = frozenset({"sh", "bash", "ksh", "dash", "zsh"})
_PATH_MODES = ("append", "prepend", "replace")


@dataclass(frozen=True)
class CommandOptions:
    """The job's SSHCommand parameters that shape the command, parsed and validated."""

    set_path: bool = True
    path_dirs: str = DEFAULT_PATH
    path_mode: str = "prepend"  # the dirs before the login PATH, after it, or instead of it
    must_sudo: bool = False
    raw: bool = False  # allow_unsupported_shells


@dataclass(frozen=True)
class Plan:
    """One command as it goes over the wire. The password, if any, is added by the session."""

    command: str  # as the job wrote it (the result's ``command`` attribute)
    exec_line: str  # the SSH exec request, run by the login shell
    stdin: str  # written to the channel after the password line (if any); then EOF
    password_first: bool = False  # sudo -S: the authenticating password and a newline go first


def options_from(params: Mapping[str, str]) -> CommandOptions:
    set_path = _flag(params, "set_path", True)
    must_sudo = _flag(params, "must_sudo", False)
    raw = _flag(params, "allow_unsupported_shells", False)
    dirs, mode = DEFAULT_PATH, "prepend"
    override = params.get("path_override", "").strip()
    if override:
        mode, sep, rest = override.partition(":")
        if sep and mode in _PATH_MODES:
            override = rest.strip()
        else:
            mode = "prepend"
        if len(override) > MAX_PATH_CHARS or not _PATH_DIRS.fullmatch(override):
            raise PayloadError(
                "parameter 'path_override' must be absolute directories separated by ':' without spaces or "
                "shell characters (optionally after 'append:', 'prepend:' or 'replace:')"
            )
        dirs = override
    if raw and must_sudo:
        raise PayloadError(
            "must_sudo needs a shell; it cannot be combined with allow_unsupported_shells=true"
        )
    return CommandOptions(set_path=set_path, path_dirs=dirs, path_mode=mode, must_sudo=must_sudo, raw=raw)


def _flag(params: Mapping[str, str], name: str, default: bool) -> bool:
    raw = params.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "false"):
        return raw == "true"
    raise PayloadError(f"parameter {name!r} must be true or false, got {raw[:20]!r}")


def build_plan(command: str, params: Mapping[str, str], opts: CommandOptions, *, sudo_password: bool) -> Plan:
    """The plan for ``command``; ``sudo_password`` says the credential is a password (sudo -S)."""
    if not command or len(command) > MAX_COMMAND_CHARS or "\x00" in command:
        raise PayloadError("SSH job needs a command in 'name' (at most 65536 characters, no NUL)")
    tokens, balanced = _scan(command)
    files = [t for t in tokens if t.file]
    if opts.raw:
        if files:
            raise PayloadError(
                f"${{File:{files[0].name}}} needs a shell; "
                "it cannot be used with allow_unsupported_shells=true"
            )
        return _checked(Plan(command, _substitute_text(command, tokens, params), ""))
    if tokens and not balanced:
        # The quoting could not be followed to the end, so the context of a token is not certain.
        raise PayloadError(
            "the command's quotes do not balance, so its ${...} tokens cannot be substituted safely; "
            "fix the quoting in the probe's ECC queue name"
        )
    if files:
        return _checked(_script_plan(command, tokens, params, opts, sudo_password))
    defs, text = _substitute(command, tokens, params)
    body = _path_prefix(opts) + defs + text
    if not opts.must_sudo:
        return _checked(Plan(command, body, ""))
    if not sudo_password:
        return _checked(Plan(command, f"sudo -n sh -c {shlex.quote(body)}", ""))
    # sudo reads the password line from stdin; when it needs none (NOPASSWD) the unread line is thrown
    # away by the privileged shell before the command runs, so the command can never read it.
    return _checked(
        Plan(
            command, f"sudo -S -p '' sh -c {shlex.quote('exec </dev/null; ' + body)}", "", password_first=True
        )
    )


def _script_plan(
    command: str, tokens: list[_Token], params: Mapping[str, str], opts: CommandOptions, sudo_password: bool
) -> Plan:
    head = tokens[0]
    if not head.file or command[: head.start].strip() or sum(t.file for t in tokens) > 1:
        raise PayloadError(
            "a ${File:...} include must start the command and appear once (midbox sends the script on "
            "stdin to sh -s, with the rest of the command as its arguments)"
        )
    body = params.get(head.name)
    if body is None:
        raise PayloadError(
            f"the command includes ${{File:{head.name}}} but the job has no parameter {head.name!r}"
        )
    if "\x00" in body:
        raise PayloadError(f"script {head.name!r} contains a NUL byte")
    shell = _script_shell(body, head.name)
    defs, rest = _substitute(command, tokens[1:], params, start=head.end)
    args = rest if rest[:1] in ("", " ", "\t") else " " + rest
    path = _path_prefix(opts)
    stdin = (path[:-2] + "\n" if path else "") + "{\n" + body + "\n} </dev/null\n"
    if not opts.must_sudo:
        return Plan(command, f"{defs}{shell} -s --{args}", stdin)
    if not sudo_password:
        return Plan(command, f"{defs}sudo -n {shell} -s --{args}", stdin)
    # The privileged shell skips what sudo did not read (the password, under NOPASSWD) up to a marker
    # line, so the password can never reach the script; then it reads the script from stdin.
    mark = "midbox-" + secrets.token_hex(8)
    boot = (
        f'IFS= read -r l; [ "$l" = {mark} ] || IFS= read -r l; [ "$l" = {mark} ] || exit 126; '
        f'exec {shell} -s -- "$@"'
    )
    return Plan(
        command,
        f"{defs}sudo -S -p '' {shell} -c {shlex.quote(boot)} {shell}{args}",
        mark + "\n" + stdin,
        True,
    )


def _checked(plan: Plan) -> Plan:
    if len(plan.exec_line) > MAX_EXEC_CHARS:
        raise PayloadError(f"the command is longer than {MAX_EXEC_CHARS} characters after substitution")
    return plan


def _script_shell(body: str, name: str) -> str:
    """The shell a script's ``#!`` line names (sh, bash, ksh, dash, zsh), else sh."""
    if not body.startswith("#!"):
        return "sh"
    words = body[2:].split("\n", 1)[0].split()
    if words and words[0].endswith("/env") and len(words) > 1:
        words = words[1:]
    if not words:
        return "sh"
    shell = words[0]
    if shell.rsplit("/", 1)[-1] not in _SCRIPT_SHELLS or not re.fullmatch(r"[A-Za-z0-9_./-]+", shell):
        raise PayloadError(
            f"script {name!r} asks for {shell[:60]!r}; midbox runs scripts with sh, bash, ksh, dash or zsh"
        )
    return shell


def _path_prefix(opts: CommandOptions) -> str:
    if not opts.set_path:
        return ""
    dirs = shlex.quote(opts.path_dirs)
    value = {
        "prepend": dirs + '"${PATH:+:$PATH}"',
        "append": '"${PATH:+$PATH:}"' + dirs,
        "replace": dirs,
    }[opts.path_mode]
    return f"export PATH={value}; "


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    name: str
    file: bool
    context: str  # "S" inside single quotes, "D" inside double quotes, "U" elsewhere


def _substitute(
    command: str, tokens: list[_Token], params: Mapping[str, str], start: int = 0
) -> tuple[str, str]:
    """(``__midbox_vN='value'; `` definitions, ``command[start:]`` with its tokens replaced)."""
    names: dict[str, str] = {}
    out: list[str] = []
    pos = start
    for t in tokens:
        value = _value(params, t.name)
        out.append(command[pos : t.start])
        if t.context == "S":
            out.append(value.replace("'", "'\\''"))
        else:
            var = names.setdefault(t.name, f"__midbox_v{len(names) + 1}")
            out.append("${" + var + "}")
        pos = t.end
    out.append(command[pos:])
    defs = "".join(f"{var}={shlex.quote(_value(params, name))}; " for name, var in names.items())
    return defs, "".join(out)


def _substitute_text(command: str, tokens: list[_Token], params: Mapping[str, str]) -> str:
    """Plain text substitution for devices without a shell; a value may not start a second line."""
    out: list[str] = []
    pos = 0
    for t in tokens:
        value = _value(params, t.name)
        if any(c in value for c in "\r\n"):
            raise PayloadError(f"variable {t.name!r} holds a line break; not allowed without a shell")
        out += [command[pos : t.start], value]
        pos = t.end
    return "".join(out) + command[pos:]


def _value(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise PayloadError(f"the command uses ${{{name}}} but the job has no parameter {name!r}")
    if "\x00" in value:
        raise PayloadError(f"parameter {name!r} contains a NUL byte")
    return value


def _scan(command: str) -> tuple[list[_Token], bool]:
    """The ``${...}`` tokens of ``command`` with their quoting context, and whether the quotes balance.

    Follows sh quoting: single and double quotes, backslash, ``$(...)``, backticks and comments.
    Here-documents are not followed (their text is read as if it were commands).
    """
    tokens: list[_Token] = []
    # U unquoted, D double quotes, S single quotes, P $(...) with its open-paren count, B `...`
    stack: list[tuple[str, int]] = [("U", 0)]
    i, n = 0, len(command)
    while i < n:
        kind = stack[-1][0]
        m = _TOKEN.match(command, i)
        if m:
            ctx = "S" if kind == "S" else "D" if kind == "D" else "U"
            tokens.append(_Token(i, m.end(), m.group(1) or m.group(2), m.group(1) is not None, ctx))
            i = m.end()
            continue
        c = command[i]
        if kind == "S":
            if c == "'":
                stack.pop()
            i += 1
            continue
        if c == "\\":
            i += 2
            continue
        if command.startswith("$(", i):
            stack.append(("P", 1))
            i += 2
            continue
        if kind == "D":
            if c == '"':
                stack.pop()
            elif c == "`":
                stack.append(("B", 0))
            i += 1
            continue
        if c == "#" and (i == 0 or command[i - 1] in " \t\n;&|()"):
            nl = command.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c == "'":
            stack.append(("S", 0))
        elif c == '"':
            stack.append(("D", 0))
        elif c == "`":
            if kind == "B":
                stack.pop()
            else:
                stack.append(("B", 0))
        elif kind == "P" and c in "()":
            depth = stack.pop()[1] + (1 if c == "(" else -1)
            if depth:
                stack.append(("P", depth))
        i += 1
    return tokens, len(stack) == 1


# A ${var} value holding one of these is never inside a command scope: the appliance keeps values as data,
# so the text a scope sees and what runs could differ where a value quotes or escapes.
_SCOPE_POISON = frozenset("'\"\\$`") | frozenset(chr(c) for c in range(32))


def scope_command(command: str, params: Mapping[str, str]) -> str:
    """The command as a rule's ``commands`` scope judges it (docs/policy.md), never raising.

    ``${var}`` tokens are replaced by their values as text (what the command means, and exactly what
    runs with allow_unsupported_shells); a ``${File:x}`` include that starts the command becomes
    ``sha256:HEX`` of the script body, so a script is allowed by its content, never by its name.
    A value that could read differently as text than as data makes the result unmatchable (a NUL).
    """
    import hashlib

    tokens, _ = _scan(command)
    out: list[str] = []
    pos = 0
    for n, t in enumerate(tokens):
        value = params.get(t.name)
        if t.file:
            if n or command[: t.start].strip() or value is None:
                return command + "\x00"  # build_plan refuses it with the reason
            out.append("sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest())
            pos = t.end
            continue
        if value is None or any(c in _SCOPE_POISON for c in value):
            return command + "\x00"
        out += [command[pos : t.start], value]
        pos = t.end
    return "".join(out) + command[pos:]
