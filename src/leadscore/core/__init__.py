"""Foundations every layer uses: params.yaml settings, exceptions, database engines and the UTC column type,
atomic writes, hashing, JSON, threads."""
