"""Node features chosen by name, built on the host with NumPy.

Kinds::

  "labels"      one-hot node labels (one block per label column; the
                vocabulary is the set of values seen in the data set).
  "attributes"  the node attributes.
  "both"        labels and attributes concatenated.
  "codes"       the node labels as integer codes, one column per label
                column (0..V-1 over the values seen in the data set), for
                a model that embeds them (DiffPoolConfig.input_vocab,
                `code_vocabulary`): C floats a node instead of the one-hot
                width. The OGB reader's default; no "+" extras.
  "degree"      one-hot degree, degrees >= max_degree share the last slot.
  "constant"    a single column of ones.
  "default"     "both" where labels and attributes exist, else whichever
                exists, else "degree" (Errica et al. 2020 for social sets).

Structural features computed from each graph alone (never from labels) are
appended with "+": "default+rwpe", "labels+clustering+rwpe". Extras::

  "degree"      the one-hot degree above.
  "clustering"  each node's local clustering coefficient (one column).
  "rwpe"        random-walk return probabilities [(D^-1 A)^k]_ii for
                k = 1..RWPE_STEPS (Dwivedi et al. 2022), RWPE_STEPS columns.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse

from diffpool_jax.datasets.blocks import RowBlocks, block_counts, stacked

RWPE_STEPS = 8
# Cap of the degree one-hot when none is given: the data set's largest
# degree, but no more than this many slots.
MAX_DEGREE_CAP = 64


def one_hot_labels(node_labels: Sequence[np.ndarray]) -> RowBlocks:
  """One-hot of each label column over the values seen in the data set
  (one block per column, of its `label_codes`)."""
  codes = label_codes(node_labels)
  eyes = [np.eye(size, dtype=np.float32) for size in code_vocabulary(codes)]
  rows = codes.rows.astype(np.int64)
  return RowBlocks(np.concatenate([eye[rows[:, c]]
                                   for c, eye in enumerate(eyes)], axis=1),
                   codes.counts)


def label_codes(node_labels: Sequence[np.ndarray]) -> RowBlocks:
  """Each label column's values as their rank among the values seen in
  the data set (0..V_c-1), float32 [n_i, C] per graph."""
  labels = stacked(node_labels)
  codes = np.empty(labels.shape, np.float32)
  for c in range(labels.shape[1]):
    codes[:, c] = value_ranks(np.ascontiguousarray(labels[:, c]))
  return RowBlocks(codes, block_counts(node_labels))


def value_ranks(values: np.ndarray) -> np.ndarray:
  """[n] the rank of each value among the distinct values: a table lookup
  for integers of a modest range (linear time; atom and bond features),
  else np.unique's sort."""
  if len(values) and np.issubdtype(values.dtype, np.integer):
    low, high = int(values.min()), int(values.max())
    limit = 4 * len(values) + 1024
    if high - low < limit:
      if low < 0 or high >= limit:   # else index with the values as is
        values, high = values.astype(np.int64) - low, high - low
      present = np.zeros(high + 1, bool)
      present[values] = True
      return (np.cumsum(present, dtype=np.int32) - 1)[values]
  return np.unique(values, return_inverse=True)[1].reshape(-1)


def code_vocabulary(features: Sequence[np.ndarray]) -> Tuple[int, ...]:
  """Per column, the vocabulary size (largest code + 1) of "codes"
  features [n_i, C] per graph."""
  largest = stacked(features).max(axis=0)
  return tuple(int(v) + 1 for v in largest)


def degree_one_hot(n_node: np.ndarray, edges: Sequence[np.ndarray],
                   max_degree: Optional[int]) -> List[np.ndarray]:
  """One-hot of min(degree, max_degree); width max_degree + 1."""
  degrees = [np.bincount(e[:, 0], minlength=n) for n, e in zip(n_node, edges)]
  if max_degree is None:
    largest = max(int(d.max()) if len(d) else 0 for d in degrees)
    max_degree = min(largest, MAX_DEGREE_CAP)
  eye = np.eye(max_degree + 1, dtype=np.float32)
  return [eye[np.minimum(d, max_degree)] for d in degrees]


def split_kind(kind: str) -> Tuple[str, Tuple[str, ...]]:
  """("both", ("rwpe",)) from "both+rwpe"; ValueError naming the kind
  unless its base is "default" or in BASE_FEATURES and each extra in
  STRUCTURE_FEATURES, each once."""
  base, *extras = str(kind).split("+")
  if base != "default" and base not in BASE_FEATURES:
    raise ValueError(f"features={kind!r}; expected one of "
                     f"{('default', *BASE_FEATURES)}, optionally with "
                     f"+{'/+'.join(STRUCTURE_FEATURES)}")
  for extra in extras:
    if extra not in STRUCTURE_FEATURES:
      raise ValueError(f"features={kind!r}: unknown structural feature "
                       f"{extra!r}; expected one of "
                       f"{tuple(STRUCTURE_FEATURES)}")
  if len(set(extras)) < len(extras):
    raise ValueError(f"features={kind!r} names a structural feature twice")
  if base == "codes" and extras:
    raise ValueError(f"features={kind!r}: integer codes take no '+' extras "
                     "(they are embedded, not concatenated)")
  return base, tuple(extras)


def undirected_adjacency(num_nodes: int, edges: np.ndarray
                         ) -> scipy.sparse.csr_matrix:
  """[n, n] 0/1 symmetric adjacency without self-loops (float64)."""
  edges = edges[edges[:, 0] != edges[:, 1]] if len(edges) else edges
  ones = np.ones(len(edges))
  a = scipy.sparse.coo_matrix((ones, (edges[:, 0], edges[:, 1])),
                              shape=(num_nodes, num_nodes)).tocsr()
  a = a + a.T
  a.data[:] = 1.0
  return a


def clustering_coefficients(num_nodes: int, edges: np.ndarray) -> np.ndarray:
  """[n, 1] local clustering: triangles through a node over d(d-1)/2
  (0 for degree < 2)."""
  a = undirected_adjacency(num_nodes, edges)
  triangles = np.asarray((a @ a).multiply(a).sum(axis=1)).ravel() / 2
  degree = np.asarray(a.sum(axis=1)).ravel()
  pairs = degree * (degree - 1) / 2
  value = np.divide(triangles, pairs, out=np.zeros(num_nodes),
                    where=pairs > 0)
  return value[:, None].astype(np.float32)


def random_walk_returns(num_nodes: int, edges: np.ndarray,
                        steps: int = RWPE_STEPS) -> np.ndarray:
  """[n, steps] probability that a random walk from each node is back
  after k = 1..steps steps (isolated nodes: 0). Sparse times dense, so a
  step costs edges x n."""
  a = undirected_adjacency(num_nodes, edges)
  degree = np.asarray(a.sum(axis=1)).ravel()
  inverse = np.divide(1.0, degree, out=np.zeros(num_nodes), where=degree > 0)
  walk = scipy.sparse.diags(inverse) @ a
  power = np.eye(num_nodes)
  returns = np.zeros((num_nodes, steps))
  for k in range(steps):
    power = np.asarray(walk @ power)
    returns[:, k] = np.diagonal(power)
  return returns.astype(np.float32)


def label_features(dataset, max_degree: Optional[int]) -> List[np.ndarray]:
  """One-hot node labels (one block per label column)."""
  return one_hot_labels(dataset.node_labels)


def code_features(dataset, max_degree: Optional[int]) -> List[np.ndarray]:
  """Node labels as integer codes (see `label_codes`)."""
  return label_codes(dataset.node_labels)


def attribute_features(dataset, max_degree: Optional[int]
                       ) -> List[np.ndarray]:
  """The node attributes as they are (float32)."""
  return [a.astype(np.float32) for a in dataset.node_attributes]


def label_and_attribute_features(dataset, max_degree: Optional[int]
                                 ) -> List[np.ndarray]:
  """One-hot node labels, then the node attributes."""
  return [np.concatenate(parts, axis=1) for parts in
          zip(label_features(dataset, max_degree),
              attribute_features(dataset, max_degree))]


def degree_features(dataset, max_degree: Optional[int]) -> List[np.ndarray]:
  """One-hot degrees (see `degree_one_hot`)."""
  return degree_one_hot(dataset.n_node, dataset.edges, max_degree)


def constant_features(dataset, max_degree: Optional[int]
                      ) -> List[np.ndarray]:
  """A single column of ones."""
  return [np.ones((n, 1), np.float32) for n in dataset.n_node]


def per_graph(compute):
  """A feature builder from `compute(num_nodes, edges) -> [n, F]`."""
  def build(dataset, max_degree: Optional[int]) -> List[np.ndarray]:
    return [compute(int(n), e) for n, e in zip(dataset.n_node, dataset.edges)]
  build.__doc__ = compute.__doc__
  return build


# The feature kinds: a builder (dataset, max_degree) -> per graph [n_i, F]
# float32 for each name. A new kind is one function and one entry here
# (with what it needs from the data set in NEEDS).
BASE_FEATURES = {"labels": label_features, "attributes": attribute_features,
                 "both": label_and_attribute_features,
                 "codes": code_features,
                 "degree": degree_features, "constant": constant_features}
NEEDS = {"labels": ("node_labels",), "codes": ("node_labels",),
         "attributes": ("node_attributes",),
         "both": ("node_labels", "node_attributes")}
# Structural features computed from each graph alone (never from labels),
# appended with "+".
STRUCTURE_FEATURES = {"degree": degree_features,
                      "clustering": per_graph(clustering_coefficients),
                      "rwpe": per_graph(random_walk_returns)}
FEATURE_KINDS = ("default", *BASE_FEATURES)     # the kinds shipped


def resolve_kind(dataset, kind: str) -> str:
  """Maps "default" to the concrete kind for this data set; ValueError
  naming the data set when it lacks what `kind` needs."""
  has_labels = dataset.node_labels is not None
  has_attributes = dataset.node_attributes is not None
  if kind != "default":
    for field in NEEDS.get(kind, ()):
      if getattr(dataset, field) is None:
        what = field.replace("node_", "node ")
        raise ValueError(f"{dataset.name}: features={kind!r} needs {what}, "
                         "which this data set does not have")
    return kind
  if has_labels and has_attributes:
    return "both"
  if has_labels:
    return "labels"
  if has_attributes:
    return "attributes"
  return "degree"


def node_features(dataset, kind: str = "default",
                  max_degree: Optional[int] = None) -> List[np.ndarray]:
  """Per graph [n_i, F] float32 node features of the given kind.

  Args:
    dataset: a `GraphDataset`.
    kind: one of FEATURE_KINDS, optionally with "+EXTRA" structural
      features appended (see the module docstring).
    max_degree: cap of the "degree" one-hot (default: the data set's
      largest degree, at most MAX_DEGREE_CAP).
  """
  base, extras = split_kind(kind)
  blocks = [BASE_FEATURES[resolve_kind(dataset, base)](dataset, max_degree)]
  blocks += [STRUCTURE_FEATURES[extra](dataset, max_degree)
             for extra in extras]
  if len(blocks) == 1:
    return blocks[0]
  return [np.concatenate(parts, axis=1) for parts in zip(*blocks)]
