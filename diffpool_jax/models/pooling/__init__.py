"""Dense pooling operators behind one interface.

An operator is a pure function
`(x [B,N,F], adj [B,N,N] | EdgeList, s_logits [B,N,K], mask [B,N] = None,
cluster_mask [B,K] = None) -> result` whose result has fields `x`, `adj`,
`s` and `aux` (auxiliary losses by name), plus keyword options of its own.
An operator describes itself (`PoolingOperator`: the function, the names of
its losses, its options with their defaults, and whether some option
values need the dense first level; and, where it has them, how many logit
columns K clusters need, its own parameters and its sampling, as BN-Pool's
sticks, its block matrix and its Beta draws); `register_pooling` checks the
description against the function and adds it to `POOLING`, where the
configuration finds it by name. A new operator is one function and one
`register_pooling` call, from any module.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from diffpool_jax.models.pooling import (asymcheegercut, bnpool, diffpool,
                                         dmon, hosc, justbalance, mincut)
from diffpool_jax.models.pooling.asymcheegercut import (
    dense_asymcheegercut_pool)
from diffpool_jax.models.pooling.bnpool import dense_bn_pool
from diffpool_jax.models.pooling.common import (MASKED_LOGIT, PoolOutput,
                                                check_adjacency, mask_clusters,
                                                masked_softmax)
from diffpool_jax.models.pooling.diffpool import (LINK_LOSS_FORMS,
                                                  DiffPoolResult,
                                                  dense_diff_pool)
from diffpool_jax.models.pooling.dmon import dense_dmon_pool
from diffpool_jax.models.pooling.hosc import dense_hosc_pool
from diffpool_jax.models.pooling.justbalance import dense_justbalance_pool
from diffpool_jax.models.pooling.mincut import dense_mincut_pool


def never_dense(options: Mapping[str, object]) -> bool:
  """An operator that runs on edge lists whatever its options."""
  return False


def one_column_per_cluster(clusters: int) -> int:
  """s_logits [B,N,K] for K clusters: one logit per cluster."""
  return clusters


class PoolingOperator(NamedTuple):
  """A pooling operator's description.

  Attributes:
    function: the pure function (see the module docstring).
    aux_names: the names of the auxiliary losses its result's `aux` holds.
    options: its keyword options beyond the common arguments, with their
      default values (DiffPoolConfig.pool_options sets them).
    needs_dense: options -> whether they need the dense first level (an
      N x N adjacency, not an EdgeList).
    default_weights: the training weight of a loss whose paper gives it
      one (a loss not named here weighs 1); DiffPoolConfig.aux_weights
      overrides.
    logit_columns: K -> the s_logits columns of a level of K clusters (the
      classifier's assignment width); the first columns of K + 1 clusters
      must be those of K.
    parameters: None, or K -> the initial values of the operator's own
      parameters for up to K clusters, by name; the classifier makes them
      trainable (`pool{level}_{name}`) and passes them as `params=`.
    stochastic: the function takes `rng=`, a PRNG key while training and
      None at evaluation (then it must be deterministic).
  """
  function: Callable
  aux_names: Tuple[str, ...]
  options: Mapping[str, object] = MappingProxyType({})
  needs_dense: Callable[[Mapping[str, object]], bool] = never_dense
  default_weights: Mapping[str, float] = MappingProxyType({})
  logit_columns: Callable[[int], int] = one_column_per_cluster
  parameters: Optional[Callable[[int], Mapping[str, jax.Array]]] = None
  stochastic: bool = False

  def extra_arguments(self, clusters: int, rng=None) -> Dict[str, object]:
    """The keywords beyond its options a call needs: `params=` (initial
    values for `clusters`) and `rng=` where the operator takes them."""
    extra = {}
    if self.parameters is not None:
      extra["params"] = self.parameters(clusters)
    if self.stochastic:
      extra["rng"] = rng
    return extra


def always_dense(options: Mapping[str, object]) -> bool:
  """An operator that needs the dense first level whatever its options."""
  return True


def check_operator(name: str, operator: PoolingOperator) -> None:
  """ValueError naming the operator unless its function, run abstractly
  (jax.eval_shape: nothing is computed) on a tiny dense batch with its
  default options (and, where it takes them, its initial parameters and a
  key), returns x, adj, s and exactly the declared losses."""
  x = jax.ShapeDtypeStruct((2, 4, 3), jnp.float32)
  adj = jax.ShapeDtypeStruct((2, 4, 4), jnp.float32)
  try:
    s_logits = jax.ShapeDtypeStruct((2, 4, operator.logit_columns(3)),
                                    jnp.float32)
    extra = operator.extra_arguments(3, jax.random.key(0))
    result = jax.eval_shape(
        lambda *args: operator.function(*args, **operator.options, **extra),
        x, adj, s_logits)
  except Exception as error:
    raise ValueError(f"pooling operator {name!r}: its function fails on a "
                     f"dense batch with options {dict(operator.options)}: "
                     f"{type(error).__name__}: {error}") from None
  for field in ("x", "adj", "s", "aux"):
    if not hasattr(result, field):
      raise ValueError(f"pooling operator {name!r}: its result has no "
                       f"{field!r} field")
  unknown = set(operator.default_weights) - set(operator.aux_names)
  if unknown:
    raise ValueError(f"pooling operator {name!r}: default_weights name "
                     f"{sorted(unknown)}, which are not among its losses "
                     f"{sorted(operator.aux_names)}")
  if set(result.aux) != set(operator.aux_names):
    raise ValueError(f"pooling operator {name!r}: declares the losses "
                     f"{sorted(operator.aux_names)} but returns "
                     f"{sorted(result.aux)}")


def register_pooling(name: str, operator: PoolingOperator
                     ) -> PoolingOperator:
  """Checks `operator` (see check_operator) and makes it `POOLING[name]`,
  the value DiffPoolConfig(pooling=name) and --pooling NAME pick."""
  check_operator(name, operator)
  POOLING[name] = operator
  return operator


POOLING = {
    "diffpool": PoolingOperator(
        dense_diff_pool, diffpool.AUX_NAMES,
        MappingProxyType({"link_loss": "frobenius"}),
        lambda options: options["link_loss"] == "bce"),
    "mincut": PoolingOperator(dense_mincut_pool, mincut.AUX_NAMES),
    "dmon": PoolingOperator(dense_dmon_pool, dmon.AUX_NAMES),
    "justbalance": PoolingOperator(dense_justbalance_pool,
                                   justbalance.AUX_NAMES),
    "asymcheegercut": PoolingOperator(dense_asymcheegercut_pool,
                                      asymcheegercut.AUX_NAMES),
    "hosc": PoolingOperator(dense_hosc_pool, hosc.AUX_NAMES,
                            MappingProxyType({"alpha": 0.5}), always_dense,
                            MappingProxyType(hosc.DEFAULT_WEIGHTS)),
    "bnpool": PoolingOperator(dense_bn_pool, bnpool.AUX_NAMES,
                              MappingProxyType({"alpha_dp": 1.0, "k_mu": 10.0,
                                                "k_var": 1.0}),
                              always_dense,
                              logit_columns=bnpool.logit_columns,
                              parameters=bnpool.initial_parameters,
                              stochastic=True),
}

__all__ = [
    "POOLING", "PoolingOperator", "register_pooling", "check_operator",
    "PoolOutput", "DiffPoolResult",
    "dense_diff_pool", "dense_mincut_pool", "dense_dmon_pool",
    "dense_justbalance_pool", "dense_asymcheegercut_pool", "dense_hosc_pool",
    "dense_bn_pool",
    "LINK_LOSS_FORMS", "MASKED_LOGIT", "check_adjacency", "mask_clusters",
    "masked_softmax",
]
