"""The library's errors as the commands report them: each field the error
names (diffpool_jax.errors.InputError) spelled as the command's flag."""

from __future__ import annotations

from diffpool_jax.errors import InputError

# Library names whose flag is not "--" + the name with dashes.
FLAGS = {"folder": "--compile-cache"}


def flag(name: str) -> str:
  """The command-line flag that sets the library's field `name`."""
  return FLAGS.get(name, "--" + name.replace("_", "-"))


def command_message(error: Exception) -> str:
  """`error`'s message with the fields it names written as flags."""
  if isinstance(error, InputError):
    return error.spelled(flag)
  return str(error)
