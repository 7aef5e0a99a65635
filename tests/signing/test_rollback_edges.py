"""The pin beside the trust root: its file checks, staged rotations, file modes and size cap.

Written against the mutants of ``hardening/signing/rollback.py`` that survived the signing tests
(``python -m tests.mutation --only rollback``).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hardening.signing.errors import RollbackError, TrustRootError
from hardening.signing.keys import generate
from hardening.signing.rollback import (
    NEXT_TRUST_FILE,
    STATE_FILE,
    TRUST_FILE,
    PinnedState,
    load_trust_root,
    read_state,
    rotate_root,
)
from hardening.signing.trust import (
    MAX_TRUST_BYTES,
    TrustRoot,
    parse,
    propose,
    serialize,
    sign_root,
    trusted_key,
)
from tests.signing.helpers import install_trust

HEX = "0123456789abcdef" * 4


def installed(tmp_path: Path) -> tuple[Path, TrustRoot, bytes]:
    key = generate()
    root = install_trust(tmp_path / "state", [key])
    new = propose(root, [trusted_key(generate().public_key(), "admin1")], 1)
    return tmp_path / "state", new, sign_root(serialize(new), key)


def state_doc(state_dir: Path) -> dict[str, object]:
    doc = json.loads((state_dir / STATE_FILE).read_bytes())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    "value",
    [HEX[:63], HEX + "0", "X" * 64, HEX.upper(), " " + HEX[1:]],
    ids=["63", "65", "X", "upper", "space"],
)
def test_a_pinned_config_hash_must_be_64_lowercase_hex_digits(tmp_path: Path, value: str) -> None:
    state_dir, _new, _signed = installed(tmp_path)
    doc = state_doc(state_dir)
    (state_dir / STATE_FILE).write_text(json.dumps({**doc, "config_sha256": value}))
    with pytest.raises(TrustRootError, match=r"config-state\.json.*'config_sha256' must be 64 lowercase hex"):
        read_state(state_dir)
    (state_dir / STATE_FILE).write_text(json.dumps({**doc, "config_sha256": HEX}))
    assert read_state(state_dir) == PinnedState(
        doc["trust_version"],
        doc["trust_sha256"],
        0,
        HEX,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": "another-format-v9"}', b"[]"],
    ids=["syntax", "format", "not-an-object"],
)
def test_a_damaged_pin_is_a_trust_root_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    state_dir, _new, _signed = installed(tmp_path)
    (state_dir / STATE_FILE).write_bytes(content)
    with pytest.raises(TrustRootError, match=r"config-state\.json"):
        read_state(state_dir)


def test_a_staged_root_with_the_pinned_version_but_other_keys_is_not_promoted(tmp_path: Path) -> None:
    state_dir, _new, _signed = installed(tmp_path)
    mallory = (trusted_key(generate().public_key(), "m"),)
    pinned = read_state(state_dir)
    assert pinned is not None
    # Same version as the pin, other content: neither the hash nor the version alone may promote it.
    staged = serialize(TrustRoot(pinned.trust_version, 1, mallory))
    replaced = serialize(TrustRoot(pinned.trust_version + 1, 1, mallory))
    (state_dir / NEXT_TRUST_FILE).write_bytes(staged)
    (state_dir / TRUST_FILE).write_bytes(replaced)
    with pytest.raises(TrustRootError, match="replaced without a rotation"):
        load_trust_root(state_dir)
    assert (state_dir / TRUST_FILE).read_bytes() == replaced
    assert (state_dir / NEXT_TRUST_FILE).read_bytes() == staged


def test_trust_files_are_world_readable_not_writable_and_keep_the_rotation_signatures(tmp_path: Path) -> None:
    state_dir, new, signed = installed(tmp_path)
    assert stat.S_IMODE((state_dir / TRUST_FILE).stat().st_mode) == 0o644
    rotate_root(state_dir, signed)
    assert stat.S_IMODE((state_dir / TRUST_FILE).stat().st_mode) == 0o644
    root, sigs = parse((state_dir / TRUST_FILE).read_bytes())
    assert root == new and len(sigs) == 1  # the old key's signature stays as evidence of the rotation
    assert load_trust_root(state_dir)[0] == new


def test_a_new_root_of_exactly_the_cap_is_parsed_and_one_byte_more_is_refused_unread(tmp_path: Path) -> None:
    state_dir, _new, _signed = installed(tmp_path)
    with pytest.raises(TrustRootError) as at_cap:
        rotate_root(state_dir, b" " * MAX_TRUST_BYTES)
    assert "larger than" not in str(at_cap.value)
    with pytest.raises(TrustRootError, match=f"^new trust root is larger than {MAX_TRUST_BYTES} bytes$"):
        rotate_root(state_dir, b" " * (MAX_TRUST_BYTES + 1))


def test_the_rollback_refusal_names_the_next_acceptable_version() -> None:
    state = PinnedState(1, HEX, config_version=7, config_sha256=HEX)
    with pytest.raises(RollbackError, match="sign a config with version 8 or later$"):
        state.check_config_version(6, HEX)
    state.check_config_version(7, HEX)
    state.check_config_version(8, "f" * 64)


def test_a_missing_trust_file_with_a_pin_says_to_restore_it(tmp_path: Path) -> None:
    state_dir, _new, _signed = installed(tmp_path)
    (state_dir / TRUST_FILE).unlink()
    with pytest.raises(
        TrustRootError, match=r"^trust\.json is missing but a trust root was pinned \(version 1\)"
    ):
        load_trust_root(state_dir)


@pytest.mark.parametrize(
    ("where", "name"),
    [(TRUST_FILE, "trust.json"), (NEXT_TRUST_FILE, "trust.next.json"), (None, "new trust root")],
    ids=["installed", "staged", "rotation"],
)
def test_a_damaged_trust_root_is_refused_naming_which_one(
    tmp_path: Path, where: str | None, name: str
) -> None:
    state_dir, _new, signed = installed(tmp_path)
    if where == NEXT_TRUST_FILE:
        # A staged file is read only when trust.json no longer matches the pin.
        (state_dir / TRUST_FILE).write_bytes(
            serialize(TrustRoot(1, 1, (trusted_key(generate().public_key(), "m"),)))
        )
    if where is not None:
        (state_dir / where).write_bytes(b"{damaged")
    with pytest.raises(TrustRootError, match=f"^{name}"):
        rotate_root(state_dir, signed if where else b"{damaged")


def test_a_replaced_root_is_described_by_version_and_hash_prefix(tmp_path: Path) -> None:
    state_dir, _new, _signed = installed(tmp_path)
    pinned = read_state(state_dir)
    assert pinned is not None
    evil = TrustRoot(1, 1, (trusted_key(generate().public_key(), "m"),))
    (state_dir / TRUST_FILE).write_bytes(serialize(evil))
    with pytest.raises(TrustRootError) as refused:
        load_trust_root(state_dir)
    assert str(refused.value) == (
        f"trust.json (version 1, sha256 {evil.sha256[:16]}...) does not match the pinned trust root "
        f"(version 1, sha256 {pinned.trust_sha256[:16]}...): it was replaced without a rotation signed by the old keys"
    )
