"""A converted torchvision ``fasterrcnn_resnet50_fpn`` against torchvision itself, stage by stage.

torchvision runs its real C++ CPU kernels here (``acne_jax.testing.torchvision_cpu``); the
comparison (``acne_jax.testing.torchvision_parity``) uses seeded random weights with every
batch norm away from the identity, four random 128 x 160 images, and our model built from
``configs/torchvision_faster_rcnn.py``. ``scripts/compare_torch.py`` prints the same table.
"""

from __future__ import annotations

import numpy as np
import pytest

from acne_jax.interop import torch as interop
from acne_jax.testing import torchvision_parity as parity


@pytest.fixture(scope="module")
def comparison(tv):
  return parity.compare(tv, num_classes=3, image_size=(128, 160), batch=4, seed=0)


def _rows(comparison, prefix):
  rows = [r for r in comparison.rows if r.stage.startswith(prefix)]
  assert rows, prefix
  return rows


@pytest.mark.parametrize("prefix", ["input", "backbone", "FPN", "RPN", "RoIAlign", "box head"])
def test_stage_within_1e4_relative(comparison, prefix):
  for row in _rows(comparison, prefix):
    assert row.max_rel <= 1e-4, row


def test_every_stage_is_compared(comparison):
  stages = [r.stage for r in comparison.rows]
  for name in ("backbone C2", "backbone C5", "FPN P2", "FPN P6", "RPN logits P6", "RPN deltas P2", "RoIAlign features",
               "box head class logits", "box head deltas", "proposals (boxes, px)"):
    assert name in stages


def test_proposals_are_the_same_boxes(comparison):
  boxes = next(r for r in comparison.rows if r.stage == "proposals (boxes, px)")
  scores = next(r for r in comparison.rows if r.stage == "proposal scores")
  assert "same count: True" in boxes.note
  assert boxes.max_abs <= 0.01
  assert scores.max_abs <= 1e-4


def test_final_detections(comparison):
  total = 0
  for index, match in enumerate(comparison.matches):
    assert match.box_diff <= 0.01, (index, match)
    assert match.score_diff <= 1e-4, (index, match)
    # Anything kept by one side only is a float32 tie the match explains (NMS boundary, equal
    # scores, the 100-detection cut), never a difference of computation.
    for reason in match.only_ours + match.only_theirs:
      assert not reason.startswith("unexplained"), (index, reason)
    assert len(match.only_ours) <= 3 and len(match.only_theirs) <= 3, (index, match)
    total += match.matched
  assert total >= 0.97 * 4 * 100  # 100 detections per image, nearly all the same


def test_export_round_trip_and_strict_load(tv, comparison):
  import torch

  exported = interop.to_torchvision(comparison.variables)
  again = interop.from_state_dict(exported, comparison.variables, "torchvision")
  for collection in ("params", "batch_stats"):
    flat_a = interop._flat(comparison.variables[collection])
    flat_b = interop._flat(again[collection])
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
      np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=str(key))
  # torchvision accepts the export (strict) and computes the same detections as the original.
  original = comparison.torch_model
  reloaded = tv.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4, min_size=128,
                                                         max_size=160).eval()
  missing = reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=False)
  assert not missing.unexpected_keys
  assert all(k.endswith("num_batches_tracked") for k in missing.missing_keys)
  image = [torch.from_numpy(comparison.pixels[0]).permute(2, 0, 1).float() / 255.0]
  with torch.no_grad():
    a, b = original(image)[0], reloaded(image)[0]
  torch.testing.assert_close(a["boxes"], b["boxes"])
  torch.testing.assert_close(a["scores"], b["scores"])
