"""diffpool_jax: hierarchical graph pooling (DiffPool, Ying et al. 2018) in JAX/Flax."""

from diffpool_jax.adjacency import EdgeList
from diffpool_jax.datasets.loader import batches
from diffpool_jax.graphs import (GraphBatch, dense_batch, from_graphs_tuple,
                                 sparse_batch, to_graphs_tuple)
from diffpool_jax.layers import (DenseGCNConv, DenseSAGEConv, DenseSumConv,
                                 GNNStack, MaskedBatchNorm)
from diffpool_jax.model import (DiffPool, DiffPoolConfig, PoolLevel,
                                auxiliary_loss, count_params, level_losses,
                                masked_readout)
from diffpool_jax.presets import PRESETS, preset
from diffpool_jax.pooling import (POOLING, DiffPoolResult, PoolOutput,
                                  dense_diff_pool, dense_dmon_pool,
                                  dense_mincut_pool)

__version__ = "0.1.0"

__all__ = [
    "EdgeList", "batches", "GraphBatch", "dense_batch", "from_graphs_tuple",
    "sparse_batch", "to_graphs_tuple", "DenseGCNConv", "DenseSAGEConv",
    "DenseSumConv", "GNNStack", "MaskedBatchNorm", "PRESETS", "DiffPool",
    "DiffPoolConfig", "PoolLevel", "auxiliary_loss", "count_params",
    "level_losses", "masked_readout", "preset", "POOLING", "DiffPoolResult",
    "PoolOutput", "dense_diff_pool", "dense_mincut_pool", "dense_dmon_pool",
]
