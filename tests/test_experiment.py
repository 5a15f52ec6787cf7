"""Run configuration: cluster reference sizes and validation."""

import numpy as np
import pytest

from diffpool_jax.experiment import RunConfig

SIZES = np.array([10, 20, 30, 40, 200])


@pytest.mark.parametrize("reference, nodes", [
    ("max", 200), ("mean", 60), ("median", 30), ("p50", 30), ("p100", 200),
    (64, 64)])
def test_cluster_reference(reference, nodes):
  assert RunConfig(cluster_reference=reference).reference_nodes(SIZES) == nodes


@pytest.mark.parametrize("reference", ["biggest", "pxx", 0])
def test_bad_cluster_reference(reference):
  with pytest.raises(ValueError, match="cluster_reference="):
    RunConfig(cluster_reference=reference).reference_nodes(SIZES)


@pytest.mark.parametrize("change, message", [
    (dict(protocol="best"), "protocol='best'"),
    (dict(folds=0), "folds=0; must be >= 1"),
    (dict(folds=1), "the paper protocol needs folds >= 2"),
    (dict(lr=float("nan")), "lr=nan; every learning rate must be finite"),
    (dict(lr=[1e-3, -1e-3]), "lr=-0.001; every learning rate"),
    (dict(lr=float("inf")), "lr=inf"),
    (dict(clip=0.0), "clip=0.0; must be finite and > 0"),
    (dict(link_weight=float("nan")), "link_weight=nan"),
    (dict(entropy_weight=-1.0), "entropy_weight=-1.0; must be finite"),
    (dict(patience=-1), "patience=-1"),
])
def test_bad_run_config(change, message):
  with pytest.raises(ValueError, match=message):
    RunConfig(**change)


def test_learning_rates_become_a_tuple():
  assert RunConfig(lr=0.01).lr == (0.01,)
  assert RunConfig(lr=[0.01, 0.001]).lr == (0.01, 0.001)
