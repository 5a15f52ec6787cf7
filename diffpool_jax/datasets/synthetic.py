"""A built-in synthetic hierarchical data set (no download needed).

Each graph is made of communities (random sizes; a random spanning path
plus random chords, so a community is connected but wider than a 3-layer
GNN can see) joined by bridge edges; the communities are linked according
to a class-defining pattern (path, cycle, star, clique, tree). Node
features are a constant, the degree / 10 and a one-hot colour drawn at
random per community: the colour marks community membership (what a
pooling layer needs to find the communities) but carries no class
information. A flat readout averages local views, which are alike for
every pattern with the same number of links (path, star, tree); pooling
each community into one node makes the pattern visible.
Every node keeps its true community id, to score learned assignments.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from diffpool_jax.datasets.dataset import GraphDataset

PATTERNS = ("path", "cycle", "star", "clique", "tree")


def pattern_edges(pattern: str, num_communities: int,
                  rng: np.random.Generator) -> List[Tuple[int, int]]:
  """Community-level edges (i < j) of the named pattern."""
  c = num_communities
  if pattern == "path":
    return [(i, i + 1) for i in range(c - 1)]
  if pattern == "cycle":
    return [(i, i + 1) for i in range(c - 1)] + [(0, c - 1)]
  if pattern == "star":
    return [(0, i) for i in range(1, c)]
  if pattern == "clique":
    return [(i, j) for i in range(c) for j in range(i + 1, c)]
  if pattern == "tree":    # random recursive tree
    return [(int(rng.integers(0, i)), i) for i in range(1, c)]
  raise ValueError(f"unknown community pattern {pattern!r}; expected one of "
                   f"{PATTERNS}")


def community_graph(pattern: str, rng: np.random.Generator,
                    communities: Tuple[int, int],
                    community_size: Tuple[int, int], p_in: float,
                    bridges: Tuple[int, int]
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """One graph: ([E,2] symmetric edges, [n] community id of each node)."""
  num_communities = int(rng.integers(communities[0], communities[1] + 1))
  sizes = rng.integers(community_size[0], community_size[1] + 1,
                       size=num_communities)
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  pairs = []
  for start, size in zip(starts, sizes):
    dense = np.triu(rng.random((size, size)) < p_in, 1)
    rows, cols = np.nonzero(dense)
    pairs.append(np.stack([rows, cols], 1) + start)
    chain = rng.permutation(size) + start       # keeps it connected
    pairs.append(np.stack([chain[:-1], chain[1:]], 1))
  for u, v in pattern_edges(pattern, num_communities, rng):
    count = int(rng.integers(bridges[0], bridges[1] + 1))
    ends_u = starts[u] + rng.integers(0, sizes[u], size=count)
    ends_v = starts[v] + rng.integers(0, sizes[v], size=count)
    pairs.append(np.stack([ends_u, ends_v], 1))
  pairs = np.concatenate(pairs)
  community = np.repeat(np.arange(num_communities), sizes)
  # Shuffle node ids so that nothing can be read off node positions.
  order = rng.permutation(len(community))
  new_id = np.empty_like(order)
  new_id[order] = np.arange(len(order))
  pairs = new_id[pairs]
  both = np.concatenate([pairs, pairs[:, ::-1]])
  both = np.unique(both[both[:, 0] != both[:, 1]], axis=0)
  return both, community[order]


def synthetic_hierarchical(num_graphs: int = 500,
                           patterns: Sequence[str] = ("path", "cycle",
                                                      "star", "clique"),
                           communities: Tuple[int, int] = (4, 6),
                           community_size: Tuple[int, int] = (8, 16),
                           p_in: float = 0.05,
                           bridges: Tuple[int, int] = (1, 1),
                           colours: int = 6,
                           seed: int = 0) -> GraphDataset:
  """Graphs whose class is the pattern linking their communities.

  Args:
    num_graphs: number of graphs, classes balanced (graph g has class
      g mod C before the final shuffle).
    patterns: one class per pattern name (see PATTERNS).
    communities: inclusive range of the community count per graph.
    community_size: inclusive range of nodes per community.
    p_in: chord probability inside a community (plus a spanning path).
    bridges: inclusive range of edges per linked pair of communities.
    colours: size of the palette of community colours.
    seed: everything is deterministic given the seed.

  Returns:
    A `GraphDataset` named "synthetic" with `communities` filled in and
    node attributes [n_i, 2 + colours] (a constant, degree / 10 and the
    one-hot colour), which are its default features; `with_features`
    gives it any other kind, as for any data set.
  """
  for name in patterns:
    if name not in PATTERNS:
      raise ValueError(f"unknown community pattern {name!r}; expected one "
                       f"of {PATTERNS}")
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_graphs) % len(patterns))
  edges, groups, features = [], [], []
  for label in labels:
    graph_edges, community = community_graph(
        patterns[label], rng, communities, community_size, p_in, bridges)
    degree = np.bincount(graph_edges[:, 0], minlength=len(community))
    colour = rng.integers(0, colours, size=community.max() + 1)[community]
    edges.append(graph_edges)
    groups.append(community)
    features.append(np.concatenate(
        [np.ones((len(community), 1)), degree[:, None] / 10.0,
         np.eye(colours)[colour]], axis=1).astype(np.float32))
  return GraphDataset(
      name="synthetic", n_node=np.array([len(c) for c in groups]),
      edges=edges, labels=labels.astype(np.int64),
      label_values=np.array(patterns), features=features,
      feature_kind="default", node_attributes=features, communities=groups)
