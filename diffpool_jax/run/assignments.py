"""What a trained model learned: its level-1 assignments and how well
they recover known communities. (The protocols live in protocols.py.)"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import jax
import numpy as np

from diffpool_jax.engine import compile_effort
from diffpool_jax.graphs import dense_batch


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
  # One compiled program (op by op, each new shape compiles many), run
  # once: at the fast compile effort.
  apply = jax.jit(model.apply,
                  compiler_options=compile_effort.xla_options(
                      "fast", jax.default_backend()))
  _, levels = apply(variables, batch.x, batch.adj, batch.node_mask)
  s, adj = np.asarray(levels[0].s), np.asarray(levels[0].adj)
  return [(s[i, :n], adj[i]) for i, n in enumerate(batch.n_node)]


def assignment_nmi(assignments: Sequence[np.ndarray],
                   communities: Sequence[np.ndarray]) -> float:
  """Mean over graphs of the normalised mutual information between the
  learned clusters (argmax of each node's assignment) and true communities.
  """
  from sklearn.metrics import normalized_mutual_info_score
  scores = [normalized_mutual_info_score(truth, s.argmax(axis=1))
            for s, truth in zip(assignments, communities)]
  return float(np.mean(scores))
