"""Training data: schemas, streaming readers and validation.

Typical use::

    from searchtuner.data import validate, load_docs

    report = validate("train.csv", eval_data="eval.csv")
    print(report)
    report.raise_for_errors()
    docs = load_docs("train.csv")
"""

from searchtuner.data.readers import (
    CSV_COLUMNS,
    SUPPORTED_FORMATS,
    Record,
    RowError,
    Source,
    describe_source,
    infer_kind,
    iter_records,
    load_docs,
    read_csv,
    read_jsonl,
)
from searchtuner.data.schemas import (
    FINETUNER_LABEL_TAG,
    SCHEMAS,
    DataKind,
    LabeledDoc,
    PairDoc,
    TextImageDoc,
    UnlabeledDoc,
    doc_modalities,
    doc_modality,
    kind_of,
    parse_kind,
)
from searchtuner.data.validation import (
    FINDING_CODES,
    DataReport,
    Finding,
    Severity,
    validate,
)

__all__ = [
    "CSV_COLUMNS",
    "FINDING_CODES",
    "FINETUNER_LABEL_TAG",
    "SCHEMAS",
    "SUPPORTED_FORMATS",
    "DataKind",
    "DataReport",
    "Finding",
    "LabeledDoc",
    "PairDoc",
    "Record",
    "RowError",
    "Severity",
    "Source",
    "TextImageDoc",
    "UnlabeledDoc",
    "describe_source",
    "doc_modalities",
    "doc_modality",
    "infer_kind",
    "iter_records",
    "kind_of",
    "load_docs",
    "parse_kind",
    "read_csv",
    "read_jsonl",
    "validate",
]
