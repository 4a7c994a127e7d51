"""Errors about the user's files that every front door reports as one line (str() is it).

Their own module so that the config reader (config/loader.py) and the file helpers
(config_io.py) share them without importing each other."""
from __future__ import annotations


class ConfigError(Exception):
    """The config cannot be read. str() is one line."""


class OutputError(ConfigError):
    """An output file cannot be created. str() is one line."""
