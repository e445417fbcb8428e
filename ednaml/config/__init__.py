"""The canonical config: load, merge, override, fill defaults, validate."""

from ednaml.config.load import ConfigWarning, deep_merge, dump, parse_key_path, read_yaml, resolve
from ednaml.errors import ConfigError, Problem, format_path

__all__ = [
    "ConfigError",
    "ConfigWarning",
    "Problem",
    "deep_merge",
    "dump",
    "format_path",
    "parse_key_path",
    "read_yaml",
    "resolve",
]
