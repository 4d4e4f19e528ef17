"""Optional HMAC-SHA256 signatures on task and remote-control messages, with key ids for rotation.

On when ``tqctl_signing_key_id`` names a key of ``tqctl_signing_keys`` (or ``TQCTL_SIGNING_KEY_ID``
names one of ``TQCTL_SIGNING_KEYS="k2=secret,k1=older"``, for the CLI). Our clients then add one
header, ``tqctl_signature: "<key id>:<hex HMAC-SHA256>"``, over the envelope's content type and
encoding, its headers (all but this one, as canonical JSON) and its body text; our workers refuse
task messages that are unsigned, signed with a key id they do not hold, or altered (dead letter,
reason ``bad_signature``) and ignore such control messages. Off, nothing is added or checked, so
the bytes on the wire are exactly what they were. Properties (delivery tag, routing) are not
covered: they change on redelivery and decide nothing about what runs. A signature proves who
sent a message and that it is unchanged, not that it is fresh: a copied message can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from engine.exceptions import ImproperlyConfigured
from engine.serialization import json_dumps

HEADER = "tqctl_signature"
VERSION = b"tqctl-signature-v1"


class Signer:
    """Signs with one key and verifies against every key in the set (old ones while they rotate out)."""

    def __init__(self, keys: Mapping[str, str | bytes], key_id: str) -> None:
        if not isinstance(keys, Mapping) or not keys:
            raise ImproperlyConfigured("tqctl_signing_keys must be a non-empty {key_id: secret} mapping")
        self._keys: dict[str, bytes] = {}
        for kid, secret in keys.items():
            if not isinstance(kid, str) or not kid or ":" in kid:
                raise ImproperlyConfigured(f"signing key id {kid!r} must be a non-empty string without ':'")
            if not isinstance(secret, (str, bytes)) or len(secret) < 16:
                raise ImproperlyConfigured(f"signing key {kid!r}: the secret must be a string of 16+ characters")
            self._keys[kid] = secret.encode() if isinstance(secret, str) else bytes(secret)
        if key_id not in self._keys:
            raise ImproperlyConfigured(
                f"tqctl_signing_key_id {key_id!r} is not one of tqctl_signing_keys ({', '.join(sorted(self._keys))})"
            )
        self.key_id = key_id

    def __repr__(self) -> str:  # never the secrets
        return f"<Signer key_id={self.key_id!r} keys={sorted(self._keys)}>"

    @classmethod
    def from_conf(cls, conf: Any) -> Signer | None:
        """The app's signer, or None when signing is off (the settings, else the environment)."""
        key_id = conf.get("tqctl_signing_key_id")
        keys = conf.get("tqctl_signing_keys")
        if not key_id and not keys:
            return from_env()
        if not key_id:
            raise ImproperlyConfigured(
                "tqctl_signing_keys is set but tqctl_signing_key_id is not: name the key to sign with"
            )
        return cls(keys or {}, str(key_id))

    def sign(self, raw: bytes) -> bytes:
        envelope = json.loads(raw)
        headers = envelope.setdefault("headers", {})
        headers.pop(HEADER, None)
        headers[HEADER] = f"{self.key_id}:{self._mac(self._keys[self.key_id], envelope)}"
        return json_dumps(envelope).encode()

    def verify(self, raw: bytes | str) -> str | None:
        """None when ``raw`` carries a valid signature by a key we hold; else why not (one line)."""
        try:
            envelope = json.loads(raw)
            given = envelope["headers"][HEADER]
        except (ValueError, TypeError, KeyError):
            return f"unsigned message (signing is on: every message needs a {HEADER} header)"
        if not isinstance(given, str) or ":" not in given:
            return f"malformed {HEADER} header"
        kid, _, digest = given.rpartition(":")
        secret = self._keys.get(kid)
        if secret is None:
            return f"signed with key id {kid!r}, which this worker does not hold"
        if not hmac.compare_digest(digest, self._mac(secret, envelope)):
            return "signature does not match: the message was altered or signed with another secret"
        return None

    @staticmethod
    def _mac(secret: bytes, envelope: dict[str, Any]) -> str:
        headers = {k: v for k, v in (envelope.get("headers") or {}).items() if k != HEADER}
        parts = [
            VERSION,
            str(envelope.get("content-type")).encode(),
            str(envelope.get("content-encoding")).encode(),
            json.dumps(headers, sort_keys=True, separators=(",", ":")).encode(),
            str(envelope.get("body")).encode(),
        ]
        return hmac.new(secret, b"\n".join(parts), hashlib.sha256).hexdigest()


def from_env(environ: Mapping[str, str] = os.environ) -> Signer | None:
    """``TQCTL_SIGNING_KEYS="k2=secret,k1=older"`` and ``TQCTL_SIGNING_KEY_ID=k2``: for the CLI,
    which has no app settings (and so secrets stay out of command lines)."""
    key_id, text = environ.get("TQCTL_SIGNING_KEY_ID"), environ.get("TQCTL_SIGNING_KEYS")
    if not key_id and not text:
        return None
    keys: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        kid, sep, secret = item.partition("=")
        if not sep:
            raise ImproperlyConfigured("TQCTL_SIGNING_KEYS must read id=secret,id=secret")
        keys[kid.strip()] = secret
    if not key_id:
        raise ImproperlyConfigured("TQCTL_SIGNING_KEYS is set but TQCTL_SIGNING_KEY_ID is not")
    try:
        return Signer(keys, key_id)
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"TQCTL_SIGNING_KEYS / TQCTL_SIGNING_KEY_ID: {exc}") from None
