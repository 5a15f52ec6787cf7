"""The names of diffpool_jax.run (and the engine's Programs) under their
earlier module, so that `from diffpool_jax.experiment import Run, RunConfig`
keeps working. New code imports diffpool_jax.run."""

from diffpool_jax.engine.session import Programs, concatenate_members
from diffpool_jax.run import *  # noqa: F401,F403
from diffpool_jax.run import __all__ as _run_names
from diffpool_jax.run.store import finite_or_none

__all__ = [*_run_names, "Programs", "concatenate_members", "finite_or_none"]
