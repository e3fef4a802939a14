"""Random image augmentation on batches of tensors, for self-supervised two-view training.

Torch only: a random resized crop and a horizontal flip as one affine resampling
(``affine_grid`` + ``grid_sample``), then brightness and contrast jitter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from searchtuner.errors import ConfigError, DataError


class ImageAugment:
    """Random resized crop, horizontal flip and brightness/contrast jitter per image.

    Works on normalised pixel values ``(B, C, H, W)`` (per-channel mean removed, divided by
    the std), so the jitter is applied in those units:

    * crop: an area fraction ``s ~ U(scale)`` and an aspect ratio ``r ~ logU(ratio)`` give a
      window of ``sqrt(s r)`` × ``sqrt(s / r)`` of the image's width × height (capped at the
      whole image), placed uniformly at random, resampled bilinearly to ``size`` × ``size``;
    * flip: left-right with probability 1/2 when ``hflip``;
    * brightness: every pixel shifted by ``b ~ U(-j, j)`` (``j = color_jitter``), i.e. up to
      ``j`` standard deviations;
    * contrast: deviations from the image's mean scaled by ``c ~ U(1 - j, 1 + j)``.

    Args:
        size: side of the square output; pass the input's side to keep its shape.
        scale: range of the crop's area as a fraction of the image, within ``(0, 1]``.
        hflip: whether to flip half of the images left-right.
        color_jitter: strength ``j`` of brightness and contrast jitter, in ``[0, 1)``.
        seed: seed of a private generator, for reproducible views; None uses torch's
            global generator.
        ratio: range of the crop's aspect ratio (width / height); the default is
            torchvision's, ``(1, 1)`` gives square windows.

    Raises:
        ConfigError: if an argument is out of range.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.5, 1.0),
        hflip: bool = True,
        color_jitter: float = 0.4,
        seed: int | None = None,
        *,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"size must be a positive integer, got {size!r}")
        low, high = scale
        if not 0 < low <= high <= 1:
            raise ConfigError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"ratio must be (low, high) with 0 < low <= high, got {ratio!r}")
        if not 0 <= color_jitter < 1:
            raise ConfigError(f"color_jitter must be in [0, 1), got {color_jitter!r}")
        self.size = size
        self.scale = (float(low), float(high))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = bool(hflip)
        self.color_jitter = float(color_jitter)
        self.seed = seed
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, pixel_values: Tensor) -> Tensor:
        """One random view of every image.

        Args:
            pixel_values: ``(B, C, H, W)`` floating-point tensor.

        Returns:
            A new ``(B, C, size, size)`` tensor on the same device, of the same dtype.

        Raises:
            DataError: if the input is not a 4-D floating-point tensor.
        """
        if pixel_values.ndim != 4 or not pixel_values.is_floating_point():
            raise DataError(
                "pixel_values must be a floating-point (batch, channels, height, width) "
                f"tensor, got {pixel_values.dtype} of shape {tuple(pixel_values.shape)}"
            )
        batch = pixel_values.shape[0]
        theta = self._crop_and_flip(batch).to(pixel_values)
        grid = F.affine_grid(
            theta, [batch, pixel_values.shape[1], self.size, self.size], align_corners=False
        )
        out = F.grid_sample(
            pixel_values, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        if self.color_jitter > 0:
            j = self.color_jitter
            brightness = self._uniform(batch, -j, j).to(out).view(batch, 1, 1, 1)
            contrast = self._uniform(batch, 1 - j, 1 + j).to(out).view(batch, 1, 1, 1)
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = (out - mean) * contrast + mean + brightness
        return out

    def two_views(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """Two independent random views of the same images (for SimCLR-style training)."""
        return self(pixel_values), self(pixel_values)

    def _uniform(self, n: int, low: float, high: float) -> Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def _crop_and_flip(self, batch: int) -> Tensor:
        """``(B, 2, 3)`` affine maps from output to input coordinates in ``[-1, 1]``."""
        area = self._uniform(batch, *self.scale)
        log_ratio = self._uniform(batch, math.log(self.ratio[0]), math.log(self.ratio[1]))
        ratio = log_ratio.exp()
        width = (area * ratio).sqrt().clamp(max=1.0)
        height = (area / ratio).sqrt().clamp(max=1.0)
        # The window's centre keeps the window inside the image.
        centre_x = self._uniform(batch, -1.0, 1.0) * (1 - width)
        centre_y = self._uniform(batch, -1.0, 1.0) * (1 - height)
        flip = torch.ones(batch)
        if self.hflip:
            flip = torch.where(self._uniform(batch, 0.0, 1.0) < 0.5, -1.0, 1.0)
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0] = width * flip
        theta[:, 0, 2] = centre_x
        theta[:, 1, 1] = height
        theta[:, 1, 2] = centre_y
        return theta
