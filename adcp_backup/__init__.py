"""adcp-backup: streaming, verified, atomic backup and restore for the AdCP application's data."""

__version__ = "1.0.0"
