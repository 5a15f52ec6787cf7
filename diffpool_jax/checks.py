"""Shape and mask checks at public boundaries, with messages that name the
argument."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np


def check_rank(value, rank: int, name: str, layout: str, where: str) -> None:
  """Raises ValueError unless `value` has `rank` dimensions.

  Args:
    value: the array to check.
    rank: the expected number of dimensions.
    name: the argument's name, used in the message.
    layout: the expected layout, e.g. "[B,N,F]", used in the message.
    where: the public function or module doing the check.
  """
  chex.assert_rank(
      value, rank,
      custom_message=f"{where}: argument '{name}' must have layout {layout}",
      exception_type=ValueError)


def check_dim(value, axis: int, size: int, name: str, what: str,
              where: str) -> None:
  """Raises ValueError unless `value.shape[axis] == size`."""
  if value.shape[axis] != size:
    raise ValueError(
        f"{where}: argument '{name}' has shape {tuple(value.shape)}; "
        f"axis {axis} must be {size} ({what})")


def checked_mask(value, name: str, where: str):
  """`value` as a bool mask: a bool array as it is; an integer or float
  array only when its values are known here (not traced) and all exactly
  0 or 1. Raises ValueError naming the argument otherwise (a 0.5 is not
  a mask; under jit pass a bool array, e.g. `mask > 0`)."""
  if value.dtype == bool:
    return jnp.asarray(value)
  if isinstance(value, jax.core.Tracer):
    raise ValueError(f"{where}: argument '{name}' has dtype {value.dtype}; "
                     "a mask must be bool (inside jit its values cannot "
                     "be checked: pass a bool array)")
  values = np.asarray(value)
  bad = ~((values == 0) | (values == 1))
  if bad.any():
    position = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{where}: argument '{name}' has the value "
                     f"{values[position].item()!r} at {position}; a mask must be "
                     "bool or exactly 0/1")
  return jnp.asarray(values.astype(bool))
