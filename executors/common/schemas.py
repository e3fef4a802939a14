"""Request and response documents of the executors (docarray v2), shared so that clients,
gateways and later executors agree on one schema per endpoint.
"""

from docarray import BaseDoc
from pydantic import Field


class PublishRequest(BaseDoc):
    """Publish one stored checkpoint (``/publish``).

    Fields default to ``""`` so that a request missing one reaches the executor, which names
    the missing field in its error, instead of failing inside the transport.
    """

    owner: str = Field(
        default="",
        description="The owner whose namespace holds the checkpoint (owners/<owner>/ in the "
        "store): one segment of letters, digits, '.', '_' and '-'.",
    )
    checkpoint_key: str = Field(
        default="",
        description="The checkpoint's key inside the owner's namespace, e.g. "
        "'runs/<run>/best.safetensors' (written by save_model_checkpoint).",
    )


class PublishResponse(BaseDoc):
    """The handle of a published model; its ``id`` is the request document's ``id``."""

    handle: str = Field(
        default="",
        description="The compact model handle, stm<format>:<sha256>:<size>@<uri>; "
        "searchtuner.get_model(handle) loads the model.",
    )
    uri: str = Field(default="", description="Where the bundle archive is stored.")
    sha256: str = Field(default="", description="The archive's SHA-256, lowercase hex.")
    size: int = Field(default=0, description="The archive's size in bytes.")
    format_version: int = Field(default=0, description="The bundle format inside the archive.")
