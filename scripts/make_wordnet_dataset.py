"""Derive data/wordnet_supersense/{train,test}.csv and its README from WordNet 3.0.

Needs the WordNet database (Debian: `apt-get install wordnet-base`) and SearchTuner
installed (`pip install -e .`). Run from anywhere:

    python scripts/make_wordnet_dataset.py

The output is deterministic: the same WordNet files and arguments give the same bytes.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from searchtuner.datasets.wordnet import (
    DEFAULT_WORDNET_DIR,
    build_supersense_dataset,
    unique_definitions_by_class,
    write_supersense_csv,
)
from searchtuner.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "data" / "wordnet_supersense"


def licence_notice(wordnet_dir: Path) -> str:
    """Princeton's licence and copyright notice, as carried in the header of data.noun."""
    lines = []
    with (wordnet_dir / "data.noun").open(encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("  "):
                break
            # Header lines are "  NN text  "; drop the line number and padding.
            _, _, text = line.strip().partition(" ")
            lines.append(text.strip())
    if not lines:
        raise DataError(f"{wordnet_dir / 'data.noun'} has no licence header; reinstall WordNet")
    return "\n".join(lines).strip()


def render_readme(
    train: list[tuple[str, str]],
    test: list[tuple[str, str]],
    available: dict[str, int],
    needed: int,
    notice: str,
    args: argparse.Namespace,
) -> str:
    """The dataset card: what, how derived, class table, licence."""
    chosen = sorted({label for _, label in train})
    n_train = Counter(label for _, label in train)
    n_test = Counter(label for _, label in test)
    qualified = [label for label, n in available.items() if n >= needed]
    left_out = sorted(set(qualified) - set(chosen))
    too_small = sorted(label for label, n in available.items() if n < needed)
    table = [
        "| supersense | unique definitions in WordNet | train | test |",
        "| --- | ---: | ---: | ---: |",
    ]
    table += [
        f"| {label} | {available[label]} | {n_train[label]} | {n_test[label]} |" for label in chosen
    ]
    quoted_notice = "\n".join(f"    {line}" if line else "" for line in notice.splitlines())

    def listing(labels: list[str]) -> str:
        return ", ".join(f"{label} ({available[label]})" for label in labels) or "none"

    return f"""# WordNet definition → supersense

A balanced text dataset for tuning and evaluating embedding models for search: each row
pairs a WordNet 3.0 definition with its synset's *supersense* (the lexicographer file it
belongs to, e.g. `noun.animal`, `verb.motion`). Definitions with the same supersense are
relevant to each other; train a model on `train.csv`, then use each `test.csv` definition
as a query against the other test definitions.

| file | rows | classes | per class |
| --- | ---: | ---: | ---: |
| `train.csv` | {len(train)} | {len(chosen)} | {args.n_train} |
| `test.csv` | {len(test)} | {len(chosen)} | {args.n_test} |

Columns: `text` (the definition), `label` (the supersense). UTF-8, comma-separated, quoted
by Python's `csv` module where needed; rows sorted by label, then text. Load it with
`searchtuner.datasets.load_supersense("train")` (or `"test"`).

## How it was derived

    python scripts/make_wordnet_dataset.py --n-classes {args.n_classes} \\
        --n-train {args.n_train} --n-test {args.n_test} --seed {args.seed}

from the WordNet 3.0 database of the Debian package `wordnet-base`
(`data.noun`, `data.verb`, `data.adj`, `data.adv`), with
`searchtuner.datasets.wordnet.build_supersense_dataset`:

1. For every synset, the label is the name of its lexicographer file number (second field
   of the data line; names from lexnames(5)); the definition is the gloss (after ` | `) up
   to the first `; "` that starts an example sentence, with surrounding whitespace removed.
   A few glosses give an example without that separator; those examples stay in the text.
2. Definitions found in more than one synset are dropped, so no text has two labels and
   the splits cannot share a text.
3. Of the {len(qualified)} supersenses with at least {needed} unique definitions
   ({args.n_train} + {args.n_test}), the {len(chosen)} with the most are kept.
4. Each kept class's definitions are sorted and sampled with `random.Random({args.seed})`
   (classes in name order): the first {args.n_train} go to train, the next {args.n_test} to test.

The tests re-derive both files and check they match byte for byte where WordNet is
installed.

## Classes

{chr(10).join(table)}

Qualified but not kept (fewer unique definitions): {listing(left_out)}.
Too small (fewer than {needed} unique definitions): {listing(too_small)}.

## Licence

The definitions are taken from WordNet 3.0, which Princeton University distributes under
the licence below. It permits redistribution provided this notice accompanies every copy:

{quoted_notice}
"""


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the dataset, write the two CSVs and the README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=Path(DEFAULT_WORDNET_DIR))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--n-classes", type=int, default=40)
    parser.add_argument("--n-train", type=int, default=50, help="definitions per class")
    parser.add_argument("--n-test", type=int, default=25, help="definitions per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, test = build_supersense_dataset(
        args.wordnet_dir,
        n_classes=args.n_classes,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
    )
    available = {
        label: len(defs) for label, defs in unique_definitions_by_class(args.wordnet_dir).items()
    }
    write_supersense_csv(train, args.out / "train.csv")
    write_supersense_csv(test, args.out / "test.csv")
    readme = render_readme(
        train,
        test,
        available,
        args.n_train + args.n_test,
        licence_notice(args.wordnet_dir),
        args,
    )
    (args.out / "README.md").write_text(readme, encoding="utf-8")
    print(f"wrote {len(train)} train and {len(test)} test rows to {args.out}")


if __name__ == "__main__":
    main()
