"""Tasks: masked losses against float64 NumPy, metrics against
scikit-learn task by task, and the task read from a data set."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from diffpool_jax import tasks
from diffpool_jax.datasets import synthetic_hierarchical

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 3)) * 3
TARGETS = np.array([[1, 0, np.nan], [0, 0, 1], [np.nan, 0, 0], [1, 0, 1],
                    [0, np.nan, np.nan], [1, 1, 0]])
GRAPHS = np.array([True, True, True, True, True, False])   # last: padding


def test_masked_binary_cross_entropy_matches_float64():
  got = tasks.masked_binary_cross_entropy(
      jnp.asarray(LOGITS, jnp.float32), jnp.asarray(TARGETS, jnp.float32),
      jnp.asarray(GRAPHS))
  labelled = GRAPHS[:, None] & ~np.isnan(TARGETS)
  p = 1 / (1 + np.exp(-LOGITS))
  y = np.nan_to_num(TARGETS)
  losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  assert float(got) == pytest.approx(losses[labelled].mean(), rel=1e-5)
  nothing = tasks.masked_binary_cross_entropy(
      jnp.zeros((2, 1)), jnp.full((2, 1), jnp.nan), jnp.ones(2, bool))
  assert float(nothing) == 0.0


def test_masked_squared_error_matches_float64():
  targets = np.where(np.isnan(TARGETS), np.nan, RNG.normal(size=(6, 3)))
  got = tasks.masked_squared_error(jnp.asarray(LOGITS, jnp.float32),
                                   jnp.asarray(targets, jnp.float32),
                                   jnp.asarray(GRAPHS))
  labelled = GRAPHS[:, None] & ~np.isnan(targets)
  want = ((LOGITS - targets)[labelled] ** 2).mean()
  assert float(got) == pytest.approx(want, rel=1e-5)


def test_binary_metrics_skip_tasks_without_both_classes_as_ogb():
  targets = TARGETS[:5]
  scores = LOGITS[:5]
  # task 1's labels are all 0 (and one NaN) on these graphs: skipped
  want_auc = np.mean([roc_auc_score([1, 0, 1, 0], scores[[0, 1, 3, 4], 0]),
                      roc_auc_score([1, 0, 1], scores[[1, 2, 3], 2])])
  assert tasks.roc_auc(targets, scores) == pytest.approx(want_auc)
  want_ap = np.mean([
      average_precision_score([1, 0, 1, 0], scores[[0, 1, 3, 4], 0]),
      average_precision_score([1, 0, 1], scores[[1, 2, 3], 2])])
  assert tasks.average_precision(targets, scores) == pytest.approx(want_ap)
  with pytest.raises(ValueError, match="no task has both a positive and a "
                     "negative label"):
    tasks.roc_auc(np.zeros((3, 1)), np.ones((3, 1)))


def test_regression_metrics_average_over_tasks():
  targets = np.array([[1.0, np.nan], [2.0, 4.0], [3.0, 5.0]])
  predictions = np.array([[1.5, 9.0], [2.0, 3.0], [1.0, 5.0]])
  rmse = np.mean([np.sqrt((0.25 + 0 + 4) / 3), np.sqrt((1 + 0) / 2)])
  mae = np.mean([(0.5 + 0 + 2) / 3, (1 + 0) / 2])
  assert tasks.rmse(targets, predictions) == pytest.approx(rmse)
  assert tasks.mae(targets, predictions) == pytest.approx(mae)
  assert tasks.accuracy(np.array([0, 2]), np.array([[3, 1, 0], [0, 3, 2]])
                        ) == 0.5


def with_targets(targets):
  data = synthetic_hierarchical(num_graphs=len(targets), seed=0)
  return dataclasses.replace(data, targets=np.asarray(targets, np.float32),
                             labels=np.zeros(len(targets), np.int64),
                             label_values=np.zeros(0))


def test_the_task_follows_from_the_targets():
  data = synthetic_hierarchical(num_graphs=12, seed=0)
  assert tasks.task_of(data) == tasks.Task("classification",
                                           data.num_classes, "accuracy")
  binary = tasks.task_of(with_targets([[1], [0], [1], [0]]))
  assert binary == tasks.Task("binary", 1, "rocauc")
  assert tasks.task_of(with_targets([[1, np.nan], [0, 1]])).outputs == 2
  regression = tasks.task_of(with_targets([[0.5], [-2.0]]))
  assert regression == tasks.Task("regression", 1, "rmse")
  assert not regression.higher_is_better and binary.higher_is_better
  assert tasks.task_of(with_targets([[0.5], [2.0]]),
                       metric="mae").metric == "mae"
  with pytest.raises(ValueError, match="metric='auc' does not score a "
                     "classification task"):
    tasks.task_of(data, metric="auc")
