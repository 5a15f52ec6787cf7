"""The engine: the host pipeline (NumPy: buckets, schedules) and the device
programs (JAX: members vmapped, epochs scanned, compiled) behind one Session.

session (a run's model, device data, states and programs), pipeline
(host), trainer (device steps and epochs), compile_effort and
compile_cache (compilation), memory (fitting members), hosts (many
processes), hyper (the members' scalar hyper-parameters).
"""

from diffpool_jax.engine.session import (MemberGraphs, Programs, Session,
                                         concatenate_members, epoch_runner)

__all__ = ["MemberGraphs", "Programs", "Session", "concatenate_members",
           "epoch_runner"]
