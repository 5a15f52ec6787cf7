"""Non-finite training is detected, marked, excluded from selection and
reported by the command's exit status; results stay valid JSON."""

import json

import jax
import jax.numpy as jnp
import numpy as np

from diffpool_jax.engine.trainer import members_finite
from diffpool_jax.protocols import fair_protocol, nan_best, paper_protocol
from diffpool_jax.run import Run, RunConfig
from tests.test_scale import TINY_RUN
from tests.test_train_command import arguments, write_config


def strict_json(path):
  def refuse(constant):
    raise AssertionError(f"{path} holds {constant}")
  return json.loads(path.read_text(), parse_constant=refuse)


def test_members_finite_flags_each_member_with_a_non_finite_parameter():
  params = {"w": np.ones((4, 3, 2), np.float32),
            "b": np.zeros((4, 5), np.float32), "scale": np.ones(4, np.float32)}
  params["w"][1, 2, 0] = np.nan
  params["b"][2, 4] = -np.inf
  params["scale"][3] = np.inf
  check = lambda tree: members_finite(jax.tree.map(jnp.asarray, tree))
  assert check(params).tolist() == [True, False, False, False]
  params = {k: np.nan_to_num(v, nan=1.0, posinf=3e38, neginf=-3e38)
            for k, v in params.items()}
  assert check(params).tolist() == [True] * 4


def test_nan_best_never_picks_a_diverged_value():
  assert nan_best([np.nan, 0.2, 0.1]) == 1
  assert nan_best([[0.5, np.nan], [0.9, 0.1]]) == 2
  assert nan_best([np.nan, np.nan]) == 0


def test_protocols_skip_diverged_epochs_and_points():
  # [E=3, F=2, S=1, P=1]: fold 1 diverged at epoch 2, where fold 0 peaks.
  test = np.array([[0.5, 0.6], [0.7, 0.6], [0.9, np.nan]])[..., None, None]
  paper = paper_protocol(test)
  assert paper["epoch"] == 1 and np.isclose(paper["score"], 0.65)
  # Two points; point 1 diverged at once in fold 0: point 0 is selected.
  val = np.full((2, 2, 1, 2), 0.5)
  val[:, 0, 0, 1] = np.nan
  val[:, 1, 0, 1] = 0.9
  loss = np.zeros_like(val)
  result = fair_protocol(val, loss, val, patience=5)
  assert result["selected_points"] == [0, 1]


def test_a_diverging_run_is_marked_and_still_writes_valid_json(tmp_path):
  out = tmp_path / "run"
  run = Run(RunConfig(**{**TINY_RUN, "lr": (1e30,)}), out)
  results = run.fit(progress=False)
  assert results["diverged_members"] == {0: 0, 1: 0}
  assert results["epochs_run"] == 1          # nothing left to train
  rows = [json.loads(line) for line in
          (out / "metrics.jsonl").read_text().splitlines()]
  assert all(row["diverged"] for row in rows)
  assert all("train_loss" not in row for row in rows)
  saved = strict_json(out / "results.json")
  assert saved["score"] is None and saved["diverged_members"] == {
      "0": 0, "1": 0}


def test_the_command_exits_non_zero_when_members_diverge(tmp_path,
                                                        train_here):
  done = train_here(*arguments(write_config(tmp_path), tmp_path / "run",
                               "--folds", "2", "--epochs", "2", "--lr",
                               "1e30", "--no-plots"))
  assert done.returncode == 3, done.stderr
  assert "2 member(s) diverged" in done.stderr
  assert "Traceback" not in done.stderr
