"""The ``searchtuner`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from searchtuner.errors import SearchTunerError


def _models(args: argparse.Namespace) -> int:
    from searchtuner.models import list_models

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<20} {'modality':<8} {'dim':>5} {'params':>12}  description")
    for row in rows:
        params = f"{row['params']:,}" if row["params"] else "varies"
        print(
            f"{row['name']:<20} {row['modality']:<8} {row['embedding_dim']:>5} {params:>12}  "
            f"{row['description']}"
        )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from searchtuner.data import validate

    report = validate(args.data, args.eval_data, kind=args.kind)
    print(report.to_json() if args.json else report)
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace) -> int:
    from searchtuner.demo import run_demo

    run_demo(backbone=args.backbone, k=args.k, epochs=args.epochs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="searchtuner",
        description="Fine-tune pretrained models into embedding models for neural search.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the registered backbones")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_models)

    validate = commands.add_parser("validate", help="check a dataset and print its report")
    validate.add_argument("data", help="a CSV or JSONL file")
    validate.add_argument("--eval-data", help="evaluation data, checked for overlap")
    validate.add_argument(
        "--kind", help="labeled, pairs, text_image or unlabeled (default: inferred)"
    )
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(func=_validate)

    demo = commands.add_parser(
        "demo", help="the main job: convert a backbone, check data, fine-tune, compare retrieval"
    )
    demo.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    demo.add_argument("--backbone", default="all-MiniLM-L6-v2")
    demo.add_argument("--k", type=int, default=10, help="rank cut-off of the metrics")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SearchTunerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
