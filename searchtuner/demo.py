"""The main job, end to end on this machine (``searchtuner demo`` / ``make demo``).

Today: convert a pretrained backbone into an embedding model, validate a labelled dataset,
embed it and score retrieval. Later stages (fine-tuning, the service) extend this job.
"""

from __future__ import annotations

import time

from searchtuner.data import LabeledDoc, validate
from searchtuner.datasets import load_supersense
from searchtuner.evaluation import retrieve
from searchtuner.models import build_model


def run_demo(backbone: str = "all-MiniLM-L6-v2", k: int = 10) -> dict[str, float]:
    """Run the demo and print each step; returns the retrieval metrics."""
    start = time.perf_counter()
    print(f"1. Converting {backbone} into an embedding model")
    model = build_model(backbone)
    summary = model.summary()
    print(
        f"   {summary.modality} model, {summary.embedding_dim}-d embeddings, "
        f"{summary.total_params:,} parameters ({summary.trainable_params:,} trainable), "
        f"pooling={model.spec.pooling}, normalize={model.spec.normalize}"
    )

    print("\n2. Validating the WordNet definition → supersense data (train and held-out)")
    train = [LabeledDoc(text=text, label=label) for text, label in load_supersense("train")]
    test = [LabeledDoc(text=text, label=label) for text, label in load_supersense("test")]
    report = validate(train, test)
    print("   " + str(report).replace("\n", "\n   "))
    report.raise_for_errors()

    print(
        f"\n3. Embedding {len(test):,} held-out definitions; each one is a query against the rest"
    )
    result, _ = retrieve(model, test, k=k)
    print(f"   {result.n_queries} queries, {len(set(d.label for d in test))} labels")
    for name, value in result.metrics.items():
        print(f"   {name:<16} {value:.4f}")
    print("\n   Example query and its top 3 results:")
    hits = result.topk_indices[0][:3]
    print(f"   query  [{test[0].label}] {test[0].text}")
    for rank, idx in enumerate(hits, 1):
        print(f"   {rank}.     [{test[idx].label}] {test[idx].text}")
    print(f"\nDone in {time.perf_counter() - start:.1f} s.")
    return result.metrics
