"""What a rule lets a job do on its target, beyond reaching it: SSH commands, SNMP subtrees, HTTP paths.

A rule without a scope key allows any job of its probe, as before. A rule with one allows only what
the scope names; everything is decided on the job as it will act, never on how the instance spelt it:

- ``commands``: exact strings or templates with typed placeholders (``{iface:iface}``,
  ``{n:[0-9]{1,5}}``). Placeholder classes are built from a closed set of safe characters, so no value
  can carry a shell metacharacter, whitespace, a quote or a leading ``-``; there is no raw regex.
- ``oids``: subtrees compared arc by arc (``1.3.6.1.2.1.1`` does not hold ``1.3.6.1.2.1.10``).
- ``methods`` and ``paths``: a path is compared segment by segment after percent-decoding and dot
  segments are resolved; ``/x/**`` allows ``/x`` and everything below it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from urllib.parse import unquote

Oid = tuple[int, ...]

# The only characters a placeholder value may hold: no whitespace, quote, glob, expansion, redirection,
# separator, escape or comment character of any POSIX shell (and no '~', '{', '}' of bash or zsh).
SAFE_CHARS = frozenset(string.ascii_letters + string.digits + "._-+:,/@%=")
MAX_PLACEHOLDER_CHARS = 255
MAX_TEMPLATE_CHARS = 4096

# Named placeholder types: (character set, shortest, longest, must start with '/').
_TYPES: dict[str, tuple[str, int, int]] = {
    "int": (string.digits, 1, 10),
    "word": (string.ascii_letters + string.digits + "._-", 1, 64),
    "iface": (string.ascii_letters + string.digits + "._:@-", 1, 32),
    "host": (string.ascii_letters + string.digits + ".-", 1, 253),
    "addr": (string.hexdigits + ".:", 2, 45),
    "path": (string.ascii_letters + string.digits + "._/+-", 1, 255),
}
PLACEHOLDER_TYPES = tuple(sorted(_TYPES))
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,31}):")
_CLASS = re.compile(r"\[([^\]]{1,128})\]\{([0-9]{1,3})(?:,([0-9]{1,3}))?\}\}")
_SCRIPT = re.compile(r"sha256:[0-9a-f]{64}")


class ScopeSyntaxError(ValueError):
    """A scope entry of the config cannot be used; the message says what to write instead."""


def _char_class(chars: frozenset[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


def _class_chars(body: str) -> frozenset[str]:
    """``a-z0-9.-`` -> its characters (``-`` first or last is literal); no escapes, no negation."""
    out: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if ord(low) > ord(high):
                raise ScopeSyntaxError(f"range {low}-{high} runs backwards")
            out.update(chr(c) for c in range(ord(low), ord(high) + 1))
            i += 3
        else:
            out.add(body[i])
            i += 1
    return frozenset(out)


@dataclass(frozen=True)
class CommandTemplate:
    """One ``commands`` entry, compiled. ``text`` is as the admin wrote it (shown in messages)."""

    text: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> CommandTemplate:
        if not text or len(text) > MAX_TEMPLATE_CHARS:
            raise ScopeSyntaxError(f"a command must be 1..{MAX_TEMPLATE_CHARS} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ScopeSyntaxError("a command may not hold a control character (newline, tab, NUL)")
        if text != text.strip():
            raise ScopeSyntaxError("a command may not start or end with a space")
        parts: list[str] = []
        names: set[str] = set()
        i = 0
        while i < len(text):
            if text.startswith(("{{", "}}"), i):
                parts.append(re.escape(text[i]))
                i += 2
                continue
            if text[i] == "}":
                raise ScopeSyntaxError("a lone '}': write '}}' for a literal brace")
            if text[i] != "{":
                parts.append(re.escape(text[i]))
                i += 1
                continue
            m = _PLACEHOLDER.match(text, i)
            if not m:
                raise ScopeSyntaxError(
                    "'{' starts a placeholder {name:type} (write '{{' for a literal brace); "
                    f"types: {', '.join(PLACEHOLDER_TYPES)} or a class like [a-z0-9.-]{{1,15}}"
                )
            name = m.group(1)
            if name in names:
                raise ScopeSyntaxError(f"placeholder {name!r} appears twice")
            names.add(name)
            i = m.end()
            chars, low, high, i = _placeholder_type(text, i, name)
            bad = sorted(chars - SAFE_CHARS)
            if bad:
                raise ScopeSyntaxError(
                    f"placeholder {name!r} would match {bad[0]!r}; a placeholder may only match letters, "
                    f"digits and {''.join(sorted(SAFE_CHARS - set(string.ascii_letters + string.digits)))}"
                )
            if not 1 <= low <= high <= MAX_PLACEHOLDER_CHARS:
                raise ScopeSyntaxError(
                    f"placeholder {name!r}: lengths must be 1 <= min <= max <= {MAX_PLACEHOLDER_CHARS}"
                )
            # A value never starts with '-': it cannot turn into an option of the command.
            parts.append(f"(?!-){_char_class(chars)}{{{low},{high}}}")
        return cls(text, re.compile("".join(parts)))

    def matches(self, command: str) -> bool:
        return self.pattern.fullmatch(command) is not None


def _placeholder_type(text: str, i: int, name: str) -> tuple[frozenset[str], int, int, int]:
    """After ``{name:``: a named type and ``}``, or ``[class]{m,n}}``. Returns chars, min, max, end."""
    for type_name, (chars, low, high) in _TYPES.items():
        if text.startswith(type_name + "}", i):
            return frozenset(chars), low, high, i + len(type_name) + 1
    m = _CLASS.match(text, i)
    if not m:
        raise ScopeSyntaxError(
            f"placeholder {name!r} needs a type ({', '.join(PLACEHOLDER_TYPES)}) or a class with "
            "bounded length like [a-z0-9.-]{1,15}, then '}'"
        )
    low = int(m.group(2))
    high = int(m.group(3)) if m.group(3) is not None else low
    return _class_chars(m.group(1)), low, high, m.end()


@dataclass(frozen=True)
class CommandScope:
    templates: tuple[CommandTemplate, ...]

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> CommandScope:
        templates = []
        for entry in entries:
            try:
                templates.append(CommandTemplate.parse(entry))
            except ScopeSyntaxError as e:
                raise ScopeSyntaxError(f"{entry[:60]!r}: {e}") from e
            if entry.startswith("sha256:") and not _SCRIPT.match(entry):
                raise ScopeSyntaxError(
                    f"{entry[:60]!r}: a script is named 'sha256:' and 64 lowercase hex digits "
                    "(sha256sum of the script body)"
                )
        return cls(tuple(templates))

    def allows(self, command: str) -> bool:
        return any(t.matches(command) for t in self.templates)


def oid_within(oid: Oid, subtree: Oid) -> bool:
    """Arc by arc: ``1.3.6.1.2.1.10`` is not inside ``1.3.6.1.2.1.1``."""
    return len(oid) >= len(subtree) and oid[: len(subtree)] == subtree


def format_oid(oid: Oid) -> str:
    return ".".join(str(a) for a in oid)


@dataclass(frozen=True)
class PathScope:
    """``paths``: exact normalised paths, or ``/x/**`` for ``/x`` and everything below it."""

    exact: frozenset[tuple[str, ...]]
    prefixes: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> PathScope:
        exact: set[tuple[str, ...]] = set()
        prefixes: list[tuple[str, ...]] = []
        for entry in entries:
            prefix = entry.endswith("/**")
            body = entry[:-3] if prefix else entry
            if not entry.startswith("/") or "*" in body or "?" in body or "#" in body:
                raise ScopeSyntaxError(
                    f"{entry[:60]!r}: a path starts with '/', holds no query, and may end in '/**' "
                    "to allow everything below it"
                )
            try:
                segments = normalise_path(body or "/")
            except ScopeSyntaxError as e:
                raise ScopeSyntaxError(f"{entry[:60]!r}: {e}") from e
            (prefixes.append(segments) if prefix else exact.add(segments))
        return cls(frozenset(exact), tuple(prefixes))

    def allows(self, segments: tuple[str, ...]) -> bool:
        if segments in self.exact:
            return True
        return any(segments[: len(p)] == p for p in self.prefixes)


def normalise_path(path: str) -> tuple[str, ...]:
    """A URL path as its decoded segments with ``.`` and ``..`` resolved (RFC 3986 5.2.4).

    Refused, since servers disagree on what they mean: an encoded ``/`` or ``\\``, a NUL, a segment that
    still decodes after one decoding (``%252e``), ``..`` above the root, and a dot segment with
    parameters (``..;x``, which some servlet containers resolve as ``..``).
    """
    if not path.startswith("/"):
        raise ScopeSyntaxError("the path is not absolute")
    out: list[str] = []
    raw_segments = path[1:].split("/")
    for n, raw in enumerate(raw_segments):
        seg = unquote(raw, errors="strict")
        if "/" in seg or "\\" in seg or "\x00" in seg or "\\" in raw:
            raise ScopeSyntaxError("the path holds an encoded '/', a '\\' or a NUL")
        if "%" in seg and unquote(seg) != seg:
            raise ScopeSyntaxError("the path is percent-encoded twice")
        if seg.split(";", 1)[0] in (".", "..") and ";" in seg:
            raise ScopeSyntaxError("the path has a dot segment with parameters")
        last = n == len(raw_segments) - 1
        if seg == ".":
            if last:
                out.append("")
            continue
        if seg == "..":
            if not out:
                raise ScopeSyntaxError("the path climbs above the root")
            out.pop()
            if last:
                out.append("")
            continue
        out.append(seg)
    # "/a/" and "/a" are different resources to a server; "/" is the root alone.
    return tuple(out) if out != [""] else ()


@dataclass(frozen=True)
class Ask:
    """What one job asks to do on its target beyond connecting, for the rules that carry a scope.

    None means the job asks nothing of that kind (a check outside a job, or another probe): a rule
    whose scope needs it then refuses, so a forgotten ask fails closed.
    """

    command: str | None = None  # SSH: as it runs, ${var} values in place; a script as sha256:HEX ARGS
    oids: tuple[Oid, ...] | None = None  # SNMP: every OID the job reads
    method: str | None = None  # HTTP
    path: str | None = None  # HTTP: the raw path of the URL, before normalising


@dataclass(frozen=True)
class Scopes:
    """The optional scopes of one rule; a None field allows any job of that kind."""

    commands: CommandScope | None = None
    oids: tuple[Oid, ...] | None = None
    methods: frozenset[str] | None = None
    paths: PathScope | None = None

    def refusal(self, probe: str, ask: Ask) -> str | None:
        """Why ``ask`` is outside these scopes for ``probe``, or None when it is inside."""
        if probe == "ssh" and self.commands is not None:
            if ask.command is None:
                return "it allows only listed commands and no command was given"
            if not self.commands.allows(ask.command):
                return f"command {_show(ask.command)} is not in its 'commands'"
        if probe == "snmp" and self.oids is not None:
            if ask.oids is None:
                return "it allows only listed OID subtrees and no OID was given"
            for oid in ask.oids:
                if not any(oid_within(oid, s) for s in self.oids):
                    return f"OID {format_oid(oid)[:120]} is outside its 'oids'"
        if probe == "http" and self.methods is not None and (ask.method or "").upper() not in self.methods:
            return f"method {_show(ask.method or '(none)')} is not in its 'methods'"
        if probe == "http" and self.paths is not None:
            if ask.path is None:
                return "it allows only listed paths and no path was given"
            try:
                segments = normalise_path(ask.path or "/")
            except (ScopeSyntaxError, UnicodeDecodeError) as e:
                return f"path {_show(ask.path)} is refused ({e})"
            if not self.paths.allows(segments):
                return f"path {_show('/' + '/'.join(segments))} is not in its 'paths'"
        return None


def _show(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:117] + "...")
