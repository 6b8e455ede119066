"""The base class of every error that means bad input or a bad setting, not a bug.

The command line prints these as one line and exits with status 2; any other exception is a bug
and keeps its traceback. Every layer may import this module.
"""


class SatTfError(Exception):
    """A user-facing error; its message names the file, line, field or setting at fault."""


class ConfigError(SatTfError, ValueError):
    """A run configuration, recipe or command-line setting is invalid."""
