"""Publisher: turns a stored training checkpoint into a published model bundle and its handle.

A thin service around :func:`searchtuner.artifacts.publish_checkpoint`: the store is opened
once; each ``/publish`` request names an owner and a checkpoint key in that owner's namespace
and gets back the model handle that ``searchtuner.get_model`` loads.
"""

import sys
from pathlib import Path
from typing import Any

from docarray import DocList
from jina import requests

from searchtuner.artifacts import ModelHandle, publish_checkpoint
from searchtuner.store import InvalidKeyError, NotFound, open_store, validate_key

try:
    from executors.common.errors import InvalidRequest
    from executors.common.schemas import PublishRequest, PublishResponse
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default
except ModuleNotFoundError:  # jina imports this file by path (py_modules), maybe from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from executors.common.errors import InvalidRequest
    from executors.common.schemas import PublishRequest, PublishResponse
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default


class Publisher(ServiceExecutor):
    """Publishes checkpoints from the artifact store as content-addressed model bundles.

    Args:
        store_uri: the artifact store (``file:///dir``, ``file://./dir``, a plain path, or
            ``s3://bucket/prefix``; S3's endpoint and credentials come from the environment).
        prefix: the folder of published archives inside each owner's namespace.
        onnx: also put ``model.onnx`` into each bundle.
        **kwargs: passed to :class:`jina.Executor`.
    """

    def __init__(
        self,
        store_uri: str = "",
        prefix: str = "models",
        onnx: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store = open_store(store_uri_or_default(store_uri))
        self.prefix = prefix
        self.onnx = onnx

    @requests(on="/publish")
    def publish(
        self, docs: DocList[PublishRequest], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[PublishResponse]:
        """Publish each request's checkpoint; one response per request, with the same id.

        The checkpoint is looked up in the namespace of the request token's owner: a request
        naming another ``owner`` fails as if the checkpoint did not exist.

        Raises:
            InvalidRequest: a missing owner or checkpoint key, or a malformed one.
            Unauthenticated: no valid token in ``parameters["token"]``.
            NotFound: the owner has nothing in the store, or no checkpoint under the key.
            CheckpointError: the object is not a SearchTuner checkpoint or cannot be rebuilt.
            IntegrityError: the stored checkpoint does not match its recorded digest.
        """
        caller = owner_of(parameters)
        responses = DocList[PublishResponse]()
        for doc in docs:
            with self.telemetry.attached(kwargs.get("tracing_context")):
                handle = self._publish_one(doc, caller)  # its span: searchtuner.publish
            responses.append(
                PublishResponse(
                    id=doc.id,
                    handle=str(handle),
                    uri=handle.uri,
                    sha256=handle.sha256,
                    size=handle.size,
                    format_version=handle.format_version,
                )
            )
        return responses

    def _publish_one(self, doc: PublishRequest, caller: str) -> ModelHandle:
        owner, key = doc.owner.strip() or caller, doc.checkpoint_key.strip()
        missing = [name for name, value in (("owner", owner), ("checkpoint_key", key)) if not value]
        if missing:
            raise InvalidRequest(
                f"the /publish request lacks {' and '.join(missing)}; send a PublishRequest "
                "with owner (e.g. 'alice') and checkpoint_key (e.g. 'runs/r1/best.safetensors')"
            )
        try:
            namespace = self.store.for_owner(owner)
            validate_key(key, what="checkpoint_key")
        except InvalidKeyError as err:
            raise InvalidRequest(f"the /publish request is malformed: {err}") from err
        if owner != caller:  # another owner's namespace: answered as a missing checkpoint
            raise NotFound(
                f"no checkpoint {key!r} in your namespace; check the key, e.g. "
                "runs/<run>/best.safetensors"
            )
        try:
            return publish_checkpoint(  # a backbone by registered name only, never a path
                namespace, key, prefix=self.prefix, onnx=self.onnx, registered_only=True
            )
        except NotFound as err:
            raise self._not_found(key) from err

    @staticmethod
    def _not_found(key: str) -> NotFound:
        return NotFound(
            f"no checkpoint {key!r} in your namespace; check the key, e.g. "
            "runs/<run>/best.safetensors"
        )

    def close(self) -> None:
        """Release the store's connections when the executor shuts down."""
        self.store.close()
        super().close()
