"""Progress bars (tqdm) that cost nothing when switched off."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(
    enabled: bool, *, total: float | None = None, unit: str = "it", desc: str = ""
) -> tqdm[Any]:
    """A tqdm bar on stderr; ``enabled=False`` gives one that shows nothing.

    Byte counts (``unit="B"``) are shown scaled (kB, MB...).
    """
    return tqdm(
        total=total,
        unit=unit,
        unit_scale=unit == "B",
        desc=desc,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )
