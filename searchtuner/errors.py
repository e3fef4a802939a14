"""One error hierarchy for everything SearchTuner reports to a user.

Every message says what went wrong *and* what to do about it. Code that catches
errors from third-party libraries re-raises them as one of these with ``from err``.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


class SearchTunerError(Exception):
    """Base class of every error SearchTuner raises on purpose."""


class ConfigError(SearchTunerError, ValueError):
    """An option, name or combination of options that SearchTuner cannot use."""


class DataError(SearchTunerError, ValueError):
    """Input data that cannot be read or used; the message names the row and field."""


def invalid_choice(what: str, value: object, allowed: Iterable[object]) -> ConfigError:
    """Build the error for a value outside a closed set, listing the allowed values.

    Args:
        what: what the value is for, e.g. ``"backbone"`` or ``"pooling for text models"``.
        value: the value the user gave.
        allowed: every value that would have been accepted.

    Returns:
        A ``ConfigError`` whose message lists the allowed values and, where one is
        close, suggests it.
    """
    names = [str(a) for a in allowed]
    message = f"unknown {what} {value!r}; allowed: {', '.join(names) if names else '(none)'}"
    close = get_close_matches(str(value), names, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return ConfigError(message)
