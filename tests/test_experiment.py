"""Run configuration: cluster reference sizes and validation."""

import numpy as np
import pytest

from diffpool_jax.run import RunConfig

SIZES = np.array([10, 20, 30, 40, 200])


@pytest.mark.parametrize("reference, nodes", [
    ("max", 200), ("mean", 60), ("median", 30), ("p50", 30), ("p100", 200),
    (64, 64)])
def test_cluster_reference(reference, nodes):
  assert RunConfig(cluster_reference=reference).reference_nodes(SIZES) == nodes


@pytest.mark.parametrize("reference", ["biggest", "pxx", 0, "p150"])
def test_bad_cluster_reference(reference):
  with pytest.raises(ValueError, match="cluster_reference="):
    RunConfig(cluster_reference=reference)


@pytest.mark.parametrize("change, message", [
    (dict(protocol="best"), "protocol='best'"),
    (dict(folds=0), "folds=0; must be >= 1"),
    (dict(folds=1), "folds=1; stratified folds need at least 2"),
    (dict(folds=1, protocol="fair"), "folds=1; stratified folds need"),
    (dict(lr=float("nan")), "lr=nan; every learning rate must be finite"),
    (dict(lr=[1e-3, -1e-3]), "lr=-0.001; every learning rate"),
    (dict(lr=float("inf")), "lr=inf"),
    (dict(clip=0.0), "clip=0.0; must be finite and > 0"),
    (dict(weight_decay=-1e-4), "weight_decay=-0.0001; must be finite"),
    (dict(model={"aux_weights": {"link": float("nan")}}),
     "aux_weights: link=nan; must be a finite number >= 0"),
    (dict(model={"aux_weights": {"entropy": -1.0}}),
     "aux_weights: entropy=-1.0; must be a finite number"),
    (dict(model={"aux_weights": {"mincut": 1.0}}),
     "'mincut' is not an auxiliary loss of pooling='diffpool'"),
    (dict(model={"aux_weights": 3}), "model.aux_weights=3; expected a"),
    (dict(patience=-1), "patience=-1"),
    (dict(epochs="ten"), "epochs='ten'; must be an integer"),
    (dict(folds=2.5), "folds=2.5; must be an integer"),
    (dict(lr=["abc"]), r"lr=\['abc'\]; expected a number or a list"),
    (dict(lr=[[1e-3]]), "expected a number or a list of numbers"),
    (dict(clip="2"), "clip='2'; must be a number"),
    (dict(memory_gib="4"), "memory_gib='4'; must be a number > 0"),
    (dict(protocol=["fair"]), r"protocol=\['fair'\]; expected one of"),
    (dict(weight_decay=None), "weight_decay=None; must be a number"),
    (dict(features="nonsense"), "features='nonsense'; expected one of"),
    (dict(model={"hidden_dim": 0}), "hidden_dim=0; must be an integer >= 1"),
    (dict(model={"widht": 3}), r"model: unknown fields \['widht'\]"),
    (dict(model={"dropout": 1.0}), "dropout=1.0; must be in"),
    (dict(min_bucket_gain=float("nan")), r"min_bucket_gain=nan; must be in "
     r"\[0, 1\)"),
    (dict(min_bucket_gain=1.0), "min_bucket_gain=1.0; must be in"),
    (dict(first_level="edges"), "first_level='edges'; expected one of"),
])
def test_bad_run_config(change, message):
  with pytest.raises(ValueError, match=message):
    RunConfig(**change)


def test_learning_rates_become_a_tuple():
  assert RunConfig(lr=0.01).lr == (0.01,)
  assert RunConfig(lr=[0.01, 0.001]).lr == (0.01, 0.001)


def test_moved_modules_import_from_their_old_paths_with_a_warning():
  """0.1's module paths (diffpool_jax.experiment, .training, .pooling.mincut,
  ...) give the moved module itself and a DeprecationWarning naming the new
  path."""
  import importlib
  import sys
  from diffpool_jax import run
  from diffpool_jax.engine import trainer
  from diffpool_jax.models.pooling import mincut
  for old, new in (("diffpool_jax.experiment", run),
                   ("diffpool_jax.training", trainer),
                   ("diffpool_jax.pooling.mincut", mincut)):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"moved to {new.__name__}"):
      assert importlib.import_module(old) is new
  from diffpool_jax.experiment import RunConfig as old_name
  assert old_name is RunConfig
  # The new module keeps its own spec; the warning of `from diffpool_jax
  # import OLD` names the caller's line.
  assert trainer.__spec__.name == "diffpool_jax.engine.trainer"
  import diffpool_jax
  diffpool_jax.__dict__.pop("hosts", None)
  sys.modules.pop("diffpool_jax.hosts", None)
  with pytest.warns(DeprecationWarning, match="moved to diffpool_jax.engine"
                    ".hosts") as caught:
    from diffpool_jax import hosts  # noqa: F401
  assert [w.filename for w in caught] == [__file__]
  with pytest.raises(ModuleNotFoundError):
    importlib.import_module("diffpool_jax.no_such_module")
