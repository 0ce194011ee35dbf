"""Figures of a trained SADH model (and optionally a vanilla-RPN one) on the evaluation split.

    python scripts/plot_analysis.py --sadh_workdir=workdir/sadh --rpn_workdir=workdir/faster_rcnn --out=docs/figures

Writes confidence_gradient.png (paper Fig. 6), iou_vs_score.png (Fig. 7), precision_recall.png
and detections.png (see acne_jax/evaluation/plots.py), and prints the Pearson coefficients and
the confidence-gradient curves.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sadh_config", default="configs/sadh.py")
  parser.add_argument("--sadh_workdir", required=True)
  parser.add_argument("--rpn_config", default="configs/faster_rcnn.py")
  parser.add_argument("--rpn_workdir", default=None)
  parser.add_argument("--out", default="docs/figures")
  parser.add_argument("--num_images", type=int, default=48)
  args = parser.parse_args()
  from acne_jax.evaluation import plots
  from configs import faster_rcnn, sadh

  def load(path, workdir):
    module = {"configs/sadh.py": sadh, "configs/faster_rcnn.py": faster_rcnn}.get(path)
    if module is None:
      sys.exit(f"--*_config must be configs/sadh.py or configs/faster_rcnn.py; got {path}")
    config = module.get_config()
    saved = os.path.join(workdir, "config.json")
    if os.path.exists(saved):  # the workdir's own settings win (data_dir, model overrides)
      with open(saved) as f:
        stored = json.load(f)
      with config.unlocked():
        config.model.update(stored.get("model", {}))
        config.data.update({k: tuple(v) if isinstance(v, list) else v for k, v in stored.get("data", {}).items()})
    return config

  results = plots.make_figures((load(args.sadh_config, args.sadh_workdir), args.sadh_workdir),
                               (load(args.rpn_config, args.rpn_workdir), args.rpn_workdir) if args.rpn_workdir else None,
                               args.out, num_images=args.num_images)
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
