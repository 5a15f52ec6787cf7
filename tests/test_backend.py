"""What depends on the backend: the memory budget (the device's own memory
on a GPU or TPU, the host's on the CPU), the matmul precision setting, and
epochs that never go back to the host."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax.datasets import choose_buckets, synthetic_hierarchical
from diffpool_jax.engine import compile_cache, memory, pipeline, trainer
from diffpool_jax.run import Run, RunConfig

TINY_MODEL = dict(hidden_dim=8, embed_dim=8, num_layers=2, mlp_hidden=(8,),
                  pool_ratios=(0.5,))


class FakeAccelerator:
  """A device whose allocator reports a memory limit, as a GPU's does."""
  platform, id, device_kind = "gpu", 0, "Fake H100"

  def __init__(self, limit):
    self.limit = limit

  def memory_stats(self):
    return {"bytes_limit": self.limit, "bytes_in_use": 1024,
            "peak_bytes_in_use": 2048}


def test_budget_on_an_accelerator_is_a_share_of_its_own_memory():
  budget = memory.budget(device=FakeAccelerator(10 * memory.GIB))
  assert budget.bytes == int(memory.DEVICE_SHARE * 10 * memory.GIB)
  assert "10.0 GiB of device memory" in budget.source
  assert "gpu:0 (Fake H100)" in budget.source


def test_budget_on_the_cpu_is_a_share_of_the_host_memory():
  cpu = jax.devices("cpu")[0]             # present on every backend
  assert memory.device_limit_bytes(cpu) is None
  budget = memory.budget(device=cpu)
  assert 0 < budget.bytes <= memory.available_bytes()
  assert "of the host's" in budget.source and "(cpu)" in budget.source


def test_a_given_budget_wins_on_every_device():
  budget = memory.budget(2.0, device=FakeAccelerator(80 * memory.GIB))
  assert budget.bytes == 2 * memory.GIB
  assert budget.source == "memory_gib=2 as configured (Fake H100)"


def test_unknown_precision_is_refused_naming_the_field():
  with pytest.raises(ValueError, match="matmul_precision='tf32'; expected "
                     "one of"):
    RunConfig(matmul_precision="tf32")


@pytest.mark.parametrize("setting, hlo", [("float32", "HIGHEST"),
                                          ("bfloat16", "DEFAULT"),
                                          ("default", "DEFAULT")])
def test_precision_setting_reaches_the_traced_matmuls(setting, hlo):
  dot = jax.jit(jnp.matmul)
  with trainer.precision_context(setting):
    text = dot.lower(jnp.ones((4, 4)), jnp.ones((4, 4))).as_text()
    key = compile_cache.program_key("dot", "static", (jnp.ones(3),))
  assert f"precision = [{hlo}, {hlo}]" in text
  with trainer.precision_context("tensorfloat32"):
    other = compile_cache.program_key("dot", "static", (jnp.ones(3),))
  assert key != other               # a kept program is per precision


@pytest.fixture(scope="module")
def engine():
  """A tiny model, its data on the device and two members' states."""
  dataset = synthetic_hierarchical(num_graphs=24, communities=(2, 3),
                                   community_size=(3, 5), seed=0)
  buckets = choose_buckets(dataset.n_node, 2)
  data = pipeline.device_data(dataset, buckets, sparse=[False, True])
  model = dp.DiffPool(dp.preset("paper", **TINY_MODEL), dataset.num_classes,
                      dataset.max_nodes)
  sample = trainer.gather_batch(data.buckets[0], jnp.arange(4))
  states = trainer.init_members(
      model, sample, [0, 1], trainer.default_hyper(model.config, 2, lr=1e-2,
                                                   aux_weight=1.0))
  graphs = [np.arange(0, 16), np.arange(8, 24)]
  train = pipeline.make_schedule(graphs, data, 4, np.random.default_rng(0))
  test = pipeline.make_schedule(graphs, data, 4)
  return model, data, states, train, test


def test_epochs_make_no_host_transfer(engine):
  """With every argument on the device, a train and an evaluation epoch
  run under a transfer guard that refuses any implicit transfer."""
  model, data, states, train, test = engine
  train_epoch, eval_epoch = trainer.compile_epochs(model)
  on_device = jax.device_put((train.bucket_ids, train.indices,
                              test.bucket_ids, test.indices, np.int32(0)))
  train_ids, train_indices, test_ids, test_indices, step = on_device
  copy = lambda: jax.tree_util.tree_map(jnp.copy, states)  # train donates
  eval_epoch(states, data.buckets, test_ids, test_indices)   # compile both
  train_epoch(copy(), data.buckets, train_ids, train_indices, step)
  states = copy()
  with jax.transfer_guard("disallow"):
    states, totals = train_epoch(states, data.buckets, train_ids,
                                 train_indices, step)
    sums, _ = eval_epoch(states, data.buckets, test_ids, test_indices)
    jax.block_until_ready((totals, sums))
    with pytest.raises(Exception, match="[Dd]isallowed"):
      # The guard is live: a NumPy argument is an implicit transfer.
      eval_epoch(states, data.buckets, test.bucket_ids, test_indices)
  assert float(np.sum(np.asarray(sums.graphs))) > 0


def test_epoch_programs_call_no_host_code(engine):
  """No host callback (jax.debug.print, pure_callback, io_callback) inside
  the scanned epochs: they would return to Python at every step."""
  model, data, states, train, test = engine
  train_epoch, eval_epoch = trainer.compile_epochs(model)
  texts = [train_epoch.lower(states, data.buckets, train.bucket_ids,
                             train.indices, np.int32(0)).as_text(),
           eval_epoch.lower(states, data.buckets, test.bucket_ids,
                            test.indices).as_text()]
  for text in texts:
    assert "stablehlo.while" in text or "scan" in text
    assert "callback" not in text.lower()


def test_a_run_prints_the_device_its_budget_comes_from(tmp_path, capsys):
  config = RunConfig(folds=2, epochs=1, batch_size=4, protocol="paper",
                     model=TINY_MODEL, checkpoint_every=0,
                     synthetic=dict(num_graphs=16, communities=(2, 3),
                                    community_size=(3, 5)))
  Run(config, tmp_path / "run").session.compile(progress=True)
  line = capsys.readouterr().out.splitlines()[0]
  assert line.startswith("training program:")
  if jax.default_backend() == "cpu":
    assert "of the host's" in line and "(cpu)" in line
  else:                                   # a GPU or TPU: its own memory
    assert "GiB of device memory JAX may use" in line
