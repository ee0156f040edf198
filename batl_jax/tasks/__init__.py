"""Tasks: how a dataset's rows become model inputs, and how predictions are scored.

Importing this package registers the datasets its tasks own (relation extraction:
semeval, wiki_kbp, nyt10) with :func:`batl_jax.data.register_loader`.
"""

from batl_jax.errors import ConfigError
from batl_jax.tasks import relation
from batl_jax.tasks.base import Task
from batl_jax.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "Task", "get_task"]


def get_task(cfg, dataset) -> Task:
    """The task object for ``cfg.task.name`` over ``dataset``'s labels."""
    name = cfg.task.name
    if name == "classification":
        return ClassificationTask(dataset.label_names)
    if name == "relation":
        return relation.RelationTask(
            dataset.label_names,
            dataset.name,
            no_relation_label=cfg.task.no_relation_label,
            input_format=cfg.task.input_format,
            p_at_n=tuple(cfg.task.p_at_n),
        )
    raise ConfigError(f"unknown task.name {name!r}: use 'classification' or 'relation'")
