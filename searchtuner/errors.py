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


def shorten(text: str, limit: int = 80) -> str:
    """``text``, cut to about ``limit`` characters with its full length noted: a message
    echoes what a user sent, and what a user sends may be megabytes."""
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 20, 8)]}… ({len(text):,} characters)"


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
    given = shorten(repr(value))
    message = f"unknown {what} {given}; allowed: {', '.join(names) if names else '(none)'}"
    text = str(value)
    close = get_close_matches(text, names, n=1) if len(text) <= 100 else []
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return ConfigError(message)
