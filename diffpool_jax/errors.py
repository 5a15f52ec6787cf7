"""Errors that name the input at fault by its field.

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
