"""Errors that the CLI reports as one clear line and a non-zero exit."""


class RelnetError(Exception):
    """Base class: a problem with the user's input, not a bug in relnet."""


class DataError(RelnetError):
    """A data file is missing or does not hold what was expected."""


class ConfigError(RelnetError):
    """An unknown preset, device or option value, or a run that does not match."""


def shown(value, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for a one-line message: a value given may
    be megabytes long, nested thousands deep or an integer too long to print."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # Python refuses to print integers of over 4300 digits
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
