"""Bundles are signed, so a model folder cannot run code on the machines that load it.

A bundle's ``model.joblib`` is a pickle, and loading a pickle runs code. The sha256 in ``metadata.json``
only catches accidents: whoever can write the folder can rewrite both. So every bundle leadscore saves
carries ``signature``, an HMAC-SHA256 over its metadata (which holds the artifact's sha256), keyed with a
secret the attacker does not hold, and nothing is unpickled unless the signature matches.

The key is ``$LEADSCORE_SIGNING_KEY`` (any string), else the file ``$LEADSCORE_SIGNING_KEY_FILE``, else
``~/.config/leadscore/signing.key``; the file is created with 32 random bytes and mode 0600 on first use,
and refused if others may read it. Machines that share models share the key (copy the file, or set the
variable from a secret store). A bundle that is unsigned (saved before signing existed) or signed with
another key loads only with an explicit trust flag (``--trust-model``), for bundles you made yourself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from leadscore.core.exceptions import ConfigError, ModelIntegrityError

ENV_KEY = "LEADSCORE_SIGNING_KEY"
ENV_KEY_FILE = "LEADSCORE_SIGNING_KEY_FILE"
SIGNATURE = "signature"
TRUST_HINT = ("load it only if you made it yourself, with --trust-model "
              "(then re-save or register it to sign it with this machine's key)")


def key_file() -> Path:
    """Where the signing key lives when ``$LEADSCORE_SIGNING_KEY`` is not set."""
    return Path(os.environ.get(ENV_KEY_FILE) or Path.home() / ".config" / "leadscore" / "signing.key")


def signing_key() -> bytes:
    """The secret bundles are signed with (created on first use; see the module docstring).

    Raises
    ------
    ConfigError
        If the key file can be read by other users or is empty.
    """
    if os.environ.get(ENV_KEY):
        return os.environ[ENV_KEY].encode()
    path = key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"signing key {path} can be read by other users: chmod 600 {path}")
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"signing key {path} is empty: delete it to make a new one")
    return key.encode()


def _payload(meta: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in meta.items() if k != SIGNATURE}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign(meta: dict[str, Any]) -> str:
    """The signature of ``meta`` (every field but the signature itself, the artifact's sha256 included)."""
    return hmac.new(signing_key(), _payload(meta), hashlib.sha256).hexdigest()


def verify(meta: dict[str, Any], where: str | Path, *, trust: bool = False) -> None:
    """Check ``meta``'s signature before anything of the bundle at ``where`` is unpickled.

    Raises
    ------
    ModelIntegrityError
        If the bundle is unsigned or its signature does not match this machine's key, unless ``trust``.
    """
    if trust:
        return
    signature = meta.get(SIGNATURE)
    if not isinstance(signature, str):
        raise ModelIntegrityError(f"refusing to load {where}: the bundle is not signed; {TRUST_HINT}")
    if not hmac.compare_digest(signature, sign(meta)):
        raise ModelIntegrityError(f"refusing to load {where}: its signature does not match this machine's "
                                  f"signing key (changed, or signed elsewhere); {TRUST_HINT}")
