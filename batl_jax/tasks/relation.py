"""Relation extraction as a task of the loop: sentence + head/tail spans → relation.

Inputs mark the entities with reserved tokens and prepend ``head [SEP] tail [SEP]`` as
DISTRE does (``task.input_format``); the metrics are NA-aware (micro-F1 over non-NA
labels, P@N, PR-AUC) and, when the dataset groups sentences into bags (entity pairs),
also computed at the bag level by max-pooling probabilities over each bag.
"""

from __future__ import annotations

import logging

import numpy as np

from batl_jax.data import Dataset, Encoded, Split, encode_ids, resolve_data_dir
from batl_jax.errors import ConfigError, DataError
from batl_jax.tasks import relation_data as rd
from batl_jax.tasks import relation_inputs as ri
from batl_jax.tasks import relation_metrics as rm
from batl_jax.tasks.classification import f1_scores

# Local files per dataset (relative to data.dir) and the no-relation label.
log = logging.getLogger(__name__)

_FILES = {
    "semeval": ("semeval2010_task8/train.jsonl.gz", "semeval2010_task8/test.jsonl.gz"),
    "wiki_kbp": ("wiki_kbp/train_head544.json.gz", "wiki_kbp/test.json.gz"),
    "nyt10": ("nyt10/nyt10_train.txt", "nyt10/nyt10_test.txt"),  # OpenNRE's layout
}
_NA = {"semeval": rd.SEMEVAL_NA, "wiki_kbp": rd.WIKI_KBP_NA, "nyt10": rd.NYT10_NA}


def _to_split(examples: list[rd.RelationExample], label_names: list[str]) -> Split:
    index = {name: i for i, name in enumerate(label_names)}
    return Split(
        ids=[ex.id for ex in examples],
        texts=[ex.text for ex in examples],
        labels=np.asarray([index[ex.label] for ex in examples], np.int32),
        examples=examples,
        bags=[ex.bag for ex in examples] if all(ex.bag for ex in examples) else None,
    )


def _nyt10_records(cfg, which: int) -> list[dict]:
    import datasets

    if cfg.data.hub_id:
        split = (cfg.data.train_split, cfg.data.test_split)[which]
        try:
            return datasets.load_dataset(
                cfg.data.hub_id, cfg.data.hub_config or None, split=split
            ).to_list()
        except Exception as e:
            raise DataError(
                f"cannot load hub dataset {cfg.data.hub_id!r} split {split!r} "
                f"({type(e).__name__}: {e}); check the id and network"
            ) from e
    path = resolve_data_dir(cfg.data.dir) / _FILES["nyt10"][which]
    if not path.is_file():
        raise DataError(
            f"missing {path}: download NYT-10 with OpenNRE's "
            "benchmark/download_nyt10.sh into DATA_DIR/nyt10, or set data.hub_id"
        )
    return datasets.load_dataset("json", data_files=str(path), split="train").to_list()


def load_relation_dataset(cfg, skipped: dict[str, int]) -> Dataset:
    """Load ``data.name`` in {semeval, wiki_kbp, nyt10} into train/test splits."""
    name, on_error = cfg.data.name, cfg.data.on_error
    splits = []
    if name == "semeval":
        label_names = list(rd.SEMEVAL_LABELS)
        root = resolve_data_dir(cfg.data.dir)
        for f in _FILES[name]:
            exs, sk = rd.load_semeval(root / f, on_error=on_error)
            splits.append(exs)
            _merge(skipped, sk)
    elif name == "wiki_kbp":
        label_names = list(rd.WIKI_KBP_LABELS)
        root = resolve_data_dir(cfg.data.dir)
        for f in _FILES[name]:
            exs, sk = rd.load_wiki_kbp(root / f, on_error=on_error, label_names=label_names)
            splits.append(exs)
            _merge(skipped, sk)
    else:
        records = [_nyt10_records(cfg, 0), _nyt10_records(cfg, 1)]
        found = sorted({str(r.get("relation")) for r in records[0]} - {rd.NYT10_NA})
        label_names = [rd.NYT10_NA] + found
        for recs in records:
            exs, sk = rd.load_nyt10_records(recs, on_error=on_error, label_names=label_names)
            splits.append(exs)
            _merge(skipped, sk)
    for exs, where in zip(splits, ("train", "test"), strict=True):
        if not exs:
            raise DataError(f"{name} {where} split has no usable records; check data.dir")
    return Dataset(
        name,
        label_names,
        _to_split(splits[0], label_names),
        _to_split(splits[1], label_names),
        skipped,
    )


def _merge(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


class RelationTask:
    """Relation classification with a no-relation label."""

    name = "relation"
    primary_metric = "micro_f1"

    def __init__(self, cfg, dataset: Dataset):
        self.label_names = list(dataset.label_names)
        na = cfg.task.no_relation_label or _NA.get(cfg.data.name, "")
        if na not in self.label_names:
            raise ConfigError(
                f"task.no_relation_label={na!r} is not a label of {dataset.name} "
                f"({', '.join(self.label_names[:5])}, ...); set it correctly"
            )
        if cfg.task.input_format not in ri.INPUT_FORMATS:
            raise ConfigError(
                f"task.input_format={cfg.task.input_format!r}: use one of "
                f"{', '.join(ri.INPUT_FORMATS)}"
            )
        self.na_index = self.label_names.index(na)
        self.input_format = cfg.task.input_format
        self.p_at_n = tuple(int(n) for n in cfg.task.p_at_n)
        self.dataset_name = dataset.name

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def prepare_tokenizer(self, tokenizer) -> int:
        """Add the entity markers; returns how many rows the embedding table must grow."""
        before = len(tokenizer)
        ri.add_marker_tokens(tokenizer)
        return len(tokenizer) - before

    def encode(self, split: Split, tokenizer, max_len: int) -> Encoded:
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
        counts = np.bincount(split.labels, minlength=self.num_labels)
        return float(counts.max() / max(1, counts.sum()))
