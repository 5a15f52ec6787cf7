"""Shape checks at public boundaries, with messages that name the argument."""

from __future__ import annotations

import chex


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
