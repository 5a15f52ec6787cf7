"""Node features, size buckets, stratified splits and the synthetic set."""

import itertools
import subprocess
import sys
import warnings

import networkx as nx
import numpy as np
import pytest

from diffpool_jax.datasets import (assign_buckets, bucket_positions,
                                   bucketed_batches, choose_buckets, load_tu,
                                   padding_waste, stratified_folds,
                                   synthetic_hierarchical)
from diffpool_jax.datasets.features import (RWPE_STEPS,
                                            clustering_coefficients,
                                            random_walk_returns)
from diffpool_jax.datasets.synthetic import pattern_edges
from tests.test_tu import GOOD, write_set


@pytest.fixture
def toy(tmp_path):
  return load_tu("TOY", root=write_set(tmp_path, GOOD), download=False)


def test_feature_kinds(toy):
  labels = toy.with_features("labels").features[0]
  np.testing.assert_array_equal(labels, np.eye(3)[[0, 1, 0, 2]])
  attributes = toy.with_features("attributes").features[1]
  np.testing.assert_array_equal(attributes, [[2, 2], [3, 3]])
  assert toy.with_features("both").num_node_features == 5
  constant = toy.with_features("constant")
  assert constant.num_node_features == 1 and constant.features[0].sum() == 4
  degree = toy.with_features("degree").features[0]   # degrees 2, 2, 2, 0
  np.testing.assert_array_equal(degree.argmax(1), [2, 2, 2, 0])
  capped = toy.with_features("degree", max_degree=1).features[0]
  np.testing.assert_array_equal(capped, np.eye(2)[[1, 1, 1, 0]])
  with pytest.raises(ValueError, match="features='pca'; expected one of"):
    toy.with_features("pca")


@pytest.mark.parametrize("kind, message", [
    ("both+pca", "unknown structural feature 'pca'"),
    ("labels+rwpe+rwpe", "names a structural feature twice"),
    ("rwpe", "features='rwpe'; expected one of"),
])
def test_bad_structural_feature_kinds_are_named(toy, kind, message):
  with pytest.raises(ValueError, match=message):
    toy.with_features(kind)


def test_structural_features_match_independent_references():
  graphs = synthetic_hierarchical(num_graphs=6, seed=3).with_features(
      "default")
  extended = graphs.with_features("default+clustering+rwpe")
  base = graphs.num_node_features
  assert extended.num_node_features == base + 1 + RWPE_STEPS
  for g in range(graphs.num_graphs):
    n, edges = int(graphs.n_node[g]), graphs.edges[g]
    features = extended.features[g].astype(np.float64)
    np.testing.assert_array_equal(features[:, :base], graphs.features[g])
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(map(tuple, edges))
    graph.remove_edges_from(nx.selfloop_edges(graph))
    clustering = nx.clustering(graph)
    np.testing.assert_allclose(features[:, base],
                               [clustering[i] for i in range(n)], atol=1e-6)
    a = nx.to_numpy_array(graph, nodelist=range(n))
    degree = a.sum(1)
    walk = a / np.where(degree > 0, degree, 1)[:, None]
    want = [np.diagonal(np.linalg.matrix_power(walk, k))
            for k in range(1, RWPE_STEPS + 1)]
    np.testing.assert_allclose(features[:, base + 1:], np.stack(want, 1),
                               atol=1e-6)


def test_structural_features_of_edge_cases():
  # A triangle with a pendant node and an isolated node; edges one way
  # only, a duplicate and a self-loop, as raw files may have them.
  edges = np.array([[0, 1], [1, 2], [2, 0], [2, 3], [2, 3], [1, 1]])
  clustering = clustering_coefficients(5, edges)[:, 0]
  np.testing.assert_allclose(clustering, [1, 1, 1 / 3, 0, 0], rtol=1e-6)
  returns = random_walk_returns(5, edges, steps=2)
  # Step 1: no self-loops; step 2 from node 3: to node 2, back with 1/3.
  np.testing.assert_allclose(returns[:, 0], 0)
  np.testing.assert_allclose(returns[:, 1], [1 / 2 * (1 / 2 + 1 / 3), 5 / 12,
                                             1 / 3 * (1 / 2 + 1 / 2 + 1), 1 / 3,
                                             0], rtol=1e-6)


def test_default_features_fall_back_to_degree(tmp_path):
  tables = {k: GOOD[k] for k in ("A", "graph_indicator", "graph_labels")}
  dataset = load_tu("TOY", root=write_set(tmp_path, tables))
  assert dataset.features[0].shape == (4, 3)       # degrees 0..2
  assert dataset.feature_kind == "default"


def brute_force_cost(n_node, max_buckets):
  sizes = np.unique(n_node)
  best = np.inf
  for k in range(1, max_buckets + 1):
    for cut in itertools.combinations(sizes[:-1], k - 1):
      buckets = np.array(list(cut) + [sizes[-1]])
      best = min(best, (buckets[assign_buckets(n_node, buckets)] ** 2).sum())
  return best


@pytest.mark.parametrize("seed", range(3))
def test_buckets_are_optimal_and_cover_every_graph(seed):
  n_node = np.random.default_rng(seed).integers(2, 40, size=60)
  buckets = choose_buckets(n_node, max_buckets=3)
  assert len(buckets) <= 3 and buckets[-1] == n_node.max()
  cost = (buckets[assign_buckets(n_node, buckets)] ** 2).sum()
  assert cost == brute_force_cost(n_node, 3)
  which = assign_buckets(n_node, buckets)
  assert np.all(buckets[which] >= n_node)
  assert np.all((which == 0) | (buckets[which - 1] < n_node))


@pytest.mark.parametrize("min_gain", [0.05, 0.1, 0.3])
def test_buckets_stop_when_one_more_saves_too_little(min_gain):
  n_node = np.random.default_rng(7).integers(2, 40, size=60)
  least = [brute_force_cost(n_node, k) for k in range(1, 6)]
  # The fewest buckets after which a further one saves < min_gain.
  want = next((k + 1 for k in range(4)
               if least[k + 1] >= (1 - min_gain) * least[k]), 5)
  buckets = choose_buckets(n_node, 5, min_gain=min_gain)
  assert len(buckets) == want < 5
  assert (buckets[assign_buckets(n_node, buckets)] ** 2).sum() == least[
      want - 1]
  with pytest.raises(ValueError, match="min_gain=1; must be in"):
    choose_buckets(n_node, 5, min_gain=1)


def test_bucketed_batches_hold_every_graph_once():
  dataset = synthetic_hierarchical(num_graphs=40, seed=1)
  buckets = choose_buckets(dataset.n_node, 3)
  batches = bucketed_batches(dataset, buckets)
  which = assign_buckets(dataset.n_node, buckets)
  positions = bucket_positions(dataset.n_node, buckets)
  assert sum(int(b.graph_mask.sum()) for b in batches) == 40
  for g in range(40):
    batch = batches[which[g]]
    assert batch.n_node[positions[g]] == dataset.n_node[g]
    assert batch.labels[positions[g]] == dataset.labels[g]
    n = dataset.n_node[g]
    np.testing.assert_array_equal(batch.x[positions[g], :n],
                                  dataset.features[g])


def test_padding_waste_figures():
  n_node = np.array([2, 4, 4, 10])
  assert padding_waste(n_node) == {"node_slots": 40 / 20,
                                   "adjacency_entries": 400 / 136}
  waste = padding_waste(n_node, np.array([4, 10]))
  assert waste == {"node_slots": 22 / 20, "adjacency_entries": 148 / 136}


def test_enzymes_buckets_cut_node_waste(tu_root):
  enzymes = load_tu("ENZYMES", root=tu_root)
  assert padding_waste(enzymes.n_node)["node_slots"] == pytest.approx(3.86,
                                                                      abs=0.01)
  buckets = choose_buckets(enzymes.n_node)
  assert len(buckets) <= 5
  assert padding_waste(enzymes.n_node, buckets)["node_slots"] < 1.5


@pytest.mark.parametrize("labels", [
    np.repeat([0, 1], [63, 125]), np.repeat(np.arange(6), 100)])
def test_stratified_folds_partition_and_keep_ratios(labels):
  folds = stratified_folds(labels, num_folds=10, seed=3)
  tests = np.concatenate([f.test for f in folds])
  assert sorted(tests.tolist()) == list(range(len(labels)))
  share = np.bincount(labels) / len(labels)
  for fold in folds:
    parts = np.concatenate([fold.train, fold.validation, fold.test])
    assert sorted(parts.tolist()) == list(range(len(labels)))
    for part in (fold.test, fold.validation):
      counts = np.bincount(labels[part], minlength=len(share))
      assert np.all(np.abs(counts - share * len(part)) <= 1)
  again = stratified_folds(labels, num_folds=10, seed=3)
  assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again))


def sklearn_folds(labels, num_folds, seed, fraction):
  """(train, validation, test) of scikit-learn's stratified splitters."""
  from sklearn.model_selection import StratifiedKFold, train_test_split
  folds = []
  for rest, test in StratifiedKFold(num_folds, shuffle=True,
                                    random_state=seed).split(labels, labels):
    train, validation = (train_test_split(
        rest, test_size=fraction, stratify=labels[rest], random_state=seed)
        if fraction else (rest, []))
    folds.append((np.sort(train), np.sort(validation), test))
  return folds


def assert_same_folds(folds, expected):
  """Our Folds equal `sklearn_folds`'s (train, validation, test) triples."""
  for fold, (train, validation, test) in zip(folds, expected, strict=True):
    np.testing.assert_array_equal(fold.train, train)
    np.testing.assert_array_equal(fold.validation, validation)
    np.testing.assert_array_equal(fold.test, test)


def random_labels(rng):
  """[n] labels of 1-6 classes with skewed shares, coded by arbitrary
  integers in an arbitrary order of first appearance."""
  classes = int(rng.integers(1, 7))
  codes = rng.permutation(np.arange(classes) * int(rng.integers(1, 4)) - 2)
  shares = rng.dirichlet(np.full(classes, rng.uniform(0.5, 3.0)))
  return codes[rng.choice(classes, int(rng.integers(40, 300)), p=shares)]


def test_stratified_folds_are_scikit_learns():
  rng = np.random.default_rng(11)
  compared = 0
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)   # a class below the folds
    while compared < 40:
      labels = random_labels(rng)
      num_folds, seed = int(rng.integers(2, 11)), int(rng.integers(0, 10**6))
      fraction = (0.1, 0.0, 0.25)[compared % 3]
      try:
        expected = sklearn_folds(labels, num_folds, seed, fraction)
      except ValueError:
        with pytest.raises(ValueError):
          stratified_folds(labels, num_folds, seed, fraction)
        continue
      assert_same_folds(stratified_folds(labels, num_folds, seed, fraction),
                        expected)
      compared += 1


def test_stratified_folds_of_string_labels_are_scikit_learns():
  labels = np.array(["mutagen", "inert", "toxic"])[
      np.random.default_rng(5).choice(3, 90, p=[0.5, 0.3, 0.2])]
  assert_same_folds(stratified_folds(labels, 5, 17),
                    sklearn_folds(labels, 5, 17, 0.1))


def test_making_stratified_folds_does_not_import_scikit_learn():
  code = ("import sys; from diffpool_jax.datasets import stratified_folds; "
          "stratified_folds([0, 1] * 20, 4); "
          "print(sorted(m for m in sys.modules if m.startswith('sklearn')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "[]"


@pytest.mark.parametrize("labels, folds, message", [
    (np.zeros((40, 2), int), 4, r"one class id per graph .* shape \(40, 2\)"),
    (np.linspace(0, 1, 40), 4, "one class id per graph"),
    (np.arange(40) % 2, 1, "folds=1: stratified folds need at least 2")])
def test_stratified_folds_refuse_what_is_not_a_class_per_graph(labels, folds,
                                                              message):
  with pytest.raises(ValueError, match=message):
    stratified_folds(labels, folds)


def test_folds_beyond_every_class_size_fail_and_a_small_class_warns():
  labels = np.repeat([0, 1, 2], [4, 4, 30])
  with pytest.warns(UserWarning, match="the smallest class has 4 graph.s., "
                    "fewer than the 5 folds"):
    assert len(stratified_folds(labels, 5, validation_fraction=0.0)) == 5
  with pytest.raises(ValueError, match="31 folds but no class has 31 "
                     "graphs .the largest has 30.; use fewer folds"):
    stratified_folds(labels, 31, validation_fraction=0.0)


def test_too_few_graphs_for_the_folds_fail_clearly():
  labels = np.repeat(np.arange(4), 10)            # 40 graphs, 4 classes
  with pytest.raises(ValueError, match="fold 0: its 20 training graphs of "
                     "4 classes are too few for a stratified 10% "
                     "validation holdout"):
    stratified_folds(labels, num_folds=2)
  with pytest.raises(ValueError, match="50 folds of 40 graphs"):
    stratified_folds(labels, num_folds=50, validation_fraction=0.0)
  assert len(stratified_folds(labels, num_folds=2,
                              validation_fraction=0.0)) == 2


def test_synthetic_is_deterministic_by_seed():
  a = synthetic_hierarchical(num_graphs=20, seed=5)
  b = synthetic_hierarchical(num_graphs=20, seed=5)
  c = synthetic_hierarchical(num_graphs=20, seed=6)
  assert all(np.array_equal(x, y) for x, y in zip(a.edges, b.edges))
  assert all(np.array_equal(x, y) for x, y in zip(a.features, b.features))
  assert not all(np.array_equal(x, y) for x, y in zip(a.edges, c.edges))


def test_synthetic_communities_are_what_it_says():
  dataset = synthetic_hierarchical(num_graphs=40, communities=(4, 5),
                                   community_size=(5, 9), p_in=0.7,
                                   bridges=(1, 2), seed=2)
  assert np.array_equal(np.bincount(dataset.labels), [10, 10, 10, 10])
  for g in range(40):
    community, edges = dataset.communities[g], dataset.edges[g]
    num = community.max() + 1
    sizes = np.bincount(community)
    assert 4 <= num <= 5 and sizes.min() >= 5 and sizes.max() <= 9
    inside = community[edges[:, 0]] == community[edges[:, 1]]
    # Communities are dense; bridges are few.
    assert inside.mean() > 0.8
    linked = {tuple(sorted(p)) for p in
              zip(community[edges[~inside, 0]], community[edges[~inside, 1]])}
    pattern = str(dataset.label_values[dataset.labels[g]])
    want = {tuple(sorted(p)) for p in pattern_edges(pattern, num, None)}
    assert linked == want


def test_synthetic_set_takes_any_feature_kind():
  """Features apply to every source: the run's data set of the built-in
  set follows RunConfig.features (it once kept its own features)."""
  from diffpool_jax.run import RunConfig, load_dataset
  small = dict(num_graphs=8, communities=(2, 3), community_size=(3, 4))
  built_in = synthetic_hierarchical(**small)
  default = load_dataset(RunConfig(synthetic=small))
  for ours, theirs in zip(default.features, built_in.features):
    np.testing.assert_array_equal(ours, theirs)   # its own, unchanged
  walked = load_dataset(RunConfig(synthetic=small, features="constant+rwpe"))
  assert walked.feature_kind == "constant+rwpe"
  assert walked.num_node_features == 1 + RWPE_STEPS
  for graph, n in zip(walked.features, walked.n_node):
    np.testing.assert_array_equal(graph[:, 0], np.ones(n))
  with pytest.raises(ValueError, match="needs node labels"):
    load_dataset(RunConfig(synthetic=small, features="labels"))


def test_a_new_feature_kind_is_one_entry(toy, monkeypatch):
  from diffpool_jax.datasets import features
  monkeypatch.setitem(features.BASE_FEATURES, "twice_degree",
                      lambda dataset, max_degree: [
                          2 * f for f in features.degree_features(
                              dataset, max_degree)])
  doubled = toy.with_features("twice_degree+clustering")
  plain = toy.with_features("degree+clustering")
  for two, one in zip(doubled.features, plain.features):
    np.testing.assert_array_equal(two[:, :-1], 2 * one[:, :-1])
    np.testing.assert_array_equal(two[:, -1], one[:, -1])
