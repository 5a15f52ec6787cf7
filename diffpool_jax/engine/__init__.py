"""The engine: a run's model, device data, member states and compiled
epoch programs (session), over the host pipeline (diffpool_jax.engine.pipeline)
and the device training code (diffpool_jax.engine.trainer)."""

from diffpool_jax.engine.session import (MemberGraphs, Programs, Session,
                                         concatenate_members, epoch_runner)

__all__ = ["MemberGraphs", "Programs", "Session", "concatenate_members",
           "epoch_runner"]
