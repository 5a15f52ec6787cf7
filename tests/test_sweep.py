"""Sweeps: scalar points side by side equal separate runs, shape points run
one after another, per-point scores, the sweep folder and its errors."""

import json

import jax
import numpy as np
import pytest

from diffpool_jax.cli import CONFIG_DIR, sweep
from diffpool_jax.engine.hyper import Hyper
from diffpool_jax.models.layers import GNNStack
from diffpool_jax.protocols import PROTOCOLS
from diffpool_jax.run import SCALAR_AXES, Run, RunConfig, RunFolderError
from tests.helpers import random_batch
from tests.test_scale import TINY_RUN

# lr x dropout x link weight: 8 scalar points in one program; two widths.
GRID = {"run": {**TINY_RUN, "protocol": "fair", "epochs": 3, "patience": 1,
                "checkpoint_every": 0,
                "synthetic": {**TINY_RUN["synthetic"], "num_graphs": 80}},
        "scalar": {"lr": [0.01, 0.003], "dropout": [0.0, 0.3],
                   "aux.link": [1.0, 0.25]},
        "shape": {"model.hidden_dim": [8, 12]}}


def write_grid(tmp_path, grid=GRID, name="grid.json"):
  path = tmp_path / name
  path.write_text(json.dumps(grid))
  return path


def metrics(folder):
  return [json.loads(line)
          for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  """The GRID sweep, run once for the tests below."""
  tmp_path = tmp_path_factory.mktemp("sweep")
  grid = sweep.load_grid(write_grid(tmp_path), {})
  out = tmp_path / "out"
  return grid, out, sweep.run_sweep(grid, out, progress=False)


def test_points_are_every_combination_with_lr_slowest():
  config = RunConfig(lr=[0.1, 0.2], grid={"weight_decay": [0, 1e-3],
                                          "clip": [1.0]})
  assert config.points() == [
      {"lr": 0.1, "clip": 1.0, "weight_decay": 0.0},
      {"lr": 0.1, "clip": 1.0, "weight_decay": 1e-3},
      {"lr": 0.2, "clip": 1.0, "weight_decay": 0.0},
      {"lr": 0.2, "clip": 1.0, "weight_decay": 1e-3}]
  hyper = config.member_hyper(config.points()[1])
  assert hyper == Hyper(lr=0.1, clip=1.0, weight_decay=1e-3, dropout=0.0,
                        aux={"link": 1.0, "entropy": 1.0})
  assert hyper.axes() == {"lr": 0.1, "clip": 1.0, "weight_decay": 1e-3,
                          "dropout": 0.0, "aux.link": 1.0,
                          "aux.entropy": 1.0}
  assert Hyper.from_axes(hyper.axes()) == hyper


def test_the_grid_axes_are_the_fields_of_the_hyper_parameter_tree():
  fields = Hyper(0, 0, 0, 0, {"NAME": 0}).axes()
  assert set(SCALAR_AXES) == set(fields) - {"lr"}


@pytest.mark.parametrize("grid, message", [
    ({"lr": [0.1]}, "'lr' is not a grid axis"),
    ({"momentum": [0.9]}, "unknown axis 'momentum'"),
    ({"dropout": [0.5, 1.0]}, "dropout=1.0; every value must be finite and "
     "in [0, 1)"),
    ({"clip": []}, "clip=[]; expected a non-empty list"),
    ({"weight_decay": ["a"]}, "expected numbers"),
    ({"clip": [1, 1]}, "repeats a value"),
    ({"aux.ortho": [1.0]}, "'aux.ortho' names no auxiliary loss of this "
     "model; its losses are ['link', 'entropy']"),
])
def test_bad_grid_axes_are_named(grid, message):
  with pytest.raises(ValueError) as error:
    RunConfig(grid=grid)
  assert message in str(error.value)


def test_scalar_points_side_by_side_equal_separate_runs(swept, tmp_path):
  grid, out, _ = swept
  side_by_side = metrics(out / "shape_01")
  points = grid.run_config({"model.hidden_dim": 12}).points()
  for p in (0, 5):       # (lr 0.01, no dropout), (lr 0.003, dropout 0.3)
    point = points[p]
    config = RunConfig(**{
        **grid.run, "lr": [point["lr"]],
        "model": {**grid.run["model"], "hidden_dim": 12,
                  "dropout": point["dropout"],
                  "aux_weights": {"link": point["aux.link"]}}})
    Run(config, tmp_path / f"alone{p}").fit(progress=False)
    alone = metrics(tmp_path / f"alone{p}")
    together = [r for r in side_by_side if r["point"] == p]
    assert len(alone) == len(together) == 3 * 2
    for a, b in zip(alone, together):
      assert (a["epoch"], a["fold"]) == (b["epoch"], b["fold"])
      assert b["dropout"] == point["dropout"] and b["lr"] == point["lr"]
      for key in ("train_loss", "train_link", "val_loss", "test_loss"):
        np.testing.assert_allclose(a[key], b[key], rtol=2e-4, atol=2e-5)


def test_shape_points_run_one_after_another_and_rows_cover_the_grid(swept):
  grid, out, result = swept
  assert len(result["rows"]) == 2 * 8
  assert [r["model.hidden_dim"] for r in result["rows"]] == [8] * 8 + [12] * 8
  for i, width in enumerate((8, 12)):
    saved = json.loads((out / f"shape_{i:02d}" / "config.json").read_text())
    assert saved["model"]["hidden_dim"] == width
  lines = (out / "sweep.csv").read_text().splitlines()
  assert len(lines) == 1 + 16 and "val_mean" in lines[0]
  assert (out / "sweep.png").stat().st_size > 0
  # Every fold selects one point among all 16, on validation only.
  chosen = result["selection"]["selected_points"]
  assert len(chosen) == 2 and all(0 <= c < 16 for c in chosen)
  assert sum(r["selected_folds"] for r in result["rows"]) == 2


def test_point_scores_take_each_run_at_its_early_stopped_epoch():
  # [E=3, F=2, S=1, P=2]; point 0 peaks on validation at epoch 1.
  val = np.array([[0.5, 0.6], [0.9, 0.6], [0.7, 0.8]])      # [E, F] point 0
  tables = {"val_score": np.zeros((3, 2, 1, 2)),
            "val_loss": np.ones((3, 2, 1, 2)),
            "test_score": np.zeros((3, 2, 1, 2))}
  tables["val_score"][:, :, 0, 0] = val
  tables["test_score"][:, :, 0, 0] = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
  row = PROTOCOLS["fair"].point_scores(tables, patience=5)[0]
  # fold 0 stops at epoch 1 (0.9; test 0.3), fold 1 at epoch 2 (0.8; 0.6).
  assert row["val_mean"] == pytest.approx(0.85)
  assert row["val_std"] == pytest.approx(0.05)
  assert row["test_mean"] == pytest.approx(0.45)
  assert row["epochs"] == pytest.approx(2.5)
  paper = PROTOCOLS["paper"].point_scores(tables, patience=5)[0]
  assert paper["val_mean"] is None and paper["test_mean"] == pytest.approx(0.55)


def test_resume_reads_finished_programs_and_refuses_another_grid(swept,
                                                                 tmp_path):
  grid, out, result = swept
  before = (out / "shape_00" / "metrics.jsonl").stat().st_mtime_ns
  again = sweep.run_sweep(grid, out, resume=True, progress=False)
  assert (out / "shape_00" / "metrics.jsonl").stat().st_mtime_ns == before
  assert again["rows"] == result["rows"]
  with pytest.raises(RunFolderError, match="already holds a sweep"):
    sweep.run_sweep(grid, out, progress=False)
  other = grid._replace(scalar={**grid.scalar, "lr": [0.1]})
  with pytest.raises(RunFolderError, match="holds another grid"):
    sweep.run_sweep(other, out, resume=True, progress=False)


def test_resume_refuses_a_finished_program_whose_data_changed(swept,
                                                              tmp_path):
  import shutil
  grid, out, _ = swept
  copy = tmp_path / "copy"
  shutil.copytree(out, copy)
  config_file = copy / "shape_00" / "config.json"
  saved = json.loads(config_file.read_text())
  saved["inputs"]["data"] = "0" * 32      # as if the data had changed
  config_file.write_text(json.dumps(saved))
  with pytest.raises(RunFolderError, match="data set .* changed since"):
    sweep.run_sweep(grid, copy, resume=True, progress=False)


@pytest.mark.parametrize("text, message", [
    ('{"run": {}, \n "scalar": {"lr": [0.1,]}}', "line 2: "),
    ('{"runs": {}}', "unknown parts ['runs']"),
    ('{"shape": {"epochs": [1, 2]}}', "shape.epochs is not a shape field"),
    ('{"shape": {"model.hidden_dim": 8}}', "shape.model.hidden_dim must be a "
     "non-empty list"),
    ('{"run": {"lr": [0.1]}, "scalar": {"lr": [0.2]}}', "run.lr is also "
     "swept"),
    ('{"run": {"epoch": 3}}', "run: unknown fields ['epoch']"),
    ('{"shape": {"model.hidden_dim": [8, 0]}}', "model.hidden_dim=0: "
     "DiffPoolConfig.hidden_dim=0"),
    ('{"run": {"protocol": "paper"}, "shape": {"model.hidden_dim": [8, 12]}}',
     "protocol 'paper' with 2 grid points would choose the point on the "
     "test folds"),
])
def test_bad_grid_files_name_the_file_and_field(tmp_path, text, message):
  path = tmp_path / "bad.json"
  path.write_text(text)
  with pytest.raises(ValueError) as error:
    sweep.load_grid(path, {})
  assert str(path) in str(error.value) and message in str(error.value)


def test_a_bad_split_file_stops_the_sweep_before_anything_is_written(
    tmp_path):
  grid = sweep.load_grid(write_grid(tmp_path), {})
  grid = grid._replace(run={**grid.run, "splits": str(tmp_path / "no.json")})
  with pytest.raises((OSError, ValueError), match="no.json"):
    sweep.run_sweep(grid, tmp_path / "out", progress=False)
  assert not (tmp_path / "out").exists()


def test_shipped_grids_parse():
  paths = sorted(CONFIG_DIR.glob("sweep_*.json"))
  assert len(paths) >= 4
  for path in paths:
    grid = sweep.load_grid(path, {})
    assert grid.shape_points() and grid.scalar


def test_a_traced_dropout_rate_per_member_equals_a_fixed_rate():
  batch = random_batch(np.random.default_rng(0), (5, 8), 8)
  stack = GNNStack(conv="sage", widths=(16, 16), dropout=0.5)
  variables = stack.init(jax.random.key(0), batch.x, batch.adj,
                         batch.node_mask, train=False)
  def apply(module, rate):
    return module.apply(variables, batch.x, batch.adj, batch.node_mask,
                        True, rate, mutable=["batch_stats"],
                        rngs={"dropout": jax.random.key(7)})[0]
  rates = jax.numpy.array([0.0, 0.5, 0.2])
  traced = jax.vmap(lambda r: apply(stack, r))(rates)
  without = apply(stack.clone(dropout=0.0), None)
  # vmap batches the matmuls: equal up to float32 rounding.
  np.testing.assert_allclose(traced[0], without, rtol=1e-5, atol=1e-6)
  for i, rate in ((1, 0.5), (2, 0.2)):
    np.testing.assert_allclose(traced[i], apply(stack.clone(dropout=rate),
                                                None), rtol=1e-5, atol=1e-6)
  assert not np.allclose(traced[1], without)
