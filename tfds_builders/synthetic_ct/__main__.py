"""Writes a synthetic CT release and builds it with the deep_lesion builder.

    python -m tfds_builders.synthetic_ct --out=DIR [--set=default|tiny] [--config=default] [--workers=N]

Prints what was written (key slices per split, lesions per type, time) and the deep_lesion
build summary. Then ``python -m acne_jax.train --config=configs/faster_rcnn.py:deep_lesion
--config.data.data_dir=DIR`` trains on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tfds_builders.synthetic_ct", description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder of the set: release/ and the built deep_lesion data set")
  parser.add_argument("--set", default="default", help="default (120 patients) or tiny (6 patients, every lesion type)")
  parser.add_argument("--config", default="default", help="deep_lesion builder configuration: default, dicom_window or hu")
  parser.add_argument("--workers", type=int, default=None, help="processes writing the release (default: 2 for the default set)")
  args = parser.parse_args(argv)

  from acne_jax.data import synthetic_ct  # pylint: disable=import-outside-toplevel
  from tfds_builders import build  # pylint: disable=import-outside-toplevel
  from tfds_builders.synthetic_ct.synthetic_ct import build_synthetic_ct, release_folder  # pylint: disable=import-outside-toplevel

  start = time.time()
  builder = build_synthetic_ct(args.out, args.set, args.config, workers=args.workers, progress=True)
  with open(os.path.join(release_folder(args.out), synthetic_ct.MANIFEST), encoding="utf-8") as f:
    manifest = json.load(f)
  print(f"release {release_folder(args.out)}: {manifest['patients']} patients, {manifest['key_slices']} key slices "
        f"({', '.join(f'{k} {v}' for k, v in manifest['split_key_slices'].items())}), {manifest['lesions']} lesions "
        f"({', '.join(f'{k} {v}' for k, v in manifest['type_counts'].items())}), {manifest['slice_files']} slice files, "
        f"written in {manifest['seconds']} s")
  print(build.format_summary(build.summary(builder)))
  print(f"done in {time.time() - start:.0f} s; train with: python -m acne_jax.train --config=configs/faster_rcnn.py:deep_lesion "
        f"--config.data.data_dir={os.path.abspath(args.out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
