"""The five extension points alike: each `register_*` checks what it is
given, and one user's file registers one of each through --import."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import pytest

import diffpool_jax as dp
from diffpool_jax.datasets import READERS, Reader, register_reader
from diffpool_jax.models import layers
from diffpool_jax.models.layers import CONVOLUTIONS
from diffpool_jax.models.pooling import POOLING
from diffpool_jax.protocols import PROTOCOLS, FairProtocol, register_protocol
from tests.test_train_command import read_metrics

REPO = Path(__file__).resolve().parents[1]

USER_MODULE = textwrap.dedent('''
    """A user's extensions, one of each kind."""
    import flax.linen as nn

    import diffpool_jax as dp
    from diffpool_jax.datasets import (Reader, register_reader,
                                       synthetic_hierarchical)
    from diffpool_jax.models.pooling import PoolingOperator
    from diffpool_jax.protocols import FairProtocol, register_protocol


    class HalfSumConv(nn.Module):
      """The authors' GraphConv, halved."""
      features: int
      mask_output: bool = True

      @nn.compact
      def __call__(self, x, adj, node_mask):
        return dp.DenseSumConv(self.features, self.mask_output,
                               name="inner")(x, adj, node_mask) / 2


    def halved_mincut_pool(x, adj, s_logits, mask=None, cluster_mask=None):
      return dp.dense_mincut_pool(x, adj, s_logits / 2, mask,
                                  cluster_mask=cluster_mask)


    class FifthHoldout(FairProtocol):
      name = "fifth"
      note = "the fair protocol with a 20 % validation holdout"
      holdout = 0.2


    dp.register_conv("half_sum", HalfSumConv)
    dp.register_pooling("halved", PoolingOperator(halved_mincut_pool,
                                                  ("mincut", "ortho")))
    dp.register_preset("mine", dp.preset(
        "mincut", conv="half_sum", pooling="halved", hidden_dim=8,
        embed_dim=8, num_layers=2, mlp_hidden=(8,), pool_ratios=(0.5,)))
    register_protocol(FifthHoldout())
    register_reader("mine", Reader(
        lambda name, root, features, **options: synthetic_hierarchical(
            num_graphs=40, communities=(2, 3), community_size=(3, 5),
            seed=1).with_features(features),
        lambda root, name: name == "tiny"))
''')


def test_one_of_each_registered_in_a_users_file_trains_through_import(
    tmp_path, train_here):
  module = tmp_path / "my_extensions.py"
  module.write_text(USER_MODULE)
  out = tmp_path / "run"
  try:
    done = train_here("--import", module, "--dataset", "tiny", "--format",
                      "mine", "--preset", "mine", "--protocol", "fifth",
                      "--folds", "2", "--epochs", "2", "--max-buckets", "1",
                      "--out", out, "--quiet", "--no-plots")
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    run = config["run"]
    assert (run["format"], run["preset"], run["protocol"]) == (
        "mine", "mine", "fifth")
    assert (config["model"]["conv"], config["model"]["pooling"]) == (
        "half_sum", "halved")
    assert json.loads((out / "results.json").read_text())["protocol"] == \
        "fifth"
    assert all({"train_mincut", "train_ortho"} <= set(row)
               for row in read_metrics(out))
    from flax import nnx as fnnx
    from diffpool_jax import nnx
    assert nnx.Conv("half_sum", 3, 4, fnnx.Rngs(0))(
        *nnx.sample_batch(3, 5)).shape == (1, 5, 4)
  finally:
    for registry, name in ((CONVOLUTIONS, "half_sum"), (POOLING, "halved"),
                           (dp.PRESETS, "mine"), (PROTOCOLS, "fifth"),
                           (READERS, "mine")):
      registry.pop(name, None)
    sys.modules.pop("my_extensions", None)


class NoFeatures(nn.Module):
  """A convolution that forgets its output width."""
  features: int
  mask_output: bool = True

  @nn.compact
  def __call__(self, x, adj, node_mask):
    return x


def test_register_conv_refuses_what_does_not_fit_and_names_it():
  with pytest.raises(ValueError, match=r"convolution 'same' maps a dense batch .* \(2, 5, 3\);"
                     r" expected \[2, 5, features=4\]"):
    dp.register_conv("same", NoFeatures)
  with pytest.raises(ValueError, match="convolution 'plain': expected a "
                     "flax.linen Module class"):
    dp.register_conv("plain", lambda features, mask_output: None)
  assert "same" not in CONVOLUTIONS and "plain" not in CONVOLUTIONS


# The library's own convolutions (tests register theirs in test bodies).
BUILT_IN_CONVOLUTIONS = tuple(
    name for name, conv in CONVOLUTIONS.items()
    if conv.module.__module__.startswith("diffpool_jax."))


def test_the_built_in_convolutions_are_these():
  assert set(BUILT_IN_CONVOLUTIONS) == {"sage", "gcn", "sum", "gin", "gine",
                                        "gatv2"}


@pytest.mark.parametrize("name", BUILT_IN_CONVOLUTIONS)
def test_built_in_convolutions_pass_the_registration_check(name):
  # registered with check=False, so that importing the library traces
  # nothing: the check runs here instead
  layers.check_convolution(name, CONVOLUTIONS[name])


def test_importing_the_library_traces_no_convolution():
  code = textwrap.dedent("""
      import jax
      traced = []
      eval_shape = jax.eval_shape
      jax.eval_shape = lambda *a, **k: traced.append(1) or eval_shape(*a, **k)
      import diffpool_jax
      from diffpool_jax.models.layers import CONVOLUTIONS
      print(len(CONVOLUTIONS), len(traced))
      """)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, cwd=REPO, check=True)
  registered, traced = map(int, done.stdout.split())
  assert registered >= 6 and traced == 0


def test_register_conv_checks_unless_told_not_to():
  with pytest.raises(ValueError, match="convolution 'unchecked' maps"):
    dp.register_conv("unchecked", NoFeatures)
  try:
    dp.register_conv("unchecked", NoFeatures, check=False)
    assert CONVOLUTIONS["unchecked"].module is NoFeatures
  finally:
    CONVOLUTIONS.pop("unchecked", None)


def test_register_preset_refuses_a_non_config_and_bad_fields():
  with pytest.raises(ValueError, match="preset 'dict': expected a "
                     "DiffPoolConfig, got dict"):
    dp.register_preset("dict", {"conv": "sage"})
  bad = dp.preset("paper")
  object.__setattr__(bad, "hidden_dim", 0)       # past __post_init__
  with pytest.raises(ValueError, match="preset 'zero': DiffPoolConfig."
                     "hidden_dim=0"):
    dp.register_preset("zero", bad)
  assert "dict" not in dp.PRESETS and "zero" not in dp.PRESETS


class NoSummary(FairProtocol):
  name = "no_summary"
  summary = None


class BadEpochs(FairProtocol):
  name = "bad_epochs"

  def selected_epochs(self, tables, patience, higher=True):
    return [0]


class BadHoldout(FairProtocol):
  name = "bad_holdout"
  holdout = 1.0


@pytest.mark.parametrize("protocol, message", [
    (NoSummary(), "'no_summary': summary is missing"),
    (BadEpochs(), r"'bad_epochs': selected_epochs returned shape \(1,\)"),
    (BadHoldout(), r"'bad_holdout': holdout must be a number in \[0, 1\)")])
def test_register_protocol_names_the_member_at_fault(protocol, message):
  with pytest.raises(ValueError, match=message):
    register_protocol(protocol)
  assert protocol.name not in PROTOCOLS


def test_register_reader_names_the_field_at_fault():
  with pytest.raises(ValueError, match="reader 'odd': holds must be a "
                     "function"):
    register_reader("odd", Reader(lambda *a, **k: None, None))
  with pytest.raises(ValueError, match="reader 'odd': protocol='weekly'"):
    register_reader("odd", Reader(lambda *a, **k: None, lambda r, n: False,
                                  protocol="weekly"))
  assert "odd" not in READERS
