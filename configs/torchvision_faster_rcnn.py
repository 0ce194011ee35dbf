"""Faster R-CNN with torchvision's conventions (``torchvision.models.detection.fasterrcnn_resnet50_fpn``, v1).

A torchvision checkpoint converted with ``python -m acne_jax.convert --from=torchvision`` computes
here what it computes in torchvision (tests/interop/test_torchvision_parity.py checks every
stage against torchvision's own code):

- ResNet-50 with frozen batch norm (``FrozenBatchNorm2d``), stem and layer1 frozen
  (``trainable_backbone_layers=3``); FPN P2-P5 plus P6 by a stride-2 max-pool;
- the plain RPN head (3x3 conv, 1x1 objectness and box convs), one anchor size per level
  (32, 64, 128, 256, 512 on P2-P6) with ratios 0.5, 1, 2, base anchors rounded to whole pixels;
- proposals: 2000 per level and 2000 kept in training, 1000 / 1000 at test, NMS 0.7 per level,
  boxes narrower than 1e-3 px removed;
- RoIAlign 7x7 with sampling ratio 2 and ``aligned=False``; the TwoMLPHead (two 1024 FC layers)
  and its predictor; box-coder weights (1, 1, 1, 1) in the RPN and (10, 10, 5, 5) in the box
  head (our delta stds 1 and (0.1, 0.1, 0.2, 0.2));
- detections: score > 0.05, boxes under 0.01 px removed, per-class NMS 0.5, 100 per image;
- ImageNet normalisation and torchvision's resize (shorter side 800, longer at most 1333) in the
  input pipeline (``data.resize_min_size`` / ``data.resize_max_size``).

Training losses are this package's (L1 box losses as MMDetection), not torchvision's smooth L1;
what is torchvision's here is the model and its inference.

Launch:
  python -m acne_jax.train --config=configs/torchvision_faster_rcnn.py:acne04
  python -m acne_jax.convert --from=torchvision --checkpoint=fasterrcnn.pth \\
      --config=configs/torchvision_faster_rcnn.py:acne04 --out=workdir/torchvision_acne04
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  data = arg or "synthetic"
  config = common.detector_config(data, rpn_head="rpn", roi_head="box")
  with config.unlocked():
    common.torchvision_conventions(config, data)
  return config
