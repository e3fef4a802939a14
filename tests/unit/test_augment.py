"""ImageAugment: shapes, reproducibility and what each transform does."""

from __future__ import annotations

import pytest
import torch

from searchtuner.augment import ImageAugment
from searchtuner.errors import ConfigError, DataError


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16)


def test_same_shape_dtype_and_a_new_tensor(images: torch.Tensor) -> None:
    before = images.clone()
    out = ImageAugment(size=16, seed=0)(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert not torch.equal(out, images)
    assert torch.equal(images, before)


def test_resizes_to_size(images: torch.Tensor) -> None:
    assert ImageAugment(size=8)(images).shape == (4, 3, 8, 8)


def test_same_seed_same_views(images: torch.Tensor) -> None:
    first = ImageAugment(size=16, seed=7).two_views(images)
    second = ImageAugment(size=16, seed=7).two_views(images)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    other = ImageAugment(size=16, seed=8)(images)
    assert not torch.allclose(first[0], other)


def test_two_views_differ(images: torch.Tensor) -> None:
    view1, view2 = ImageAugment(size=16, seed=0).two_views(images)
    assert view1.shape == view2.shape == images.shape
    assert not torch.allclose(view1, view2)


def test_whole_image_without_flip_or_jitter_is_the_identity(images: torch.Tensor) -> None:
    augment = ImageAugment(16, scale=(1.0, 1.0), hflip=False, color_jitter=0.0, ratio=(1, 1))
    torch.testing.assert_close(augment(images), images, atol=1e-5, rtol=0)


def test_flip_mirrors_about_half_of_the_images() -> None:
    images = torch.randn(64, 3, 8, 8)
    augment = ImageAugment(8, scale=(1.0, 1.0), color_jitter=0.0, seed=1, ratio=(1, 1))
    out = augment(images)
    flipped = 0
    for image, view in zip(images, out, strict=True):
        if torch.allclose(view, image.flip(-1), atol=1e-5):
            flipped += 1
        else:
            torch.testing.assert_close(view, image, atol=1e-5, rtol=0)
    assert 16 < flipped < 48


def test_jitter_is_an_affine_change_of_each_image(images: torch.Tensor) -> None:
    augment = ImageAugment(16, scale=(1.0, 1.0), hflip=False, color_jitter=0.4, ratio=(1, 1))
    out = augment(images)
    for image, view in zip(images, out, strict=True):
        x, y = image.flatten(), view.flatten()
        contrast = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
        brightness = y.mean() - x.mean()
        assert 0.6 <= float(contrast) <= 1.4
        assert abs(float(brightness)) <= 0.4 + 1e-6
        torch.testing.assert_close(y, (x - x.mean()) * contrast + x.mean() + brightness)


def test_crop_zooms_in() -> None:
    # A horizontal ramp: a crop of part of the image spans a narrower range of values.
    ramp = torch.linspace(-1, 1, 32).expand(2, 3, 32, 32).contiguous()
    out = ImageAugment(32, scale=(0.25, 0.3), hflip=False, color_jitter=0.0, seed=0)(ramp)
    spans = out.amax(dim=(1, 2, 3)) - out.amin(dim=(1, 2, 3))
    assert (spans < 1.5).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": 8, "scale": (0.0, 1.0)},
        {"size": 8, "scale": (0.8, 0.5)},
        {"size": 8, "scale": (0.5, 1.5)},
        {"size": 8, "color_jitter": 1.0},
        {"size": 8, "ratio": (2.0, 1.0)},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ImageAugment(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [torch.randn(3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.uint8)])
def test_bad_input(bad: torch.Tensor) -> None:
    with pytest.raises(DataError):
        ImageAugment(8)(bad)
