"""Cross-validation protocols on per-epoch accuracy tables, and summaries.

Tables are indexed [epoch, fold, seed, point] (point: hyper-parameter
point). Both protocols are pure NumPy so they can be checked by hand.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from diffpool_jax.graphs import dense_batch

PAPER_NOTE = ("optimistic: the epoch is chosen by the mean accuracy on the "
              "test folds themselves (the DiffPool authors' protocol)")
FAIR_NOTE = ("Errica et al. 2020: model selection and early stopping on an "
             "inner validation holdout; test accuracy at the selected epoch")


def nan_argmax(values: np.ndarray) -> int:
  """Flat index of the largest value, NaN (a diverged run) never chosen
  unless every value is NaN (then 0)."""
  values = np.asarray(values, np.float64).ravel()
  if np.all(np.isnan(values)):
    return 0
  return int(np.nanargmax(values))


def paper_protocol(test_acc: np.ndarray) -> Dict[str, object]:
  """The DiffPool authors' protocol: every epoch, the mean test-fold
  accuracy over folds (and seeds); report its maximum over epochs.

  Args:
    test_acc: [E, F, S, P] accuracies; with several points P, each point is
      scored on its own and the best point is reported. NaN (a diverged
      member) excludes that epoch of that point.

  Returns:
    dict with accuracy (mean over folds at the best epoch), std over folds,
    per-fold accuracies (mean over seeds), the epoch (0-based) and point.
  """
  per_fold = test_acc.mean(axis=2)                     # [E, F, P]
  curve = per_fold.mean(axis=1)                        # [E, P]
  epoch, point = np.unravel_index(nan_argmax(curve), curve.shape)
  folds = per_fold[epoch, :, point]
  return {"protocol": "paper", "note": PAPER_NOTE,
          "accuracy": float(folds.mean()), "std": float(folds.std()),
          "fold_accuracies": folds.tolist(), "epoch": int(epoch),
          "point": int(point)}


def early_stopping_epoch(val_acc: np.ndarray, val_loss: np.ndarray,
                         patience: int) -> int:
  """The selected epoch of one run: best validation accuracy (ties: lower
  validation loss, then earlier), among the epochs seen before `patience`
  epochs pass without a new best.

  Args:
    val_acc, val_loss: [E] per-epoch validation accuracy and loss.
    patience: epochs without improvement before stopping.
  """
  best = 0
  for epoch in range(1, len(val_acc)):
    if epoch - best > patience:
      break
    better = (val_acc[epoch] > val_acc[best] or
              (val_acc[epoch] == val_acc[best] and
               val_loss[epoch] < val_loss[best]))
    if better:
      best = epoch
  return best


def fair_protocol(val_acc: np.ndarray, val_loss: np.ndarray,
                  test_acc: np.ndarray, patience: int) -> Dict[str, object]:
  """Errica et al.: per fold, each run (seed, point) stops early on its
  validation holdout; the point with the best mean validation accuracy over
  seeds is selected; the fold's score is the mean test accuracy of its
  seeds at their selected epochs. Reported: mean and std over folds.

  Args:
    val_acc, val_loss, test_acc: [E, F, S, P].
    patience: early-stopping patience in epochs.
  """
  _, num_folds, num_seeds, num_points = val_acc.shape
  chosen_val = np.zeros((num_folds, num_seeds, num_points))
  chosen_test = np.zeros((num_folds, num_seeds, num_points))
  epochs = np.zeros((num_folds, num_seeds, num_points), np.int64)
  for f in range(num_folds):
    for s in range(num_seeds):
      for p in range(num_points):
        e = early_stopping_epoch(val_acc[:, f, s, p], val_loss[:, f, s, p],
                                 patience)
        epochs[f, s, p] = e
        chosen_val[f, s, p] = val_acc[e, f, s, p]
        chosen_test[f, s, p] = test_acc[e, f, s, p]
  points = np.array([nan_argmax(row) for row in chosen_val.mean(axis=1)],
                    np.int64)                                    # [F]
  folds = chosen_test.mean(axis=1)[np.arange(num_folds), points]
  return {"protocol": "fair", "note": FAIR_NOTE,
          "accuracy": float(folds.mean()), "std": float(folds.std()),
          "fold_accuracies": folds.tolist(),
          "selected_points": points.tolist(),
          "selected_epochs": epochs[np.arange(num_folds), :, points].tolist()}


def level_one_assignments(model, variables, dataset, graph_ids
                          ) -> List[Tuple[np.ndarray, np.ndarray]]:
  """Per graph, the level-1 assignment [n_i, K] of its real nodes and the
  pooled adjacency [K, K], from a trained model (evaluation mode).

  Args:
    model: a `DiffPool` with at least one pooling level.
    variables: {"params": ..., "batch_stats": ...} of one member.
    dataset: the `GraphDataset` the ids refer to.
    graph_ids: graphs to run (one padded batch).
  """
  graph_ids = list(graph_ids)
  batch = dense_batch([dataset.edges[g] for g in graph_ids],
                      [dataset.features[g] for g in graph_ids],
                      dataset.labels[graph_ids],
                      int(dataset.n_node[graph_ids].max()))
  _, levels = model.apply(variables, batch.x, batch.adj, batch.node_mask)
  s, adj = np.asarray(levels[0].s), np.asarray(levels[0].adj)
  return [(s[i, :n], adj[i]) for i, n in enumerate(batch.n_node)]


def assignment_nmi(assignments: Sequence[np.ndarray],
                   communities: Sequence[np.ndarray]) -> float:
  """Mean over graphs of the normalised mutual information between the
  learned clusters (argmax of each node's assignment) and true communities.
  """
  scores = [normalized_mutual_info_score(truth, s.argmax(axis=1))
            for s, truth in zip(assignments, communities)]
  return float(np.mean(scores))
