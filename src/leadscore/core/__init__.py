"""Foundations every layer uses: params.yaml settings, exceptions, atomic writes, hashing, JSON, threads."""
