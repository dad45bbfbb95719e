"""The DVC stages: each reads explicit input paths, calls the package and writes explicit outputs."""
