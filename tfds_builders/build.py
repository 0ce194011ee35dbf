"""Build a data set into ArrayRecord files without TensorFlow.

    python -m tfds_builders.build --dataset=acne_scu --config=crops_1024 --manual_dir=~/AcneSCU --data_dir=~/tensorflow_datasets
    python -m tfds_builders.build --dataset=synthetic_acne                  # the embedded data set

(``tfds build`` needs TensorFlow; this does the same through the builders' Python API.) Prints
TFDS's progress bars while building, then a summary: records per split, boxes, and every file
or annotation that was skipped, clipped or dropped, with the reason, as the builder recorded it
in ``build_summary.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Dict, Optional

from acne_jax.paths import resolve

BUILDER_MODULES = {
    "synthetic_acne": "tfds_builders.synthetic_acne",
    "acne_scu": "tfds_builders.acne_scu",
    "acne04": "tfds_builders.acne04",
    "deep_lesion": "tfds_builders.deep_lesion",
}


def build(dataset: str, config: Optional[str], manual_dir: Optional[str], data_dir: str):
  """Builds (if needed) and returns the TFDS builder."""
  import tensorflow_datasets as tfds

  if dataset not in BUILDER_MODULES:
    raise ValueError(f"unknown --dataset {dataset!r}; choose one of {sorted(BUILDER_MODULES)}.")
  importlib.import_module(BUILDER_MODULES[dataset])
  name = f"{dataset}/{config}" if config else dataset
  builder = tfds.builder(name, data_dir=data_dir)
  download_config = None
  if manual_dir:
    manual_dir = resolve(manual_dir)
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  builder.download_and_prepare(file_format="array_record", download_config=download_config)
  return builder


def summary(builder) -> Dict:
  """Records and boxes per split, plus the builder's own ``build_summary.json`` when it wrote one."""
  out = {"data_dir": builder.data_dir, "splits": {}}
  for split in builder.info.splits:
    source = builder.as_data_source(split=split)
    boxes = 0
    for i in range(len(source)):
      boxes += len(source[i]["objects"]["label"])
    out["splits"][split] = {"records": len(source), "boxes": boxes}
  path = os.path.join(builder.data_dir, "build_summary.json")
  if os.path.exists(path):
    with open(path) as f:
      out["build"] = json.load(f)
  return out


def format_summary(s: Dict) -> str:
  lines = [f"built into {s['data_dir']}"]
  for split, counts in s["splits"].items():
    lines.append(f"  {split}: {counts['records']} records, {counts['boxes']} boxes")
  build_info = s.get("build")
  if build_info:
    for key, value in build_info.items():
      if isinstance(value, (list, dict)) and value:
        lines.append(f"  {key}:")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in list(items)[:50]:
          lines.append(f"    {v}" if isinstance(value, list) else f"    {k}: {v}")
        if len(value) > 50:
          lines.append(f"    ... and {len(value) - 50} more (see {s['data_dir']}/build_summary.json)")
      elif not isinstance(value, (list, dict)):
        lines.append(f"  {key}: {value}")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", required=True, choices=sorted(BUILDER_MODULES))
  parser.add_argument("--config", default=None, help="builder configuration, e.g. crops_1024, whole, fold0")
  parser.add_argument("--manual_dir", default=None, help="folder with the manually downloaded files")
  parser.add_argument("--data_dir", default=None, help="where TFDS data sets live (default $ACNE_JAX_DATA_DIR or ~/tensorflow_datasets)")
  args = parser.parse_args(argv)
  from acne_jax.datasets import default_data_dir

  data_dir = resolve(args.data_dir or default_data_dir())
  if args.manual_dir and not os.path.isdir(resolve(args.manual_dir)):
    print(f"error: --manual_dir {args.manual_dir} does not exist.", file=sys.stderr)
    return 1
  try:
    builder = build(args.dataset, args.config, args.manual_dir, data_dir)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except Exception as e:  # TFDS wraps builder errors (e.g. AssertionError for a missing manual dir)
    print(f"error while building {args.dataset}: {type(e).__name__}: {e}", file=sys.stderr)
    return 1
  print(format_summary(summary(builder)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
