"""Errors leadscore raises on purpose; the CLI and API turn them into clear messages."""

from __future__ import annotations


class LeadscoreError(Exception):
    """Base for every error leadscore raises on purpose."""


class DataValidationError(LeadscoreError, ValueError):
    """Input data does not match what was expected (columns, types, values)."""


class InputFileError(LeadscoreError, OSError):
    """An input file is missing, unreadable, empty or of an unsupported format."""


class TargetError(DataValidationError):
    """The target column is missing or not binary."""


class ModelNotFoundError(LeadscoreError, FileNotFoundError):
    """No model bundle where one was expected."""


class ModelIntegrityError(LeadscoreError):
    """A model artifact does not match its recorded checksum or cannot be loaded."""


class ConfigError(LeadscoreError, ValueError):
    """params.yaml or a command-line option is invalid."""


class LeakageError(DataValidationError):
    """Training stopped: some columns would not be known at scoring time."""


class UnsupportedModelError(LeadscoreError, TypeError):
    """The model (or an ensemble member) is of a kind that cannot be explained exactly."""


class StoreError(LeadscoreError):
    """A database could not be reached, read or written (bad URL, missing table, failed transaction)."""


class ExperimentNotFoundError(LeadscoreError, LookupError):
    """No experiment of that name in the store."""


class ExperimentStateError(LeadscoreError):
    """The experiment cannot do that now (the name is taken, or it is stopped)."""


class MappingError(LeadscoreError, ValueError):
    """A CRM mapping is invalid, or does not match the live database (table, column or value)."""
