"""Runs: the configuration (config), what trains (members), the run folder
(store), the epoch loop (loop) and what a trained model learned (assignments).

The engine below them is diffpool_jax.engine.
"""

from diffpool_jax.run.config import (SCALAR_AXES, RunConfig, check_axis,
                                     is_number, weight_pairs)
from diffpool_jax.run.loop import Run, history_keys
from diffpool_jax.run.members import Members, load_dataset, make_folds
from diffpool_jax.run.store import (RESUMABLE_FIELDS, RUN_OUTPUTS,
                                    FolderLock, RunFolderError, WriteFailure,
                                    claim_folder, write_json_atomic,
                                    write_lines_atomic)

__all__ = ["SCALAR_AXES", "RunConfig", "check_axis", "is_number",
           "weight_pairs", "Run", "history_keys", "Members", "load_dataset",
           "make_folds", "RESUMABLE_FIELDS", "RUN_OUTPUTS", "FolderLock",
           "RunFolderError", "WriteFailure", "claim_folder", "write_json_atomic", "write_lines_atomic"]
