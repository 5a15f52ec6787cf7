"""The commands' configuration options, generated from the configuration
dataclasses: every field of `RunConfig` becomes `--FIELD` and every field
of the model's `DiffPoolConfig` `--model.FIELD`, with its type, its help
(the class docstring's entry) and its default (the config file's, else the
preset's or the dataclass's), by tyro. A field added to either class is an
option with no edit here.

Why tyro: it builds the parser from the types and docstrings of plain
dataclasses (flax's `config_flags` would need an ml_collections
ConfigDict beside them; simple-parsing fails on our `Dict[str, object]`
fields), prints every default, and answers a misspelled option with the
nearest valid ones.

Mapping fields (RunConfig.model, grid, synthetic; the model's aux_weights
and pool_options) have command syntaxes of their own (`--aux-weight
NAME=WEIGHT`, `--grid AXIS=V1,V2`, ...) kept by the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import sys
import typing
from pathlib import Path
from typing import Annotated, Dict, Optional, Sequence, Union

import docstring_parser
import tyro

from diffpool_jax.models.presets import DiffPoolConfig, preset
from diffpool_jax.run import RunConfig

# Fields given through a command syntax of their own, not generated.
RUN_SKIPPED = ("model", "grid", "synthetic")
MODEL_SKIPPED = ("aux_weights", "pool_options")
# A type for the command line where the field's own is too wide.
RUN_TYPES = {"cluster_reference": Optional[Union[int, str]]}
# Spellings of earlier releases that stay valid.
MODEL_ALIASES = {"pooling": ("--pooling",), "max_clusters": ("--max-clusters",)}


def field_help(cls) -> Dict[str, str]:
  """{field: help} from the "Attributes:" entries of `cls`'s docstring (an
  entry "a, b: text" documents both a and b)."""
  helps = {}
  for entry in docstring_parser.parse(cls.__doc__ or "").params:
    for name in entry.arg_name.split(","):
      helps[name.strip()] = " ".join((entry.description or "").split())
  return helps


def options_class(cls, defaults: Dict[str, object], skipped: Sequence[str],
                  types: Dict[str, object], aliases: Dict[str, tuple]):
  """A dataclass with the fields of `cls` but `skipped` (their types, or
  `types`' for the command line; their docstring help) defaulting to
  `defaults`; no checks of its own (the configuration checks the values
  once they are all known)."""
  hints = typing.get_type_hints(cls)
  helps = field_help(cls)
  fields = []
  for field in dataclasses.fields(cls):
    if field.name in skipped:
      continue
    value = defaults[field.name]
    marker = tyro.conf.arg(help=helps.get(field.name, ""),
                           aliases=aliases.get(field.name))
    kind = types.get(field.name, hints[field.name])
    fields.append((field.name, Annotated[kind, marker],
                   dataclasses.field(default=value)))
  return dataclasses.make_dataclass(f"{cls.__name__}Options", fields)


def run_defaults(values: Dict[str, object], run_class=RunConfig
                 ) -> Dict[str, object]:
  """`run_class`'s defaults updated with `values` (a config file's); JSON
  lists become tuples."""
  defaults = {f.name: (f.default if f.default is not dataclasses.MISSING
                       else None) for f in dataclasses.fields(run_class)}
  defaults.update(values)
  return {k: tuple(v) if isinstance(v, list) else v
          for k, v in defaults.items()}


def model_defaults(preset_name: str, overrides: Dict[str, object]
                   ) -> Dict[str, object]:
  """The fields of preset `preset_name`'s DiffPoolConfig with the config
  file's model `overrides` (those the generated options cover)."""
  try:
    base = dataclasses.asdict(preset(preset_name))
  except ValueError:
    base = dataclasses.asdict(DiffPoolConfig())  # the check names it later
  for name, value in overrides.items():
    if name in base:
      base[name] = tuple(value) if isinstance(value, list) else value
  return base


def parse_config_options(argv: Sequence[str], values: Dict[str, object],
                         prog: str, description: str, run_class=RunConfig
                         ) -> Dict[str, object]:
  """The values of `run_class` (RunConfig or a subclass): `values` (a
  config file's, command shorthands already in) with the options of
  `argv` applied. The model options
  become `values["model"]` overrides of the preset (the fields that
  differ from it). A misspelled option, or a value of the wrong type,
  ends the command with tyro's message (exit 2)."""
  preset_name = scan_option(argv, "--preset") or values.get("preset",
                                                            "paper")
  model_values = dict(values.get("model", {}))
  RunOptions = options_class(run_class, run_defaults(values, run_class),
                             RUN_SKIPPED, RUN_TYPES, {})
  ModelOptions = options_class(DiffPoolConfig,
                               model_defaults(preset_name, model_values),
                               MODEL_SKIPPED, {}, MODEL_ALIASES)
  Options = dataclasses.make_dataclass("Options", [
      ("run", tyro.conf.OmitArgPrefixes[RunOptions],
       dataclasses.field(default_factory=RunOptions)),
      ("model", ModelOptions, dataclasses.field(default_factory=ModelOptions)),
  ])
  parsed = tyro.cli(Options, args=list(argv), prog=prog,
                    description=description)
  result = {**values, **dataclasses.asdict(parsed.run)}
  chosen = dataclasses.asdict(parsed.model)
  preset_fields = model_defaults(preset_name, {})
  model_values.update({name: value for name, value in chosen.items()
                       if value != preset_fields[name]
                       or name in model_values})
  result["model"] = model_values
  return result


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
  """A command's parser for its own flags (every default shown; no
  abbreviations, so that the generated options are never mistaken for
  one) with `--import`; the configuration's options are parsed after it
  (`parse_config_options`), --help included."""
  parser = argparse.ArgumentParser(
      prog=prog, add_help=False, allow_abbrev=False,
      formatter_class=argparse.ArgumentDefaultsHelpFormatter,
      description=description + " The command's flags come first; the "
      "configuration's options (every RunConfig field as --FIELD, every "
      "DiffPoolConfig field as --model.FIELD) follow.")
  parser.add_argument("--import", dest="imports", action="append",
                      metavar="MODULE", default=[],
                      help="import this module (or .py file) first: the "
                      "pooling operators, presets, protocols and readers it "
                      "registers can then be named; repeatable")
  return parser


def scan_option(argv: Sequence[str], flag: str) -> Optional[str]:
  """The last value given to `flag` in `argv` (`--flag V` or `--flag=V`),
  or None."""
  parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  parser.add_argument(flag)
  known, _ = parser.parse_known_args(list(argv))
  return getattr(known, flag.lstrip("-").replace("-", "_"))


def import_extensions(names: Sequence[str]) -> None:
  """Imports each module (a name on sys.path or the current folder, or a
  .py file) so that the operators, protocols, presets and readers it
  registers can be named by the options. SystemExit naming --import when
  one raises or exits."""
  if names and os.getcwd() not in sys.path:   # only when asked to import
    sys.path.insert(0, os.getcwd())
  for name in names or ():
    try:
      if name.endswith(".py"):
        path = Path(name)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or not path.is_file():
          raise FileNotFoundError(f"no file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
      else:
        importlib.import_module(name)
    except SystemExit as error:     # sys.exit() or exit() in the module
      raise SystemExit(f"--import {name}: the module exited while being "
                       f"imported (SystemExit({error.code!r})); nothing was "
                       "trained: a module given to --import must only "
                       "register things") from None
    except KeyboardInterrupt:
      raise
    except BaseException as error:  # the user's module: any failure
      raise SystemExit(f"--import {name}: {type(error).__name__}: "
                       f"{error}") from None
