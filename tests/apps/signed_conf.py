"""A worker app whose signing keys are set in its configuration (not the environment): ``inspect
conf`` must mask them, though their key ids ("k1") name no secret."""

from __future__ import annotations

from engine import App

KEYS = {"k1": "conf-secret-0123456789abcdef", "k2": "conf-secret-fedcba9876543210"}

app = App("signed_conf")
app.conf.tqctl_signing_keys = KEYS
app.conf.tqctl_signing_key_id = "k2"


@app.task(name="signed_conf.noop")
def noop() -> None:
    return None
