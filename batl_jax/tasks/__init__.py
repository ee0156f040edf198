"""Tasks: how a dataset's rows become model inputs, and how predictions are scored."""

from batl_jax.errors import ConfigError


def get_task(cfg, dataset):
    """The task object for ``cfg.task.name``."""
    name = cfg.task.name
    if name == "classification":
        from batl_jax.tasks.classification import ClassificationTask

        return ClassificationTask(dataset.label_names)
    if name == "relation":
        from batl_jax.tasks.relation import RelationTask

        return RelationTask(cfg, dataset)
    raise ConfigError(f"unknown task.name {name!r}: use 'classification' or 'relation'")
