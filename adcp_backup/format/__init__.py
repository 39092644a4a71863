"""Backup file formats: the native JSON Lines format (version 3), the legacy JSON formats, and their codecs."""
