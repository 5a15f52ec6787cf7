"""What a data set asks to predict, and how it is scored.

A task is one of `TASKS`: "classification" (one class per graph:
cross-entropy, accuracy), "binary" (one or more yes/no tasks per graph,
labels possibly missing: masked binary cross-entropy, ROC-AUC or average
precision over the tasks that have both classes, as OGB's evaluator) or
"regression" (one or more real targets: masked squared error, RMSE or
MAE). `task_of(dataset)` reads it from the targets (or takes the kind and
metric given), `task_loss` is its training loss. Losses are jax.numpy
(inside compiled programs); metrics are NumPy and scikit-learn on the
host, over every graph of a split at once.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np


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
  from sklearn.metrics import roc_auc_score   # 1 s to import: when used
  return per_task(roc_auc_score, targets, scores, True)


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
  """Average precision [G, T] averaged over the tasks with both classes."""
  from sklearn.metrics import average_precision_score
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
# task kind -> the metrics that score it (the first is the default)
TASKS: Dict[str, Tuple[str, ...]] = {
    "classification": ("accuracy",), "binary": ("rocauc", "ap"),
    "regression": ("rmse", "mae")}


def score_key(metric: str) -> str:
  """The name of a metric in a run's history and metrics.jsonl ("val_acc",
  "val_rocauc", "test_rmse", ...)."""
  return "acc" if metric == "accuracy" else metric


def score(task: Task, targets: np.ndarray, outputs: np.ndarray) -> float:
  """The task's metric of outputs [G, O] against targets [G, T] (binary
  and regression tasks; classification is scored inside the programs)."""
  return METRICS[task.metric][0](targets, outputs)


def check_scorable(task: Task, targets: np.ndarray, where: str) -> None:
  """ValueError naming `where` (e.g. "the valid part of fold 0") when the
  metric of a binary task is undefined on these targets [G, T]: no task
  with both a positive and a negative label."""
  if task.kind == "binary":
    try:
      score(task, targets, targets)
    except ValueError:
      raise ValueError(f"{where}: no target column has both a positive and "
                       f"a negative label, so its {task.metric} is "
                       "undefined; use a larger split") from None


def shown(metric: str, value: Optional[float]) -> str:
  """A score as the tables print it: accuracy, ROC-AUC and AP in percent
  ("73.94"), errors as they are ("0.874")."""
  if value is None or not np.isfinite(value):
    return "nan"
  return f"{100 * value:.2f}" if METRICS[metric][1] else f"{value:.3f}"


def is_binary(targets: np.ndarray) -> bool:
  """Whether every labelled target [G, T] is 0 or 1."""
  return bool(np.all(np.isin(targets[~np.isnan(targets)], (0.0, 1.0))))


def target_place(dataset, graph: int) -> str:
  """Where graph `graph`'s targets are written: "line L of FILE" (the
  reader's `targets_file`), else "graph G"."""
  if dataset.targets_file:
    return f"line {graph + 1} of {dataset.targets_file}"
  return f"graph {graph}"


def column_kind(column: np.ndarray) -> str:
  """A target column [G] by its labelled values: "empty" (none), "binary"
  (all 0 or 1), "integer" or "real"."""
  labelled = column[~np.isnan(column)]
  if labelled.size == 0:
    return "empty"
  if np.all(np.isin(labelled, (0.0, 1.0))):
    return "binary"
  return "integer" if np.all(labelled == np.round(labelled)) else "real"


def check_labelled_columns(dataset) -> None:
  """ValueError naming the column when a target column has no label in
  any graph (whatever the task: nothing could be learnt or scored)."""
  if dataset.targets is None:
    return
  for j in range(dataset.targets.shape[1]):
    if column_kind(dataset.targets[:, j]) == "empty":
      raise ValueError(f"{dataset.name}: target column {j} has no label in "
                       f"any of its {len(dataset.targets)} graphs (every "
                       "field missing); remove the column")


def inferred_kind(dataset) -> Tuple[str, str]:
  """(kind, why): the task the data set declares (its reader's
  `declared_task`), else the one its targets fit cleanly:
  classification for class labels (TU sets) or one column of integer
  class ids, binary where every labelled target is 0 or 1, regression
  for columns of numbers. ValueError with the reason where they fit none
  cleanly (class ids with missing fields; a class of a single graph, as a
  stray value in a 0/1 column; 0/1 columns beside columns of numbers);
  give the task then."""
  if dataset.declared_task is not None:
    return dataset.declared_task
  targets = dataset.targets
  if targets is None:
    return "classification", "inferred: one class label per graph"
  kinds = [column_kind(targets[:, j]) for j in range(targets.shape[1])]
  columns = f"{len(kinds)} target column{'s' * (len(kinds) > 1)}"
  if all(k == "binary" for k in kinds):
    return "binary", f"inferred: {columns}, every label 0, 1 or missing"
  if kinds == ["integer"]:
    column = targets[:, 0]
    missing = np.flatnonzero(np.isnan(column))
    if missing.size:
      raise ValueError(
          f"{dataset.name}: the target column holds integer class ids and "
          f"{missing.size} missing label(s) (first at "
          f"{target_place(dataset, int(missing[0]))}); a class task needs "
          "every label: fill them, or give the task (--task regression "
          "treats the ids as numbers)")
    values, counts = np.unique(column, return_counts=True)
    if np.any(counts == 1):
      lone = values[np.argmax(counts == 1)]
      graph = int(np.argmax(column == lone))
      raise ValueError(
          f"{dataset.name}: the target column reads as class ids "
          f"{values.tolist()[:8]}{'...' if len(values) > 8 else ''}, but "
          f"class {lone:g} has a single graph "
          f"({target_place(dataset, graph)}); a class needs graphs to "
          "train and test on: correct the value, or give the task "
          "(--task classification, binary or regression)")
    return "classification", (f"inferred: one column of {len(values)} "
                              "integer class ids")
  if "binary" in kinds:
    binary = [j for j, k in enumerate(kinds) if k == "binary"]
    other = [j for j, k in enumerate(kinds) if k != "binary"]
    raise ValueError(
        f"{dataset.name}: target columns {binary} hold only 0 and 1 but "
        f"columns {other} other numbers, so no one task fits them; give "
        "the task (--task binary or regression)")
  return "regression", f"inferred: {columns} of numbers"


def resolve_task(dataset, kind: str = "auto", metric: str = "auto"
                 ) -> Tuple[Task, str]:
  """The task of a GraphDataset and where it came from: its kind
  (`inferred_kind`, or `kind` given: "classification" of a set with one
  class id per graph, "binary" of 0/1 targets, "regression" of any
  targets) and the kind's default metric (`TASKS`) or `metric`.
  ValueError naming the field at fault when the data cannot be learnt
  so."""
  if kind != "auto" and kind not in TASKS:
    raise ValueError(f"task={kind!r}; expected 'auto' or one of "
                     f"{tuple(TASKS)}")
  check_labelled_columns(dataset)
  if kind == "auto":
    kind, source = inferred_kind(dataset)
  else:
    source = f"given: task={kind!r}"
  check_fits(dataset, kind)
  targets = dataset.targets
  outputs = dataset.num_classes if kind == "classification" else (
      targets.shape[1])
  if metric == "auto":
    metric = TASKS[kind][0]
  if metric not in TASKS[kind]:
    raise ValueError(f"metric={metric!r} does not score a {kind} task; "
                     f"expected 'auto' or one of {TASKS[kind]}")
  return Task(kind, outputs, metric), source


def check_fits(dataset, kind: str) -> None:
  """ValueError, with the reason and the place, unless the data set's
  labels or targets can be learnt as a task of `kind`."""
  targets = dataset.targets
  if kind == "classification" and dataset.num_classes < 2:
    if targets is None:
      raise ValueError(
          f"{dataset.name}: all {dataset.num_graphs} graphs have the same "
          f"class label ({', '.join(map(str, np.asarray(dataset.label_values).tolist()))}"
          "), so there is nothing to classify; check its graph label file")
    raise ValueError(
        f"task='classification': {dataset.name}'s targets are not one "
        "column of integer class ids with every label and at least two "
        f"values ({targets.shape[1]} column(s)); use task='binary' or "
        "'regression'")
  if kind != "classification" and targets is None:
    raise ValueError(f"task={kind!r}: {dataset.name} has class labels, no "
                     "target columns; use task='classification'")
  if kind == "binary" and not is_binary(targets):
    bad = ~np.isnan(targets) & ~np.isin(targets, (0.0, 1.0))
    graph, column = (int(v) for v in np.argwhere(bad)[0])
    raise ValueError(
        f"task='binary': {dataset.name} has target {targets[graph, column]:g}"
        f" in column {column} at {target_place(dataset, graph)}; a binary "
        "task takes 0, 1 and missing labels only (use task='regression' "
        "for numbers)")


def task_of(dataset, kind: str = "auto", metric: str = "auto") -> Task:
  """The task of a GraphDataset (`resolve_task` without its source)."""
  return resolve_task(dataset, kind, metric)[0]


def describe(task: Task, source: str) -> str:
  """One line on a task: "binary, 1 column, scored by rocauc (inferred:
  ...)"."""
  if task.kind == "classification":
    size = f"{task.outputs} classes"
  else:
    size = f"{task.outputs} column{'s' * (task.outputs > 1)}"
  return f"{task.kind}, {size}, scored by {task.metric} ({source})"


def task_loss(kind: str, outputs: jax.Array, labels: jax.Array,
              targets: Optional[jax.Array], graph_mask: jax.Array
              ) -> Tuple[jax.Array, jax.Array]:
  """The mean loss of a batch and its number of correct predictions (0
  for tasks other than classification).

  Args:
    kind: the task kind (a key of TASKS).
    outputs: [B, O] the model's outputs (logits, or predictions).
    labels: [B] int class ids (classification).
    targets: [B, T] float targets, NaN where missing (binary, regression).
    graph_mask: [B] bool, the real graphs.
  """
  if kind == "binary":
    return (masked_binary_cross_entropy(outputs, targets, graph_mask),
            jnp.zeros(()))
  if kind == "regression":
    return masked_squared_error(outputs, targets, graph_mask), jnp.zeros(())
  nll = -jnp.take_along_axis(jax.nn.log_softmax(outputs), labels[:, None],
                             1)[:, 0]
  count = jnp.maximum(jnp.sum(graph_mask), 1)
  loss = jnp.sum(jnp.where(graph_mask, nll, 0.0)) / count
  hits = jnp.argmax(outputs, -1) == labels
  return loss, jnp.sum(jnp.where(graph_mask, hits, False)).astype(jnp.float32)
