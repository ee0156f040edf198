"""Relation-extraction records: :class:`RelationExample` and the checks every loader applies.

Every loader (:mod:`batl_jax.tasks.relation_readers`) turns its source format into
:class:`RelationExample` (a sentence, two character spans and a label) and checks each record the
same way. A malformed record is either fatal (``on_error="fail"``: a
:class:`~batl_jax.errors.DataError` naming the file, the record id, the problem and the fix) or
dropped (``on_error="skip"``: a warning, and it is counted in the ``skipped`` dict every loader
returns, keyed by reason, for the run log). Reasons:

``bad_record``          not a JSON object / required field missing or of the wrong type
``empty_text``          the sentence is empty or only whitespace
``missing_span``        no span for an entity (SemEval tags absent/unbalanced, NYT ``pos`` missing)
``entity_not_found``    Wiki-KBP: em1Text/em2Text is not a substring of sentText
``span_out_of_range``   a span is not ``0 <= start < end <= len(text)``
``empty_entity``        a span covers only whitespace
``span_text_mismatch``  the span's text differs from the entity text the record states
``overlapping_spans``   the head and tail spans share characters
``unknown_label``       the label is not in the known label set
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from batl_jax.errors import DataError

log = logging.getLogger(__name__)

_SKIP_LOG_LIMIT = 5  # warnings per reason; the rest go to DEBUG so a bad file cannot flood logs


@dataclasses.dataclass(frozen=True)
class RelationExample:
    """One relation instance: ``head``/``tail`` are ``[start, end)`` character offsets in ``text``.

    ``bag`` is the distant-supervision bag key (head name, tail name) when the dataset has one.
    """

    id: str
    text: str
    head: tuple[int, int]
    tail: tuple[int, int]
    label: str
    bag: tuple[str, str] | None = None

    @property
    def head_text(self) -> str:
        return self.text[self.head[0] : self.head[1]]

    @property
    def tail_text(self) -> str:
        return self.text[self.tail[0] : self.tail[1]]


class RecordError(Exception):
    """One record is malformed (``reason`` is a key of the skip report); a :class:`Reporter`
    turns it into an error or a skip."""

    def __init__(self, reason: str, detail: str, fix: str):
        super().__init__(detail)
        self.reason, self.detail, self.fix = reason, detail, fix


_Err = RecordError  # short alias: the raise sites below stay on one line


class Reporter:
    """Applies the ``on_error`` policy and keeps the per-reason skip counts."""

    def __init__(self, source: str, on_error: str):
        if on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        self.source, self.on_error = source, on_error
        self.skipped: collections.Counter[str] = collections.Counter()

    def __call__(self, record_id: str, err: RecordError) -> None:
        if self.on_error == "fail":
            raise DataError(
                f"{self.source}: record {record_id}: {err.detail} [{err.reason}]. "
                f"Fix: {err.fix}; or load with on_error='skip' to drop such records "
                "(they are counted in the skip report)."
            )
        self.skipped[err.reason] += 1
        level = logging.WARNING if self.skipped[err.reason] <= _SKIP_LOG_LIMIT else logging.DEBUG
        log.log(
            level, "%s: skipping record %s: %s [%s]", self.source, record_id, err.detail, err.reason
        )

    def counts(self) -> dict[str, int]:
        return dict(sorted(self.skipped.items()))


def check_example(text: str, head: tuple[int, int], tail: tuple[int, int]) -> None:
    """Raises ``RecordError`` unless ``text`` is non-empty and the spans are valid and disjoint."""
    if not isinstance(text, str) or not text.strip():
        raise _Err("empty_text", "the sentence is empty", "remove the record or fill it in")
    for name, span in (("head", head), ("tail", tail)):
        s, e = span
        if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)):
            why = f"{name} span {list(span)} is not within [0, {len(text)}] with start < end"
            raise _Err("span_out_of_range", why, "give [start, end) offsets inside the sentence")
        if not text[s:e].strip():
            why = f"{name} span {list(span)} covers only whitespace"
            raise _Err("empty_entity", why, "point the span at the entity's characters")
    if head[0] < tail[1] and tail[0] < head[1]:
        h, t = text[head[0] : head[1]], text[tail[0] : tail[1]]
        why = f"head span {list(head)} {h!r} overlaps tail span {list(tail)} {t!r}"
        raise _Err("overlapping_spans", why, "make head and tail disjoint spans")


def validate_example(example: RelationExample) -> None:
    """Raises ``DataError`` unless the text is non-empty and the spans are valid and disjoint.

    The loaders already apply this; it guards examples built by hand before encoding.
    """
    try:
        check_example(example.text, example.head, example.tail)
    except RecordError as err:
        raise DataError(
            f"record {example.id}: {err.detail} [{err.reason}]. Fix: {err.fix}."
        ) from None


def check_label(label, label_names: Sequence[str] | frozenset | None) -> str:
    """``label``, unless it is not a non-empty string or (given ``label_names``) not one of them."""
    if not isinstance(label, str) or not label:
        raise _Err("unknown_label", f"label {label!r} is not a string", "give every record a label")
    if label_names is not None and label not in label_names:
        shown = ", ".join(sorted(label_names)[:20])
        fix = f"use one of [{shown}] or add the label to label_names"
        raise _Err("unknown_label", f"label {label!r} is not a known relation", fix)
    return label


def read_json_lines(path: Path, reporter: Reporter) -> Iterable[tuple[int, dict]]:
    """Yields (0-based physical line number, object); blank lines are skipped silently."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file. Fix: pass the path of the dataset file.")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                obj = exc
            if not isinstance(obj, dict):
                why = (
                    f"not valid JSON ({obj.msg})"
                    if isinstance(obj, json.JSONDecodeError)
                    else "not an object"
                )
                reporter(
                    f"line {line_no}", _Err("bad_record", why, "write one JSON object per line")
                )
                continue
            yield line_no, obj


def validate_labels(
    examples: Iterable[RelationExample],
    label_names: Sequence[str],
    *,
    on_error: str = "fail",
    source: str = "examples",
):
    """Keeps the examples whose label is in ``label_names``; the others per ``on_error``.

    Returns ``(kept, {"unknown_label": n})`` (an empty dict when nothing was dropped).
    """
    reporter = Reporter(source, on_error)
    known = frozenset(label_names)
    kept = []
    for ex in examples:
        try:
            check_label(ex.label, known)
            kept.append(ex)
        except RecordError as err:
            reporter(ex.id, err)
    return kept, reporter.counts()
