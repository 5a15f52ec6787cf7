"""The DiffPool classifier: presets, invariances, gradients, shape errors."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax.graphs import GraphBatch
from diffpool_jax.models.classifier import graph_representation, input_readout
from diffpool_jax.models.layers import MaskedBatchNorm
from tests.helpers import random_batch, repad

PRESET_NAMES = tuple(dp.PRESETS)
# Every test uses batches of these shapes so that eager op compilations are
# shared between tests (it keeps the suite fast on CPU).
SIZES, NUM_NODES = (12, 5, 16, 1), 16


def make_batch(seed, sizes=SIZES, **kwargs):
  return random_batch(np.random.default_rng(seed), sizes, NUM_NODES, **kwargs)


# The RNG streams of a training call (dropout, a stochastic pooler's draws).
KEYS = dp.rng_streams(jax.random.key(7))


def build(name, batch, max_nodes=32, num_classes=3, **overrides):
  model = dp.DiffPool(dp.preset(name, **overrides), num_classes=num_classes,
                      max_nodes=max_nodes)
  variables = model.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask)
  return model, variables


def run(model, variables, batch, train):
  (logits, levels), _ = model.apply(variables, batch.x, batch.adj,
                                    batch.node_mask, train=train,
                                    mutable=["batch_stats"], rngs=KEYS)
  return logits, levels


def loss_terms(levels):
  """[levels, losses] auxiliary loss values, in the operator's name order."""
  if not levels:
    return np.zeros((0, 0))
  return np.array([[float(value) for value in l.aux.values()]
                   for l in levels])


def test_public_imports():
  assert callable(dp.dense_diff_pool)
  assert issubclass(dp.DiffPool, dp.DiffPool.__mro__[1])
  assert set(PRESET_NAMES) >= {"paper", "original", "pyg", "flat"}


def pyg_example_param_count(features, classes, max_nodes):
  """Counted by hand from PyG's examples/proteins_diff_pool.py layout."""
  def sage(i, o):
    return 2 * i * o + o
  def gnn(i, h, o, lin):
    count = sage(i, h) + sage(h, h) + sage(h, o) + 2 * (2 * h + o)
    return count + ((2 * h + o) * o + o if lin else 0)
  k1 = int(np.ceil(0.25 * max_nodes))
  k2 = int(np.ceil(0.25 * k1))
  return (gnn(features, 64, k1, True) + gnn(features, 64, 64, False)
          + gnn(192, 64, k2, True) + 2 * gnn(192, 64, 64, False)
          + 192 * 64 + 64 + 64 * classes + classes)


def original_param_count(features, classes, max_nodes):
  """The authors' SoftPoolingGcnEncoder with its defaults (no BN params)."""
  def conv(i, o):
    return i * o + o
  k = int(0.1 * max_nodes)
  embed0 = conv(features, 20) + conv(20, 20) + conv(20, 20)
  assign = conv(features, 20) + conv(20, 20) + conv(20, k) + (40 + k) * k + k
  embed1 = conv(60, 20) + conv(20, 20) + conv(20, 20)
  mlp = 120 * 50 + 50 + 50 * classes + classes
  return embed0 + assign + embed1 + mlp


@pytest.mark.parametrize("name, counter", [
    ("pyg", pyg_example_param_count), ("original", original_param_count)])
def test_param_counts_match_the_peers(name, counter):
  model = dp.DiffPool(dp.preset(name), num_classes=6, max_nodes=126)
  x = jnp.zeros((2, 126, 21))
  shapes = jax.eval_shape(model.init, jax.random.key(0), x,
                          jnp.zeros((2, 126, 126)), jnp.ones((2, 126), bool))
  assert dp.count_params(shapes["params"]) == counter(21, 6, 126)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_forward_and_backward(name):
  """Finite, non-zero gradients; finite also on degenerate graphs."""
  batch = make_batch(1)
  model, variables = build(name, batch)
  logits, levels = run(model, variables, batch, train=True)
  chex.assert_shape(logits, (4, 3))
  assert len(levels) == model.config.num_levels

  @jax.jit
  def grad(params, batch):
    def loss(params):
      (lg, lv), _ = model.apply({**variables, "params": params}, batch.x,
                                batch.adj, batch.node_mask, train=True,
                                mutable=["batch_stats"], rngs=KEYS)
      ce = -jnp.mean(jax.nn.log_softmax(lg)[jnp.arange(4), batch.labels])
      levels_loss = sum(sum(l.aux.values()) for l in lv)
      return ce + dp.auxiliary_loss(lv, model.config.weights) + levels_loss
    return jax.grad(loss)(params)

  leaves = jax.tree_util.tree_leaves(grad(variables["params"], batch))
  assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
  assert any(np.any(np.asarray(g) != 0) for g in leaves)
  # One-node graphs, isolated nodes, no edges, a padding graph, and features
  # large enough to saturate the assignment softmax (near-one-hot S).
  degenerate = make_batch(6, sizes=(1, 1, 6, 0), edge_prob=0.0)
  degenerate = degenerate.replace(x=degenerate.x * np.float32(1e3))
  leaves = jax.tree_util.tree_leaves(grad(variables["params"], degenerate))
  assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)


def test_cluster_counts():
  assert dp.preset("paper").cluster_counts(126) == (32, 8)
  assert dp.preset("paper").cluster_counts(620) == (64, 16)   # the cap
  assert dp.preset("paper", max_clusters=None).cluster_counts(620) == (
      155, 39)
  assert dp.preset("original").cluster_counts(126) == (12,)
  assert dp.preset("pyg").cluster_counts(620) == (155, 39)
  assert dp.preset("flat").cluster_counts(126) == ()
  assert dp.preset("paper", num_clusters=(10, 3, 1)).cluster_counts(9) == (
      10, 3, 1)


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("train", [False, True])
def test_padding_invariance(name, train):
  batch = make_batch(2)
  model, variables = build(name, batch)
  small_logits, small_levels = run(model, variables, batch, train)
  big_logits, big_levels = run(model, variables, repad(batch, 32), train)
  np.testing.assert_allclose(np.asarray(big_logits), np.asarray(small_logits),
                             rtol=1e-4, atol=1e-5)
  small, big = loss_terms(small_levels), loss_terms(big_levels)
  if model.config.pooling == "diffpool" and model.config.link_loss == "pyg":
    # PyG's normalisation divides level 1 by B N^2 (link) and B N (entropy).
    small[0] *= [16**2, 16]
    big[0] *= [32**2, 32]
  np.testing.assert_allclose(big, small, rtol=1e-4, atol=1e-6)


def test_padding_graphs_change_nothing():
  """Appending padding graphs to a batch leaves real graphs' results."""
  batch = make_batch(3, sizes=(9, 4))
  padded = make_batch(3, sizes=(9, 4))
  padded = GraphBatch(*(np.concatenate([v, np.zeros_like(v)])
                        for v in (padded.x, padded.adj, padded.node_mask,
                                  padded.labels, padded.n_node)))
  model, variables = build("paper", batch)
  for train in (False, True):
    logits, levels = run(model, variables, batch, train)
    padded_logits, padded_levels = run(model, variables, padded, train)
    assert np.all(np.isfinite(np.asarray(padded_logits)))
    np.testing.assert_allclose(np.asarray(padded_logits)[:2],
                               np.asarray(logits), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss_terms(padded_levels), loss_terms(levels),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_node_permutation_invariance(name):
  batch = make_batch(4)
  model, variables = build(name, batch)
  rng = np.random.default_rng(5)
  order = np.arange(NUM_NODES)
  order[:SIZES[0]] = rng.permutation(SIZES[0])   # shuffle graph 0's nodes
  permuted = batch.replace(x=batch.x.copy(), adj=batch.adj.copy())
  permuted.x[0] = batch.x[0][order]
  permuted.adj[0] = batch.adj[0][np.ix_(order, order)]
  # A model that draws per node (dropout, BN-Pool's sticks) is invariant
  # in distribution only while training: its draws follow the node order.
  stochastic = (model.config.operator.stochastic
                or model.config.dropout > 0)
  for train in (False,) if stochastic else (False, True):
    logits, levels = run(model, variables, batch, train)
    perm_logits, perm_levels = run(model, variables, permuted, train)
    np.testing.assert_allclose(np.asarray(perm_logits), np.asarray(logits),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss_terms(perm_levels), loss_terms(levels),
                               rtol=1e-4, atol=1e-6)


class JitEagerTest(chex.TestCase):
  """The classifier gives the same logits with and without jit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_same_logits(self):
    batch = make_batch(7)
    model, variables = build("paper", batch)
    apply = self.variant(lambda v, x, a, m: model.apply(v, x, a, m)[0])
    reference = model.apply(variables, batch.x, batch.adj, batch.node_mask)[0]
    np.testing.assert_allclose(
        np.asarray(apply(variables, batch.x, batch.adj, batch.node_mask)),
        np.asarray(reference), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (dict(x=np.ones((2, 16))), "DiffPool: argument 'x' must have layout"),
    (dict(adj=np.ones((2, 16, 15))), "DiffPool: argument 'adj' has shape"),
    (dict(adj=np.ones((3, 16, 16))), "B, the batch size of x"),
    (dict(node_mask=np.ones((2, 15), bool)), "argument 'node_mask' has shape"),
])
def test_wrong_shapes_raise_clear_errors(bad, message):
  batch = make_batch(8, sizes=(10, 3))
  model, variables = build("paper", batch)
  args = dict(x=batch.x, adj=batch.adj, node_mask=batch.node_mask)
  args.update(bad)
  with pytest.raises(ValueError, match=message):
    model.apply(variables, **args)


@pytest.mark.parametrize("change, message", [
    (dict(conv="gat"), "DiffPoolConfig.conv='gat'"),
    (dict(pool_ratios=(0.0,)), "pool_ratios"),
    (dict(readout="median"), "DiffPoolConfig.readout"),
])
def test_bad_config_raises(change, message):
  with pytest.raises(ValueError, match=message):
    dp.preset("paper", **change)
  with pytest.raises(ValueError, match="unknown preset 'nope'"):
    dp.preset("nope")


def test_cluster_table_is_the_ratio_of_each_size():
  config = dp.preset("paper", pool_ratios=(0.1, 0.3), max_clusters=7)
  table = config.cluster_table(100)
  for n in range(101):
    level1 = min(max(1, int(np.ceil(0.1 * n))), 7)
    assert table[0, n] == level1
    assert table[1, n] == min(max(1, int(np.ceil(0.3 * level1))), 7)
    assert table[0, n] <= max(n, 1)


def per_graph_batches():
  """The same graphs padded to 16 nodes (dense) and to 40 (dense and edge
  list): two size buckets with different cluster slots."""
  small = make_batch(11)
  big = repad(small, 40)
  edges = [np.argwhere(a[:n, :n]) for a, n in zip(small.adj, small.n_node)]
  sparse = dp.sparse_batch(edges, [x[:n] for x, n in zip(small.x,
                                                         small.n_node)],
                           small.labels, 40)
  return small, big, sparse


def train_loss_and_grads(model, variables, batch):
  def loss(params, batch):
    (logits, levels), _ = model.apply(
        {**variables, "params": params}, batch.x, batch.adj,
        batch.node_mask, train=True, mutable=["batch_stats"], rngs=KEYS)
    ce = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), batch.labels])
    return ce + dp.auxiliary_loss(levels, model.config.weights), (logits,
                                                                  levels)
  (value, (logits, levels)), grads = jax.jit(jax.value_and_grad(
      loss, has_aux=True))(variables["params"], batch)
  return value, logits, levels, grads


@pytest.mark.parametrize("name, small_slots, big_slots", [
    ("paper", [4, 1], [10, 3]), ("mincut", [8, 4], [20, 10]),
    ("dmon", [8, 4], [20, 10])])
def test_per_graph_clusters_do_not_depend_on_the_bucket(name, small_slots,
                                                        big_slots):
  """Logits, every level's losses and all gradients are the same whether a
  graph sits in a 16-node bucket or a 40-node bucket (more cluster slots),
  dense or on edges, for every pooling operator."""
  small, big, sparse = per_graph_batches()
  model, variables = build(name, small, max_nodes=40)
  assert model.config.per_graph
  reference = train_loss_and_grads(model, variables, small)
  assert [l.s.shape[-1] for l in reference[2]] == small_slots
  for other in (big, sparse):
    value, logits, levels, grads = train_loss_and_grads(model, variables,
                                                        other)
    assert [l.s.shape[-1] for l in levels] == big_slots
    np.testing.assert_allclose(float(value), float(reference[0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(reference[1]),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss_terms(levels), loss_terms(reference[2]),
                               rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(grads, reference[3], rtol=1e-3, atol=1e-5)


def test_each_graph_pools_to_its_own_cluster_count():
  """Graph i has min(ceil(0.25 n_i), cap) real clusters, never more than
  its nodes; the rest of its slots are masked and empty."""
  small, big, _ = per_graph_batches()
  model, variables = build("paper", small, max_nodes=40, max_clusters=3)
  _, levels = run(model, variables, big, train=False)
  expected = [min(max(1, int(np.ceil(0.25 * n))), 3) for n in SIZES]
  assert np.asarray(levels[0].mask).sum(1).tolist() == [
      k if n else 0 for k, n in zip(expected, SIZES)]
  for i, (k, n) in enumerate(zip(expected, SIZES)):
    s = np.asarray(levels[0].s[i])
    assert k <= max(n, 1)
    assert not np.any(s[:, k:]) and not np.any(np.asarray(levels[0].adj[i, k:]))
    if n:
      np.testing.assert_allclose(s[:n, :k].sum(1), 1.0, rtol=1e-5)


def test_a_bucket_padded_beyond_max_nodes_gives_the_same_result():
  """A ladder bucket may be larger than the largest graph (max_nodes):
  its slots are those of max_nodes and the graphs pool as before."""
  small, big, _ = per_graph_batches()
  model, variables = build("paper", small, max_nodes=16)
  assert model.slot_counts(40) == model.slot_counts(16)
  logits_small, levels_small = run(model, variables, small, train=False)
  logits_big, levels_big = run(model, variables, big, train=False)
  np.testing.assert_allclose(logits_big, logits_small, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(levels_big[0].mask, levels_small[0].mask)


@pytest.mark.parametrize("kind, all_levels", [("sum", True), ("mean", False),
                                              ("none", True)])
def test_input_readout_puts_the_normalised_raw_features_first(kind,
                                                             all_levels):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 5, 3)) * 100
  node_mask = np.arange(5)[None] < np.array([[5], [2], [0]])
  x[~node_mask] = np.nan                       # padding never reaches it
  readouts = [rng.normal(size=(3, 4)), rng.normal(size=(3, 6))]
  config = dp.preset("paper", input_readout=kind,
                     readout_all_levels=all_levels)

  def norm(h, mask):                           # batch norm, no affine
    return MaskedBatchNorm(affine=False).apply(
        {"batch_stats": {"mean": jnp.zeros(3), "var": jnp.ones(3)}}, h,
        mask, True, mutable=["batch_stats"])[0]

  vector = input_readout(kind, jnp.asarray(x, jnp.float32),
                         jnp.asarray(node_mask), norm)
  got = np.asarray(graph_representation(
      config, [r.astype(np.float32) for r in readouts], vector))
  real = np.where(node_mask[..., None], x, 0.0)
  raw = {"sum": real.sum(1),
         "mean": real.sum(1) / np.maximum(node_mask.sum(1), 1)[:, None]}
  want = [] if kind == "none" else [raw[kind]]
  if want:        # standardised over the two graphs with nodes; empty: 0
    h = want[0][:2]
    want[0] = np.concatenate([(h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5),
                              np.zeros((1, 3))])
  want += readouts if all_levels else readouts[-1:]
  np.testing.assert_allclose(got, np.concatenate(want, -1), rtol=1e-4,
                             atol=1e-4)


def mlp_inputs(model, variables, batch, train, rngs=None):
  """The input [B, D] each layer `mlp{i}` of the prediction MLP received."""
  seen = {}

  def record(next_fun, args, kwargs, context):
    name = context.module.name or ""
    if context.method_name == "__call__" and name.startswith("mlp"):
      seen[name] = np.asarray(args[0], np.float64)
    return next_fun(*args, **kwargs)

  with flax.linen.intercept_methods(record):
    model.apply(variables, batch.x, batch.adj, batch.node_mask, train=train,
                mutable=["batch_stats"], rngs=rngs)
  return seen


def test_mlp_dropout_drops_the_prediction_mlp_inputs_only_when_training():
  """Training: every input of an MLP layer is 0 or 1 / (1 - rate) times
  what it is without mlp_dropout, about `rate` of them 0, a fresh mask per
  key; the pooled levels are untouched. Evaluation: no change at all."""
  batch = make_batch(4)
  rate = 0.5
  model, variables = build("paper", batch, mlp_hidden=(50,))
  dropped = dp.DiffPool(dp.preset("paper", mlp_hidden=(50,),
                                  mlp_dropout=rate),
                        num_classes=3, max_nodes=32)
  for train in (False, True):
    want_logits, want_levels = run(model, variables, batch, train)
    if not train:
      got_logits, _ = run(dropped, variables, batch, train)
      np.testing.assert_array_equal(got_logits, want_logits)
      continue
    (_, levels), _ = dropped.apply(
        variables, batch.x, batch.adj, batch.node_mask, train=True,
        mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
    np.testing.assert_array_equal(levels[0].mask, want_levels[0].mask)
  clean = mlp_inputs(model, variables, batch, True)
  masks = []
  for seed in (0, 1):
    got = mlp_inputs(dropped, variables, batch, True,
                     {"dropout": jax.random.key(seed)})
    kept = got["mlp0"] != 0
    np.testing.assert_allclose(got["mlp0"][kept],
                               clean["mlp0"][kept] / (1 - rate),
                               rtol=1e-5, atol=1e-6)
    nonzero = clean["mlp0"] != 0
    assert 0.35 < 1 - kept[nonzero].mean() < 0.65
    # the last layer's input: ReLU zeros, then about half of the rest
    relu_zeros = np.mean(clean["mlp1"] == 0)
    assert np.mean(got["mlp1"] == 0) > relu_zeros + 0.3 * (1 - relu_zeros)
    masks.append(kept)
  assert np.mean(masks[0] != masks[1]) > 0.2


def test_mlp_dropout_outside_zero_to_one_is_refused():
  with pytest.raises(ValueError, match=r"DiffPoolConfig.mlp_dropout=1.0"):
    dp.preset("paper", mlp_dropout=1.0)
