"""The mask branch: the loss by hand, pasting against PyTorch's grid_sample, masks for COCO segm."""

import jax.numpy as jnp
import numpy as np
import pytest

from acne_jax.evaluation import masks as mask_eval
from acne_jax.evaluation import rle
from acne_jax.models import mask_head
from acne_jax.ops import mask_targets


def test_mask_loss_uses_only_each_rois_class_map_and_valid_rois():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
  labels = np.array([2, 0, 4])
  targets = (rng.uniform(size=(3, 4, 4)) < 0.5).astype(np.float32)
  valid = np.array([True, False, True])
  got = float(mask_head.mask_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(targets), jnp.asarray(valid)))
  expected = []
  for r in (0, 2):
    x = logits[r, :, :, labels[r]].astype(np.float64)
    expected.append(np.maximum(x, 0) - x * targets[r] + np.log1p(np.exp(-np.abs(x))))
  assert got == pytest.approx(float(np.mean(expected)), rel=1e-6)
  assert float(mask_head.mask_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(targets), jnp.zeros(3, bool))) == 0.0


def test_paste_mask_matches_grid_sample():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(1)
  height, width = 40, 50
  for _ in range(30):
    x1, y1 = rng.uniform(-8, 40, 2)
    w, h = rng.uniform(2, 30, 2)
    box = (x1, y1, x1 + w, y1 + h)
    probs = rng.uniform(size=(28, 28))
    got = mask_head.paste_mask(probs, box, height, width, 0.5)
    # MMDetection's _do_paste_mask: pixel centres mapped to [-1, 1] over the box, grid_sample
    # (bilinear, zeros outside, align_corners=False), over the whole image here.
    gx = (np.arange(width) + 0.5 - box[0]) / (box[2] - box[0]) * 2 - 1
    gy = (np.arange(height) + 0.5 - box[1]) / (box[3] - box[1]) * 2 - 1
    grid = torch.tensor(np.stack(np.meshgrid(gx, gy), axis=-1)[None], dtype=torch.float64)
    sampled = torch.nn.functional.grid_sample(torch.tensor(probs[None, None]), grid, align_corners=False)[0, 0].numpy()
    np.testing.assert_array_equal(got, (sampled >= 0.5).astype(np.uint8))


def test_ground_truth_masks_for_coco_are_the_rasterised_polygons():
  polygons = [np.array([[10.2, 20.5], [30.7, 21.0], [25.0, 40.3]]), np.array([[50.0, 5.0], [70.0, 8.0], [60.0, 30.0]])]
  boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polygons])
  bitmaps, frames = mask_targets.rasterize_box_masks(polygons, boxes, 56)
  gt = {"images": [{"id": 3, "height": 48, "width": 80}], "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": i + 1, "image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "area": 1.0, "iscrowd": 0}
                        for i in range(2)]}
  out = mask_eval.ground_truth_with_masks(gt, bitmaps[None], frames[None], np.array([[True, True]]), np.array([[48, 80]]))
  for annotation, polygon in zip(out["annotations"], polygons):
    expected = mask_targets.rasterize_full(polygon, 48, 80)
    np.testing.assert_array_equal(rle.decode(annotation["segmentation"]), expected)
    assert annotation["area"] == expected.sum()
  # A detection whose mask is all ones over the first lesion's box.
  x1, y1, x2, y2 = boxes[0]
  results = mask_eval.results_with_masks([{"image_id": 3, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 0.9}],
                                         [np.ones((28, 28))], {3: (48, 80)})
  pasted = rle.decode(results[0]["segmentation"])
  assert pasted[int(y1) + 1:int(y2) - 1, int(x1) + 1:int(x2) - 1].all() and pasted.sum() < (x2 - x1 + 2) * (y2 - y1 + 2)
  metrics = mask_eval.segm_metrics(out, results)
  assert 0.0 < metrics["mask_AR@0.5"] <= 0.5  # one of two lesions found (its mask IoU with the box-shaped mask >= 0.5)
