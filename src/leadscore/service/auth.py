"""API keys: a YAML or JSON file of hashed keys with a role each; the raw keys are never stored or logged.

File format (YAML shown; the same structure as JSON works)::

    keys:
      - name: crm-sync          # shown in logs and metrics instead of the key
        role: scorer            # scorer: score, read model info, record outcomes
        hash: sha256:9f86d08...  # from `leadscore serve --hash-key`
      - name: ops
        role: admin             # admin: everything, plus activate and roll back models
        hash: scrypt:16384:8:1:<salt hex>:<hash hex>
        rate_limit: 5           # optional: requests/s for this key instead of --rate-limit

Generated keys (``leadscore serve --new-key NAME``) carry 256 random bits, for which a plain sha256 is
as safe as a slow hash; ``scrypt`` (salted) suits keys chosen by people. Valid scrypt keys are verified
once per process and then remembered by their sha256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from leadscore.core.exceptions import ConfigError, LeadscoreError
from leadscore.service.ratelimit import ClientBuckets

Role = Literal["scorer", "admin"]
ROLES: tuple[Role, ...] = ("scorer", "admin")
HEADER = "X-API-Key"
MAX_KEY_LENGTH = 256
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
KEY_PREFIX = "lsk_"
_NEGATIVE_CACHE = 10_000
SLOW_CHECKS_PER_SECOND, SLOW_CHECKS_BURST = 1.0, 5.0  # scrypt checks of unknown keys, per client


class SlowHashThrottled(LeadscoreError):
    """A client sent too many unknown keys that needed the slow hash: answer 429 before hashing."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"too many unknown API keys from this client: retry in {wait:.0f} s")
        self.wait = wait


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name, role, stored hash and optional own rate limit (requests/s)."""

    name: str
    role: Role
    hash: str
    rate_limit: float | None = None

    def allows(self, role: Role) -> bool:
        """True if this key may act as ``role`` (admin keys may do everything)."""
        return self.role == "admin" or self.role == role


def generate_key() -> str:
    """A new random API key (256 bits, URL-safe text)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(key.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024,
                          dklen=32)


def hash_key(key: str, method: Literal["sha256", "scrypt"] = "sha256") -> str:
    """The stored form of ``key``: ``sha256:<hex>`` or ``scrypt:<n>:<r>:<p>:<salt hex>:<hash hex>``.

    Examples
    --------
    >>> hash_key("test")
    'sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
    """
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or key != key.strip():
        raise ConfigError(f"API key: expected 1 to {MAX_KEY_LENGTH} printable characters without "
                          "surrounding spaces")
    if method == "sha256":
        return f"sha256:{_sha256(key)}"
    if method == "scrypt":
        salt = secrets.token_bytes(16)
        digest = _scrypt(key, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}:{salt.hex()}:{digest.hex()}"
    raise ConfigError(f"hash method: expected sha256 or scrypt, got {method!r}")


def _check_hash(text: str, where: str) -> None:
    parts = text.split(":")
    try:
        if parts[0] == "sha256" and len(parts) == 2 and len(bytes.fromhex(parts[1])) == 32:
            return
        if parts[0] == "scrypt" and len(parts) == 6 and all(int(v) > 0 for v in parts[1:4]) \
                and bytes.fromhex(parts[4]) and len(bytes.fromhex(parts[5])) == 32:
            return
    except ValueError:
        pass
    raise ConfigError(f"{where}: hash: expected 'sha256:<64 hex>' or 'scrypt:N:r:p:<salt hex>:<64 hex>' "
                      "(from `leadscore serve --hash-key`), got something else")


def _parse_entry(item: Any, where: str) -> ApiKey:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping with name, role and hash, got {type(item).__name__}")
    unknown = sorted(set(item) - {"name", "role", "hash", "rate_limit"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    name, role, hashed = item.get("name"), item.get("role"), item.get("hash")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name: expected a non-empty string, got {name!r}")
    if role not in ROLES:
        raise ConfigError(f"{where} ({name}): role: expected one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(hashed, str):
        raise ConfigError(f"{where} ({name}): hash: expected a string")
    _check_hash(hashed, f"{where} ({name})")
    limit = item.get("rate_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0):
        raise ConfigError(f"{where} ({name}): rate_limit: expected a number >= 0, got {limit!r}")
    return ApiKey(name.strip(), role, hashed, None if limit is None else float(limit))


def load_keys(path: str | Path) -> list[ApiKey]:
    """Read a keys file (``.json``, else YAML).

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, or an entry is malformed or duplicated.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"API keys file {path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        language = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ConfigError(f"API keys file {path}: not valid {language}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list):
        raise ConfigError(f"API keys file {path}: expected a mapping with a 'keys' list")
    keys = [_parse_entry(item, f"{path}: keys[{i}]") for i, item in enumerate(raw["keys"])]
    for attribute in ("name", "hash"):
        values = [getattr(k, attribute) for k in keys]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            shown = ", ".join(dupes) if attribute == "name" else f"{len(dupes)} hash(es)"
            raise ConfigError(f"API keys file {path}: duplicate {attribute}: {shown}")
    if not keys:
        raise ConfigError(f"API keys file {path}: no keys: add one with `leadscore serve --new-key NAME`")
    return keys


class KeyStore:
    """Finds the configured key a presented key belongs to, comparing hashes only.

    Parameters
    ----------
    keys : the configured keys (:func:`load_keys`).
    """

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)
        self._sha256 = {k.hash.split(":", 1)[1]: k for k in self.keys if k.hash.startswith("sha256:")}
        self._scrypt = [k for k in self.keys if k.hash.startswith("scrypt:")]
        self._verified: dict[str, ApiKey] = {}
        self._rejected: OrderedDict[str, None] = OrderedDict()
        self._slow_checks = ClientBuckets(SLOW_CHECKS_PER_SECOND, SLOW_CHECKS_BURST)

    @classmethod
    def from_file(cls, path: str | Path) -> KeyStore:
        return cls(load_keys(path))

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.keys]

    def lookup(self, presented: str | None, client: str = "") -> ApiKey | None:
        """The key ``presented`` matches, or None (absent, malformed or unknown).

        Raises
        ------
        SlowHashThrottled
            If ``client`` already made this process check too many unknown keys with scrypt (the slow,
            salted hash): it must wait rather than make everyone else wait.
        """
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        digest = _sha256(presented)
        found = self._sha256.get(digest) or self._verified.get(digest)
        if found is not None:
            return found
        if not self._scrypt or digest in self._rejected:
            return None
        wait = self._slow_checks.take(client)
        if wait:
            raise SlowHashThrottled(wait)
        for key in self._scrypt:
            _, n, r, p, salt, stored = key.hash.split(":")
            if hmac.compare_digest(_scrypt(presented, bytes.fromhex(salt), int(n), int(r), int(p)),
                                   bytes.fromhex(stored)):
                self._verified[digest] = key
                return key
        self._rejected[digest] = None
        if len(self._rejected) > _NEGATIVE_CACHE:
            self._rejected.popitem(last=False)
        return None
