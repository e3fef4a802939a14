"""Run requests: malformed ones fail at once, with messages that say what to change."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from searchtuner.errors import ConfigError
from searchtuner.runs import RunRequest, registered_model_name, validate_request
from searchtuner.store import Store
from tests.unit.runs.helpers import DIM, OWNER, clusters, mlp_request, upload


@pytest.fixture
def handles(store: Store) -> tuple[str, str]:
    return upload(store, clusters(16)), upload(store, clusters(8, seed=1))


def _request(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "mlp",
        "model_options": {"input_dim": DIM},
        "train_data": "std1:" + "0" * 64,
    }
    return {**base, **changes}


def test_a_valid_request_is_summarised(store: Store, handles: tuple[str, str]) -> None:
    train, evaluation = handles
    request = mlp_request(train, eval_data=evaluation)
    summary = validate_request(request, store.for_owner(OWNER))
    assert summary["model"] == "mlp"
    assert (summary["train_items"], summary["eval_items"], summary["kind"]) == (16, 8, "labeled")
    assert summary["embedding_dim"] == 16
    assert summary["parameters"] == summary["trainable_parameters"] == DIM * 16 + 16
    assert request.train_config().batch_size == 8


def test_registered_names_match_loosely() -> None:
    assert registered_model_name("MLP") == "mlp"
    assert registered_model_name("sentence-transformers/all-minilm-l6-v2") == "all-MiniLM-L6-v2"


def test_an_unknown_model_lists_the_names_and_suggests_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'all-MiniLM-L6-v2'") as caught:
        registered_model_name("all-MiniLM-L12-v2")
    assert "allowed: all-MiniLM-L6-v2, efficientnet-lite0, mobilenet_v2, mlp" in str(caught.value)


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "./models/mine", "../x/all-MiniLM-L6-v2", "a/b/mlp", "~/m", "C:\\m"]
)
def test_a_filesystem_path_is_never_a_model(path: str) -> None:
    with pytest.raises(ConfigError, match=r"looks like a file path.*never reads files"):
        registered_model_name(path)


def test_unknown_model_option_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"model_options: unknown option\(s\) pool;") as caught:
        RunRequest(**_request(model_options={"pool": "mean"}))
    assert "allowed: pooling, freeze, output_dim" in str(caught.value)
    with pytest.raises(ConfigError, match="set device in config"):
        RunRequest(**_request(model_options={"device": "cuda"}))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"hidden_dims": np.array([4])}, "only JSON values"),
        ({"output_dim": float("nan")}, "finite number"),
        ({"freeze": {1: True}}, "keys must be strings"),
    ],
)
def test_model_options_must_be_json(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        RunRequest(**_request(model_options=options))


def test_bad_fields_are_named() -> None:
    with pytest.raises(ConfigError, match="train_data: required"):
        RunRequest(model="mlp")
    with pytest.raises(ConfigError, match="epochs: unknown field; allowed: model, model_options"):
        RunRequest(**_request(epochs=3))
    with pytest.raises(ConfigError, match="checkpoint_every_steps: Input should be greater"):
        RunRequest(**_request(checkpoint_every_steps=0))
    with pytest.raises(ConfigError, match="must be a JSON object"):
        RunRequest.from_dict(["mlp"])


def test_training_parameters_are_checked(store: Store) -> None:
    mine = store.for_owner(OWNER)
    with pytest.raises(ConfigError, match=r"epochs: Input should be greater than or equal to 1"):
        validate_request(RunRequest(**_request(config={"epochs": 0})), mine)
    with pytest.raises(ConfigError, match="epoch: unknown training parameter; allowed:"):
        validate_request(RunRequest(**_request(config={"epoch": 2})), mine)
    with pytest.raises(ConfigError, match="checkpoint_dir is set by the service"):
        RunRequest(**_request(config={"checkpoint_dir": "/tmp/x"}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_where_there_is_none_is_refused(store: Store) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available here; use 'cpu'"):
        validate_request(RunRequest(**_request(config={"device": "cuda"})), store.for_owner(OWNER))


def test_options_that_do_not_fit_the_backbone_fail_before_queueing(store: Store) -> None:
    mine = store.for_owner(OWNER)
    with pytest.raises(ConfigError, match="model_options do not fit mlp: the mlp backbone needs"):
        validate_request(RunRequest(**_request(model_options={})), mine)
    request = RunRequest(**_request(model_options={"input_dim": DIM, "max_length": 8}))
    with pytest.raises(ConfigError, match="max_length does not apply to mlp"):
        validate_request(request, mine)


def test_missing_datasets_say_how_to_upload(store: Store, handles: tuple[str, str]) -> None:
    train, _ = handles
    missing = "std1:" + "f" * 64
    upload_hint = "upload it first with POST /datasets or searchtuner.Client.upload"
    with pytest.raises(ConfigError, match=f"dataset {missing} not found.*{upload_hint}"):
        validate_request(mlp_request(missing), store.for_owner(OWNER))
    with pytest.raises(ConfigError, match="eval_data"):
        validate_request(mlp_request(train, eval_data=missing), store.for_owner(OWNER))
    # Another owner cannot train on alice's dataset, and is told the same thing.
    with pytest.raises(ConfigError, match=f"dataset {train} not found"):
        validate_request(mlp_request(train), store.for_owner("mallory"))
