"""The CUDA path of training: bf16 autocast by default, a hot loop that never waits for the
GPU, and data-parallel training over NCCL with two GPUs. Skipped where CUDA is absent."""

from __future__ import annotations

import json
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import searchtuner
from searchtuner.training import Callback, Precision, Progress, Trainer, TrainState
from tests.integration.distributed_script import losses, run, setup, tiny_berts
from tests.integration.torchrun_launch import finish, script_args, start, torchrun

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

REPO = Path(searchtuner.__file__).resolve().parent


@pytest.fixture(scope="module")
def berts(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> tuple[Path, Path]:
    return tiny_berts(tmp_path_factory.mktemp("berts"), minilm_dir)


class _SyncWatch(Callback):
    """Reports GPU synchronisations between the start and the end of each step.

    The first step (lazy set-up) and the last one (its progress record reads the loss) are
    left out; with ``log_every_steps`` beyond the run, no step in between may wait.
    """

    def on_train_batch_begin(self, trainer: Trainer, state: TrainState) -> None:
        if 1 <= state.global_step < trainer.total_steps - 1:
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.fixture
def syncs() -> Iterator[list[list[traceback.FrameSummary]]]:
    """The Python stack of every synchronising CUDA call warned about while the test runs."""
    found: list[list[traceback.FrameSummary]] = []

    def show(message: Any, category: Any, filename: str, lineno: int, *args: Any) -> None:
        if "synchroniz" in str(message):
            found.append(traceback.extract_stack()[:-1])

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield found
    torch.cuda.set_sync_debug_mode("default")


def _caller(stack: list[traceback.FrameSummary]) -> str:
    """The innermost frame outside torch: the code that made torch wait."""
    torch_dir = str(Path(torch.__file__).resolve().parent)
    for frame in reversed(stack):
        if not str(Path(frame.filename).resolve()).startswith(torch_dir):
            return frame.filename
    return "?"


def test_bf16_autocast_by_default_and_no_waiting_in_the_loop(
    berts: tuple[Path, Path], syncs: list[list[traceback.FrameSummary]]
) -> None:
    # The detector works: a read of a GPU value from this file is seen.
    torch.cuda.set_sync_debug_mode("warn")
    torch.ones(1, device="cuda").sum().item()
    torch.cuda.set_sync_debug_mode("default")
    assert [Path(_caller(s)).resolve() for s in syncs] == [Path(__file__).resolve()]
    syncs.clear()

    model, docs, config = setup("pairs", *berts, device="cuda")
    config = config.model_copy(update={"log_every_steps": 1000, "max_steps": 6})
    dtypes: list[torch.dtype] = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    trainer = Trainer(
        model, docs, config=config, callbacks=[Progress(lambda r: None), _SyncWatch()]
    )
    assert config.precision is Precision.AUTO and trainer.precision is Precision.BF16
    result = trainer.fit()
    assert dtypes and set(dtypes) == {torch.bfloat16}  # its layers ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert len(losses(result.logs)) == 1 and torch.isfinite(torch.tensor(result.state.loss))
    ours = [_caller(s) for s in syncs if _caller(s).startswith(str(REPO))]
    assert not ours, f"the training loop waits for the GPU at: {ours}"


def test_fp32_on_request_and_the_loss_curve_of_the_cpu(
    berts: tuple[Path, Path], tmp_path: Path
) -> None:
    gpu = run("pairs", *berts, tmp_path, device="cuda", precision="fp32")
    cpu = run("pairs", *berts, tmp_path, device="cpu")
    assert gpu["precision"] == "fp32"
    assert gpu["losses"] == pytest.approx(cpu["losses"], rel=1e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-3), ("auto", 5e-2)])
def test_two_gpus_over_nccl_follow_the_loss_curve_of_one(
    berts: tuple[Path, Path], tmp_path: Path, precision: str, tolerance: float
) -> None:
    out = tmp_path / "two-gpus"
    out.mkdir()
    command = torchrun("--standalone", "--nproc-per-node=2")
    command += script_args(out, berts, "labels", "pairs", device="cuda", precision=precision)
    finish([start(command)])
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]
    for name in ("labels", "pairs"):
        found = json.loads((out / f"{name}.json").read_text())
        assert (found["world_size"], found["backend"], found["device"]) == (2, "nccl", "cuda:0")
        reference = run(name, *berts, tmp_path, device="cuda", precision=precision)
        assert found["precision"] == reference["precision"]
        assert found["precision"] == ("fp32" if precision == "fp32" else "bf16")
        assert found["losses"] == pytest.approx(reference["losses"], rel=tolerance)
        assert len({r["digests"][name] for r in ranks}) == 1  # the same weights on both GPUs
    assert [r["env"]["local_rank"] for r in ranks] == [0, 1]
