"""Human labelling of a run's query batch (``al.oracle = human``).

    python -m batl_jax.label status --workdir=W
    python -m batl_jax.label export --workdir=W [--out=DIR] [--all]
    python -m batl_jax.label import --workdir=W FILE [FILE ...] [--allow-blank]
    python -m batl_jax.label push --workdir=W --url=URL [--api-key=KEY] [--project=P]
    python -m batl_jax.label pull --workdir=W [--api-key=KEY] [--allow-blank]

``export`` writes the batch the run waits for (by default only the samples still
without a label) as ``round_<r>.csv`` and ``round_<r>.jsonl`` (``id``, ``text``,
``head``/``tail`` entities for relation extraction, the input file's original columns,
the model's top predictions as hints, and an empty ``label`` column to fill in),
``round_<r>.labelstudio.json`` with ``labelstudio_config.xml`` for Label Studio,
``round_<r>.argilla.json`` (Argilla 2.x records) and ``round_<r>.labels.txt`` (the
allowed labels). ``import`` reads a filled-in CSV or JSONL, Label Studio's JSON, JSON-MIN
or CSV export, or Argilla's ``records.to_json`` file, checks every entry (unknown labels,
ids not in the batch, duplicates, blanks, malformed entries: all reported with where they
are, nothing imported if any is wrong) and appends the labels to ``W/labels.jsonl``.
``push`` / ``pull`` do the same through a Label Studio server (``label-studio-sdk``): the
batch goes to a project as tasks with the model's hints as predictions, and the finished
annotations come back. Partial batches are fine: the run continues once every sample of
the batch has a label. A label, once imported, is final. ``status`` and ``export`` say
when the run has finished.
"""

from batl_jax.label.batch import export, finished, import_labels, status
from batl_jax.label.cli import main
from batl_jax.label.formats import parse_file
from batl_jax.label.labelstudio import pull, push

__all__ = ["export", "finished", "import_labels", "main", "parse_file", "pull", "push", "status"]
