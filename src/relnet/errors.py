"""Errors that the CLI reports as one clear line and a non-zero exit."""


class RelnetError(Exception):
    """Base class: a problem with the user's input, not a bug in relnet."""


class DataError(RelnetError):
    """A data file is missing or does not hold what was expected."""


class ConfigError(RelnetError):
    """An unknown preset, device or option value, or a run that does not match."""
