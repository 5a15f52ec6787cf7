"""The commands' options generated from the configuration dataclasses
(diffpool_jax.cli.options), the earlier spellings, and --import."""

import dataclasses
import json
import sys
import textwrap

import pytest

from diffpool_jax.cli import options, sweep, train
from diffpool_jax.models.classifier import DiffPoolConfig
from diffpool_jax.models.pooling import POOLING
from diffpool_jax.run import RunConfig
from tests.test_train_command import read_metrics, write_config


def help_text(capsys, command, *argv) -> str:
  """What `command --help` prints (it exits 0)."""
  with pytest.raises(SystemExit) as stopped:
    command.main([*argv, "--help"])
  assert stopped.value.code in (0, None)
  return " ".join(capsys.readouterr().out.split())


def test_help_lists_every_configuration_field_with_its_default(
    capsys, monkeypatch):
  monkeypatch.setenv("COLUMNS", "200")
  said = help_text(capsys, train)
  for field in dataclasses.fields(RunConfig):
    if field.name not in options.RUN_SKIPPED:
      assert "--" + field.name.replace("_", "-") in said, field.name
  for field in dataclasses.fields(DiffPoolConfig):
    if field.name not in options.MODEL_SKIPPED:
      assert "--model." + field.name.replace("_", "-") in said, field.name
  # The main job's config and preset set the defaults shown.
  shipped = json.loads(train.shipped_config("synthetic").read_text())
  assert f"training epochs of every member. (default: {shipped['epochs']})" \
      in said
  assert "(default: paper)" in said                 # its protocol
  for flag in ("--out", "--resume", "--import", "--aux-weight", "--grid",
               "--coordinator"):
    assert flag in said, flag
  mincut = help_text(capsys, train, "--preset", "mincut")
  assert "the pooling operator" in mincut
  assert "(default: mincut)" in mincut               # the preset's value
  swept = help_text(capsys, sweep)
  assert "--grid GRID" in swept and "--model.hidden-dim" in swept


@dataclasses.dataclass
class NotedRunConfig(RunConfig):
  """RunConfig with one more field.

  Attributes:
    note: a label stored with the run.
  """
  note: str = "unset"


def test_a_field_added_to_the_configuration_is_an_option_that_trains(
    tmp_path, capsys, monkeypatch, train_here):
  monkeypatch.setenv("COLUMNS", "200")
  monkeypatch.setattr(train, "RunConfig", NotedRunConfig)
  said = help_text(capsys, train)
  assert "--note STR a label stored with the run. (default: unset)" in said
  out = tmp_path / "run"
  done = train_here("--config", write_config(tmp_path), "--out", out,
                    "--folds", "2", "--epochs", "2", "--quiet", "--no-plots",
                    "--note", "hello")
  assert done.returncode == 0, done.stderr
  assert json.loads((out / "config.json").read_text())["run"]["note"] == \
      "hello"


def parsed(*argv) -> RunConfig:
  return train.build_config(train.parse_args(list(argv)))[0]


def test_options_and_earlier_spellings_set_the_same_fields():
  config = parsed("--dataset", "MUTAG", "--pooling", "mincut",
                  "--max-clusters", "None", "--exact-buckets",
                  "--hidden-dim", "16", "--lr", "0.01", "0.02",
                  "--cluster-reference", "40")
  model = config.model_config()
  assert (model.pooling, model.max_clusters) == ("mincut", None)
  assert (model.hidden_dim, model.embed_dim) == (16, 16)
  assert config.bucket_ladder is False and config.lr == (0.01, 0.02)
  assert config.cluster_reference == 40
  same = parsed("--dataset", "MUTAG", "--model.pooling", "mincut",
                "--model.max-clusters", "None", "--no-bucket-ladder",
                "--model.hidden-dim", "16", "--model.embed-dim", "16",
                "--lr", "0.01", "0.02", "--cluster-reference", "40")
  assert same == config
  # A model option equal to the preset's is no override; the file's stay.
  assert parsed("--dataset", "MUTAG", "--model.conv", "sage").model == {}


def test_a_config_file_sets_defaults_and_options_override_it(tmp_path):
  path = write_config(tmp_path, epochs=7)
  config = parsed("--config", str(path))
  assert config.epochs == 7 and config.model_config().hidden_dim == 8
  config = parsed("--config", str(path), "--epochs", "3",
                  "--model.hidden-dim", "12")
  assert config.epochs == 3 and config.model_config().hidden_dim == 12
  assert config.model_config().embed_dim == 8


@pytest.mark.parametrize("argv, message", [
    (("--epoch", "3"), "--epochs"),                 # the nearest option
    (("--model.hiden-dim", "3"), "--model.hidden-dim"),
    (("--epochs", "x"), "--epochs"),
])
def test_a_misspelled_option_or_bad_value_names_the_valid_one(
    argv, message, capsys, monkeypatch):
  monkeypatch.setenv("COLUMNS", "200")
  with pytest.raises(SystemExit) as stopped:
    train.parse_args(list(argv))
  assert stopped.value.code == 2
  said = capsys.readouterr()
  assert message in said.out + said.err


def test_misspelled_preset_and_config_field_name_the_valid_ones(tmp_path):
  with pytest.raises(SystemExit, match=r"unknown preset 'papr'; expected "
                     r"one of \('paper'"):
    parsed("--preset", "papr")
  path = tmp_path / "bad.json"
  path.write_text(json.dumps({"epoch": 3}))
  with pytest.raises(SystemExit, match=r"unknown fields \['epoch'\]; "
                     r"RunConfig has \['dataset'.*'epochs'"):
    parsed("--config", str(path))


OPERATOR_MODULE = textwrap.dedent('''
    """A user's pooling operator: MinCutPool on halved assignment logits."""
    from diffpool_jax import dense_mincut_pool
    from diffpool_jax.models.pooling import PoolingOperator, register_pooling


    def halved_mincut_pool(x, adj, s_logits, mask=None, cluster_mask=None):
      return dense_mincut_pool(x, adj, s_logits / 2, mask,
                               cluster_mask=cluster_mask)


    register_pooling("halved", PoolingOperator(halved_mincut_pool,
                                               ("mincut", "ortho")))
''')


@pytest.mark.parametrize("how", ["file", "module"])
def test_an_operator_registered_in_a_users_module_trains_through_import(
    how, tmp_path, monkeypatch, train_here):
  folder = tmp_path / "mine"
  folder.mkdir()
  (folder / "my_operators.py").write_text(OPERATOR_MODULE)
  if how == "module":
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
  target = str(folder / "my_operators.py") if how == "file" else \
      "my_operators"
  out = tmp_path / "run"
  try:
    done = train_here("--import", target, "--config", write_config(tmp_path),
                      "--out", out, "--folds", "2", "--epochs", "2",
                      "--quiet", "--no-plots", "--pooling", "halved",
                      "--aux-weight", "ortho=0.5")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["model"][
        "pooling"] == "halved"
    assert all({"train_mincut", "train_ortho"} <= set(row)
               for row in read_metrics(out))
  finally:
    POOLING.pop("halved", None)
    sys.modules.pop("my_operators", None)


def test_an_import_that_fails_names_the_module():
  with pytest.raises(SystemExit, match="--import no_such_module_here: "
                     "ModuleNotFoundError"):
    train.parse_args(["--import", "no_such_module_here"])
  with pytest.raises(SystemExit, match="--import missing.py: "
                     "FileNotFoundError"):
    train.parse_args(["--import", "missing.py"])


def test_sweep_options_override_only_what_they_change(tmp_path):
  grid = tmp_path / "grid.json"
  grid.write_text(json.dumps({"run": {"epochs": 4, "folds": 2},
                              "scalar": {"lr": [0.01, 0.001]}}))
  args = sweep.parse_args(["--grid", str(grid), "--epochs", "3",
                           "--model.hidden-dim", "16"])
  assert args.overrides == {"epochs": 3, "model": {"hidden_dim": 16}}
  assert sweep.parse_args(["--grid", str(grid)]).overrides == {}
