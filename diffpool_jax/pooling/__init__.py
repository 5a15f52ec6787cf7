"""Dense pooling operators behind one interface.

An operator is a pure function
`(x [B,N,F], adj [B,N,N] | EdgeList, s_logits [B,N,K], mask [B,N] = None,
cluster_mask [B,K] = None) -> result` whose result has fields `x`, `adj`,
`s` and `aux` (auxiliary losses by name). The model finds it by name in
`POOLING`; training weighs `aux` by name. A new operator is one module here
and one entry in `POOLING`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Tuple

from diffpool_jax.pooling import diffpool, dmon, mincut
from diffpool_jax.pooling.common import (MASKED_LOGIT, PoolOutput,
                                         check_adjacency, mask_clusters,
                                         masked_softmax)
from diffpool_jax.pooling.diffpool import (LINK_LOSS_FORMS, DiffPoolResult,
                                           dense_diff_pool)
from diffpool_jax.pooling.dmon import dense_dmon_pool
from diffpool_jax.pooling.mincut import dense_mincut_pool


class PoolingOperator(NamedTuple):
  """A pooling function and the names of the auxiliary losses it returns."""
  function: Callable
  aux_names: Tuple[str, ...]


POOLING = {
    "diffpool": PoolingOperator(dense_diff_pool, diffpool.AUX_NAMES),
    "mincut": PoolingOperator(dense_mincut_pool, mincut.AUX_NAMES),
    "dmon": PoolingOperator(dense_dmon_pool, dmon.AUX_NAMES),
}

__all__ = [
    "POOLING", "PoolingOperator", "PoolOutput", "DiffPoolResult",
    "dense_diff_pool", "dense_mincut_pool", "dense_dmon_pool",
    "LINK_LOSS_FORMS", "MASKED_LOGIT", "check_adjacency", "mask_clusters",
    "masked_softmax",
]
