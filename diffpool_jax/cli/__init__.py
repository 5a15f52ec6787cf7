"""The installed commands (train, sweep, report): options generated from the
configuration dataclasses, errors spelled with their flags.

  diffpool-train   (python -m diffpool_jax.cli.train)   cross-validated training
  diffpool-sweep   (python -m diffpool_jax.cli.sweep)   hyper-parameter sweeps
  diffpool-report  (python -m diffpool_jax.cli.report)  run folders -> Markdown rows

In a checkout, `python -m experiments.train` (and .sweep, .report) run the
same commands. Their shipped configurations are package data in
diffpool_jax/configs/ (`shipped_config`).
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped_config(name: str) -> Path:
  """The shipped configuration file `name` (with or without .json)."""
  return CONFIG_DIR / (name if name.endswith(".json") else f"{name}.json")


def shipped_names() -> list:
  """The names of the shipped configuration files, without .json."""
  return sorted(path.stem for path in CONFIG_DIR.glob("*.json"))
