"""The endpoint schemas live in the core (``searchtuner.service.schemas``) so that the SDK can
use them without jina; this module re-exports the publisher's for its existing importers.
"""

from searchtuner.service.schemas import PublishRequest, PublishResponse

__all__ = ["PublishRequest", "PublishResponse"]
