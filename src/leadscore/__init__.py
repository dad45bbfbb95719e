"""leadscore: calibrated lead-conversion scores from CRM history."""

__version__ = "0.1.0"
