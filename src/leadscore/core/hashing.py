"""Content hashes: sha256 of files and folders, and the md5 DVC records (to check regenerated data against
``data.dvc``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from leadscore.core.exceptions import ConfigError


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc_dir_md5(folder: str | Path) -> str:
    """The md5 DVC records for a tracked folder: md5 of its sorted JSON file listing, plus ``.dir``."""
    folder = Path(folder)
    entries = [{"md5": file_md5(p), "relpath": p.relative_to(folder).as_posix()}
               for p in sorted(folder.rglob("*"), key=lambda q: q.relative_to(folder).as_posix())
               if p.is_file()]
    listing = json.dumps(entries, sort_keys=True)
    return hashlib.md5(listing.encode(), usedforsecurity=False).hexdigest() + ".dir"


def recorded_md5(dvc_file: str | Path) -> str:
    """The md5 of the first output recorded in a ``.dvc`` file."""
    try:
        spec = yaml.safe_load(Path(dvc_file).read_text())
        return str(spec["outs"][0]["md5"])
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        raise ConfigError(f"cannot read the recorded hash from {dvc_file}: {exc}") from exc


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: str | Path) -> str:
    """sha256 over a folder's file names and bytes: identifies, e.g., the data a model was trained on."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
