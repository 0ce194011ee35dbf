"""Stage-by-stage comparison of a converted torchvision Faster R-CNN with torchvision itself.

Used by ``tests/interop/test_torchvision_parity.py`` (which asserts on the numbers) and
``scripts/compare_torch.py`` (which prints them and writes ``PARITY.md``).

:func:`seeded_fasterrcnn` builds torchvision's ``fasterrcnn_resnet50_fpn`` with seeded random
weights that make every stage matter: batch-norm statistics and affine terms are drawn away from
the identity, and the RPN and box-predictor output layers are rescaled on a separate calibration
batch so that objectness logits have a spread of about 2 and class scores are not saturated
(torchvision's own initialisation leaves every anchor near score 0.5, where the order of
proposals would be decided by float32 noise, not by the model).

:func:`compare` runs both models on the same images and feeds torchvision's output of each
stage into our next stage where the two would otherwise diverge by an order of score ties, so
each row measures one stage: C2-C5, P2-P6, RPN logits and deltas, proposals, RoI features,
box-head outputs, and the final detections of both whole models.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from acne_jax.interop import torch as interop

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)


def seeded_fasterrcnn(tv, num_classes: int, image_size: Tuple[int, int], seed: int = 0):
  """torchvision ``fasterrcnn_resnet50_fpn`` (eval mode) with seeded weights, no resize at
  ``image_size`` (``min_size``/``max_size`` are the image's sides). ``num_classes`` excludes
  the background."""
  import torch

  torch.manual_seed(seed)
  height, width = image_size
  model = tv.models.detection.fasterrcnn_resnet50_fpn(
      weights=None, weights_backbone=None, num_classes=num_classes + 1, min_size=min(height, width),
      max_size=max(height, width)).eval()
  generator = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.2, 0.2, generator=generator)
        module.running_var.uniform_(0.5, 2.0, generator=generator)
        module.weight.uniform_(0.5, 1.5, generator=generator)
        module.bias.uniform_(-0.2, 0.2, generator=generator)
    calibration = [torch.rand(3, height, width, generator=generator) for _ in range(2)]
    images, _ = model.transform(calibration)
    features = model.backbone(images.tensors)
    objectness, deltas = model.rpn.head(list(features.values()))
    model.rpn.head.cls_logits.weight.mul_(2.0 / torch.cat([t.flatten() for t in objectness]).std())
    model.rpn.head.bbox_pred.weight.mul_(0.2 / torch.cat([t.flatten() for t in deltas]).std())
    proposals, _ = model.rpn(images, features)
    pooled = model.roi_heads.box_roi_pool(features, proposals, images.image_sizes)
    logits, regression = model.roi_heads.box_predictor(model.roi_heads.box_head(pooled))
    model.roi_heads.box_predictor.cls_score.weight.mul_(2.0 / logits.std())
    model.roi_heads.box_predictor.bbox_pred.weight.mul_(1.0 / regression.std())
  return model


def torchvision_config(num_classes: int):
  """``configs/torchvision_faster_rcnn.py`` with ``num_classes`` and no cut before the box NMS."""
  from configs import torchvision_faster_rcnn

  config = torchvision_faster_rcnn.get_config("synthetic")
  with config.unlocked():
    config.model.roi_head.num_classes = num_classes
    config.model.roi_head.box.pre_nms_top_k = 1000 * num_classes
  return config


@dataclasses.dataclass
class Row:
  """One stage: the largest absolute difference and that over the reference's largest magnitude."""

  stage: str
  max_abs: float
  max_rel: float
  note: str = ""


def _row(stage: str, ours, theirs, note: str = "") -> Row:
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  if ours.shape != theirs.shape:
    raise AssertionError(f"{stage}: shapes differ, ours {ours.shape} torchvision {theirs.shape}")
  diff = float(np.abs(ours - theirs).max()) if ours.size else 0.0
  return Row(stage, diff, diff / max(float(np.abs(theirs).max()) if theirs.size else 0.0, 1e-12), note)


def _nchw(x) -> np.ndarray:
  return x.detach().permute(0, 2, 3, 1).numpy()


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  lt = np.maximum(box[:2], boxes[:, :2])
  rb = np.minimum(box[2:], boxes[:, 2:])
  wh = np.clip(rb - lt, 0, None)
  inter = wh[:, 0] * wh[:, 1]
  union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
  return inter / np.maximum(union, 1e-12)


@dataclasses.dataclass
class DetectionMatch:
  """Final detections of one image, matched by box and class.

  Attributes:
    matched: detections both kept (box within ``box_tol``, same class).
    box_diff, score_diff: the largest differences over the matched ones.
    only_ours, only_theirs: detections one side kept and the other did not, each with the reason
      it is a float32 tie: ``"nms boundary"`` (its IoU with a kept box of its class is within
      ``iou_tol`` of the NMS threshold), ``"score tie"`` (a detection only the other side kept
      scores within 1e-6 of it), ``"after a score tie"`` (further down an image with such a tie),
      ``"cut"`` (the end of a full list); anything else is ``"unexplained: ..."``.
  """

  matched: int
  box_diff: float
  score_diff: float
  only_ours: List[str]
  only_theirs: List[str]


def match_detections(ours_boxes, ours_scores, ours_classes, their_boxes, their_scores, their_classes, nms_iou: float,
                     max_detections: int, box_tol: float = 0.01, iou_tol: float = 1e-5) -> DetectionMatch:
  used = np.zeros(len(their_boxes), bool)
  pairs = []
  for i, box in enumerate(ours_boxes):
    diff = np.abs(their_boxes - box).max(1) if len(their_boxes) else np.zeros(0)
    candidates = np.nonzero((diff <= box_tol) & (their_classes == ours_classes[i]) & ~used)[0]
    if len(candidates):
      j = candidates[np.argmin(diff[candidates])]
      used[j] = True
      pairs.append((i, j))
  matched_ours = {i for i, _ in pairs}

  # A detection only one side kept must come from a float32 tie: near the NMS threshold against a
  # box of its class the other side kept; a score within 1e-6 (the computation's noise) of a
  # detection only the other side kept (NMS keeps whichever of the two it meets first, and
  # rounding decides which that is); at the end of a full list (pushed
  # out by such a one); or after such a tie in score order (a different survivor suppresses
  # different boxes).
  def explain(index, boxes, scores, classes, other_boxes, other_scores, other_classes, other_unmatched):
    same = other_classes == classes[index]
    ious = _box_iou(boxes[index].astype(np.float64), other_boxes[same].astype(np.float64)) if same.any() else np.zeros(0)
    if ious.size and np.abs(ious - nms_iou).min() <= iou_tol:
      return f"nms boundary (IoU {ious[np.abs(ious - nms_iou).argmin()]:.8f})"
    tied = [k for k in other_unmatched if other_classes[k] == classes[index] and abs(other_scores[k] - scores[index]) <= 1e-6]
    if tied:
      return f"score tie within 1e-6 ({scores[index]:.6f})"
    if index >= len(boxes) - 2 and len(boxes) >= max_detections:
      return "cut"
    return f"unexplained: #{index} class {classes[index]} score {scores[index]:.6f} box {np.round(boxes[index], 3).tolist()}"

  unmatched_ours = [i for i in range(len(ours_boxes)) if i not in matched_ours]
  unmatched_theirs = [int(j) for j in np.nonzero(~used)[0]]
  only_ours = [explain(i, ours_boxes, ours_scores, ours_classes, their_boxes, their_scores, their_classes, unmatched_theirs)
               for i in unmatched_ours]
  only_theirs = [explain(j, their_boxes, their_scores, their_classes, ours_boxes, ours_scores, ours_classes, unmatched_ours)
                 for j in unmatched_theirs]
  for side, scores, indices in ((only_ours, ours_scores, unmatched_ours), (only_theirs, their_scores, unmatched_theirs)):
    tie_scores = [scores[k] for k, why in zip(indices, side) if why.startswith("score tie")]
    for n, (k, why) in enumerate(zip(indices, side)):
      if why.startswith("unexplained") and tie_scores and scores[k] < max(tie_scores):
        side[n] = f"after a score tie (score {scores[k]:.6f})"
  box_diff = max((float(np.abs(ours_boxes[i] - their_boxes[j]).max()) for i, j in pairs), default=0.0)
  score_diff = max((abs(float(ours_scores[i]) - float(their_scores[j])) for i, j in pairs), default=0.0)
  return DetectionMatch(len(pairs), box_diff, score_diff, only_ours, only_theirs)


@dataclasses.dataclass
class Comparison:
  """What :func:`compare` measured, and the two models it measured."""

  rows: List[Row]
  matches: List[DetectionMatch]
  torch_model: object
  variables: Dict[str, object]
  spec: object
  pixels: np.ndarray


def compare(tv, num_classes: int = 3, image_size: Tuple[int, int] = (128, 160), batch: int = 4, seed: int = 0) -> Comparison:
  """Runs both models on ``batch`` random images of ``image_size`` (see the module docstring)."""
  import torch

  from acne_jax.models.detector import TwoStageDetector, spec_from_config

  height, width = image_size
  theirs = seeded_fasterrcnn(tv, num_classes, image_size, seed)
  config = torchvision_config(num_classes)
  spec = spec_from_config(config.model)
  model = TwoStageDetector(spec)
  template = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, height, width, 3))))
  state = {k: v.numpy() for k, v in theirs.state_dict().items()}
  variables = interop.from_state_dict(state, template, "torchvision")

  pixels = np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
  torch_images = [torch.from_numpy(p).permute(2, 0, 1).float() / 255.0 for p in pixels]
  ours_images = (pixels.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD

  rows: List[Row] = []
  with torch.no_grad():
    image_list, _ = theirs.transform(torch_images)
    rows.append(_row("input (normalised)", ours_images, _nchw(image_list.tensors)))
    body = theirs.backbone.body(image_list.tensors)
    pyramid = theirs.backbone(image_list.tensors)
    objectness, deltas = theirs.rpn.head(list(pyramid.values()))
    proposals, _ = theirs.rpn(image_list, pyramid)
    pooled = theirs.roi_heads.box_roi_pool(pyramid, proposals, image_list.image_sizes)
    hidden = theirs.roi_heads.box_head(pooled)
    class_logits, box_regression = theirs.roi_heads.box_predictor(hidden)
    final = theirs(torch_images)

  with jax.default_matmul_precision("highest"):
    apply = lambda fn, *args: jax.jit(lambda v, *a: model.apply(v, *a, method=fn))(variables, *args)  # noqa: E731
    c_levels, (roi_levels, rpn_levels, predictions), ours_proposals, prediction = apply(_whole_model, ours_images)
    per_image = max(len(p) for p in proposals)
    padded = np.zeros((batch, per_image, 4), np.float32)
    for i, p in enumerate(proposals):
      padded[i, :len(p)] = p.numpy()
    ours_pooled = apply(lambda m, levels, boxes: m.roi_head.pool(levels, boxes, spec.roi_head.roi_size), roi_levels, padded)
    their_pooled_nhwc = _nchw(pooled)
    ours_logits, ours_deltas = apply(lambda m, f: m.roi_head.box_head(f), their_pooled_nhwc)

  for i, name in enumerate(("C2", "C3", "C4", "C5")):
    rows.append(_row(f"backbone {name}", c_levels[name], _nchw(body[str(i)])))
  for i, key in enumerate(("0", "1", "2", "3", "pool")):
    rows.append(_row(f"FPN P{i + 2}", rpn_levels[i], _nchw(pyramid[key])))
  for level in range(len(objectness)):
    theirs_logits = objectness[level].permute(0, 2, 3, 1).reshape(batch, -1).numpy()
    theirs_deltas = deltas[level].permute(0, 2, 3, 1).reshape(batch, -1, 4).numpy()
    rows.append(_row(f"RPN logits P{level + 2}", predictions[level].cls_logits, theirs_logits))
    rows.append(_row(f"RPN deltas P{level + 2}", predictions[level].deltas, theirs_deltas))

  # Proposals: same set (order may differ only between exactly tied scores).
  box_diff, score_diff, count_equal, ties = 0.0, 0.0, True, 0
  for i, p in enumerate(proposals):
    n = int(np.asarray(ours_proposals.valid[i]).sum())
    count_equal &= n == len(p)
    ob, os_ = np.asarray(ours_proposals.boxes[i, :n]), np.asarray(ours_proposals.scores[i, :n])
    tb = p.numpy()
    distance = np.abs(ob[:, None, :] - tb[None, :, :]).max(-1)
    nearest = distance.argmin(1)
    box_diff = max(box_diff, float(distance.min(1).max()), float(distance.min(0).max()))
    their_scores = _proposal_scores(theirs, image_list, pyramid, i)
    score_diff = max(score_diff, float(np.abs(os_ - their_scores[nearest]).max()))
    ties += int((nearest != np.arange(n)).sum())
  rows.append(Row("proposals (boxes, px)", box_diff, box_diff / max(height, width),
                  f"same count: {count_equal}; {ties} listed in another order (scores equal within float32 noise)"))
  rows.append(Row("proposal scores", score_diff, score_diff))
  flat_pooled = np.asarray(ours_pooled).reshape(batch, per_image, *ours_pooled.shape[1:])
  offsets = np.cumsum([0] + [len(p) for p in proposals])
  theirs_flat = their_pooled_nhwc
  ours_valid = np.concatenate([flat_pooled[i, :len(p)] for i, p in enumerate(proposals)])
  rows.append(_row("RoIAlign features", ours_valid, theirs_flat[:offsets[-1]]))
  theirs_cls = class_logits.numpy()
  rows.append(_row("box head class logits", ours_logits, np.concatenate([theirs_cls[:, 1:], theirs_cls[:, :1]], axis=1)))
  # Both are raw outputs: torchvision divides by weights (10, 10, 5, 5) where we multiply by stds.
  rows.append(_row("box head deltas", np.asarray(ours_deltas).reshape(len(ours_deltas), -1), box_regression.numpy()[:, 4:]))

  matches = []
  detections = prediction.detections
  for i, result in enumerate(final):
    n = int(np.asarray(detections.valid[i]).sum())
    matches.append(match_detections(
        np.asarray(detections.boxes[i, :n]), np.asarray(detections.scores[i, :n]), np.asarray(detections.classes[i, :n]) + 1,
        result["boxes"].numpy(), result["scores"].numpy(), result["labels"].numpy(), spec.roi_head.box.nms_iou,
        spec.roi_head.box.max_detections))
  return Comparison(rows, matches, theirs, variables, spec, pixels)


def _whole_model(model, images):
  """Every stage of our model in one call (one compilation; XLA shares the repeated work)."""
  features = model._features(images)
  proposals = model._proposals(features[2], images.shape[1:3], False)
  return model.backbone(images), features, proposals, model.predict(images)


def _proposal_scores(model, image_list, pyramid, index: int) -> np.ndarray:
  """torchvision's proposal scores of one image (its RPN returns them only inside ``filter_proposals``)."""
  import torch

  with torch.no_grad():
    features = list(pyramid.values())
    objectness, deltas = model.rpn.head(features)
    anchors = model.rpn.anchor_generator(image_list, features)
    counts = [o[0].numel() for o in objectness]
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    boxes = model.rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
    _, scores = model.rpn.filter_proposals(boxes, objectness, image_list.image_sizes, counts)
  return scores[index].numpy()
