"""Datasets bundled with SearchTuner or derived from system packages."""

from searchtuner.datasets.wordnet import build_supersense_dataset, load_supersense

__all__ = ["build_supersense_dataset", "load_supersense"]
