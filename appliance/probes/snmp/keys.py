"""Localised USM keys, cached per opener: the 1 MiB pass-phrase hash once per credential, the
localisation once per (credential, engine ID) (RFC 3414 §2.6), so a walk of many agents stays cheap.

Entries are keyed by an HMAC of the credential under a key that lives only as long as the cache, never
by the pass phrases themselves; the cache is bounded and starts over when full.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from appliance.probes.snmp.usm import UsmKeys, localize, passphrase_key, priv_key
from appliance.probes.snmp.v3 import KeyMaker

MAX_CACHED = 1024


class UsmKeyCache:
    def __init__(self) -> None:
        self._tag_key = secrets.token_bytes(32)
        self._ku: dict[bytes, tuple[bytes, bytes]] = {}
        self._kul: dict[tuple[bytes, bytes], UsmKeys] = {}

    def maker(self, settings: tuple[str, str, str, str, str]) -> KeyMaker:
        """The engine ID -> keys function for one credential's (user, auth, priv, auth pass, priv pass)."""
        user, auth, priv, auth_pass, priv_pass = settings
        material = "\0".join(settings).encode("utf-8")
        tag = hmac.new(self._tag_key, material, hashlib.sha256).digest()

        def keys_for(engine_id: bytes) -> UsmKeys:
            found = self._kul.get((tag, engine_id))
            if found is not None:
                return found
            ku = self._ku.get(tag)
            if ku is None:
                if len(self._ku) >= MAX_CACHED:
                    self._ku.clear()
                ku = self._ku[tag] = (
                    passphrase_key(auth_pass.encode("utf-8"), auth),
                    passphrase_key(priv_pass.encode("utf-8"), auth),
                )
            keys = UsmKeys(
                user.encode("utf-8"),
                auth,
                localize(ku[0], engine_id, auth),
                priv_key(localize(ku[1], engine_id, auth), auth, priv),
            )
            if len(self._kul) >= MAX_CACHED:
                self._kul.clear()
            self._kul[(tag, engine_id)] = keys
            return keys

        return keys_for
