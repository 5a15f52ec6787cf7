"""The training engine: masked no-op steps, vmapped members vs solo runs,
and the protocol arithmetic."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax.datasets import choose_buckets, synthetic_hierarchical
from diffpool_jax.engine import pipeline, trainer
from diffpool_jax.engine.hyper import Hyper
from diffpool_jax.protocols import (early_stopping_epoch, fair_protocol,
                                    paper_protocol)

TINY_MODEL = dict(hidden_dim=8, embed_dim=8, num_layers=2, mlp_hidden=(8,),
                  pool_ratios=(0.5,))


@pytest.fixture(scope="module")
def setup():
  dataset = synthetic_hierarchical(num_graphs=30, communities=(2, 3),
                                   community_size=(3, 5), seed=0)
  data = pipeline.device_data(dataset, choose_buckets(dataset.n_node, 2))
  model = dp.DiffPool(dp.preset("paper", dropout=0.1, **TINY_MODEL),
                      dataset.num_classes, dataset.max_nodes)
  sample = trainer.gather_batch(data.buckets[0], jnp.arange(4))
  return dataset, data, model, sample


def one_hyper(model, lr, clip=2.0, weight_decay=0.0):
  return Hyper(lr, clip, weight_decay, model.config.dropout,
               {"link": 1.0, "entropy": 0.5})


def members(model, sample, seeds, lrs):
  hyper = jax.tree_util.tree_map(lambda *v: np.array(v),
                                 *(one_hyper(model, lr) for lr in lrs))
  return trainer.init_members(model, sample, seeds, hyper)


def step_gradient(model, state, batch, step=0):
  """The training loss's gradient at step `step`, computed apart from
  train_step (jitted: op-by-op it takes seconds)."""
  def loss(params):
    return trainer.graph_losses(
        model, params, state.batch_stats, batch, state.hyper.aux, True,
        jax.random.fold_in(state.key, step), state.hyper.dropout)[0]
  return jax.jit(jax.grad(loss))(state.params)


def test_masked_step_leaves_state_bit_identical(setup):
  _, data, model, sample = setup
  state = jax.tree_util.tree_map(lambda x: x[0],
                                 members(model, sample, [0], [1e-2]))
  empty = trainer.gather_batch(data.buckets[0], jnp.full((4,), -1))
  new_state, metrics = jax.jit(functools.partial(trainer.train_step, model))(
      state, empty, jnp.int32(3))
  assert float(metrics.graphs) == 0
  for old, new in zip(jax.tree_util.tree_leaves(state),
                      jax.tree_util.tree_leaves(new_state)):
    np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
  # A real batch does change the parameters.
  real = trainer.gather_batch(data.buckets[0], jnp.arange(4))
  changed, _ = jax.jit(functools.partial(trainer.train_step, model))(
      state, real, jnp.int32(3))
  assert not np.allclose(np.asarray(changed.params["mlp1"]["kernel"]),
                         np.asarray(state.params["mlp1"]["kernel"]))


def test_aux_weights_weigh_each_loss_by_name(setup):
  """The training loss is cross-entropy + sum of weight x auxiliary loss,
  with the state's per-member weights."""
  _, data, model, sample = setup
  batch = trainer.gather_batch(data.buckets[0], jnp.arange(4))
  state = jax.tree_util.tree_map(lambda x: x[0],
                                 members(model, sample, [0], [1e-2]))

  def loss_with(weights):
    loss, (metrics, _, _) = trainer.graph_losses(
        model, state.params, state.batch_stats, batch, weights, False)
    return float(loss), {k: float(v / metrics.graphs)
                         for k, v in metrics.aux.items()}

  plain, aux = loss_with({"link": 0.0, "entropy": 0.0})
  weighted, _ = loss_with({"link": 2.0, "entropy": 3.0})
  assert set(aux) == {"link", "entropy"} and aux["link"] > 0
  np.testing.assert_allclose(weighted - plain,
                             2 * aux["link"] + 3 * aux["entropy"], rtol=1e-5)


def test_vmapped_member_equals_solo_run(setup):
  dataset, data, model, sample = setup
  graphs = [np.arange(0, 20), np.arange(10, 30)]  # different training sets
  seeds, lrs = [3, 4], [1e-2, 3e-3]
  schedule = pipeline.make_schedule(graphs, data, batch_size=4,
                                    rng=np.random.default_rng(0))
  train, _ = trainer.compile_epochs(model)
  states, totals = train(members(model, sample, seeds, lrs), data.buckets,
                         schedule.bucket_ids, schedule.indices, jnp.int32(0))
  for m in range(2):
    solo, solo_totals = train(members(model, sample, [seeds[m]], [lrs[m]]),
                              data.buckets, schedule.bucket_ids,
                              schedule.indices[m:m + 1], jnp.int32(0))
    for vmapped, alone in zip(jax.tree_util.tree_leaves(states),
                              jax.tree_util.tree_leaves(solo)):
      np.testing.assert_allclose(np.asarray(vmapped[m]), np.asarray(alone[0]),
                                 rtol=2e-5, atol=2e-6)
    assert float(solo_totals.graphs[0]) == float(totals.graphs[m]) == 20


def test_epoch_program_equals_train_steps_one_by_one(setup):
  """The epoch program (gradients inside the bucket switch, the update
  after it) gives what train_step gives step by step, masked steps
  included: member 1 has fewer graphs, so some of its steps are empty."""
  _, data, model, sample = setup
  graphs = [np.arange(0, 30), np.arange(0, 6)]
  schedule = pipeline.make_schedule(graphs, data, batch_size=4,
                                    rng=np.random.default_rng(3))
  assert len(set(schedule.bucket_ids.tolist())) == 2   # both buckets used
  assert np.any(np.all(schedule.indices[1] < 0, axis=1))  # empty steps
  start = members(model, sample, [5, 6], [1e-2, 3e-3])
  train, _ = trainer.compile_epochs(model)
  states, totals = train(jax.tree_util.tree_map(jnp.copy, start),
                         data.buckets, schedule.bucket_ids, schedule.indices,
                         jnp.int32(7))
  step = jax.jit(functools.partial(trainer.train_step, model))
  for m in range(2):
    state = jax.tree_util.tree_map(lambda x: x[m], start)
    graphs_seen = 0.0
    for t, bucket in enumerate(schedule.bucket_ids):
      batch = trainer.gather_batch(data.buckets[int(bucket)],
                                   jnp.asarray(schedule.indices[m, t]))
      state, metrics = step(state, batch, jnp.int32(7 + t))
      graphs_seen += float(metrics.graphs)
    for epoch_leaf, step_leaf in zip(jax.tree_util.tree_leaves(states),
                                     jax.tree_util.tree_leaves(state)):
      np.testing.assert_allclose(np.asarray(epoch_leaf[m]),
                                 np.asarray(step_leaf), rtol=2e-5, atol=2e-6)
    assert float(totals.graphs[m]) == graphs_seen == len(graphs[m])


def test_schedule_covers_each_members_graphs_once(setup):
  dataset, data, _, _ = setup
  graphs = [np.arange(0, 25), np.arange(5, 12)]
  schedule = pipeline.make_schedule(graphs, data, batch_size=4,
                                    rng=np.random.default_rng(1))
  assert schedule.indices.shape[:2] == (2, len(schedule.bucket_ids))
  for m, wanted in enumerate(graphs):
    seen = []
    for step, bucket in enumerate(schedule.bucket_ids):
      for position in schedule.indices[m, step]:
        if position >= 0:
          match = np.flatnonzero((data.which == bucket) &
                                 (data.position == position))
          seen.extend(match.tolist())
    assert sorted(seen) == sorted(wanted.tolist())
  again = pipeline.make_schedule(graphs, data, 4, np.random.default_rng(2))
  assert again.indices.shape == schedule.indices.shape  # same every epoch


def test_empty_steps_change_no_evaluation_sum(setup):
  """Padding an evaluation schedule with empty steps (so that validation
  and test share one program) leaves every metric sum bit-identical."""
  _, data, model, sample = setup
  states = members(model, sample, [0, 1], [1e-2, 1e-2])
  graphs = [np.arange(0, 9), np.arange(20, 30)]
  fixed = pipeline.make_schedule(graphs, data, batch_size=4)
  padded = pipeline.pad_steps(fixed, len(fixed.bucket_ids) + 3)
  assert len(padded.bucket_ids) == len(fixed.bucket_ids) + 3
  _, evaluate = trainer.compile_epochs(model)
  sums = [evaluate(states, data.buckets, s.bucket_ids, s.indices)[0]
          for s in (fixed, padded)]
  for a, b in zip(jax.tree_util.tree_leaves(sums[0]),
                  jax.tree_util.tree_leaves(sums[1])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="more than 2"):
    pipeline.pad_steps(fixed, 2)


def test_paper_protocol_arithmetic():
  # 3 epochs x 2 folds x 1 seed x 1 point.
  test_acc = np.array([[0.5, 0.7], [0.9, 0.6], [0.6, 0.6]])[..., None, None]
  result = paper_protocol(test_acc)
  assert result["epoch"] == 1                 # mean 0.75 beats 0.6 and 0.6
  assert result["score"] == pytest.approx(0.75)
  assert result["std"] == pytest.approx(0.15)
  assert result["fold_scores"] == pytest.approx([0.9, 0.6])
  assert "optimistic" in result["note"]


def test_early_stopping_epoch():
  val_acc = np.array([0.5, 0.6, 0.6, 0.55, 0.5, 0.9])
  val_loss = np.array([1.0, 0.9, 0.8, 0.7, 0.7, 0.1])
  assert early_stopping_epoch(val_acc, val_loss, patience=2) == 2  # tie: loss
  assert early_stopping_epoch(val_acc, val_loss, patience=3) == 5
  assert early_stopping_epoch(val_acc, val_loss, patience=1) == 2


def test_fair_protocol_arithmetic():
  # 4 epochs x 2 folds x 1 seed x 2 points (learning rates).
  val = np.zeros((4, 2, 1, 2))
  test = np.zeros((4, 2, 1, 2))
  loss = np.ones((4, 2, 1, 2))
  val[:, 0, 0, 0] = [0.5, 0.8, 0.7, 0.6]      # fold 0, point 0: epoch 1
  test[:, 0, 0, 0] = [0.1, 0.7, 0.9, 0.9]
  val[:, 0, 0, 1] = [0.4, 0.5, 0.6, 0.7]      # best 0.7 < 0.8
  val[:, 1, 0, 0] = [0.3, 0.3, 0.3, 0.3]
  val[:, 1, 0, 1] = [0.2, 0.9, 0.1, 0.1]      # fold 1, point 1: epoch 1
  test[:, 1, 0, 1] = [0.0, 0.5, 1.0, 1.0]
  result = fair_protocol(val, loss, test, patience=10)
  assert result["selected_points"] == [0, 1]
  assert result["fold_scores"] == pytest.approx([0.7, 0.5])
  assert result["score"] == pytest.approx(0.6)
  assert result["std"] == pytest.approx(0.1)


def test_sparse_and_dense_epochs_agree(setup):
  dataset, dense_data, model, sample = setup
  sparse_data = pipeline.device_data(dataset, dense_data.bucket_sizes,
                                     sparse=True)
  graphs = [np.arange(0, 20)]
  schedule = pipeline.make_schedule(graphs, dense_data, batch_size=4,
                                    rng=np.random.default_rng(0))
  train, _ = trainer.compile_epochs(model)
  results = [train(members(model, sample, [3], [1e-2]), data.buckets,
                   schedule.bucket_ids, schedule.indices, jnp.int32(0))
             for data in (dense_data, sparse_data)]
  for a, b in zip(jax.tree_util.tree_leaves(results[0]),
                  jax.tree_util.tree_leaves(results[1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                               atol=1e-5)


def test_members_are_initialised_as_one_member_alone(setup):
  """init_members (one member after another) gives each member exactly the
  state that init_state gives it on its own."""
  _, _, model, sample = setup
  states = members(model, sample, [3, 4], [1e-2, 3e-3])
  for m, (seed, lr) in enumerate(((3, 1e-2), (4, 3e-3))):
    alone = trainer.init_state(model, sample, jax.random.PRNGKey(seed),
                                one_hyper(model, lr))
    for got, want in zip(jax.tree_util.tree_leaves(states),
                         jax.tree_util.tree_leaves(alone)):
      np.testing.assert_allclose(np.asarray(got)[m], np.asarray(want),
                                 rtol=1e-6, atol=1e-7)


def test_weight_decay_is_l2_on_the_clipped_gradient(setup):
  """One step with weight decay wd equals Adam on clip(g) + wd * params;
  the default (0) is Adam on clip(g)."""
  import optax
  _, data, model, sample = setup
  batch = trainer.gather_batch(data.buckets[0], jnp.arange(4))
  key = jax.random.PRNGKey(0)
  plain = trainer.init_state(model, sample, key,
                              one_hyper(model, 1e-2, clip=0.5))
  decayed = trainer.init_state(model, sample, key,
                                one_hyper(model, 1e-2, 0.5, 0.3))
  step = jax.jit(functools.partial(trainer.train_step, model))
  after_plain, _ = step(plain, batch, jnp.int32(0))
  after_decayed, _ = step(decayed, batch, jnp.int32(0))
  # The same steps by hand with optax's pieces.
  grads = step_gradient(model, plain, batch)
  clipped, _ = optax.clip_by_global_norm(0.5).update(grads, None)
  adam = optax.adam(1e-2)

  def adam_step(gradient):
    updates, _ = adam.update(gradient, adam.init(plain.params))
    return optax.apply_updates(plain.params, updates)

  with_decay = jax.tree_util.tree_map(lambda g, p: g + 0.3 * p, clipped,
                                      plain.params)
  for after, gradient in ((after_decayed, with_decay), (after_plain, clipped)):
    chex.assert_trees_all_close(after.params, adam_step(gradient), rtol=1e-5,
                                atol=1e-6)


def test_the_optimizer_factory_can_be_replaced(setup):
  """Plain SGD from the member's own learning rate, through init_members
  and the compiled epoch: each member's step is params - lr * grad."""
  import optax
  dataset, _, model, sample = setup
  data = pipeline.device_data(dataset, choose_buckets(dataset.n_node, 1))
  sgd = lambda hyper: optax.sgd(hyper.lr)
  lrs = [0.5, 0.05]
  hyper = jax.tree_util.tree_map(lambda *v: np.array(v),
                                 *(one_hyper(model, lr) for lr in lrs))
  states = trainer.init_members(model, sample, [1, 1], hyper, sgd)
  assert not jax.tree_util.tree_leaves(states.opt_state)   # SGD: no state
  before = jax.tree_util.tree_map(np.asarray, states)
  schedule = pipeline.make_schedule([np.arange(4)] * 2, data, 4)
  train, _ = trainer.compile_epochs(model, optimizer=sgd)
  after, _ = train(states, data.buckets, schedule.bucket_ids,
                   schedule.indices, jnp.int32(0))
  batch = trainer.gather_batch(data.buckets[int(schedule.bucket_ids[0])],
                                schedule.indices[0, 0])
  one = jax.tree_util.tree_map(lambda v: v[0], before)
  grads = step_gradient(model, one, batch)
  for m, lr in enumerate(lrs):
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda v: v[m], after.params),
        jax.tree_util.tree_map(lambda p, g: p - lr * g, one.params, grads),
        rtol=1e-5, atol=1e-6)
