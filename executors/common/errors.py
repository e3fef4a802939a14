"""Errors an executor raises for a request it cannot serve.

Jina sends an executor's exception to the client as an error status carrying the exception's
class name and message, so each message says what was wrong with the request and how to fix it.
"""

from __future__ import annotations

from searchtuner.errors import ConfigError


class InvalidRequest(ConfigError):
    """A request with a missing field or a value the executor does not accept."""
