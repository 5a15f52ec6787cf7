"""Integer node features embedded by the model ("codes" features and
DiffPoolConfig.input_vocab, OGB's AtomEncoder): one table per column,
summed, equal to the one-hot features times the stacked tables; and the
bond codes read by the edge-aware "gine" convolution."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx as fnnx

import diffpool_jax as dp
from diffpool_jax import nnx
from diffpool_jax.adjacency import EdgeList, gine_messages
from diffpool_jax.datasets import code_vocabulary, synthetic_hierarchical
from diffpool_jax.datasets.features import (label_codes, one_hot_labels,
                                            value_ranks)
from diffpool_jax.graphs import GraphBatch, sparse_batch
from diffpool_jax.models.layers import embed_codes
from diffpool_jax.run import Run, RunConfig
from tests.helpers import random_batch

VOCAB = (4, 2, 3)
SMALL = dict(hidden_dim=8, embed_dim=8, num_layers=2, mlp_hidden=(8,),
             input_vocab=VOCAB)


def coded_batch(seed=0, sizes=(5, 9, 3, 7), num_nodes=12) -> GraphBatch:
  """Random graphs whose node features are codes below VOCAB (padded
  nodes hold NaN, which must not matter)."""
  rng = np.random.default_rng(seed)
  batch = random_batch(rng, list(sizes), num_nodes, num_features=len(VOCAB))
  codes = np.stack([rng.integers(0, v, batch.x.shape[:2]) for v in VOCAB],
                   axis=-1).astype(np.float32)
  x = np.where(batch.node_mask[..., None], codes, np.nan)
  return batch.replace(x=x.astype(np.float32))


def test_embedding_is_the_sum_of_one_table_row_per_column():
  rng = np.random.default_rng(0)
  batch = coded_batch()
  tables = [rng.normal(size=(v, 6)) for v in VOCAB]
  got = embed_codes([t.astype(np.float32) for t in tables],
                    np.nan_to_num(batch.x), batch.node_mask)
  codes = np.nan_to_num(batch.x).astype(int)
  want = sum(tables[c][codes[..., c]] for c in range(len(VOCAB)))
  want = np.where(batch.node_mask[..., None], want, 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # the same as the one-hot features times the stacked tables
  one_hot = np.concatenate([np.eye(v)[codes[..., c]]
                            for c, v in enumerate(VOCAB)], axis=-1)
  np.testing.assert_allclose(got, np.where(batch.node_mask[..., None],
                                           one_hot @ np.vstack(tables), 0),
                             rtol=1e-6, atol=1e-6)


def test_codes_are_ranks_of_the_one_hot_blocks():
  rng = np.random.default_rng(1)
  labels = [np.stack([rng.choice([3, 7, 11], n), rng.choice([-1, 5], n)], 1)
            for n in (4, 6, 1)]
  codes = label_codes(labels)
  hot = one_hot_labels(labels)
  for c, h in zip(codes, hot):
    np.testing.assert_array_equal(c[:, 0], h[:, :3].argmax(axis=1))
    np.testing.assert_array_equal(c[:, 1], h[:, 3:].argmax(axis=1))
  assert code_vocabulary(codes) == (3, 2)


def test_padding_and_padded_codes_change_nothing_linen_and_nnx_agree():
  config = dp.preset("paper", **SMALL)
  batch = coded_batch()
  linen = dp.DiffPool(config, num_classes=3, max_nodes=12)
  variables = linen.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask)
  logits, _ = linen.apply(variables, batch.x, batch.adj, batch.node_mask)
  assert np.all(np.isfinite(logits))
  wider = batch.replace(
      x=np.pad(batch.x, ((0, 0), (0, 4), (0, 0)), constant_values=99.0),
      adj=np.pad(batch.adj, ((0, 0), (0, 4), (0, 4))),
      node_mask=np.pad(batch.node_mask, ((0, 0), (0, 4))))
  again, _ = linen.apply(variables, wider.x, wider.adj, wider.node_mask)
  np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-5)
  model = nnx.DiffPool(config, len(VOCAB), 3, 12, rngs=fnnx.Rngs(1))
  nnx.load_linen_variables(model, variables)
  got, _ = model(batch.x, batch.adj, batch.node_mask)
  np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="x has 5 feature columns but "
                     "input_vocab has 3 sizes"):
    linen.init(jax.random.key(0), np.zeros((1, 4, 5), np.float32),
               np.zeros((1, 4, 4), np.float32))


def test_runs_fill_the_vocabulary_from_the_codes_and_name_bad_choices(
    tmp_path):
  config = RunConfig(dataset="synthetic", protocol="fair", folds=2,
                     epochs=1, features="codes",
                     synthetic={"num_graphs": 80, "communities": [2, 3],
                                "community_size": [3, 4]},
                     model={"hidden_dim": 8, "num_layers": 1})
  with pytest.raises(ValueError, match="features='codes' needs node "
                     "labels"):
    Run(config, tmp_path / "a")
  data = synthetic_hierarchical(num_graphs=80, communities=(2, 3),
                                community_size=(3, 4), seed=0)
  labelled = dataclasses.replace(
      data, node_labels=[np.arange(n)[:, None] % 3 for n in data.n_node])
  run = Run(config, tmp_path / "b", dataset=labelled.with_features("codes"))
  assert run.model_config.input_vocab == (3,)
  results = run.fit(progress=False)
  assert 0 <= results["score"] <= 1
  with pytest.raises(ValueError, match="input_vocab=.3,. embeds integer "
                     "codes, but the features are 'default'"):
    Run(dataclasses.replace(config, features="default",
                            model={"input_vocab": [3]}), tmp_path / "c",
        dataset=labelled.with_features("default"))
  with pytest.raises(ValueError, match="integer codes take no '.' extras"):
    RunConfig(features="codes+rwpe")


EDGE_VOCAB = (3, 2)


def edge_coded_batch(seed=0, sizes=(5, 9, 3, 7), num_nodes=12,
                     num_edges=None):
  """coded_batch's graphs on an EdgeList whose entries carry bond codes
  below EDGE_VOCAB."""
  rng = np.random.default_rng(seed)
  dense = coded_batch(seed, sizes, num_nodes)
  edges = [np.argwhere(a[:n, :n] > 0) for a, n in zip(dense.adj, sizes)]
  codes = [np.stack([rng.integers(0, v, len(e)) for v in EDGE_VOCAB], 1)
           for e in edges]
  features = [x[:n] for x, n in zip(dense.x, sizes)]
  batch = sparse_batch(edges, features, dense.labels, num_nodes,
                       num_edges=num_edges, edge_features=codes)
  return batch, edges, codes


def test_gine_messages_match_a_float64_reference():
  rng = np.random.default_rng(2)
  batch, edges, _ = edge_coded_batch()
  x = rng.normal(size=batch.x.shape)
  edge = rng.normal(size=batch.adj.features.shape[:2] + (x.shape[-1],))
  got = gine_messages(batch.adj, x.astype(np.float32),
                      edge.astype(np.float32))
  want = np.zeros_like(x)
  for b, graph_edges in enumerate(edges):
    for e, (i, j) in enumerate(graph_edges):
      want[b, i] += np.maximum(x[b, j] + edge[b, e], 0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["paper", "flat"])
def test_gine_padding_changes_nothing_and_linen_and_nnx_agree(name):
  config = dp.preset(name, **{**SMALL, "conv": "gine",
                              "edge_vocab": EDGE_VOCAB})
  batch, _, _ = edge_coded_batch()
  linen = dp.DiffPool(config, num_classes=3, max_nodes=12)
  variables = linen.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask)
  variables = jax.tree_util.tree_map(lambda v: v + 0.05, variables)
  logits, _ = linen.apply(variables, batch.x, batch.adj, batch.node_mask)
  assert np.all(np.isfinite(logits))
  assert "edge" in variables["params"]["embed0"]["conv0"]
  # more entry slots and nodes of padding: the same logits
  adj = batch.adj
  pad = lambda a, value=0: np.pad(a, [(0, 0), (0, 7)] + [(0, 0)] * (
      a.ndim - 2), constant_values=value)
  wider_adj = EdgeList(pad(adj.senders, 3), pad(adj.receivers, 4),
                       pad(adj.weights), 15, pad(adj.features, 1))
  wider_x = np.pad(batch.x, ((0, 0), (0, 3), (0, 0)), constant_values=99.0)
  wider_mask = np.pad(batch.node_mask, ((0, 0), (0, 3)))
  again, _ = linen.apply(variables, wider_x, wider_adj, wider_mask)
  np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-5)
  # the bond codes matter
  other = batch.adj.replace(features=(batch.adj.features + 1) % 2)
  changed, _ = linen.apply(variables, batch.x, other, batch.node_mask)
  assert not np.allclose(changed, logits, atol=1e-4)
  model = nnx.DiffPool(config, len(VOCAB), 3, 12, rngs=fnnx.Rngs(1))
  nnx.load_linen_variables(model, variables)
  got, _ = model(batch.x, batch.adj, batch.node_mask)
  np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)
  dense = coded_batch()
  with pytest.raises(ValueError, match="conv='gine' needs edge features"):
    linen.apply(variables, dense.x, dense.adj, dense.node_mask)


def test_gine_runs_read_the_bond_codes_and_refuse_what_cannot_work(
    tmp_path):
  from tests.test_task_runs import binary_labels, write_molecules
  root = write_molecules(tmp_path, binary_labels())
  config = RunConfig(dataset="ogbg-gen", data_root=str(root), seeds=1,
                     epochs=2, batch_size=4,
                     model={"hidden_dim": 8, "num_layers": 1, "conv": "gine"})
  run = Run(config, tmp_path / "a")
  assert run.model_config.edge_vocab == (2,)
  assert all(run.session.sparse)
  assert 0 <= run.fit(progress=False)["score"] <= 1
  with pytest.raises(ValueError, match="only the edge-list first level "
                     "carries; it cannot run with first_level='dense'"):
    Run(dataclasses.replace(config, first_level="dense"), tmp_path / "b")
  with pytest.raises(ValueError, match="has no edge features .edge labels."):
    Run(RunConfig(dataset="synthetic", folds=2, epochs=1,
                  model={"conv": "gine"}), tmp_path / "c")
  with pytest.raises(ValueError, match="only conv='gine' reads edge"):
    dp.preset("paper", edge_vocab=(2,))


@pytest.mark.parametrize("values", [
    np.array([5, 3, 3, 255, 0], np.uint8),
    np.array([-128, 127, 0, -128], np.int8),       # a shift past int8's range
    np.array([10**6 + 5, 10**6, 10**6 + 5]),       # offset table
    np.array([2**40, 3, 3]),                       # too wide: np.unique
    np.array([1.5, -0.5, 1.5])])
def test_value_ranks_equal_np_unique_inverse(values):
  np.testing.assert_array_equal(
      value_ranks(values), np.unique(values, return_inverse=True)[1])
