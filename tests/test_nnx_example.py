"""The NNX training example of docs/nnx.md runs as written and learns."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_documented_nnx_example_trains(tmp_path):
  text = (REPO / "docs" / "nnx.md").read_text()
  code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
  assert len(code.splitlines()) < 100
  code = code.replace("EPOCHS, BATCH = 15, 20", "EPOCHS, BATCH = 4, 20")
  script = tmp_path / "example.py"
  script.write_text(code)
  done = subprocess.run([sys.executable, str(script)], cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", done.stdout)]
  assert len(losses) == 4 and losses[-1] < losses[0]
