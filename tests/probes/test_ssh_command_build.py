"""How an SSHCommand job becomes what goes over the wire; every plan is run by a real local /bin/sh.

The tests run the exec line with ``sh -c`` (as sshd hands it to a POSIX login shell) and feed the plan's
stdin, so they prove what a shell does with the substituted text, not what the text looks like.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.errors import PayloadError
from appliance.probes._sshcommand import DEFAULT_PATH, CommandOptions, Plan, build_plan, options_from

HOSTILE = [
    "a;b|c&d",
    "$(touch PWNED)",
    "`touch PWNED`",
    'it\'s "quoted"',
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "\\",
    "x\ntouch PWNED",
    "${HOME}",
]


def sh(plan: Plan, cwd: Path, *, stdin_prefix: str = "", env: dict[str, str] | None = None) -> str:
    """Run ``plan`` as sshd would in a POSIX login shell; return stdout (stderr must be empty)."""
    proc = subprocess.run(
        ["/bin/sh", "-c", plan.exec_line],
        input=(stdin_prefix + plan.stdin).encode(),
        capture_output=True,
        cwd=cwd,
        env=env or {"PATH": "/usr/bin:/bin"},
        timeout=10,
        check=False,
    )
    assert proc.stderr == b"", proc.stderr
    return proc.stdout.decode()


def plan(command: str, *, sudo_password: bool = False, **params: str) -> Plan:
    return build_plan(command, params, options_from(params), sudo_password=sudo_password)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_in_double_quotes_is_data(value: str, tmp_path: Path) -> None:
    assert sh(plan("printf '%s|' \"${x}\"", x=value, set_path="false"), tmp_path) == value + "|"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_in_single_quotes_is_data(value: str, tmp_path: Path) -> None:
    out = sh(plan("printf '%s|' 'pre ${x} post'", x=value, set_path="false"), tmp_path)
    assert out == f"pre {value} post|"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_an_unquoted_value_splits_into_words_but_is_never_parsed(value: str, tmp_path: Path) -> None:
    out = sh(plan("printf '%s|' ${x}", x=value, set_path="false"), tmp_path)
    assert out == "".join(w + "|" for w in value.split())  # field splitting, as the MID's text would
    assert not (tmp_path / "PWNED").exists()


def test_a_value_inside_command_substitution_in_double_quotes_is_data(tmp_path: Path) -> None:
    out = sh(plan("echo \"$(printf '%s' 'a ${x} b')\"", x="'; touch PWNED; '", set_path="false"), tmp_path)
    assert out == "a '; touch PWNED; ' b\n"
    assert not (tmp_path / "PWNED").exists()


def test_a_repeated_variable_and_shell_syntax_that_is_not_a_token(tmp_path: Path) -> None:
    p = plan('echo "${x}-${x}" ${y:-dflt} $HOME', x="v", set_path="false")
    assert sh(p, tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": "/h"}) == "v-v dflt /h\n"


def test_a_missing_variable_is_a_payload_error_naming_it() -> None:
    with pytest.raises(
        PayloadError, match=r"uses \$\{catalina_home\} but the job has no parameter 'catalina_home'"
    ):
        plan("ls ${catalina_home}/bin")


def test_unbalanced_quotes_around_a_token_are_refused() -> None:
    with pytest.raises(PayloadError, match="quotes do not balance"):
        plan("echo 'oops ${x}", x="v")
    assert plan("echo 'no token here", set_path="false").exec_line == "echo 'no token here"


def test_default_path_comes_before_the_login_path(tmp_path: Path) -> None:
    assert sh(plan("echo $PATH"), tmp_path) == f"{DEFAULT_PATH}:/usr/bin:/bin\n"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("/opt/tools/bin:/bin", "/opt/tools/bin:/bin:/usr/bin:/bin"),
        ("prepend:/opt/a", "/opt/a:/usr/bin:/bin"),
        ("append:/opt/a", "/usr/bin:/bin:/opt/a"),
        ("replace:/opt/a:/bin", "/opt/a:/bin"),
    ],
)
def test_path_override(override: str, expected: str, tmp_path: Path) -> None:
    assert sh(plan("echo $PATH", path_override=override), tmp_path) == expected + "\n"


def test_set_path_false_leaves_the_login_path(tmp_path: Path) -> None:
    assert sh(plan("echo $PATH", set_path="false"), tmp_path) == "/usr/bin:/bin\n"


@pytest.mark.parametrize(
    "bad", ["/bin;touch PWNED", "relative/bin", "/bin:$(id)", "/a b", "/bin:`id`", "replace:"]
)
def test_a_path_override_with_shell_characters_is_refused(bad: str) -> None:
    with pytest.raises(PayloadError, match="path_override"):
        plan("true", path_override=bad)


def test_a_flag_that_is_not_true_or_false_is_refused() -> None:
    with pytest.raises(PayloadError, match="'must_sudo' must be true or false"):
        plan("true", must_sudo="yes")


def test_a_script_goes_on_stdin_with_its_arguments(tmp_path: Path) -> None:
    script = '#!/bin/sh\necho "args:$#:$1:$2"\ncat\necho "after cat"\necho "$PATH" | cut -d: -f1\n'
    p = plan("${File:probe.sh} -v ${dir}", **{"probe.sh": script, "dir": "/a b;c"})
    assert p.exec_line == "__midbox_v1='/a b;c'; /bin/sh -s -- -v ${__midbox_v1}"  # the #! shell
    # cat reads /dev/null, not the rest of the script; the script runs to its end.
    assert sh(p, tmp_path) == "args:3:-v:/a\nafter cat\n/usr/sbin\n"


def test_a_script_asking_for_bash_runs_in_bash(tmp_path: Path) -> None:
    p = plan("${File:b.sh}", **{"b.sh": '#!/usr/bin/env bash\necho "${BASH_VERSION:+bash}"\n'})
    assert p.exec_line.startswith("bash -s --")
    assert sh(p, tmp_path) == "bash\n"


def test_a_script_for_another_interpreter_is_refused() -> None:
    with pytest.raises(PayloadError, match="asks for '/usr/bin/python3'"):
        plan("${File:p.sh}", **{"p.sh": "#!/usr/bin/python3\nprint(1)\n"})


def test_a_missing_script_is_a_payload_error_naming_it() -> None:
    with pytest.raises(PayloadError, match=r"includes \$\{File:findcat.sh\} but the job has no parameter"):
        plan("${File:findcat.sh}")


@pytest.mark.parametrize(
    "command", ["echo x; ${File:a.sh}", "${File:a.sh} ${File:a.sh}", "${x} ${File:a.sh}"]
)
def test_a_script_include_must_start_the_command_once(command: str) -> None:
    with pytest.raises(PayloadError, match="must start the command and appear once"):
        plan(command, x="v", **{"a.sh": "true"})


def test_sudo_with_a_key_credential_uses_sudo_n() -> None:
    p = plan("id -u", must_sudo="true", set_path="false")
    assert p.exec_line == "sudo -n sh -c 'id -u'" and not p.password_first and p.stdin == ""
    s = plan("${File:a.sh} x", must_sudo="true", set_path="false", **{"a.sh": "id -u"})
    assert s.exec_line == "sudo -n sh -s -- x" and not s.password_first


def test_sudo_with_a_password_puts_the_password_on_stdin_never_in_argv() -> None:
    p = plan("id -u", must_sudo="true", set_path="false", sudo_password=True)
    assert p.exec_line == "sudo -S -p '' sh -c 'exec </dev/null; id -u'" and p.password_first


FAKE_SUDO_NOPASSWD = 'sudo() { while [ "${1#-}" != "$1" ]; do [ "$1" = -p ] && shift; shift; done; "$@"; }; '
FAKE_SUDO_READS_PW = (
    'sudo() { IFS= read -r pw; [ "$pw" = S3CRET ] || exit 1; '
    'while [ "${1#-}" != "$1" ]; do [ "$1" = -p ] && shift; shift; done; "$@"; }; '
)


@pytest.mark.parametrize("fake", [FAKE_SUDO_NOPASSWD, FAKE_SUDO_READS_PW], ids=["nopasswd", "password-read"])
def test_the_command_never_sees_the_sudo_password(fake: str, tmp_path: Path) -> None:
    # sudo is not installed here and the fixture user may not use it, so a shell function stands in for
    # sudo's two stdin behaviours: it reads the password line (a password is required) or it does not
    # (NOPASSWD). In both, what the command or script reads from stdin must not hold the password.
    one = plan("cat; echo done", must_sudo="true", set_path="false", sudo_password=True)
    assert (
        sh(Plan(one.command, fake + one.exec_line, one.stdin), tmp_path, stdin_prefix="S3CRET\n") == "done\n"
    )
    script = plan(
        "${File:s.sh} a1", must_sudo="true", sudo_password=True, **{"s.sh": 'cat; echo "script $1"\n'}
    )
    assert script.password_first and script.stdin.startswith("midbox-")
    out = sh(Plan(script.command, fake + script.exec_line, script.stdin), tmp_path, stdin_prefix="S3CRET\n")
    assert out == "script a1\n"


def test_unsupported_shells_send_the_command_as_written() -> None:
    p = plan("show version ${v}", allow_unsupported_shells="true", v="brief")
    assert p.exec_line == "show version brief" and p.stdin == ""
    with pytest.raises(PayloadError, match="line break"):
        plan("show ${v}", allow_unsupported_shells="true", v="x\nreload")
    with pytest.raises(PayloadError, match="needs a shell"):
        plan("${File:a.sh}", allow_unsupported_shells="true", **{"a.sh": "true"})
    with pytest.raises(PayloadError, match="must_sudo needs a shell"):
        plan("show version", allow_unsupported_shells="true", must_sudo="true")


def test_options_defaults() -> None:
    assert options_from({}) == CommandOptions()
