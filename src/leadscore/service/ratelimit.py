"""Per-key token buckets, optionally shared by the worker processes of one server.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; each request takes one.
With a ``path`` the buckets live in a small memory-mapped file (16 bytes per key: tokens and the
CLOCK_MONOTONIC time of the last update) and each update holds a POSIX record lock on its key's 16
bytes, so the limit holds for the server as a whole however the kernel spreads connections over workers.
Without a path the buckets are per process.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

_SLOT = struct.Struct("dd")  # tokens, stamp (0 = never used: a full bucket)


class TokenBuckets:
    """Token buckets for a fixed list of key names.

    Parameters
    ----------
    names : every key name that may ask (their order does not matter).
    path : a file shared by the processes of one server; None keeps the state in this process.
    """

    def __init__(self, names: Sequence[str], path: str | Path | None = None) -> None:
        self._slots = {name: i for i, name in enumerate(sorted(set(names)))}
        self._lock = threading.Lock()
        size = max(1, len(self._slots)) * _SLOT.size
        self._fd: int | None = None
        if path is None:
            self._buffer: mmap.mmap | bytearray = bytearray(size)
        else:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)  # new bytes read as zero: full buckets
            self._buffer = mmap.mmap(self._fd, size)

    def close(self) -> None:
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def take(self, name: str, rate: float, burst: float) -> float:
        """Take one token for ``name``: 0.0 if granted, else the seconds until one is available.

        ``rate`` <= 0 means unlimited.
        """
        if rate <= 0:
            return 0.0
        offset = self._slots[name] * _SLOT.size
        with self._lock:
            if self._fd is not None:
                fcntl.lockf(self._fd, fcntl.LOCK_EX, _SLOT.size, offset, os.SEEK_SET)
            try:
                now = time.monotonic()
                tokens, stamp = _SLOT.unpack_from(self._buffer, offset)
                tokens, wait = _take(tokens, stamp, now, rate, burst)
                _SLOT.pack_into(self._buffer, offset, tokens, now)
            finally:
                if self._fd is not None:
                    fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT.size, offset, os.SEEK_SET)
        return wait


def _take(tokens: float, stamp: float, now: float, rate: float, burst: float) -> tuple[float, float]:
    """One token from a bucket last updated at ``stamp``: (tokens left, 0.0) or (tokens, seconds to wait)."""
    if stamp <= 0 or stamp > now:  # never used, or written before a reboot
        tokens, stamp = burst, now
    tokens = min(burst, tokens + (now - stamp) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


class ClientBuckets:
    """Token buckets per client address, in this process, for the few most recent clients.

    Used to ration expensive work an unauthenticated client can trigger (a slow key hash per unknown
    key): a client sending random keys is refused before the work, others are not slowed down.
    """

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0.0 if ``client`` may go ahead (a token taken), else the seconds until it may."""
        with self._lock:
            now = time.monotonic()
            tokens, stamp = self._buckets.pop(client, (self.burst, now))
            tokens, wait = _take(tokens, stamp, now, self.rate, self.burst)
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


def retry_after(wait: float) -> str:
    """The ``Retry-After`` header value (whole seconds, at least 1) for a wait in seconds."""
    return str(max(1, math.ceil(wait)))
