"""The DeepLesion benchmark paper's Faster R-CNN runs (its Table 2), on torchvision's conventions.

    python -m acne_jax.train --config=configs/deeplesion_benchmark.py:3            # row 3 on DeepLesion
    python -m acne_jax.train --config=configs/deeplesion_benchmark.py:6,synthetic_ct

The argument is the Table 2 row (1-6), then optionally the data set (default ``deep_lesion``):

| row | COCO-pretrained detector | optimiser | balanced batches | augmentation |
|---|---|---|---|---|
| 1 | yes | Adam | no | no |
| 2 | no (ImageNet backbone) | Adam | yes | no |
| 3 | yes | Adam | yes | no |
| 4 | no (ImageNet backbone) | SGD | yes | no |
| 5 | yes | SGD | yes | no |
| 6 | yes | Adam | yes | yes |

The paper's settings (``shared/papers/deeplesion_detection_benchmark.md``, section 3.1): Adam at
1e-4, SGD at 2e-5 with momentum 0.9, no learning-rate schedule (no warm-up, no decay), no weight
decay (none is named), batches of 32, 110 epochs; balanced batches give each lesion type an equal
share (``data.class_balanced``); its augmentation is a reflected border, a rotation within +-30
degrees and a centred crop of 0-64 px per side resized back (``data.rotate_degrees``,
``data.zoom_crop``; the paper then rescales to 240 px, we keep the data set's canvas), with no
flips (some lesion types live on one side of the body). The other rows train without any
augmentation, flips included.

COCO-pretrained rows start every layer but the class-specific predictors from ``train.init_from``,
an acne_jax workdir holding torchvision's COCO detector, made once with

    python -m acne_jax.convert --from=torchvision --checkpoint=fasterrcnn_resnet50_fpn_coco-258fb6c6.pth \\
        --config=configs/deeplesion_benchmark.py:1 --config.model.roi_head.num_classes=90 --out=workdir/torchvision_coco

The other rows start from torchvision's ImageNet ResNet-50 (``model.backbone.pretrained``).
"""

import ml_collections

from configs import common

# row -> (COCO-pretrained, optimiser, balanced batches, augmentation)
TABLE_2 = {
    1: (True, "adam", False, False),
    2: (False, "adam", True, False),
    3: (True, "adam", True, False),
    4: (False, "sgd", True, False),
    5: (True, "sgd", True, False),
    6: (True, "adam", True, True),
}
LEARNING_RATES = {"adam": 1e-4, "sgd": 2e-5}
COCO_WORKDIR = "workdir/torchvision_coco"


def get_config(arg: str = "1") -> ml_collections.ConfigDict:
  row_text, _, data = (arg or "1").partition(",")
  data = data or "deep_lesion"
  try:
    row = int(row_text)
    pretrained, optimizer, balanced, augment = TABLE_2[row]
  except (ValueError, KeyError):
    raise ValueError(f"configs/deeplesion_benchmark.py: the argument is a Table 2 row 1-6, then optionally ',<data set>' "
                     f"(e.g. ':3' or ':6,synthetic_ct'); got {arg!r}.") from None
  config = common.detector_config(data, rpn_head="rpn", roi_head="box")
  with config.unlocked():
    common.torchvision_conventions(config, data)
    config.optimizer.update(name=optimizer, lr=LEARNING_RATES[optimizer], momentum=0.9, weight_decay=0.0, warmup_steps=0,
                            decay_steps=(), decay_epochs=(), grad_clip_norm=0.0)
    config.train.update(batch_size=32, epochs=110, steps=0, init_from=COCO_WORKDIR if pretrained else "")
    config.data.update(class_balanced=balanced, hflip=False, vflip=False, rotate90=False, brightness=0.0,
                       rotate_degrees=30.0 if augment else 0.0, zoom_crop=64 if augment else 0)
    if pretrained:  # the whole detector comes from the COCO run; no separate ImageNet backbone
      config.model.backbone.pretrained = ""
  return config
