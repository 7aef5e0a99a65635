"""Host-key pins at their edges: hostile pin files, hashed names, caps, and pins that must survive others.

Written against the mutants of ``hardening/known_hosts.py`` that survived ``test_known_hosts.py``
(``python -m tests.mutation --only known_hosts``). Every refusal names the file and line, so the
operator can find what to fix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import stat
import struct
from pathlib import Path

import pytest

from hardening.known_hosts import (
    MAX_KEY_BLOB_BYTES,
    MAX_KNOWN_HOSTS_BYTES,
    KnownHosts,
    KnownHostsError,
    Verdict,
    host_pattern,
    parse_key,
    parse_known_hosts,
    parse_public_key_file,
)
from tests.support.known_hosts import b64, key

K = key(fill=b"A")
LINE = f"ssh-ed25519 {b64(K)}"


def hashed(name: str, salt: bytes = b"0123456789abcdef0123") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# pins\n\n@revoked h " + LINE, "known_hosts line 3: markers such as @cert-authority/@revoked"),
        ("h " + LINE + "\nh ssh-ed25519", "known_hosts line 2: expected 'HOST KEYTYPE BASE64'"),
        ("h?x " + LINE, "known_hosts line 1: wildcard host patterns are not supported; pin each host"),
        ("!h " + LINE, "known_hosts line 1: wildcard host patterns"),
        ("h ssh-dss AAAA", "known_hosts line 1: unsupported key type 'ssh-dss'"),
        ("h ssh-ed25519 " + "A" * (MAX_KEY_BLOB_BYTES * 2 + 4), "known_hosts line 1: key too long"),
        ("h ssh-ed25519 " + b64(K)[:8] + "!" + b64(K)[8:], "known_hosts line 1: key is not valid base64"),
        ("h ssh-ed25519 AAAA", "known_hosts line 1: key blob too short"),
        ("h ssh-rsa " + b64(K), "known_hosts line 1: key blob does not hold a ssh-rsa key"),
    ],
    ids=[
        "marker",
        "short-line",
        "wildcard-?",
        "negation-!",
        "key-type",
        "too-long",
        "base64",
        "short-blob",
        "type",
    ],
)
def test_a_pin_file_it_cannot_read_exactly_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(KnownHostsError, match=f"^{message}"):
        parse_known_hosts(text.encode())


def test_the_file_name_is_in_every_refusal_of_a_real_pin_file(tmp_path: Path) -> None:
    (tmp_path / "pins").write_bytes(b"\xff\xfe")
    with pytest.raises(KnownHostsError, match="^pins is not UTF-8$"):
        KnownHosts(tmp_path / "pins").check(["h"], 22, K)
    (tmp_path / "pins").write_text("h ssh-ed25519\n")
    with pytest.raises(KnownHostsError, match="^pins line 1: "):
        KnownHosts(tmp_path / "pins").check(["h"], 22, K)
    (tmp_path / "dir").mkdir()
    with pytest.raises(KnownHostsError, match="^cannot read dir: "):
        KnownHosts(tmp_path / "dir").check(["h"], 22, K)


def test_a_file_of_exactly_the_cap_is_read_and_one_byte_more_is_refused() -> None:
    assert parse_known_hosts(b"#" * MAX_KNOWN_HOSTS_BYTES) == []
    with pytest.raises(KnownHostsError, match=f"larger than {MAX_KNOWN_HOSTS_BYTES} bytes"):
        parse_known_hosts(b"#" * (MAX_KNOWN_HOSTS_BYTES + 1))


def test_entries_after_comments_and_blank_lines_are_read_and_every_name_of_a_line_counts() -> None:
    other = key(fill=b"B")
    text = f"# a comment\n\n  # indented comment\nXbox,[10.0.0.1]:2222 {LINE}\n# more\nh2 ssh-ed25519 {b64(other)}\n"
    entries = parse_known_hosts(text.encode())
    assert [(e.names, e.key) for e in entries] == [(("Xbox", "[10.0.0.1]:2222"), K), (("h2",), other)]
    assert entries[0].matches("xbox") and entries[0].matches("[10.0.0.1]:2222")


def test_a_key_blob_at_the_length_cap_is_decoded_not_refused_as_too_long() -> None:
    at_cap = "A" * (MAX_KEY_BLOB_BYTES * 2)  # decodes to zeros: refused for its content, not its length
    with pytest.raises(KnownHostsError, match="does not hold a ssh-ed25519 key"):
        parse_key("ssh-ed25519", at_cap, where="w")
    with pytest.raises(KnownHostsError, match="^w: key too long$"):
        parse_key("ssh-ed25519", at_cap + "AAAA", where="w")


def test_a_four_byte_blob_is_long_enough_to_be_judged_by_its_type() -> None:
    with pytest.raises(KnownHostsError, match="does not hold"):
        parse_key("ssh-ed25519", base64.b64encode(b"\0\0\0\0").decode(), where="w")
    with pytest.raises(KnownHostsError, match="too short"):
        parse_key("ssh-ed25519", base64.b64encode(b"\0\0\0").decode(), where="w")


def test_a_length_prefix_with_the_high_bit_set_cannot_frame_the_key_type() -> None:
    # Read as a signed number, 2**32 - 14 would be -14 and blob[4:-10] would be exactly "ssh-ed25519".
    blob = struct.pack(">I", 2**32 - 14) + b"ssh-ed25519" + b"\0" * 10
    with pytest.raises(KnownHostsError, match="does not hold a ssh-ed25519 key"):
        parse_key("ssh-ed25519", base64.b64encode(blob).decode(), where="w")


def test_a_hashed_name_matches_only_its_own_name_and_only_in_strict_base64() -> None:
    good = hashed("[10.1.1.1]:2222")
    assert parse_known_hosts(f"{good} {LINE}".encode())[0].matches("[10.1.1.1]:2222")
    salt, digest = good.split("|")[2:]
    for pattern in (
        f"|1|{salt}|{digest}|extra",  # five parts
        f"|1|{salt[:4]}-{salt[4:]}|{digest}",  # a junk character inside the salt
        f"|1|{salt}|{digest[:4]}-{digest[4:]}",  # and inside the hash
        f"|1|{salt}|notbase64",
    ):
        entry = parse_known_hosts(f"{pattern} {LINE}".encode())[0]
        assert not entry.matches("[10.1.1.1]:2222"), pattern
        assert not entry.matches("anything-else"), pattern


def test_pinning_a_host_keeps_every_other_pin_and_comment(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"# operator note\na,b {LINE}\nc {LINE}\n")
    kh = KnownHosts(path)
    assert kh.pin("d", 22, key(fill=b"D"))
    assert path.read_text() == f"# operator note\na,b {LINE}\nc {LINE}\nd ssh-ed25519 {b64(key(fill=b'D'))}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Replacing b's key drops the line that names b (also named a), and nothing else.
    assert kh.pin("b", 22, key(fill=b"B"), replace=True)
    assert path.read_text() == (
        f"# operator note\nc {LINE}\nd ssh-ed25519 {b64(key(fill=b'D'))}\nb ssh-ed25519 {b64(key(fill=b'B'))}\n"
    )
    assert kh.check(["c"], 22, K) is Verdict.MATCH and kh.check(["a"], 22, K) is Verdict.UNKNOWN


def test_replacing_a_pin_never_drops_a_comment_that_mentions_the_host(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"#b {LINE}\n\n  # b {LINE}\nb {LINE}\n")
    KnownHosts(path).pin("b", 22, key(fill=b"B"), replace=True)
    assert path.read_text().splitlines()[:3] == [f"#b {LINE}", "", f"  # b {LINE}"]


def test_host_pattern_strips_only_brackets() -> None:
    assert host_pattern("XBOX", 22) == "xbox"
    assert host_pattern("[Xbox]", 2222) == "[xbox]:2222"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff", "^pub is not a text public key$"),
        (b"x" * (MAX_KEY_BLOB_BYTES * 4 + 1), "^pub is too large to be a public key$"),
        (b"just words here", r"^pub: no OpenSSH public key found \(expected 'TYPE BASE64'\)$"),
        (b"ssh-ed25519 AAAA", "^pub: key blob too short$"),
    ],
    ids=["binary", "too-large", "no-key", "bad-key"],
)
def test_a_public_key_file_it_cannot_read_is_refused_naming_the_file(text: bytes, message: str) -> None:
    with pytest.raises(KnownHostsError, match=message):
        parse_public_key_file(text, source="pub")


def test_a_public_key_file_skips_comments_and_may_fill_its_cap() -> None:
    text = f"# comment\n\n{LINE} user@host\n".encode()
    assert parse_public_key_file(text, source="pub") == K
    padded = text + b"#" * (MAX_KEY_BLOB_BYTES * 4 - len(text))
    assert parse_public_key_file(padded, source="pub") == K
    assert parse_public_key_file(f"h1 {LINE}\n".encode(), source="pub") == K  # an ssh-keyscan line
