"""What a data set asks to predict, and how it is scored.

A task is one of `TASKS`: "classification" (one class per graph:
cross-entropy, accuracy), "binary" (one or more yes/no tasks per graph,
labels possibly missing: masked binary cross-entropy, ROC-AUC or average
precision over the tasks that have both classes, as OGB's evaluator) or
"regression" (one or more real targets: masked squared error, RMSE or
MAE). `task_of(dataset)` reads it from the targets. Losses are jax.numpy
(inside compiled programs); metrics are NumPy and scikit-learn on the
host, over every graph of a split at once.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


class Task(NamedTuple):
  """A prediction task.

  Attributes:
    kind: "classification", "binary" or "regression".
    outputs: the model's output width: classes, or tasks.
    metric: the score models are selected and reported by (a name in
      METRICS).
  """
  kind: str
  outputs: int
  metric: str

  @property
  def higher_is_better(self) -> bool:
    """Whether a larger `metric` is better (RMSE and MAE: smaller)."""
    return METRICS[self.metric][1]


def masked_binary_cross_entropy(logits: jax.Array, targets: jax.Array,
                                graph_mask: jax.Array) -> jax.Array:
  """Mean binary cross-entropy over the labelled entries: logits and
  targets [B, T] (NaN: no label), graph_mask [B] bool. [] float; 0 when
  nothing is labelled."""
  labelled = graph_mask[:, None] & ~jnp.isnan(targets)
  y = jnp.where(labelled, targets, 0.0)
  losses = jnp.maximum(logits, 0) - logits * y + jnp.log1p(
      jnp.exp(-jnp.abs(logits)))
  total = jnp.sum(jnp.where(labelled, losses, 0.0))
  return total / jnp.maximum(jnp.sum(labelled), 1)


def masked_squared_error(predictions: jax.Array, targets: jax.Array,
                         graph_mask: jax.Array) -> jax.Array:
  """Mean squared error over the labelled entries: predictions and
  targets [B, T] (NaN: no label), graph_mask [B] bool. [] float."""
  labelled = graph_mask[:, None] & ~jnp.isnan(targets)
  errors = jnp.where(labelled, predictions - jnp.where(labelled, targets,
                                                       0.0), 0.0)
  return jnp.sum(errors ** 2) / jnp.maximum(jnp.sum(labelled), 1)


def per_task(score: Callable, targets: np.ndarray, predictions: np.ndarray,
             needs_both_classes: bool) -> float:
  """Mean over the tasks (columns) of `score(y, p)` on each task's
  labelled graphs; with `needs_both_classes`, tasks without both a 0 and
  a 1 are skipped (ValueError when none is left), as OGB's evaluator."""
  targets, predictions = np.atleast_2d(targets.T).T, np.atleast_2d(
      predictions.T).T
  scores = []
  for task in range(targets.shape[1]):
    labelled = ~np.isnan(targets[:, task])
    y, p = targets[labelled, task], predictions[labelled, task]
    if needs_both_classes and not (np.any(y == 1) and np.any(y == 0)):
      continue
    if len(y):
      scores.append(score(y, p))
  if not scores:
    raise ValueError("no task has both a positive and a negative label "
                     "among these graphs: the score is undefined")
  return float(np.mean(scores))


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
  """ROC-AUC [G, T] averaged over the tasks with both classes."""
  return per_task(roc_auc_score, targets, scores, True)


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
  """Average precision [G, T] averaged over the tasks with both classes."""
  return per_task(average_precision_score, targets, scores, True)


def rmse(targets: np.ndarray, predictions: np.ndarray) -> float:
  """Root mean squared error per task [G, T], averaged over the tasks."""
  return per_task(lambda y, p: np.sqrt(np.mean((y - p) ** 2)), targets,
                  predictions, False)


def mae(targets: np.ndarray, predictions: np.ndarray) -> float:
  """Mean absolute error per task [G, T], averaged over the tasks."""
  return per_task(lambda y, p: np.mean(np.abs(y - p)), targets, predictions,
                  False)


def accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
  """Share of graphs whose largest logit [G, C] is their label [G]."""
  return float(np.mean(np.argmax(logits, axis=-1) == labels))


# metric name -> (function(targets, predictions), higher is better)
METRICS: Dict[str, tuple] = {
    "accuracy": (accuracy, True), "rocauc": (roc_auc, True),
    "ap": (average_precision, True), "rmse": (rmse, False),
    "mae": (mae, False)}
TASKS = ("classification", "binary", "regression")


def task_of(dataset, metric: Optional[str] = None) -> Task:
  """The task of a GraphDataset: classification where its labels are one
  class per graph (TU sets, and a single integer target column), binary
  where every target is 0, 1 or missing, else regression; the metric
  given, or the kind's default (accuracy, rocauc, rmse)."""
  targets = dataset.targets
  if dataset.num_classes >= 2 and (targets is None or targets.shape[1] == 1
                                   and set(np.unique(targets)) != {0, 1}):
    task = Task("classification", dataset.num_classes, "accuracy")
  elif targets is None:
    raise ValueError(f"{dataset.name}: no targets and fewer than two "
                     "classes: nothing to learn")
  elif np.all(np.isin(targets[~np.isnan(targets)], (0.0, 1.0))):
    task = Task("binary", targets.shape[1], "rocauc")
  else:
    task = Task("regression", targets.shape[1], "rmse")
  if metric is not None:
    if metric not in METRICS:
      raise ValueError(f"metric={metric!r}; expected one of "
                       f"{tuple(METRICS)}")
    task = task._replace(metric=metric)
  return task
