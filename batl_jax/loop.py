"""The active-learning loop of SPEC.md (Algorithm 1), resumable round by round.

Each round: fine-tune on the labeled set → evaluate on the test split → score the
pool with the strategy → select ``k`` → reveal their labels → checkpoint. The last
round trains and evaluates but does not select. Every random draw of round ``r`` is
derived from ``(config.seed, r)``, so a run resumed from the checkpoint of round ``r``
produces exactly the rows an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from batl_jax import analysis, data, run_files, sharding, strategies, surprisal, tasks, train
from batl_jax.checkpointing import Checkpointer, LoopState
from batl_jax.config_checks import check_values
from batl_jax.errors import ConfigError, ModelError, StateError
from batl_jax.faults import kill_point  # test hooks (BATL_KILL_AT); no-ops otherwise
from batl_jax.features import FeaturePasses, default_cache_dir
from batl_jax.model import hf_params
from batl_jax.model.factory import ModelFactory, resolve_model_name
from batl_jax.oracle import HumanOracle

# Purposes of derived seeds, so no two draws of a round share a stream.
log = logging.getLogger(__name__)

_INIT, _TRAIN, _SELECT, _MODEL = 1, 2, 3, 4


def derive_seed(seed: int, round_: int, purpose: int) -> int:
    """A 31-bit seed for one purpose of one round, independent of every other."""
    return int(np.random.SeedSequence([seed, round_ + 1, purpose]).generate_state(1)[0] >> 1)


def initial_labeled(num_rows: int, size: int, seed: int) -> np.ndarray:
    """The round-0 labeled set: the same for every strategy under one seed."""
    rng = np.random.default_rng(derive_seed(seed, -1, _INIT))
    return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)


def initial_size(cfg) -> int:
    """``al.initial_size``, where -1 (the default) means ``al.batch_size``."""
    return cfg.al.batch_size if cfg.al.initial_size == -1 else cfg.al.initial_size


def check_config(cfg, spec, pool_size: int) -> None:
    """Refuse inconsistent settings before any work is done (values and ranges first)."""
    check_values(cfg)
    al = cfg.al
    init = initial_size(cfg)
    if al.batch_size > pool_size:
        raise ConfigError(
            f"al.batch_size={al.batch_size} is larger than the pool ({pool_size} rows); "
            "lower --config.al.batch_size or raise --config.data.pool_limit"
        )
    if not 0 <= init <= pool_size - al.batch_size:
        raise ConfigError(
            f"al.initial_size={init} must be between 0 and pool size minus "
            f"al.batch_size ({pool_size - al.batch_size}); lower it"
        )
    if init == 0 and spec.needs_trained_model:
        raise ConfigError(
            f"strategy {spec.name!r} needs a trained classifier, but al.initial_size=0; "
            "set --config.al.initial_size>0 or use a cold-start strategy (rand, alps)"
        )


def integrate_on_host(params, sentence: np.ndarray, hidden: np.ndarray, batl_cfg) -> np.ndarray:
    """BATL's e(x) with ``batl.sentence_rep = pretrained``: the trained integration layer
    applied to ``[s_pretrained; h_C]`` (the model itself only sees its own s)."""
    layer = jax.device_get(nnx.State(params).to_pure_dict())["integrate"]
    e = np.concatenate([sentence, hidden], axis=1) @ np.asarray(layer["kernel"]) + np.asarray(
        layer["bias"]
    )
    if batl_cfg.normalize:
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e.astype(np.float32)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class Experiment:
    """All the state of one run: data, model factory, steps, files."""

    def __init__(self, cfg, workdir: Path, mesh):
        self.cfg, self.workdir, self.mesh = cfg, Path(workdir), mesh
        # Every check comes before the first write: a refused run leaves the workdir as it
        # was (a fresh one stays empty, so the fixed command is not "a different config").
        self.spec = strategies.get(cfg.al.strategy)
        check_values(cfg)
        run_files.check_config_file(self.workdir, cfg.to_dict())
        self.dataset = data.load_dataset(cfg, cfg.seed)
        self.task = tasks.get_task(cfg, self.dataset)
        check_config(cfg, self.spec, len(self.dataset.train))

        tokenizer = hf_params.load_tokenizer(resolve_model_name(cfg.model.name))
        base_vocab = len(tokenizer)  # before task tokens (relation markers) are added
        self.task.prepare_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.factory = ModelFactory(
            cfg.model.name,
            self.task.num_labels,
            pooling=cfg.model.pooling,
            dropout=cfg.train.dropout,
            embed_dim=cfg.batl.embed_dim if "embedding" in self.spec.needs else 0,
            normalize=cfg.batl.normalize,
            with_mlm_head="surprisal" in self.spec.needs,
            mlm_head_optional=cfg.alps.fit_mlm_head,
            vocab_size=len(tokenizer),
            revision=cfg.model.revision,
            dtype=cfg.model.dtype,
        )
        if base_vocab > self.factory.checkpoint_vocab_size:
            # Token ids past the embedding table would be clamped silently on device.
            raise ModelError(
                f"the tokenizer of {cfg.model.name} has {base_vocab} tokens but the model's "
                f"embedding table has {self.factory.checkpoint_vocab_size} rows (config.json "
                "vocab_size); put the tokenizer files that belong to this checkpoint in its dir"
            )
        max_len = min(cfg.model.max_len, self.factory.config.max_position_embeddings)
        self.buckets = data.check_buckets(cfg.data.buckets, max_len)
        self.encoded = {
            "train": self.task.encode(self.dataset.train, tokenizer, max_len),
            "test": self.task.encode(self.dataset.test, tokenizer, max_len),
        }
        shards = sharding.num_shards(mesh)
        self.train_batch = _round_up(cfg.train.batch_size, shards)
        self.passes = FeaturePasses(
            self.encoded,
            self.buckets,
            _round_up(cfg.train.eval_batch_size, shards),
            cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(),
            model_key=self.factory.identity() if cfg.train.cache_features else "",
        )
        self.head_mode = cfg.train.mode == "head"
        loss_cfg = train.LossConfig(
            triplet_weight=cfg.batl.train_triplet_weight if "embedding" in self.spec.needs else 0,
            margin=cfg.batl.margin,
        )
        probe = self.factory.classifier(0, with_encoder=not self.head_mode)
        # One Steps for the run: every round's model has the same graph, so steps compile once.
        self.steps = train.Steps(
            nnx.split(probe, nnx.Param, ...)[0], mesh, loss_cfg, cfg.train.weight_decay
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_log = run_files.JsonlLog(self.workdir / "metrics.jsonl")
        self.selected_log = run_files.JsonlLog(self.workdir / "selected.jsonl")
        self.ckpt = Checkpointer(self.workdir, cfg.checkpoint.keep)
        self.oracle = None  # al.oracle=human: labels come from people (batl_jax.label)
        # The labels training and strategies see: the dataset's, or the humans' (oracle).
        self.train_labels = self.dataset.train.labels
        if cfg.al.oracle == "human":
            self.oracle = HumanOracle(
                self.workdir, self.dataset.train, self.task.label_names, self.task.name
            )
            self.train_labels = self.oracle.labels
        # Eqs. 7-9 of the selected batch, every round (the reference classifier is lazy).
        self.analyzer = analysis.Analyzer(self) if cfg.analysis.enabled else None
        if self.oracle is not None and (self.dataset.train.labels < 0).any():
            # The analysis' reference classifier trains on every pool label; there are none.
            self.analyzer = None

    # -- features that do not change across rounds ------------------------------------------
    def _pretrained_sentence(self, split: str) -> np.ndarray:
        """s(x) of the pre-trained encoder, computed once per run (head mode, BATL option)."""
        model = self.factory.classifier(0, with_encoder=True)
        _, params, rest = train.split_model(model)
        steps = self._encoder_steps()
        return self.passes.pretrained_sentence(split, steps, params, rest)

    def _encoder_steps(self):
        if self.head_mode:
            if not hasattr(self, "_enc_steps"):
                probe = self.factory.classifier(0, with_encoder=True)
                self._enc_steps = train.Steps(
                    nnx.split(probe, nnx.Param, ...)[0], self.mesh, train.LossConfig(), 0.0
                )
            return self._enc_steps
        return self.steps

    def _surprisal(self) -> np.ndarray:
        """ALPS surprisal embeddings of the pool under the pre-trained encoder + MLM head.

        A property of the model and the data only (fixed position seed), so it is
        computed once and kept in the feature cache across runs and resumptions.
        """
        if hasattr(self, "_surprisal_cache"):
            return self._surprisal_cache
        cfg, tok = self.cfg, self.tokenizer
        key = "|".join(
            [
                self.passes.model_key,
                "alps",
                str(cfg.alps.mask_prob),
                str(cfg.alps.masked),
                str(cfg.alps.fit_mlm_head),
                str(cfg.alps.fit_steps),
            ]
        )
        path = self.passes.cache_path("train", key, "surprisal") if self.passes.model_key else None
        info_path = path.with_suffix(".json") if path is not None else None
        if path is not None and path.is_file() and info_path.is_file():
            self._surprisal_cache = np.load(path, allow_pickle=False)
            self._record_deviation(json.loads(info_path.read_text()))
            return self._surprisal_cache
        encoder = self.factory.encoder()
        special = sorted(set(tok.all_special_ids))
        head, info = self.factory.mlm_head, {}
        if cfg.alps.fit_mlm_head and head is None:
            head, info = surprisal.fit_mlm_head(
                encoder, None, self.factory.config, self.encoded["train"],
                np.arange(len(self.encoded["train"])), special_ids=special,
                mask_token_id=tok.mask_token_id, mesh=self.mesh, steps=cfg.alps.fit_steps,
                seed=0, buckets=self.buckets,
            )  # fmt: skip
        s = surprisal.surprisal_embeddings(
            encoder, head, self.encoded["train"], special_ids=special, mesh=self.mesh,
            buckets=self.buckets, batch_size=self.passes.batch_size,
            mask_prob=cfg.alps.mask_prob, masked=cfg.alps.masked,
            mask_token_id=tok.mask_token_id, vocab_size=len(tok),
        )  # fmt: skip
        self._record_deviation(info)
        if path is not None:
            self.passes.save_cached(path, s)
            run_files.atomic_write_text(info_path, json.dumps(info))
        self._surprisal_cache = s
        return s

    def _record_deviation(self, info: dict) -> None:
        """Note departures from the paper's setting (e.g. a fitted MLM head) in run_info.json."""
        if info:
            log.warning("deviation from the reference setting: %s", info)
        if info and run_files.is_primary():
            run_files.atomic_write_text(
                self.workdir / "run_info.json", json.dumps({"deviations": [info]}, indent=2) + "\n"
            )

    # -- one round ---------------------------------------------------------------------------
    def fit_round(self, r: int, labeled: np.ndarray, prev_params) -> train.FitResult:
        """Train round ``r``'s model on the ``labeled`` rows, seeded by (seed, round).

        ``prev_params`` (a pure dict) warm-starts the model instead of the fresh
        pre-trained weights; the benchmark calls this directly to time training alone.
        """
        cfg = self.cfg
        model = self.factory.classifier(
            derive_seed(cfg.seed, r, _MODEL), with_encoder=not self.head_mode
        )
        if prev_params is not None:
            params_state = nnx.state(model, nnx.Param)
            nnx.replace_by_pure_dict(params_state, prev_params)
            nnx.update(model, params_state)
        enc = self.encoded["train"]
        rng = np.random.default_rng(derive_seed(cfg.seed, r, _TRAIN))
        buckets = (self.buckets[-1],) if self.head_mode else self.buckets
        epoch_rngs, served = {}, [0]

        def batches(epoch):
            epoch_rngs.setdefault(epoch, np.random.default_rng(rng.integers(2**31)))
            for batch in data.training_batches(
                enc, labeled, self.train_batch, buckets, epoch_rngs[epoch]
            ):
                served[0] += 1
                if served[0] == 2:
                    kill_point(f"round{r}:train")  # test hook: mid-training
                yield batch

        return train.fit(
            model,
            self.steps,
            batches,
            len(labeled),
            self.train_labels,
            batch_size=self.train_batch,
            epochs=cfg.train.epochs,
            min_steps=cfg.train.min_steps,
            lr=cfg.train.lr,
            warmup_ratio=cfg.train.warmup_ratio,
            sentence_cache=self._pretrained_sentence("train") if self.head_mode else None,
            desc=f"round {r} train",
        )

    def _select(self, r: int, fit: train.FitResult, labeled: np.ndarray, unlabeled: np.ndarray):
        cfg, spec = self.cfg, self.spec
        kill_point(f"round{r}:score")  # test hook: before the pool feature pass
        pretrained = None
        if "pretrained_sentence" in spec.needs or (
            "embedding" in spec.needs and cfg.batl.sentence_rep == "pretrained"
        ):
            pretrained = self._pretrained_sentence("train")
        feats = self.passes.pool(
            self.steps,
            fit.params,
            fit.rest,
            spec.needs,
            sentence=self._pretrained_sentence("train") if self.head_mode else None,
            mc_samples=cfg.bald.mc_samples,
            mc_scope=cfg.bald.dropout_scope,
            pretrained_sentence=pretrained,
        )
        if "surprisal" in spec.needs:
            feats = dataclasses.replace(feats, surprisal=self._surprisal())
        if pretrained is not None and "embedding" in spec.needs and not self.head_mode:
            feats = dataclasses.replace(
                feats, embedding=integrate_on_host(fit.params, pretrained, feats.hidden, cfg.batl)
            )
        self.pool_features = feats  # the analysis metrics of the selection reuse them
        t0 = time.perf_counter()
        k = min(cfg.al.batch_size, len(unlabeled))
        section = cfg.get(spec.config_section) if spec.config_section else None
        inp = strategies.SelectionInput(
            features=feats,
            unlabeled=unlabeled,
            labeled=labeled,
            labels=self.train_labels,
            seed=derive_seed(cfg.seed, r, _SELECT),
            mesh=self.mesh,
            config=section,
        )
        kill_point(f"round{r}:select")  # test hook: features done, selection not
        selection = spec.select(inp, k)
        selection.validate(unlabeled, k)
        self.hint_logits = feats.logits[selection.indices]  # al.oracle=human: label hints
        return selection, time.perf_counter() - t0

    def run(self) -> list[dict]:
        cfg = self.cfg
        n = len(self.dataset.train)
        state = self.ckpt.restore_latest()
        if state is not None:
            self._check_state(state, n)
        # The first write of the run: everything above has been checked.
        run_files.write_config_file(self.workdir, cfg.to_dict())
        if state is None:
            state = LoopState(
                round=0, labeled=initial_labeled(n, initial_size(cfg), cfg.seed), seed=cfg.seed
            )
            if self.oracle is not None and len(state.labeled):
                # Human oracle: the random initial set is the first batch to label (round -1).
                state.pending = state.labeled
                self.oracle.ask(-1, state.labeled)
                self.ckpt.save(state)
        self.metrics_log.truncate_to(state.round)
        self.selected_log.truncate_to(state.round)
        if self.oracle is not None:
            waiting = self.oracle.ready(state.labeled, state.pending, state.round)
            if waiting:
                return self._finish(waiting)
        labeled = np.sort(state.labeled)
        prev_params = state.params
        encode_s = 0.0
        if state.round < cfg.al.rounds and (self.head_mode or "surprisal" in self.spec.needs):
            t0 = time.perf_counter()
            if self.head_mode:
                self._pretrained_sentence("train")
                self._pretrained_sentence("test")
            if "surprisal" in self.spec.needs:
                self._surprisal()
            encode_s = time.perf_counter() - t0
        for r in range(state.round, cfg.al.rounds):
            unlabeled = np.setdiff1d(np.arange(n), labeled)
            times = {"encode_s": encode_s} if encode_s else {}
            encode_s = 0.0
            t0 = time.perf_counter()
            fit = self.fit_round(r, labeled, prev_params)
            times["train_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            sentence_test = self._pretrained_sentence("test") if self.head_mode else None
            probs = self.passes.test_probs(self.steps, fit.params, fit.rest, sentence_test)
            test = self.task.metrics(probs, self.dataset.test)
            times["eval_s"] = time.perf_counter() - t0
            row = {
                "test_majority_rate": self.task.majority_rate(self.dataset.test),
                "round": r,
                "labeled": int(len(labeled)),
                "strategy": self.spec.name,
                "seed": cfg.seed,
                "train_steps": fit.steps,
                "test": test,
            }
            last = r == cfg.al.rounds - 1 or len(unlabeled) == 0
            if not last:
                t0 = time.perf_counter()
                selection, select_s = self._select(r, fit, labeled, unlabeled)
                times["features_s"] = time.perf_counter() - t0 - select_s
                times["select_s"] = select_s
                if self.analyzer is not None:
                    t0 = time.perf_counter()
                    row["analysis"] = self.analyzer(
                        self.pool_features, selection.indices, unlabeled
                    )
                    times["analysis_s"] = time.perf_counter() - t0
                self.pool_features = None  # N × 2d floats: not kept across rounds
                ids = [self.dataset.train.ids[i] for i in selection.indices]
                self.selected_log.append(
                    {
                        "round": r,
                        "rows": selection.indices.tolist(),
                        "ids": ids,
                        "scores": {
                            k: np.asarray(v, np.float64).tolist()
                            for k, v in selection.scores.items()
                        },
                    }
                )
            row["time"] = times
            kill_point(
                f"round{r}:log", torn=(self.metrics_log.path, json.dumps(row, sort_keys=True))
            )  # test hook: selected.jsonl written, metrics.jsonl torn mid-line
            self.metrics_log.append(row)
            log.info(
                "round %d: %d labeled, test %s",
                r,
                len(labeled),
                {k: round(v, 4) for k, v in test.items()},
            )
            if last:
                # A done marker: rerunning a finished workdir changes nothing.
                self.ckpt.save(LoopState(round=cfg.al.rounds, labeled=labeled, seed=cfg.seed))
                break
            labeled = np.sort(np.concatenate([labeled, selection.indices]))
            prev_params = None
            if not cfg.train.from_scratch:
                prev_params = jax.device_get(nnx.State(fit.params).to_pure_dict())
            pending = None
            if self.oracle is not None:
                # The query batch first: the checkpoint below is what makes it pending.
                self.oracle.ask(r, selection.indices, self.hint_logits)
                pending = selection.indices
            state = LoopState(r + 1, labeled, cfg.seed, params=prev_params, pending=pending)
            self.ckpt.save(state, kill_point=f"round{r}:checkpoint")
            kill_point(f"round{r}:saved")  # test hook: right after the commit
            if self.oracle is not None:
                waiting = self.oracle.ready(labeled, pending, r + 1)
                if waiting:
                    return self._finish(waiting)
        return self._finish()

    def _check_state(self, state: LoopState, n: int) -> None:
        """Refuse a checkpoint that does not fit the data (changed under the same config)."""
        rows = np.asarray(state.labeled)
        pending = np.asarray([] if state.pending is None else state.pending)
        if (
            (len(rows) and (rows.min() < 0 or rows.max() >= n))
            or len(np.unique(rows)) != len(rows)
            or not np.isin(pending, rows).all()
            or not 0 <= state.round <= self.cfg.al.rounds
        ):
            raise StateError(
                f"checkpoint of round {state.round} in {self.ckpt.directory} does not fit the "
                f"data ({len(rows)} labeled rows, pool of {n}): the data changed since the run "
                "started; restore the data (data.dir) or use a new --workdir"
            )

    def _finish(self, waiting: str | None = None) -> list[dict]:
        """Plot, close, and return the metrics rows; ``waiting`` tells the user which
        batch to label (a human-oracle run stops until it is labeled)."""
        cfg = self.cfg
        if waiting and run_files.is_primary():
            print(waiting, flush=True)  # stdout, plain: the one thing the user must act on
        rows = self.metrics_log.rows()
        run_files.plot_curves(
            self.workdir,
            rows,
            self.task.primary_metric,
            f"{cfg.name}: {self.spec.name}, seed {cfg.seed}",
        )
        self.ckpt.close()
        return rows
