"""The NNX examples of docs/nnx.md run as written: the training script
learns, and the saved model restores to the same logits."""

import re
import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_documented_nnx_example_trains(tmp_path, capsys, monkeypatch):
  """Run as a script (`__main__`), in this process."""
  text = (REPO / "docs" / "nnx.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert len(blocks) == 2 and len(blocks[0].splitlines()) < 100
  code = "\n".join(blocks)            # the second continues the first
  code = code.replace("EPOCHS, BATCH = 15, 20", "EPOCHS, BATCH = 4, 20")
  script = tmp_path / "example.py"
  script.write_text(code)
  monkeypatch.chdir(REPO)
  runpy.run_path(str(script), run_name="__main__")
  printed = capsys.readouterr().out
  losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", printed)]
  assert len(losses) == 4 and losses[-1] < losses[0]
