"""Saved models: the versioned, signed bundle format and its metadata, the registry of versions, model
cards, loading of bundles saved under older module paths, and the paths of every artifact."""
