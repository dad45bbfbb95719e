"""Saved models: the versioned bundle format, the registry of versions, and the paths of every artifact."""
