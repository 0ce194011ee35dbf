"""Build a data set into ArrayRecord files without TensorFlow.

    python -m tfds_builders.build --dataset=acne_scu --config=crops_1024 --manual_dir=~/AcneSCU --data_dir=~/tensorflow_datasets
    python -m tfds_builders.build --dataset=synthetic_acne                  # the embedded data set

(``tfds build`` needs TensorFlow; this does the same through the builders' Python API.) Prints
TFDS's progress bars while building, then a summary: records per split, boxes, the splits that
came out empty (left out of the data set) and why, and every file or annotation that was
skipped, clipped or dropped, with the file, the shape's index in it, its label and the reason,
grouped by reason, as the builder recorded it in ``build_summary.json`` (which lists them all;
the print shows the first few of each reason).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Dict, Optional

from acne_jax.paths import resolve
from tfds_builders import build_summary

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
  """Records and boxes per split, plus the builder's own ``build_summary.json`` (``"build"``)
  when it wrote one (its box counts are used; otherwise the records are read to count them)."""
  out = {"data_dir": builder.data_dir, "splits": {}}
  path = os.path.join(builder.data_dir, build_summary.SUMMARY_FILE)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      out["build"] = json.load(f)
  counted = out.get("build", {}).get("splits", {})
  for split, info in builder.info.splits.items():
    if "boxes" in counted.get(split, {}):
      boxes = counted[split]["boxes"]
    else:
      source = builder.as_data_source(split=split)
      boxes = sum(len(source[i]["objects"]["label"]) for i in range(len(source)))
    out["splits"][split] = {"records": int(info.num_examples), "boxes": int(boxes)}
  return out


def format_summary(s: Dict) -> str:
  """The lines the CLI prints: records and boxes per split, then (when the builder wrote one)
  its build summary: empty splits, counters, and every skipped file and dropped, clipped or
  noted annotation grouped by reason (the first few of each; all are in build_summary.json)."""
  lines = [f"built into {s['data_dir']}"]
  if s.get("build"):  # its split lines give the records and boxes, and more
    path = os.path.join(s["data_dir"], build_summary.SUMMARY_FILE)
    lines.append(build_summary.BuildSummary.from_dict(s["build"]).format(path=path))
  else:
    for split, counts in s["splits"].items():
      lines.append(f"  {split}: {counts['records']} records, {counts['boxes']} boxes")
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
