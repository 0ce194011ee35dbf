"""Repository invariants CI depends on."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
  ci = (ROOT / ".ci" / "run").read_text().splitlines()
  marker = ci.index("# --- README test command (keep identical to README.md) ---")
  command = ci[marker + 1].strip()
  readme_blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
  readme_commands = [line.strip() for block in readme_blocks for line in block.splitlines()]
  assert command == "python -m pytest -q -n auto --dist loadfile tests"
  assert command in readme_commands
