"""Relation-extraction loaders for SemEval-2010 Task 8, Wiki-KBP and NYT-10, with their labels.

Each loader turns its source format into :class:`~batl_jax.tasks.relation_records.RelationExample`
and checks every record with :mod:`batl_jax.tasks.relation_records` (the ``on_error`` policy and
the skip reasons are described there). Each returns ``(examples, skipped_counts_by_reason)``.

Wiki-KBP entity positions. CoType's ``entityMentions[i]["start"]`` is *not* a character or token
offset but a per-sentence mention id: it equals ``i`` (0, 1, 2, ... in list order) on all 289
test sentences and on 542 of the 544 train-head sentences (the other two skip a number, e.g.
0..7, 9). It carries no position and is ignored. Spans are found by string search instead (see
:func:`_locate_pair`): the first occurrence on word boundaries, with head and tail chosen so they
do not overlap. Pairs that cannot be placed apart (the same text for both entities with a single
occurrence, or one name nested in the other such as "Hong Kong-listed" / "Hong Kong") are
``overlapping_spans``. On the shipped files: test 2,209 of 2,209 mentions kept (7 same-text
pairs and 8 nested pairs all have a second, disjoint occurrence); train head 3,309 of 3,323 kept,
14 ``overlapping_spans`` (nested names with one occurrence, e.g. "King Alexander III" /
"Alexander III"). The test file also repeats 14 (sentence, em1, em2) triples, always with the
same label; they are kept (CoType's count of 2,209 includes them).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from batl_jax.tasks.relation_records import (
    RecordError,
    RelationExample,
    Reporter,
    check_example,
    check_label,
    read_json_lines,
)

_Err = RecordError  # short alias: the raise sites below stay on one line

#: SemEval-2010 Task 8 labels: the no-relation class first, then the 18 directed relations.
SEMEVAL_NA = "Other"
SEMEVAL_RELATIONS = (
    "Cause-Effect",
    "Component-Whole",
    "Content-Container",
    "Entity-Destination",
    "Entity-Origin",
    "Instrument-Agency",
    "Member-Collection",
    "Message-Topic",
    "Product-Producer",
)
SEMEVAL_LABELS = (SEMEVAL_NA,) + tuple(
    f"{r}({d})" for r in SEMEVAL_RELATIONS for d in ("e1,e2", "e2,e1")
)
_SEMEVAL_LABEL_SET = frozenset(SEMEVAL_LABELS)

#: Wiki-KBP (CoType) labels: every label of the test file, no-relation first. The 544-sentence
#: train head uses a subset of them, so a label index built from it alone would be wrong.
WIKI_KBP_NA = "None"
WIKI_KBP_LABELS = (
    WIKI_KBP_NA,
    "org:founded_by",
    "org:member_of",
    "org:parents",
    "org:shareholders",
    "org:subsidiaries",
    "per:children",
    "per:countries_of_residence",
    "per:country_of_birth",
    "per:country_of_death",
    "per:employee_or_member_of",
    "per:parents",
    "per:religion",
)

#: NYT-10 (OpenNRE layout) no-relation label.
NYT10_NA = "NA"


# --------------------------------------------------------------------------------------------
# SemEval-2010 Task 8
# --------------------------------------------------------------------------------------------

_TAG = re.compile(r"</?e[12]>")


def _strip_semeval_tags(tagged: str) -> tuple[str, dict[str, int]]:
    """Removes ``<e1>``/``</e1>``/``<e2>``/``</e2>`` and returns the text and each tag's offset."""
    parts, where, pos, out_len = [], {}, 0, 0
    for m in _TAG.finditer(tagged):
        parts.append(tagged[pos : m.start()])
        out_len += m.start() - pos
        if m.group() in where:
            raise _Err("missing_span", f"tag {m.group()} occurs twice", "tag each entity once")
        where[m.group()] = out_len
        pos = m.end()
    parts.append(tagged[pos:])
    return "".join(parts), where


def _parse_semeval(obj: dict) -> RelationExample:
    sentence, label = obj.get("sentence"), obj.get("label")
    if not isinstance(sentence, str):
        raise _Err("bad_record", "no 'sentence' string", "give the tagged sentence in 'sentence'")
    text, where = _strip_semeval_tags(sentence)
    if not text.strip():
        raise _Err("empty_text", "the sentence is empty", "remove the record or fill it in")
    spans = []
    for n in ("1", "2"):
        if f"<e{n}>" not in where or f"</e{n}>" not in where:
            tags = f"<e{n}>...</e{n}>"
            raise _Err("missing_span", f"entity e{n} has no {tags} tags", f"mark it with {tags}")
        spans.append((where[f"<e{n}>"], where[f"</e{n}>"]))
    head, tail = spans
    check_example(text, head, tail)
    for n, span in (("1", head), ("2", tail)):
        stated = obj.get(f"e{n}")
        if stated is not None and stated != text[span[0] : span[1]]:
            got = text[span[0] : span[1]]
            why = f"tagged e{n} {got!r} differs from field e{n} {stated!r}"
            raise _Err("span_text_mismatch", why, f"make field e{n} equal the tagged text")
    return RelationExample("", text, head, tail, check_label(label, _SEMEVAL_LABEL_SET))


def load_semeval(path: str | Path, *, on_error: str = "fail"):
    """Loads a SemEval-2010 Task 8 JSON-lines file (``train.jsonl.gz`` / ``test.jsonl.gz``).

    Records are ``{"id", "sentence" (with <e1>/<e2> tags), "e1", "e2", "label", ...}``; the
    tags are stripped and their positions become the spans (head = e1, tail = e2; the label's
    ``(e1,e2)``/``(e2,e1)`` suffix carries the direction). Labels must be in
    :data:`SEMEVAL_LABELS`. Returns ``(examples, skipped_counts_by_reason)``.
    """
    reporter = Reporter(str(path), on_error)
    examples = []
    for line_no, obj in read_json_lines(Path(path), reporter):
        rid = str(obj.get("id", f"line {line_no}"))
        try:
            examples.append(dataclasses.replace(_parse_semeval(obj), id=rid))
        except RecordError as err:
            reporter(rid, err)
    return examples, reporter.counts()


# --------------------------------------------------------------------------------------------
# Wiki-KBP (CoType JSON lines)
# --------------------------------------------------------------------------------------------


def _occurrences(text: str, needle: str) -> list[tuple[int, int, bool]]:
    """All (start, end, on_word_boundary) occurrences of ``needle``, overlapping ones included."""
    out, i = [], text.find(needle)
    while i >= 0 and needle:
        j = i + len(needle)
        # A hit inside a longer word ("Iraq" in "Iraqi", "In" in "Indian") is a worse candidate.
        bounded = (i == 0 or not text[i - 1].isalnum()) and (
            j == len(text) or not text[j].isalnum()
        )
        out.append((i, j, bounded))
        i = text.find(needle, i + 1)
    return out


def _locate_pair(text: str, em1, em2) -> tuple[tuple[int, int], tuple[int, int]]:
    """Places head ``em1`` and tail ``em2`` in ``text`` (CoType gives no offsets).

    Candidates are every occurrence; the first pair in this order wins: both on word boundaries
    before any pair with an in-word hit, then by head position, then by tail position, skipping
    pairs that overlap. So for distinct names this is "first whole-word occurrence of each", and
    the later occurrence is used only to keep head and tail apart.
    """
    for name, em in (("em1Text", em1), ("em2Text", em2)):
        if not isinstance(em, str) or not em.strip():
            raise _Err("missing_span", f"{name} is missing or empty", f"give {name}")
    heads, tails = _occurrences(text, em1), _occurrences(text, em2)
    for name, em, occ in (("em1Text", em1, heads), ("em2Text", em2, tails)):
        if not occ:
            why, fix = f"{name} {em!r} is not in sentText", f"make {name} a substring of sentText"
            raise _Err("entity_not_found", why, fix)
    for need_bounded in (True, False):
        for hs, he, hb in heads:
            for ts, te, tb in tails:
                if need_bounded and not (hb and tb):
                    continue
                if he <= ts or te <= hs:
                    return (hs, he), (ts, te)
    why = f"em1Text {em1!r} and em2Text {em2!r} cannot be placed without overlapping"
    raise _Err("overlapping_spans", why, "use two distinct, non-nested mentions")


def load_wiki_kbp(
    path: str | Path, *, on_error: str = "fail", label_names: Sequence[str] | None = None
):
    """Loads a CoType/ReHession Wiki-KBP file (``test.json.gz`` / ``train_head544.json.gz``).

    One example per ``relationMentions`` entry: id ``f"{line_no}:{mention_no}"`` (both 0-based;
    ``line_no`` counts physical lines, blank ones included), head = em1Text, tail = em2Text,
    bag = ``(em1Text, em2Text)``, label as given (``"None"`` = no relation). Spans come from
    :func:`_locate_pair` (``entityMentions.start`` is only a mention ordinal; see the module
    docstring). ``label_names`` (optional) restricts the labels, e.g. :data:`WIKI_KBP_LABELS`.
    Returns ``(examples, skipped_counts_by_reason)``; counts are per relation mention.
    """
    reporter = Reporter(str(path), on_error)
    known = frozenset(label_names) if label_names is not None else None
    examples = []
    for line_no, obj in read_json_lines(Path(path), reporter):
        text, mentions = obj.get("sentText"), obj.get("relationMentions")
        if not isinstance(text, str) or not isinstance(mentions, list):
            why = "sentText (string) or relationMentions (list) is missing"
            reporter(f"{line_no}", _Err("bad_record", why, "give both fields"))
            continue
        for k, m in enumerate(mentions):
            rid = f"{line_no}:{k}"
            try:
                if not isinstance(m, dict):
                    raise _Err("bad_record", "mention is not an object", "give em1Text/em2Text")
                if not text.strip():
                    raise _Err("empty_text", "sentText is empty", "remove or fill in the sentence")
                head, tail = _locate_pair(text, m.get("em1Text"), m.get("em2Text"))
                check_example(text, head, tail)
                label = check_label(m.get("label"), known)
                examples.append(
                    RelationExample(rid, text, head, tail, label, bag=(m["em1Text"], m["em2Text"]))
                )
            except RecordError as err:
                reporter(rid, err)
    return examples, reporter.counts()


# --------------------------------------------------------------------------------------------
# NYT-10 (OpenNRE layout), record level
# --------------------------------------------------------------------------------------------


def _nyt_entity(obj: dict, key: str) -> tuple[str | None, list]:
    ent = obj.get(key)
    if not isinstance(ent, dict):
        raise _Err("bad_record", f"{key!r} is not an object", f"give {key} = {{name, pos}}")
    pos = ent.get("pos")
    if not (isinstance(pos, (list, tuple)) and len(pos) == 2):
        raise _Err("missing_span", f"{key}.pos is not [start, end]", f"give {key}.pos")
    return ent.get("name"), list(pos)


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()


def _parse_nyt(obj: dict, known) -> RelationExample:
    (h_name, h_pos), (t_name, t_pos) = _nyt_entity(obj, "h"), _nyt_entity(obj, "t")
    if "text" in obj:
        text = obj["text"]
    elif isinstance(obj.get("token"), list):
        # Token layout (wiki80/TACRED-style OpenNRE files): pos are token indices; rebuild a
        # space-joined text and convert to character offsets.
        tokens = [str(t) for t in obj["token"]]
        starts = [0, *itertools.accumulate(len(t) + 1 for t in tokens)]
        for pos in (h_pos, t_pos):
            if not (all(isinstance(p, int) for p in pos) and 0 <= pos[0] < pos[1] <= len(tokens)):
                why = f"token span {pos} outside the sentence"
                raise _Err("span_out_of_range", why, "give [start, end) token indices")
        h_pos = [starts[h_pos[0]], starts[h_pos[1]] - 1]
        t_pos = [starts[t_pos[0]], starts[t_pos[1]] - 1]
        text = " ".join(tokens)
    else:
        raise _Err("bad_record", "neither 'text' nor 'token' is given", "give 'text'")
    head, tail = tuple(h_pos), tuple(t_pos)
    check_example(text, head, tail)
    for key, name, span in (("h", h_name, head), ("t", t_name, tail)):
        if not isinstance(name, str) or not name.strip():
            raise _Err("bad_record", f"{key}.name is missing", f"give {key}.name")
        # Case/whitespace-insensitive: the entity name is a KB surface form, the span is text.
        if _norm(text[span[0] : span[1]]) != _norm(name):
            why = f"{key}.pos {list(span)} is {text[span[0] : span[1]]!r}, not {name!r}"
            raise _Err("span_text_mismatch", why, f"make {key}.pos the offsets of {key}.name")
    label = check_label(obj.get("relation"), known)
    bag = (str(h_name), str(t_name))  # both checked to be names above
    return RelationExample(str(obj.get("id", "")), text, head, tail, label, bag=bag)


def load_nyt10_records(
    records: Iterable[dict],
    *,
    on_error: str = "fail",
    label_names: Sequence[str] | None = None,
    source: str = "nyt10",
):
    """Converts OpenNRE-format NYT-10 rows (e.g. from ``datasets``) into examples.

    A row is ``{"text", "relation", "h": {"name", "pos": [s, e]}, "t": {...}}`` with ``pos``
    ``[start, end)`` *character* offsets into ``text`` (OpenNRE's nyt10 files), or the token
    layout ``{"token": [...], ...}`` with token-index ``pos``. The span must spell the entity
    name (ignoring case and whitespace). Id = the row's ``"id"`` if present, else its 0-based
    position; bag = ``(h name, t name)``. ``source`` names the data in error messages.
    Returns ``(examples, skipped_counts_by_reason)``.
    """
    reporter = Reporter(source, on_error)
    known = frozenset(label_names) if label_names is not None else None
    examples = []
    for i, obj in enumerate(records):
        rid = str(obj.get("id", i)) if isinstance(obj, dict) else str(i)
        try:
            if not isinstance(obj, dict):
                raise _Err("bad_record", "row is not a mapping", "pass dict rows")
            ex = _parse_nyt(obj, known)
            examples.append(dataclasses.replace(ex, id=rid))
        except RecordError as err:
            reporter(rid, err)
    return examples, reporter.counts()
