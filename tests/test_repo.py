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


def _imported_modules(path: pathlib.Path):
  import ast

  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
    elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
      yield from (arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
  for match in re.finditer(r'"(tfds_builders[\w.]*)"', path.read_text()):  # module names held in tables
    yield match.group(1)


def test_acne_jax_data_never_imports_the_builders():
  """The builders import acne_jax.data (formats, record schema); the reverse would be a circle."""
  offenders = [f"{path.relative_to(ROOT)}: {module}" for path in sorted((ROOT / "acne_jax" / "data").glob("*.py"))
               for module in _imported_modules(path) if module.split(".")[0] == "tfds_builders"]
  assert offenders == []
  # The check sees the kinds of import the registry uses (it would flag acne_jax/datasets.py).
  assert any(m.startswith("tfds_builders") for m in _imported_modules(ROOT / "acne_jax" / "datasets.py"))


def test_every_builder_labels_with_the_class_names_of_records():
  """Class names live once, in acne_jax/data/records.py; every builder's ClassLabel uses them."""
  import tensorflow_datasets as tfds  # noqa: F401

  from acne_jax.data import records
  from tfds_builders.acne04 import Acne04
  from tfds_builders.acne_scu import AcneScu
  from tfds_builders.deep_lesion import DeepLesion
  from tfds_builders.synthetic_acne import SyntheticAcne

  for name, builder_class in (("acne_scu", AcneScu), ("acne04", Acne04), ("deep_lesion", DeepLesion),
                              ("synthetic_acne", SyntheticAcne)):
    builder = builder_class(data_dir="/nonexistent-acne-jax-test")
    assert builder.info.features["objects"]["label"].names == list(records.CLASS_NAMES[name]), name
