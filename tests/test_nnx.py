"""The Flax NNX classifier computes what the linen one computes: the same
variables give the same logits, auxiliary losses and batch statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx as fnnx

import diffpool_jax as dp
from diffpool_jax import nnx
from diffpool_jax.graphs import sparse_batch
from tests.helpers import random_batch, random_graph, repad

SMALL = dict(hidden_dim=8, embed_dim=8, num_layers=2, mlp_hidden=(8,))
SIZES = [5, 9, 12, 3]


def linen_and_nnx(name, batch, max_nodes=16, **overrides):
  config = dp.preset(name, **{**SMALL, **overrides})
  linen = dp.DiffPool(config, num_classes=3, max_nodes=max_nodes)
  variables = linen.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask)
  # non-trivial running statistics
  _, updates = linen.apply(variables, batch.x, batch.adj, batch.node_mask,
                           train=True, mutable=["batch_stats"],
                           rngs=dp.rng_streams(jax.random.key(2)))
  variables = {**variables, **updates}
  model = nnx.DiffPool(config, batch.x.shape[-1], 3, max_nodes,
                       rngs=fnnx.Rngs(1))
  nnx.load_linen_variables(model, variables)
  return linen, variables, model


@pytest.mark.parametrize("name", ["paper", "pyg", "original", "mincut",
                                  "dmon", "flat", "best"])
def test_same_variables_give_the_same_logits(name):
  batch = random_batch(np.random.default_rng(0), SIZES, 16)
  # The same computation: without dropout (NNX's RNG streams count calls,
  # linen's fold in the module path, so one key gives other masks).
  linen, variables, model = linen_and_nnx(name, batch, dropout=0.0)
  key = jax.random.key(3)
  for train in (False, True):
    (want, want_levels), updates = linen.apply(
        variables, batch.x, batch.adj, batch.node_mask, train=train,
        mutable=["batch_stats"], rngs=dp.rng_streams(key))
    got, got_levels = model(batch.x, batch.adj, batch.node_mask, train=train,
                            key=key)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(got_levels, want_levels):
      for loss in theirs.aux:
        np.testing.assert_allclose(mine.aux[loss], theirs.aux[loss],
                                   rtol=1e-5, atol=1e-6)
      np.testing.assert_array_equal(mine.mask, theirs.mask)
  # the train call updated the NNX batch statistics as linen's
  stats = fnnx.state(model, fnnx.BatchStat)
  for path, value in jax.tree_util.tree_leaves_with_path(
      updates.get("batch_stats", {})):
    keys = [p.key for p in path]
    node = stats
    for key in keys:
      node = node[key]
    np.testing.assert_allclose(node[...], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides", [
    dict(conv="gin", input_readout="sum"),
    dict(conv="gin", input_readout="mean", readout_all_levels=False,
         input_norm=True)])
def test_gin_and_input_readout_give_the_same_logits(overrides):
  batch = random_batch(np.random.default_rng(1), SIZES, 16)
  linen, variables, model = linen_and_nnx("paper", batch, **overrides)
  variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)
  nnx.load_linen_variables(model, variables)       # non-zero epsilons
  for train in (False, True):
    (want, _), _ = linen.apply(variables, batch.x, batch.adj,
                               batch.node_mask, train=train,
                               mutable=["batch_stats"])
    got, _ = model(batch.x, batch.adj, batch.node_mask, train=train)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_edge_list_input_matches_dense():
  rng = np.random.default_rng(1)
  graphs = [random_graph(rng, n, 5) for n in SIZES]
  edges, features = [g[0] for g in graphs], [g[1] for g in graphs]
  dense = dp.dense_batch(edges, features, [0, 1, 2, 0], 16)
  sparse = sparse_batch(edges, features, [0, 1, 2, 0], 16,
                        max(len(e) for e in edges))
  _, _, model = linen_and_nnx("paper", dense)
  want, _ = model(dense.x, dense.adj, dense.node_mask)
  got, _ = model(sparse.x, sparse.adj, sparse.node_mask)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_nnx_training_step_lowers_the_loss():
  """The docs' example in miniature: nnx.Optimizer and nnx.value_and_grad
  on the classifier with its auxiliary losses."""
  batch = random_batch(np.random.default_rng(2), SIZES, 16)
  model = nnx.DiffPool(dp.preset("paper", **SMALL), 5, 3, 16,
                       rngs=fnnx.Rngs(0))
  optimizer = fnnx.Optimizer(model, optax.adam(1e-2), wrt=fnnx.Param)

  def loss_fn(model):
    logits, levels = model(batch.x, batch.adj, batch.node_mask, train=True)
    nll = optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.asarray(batch.labels)).mean()
    return nll + dp.auxiliary_loss(levels, model.config.weights)

  @fnnx.jit
  def step(model, optimizer):
    loss, grads = fnnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(15)]
  assert losses[-1] < losses[0]


def test_bad_input_is_named_as_for_the_linen_model():
  batch = random_batch(np.random.default_rng(3), SIZES, 16)
  _, _, model = linen_and_nnx("paper", batch)
  with pytest.raises(ValueError, match="node_mask"):
    model(batch.x, batch.adj, batch.node_mask[:, :8])
  # A batch padded beyond max_nodes (a ladder bucket) pools as before.
  big = repad(batch, 24)
  np.testing.assert_allclose(model(big.x, big.adj, big.node_mask)[0],
                             model(batch.x, batch.adj, batch.node_mask)[0],
                             rtol=1e-5, atol=1e-6)


def test_mlp_dropout_matches_linen_in_evaluation_and_needs_a_key_to_train():
  batch = random_batch(np.random.default_rng(5), SIZES, 16)
  linen, variables, _ = linen_and_nnx("paper", batch)
  model = nnx.DiffPool(dp.preset("paper", **SMALL, mlp_dropout=0.5),
                       batch.x.shape[-1], 3, 16, rngs=fnnx.Rngs(1))
  nnx.load_linen_variables(model, variables)
  (want, _), _ = linen.apply(variables, batch.x, batch.adj, batch.node_mask,
                             train=False, mutable=["batch_stats"])
  got, _ = model(batch.x, batch.adj, batch.node_mask, train=False)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="mlp_dropout > 0.*needs a PRNG"):
    model(batch.x, batch.adj, batch.node_mask, train=True)
  trained = [model(batch.x, batch.adj, batch.node_mask, train=True,
                   key=jax.random.key(seed))[0] for seed in (0, 0, 1)]
  np.testing.assert_array_equal(trained[0], trained[1])
  assert not np.allclose(trained[0], trained[2])


def test_a_state_saved_by_the_0_1_nnx_model_restores(tmp_path):
  """tests/data/nnx_diffpool_0.1: orbax's save of `nnx.state` of 0.1's
  hand-written NNX classifier (paper preset, widths 4, after one training
  call) and its evaluation logits. The derived NNX model has the same
  variable paths, so it restores that state and gives those logits."""
  import shutil
  import orbax.checkpoint as ocp
  from pathlib import Path
  data = Path(__file__).parent / "data"
  saved = np.load(data / "nnx_diffpool_0.1.npz")
  folder = tmp_path / "state"
  shutil.copytree(data / "nnx_diffpool_0.1", folder)
  config = dp.preset("paper", hidden_dim=4, embed_dim=4, num_layers=2,
                     mlp_hidden=(4,))
  abstract = fnnx.eval_shape(lambda: nnx.DiffPool(
      config, saved["x"].shape[-1], 2, 8, rngs=fnnx.Rngs(0)))
  graphdef, state = fnnx.split(abstract)
  model = fnnx.merge(graphdef,
                     ocp.StandardCheckpointer().restore(folder, state))
  logits, _ = model(saved["x"], saved["adj"], saved["node_mask"])
  np.testing.assert_allclose(logits, saved["logits"], rtol=1e-6, atol=1e-7)
  assert np.abs(saved["logits"]).max() > 1e-3
