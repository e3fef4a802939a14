"""The main job, end to end on this machine (``searchtuner demo`` / ``make demo``).

Convert a pretrained backbone into an embedding model, validate a labelled dataset, score
retrieval, fine-tune with contrastive metric learning, and show what changed. Later stages
(the service) run the same job behind a gateway.
"""

from __future__ import annotations

import time
from typing import Any

from searchtuner.data import LabeledDoc, validate
from searchtuner.datasets import load_supersense
from searchtuner.models import build_model
from searchtuner.training import TrainConfig, train


def run_demo(
    backbone: str = "all-MiniLM-L6-v2", k: int = 10, epochs: int = 1, **training: Any
) -> dict[str, dict[str, float] | None]:
    """Run the demo, printing each step; returns the metrics before and after fine-tuning."""
    start = time.perf_counter()
    print(f"1. Converting {backbone} into an embedding model")
    model = build_model(backbone, max_length=64)
    summary = model.summary()
    print(
        f"   {summary.modality} model, {summary.embedding_dim}-d embeddings, "
        f"{summary.total_params:,} parameters ({summary.trainable_params:,} trainable), "
        f"pooling={model.spec.pooling}, normalize={model.spec.normalize}"
    )

    print("\n2. Validating WordNet definitions labelled with their supersense (train, held-out)")
    train_docs = [LabeledDoc(text=t, label=label) for t, label in load_supersense("train")]
    test_docs = [LabeledDoc(text=t, label=label) for t, label in load_supersense("test")]
    report = validate(train_docs, test_docs)
    print("   " + str(report).replace("\n", "\n   "))
    report.raise_for_errors()

    print(
        f"\n3. Fine-tuning on {len(train_docs):,} definitions ({epochs} epoch(s)); each of the "
        f"{len(test_docs):,} held-out definitions is a query against the others"
    )
    config = TrainConfig(epochs=epochs, eval_k=k, log_every_steps=8, **training)
    result = train(model, train_docs, eval_data=test_docs, config=config)
    print(f"   {result.samples_per_second:.1f} training samples/s")

    print("\n4. Before and after fine-tuning (held-out queries)")
    if result.comparison is not None:
        print("   " + str(result.comparison).replace("\n", "\n   "))
    print(f"\nDone in {time.perf_counter() - start:.1f} s.")
    return {"before": result.metrics_before, "after": result.metrics_after}
