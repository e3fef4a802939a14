"""Which parameters train: ``freeze`` as a flag, a block count or layer-name patterns."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn

from searchtuner.errors import ConfigError
from searchtuner.models.backbones.base import Backbone

FreezeSpec = bool | int | Sequence[str]


def apply_freeze(model: nn.Module, backbone: Backbone, freeze: FreezeSpec) -> list[str]:
    """Set ``requires_grad=False`` on the parameters ``freeze`` selects.

    Args:
        model: the whole embedding model (parameter names are relative to it).
        backbone: its backbone, whose ``blocks()`` give the order for a block count.
        freeze: ``False`` freezes nothing; ``True`` the whole backbone; an int N the first N
            backbone blocks; a list of patterns every parameter whose name matches one
            (``fnmatch`` syntax, or a module-name prefix such as ``backbone.model.embeddings``).

    Returns:
        The names of the frozen parameters.

    Raises:
        ConfigError: the count is out of range, or a pattern matches no parameter.
    """
    names = [name for name, _ in model.named_parameters()]
    prefix = _prefix_of(model, backbone)
    if freeze is False:
        chosen: set[str] = set()
    elif freeze is True:
        chosen = {n for n in names if n.startswith(prefix)}
    elif isinstance(freeze, int):
        chosen = _first_blocks(model, backbone, prefix, freeze)
    elif isinstance(freeze, Sequence) and not isinstance(freeze, str) and freeze:
        chosen = set()
        for pattern in freeze:
            hits = {n for n in names if fnmatchcase(n, pattern) or n.startswith(pattern + ".")}
            if not hits:
                blocks = ", ".join(prefix + b for b, _ in backbone.blocks()[:12])
                raise ConfigError(
                    f"freeze pattern {pattern!r} matches no parameter; patterns match "
                    f"parameter names such as {names[0]!r}, or module prefixes such as {blocks}"
                )
            chosen |= hits
    else:
        raise ConfigError(
            f"freeze must be False, True, a number of blocks or a list of layer-name patterns, "
            f"got {freeze!r}"
        )
    for name, param in model.named_parameters():
        param.requires_grad_(name not in chosen)
    return sorted(chosen)


def _first_blocks(model: nn.Module, backbone: Backbone, prefix: str, count: int) -> set[str]:
    blocks = backbone.blocks()
    if not 0 <= count <= len(blocks):
        listing = ", ".join(name for name, _ in blocks)
        raise ConfigError(
            f"freeze={count} but this backbone has {len(blocks)} blocks ({listing}); give a "
            f"number from 0 to {len(blocks)}"
        )
    ids = {id(p) for _, block in blocks[:count] for p in block.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def _prefix_of(model: nn.Module, backbone: Backbone) -> str:
    for name, module in model.named_modules():
        if module is backbone:
            return f"{name}." if name else ""
    raise ConfigError("the backbone is not part of this model")  # pragma: no cover


def keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """Put batch-norm layers whose parameters are all frozen into eval mode.

    A frozen layer must not drift: in train mode batch norm would still update its running
    statistics from the user's batches.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()
