"""Figures from trained workdirs: the SADH paper's Fig. 6 and 7, PR curves, drawn detections.

``make_figures(sadh=(config, workdir), rpn=(config, workdir), out_dir)`` restores both
checkpoints, runs them on the evaluation split and writes:

- ``confidence_gradient.png``: mean ``delta s_cls`` against the Manhattan distance from the
  ground-truth centre on the feature map, vanilla RPN against SADH (paper Fig. 6);
- ``iou_vs_score.png``: IoU with the matched ground truth against ``s_cls``, the predicted NWD
  and the rectified ``s_final`` of the SADH model, with Pearson coefficients (paper Fig. 7);
- ``precision_recall.png``: per-class precision-recall at IoU 0.5 of the SADH model (and the
  vanilla RPN model's overall curve);
- ``detections.png``: detections above a score threshold on a few evaluation images, ground truth
  dashed.

Returns the numbers behind them (curves, Pearson coefficients) as a dictionary.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.evaluation import analysis


def model_outputs(config, workdir, eval_data, num_images: int, batch_size: int):
  """Raw per-level head outputs, decoded anchor boxes and final detections for the first images."""
  from acne_jax import evaluate, train
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.ops import boxes as box_ops

  variables, _ = evaluate.restore_variables(config, workdir)
  spec = spec_from_config(config.model)
  model = TwoStageDetector(spec, train=False)
  image_size = tuple(config.data.image_size)
  anchors = model.anchors(image_size)

  @jax.jit
  def run(variables, images):
    normalized = train.normalize(images, config.data.mean, config.data.std)
    levels, predictions = model.apply(variables, normalized, method=lambda m, x: m._levels(x))
    decoded = [box_ops.decode_deltas(a[None], p.deltas, image_size=image_size) for a, p in zip(anchors, predictions)]
    prediction = model.apply(variables, normalized, method="predict")
    return ([p.cls_logits for p in predictions], [p.nwd_logits for p in predictions], decoded,
            [l.shape[1:3] for l in levels], prediction.detections)

  cls, nwd, decoded, dets = [], [], [], []
  sizes = None
  for start in range(0, min(num_images, len(eval_data)), batch_size):
    index = np.minimum(np.arange(start, start + batch_size), len(eval_data) - 1)
    c, n, d, sizes_now, det = jax.device_get(run(variables, jnp.asarray(eval_data.images[index])))
    keep = index < min(num_images, len(eval_data))
    keep &= np.arange(start, start + batch_size) < min(num_images, len(eval_data))
    cls.append([x[keep] for x in c])
    nwd.append([None if x is None else x[keep] for x in n])
    decoded.append([x[keep] for x in d])
    dets.append(jax.tree_util.tree_map(lambda x: x[keep], det))
    sizes = [tuple(int(v) for v in s) for s in sizes_now]
  stack = lambda parts: [np.concatenate([p[l] for p in parts]) for l in range(len(parts[0]))]
  return {
      "cls": stack(cls),
      "nwd": None if nwd[0][0] is None else stack(nwd),
      "decoded": stack(decoded),
      "feature_sizes": sizes,
      "anchors": [np.asarray(a) for a in anchors],
      "strides": spec.rpn.anchor_strides,
      "detections": jax.tree_util.tree_map(lambda *x: np.concatenate(x), *dets),
  }


def make_figures(sadh: Tuple[Any, str], rpn: Optional[Tuple[Any, str]], out_dir: str, num_images: int = 48,
                 batch_size: int = 8, score_threshold: float = 0.5, max_distance: int = 6) -> Dict[str, Any]:
  """Writes the four PNG files into ``out_dir`` (see the module docstring) and returns their numbers."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from acne_jax import datasets

  os.makedirs(out_dir, exist_ok=True)
  sadh_config, sadh_workdir = sadh
  eval_data, class_names = datasets.load_eval_split(sadh_config.data)
  n = min(num_images, len(eval_data))
  gt_boxes = [b[v] for b, v in zip(eval_data.boxes[:n], eval_data.valid[:n])]
  gt_labels = [l[v] for l, v in zip(eval_data.labels[:n], eval_data.valid[:n])]
  runs = {"SADH + NWD": model_outputs(sadh_config, sadh_workdir, eval_data, n, batch_size)}
  if rpn is not None:
    runs["vanilla RPN"] = model_outputs(rpn[0], rpn[1], eval_data, n, batch_size)
  results: Dict[str, Any] = {}

  # Fig. 6: confidence gradient.
  fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
  for name, out in runs.items():
    curve = analysis.confidence_gradient(out["cls"], out["feature_sizes"], out["anchors"], out["strides"], gt_boxes, max_distance)
    results[f"confidence_gradient/{name}"] = curve.tolist()
    ax.plot(np.arange(len(curve)), curve, marker="o", label=name)
  ax.axhline(0, color="grey", lw=0.5)
  ax.set_xlabel("Manhattan distance from the lesion centre (cells)")
  ax.set_ylabel(r"$\Delta s_{cls} = s_{cls}(x) - s_{cls}(0)$")
  ax.set_title("Classification confidence gradient (paper Fig. 6)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "confidence_gradient.png"))
  plt.close(fig)

  # Fig. 7: IoU against the three scores (SADH only: the vanilla head has no NWD branch).
  sadh_out = runs["SADH + NWD"]
  if sadh_out["nwd"] is not None:
    pairs = analysis.iou_score_pairs(sadh_out["cls"], sadh_out["nwd"], sadh_out["decoded"], gt_boxes)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=120, sharey=True)
    for ax, key, label in zip(axes, ("s_cls", "nwd", "s_final"), (r"$s_{cls}$", "predicted NWD $p$", r"$s_{final}$")):
      r = analysis.pearson(pairs[key], pairs["iou"])
      results[f"pearson/{key}"] = r
      ax.scatter(pairs[key], pairs["iou"], s=2, alpha=0.3, color="tab:blue", rasterized=True)
      ax.set_xlabel(label)
      ax.set_title(f"Pearson r = {r:.2f}")
      ax.set_xlim(0, 1)
      ax.set_ylim(0, 1)
    axes[0].set_ylabel("IoU with matched ground truth")
    fig.suptitle("Proposal IoU against scores, SADH + NWD (paper Fig. 7)")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "iou_vs_score.png"))
    plt.close(fig)

  # Precision-recall curves.
  fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
  for name, out in runs.items():
    det = out["detections"]
    boxes = [b[v] for b, v in zip(det.boxes, det.valid)]
    scores = [s[v] for s, v in zip(det.scores, det.valid)]
    classes = [c[v] for c, v in zip(det.classes, det.valid)]
    curves = analysis.precision_recall(gt_boxes, gt_labels, boxes, scores, classes, len(class_names))
    if name == "SADH + NWD":
      for c, (recall, precision) in enumerate(curves):
        if len(recall):
          colour = analysis.CLASS_COLOURS[c] / 255.0
          ax.plot(recall, precision, color=np.clip(colour * 0.85, 0, 1), lw=1, label=class_names[c])
    merged = analysis.precision_recall(gt_boxes, [np.zeros_like(l) for l in gt_labels], boxes, scores,
                                       [np.zeros_like(c) for c in classes], 1)[0]
    ax.plot(merged[0], merged[1], color="black", lw=2, ls="-" if name == "SADH + NWD" else "--", label=f"{name}, class-agnostic")
  ax.set_xlabel("recall")
  ax.set_ylabel("precision")
  ax.set_xlim(0, 1.01)
  ax.set_ylim(0, 1.01)
  ax.set_title("Precision-recall at IoU 0.5 (test split)")
  ax.legend(fontsize=6, ncol=2, loc="lower left")
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "precision_recall.png"))
  plt.close(fig)

  # Drawn detections on four images.
  det = sadh_out["detections"]
  tiles = []
  for i in range(min(4, n)):
    keep = det.valid[i] & (det.scores[i] >= score_threshold)
    tiles.append(analysis.draw_detections(eval_data.images[i], det.boxes[i][keep], det.classes[i][keep], class_names,
                                          gt_boxes=gt_boxes[i]))
  if tiles:
    import cv2

    height = max(t.shape[0] for t in tiles)
    row = np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles], axis=1)
    cv2.imwrite(os.path.join(out_dir, "detections.png"), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
  return results
