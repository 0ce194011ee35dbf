"""YOLOv4 (one-stage; ``acne_jax/models/yolo.py``), the DeepLesion benchmark paper's second detector.

    python -m acne_jax.train --config=configs/yolov4.py                   # 416 px, synthetic CT, 2-core CPU size
    python -m acne_jax.train --config=configs/yolov4.py:stride4           # the seed's small-lesion variant
    python -m acne_jax.train --config=configs/yolov4.py:416,deep_lesion   # the paper's first YOLO row, real data

The argument is the variant, then optionally the data set (default ``synthetic_ct``; ``deep_lesion``
is the real release):

- ``416`` (the paper's Table 4, first row): the 512 px slices resized to 416, YOLOv4's anchors,
  strides 8 / 16 / 32;
- ``stride4`` (its second row): the seed's anchors (computed on DeepLesion; ``scripts/yolo_anchors.py``
  computes them for any data set), the finest head at stride 4 (darknet ``layers=23``: the stride-4
  backbone features), and a larger input: the paper trains at 869 px and infers at 1024
  (``data.test_size``); we train at 864 (darknet needs multiples of 32; 869 is not one) and infer at
  1024; on the synthetic CT set at the slices' own 512 px (a CPU's budget) and infer at 640, the
  same ratio. ``--config.data.test_size=0`` infers at the training size.

YOLOv4's mosaic (darknet's ``mosaic=1``) is an option, off by default so that the numbers in
BENCHMARKS.md hold: ``--config.data.mosaic=1.0`` (or a probability). Balanced batches as the paper's
YOLO runs, no flips (the paper disables them), SGD with darknet's
momentum 0.949 and decay 5e-4, a burn-in (warm-up) and steps at 80 % and 90 %. On ``deep_lesion``
the full CSPDarknet53 (width 32, blocks 1, 2, 8, 8, 4) trains 16,000 steps of 64 images as the
paper (a GPU's work); on the synthetic CT set a thin CPU version (width 8, one block per stage)
trains a few hundred steps in minutes.

The paper's YOLO runs start from darknet's ``yolov4.conv.137`` (CSPDarknet53, SPP and the top-down
path trained on COCO; ``acne_jax/interop/darknet.py`` reads it, ``yolov4.weights`` too):

    python -m acne_jax.train --config=configs/yolov4.py:416,deep_lesion \\
        --config.model.pretrained=yolov4.conv.137 --config.data.mean=0,0,0 --config.data.std=255,255,255

darknet's weights expect RGB / 255 (the mean / std overrides; without them training warns); the
file's layers load into the full width-32 model only. ``--config.model.pretrained_layers=backbone``
takes CSPDarknet53 alone; the ``stride4`` variant takes the backbone, SPP and the stride-16 top-down
level, the layers it shares with yolov4.cfg. The file is read when a run starts, not on resume.
"""

import ml_collections

from acne_jax.models import yolo
from configs import common

VARIANTS = ("416", "stride4")


def get_config(arg: str = "416") -> ml_collections.ConfigDict:
  variant, _, data = (arg or "416").partition(",")
  data = data or "synthetic_ct"
  if variant not in VARIANTS or data not in ("synthetic_ct", "deep_lesion"):
    raise ValueError(f"configs/yolov4.py: the argument is a variant ({', '.join(VARIANTS)}) then optionally ',deep_lesion' "
                     f"or ',synthetic_ct' (e.g. ':stride4,deep_lesion'); got {arg!r}.")
  base = common.detector_config(data, rpn_head="rpn", roi_head="box")  # its data, eval and train sections
  config = ml_collections.ConfigDict()
  config.data = base.data
  config.eval = base.eval
  cpu = data == "synthetic_ct"
  size = 416 if variant == "416" else (512 if cpu else 864)
  config.data.update(image_size=(size, size), resize_min_size=size, resize_max_size=size, resize_style="torchvision",
                     hflip=False, vflip=False, class_balanced=True, max_boxes=base.data.max_boxes)
  model = yolo.default_model_config()
  model.update(type="yolov4", num_classes=8, norm="bn",
               width=8 if cpu else 32, stage_blocks=(1, 1, 1, 1, 1) if cpu else (1, 2, 8, 8, 4))
  if variant == "stride4":
    model.update(head_strides=(4, 16, 32), anchors=yolo.SEED_DEEPLESION_ANCHORS)
    config.data.test_size = 640 if cpu else 1024
  config.model = model
  steps = 600 if cpu else 16000
  config.optimizer = dict(name="sgd", lr=0.01 if cpu else 0.001, momentum=0.949, weight_decay=5e-4, betas=(0.9, 0.999),
                          eps=1e-8, warmup_steps=50 if cpu else 1000, warmup_ratio=0.001,
                          decay_steps=(int(0.8 * steps), int(0.9 * steps)), decay_epochs=(), decay_factor=0.1,
                          grad_clip_norm=10.0 if cpu else 0.0)
  config.train = dict(base.train.to_dict(), batch_size=4 if cpu else 64, steps=steps, epochs=0, init_from="")
  config.lock()
  return config
