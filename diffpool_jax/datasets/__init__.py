"""Graph data sets (host side, NumPy): readers found by format name (TU, OGB
graph property, synthetic), node features, size buckets and splits."""

from diffpool_jax.datasets.blocks import RowBlocks, stacked
from diffpool_jax.datasets.buckets import (assign_buckets, bucket_entry_slots,
                                           bucket_positions, bucket_options,
                                           buckets_worth_compiling,
                                           bucketed_batches, choose_buckets,
                                           on_ladder, padded_graph_cost,
                                           padding_waste, size_ladder,
                                           sparse_by_cost, waste_table)
from diffpool_jax.datasets.dataset import GraphDataset
from diffpool_jax.datasets.download import default_cache_dir, download_tu
from diffpool_jax.datasets.features import (FEATURE_KINDS, code_vocabulary,
                                            node_features)
from diffpool_jax.datasets.loader import batches
from diffpool_jax.datasets.ogb import load_ogb
from diffpool_jax.datasets.readers import (READERS, Reader, find_format,
                                           read_dataset, register_reader)
from diffpool_jax.datasets.splits import (Fold, load_split_file,
                                          stratified_folds)
from diffpool_jax.datasets.synthetic import PATTERNS, synthetic_hierarchical
from diffpool_jax.datasets.tu import load_tu

__all__ = [
    "assign_buckets", "bucket_entry_slots", "bucket_options",
    "buckets_worth_compiling",
    "bucket_positions", "bucketed_batches", "choose_buckets", "on_ladder",
    "padded_graph_cost", "padding_waste", "size_ladder",
    "sparse_by_cost", "waste_table",
    "GraphDataset", "RowBlocks", "stacked", "default_cache_dir",
    "download_tu", "FEATURE_KINDS",
    "node_features", "code_vocabulary", "batches", "Fold",
    "load_split_file", "stratified_folds",
    "PATTERNS", "synthetic_hierarchical", "load_tu", "load_ogb", "READERS",
    "Reader", "find_format", "read_dataset", "register_reader",
]
