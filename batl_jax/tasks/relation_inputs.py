"""Entity-marked encoder inputs for relation extraction (DISTRE-style), as unpadded token ids.

Layouts (``input_format``), with the entities marked inside the sentence by reserved special
tokens ``[E1] head [/E1]`` and ``[E2] tail [/E2]`` (in sentence order, so the tail may come
first):

``"distre"``        ``[CLS] head [SEP] tail [SEP] sentence-with-markers [SEP]`` (Alt et al. 2019)
``"markers_only"``  ``[CLS] sentence-with-markers [SEP]``

``[CLS]``/``[SEP]`` are the tokenizer's ``cls_token_id``/``sep_token_id`` (``<s>``/``</s>`` for
RoBERTa-style vocabularies). token_type_ids are all 0.

How markers are placed. The sentence is cut at the four span boundaries into five character
segments (before, entity, between, entity, after); each segment is tokenised on its own and the
marker ids are put between them. This is exactly what the tokenizer does when the markers are
written into the text as atomic special tokens (added tokens split the input before
normalisation and pre-tokenisation; the tests check the two agree), but it needs no string
surgery, works when a span boundary falls inside a word, and the entity's tokens are known
exactly. The ``distre`` prefix reuses the two entity segments' tokens.

Truncation window (``max_len`` counts every token, specials and markers included). Entities are
never cut. Let ``budget`` be what is left for sentence tokens after the specials, the four
markers and (``distre``) the prefix.

1. If the span from the first entity's start to the second entity's end fits in ``budget``, the
   window is that span plus context centred on it: half of the spare room before, half after;
   room one side cannot use (sentence start/end) goes to the other side.
2. Otherwise, if the two entities alone fit, the outer context is dropped and the text between
   the entities is cut in its middle, keeping the tokens next to each entity
   (``ceil(room/2)`` after the first entity, ``floor(room/2)`` before the second).
3. Otherwise the record is too long: :class:`RelationTooLongError` (a ``DataError``), or with
   ``encode_relations(..., on_too_long="flag")`` an empty id list in its slot.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

from batl_jax.errors import DataError, ModelError
from batl_jax.tasks.relation_records import RelationExample, validate_example

log = logging.getLogger(__name__)

MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
INPUT_FORMATS = ("distre", "markers_only")


class RelationTooLongError(DataError):
    """The two entities (with markers and prefix) do not fit in ``max_len`` tokens."""

    def __init__(self, message: str, record_id: str):
        super().__init__(message)
        self.record_id = record_id


def add_marker_tokens(tokenizer) -> list[int]:
    """Registers :data:`MARKERS` as special tokens (idempotent) and returns their ids in order.

    They are added as atomic, un-normalised special tokens, so an uncased tokenizer does not
    lower-case them and ``decode(..., skip_special_tokens=True)`` drops them. The model's
    embedding table must be resized to ``len(tokenizer)`` afterwards (done by the caller).
    """
    from tokenizers import AddedToken

    present = set(tokenizer.all_special_tokens)
    missing = [m for m in MARKERS if m not in present]
    if missing:
        new = [
            AddedToken(m, special=True, normalized=False, lstrip=False, rstrip=False)
            for m in missing
        ]
        # transformers 5 renamed the "keep the existing extra special tokens" flag.
        params = inspect.signature(tokenizer.add_special_tokens).parameters
        flag = (
            "replace_extra_special_tokens"
            if "replace_extra_special_tokens" in params
            else "replace_additional_special_tokens"
        )
        tokenizer.add_special_tokens({"additional_special_tokens": new}, **{flag: False})
    return marker_token_ids(tokenizer)


def marker_token_ids(tokenizer) -> list[int]:
    """Ids of :data:`MARKERS`; a ``ModelError`` if :func:`add_marker_tokens` was not called."""
    ids = [tokenizer.convert_tokens_to_ids(m) for m in MARKERS]
    unk = tokenizer.unk_token_id
    if any(i is None or i == unk for i in ids):
        raise ModelError(
            f"the tokenizer has no entity marker tokens {MARKERS}. Fix: call "
            "add_marker_tokens(tokenizer) once and resize the model's embeddings to len(tokenizer)."
        )
    return ids


def _special_ids(tokenizer) -> tuple[int, int]:
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise ModelError(
            "the tokenizer has no cls/sep token, which the relation input layouts need. "
            "Fix: use a BERT-family tokenizer (or set cls_token/sep_token)."
        )
    return cls, sep


def _segments(ex: RelationExample) -> tuple[list[str], bool]:
    """Cuts the text at the span boundaries; returns (5 segments, head comes first)."""
    head_first = ex.head[0] < ex.tail[0]
    (a0, a1), (b0, b1) = (ex.head, ex.tail) if head_first else (ex.tail, ex.head)
    t = ex.text
    return [t[:a0], t[a0:a1], t[a1:b0], t[b0:b1], t[b1:]], head_first


def _tokenize_all(tokenizer, examples: Sequence[RelationExample]):
    """One batched tokenizer call for every segment of every example (fast tokenizers run it in
    parallel); returns per example (5 token lists, head_first)."""
    for ex in examples:
        validate_example(ex)  # overlapping or out-of-range spans would garble the markers
    cut = [_segments(ex) for ex in examples]
    flat = [s for segs, _ in cut for s in segs]
    ids = (
        tokenizer(
            flat,
            add_special_tokens=False,
            padding=False,
            truncation=False,  # also switches off truncation/padding baked into a tokenizer.json
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        if flat
        else []
    )
    return [(ids[5 * i : 5 * i + 5], head_first) for i, (_, head_first) in enumerate(cut)]


def _window(pre, a, mid, b, post, budget: int):
    """Applies the truncation policy of the module docstring; None when the entities don't fit."""
    if len(a) + len(b) > budget:
        return None
    core = len(a) + len(mid) + len(b)
    if core <= budget:
        spare = budget - core
        left = min(len(pre), spare // 2)
        right = min(len(post), spare - left)
        left = min(len(pre), spare - right)  # give room the right side cannot use to the left
        truncated = left < len(pre) or right < len(post)
        return pre[len(pre) - left :], mid, post[:right], truncated
    room = budget - len(a) - len(b)
    keep_first = (room + 1) // 2
    mid = mid[:keep_first] + mid[len(mid) - (room - keep_first) :] if room else []
    return [], mid, [], True


def _assemble(ex, pieces, head_first, *, max_len, input_format, specials, markers):
    """Returns (ids, index of [E1], index of [E2], truncated) or None when too long."""
    cls, sep = specials
    e1, e1_end, e2, e2_end = markers
    pre, a, mid, b, post = pieces
    head, tail = (a, b) if head_first else (b, a)
    if input_format == "distre":
        prefix = [cls, *head, sep, *tail, sep]
    else:
        prefix = [cls]
    budget = max_len - len(prefix) - 1 - 4  # final [SEP] and the four markers
    win = _window(pre, a, mid, b, post, budget)
    if win is None:
        return None
    pre, mid, post, truncated = win
    (oa, ca), (ob, cb) = (
        ((e1, e1_end), (e2, e2_end)) if head_first else ((e2, e2_end), (e1, e1_end))
    )
    ids = [*prefix, *pre, oa, *a, ca, *mid, ob, *b, cb, *post, sep]
    first = len(prefix) + len(pre)
    second = first + len(a) + 2 + len(mid)
    h_idx, t_idx = (first, second) if head_first else (second, first)
    return ids, h_idx, t_idx, truncated


def _too_long(ex: RelationExample, max_len: int, input_format: str) -> RelationTooLongError:
    return RelationTooLongError(
        f"record {ex.id}: head {ex.head_text[:60]!r} and tail {ex.tail_text[:60]!r} with their "
        f"markers and the {input_format!r} layout need more than max_len={max_len} tokens. "
        "Fix: raise max_len, use input_format='markers_only' (no entity prefix), or drop the "
        "record (encode_relations(..., on_too_long='flag') returns [] for it).",
        ex.id,
    )


def _check_args(max_len: int, input_format: str) -> None:
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if max_len < 8:
        raise ValueError(f"max_len={max_len} is too small for a marked relation input")


def encode_relation(
    example: RelationExample, tokenizer, *, max_len: int, input_format: str = "distre"
) -> dict:
    """Encodes one example (see the module docstring for layout and truncation).

    Returns ``{"input_ids", "attention_mask", "token_type_ids"}`` (unpadded lists) plus
    ``head_marker`` / ``tail_marker`` (positions of ``[E1]`` / ``[E2]``, for entity-start
    pooling) and ``truncated`` (whether sentence context was dropped). Raises
    :class:`RelationTooLongError` if the entities cannot fit.
    """
    _check_args(max_len, input_format)
    specials, markers = _special_ids(tokenizer), marker_token_ids(tokenizer)
    [(pieces, head_first)] = _tokenize_all(tokenizer, [example])
    out = _assemble(
        example,
        pieces,
        head_first,
        max_len=max_len,
        input_format=input_format,
        specials=specials,
        markers=markers,
    )
    if out is None:
        raise _too_long(example, max_len, input_format)
    ids, h_idx, t_idx, truncated = out
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "token_type_ids": [0] * len(ids),
        "head_marker": h_idx,
        "tail_marker": t_idx,
        "truncated": truncated,
    }


def encode_relations(
    examples: Sequence[RelationExample],
    tokenizer,
    *,
    max_len: int,
    input_format: str = "distre",
    on_too_long: str = "fail",
) -> list[list[int]]:
    """Encodes many examples with one batched tokenizer call; returns unpadded id lists.

    ``on_too_long="fail"`` raises :class:`RelationTooLongError` for the first example whose
    entities cannot fit; ``"flag"`` puts ``[]`` in that slot instead (so positions still line
    up with ``examples``) and logs how many were flagged — drop them before training.
    """
    _check_args(max_len, input_format)
    if on_too_long not in ("fail", "flag"):
        raise ValueError(f"on_too_long must be 'fail' or 'flag', got {on_too_long!r}")
    examples = list(examples)  # iterated twice below
    specials, markers = _special_ids(tokenizer), marker_token_ids(tokenizer)
    result: list[list[int]] = []
    flagged = []
    for ex, (pieces, head_first) in zip(examples, _tokenize_all(tokenizer, examples), strict=True):
        out = _assemble(
            ex,
            pieces,
            head_first,
            max_len=max_len,
            input_format=input_format,
            specials=specials,
            markers=markers,
        )
        if out is None:
            if on_too_long == "fail":
                raise _too_long(ex, max_len, input_format)
            flagged.append(ex.id)
            result.append([])
        else:
            result.append(out[0])
    if flagged:
        log.warning(
            "%d relation examples do not fit max_len=%d (flagged, ids %s%s)",
            len(flagged),
            max_len,
            ", ".join(flagged[:5]),
            ", ..." if len(flagged) > 5 else "",
        )
    return result
