"""Pure-PyTorch reference implementations of box IoU, greedy NMS and RoIAlign.

These follow torchvision's definitions (``torchvision.ops.box_iou``, ``nms``, ``roi_align``).
torchvision's PyPI wheel is a CUDA build; :mod:`acne_jax.testing.torchvision_cpu` loads its C++
CPU kernels where gcc is available, and the benchmark and parity scripts use those then, these
otherwise, and say which one they used. They are written for clarity and vectorised enough to
be timed, not tuned. Layouts are PyTorch's: features ``[B, C, H, W]``.
"""

from __future__ import annotations

import math

import torch


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
  """``[N, 4]`` x ``[M, 4]`` x1y1x2y2 -> ``[N, M]`` IoU (0 where the union is empty)."""
  area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(min=0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(min=0)
  area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(min=0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(min=0)
  lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
  rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
  wh = (rb - lt).clamp(min=0)
  inter = wh[..., 0] * wh[..., 1]
  union = area1[:, None] + area2[None, :] - inter
  return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
  """Greedy NMS: indices of kept boxes by descending score (stable sort: ties keep index order)."""
  order = torch.sort(scores, descending=True, stable=True).indices
  boxes = boxes[order]
  suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
  keep = []
  for i in range(len(order)):
    if suppressed[i]:
      continue
    keep.append(i)
    if i + 1 < len(order):
      suppressed[i + 1:] |= box_iou(boxes[i:i + 1], boxes[i + 1:])[0] > iou_threshold
  return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False, max_sampling_ratio: int = 8) -> torch.Tensor:
  """torchvision's RoIAlign, vectorised over RoIs.

  Args:
    features: ``[B, C, H, W]``.
    rois: ``[R, 5]`` (batch_index, x1, y1, x2, y2) image pixels.
    output_size: ``int`` or ``(out_h, out_w)``.
    spatial_scale, sampling_ratio, aligned: as torchvision.
    max_sampling_ratio: static bound of the adaptive grid (samples beyond an RoI's own grid
      are masked), exact while ``ceil(roi_size / output_size) <= max_sampling_ratio``.

  Returns:
    ``[R, C, out_h, out_w]``.
  """
  out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
  _, channels, height, width = features.shape
  offset = 0.5 if aligned else 0.0
  batch_index = rois[:, 0].long()
  start_w = rois[:, 1] * spatial_scale - offset
  start_h = rois[:, 2] * spatial_scale - offset
  roi_w = rois[:, 3] * spatial_scale - offset - start_w
  roi_h = rois[:, 4] * spatial_scale - offset - start_h
  if not aligned:
    roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
  bin_w, bin_h = roi_w / out_w, roi_h / out_h
  if sampling_ratio > 0:
    grid_w = torch.full_like(bin_w, sampling_ratio)
    grid_h = torch.full_like(bin_h, sampling_ratio)
    g = sampling_ratio
  else:
    grid_w = torch.ceil(roi_w / out_w).clamp(max=max_sampling_ratio)
    grid_h = torch.ceil(roi_h / out_h).clamp(max=max_sampling_ratio)
    g = max_sampling_ratio

  def axis(start, bin_size, grid, pooled, limit):
    # Sample coordinates [R, pooled, g] and a mask for samples inside each RoI's own grid.
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]
    i = torch.arange(g, dtype=start.dtype, device=start.device)[None, None, :]
    coord = start[:, None, None] + p * bin_size[:, None, None] + (i + 0.5) * bin_size[:, None, None] / grid[:, None, None].clamp(min=1)
    used = i < grid[:, None, None]
    inside = (coord >= -1.0) & (coord <= limit)
    coord = coord.clamp(min=0.0)
    low = coord.floor().long()
    at_edge = low >= limit - 1
    low = torch.where(at_edge, torch.full_like(low, limit - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(coord.dtype), coord)
    frac = coord - low.to(coord.dtype)
    weight = (used & inside).to(coord.dtype)
    return low, high, (1.0 - frac) * weight, frac * weight

  y_lo, y_hi, wy_lo, wy_hi = axis(start_h, bin_h, grid_h, out_h, height)
  x_lo, x_hi, wx_lo, wx_hi = axis(start_w, bin_w, grid_w, out_w, width)
  nhwc = features.permute(0, 2, 3, 1)
  count = (grid_h * grid_w).clamp(min=1)[:, None, None, None]
  pooled = []
  # RoIs in chunks so the gathered samples [chunk, out_h, g, out_w, g, C] stay small.
  chunk = max(1, int(2**26 // max(1, out_h * out_w * g * g * channels)))
  for lo in range(0, rois.shape[0], chunk):
    sl = slice(lo, lo + chunk)
    b = batch_index[sl][:, None, None, None, None]
    out = 0.0
    for ys, wy in ((y_lo[sl], wy_lo[sl]), (y_hi[sl], wy_hi[sl])):
      for xs, wx in ((x_lo[sl], wx_lo[sl]), (x_hi[sl], wx_hi[sl])):
        v = nhwc[b, ys[:, :, :, None, None], xs[:, None, None, :, :]]  # [chunk, out_h, g, out_w, g, C]
        out = out + v * (wy[:, :, :, None, None] * wx[:, None, None, :, :])[..., None]
    pooled.append(out.sum(dim=(2, 4)) / count[sl])  # [chunk, out_h, out_w, C]
  if not pooled:
    return features.new_zeros((0, channels, out_h, out_w))
  return torch.cat(pooled).permute(0, 3, 1, 2).contiguous()


def level_of_rois(rois: torch.Tensor, min_level: int, max_level: int, canonical_scale: float = 224.0,
                  canonical_level: int = 4, eps: float = 1e-6) -> torch.Tensor:
  """FPN level per RoI: ``floor(canonical_level + log2(sqrt(area) / canonical_scale + eps))``, clamped."""
  scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
  level = torch.floor(canonical_level + torch.log2(scale / canonical_scale + eps))
  return level.clamp(min_level, max_level).long()


def multilevel_roi_align(features, rois, output_size, strides, sampling_ratio=-1, aligned=False, max_sampling_ratio=8):
  """RoIAlign of each RoI from its FPN level; ``features`` finest first, ``strides`` per level."""
  min_level = int(round(math.log2(strides[0])))
  levels = level_of_rois(rois, min_level, min_level + len(features) - 1)
  out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
  out = rois.new_zeros((rois.shape[0], features[0].shape[1], out_h, out_w))
  for index, (feature, stride) in enumerate(zip(features, strides)):
    chosen = torch.nonzero(levels == min_level + index).flatten()
    if chosen.numel():
      out[chosen] = roi_align(feature, rois[chosen], output_size, 1.0 / stride, sampling_ratio, aligned, max_sampling_ratio)
  return out
