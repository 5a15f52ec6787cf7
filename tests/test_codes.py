"""Integer node features embedded by the model ("codes" features and
DiffPoolConfig.input_vocab, OGB's AtomEncoder): one table per column,
summed, equal to the one-hot features times the stacked tables."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx as fnnx

import diffpool_jax as dp
from diffpool_jax import nnx
from diffpool_jax.datasets import code_vocabulary, synthetic_hierarchical
from diffpool_jax.datasets.features import label_codes, one_hot_labels
from diffpool_jax.graphs import GraphBatch
from diffpool_jax.layers import embed_codes
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
