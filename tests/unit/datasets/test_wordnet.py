"""The committed WordNet supersense dataset, its loader, and its derivation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from searchtuner.datasets import wordnet
from searchtuner.datasets.wordnet import (
    build_supersense_dataset,
    load_supersense,
    parse_definition,
    supersense_data_dir,
    write_supersense_csv,
)
from searchtuner.errors import ConfigError, DataError

WORDNET_DIR = Path(wordnet.DEFAULT_WORDNET_DIR)
needs_wordnet = pytest.mark.skipif(
    not (WORDNET_DIR / "data.noun").exists(),
    reason="WordNet is not installed (apt-get install wordnet-base)",
)


@pytest.fixture(autouse=True)
def _no_data_dir_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(wordnet.DATA_DIR_ENV, raising=False)


@pytest.mark.parametrize(("split", "per_class"), [("train", 50), ("test", 25)])
def test_committed_split_is_balanced(split: str, per_class: int) -> None:
    rows = load_supersense(split)
    counts = Counter(label for _, label in rows)
    assert len(rows) == 40 * per_class
    assert len(counts) == 40
    assert set(counts.values()) == {per_class}
    assert all(text.strip() == text and text for text, _ in rows)
    assert len({text for text, _ in rows}) == len(rows)


def test_committed_splits_are_disjoint_with_the_same_classes() -> None:
    train, test = load_supersense("train"), load_supersense("test")
    assert not {text for text, _ in train} & {text for text, _ in test}
    assert {label for _, label in train} == {label for _, label in test}
    assert {label for _, label in train} <= set(wordnet.LEXNAMES.values())


def test_data_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_supersense_csv([("a definition", "noun.act")], tmp_path / "wordnet_supersense/test.csv")
    assert load_supersense("test", data_dir=tmp_path) == [("a definition", "noun.act")]
    monkeypatch.setenv(wordnet.DATA_DIR_ENV, str(tmp_path))
    assert supersense_data_dir() == tmp_path / "wordnet_supersense"
    assert load_supersense("test") == [("a definition", "noun.act")]
    with pytest.raises(DataError, match=r"not found at .*train\.csv.*SEARCHTUNER_DATA_DIR"):
        load_supersense("train")


def test_unknown_split() -> None:
    with pytest.raises(ConfigError, match=r"unknown split 'tset'.*did you mean 'test'"):
        load_supersense("tset")


def test_malformed_csv(tmp_path: Path) -> None:
    path = tmp_path / "wordnet_supersense" / "train.csv"
    path.parent.mkdir()
    path.write_text("definition,class\nx,y\n", encoding="utf-8")
    with pytest.raises(DataError, match="header must be 'text,label'"):
        load_supersense("train", data_dir=tmp_path)
    path.write_text('text,label\n"",noun.act\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 2"):
        load_supersense("train", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("gloss", "definition"),
    [
        ('draw air into the lungs; "I can breathe better"  \n', "draw air into the lungs"),
        ("a unit; of measure  \n", "a unit; of measure"),
        ('a place "in quotes"; "an example"; "another"', 'a place "in quotes"'),
    ],
)
def test_parse_definition(gloss: str, definition: str) -> None:
    assert parse_definition(gloss) == definition


def test_missing_wordnet_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install wordnet-base"):
        build_supersense_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"data\.noun.*apt-get install wordnet-base"):
        build_supersense_dataset(tmp_path)


def _fake_wordnet(root: Path) -> Path:
    """A tiny database in the WordNet format: 3 noun classes, one shared definition."""
    header = "  1 This software and database is being provided to you  \n"
    lines = [header]
    offset = 1000
    for lex, n in ((5, 6), (13, 4), (18, 2)):
        for i in range(n):
            lines.append(f'{offset:08d} {lex:02d} n 01 w{i} 0 000 | class {lex} item {i}; "ex"  \n')
            offset += 1
    lines.append(f"{offset:08d} 13 n 01 dup 0 000 | class 5 item 0  \n")  # duplicate text
    (root / "data.noun").write_text("".join(lines), encoding="utf-8")
    for name in ("data.verb", "data.adj", "data.adv"):
        (root / name).write_text(header, encoding="utf-8")
    return root


def test_build_on_a_small_database(tmp_path: Path) -> None:
    root = _fake_wordnet(tmp_path)
    train, test = build_supersense_dataset(root, n_classes=2, n_train=2, n_test=1, seed=3)
    # noun.animal keeps 5 unique definitions (one duplicated), noun.food 4, noun.person 2.
    assert Counter(label for _, label in train) == {"noun.animal": 2, "noun.food": 2}
    assert Counter(label for _, label in test) == {"noun.animal": 1, "noun.food": 1}
    texts = [text for text, _ in train + test]
    assert "class 5 item 0" not in texts
    assert len(set(texts)) == len(texts)
    assert (train, test) == build_supersense_dataset(root, n_classes=2, n_train=2, n_test=1, seed=3)
    with pytest.raises(DataError, match="only 2 supersenses have at least 3"):
        build_supersense_dataset(root, n_classes=3, n_train=2, n_test=1)
    with pytest.raises(ConfigError, match="n_train must be"):
        build_supersense_dataset(root, n_train=0)


@needs_wordnet
def test_rederiving_reproduces_the_committed_files(tmp_path: Path) -> None:
    train, test = build_supersense_dataset(WORDNET_DIR, n_classes=40, n_train=50, n_test=25)
    committed = supersense_data_dir()
    for split, rows in (("train", train), ("test", test)):
        write_supersense_csv(rows, tmp_path / f"{split}.csv")
        assert (tmp_path / f"{split}.csv").read_bytes() == (committed / f"{split}.csv").read_bytes()
