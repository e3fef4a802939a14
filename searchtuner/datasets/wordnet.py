"""WordNet definition → supersense: a small text-classification set for tuning search models.

Each row pairs a WordNet 3.0 definition (gloss without its examples) with the supersense of
its synset, i.e. the name of the lexicographer file it comes from, such as ``noun.animal``.
Definitions of the same supersense count as relevant to each other, so a model tuned on the
train split should rank same-supersense definitions first for held-out test definitions.

The committed CSVs (``data/wordnet_supersense/{train,test}.csv``) are read with
:func:`load_supersense`; :func:`build_supersense_dataset` re-derives them from the WordNet
database files (Debian package ``wordnet-base``).
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from searchtuner.errors import ConfigError, DataError, invalid_choice

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_WORDNET_DIR",
    "LEXNAMES",
    "build_supersense_dataset",
    "load_supersense",
    "parse_definition",
    "read_lexnames",
    "read_synset_definitions",
    "supersense_data_dir",
    "unique_definitions_by_class",
    "write_supersense_csv",
]

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
DATA_DIR_ENV = "SEARCHTUNER_DATA_DIR"
"""Environment variable naming the data root that holds ``wordnet_supersense/``."""

_SUBDIR = "wordnet_supersense"
_SPLITS = ("train", "test")
_HEADER = ["text", "label"]
_POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_INSTALL_HINT = "install WordNet with `apt-get install wordnet-base` or pass wordnet_dir"

LEXNAMES: dict[int, str] = dict(
    enumerate(
        [
            "adj.all",
            "adj.pert",
            "adv.all",
            "noun.Tops",
            "noun.act",
            "noun.animal",
            "noun.artifact",
            "noun.attribute",
            "noun.body",
            "noun.cognition",
            "noun.communication",
            "noun.event",
            "noun.feeling",
            "noun.food",
            "noun.group",
            "noun.location",
            "noun.motive",
            "noun.object",
            "noun.person",
            "noun.phenomenon",
            "noun.plant",
            "noun.possession",
            "noun.process",
            "noun.quantity",
            "noun.relation",
            "noun.shape",
            "noun.state",
            "noun.substance",
            "noun.time",
            "verb.body",
            "verb.change",
            "verb.cognition",
            "verb.communication",
            "verb.competition",
            "verb.consumption",
            "verb.contact",
            "verb.creation",
            "verb.emotion",
            "verb.motion",
            "verb.perception",
            "verb.possession",
            "verb.social",
            "verb.stative",
            "verb.weather",
            "adj.ppl",
        ]
    )
)
"""The 45 lexicographer file numbers of WordNet 3.0 and their names (lexnames(5))."""


def parse_definition(gloss: str) -> str:
    """The definition part of a WordNet gloss: the text before the first ``; "`` example.

    Args:
        gloss: the gloss field of a data-file line (the text after ``" | "``).

    Returns:
        The definition with surrounding whitespace removed; empty if the gloss has none.
    """
    return gloss.split('; "', 1)[0].strip()


def read_lexnames(wordnet_dir: str | Path = DEFAULT_WORDNET_DIR) -> dict[int, str]:
    """Lexicographer file numbers and names, from ``<wordnet_dir>/lexnames`` if present.

    Args:
        wordnet_dir: the WordNet database directory.

    Returns:
        File number to name; the standard :data:`LEXNAMES` when the directory has no
        ``lexnames`` file (Debian's ``wordnet-base`` ships none).

    Raises:
        DataError: if the ``lexnames`` file exists but a line cannot be parsed.
    """
    path = Path(wordnet_dir) / "lexnames"
    if not path.is_file():
        return dict(LEXNAMES)
    names: dict[int, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                names[int(fields[0])] = fields[1]
            except (ValueError, IndexError) as err:
                raise DataError(
                    f"{path}:{line_no}: expected 'NUMBER NAME POS', got {line.strip()!r}; "
                    "reinstall WordNet or remove the file to use the standard names"
                ) from err
    return names


def read_synset_definitions(
    wordnet_dir: str | Path = DEFAULT_WORDNET_DIR,
) -> list[tuple[str, str]]:
    """Every synset's definition and supersense, from the four WordNet data files.

    Args:
        wordnet_dir: the WordNet database directory holding ``data.noun`` etc.

    Returns:
        ``(definition, supersense)`` for each synset with a non-empty definition, in file
        order (noun, verb, adj, adv). A definition may occur more than once.

    Raises:
        DataError: if the directory or a data file is missing, or a line is malformed.
    """
    root = Path(wordnet_dir)
    if not root.is_dir():
        raise DataError(f"WordNet directory {str(root)!r} does not exist; {_INSTALL_HINT}")
    lexnames = read_lexnames(root)
    rows: list[tuple[str, str]] = []
    for name in _POS_FILES:
        path = root / name
        if not path.is_file():
            raise DataError(f"WordNet data file {str(path)!r} is missing; {_INSTALL_HINT}")
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.startswith("  "):  # licence header lines
                    continue
                _, sep, gloss = line.partition(" | ")
                fields = line.split(" ", 2)
                try:
                    label = lexnames[int(fields[1])]
                except (ValueError, IndexError, KeyError) as err:
                    raise DataError(
                        f"{path}:{line_no}: no valid lex_filenum in the second field; "
                        f"the file is not a WordNet 3.0 data file ({_INSTALL_HINT})"
                    ) from err
                definition = parse_definition(gloss) if sep else ""
                if definition:
                    rows.append((definition, label))
    return rows


def unique_definitions_by_class(
    wordnet_dir: str | Path = DEFAULT_WORDNET_DIR,
) -> dict[str, list[str]]:
    """Definitions that occur in exactly one synset, grouped by supersense and sorted.

    Args:
        wordnet_dir: the WordNet database directory.

    Returns:
        Supersense name to its sorted unique definitions, for every supersense that has any.

    Raises:
        DataError: as :func:`read_synset_definitions`.
    """
    rows = read_synset_definitions(wordnet_dir)
    counts = Counter(definition for definition, _ in rows)
    by_class: dict[str, list[str]] = {}
    for definition, label in rows:
        if counts[definition] == 1:
            by_class.setdefault(label, []).append(definition)
    return {label: sorted(defs) for label, defs in sorted(by_class.items())}


def build_supersense_dataset(
    wordnet_dir: str | Path = DEFAULT_WORDNET_DIR,
    n_classes: int = 40,
    n_train: int = 50,
    n_test: int = 25,
    seed: int = 0,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Sample a balanced definition → supersense dataset from WordNet.

    Only definitions found in exactly one synset are used, so no text has two labels and
    train and test share no text. Of the supersenses with at least ``n_train + n_test``
    such definitions, the ``n_classes`` with the most are kept (ties by name). Each class's
    sorted definitions are sampled with one ``random.Random(seed)``, classes in name order;
    the first ``n_train`` picks go to train, the next ``n_test`` to test. Rows are returned
    sorted by (label, text).

    Args:
        wordnet_dir: the WordNet database directory.
        n_classes: how many supersenses to keep.
        n_train: definitions per class in the train split.
        n_test: definitions per class in the test split.
        seed: seed of the sampler.

    Returns:
        ``(train, test)`` lists of ``(definition, supersense)`` rows.

    Raises:
        ConfigError: if a count is not a positive integer (``n_test`` may be 0).
        DataError: if WordNet is missing or fewer than ``n_classes`` supersenses qualify.
    """
    for name, value, minimum in (
        ("n_classes", n_classes, 1),
        ("n_train", n_train, 1),
        ("n_test", n_test, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    by_class = unique_definitions_by_class(wordnet_dir)
    needed = n_train + n_test
    qualified = [label for label, defs in by_class.items() if len(defs) >= needed]
    if len(qualified) < n_classes:
        raise DataError(
            f"only {len(qualified)} supersenses have at least {needed} unique definitions, "
            f"fewer than n_classes={n_classes}; lower n_classes, n_train or n_test"
        )
    chosen = sorted(qualified, key=lambda label: (-len(by_class[label]), label))[:n_classes]
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for label in sorted(chosen):
        picked = rng.sample(by_class[label], needed)
        train.extend((text, label) for text in picked[:n_train])
        test.extend((text, label) for text in picked[n_train:])
    return sorted(train, key=_row_key), sorted(test, key=_row_key)


def _row_key(row: tuple[str, str]) -> tuple[str, str]:
    return row[1], row[0]


def write_supersense_csv(rows: Iterable[tuple[str, str]], path: str | Path) -> None:
    """Write rows as UTF-8 CSV with a ``text,label`` header and ``\\n`` line endings.

    Args:
        rows: ``(text, label)`` rows.
        path: the file to write; its directory is created if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(_HEADER)
        writer.writerows(rows)


def supersense_data_dir(data_dir: str | Path | None = None) -> Path:
    """The directory holding the supersense CSVs.

    Args:
        data_dir: a data root holding ``wordnet_supersense/``; overrides everything else.

    Returns:
        ``<root>/wordnet_supersense`` where root is ``data_dir``, else the environment
        variable ``SEARCHTUNER_DATA_DIR``, else the repository's ``data/`` directory.
    """
    if data_dir is not None:
        root = Path(data_dir)
    elif os.environ.get(DATA_DIR_ENV):
        root = Path(os.environ[DATA_DIR_ENV])
    else:
        root = Path(__file__).resolve().parents[2] / "data"
    return root / _SUBDIR


def load_supersense(
    split: str = "train", data_dir: str | Path | None = None
) -> list[tuple[str, str]]:
    """Read one split of the committed WordNet supersense dataset.

    Args:
        split: ``"train"`` (2,000 rows: 40 classes x 50) or ``"test"`` (1,000: 40 x 25).
        data_dir: a data root holding ``wordnet_supersense/``; see :func:`supersense_data_dir`.

    Returns:
        ``(definition, supersense)`` rows in file order.

    Raises:
        ConfigError: for an unknown split.
        DataError: if the file is missing or not a ``text,label`` CSV.
    """
    if split not in _SPLITS:
        raise invalid_choice("split", split, _SPLITS)
    path = supersense_data_dir(data_dir) / f"{split}.csv"
    if not path.is_file():
        raise DataError(
            f"WordNet supersense file not found at {str(path)!r}; set {DATA_DIR_ENV} to the "
            "directory holding wordnet_supersense/, or regenerate it with "
            "`python scripts/make_wordnet_dataset.py`"
        )
    with path.open(encoding="utf-8", newline="") as handle:
        return _read_rows(csv.reader(handle), path)


def _read_rows(reader: Iterable[Sequence[str]], path: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for row_no, row in enumerate(reader, start=1):
        if row_no == 1:
            if list(row) != _HEADER:
                raise DataError(f"{path}: header must be 'text,label', got {','.join(row)!r}")
            continue
        if len(row) != 2 or not row[0] or not row[1]:
            raise DataError(
                f"{path}: row {row_no}: expected a non-empty text and label, got {row!r}"
            )
        rows.append((row[0], row[1]))
    return rows
