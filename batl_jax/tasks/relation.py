"""Relation extraction as a task of the loop: sentence + head/tail spans → relation.

Inputs mark the entities with reserved tokens and prepend ``head [SEP] tail [SEP]`` as
DISTRE does (``task.input_format``); the metrics are NA-aware (micro-F1 over non-NA
labels, P@N, PR-AUC) and, when the dataset groups sentences into bags (entity pairs),
also computed at the bag level by max-pooling probabilities over each bag.
"""

from __future__ import annotations

import logging

import numpy as np

from batl_jax.data import (
    DataRequest,
    Dataset,
    Encoded,
    Split,
    encode_ids,
    register_loader,
    resolve_data_dir,
)
from batl_jax.errors import ConfigError, DataError
from batl_jax.tasks import relation_inputs as ri
from batl_jax.tasks import relation_metrics as rm
from batl_jax.tasks import relation_readers as rd
from batl_jax.tasks.base import majority_rate
from batl_jax.tasks.classification import f1_scores
from batl_jax.tasks.relation_records import RelationExample

log = logging.getLogger(__name__)

# Local files per dataset (relative to data.dir) and the no-relation label.
_FILES = {
    "semeval": ("semeval2010_task8/train.jsonl.gz", "semeval2010_task8/test.jsonl.gz"),
    "wiki_kbp": ("wiki_kbp/train_head544.json.gz", "wiki_kbp/test.json.gz"),
    "nyt10": ("nyt10/nyt10_train.txt", "nyt10/nyt10_test.txt"),  # OpenNRE's layout
}
_NA = {"semeval": rd.SEMEVAL_NA, "wiki_kbp": rd.WIKI_KBP_NA, "nyt10": rd.NYT10_NA}


def _to_split(examples: list[RelationExample], label_names: list[str]) -> Split:
    index = {name: i for i, name in enumerate(label_names)}
    return Split(
        ids=[ex.id for ex in examples],
        texts=[ex.text for ex in examples],
        labels=np.asarray([index[ex.label] for ex in examples], np.int32),
        examples=examples,
        bags=[ex.bag for ex in examples] if all(ex.bag for ex in examples) else None,
    )


def _nyt10_records(req: DataRequest, which: int) -> list[dict]:
    import datasets

    if req.hub_id:
        split = (req.train_split, req.test_split)[which]
        try:
            return datasets.load_dataset(req.hub_id, req.hub_config or None, split=split).to_list()
        except Exception as e:
            raise DataError(
                f"cannot load hub dataset {req.hub_id!r} split {split!r} "
                f"({type(e).__name__}: {e}); check the id and network"
            ) from e
    path = resolve_data_dir(req.data_dir) / _FILES["nyt10"][which]
    if not path.is_file():
        raise DataError(
            f"missing {path}: download NYT-10 with OpenNRE's "
            "benchmark/download_nyt10.sh into DATA_DIR/nyt10, or set data.hub_id"
        )
    return datasets.load_dataset("json", data_files=str(path), split="train").to_list()


def _load_examples(req: DataRequest, skipped: dict[str, int]):
    """Train and test examples of ``req.name`` and the label names."""
    splits = []
    if req.name == "semeval":
        label_names = list(rd.SEMEVAL_LABELS)
        root = resolve_data_dir(req.data_dir)
        for f in _FILES[req.name]:
            exs, sk = rd.load_semeval(root / f, on_error=req.on_error)
            splits.append(exs)
            _merge(skipped, sk)
    elif req.name == "wiki_kbp":
        label_names = list(rd.WIKI_KBP_LABELS)
        root = resolve_data_dir(req.data_dir)
        for f in _FILES[req.name]:
            exs, sk = rd.load_wiki_kbp(root / f, on_error=req.on_error, label_names=label_names)
            splits.append(exs)
            _merge(skipped, sk)
    else:
        records = [_nyt10_records(req, 0), _nyt10_records(req, 1)]
        found = sorted({str(r.get("relation")) for r in records[0]} - {rd.NYT10_NA})
        label_names = [rd.NYT10_NA] + found
        for recs in records:
            exs, sk = rd.load_nyt10_records(recs, on_error=req.on_error, label_names=label_names)
            splits.append(exs)
            _merge(skipped, sk)
    return splits, label_names


def load_relation_dataset(req: DataRequest) -> Dataset:
    """Load ``data.name`` in {semeval, wiki_kbp, nyt10} into train/test splits."""
    skipped: dict[str, int] = {}
    splits, label_names = _load_examples(req, skipped)
    for exs, where in zip(splits, ("train", "test"), strict=True):
        if not exs:
            raise DataError(f"{req.name} {where} split has no usable records; check data.dir")
    return Dataset(
        req.name,
        label_names,
        _to_split(splits[0], label_names),
        _to_split(splits[1], label_names),
        skipped,
    )


def _merge(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


for _name in _FILES:
    register_loader(_name, load_relation_dataset)


class RelationTask:
    """Relation classification with a no-relation label."""

    name: str = "relation"
    primary_metric: str = "micro_f1"

    def __init__(
        self,
        label_names: list[str],
        dataset_name: str,
        *,
        no_relation_label: str = "",
        input_format: str = "distre",
        p_at_n: tuple[int, ...] = (100, 200, 500),
    ):
        """``no_relation_label`` defaults to the dataset's own (Other, None, NA)."""
        self.label_names = list(label_names)
        na = no_relation_label or _NA.get(dataset_name, "")
        if na not in self.label_names:
            raise ConfigError(
                f"task.no_relation_label={na!r} is not a label of {dataset_name} "
                f"({', '.join(self.label_names[:5])}, ...); set it correctly"
            )
        if input_format not in ri.INPUT_FORMATS:
            raise ConfigError(
                f"task.input_format={input_format!r}: use one of {', '.join(ri.INPUT_FORMATS)}"
            )
        self.na_index = self.label_names.index(na)
        self.input_format = input_format
        self.p_at_n = tuple(int(n) for n in p_at_n)
        self.dataset_name = dataset_name

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def prepare_tokenizer(self, tokenizer) -> int:
        """Add the entity markers; returns how many rows the embedding table must grow."""
        before = len(tokenizer)
        ri.add_marker_tokens(tokenizer)
        return len(tokenizer) - before

    def encode(self, split: Split, tokenizer, max_len: int) -> Encoded:
        if split.examples is None:
            raise DataError(
                f"{self.dataset_name} rows carry no entity spans; task.name=relation needs a "
                "relation dataset (semeval, wiki_kbp, nyt10)"
            )
        ids = ri.encode_relations(
            split.examples,
            tokenizer,
            max_len=max_len,
            input_format=self.input_format,
            on_too_long="flag",
        )
        too_long = [split.ids[i] for i, t in enumerate(ids) if not t]
        if too_long:
            raise DataError(
                f"{len(too_long)} record(s) (first: {too_long[0]}) cannot fit both entities in "
                f"model.max_len={max_len} tokens; raise --config.model.max_len"
            )
        return encode_ids(ids, max_len, tokenizer.pad_token_id)

    def metrics(self, probs: np.ndarray, split: Split) -> dict[str, float]:
        out = {
            k: float(v)
            for k, v in rm.relation_metrics(
                probs, split.labels, na_index=self.na_index, p_at_n=self.p_at_n
            ).items()
        }
        out["accuracy"] = f1_scores(probs.argmax(1), split.labels, self.num_labels)["accuracy"]
        if split.bags is not None and self.dataset_name != "semeval":
            out.update(
                {
                    k: float(v)
                    for k, v in rm.bag_metrics(
                        probs, split.labels, split.bags, na_index=self.na_index, p_at_n=self.p_at_n
                    ).items()
                }
            )
        if self.dataset_name == "semeval":
            pred = [self.label_names[i] for i in probs.argmax(1)]
            gold = [self.label_names[i] for i in split.labels]
            out["semeval_official_f1"] = rm.semeval_official_macro_f1(pred, gold)
            out["semeval_undirected_f1"] = rm.semeval_undirected_macro_f1(pred, gold)
        log.debug("relation metrics: %s", out)
        return out

    def majority_rate(self, split: Split) -> float:
        return majority_rate(split.labels, self.num_labels)
