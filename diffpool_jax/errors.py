"""Errors that name the input at fault by its field, and the shape and
mask checks at public boundaries whose messages name the argument.

The library names a setting by its field or argument (`out`, `resume`,
`folds`); the commands (diffpool_jax.cli) report the same error with their
flags (`--out`, `--resume`, `--folds`). A message marks each such name as
`{name}` and declares which names it marks; `spelled` writes them either
way.

  error = InputError("{folds}={n} exceeds the {splits} file's folds", "folds", "splits")
  str(error)                                  # "folds=12 exceeds the splits file's folds"
  error.spelled(lambda name: "--" + name)     # "--folds=12 exceeds the --splits file's folds"
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np


class InputError(ValueError):
  """Bad input, named by the fields in `fields` (marked `{name}` in
  `message`); a ValueError, so callers catching ValueError still do."""

  def __init__(self, message: str, *fields: str):
    self.message, self.fields = message, fields
    super().__init__(self.spelled(lambda name: name))

  def spelled(self, spell: Callable[[str], str]) -> str:
    """The message with each marked field name written as `spell(name)`."""
    text = self.message
    for name in self.fields:
      text = text.replace("{" + name + "}", spell(name))
    return text

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


def check_name(kind: str, name) -> None:
  """ValueError unless `name` (of a registered `kind`: "a preset", ...) is
  a non-empty string."""
  if not isinstance(name, str) or not name:
    raise ValueError(f"{kind}'s name must be a non-empty string, not "
                     f"{name!r}")
