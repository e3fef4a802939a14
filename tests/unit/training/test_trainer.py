"""The training loop: it learns, resumes exactly, stops early, and fails fast on bad config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import searchtuner
from searchtuner import ConfigError
from searchtuner.data import LabeledDoc, PairDoc, TextImageDoc, UnlabeledDoc
from searchtuner.models.dual_encoder import DualEncoder
from searchtuner.training import Callback, Progress, TrainConfig, Trainer, TrainState, train

QUIET = [Progress(lambda record: None)]
WORDS = [
    *("red", "green", "blue", "cat", "dog", "fish", "oak", "pine", "rose", "lake", "hill"),
    *("road", "bread", "milk", "rice", "iron", "gold", "salt", "wind", "rain", "snow", "star"),
    *("moon", "sun"),
]


def _clusters(n_labels: int = 4, per_label: int = 8, dim: int = 16) -> list[LabeledDoc]:
    """Random vectors: neighbours are not of the same label until the model learns."""
    rng = np.random.default_rng(0)
    return [
        LabeledDoc(tensor=rng.normal(size=dim).astype(np.float32), label=f"c{label}")
        for label in range(n_labels)
        for _ in range(per_label)
    ]


def _word_texts(n_labels: int = 4, per_label: int = 8, topical: int = 3) -> list[LabeledDoc]:
    """Texts of ``topical`` words from their label's topic among random other words."""
    rng = np.random.default_rng(1)
    docs = []
    for label in range(n_labels):
        topic = WORDS[label * 5 : label * 5 + 5]
        for _ in range(per_label):
            words = list(rng.choice(topic, topical)) + list(rng.choice(WORDS, 5 - topical))
            docs.append(LabeledDoc(text=" ".join(words), label=f"t{label}"))
    return docs


def test_overfit_every_item_is_closest_to_its_own_class() -> None:
    docs = _clusters()
    model = searchtuner.build_model("mlp", input_dim=16, hidden_dims=[64, 32])
    config = TrainConfig(epochs=60, batch_size=16, samples_per_label=4, learning_rate=3e-3,
                         warmup_ratio=0.0, miner="all")  # fmt: skip
    result = train(model, docs, config=config, callbacks=QUIET)
    emb = searchtuner.encode(model, docs)
    labels = np.array([d.label for d in docs])
    centroids = {label: emb[labels == label].mean(0) for label in set(labels)}
    for vector, label in zip(emb, labels, strict=True):
        own = vector @ centroids[label]
        others = max(vector @ c for other, c in centroids.items() if other != label)
        assert own > others
    assert result.state.global_step == 60 * 2


def test_training_improves_retrieval_on_held_out_text(tiny_bert_dir: Path) -> None:
    docs = _word_texts(per_label=12, topical=2)
    train_docs = [d for i, d in enumerate(docs) if i % 3]
    eval_docs = [d for i, d in enumerate(docs) if not i % 3]
    model = searchtuner.build_model(tiny_bert_dir)
    # A random tiny BERT knows no words: here its token embeddings must learn too.
    config = TrainConfig(epochs=8, batch_size=16, learning_rate=1e-3, miner="hard",
                         freeze_token_embeddings=False)  # fmt: skip
    result = train(model, train_docs, eval_data=eval_docs, config=config, callbacks=QUIET)
    before, after = result.metrics_before, result.metrics_after
    assert before is not None and after is not None
    assert after["map@10"] > before["map@10"] + 0.1
    assert len(result.state.evaluations) == 8  # one per epoch (before training is separate)


def _tiny_bert_run(folder: Path, steps: int, **config: object) -> Trainer:
    model = searchtuner.build_model(folder)
    trainer = Trainer(model, _word_texts(), config=TrainConfig(
        epochs=3, batch_size=8, learning_rate=1e-3, seed=3, max_steps=steps, **config,
    ), callbacks=QUIET)  # fmt: skip
    return trainer


class _CrashAt(Callback):
    """Dies after a given step, as a killed worker would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None:
        if state.global_step == self.step:
            raise RuntimeError("worker killed")


def test_a_resumed_run_ends_with_the_same_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # Uninterrupted: 9 steps (3 epochs of 4 batches, cut at 9), dropout on throughout.
    straight = _tiny_bert_run(tiny_bert_dir, 9)
    straight.fit()
    # Interrupted after step 5 (mid-epoch), then resumed from its checkpoint in a new trainer.
    first = _tiny_bert_run(tiny_bert_dir, 9, checkpoint_dir=str(tmp_path), checkpoint_every_steps=5)
    first.callbacks.append(_CrashAt(5))
    with pytest.raises(RuntimeError, match="worker killed"):
        first.fit()
    checkpoint = tmp_path / "step-00000005.pt"
    assert checkpoint.is_file()
    torch.manual_seed(1234)  # the resumed process starts from another random state
    resumed = _tiny_bert_run(tiny_bert_dir, 9)
    resumed.fit(resume_from=checkpoint)
    assert resumed.state.global_step == 9
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    assert any(r["event"] == "resumed" for r in resumed.logs)


def test_early_stopping_ends_training(tiny_bert_dir: Path) -> None:
    docs = _word_texts()
    model = searchtuner.build_model(tiny_bert_dir)
    config = TrainConfig(epochs=5, batch_size=8, learning_rate=1e-12, eval_every_steps=1,
                         early_stopping_patience=2)  # fmt: skip
    result = train(model, docs, eval_data=docs, config=config, callbacks=QUIET)
    # A learning rate this small changes nothing, so the metric never beats its first value.
    assert result.state.global_step == 2
    assert result.state.stop_reason is not None
    assert "early stopping" in result.state.stop_reason


def test_best_model_is_restored(tiny_bert_dir: Path) -> None:
    docs = _word_texts()
    model = searchtuner.build_model(tiny_bert_dir)
    config = TrainConfig(epochs=3, batch_size=8, learning_rate=5e-3, eval_every_steps=2)
    result = train(model, docs, eval_data=docs, config=config, callbacks=QUIET)
    best = max(e["metrics"]["map@10"] for e in result.state.evaluations)
    assert result.state.best_metric == pytest.approx(max(best, result.metrics_before["map@10"]))
    assert result.metrics_after["map@10"] == pytest.approx(result.state.best_metric)


def _pairs() -> list[PairDoc]:
    rng = np.random.default_rng(2)
    pairs = []
    for i in range(24):
        words = list(rng.choice(WORDS, 4, replace=False))
        pairs.append(PairDoc(query=f"{words[0]} {words[1]}",
                             document=" ".join(words) + f" item {i}"))  # fmt: skip
    return pairs


@pytest.mark.parametrize(
    "loss", ["MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"]
)
def test_pairs_training_lowers_the_loss_and_improves_retrieval(
    tiny_bert_dir: Path, loss: str
) -> None:
    pairs = _pairs()
    model = searchtuner.build_model(tiny_bert_dir)
    options = {"mini_batch_size": 4} if loss.startswith("Cached") else {}
    config = TrainConfig(epochs=15, batch_size=8, learning_rate=2e-3, loss=loss,
                         loss_options=options, log_every_steps=3)  # fmt: skip
    result = train(model, pairs, eval_data=pairs, config=config, callbacks=QUIET)
    losses = [r["loss"] for r in result.logs if r["event"] == "progress"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert result.metrics_after["mrr@10"] > result.metrics_before["mrr@10"] + 0.1


def _colour_images() -> list[TextImageDoc]:
    import io

    from PIL import Image

    colours = {
        "red": (220, 20, 20),
        "green": (20, 200, 20),
        "blue": (20, 20, 220),
        "yellow": (230, 230, 20),
        "black": (10, 10, 10),
        "white": (245, 245, 245),
    }
    shapes = ["square", "stripe"]
    docs = []
    for name, rgb in colours.items():
        for shape in shapes:
            pixels = np.full((16, 16, 3), rgb, dtype=np.uint8)
            if shape == "stripe":
                pixels[::4] = 128
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            docs.append(TextImageDoc(text=f"a {name} {shape}", image=buffer.getvalue()))
    return docs


def test_clip_training_on_a_dual_encoder(tiny_bert_dir: Path) -> None:
    docs = _colour_images()
    text = searchtuner.build_model(tiny_bert_dir, output_dim=16)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    image = searchtuner.build_model(cnn, layer="1", input_shape=(3, 16, 16), modality="image",
                                    output_dim=16)  # fmt: skip
    model = DualEncoder(text, image)
    config = TrainConfig(epochs=30, batch_size=6, learning_rate=3e-3, log_every_steps=2,
                         loss_learning_rate=1e-2)  # fmt: skip
    trainer = Trainer(model, docs, eval_data=docs, config=config, callbacks=QUIET)
    scale_before = [p.detach().clone() for p in trainer.task.loss_fn.parameters()]
    result = trainer.fit()
    losses = [r["loss"] for r in result.logs if r["event"] == "progress"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert result.metrics_after["mrr@10"] > result.metrics_before["mrr@10"]
    # The learnable temperature has its own optimizer group, and it moved.
    assert len(scale_before) == 1
    assert not torch.equal(scale_before[0], next(trainer.task.loss_fn.parameters()).detach())


def test_simcse_on_unlabelled_text(tiny_bert_dir: Path) -> None:
    docs = [UnlabeledDoc(text=d.text) for d in _word_texts()]
    model = searchtuner.build_model(tiny_bert_dir)
    config = TrainConfig(epochs=4, batch_size=8, learning_rate=1e-3, log_every_steps=1)
    result = train(model, docs, config=config, callbacks=QUIET)
    losses = [r["loss"] for r in result.logs if r["event"] == "progress"]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


def test_loss_with_parameters_gets_its_own_optimizer_group() -> None:
    docs = _clusters()
    model = searchtuner.build_model("mlp", input_dim=16)
    trainer = Trainer(
        model,
        docs,
        config=TrainConfig(loss="ArcFaceLoss", batch_size=16, loss_learning_rate=0.05),
        callbacks=QUIET,
    )
    centres = trainer.task.loss_fn.W.detach().clone()
    assert trainer.optimizer.param_groups[-1]["lr"] == 0.05
    trainer.fit()
    assert not torch.equal(centres, trainer.task.loss_fn.W.detach())


def test_wise_ft_alpha_zero_gives_back_the_pretrained_backbone() -> None:
    docs = _clusters()
    model = searchtuner.build_model("mlp", input_dim=16, output_dim=8)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.projection.weight.detach().clone()
    train(model, docs, config=TrainConfig(batch_size=16, epochs=3, learning_rate=1e-2,
                                          wise_ft_alpha=0.0), callbacks=QUIET)  # fmt: skip
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(model.projection.weight, head_before)  # new layers keep their training


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"loss": "TripletLoss"}, "allowed:"),
        ({"miner": "hardest"}, "allowed: "),
        ({"optimizer": "Adamm"}, "did you mean 'Adam'"),
        ({"scheduler": "exponential"}, "scheduler"),
        ({"learning_rate": -1e-5}, "learning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"batch_szie": 8}, "unknown training parameter"),
        ({"precision": "bf16"}, "for CUDA devices"),
        ({"distance": "manhattan"}, "allowed: cosine"),
    ],
)
def test_bad_config_fails_fast_and_says_what_is_allowed(
    params: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        TrainConfig.from_dict(params)


def test_batch_larger_than_the_data_is_refused() -> None:
    model = searchtuner.build_model("mlp", input_dim=16)
    with pytest.raises(searchtuner.SearchTunerError, match="batch"):
        train(model, _clusters(n_labels=2, per_label=4), config=TrainConfig(batch_size=64),
              callbacks=QUIET)  # fmt: skip


def test_a_seeded_run_is_reproducible(tiny_bert_dir: Path) -> None:
    def run() -> dict[str, torch.Tensor]:
        trainer = _tiny_bert_run(tiny_bert_dir, 4)
        trainer.fit()
        return trainer.model.state_dict()

    first, second = run(), run()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_self_supervised_images_train_on_augmented_views() -> None:
    rng = np.random.default_rng(0)
    docs = [
        UnlabeledDoc(tensor=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(16)
    ]
    model = searchtuner.build_model("mobilenet_v2", pretrained=False, image_size=32, output_dim=16)
    config = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, log_every_steps=1)
    result = train(model, docs, config=config, callbacks=QUIET)
    losses = [r["loss"] for r in result.logs if r["event"] == "progress"]
    assert len(losses) == 2
    assert all(np.isfinite(losses))


def test_gradient_accumulation_takes_one_step_per_group_of_batches() -> None:
    docs = _clusters(n_labels=4, per_label=16)
    model = searchtuner.build_model("mlp", input_dim=16)
    config = TrainConfig(epochs=1, batch_size=8, gradient_accumulation_steps=2)
    trainer = Trainer(model, docs, config=config, callbacks=QUIET)
    batches = len(trainer.sampler)
    result = trainer.fit()
    assert batches == 8
    assert result.state.global_step == batches // 2
    assert result.state.samples_seen == batches * 8


def test_micro_batches_left_over_after_the_last_full_step_are_not_run() -> None:
    """8 batches, 3 per step: 2 steps of 6 batches; the 2 left over would otherwise leave a
    gradient behind that the next epoch's first step adds in."""
    docs = _clusters(n_labels=4, per_label=16)
    model = searchtuner.build_model("mlp", input_dim=16)
    config = TrainConfig(epochs=1, batch_size=8, gradient_accumulation_steps=3)
    trainer = Trainer(model, docs, config=config, callbacks=QUIET)
    result = trainer.fit()

    assert len(trainer.sampler) == 8
    assert result.state.global_step == 2
    assert result.state.samples_seen == 6 * 8
    assert all(p.grad is None or not p.grad.any() for p in trainer.model.parameters())


def test_augmented_views_are_drawn_from_the_batch_position_and_the_rank() -> None:
    """The self-supervised image task's views: the same for a batch position however the run
    got there (resume), another stream on another rank."""
    rng = np.random.default_rng(0)
    docs = [
        UnlabeledDoc(tensor=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(16)
    ]
    model = searchtuner.build_model("mobilenet_v2", pretrained=False, image_size=32, output_dim=16)
    trainer = Trainer(model, docs, config=TrainConfig(batch_size=8), callbacks=QUIET)
    generator = trainer.task.augment.generator

    def draw(epoch: int, batch: int) -> torch.Tensor:
        trainer._seed_batch(epoch, batch)
        return torch.rand(4, generator=generator)

    first = draw(0, 1)
    draw(0, 0), draw(3, 2)  # other batches in between
    assert torch.equal(draw(0, 1), first)
    assert not torch.equal(draw(0, 2), first)
    trainer.rank = 1
    assert not torch.equal(draw(0, 1), first)


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant"])
def test_schedules_warm_up_then_follow_their_shape(scheduler: str) -> None:
    model = searchtuner.build_model("mlp", input_dim=16)
    config = TrainConfig(scheduler=scheduler, warmup_ratio=0.25, batch_size=8, epochs=5)
    trainer = Trainer(model, _clusters(), config=config, callbacks=QUIET)
    total = trainer.total_steps
    factors = [trainer._lr_factor(step) for step in range(total)]
    warmup = int(0.25 * total)
    assert factors[:warmup] == sorted(factors[:warmup])  # rising
    assert factors[warmup] == pytest.approx(1.0)
    tail = factors[warmup:]
    if scheduler == "constant":
        assert all(f == pytest.approx(1.0) for f in tail)
    else:
        assert tail == sorted(tail, reverse=True)
        assert tail[-1] < 0.2
