"""Shared pieces of the detector configs: one table of data-set settings, one builder.

``detector_config(data, rpn_head, roi_head)`` returns a locked ConfigDict with sections ``data``,
``model`` (sub-sections ``backbone``, ``neck``, ``rpn``, ``roi_head``: every field of
``acne_jax.models.specs``, the paper's defaults, then this data set's and heads' values),
``optimizer``, ``train`` and ``eval``. Training length is ``train.steps`` or, when that is 0,
``train.epochs`` over the training split; learning-rate decays are at ``optimizer.decay_steps``
or ``optimizer.decay_epochs`` (converted with the same steps per epoch).
"""

import ml_collections

from acne_jax.models import specs
from acne_jax.training import optim

# AcneSCU normalisation of the reference (skin_config.py), RGB.
SKIN_MEAN = (144.578, 107.304, 90.519)
SKIN_STD = (78.271, 63.2, 56.992)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# torchvision's ImageNet ResNet-50 (ResNet50_Weights.IMAGENET1K_V1), where torchvision caches it.
PRETRAINED_RESNET50 = "~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth"


# Input-pipeline settings every data set has. Every data set trains through one pipeline
# (acne_jax/data/pipeline.py: TFDS source -> grain -> padded static-shape batches), in
# worker_count processes (0: in the training process). cache_in_memory keeps the decoded records
# in RAM inside that pipeline (the embedded data sets; needs worker_count=0). crop_size /
# crop_min_size cut random masked crops; hflip, vflip, rotate90 (multiples of 90 degrees) and
# brightness (factor in [1 - b, 1 + b]) augment; rotate_degrees (a random angle in [-d, d], reflected
# border, boxes enclosing the turned boxes) and zoom_crop (cut up to c px from every side, resize
# back) are the DeepLesion benchmark's augmentation; mosaic (a probability) is YOLOv4's 2 x 2 mosaic of
# four training records on the image_size canvas; class_balanced gives each class an equal share of
# every batch. Settings the pipeline cannot carry out are refused (pipeline.check_options).
# with_masks: the batches carry each lesion's mask (from its polygon) as a mask_size x mask_size
# bitmap over its own box (acne_jax/ops/mask_targets.py); set by the mask configs.
# resize_style "mmdetection": MMDetection's Resize(img_scale=(resize_max_size, resize_min_size),
# keep_ratio=True) instead (rounded sizes, OpenCV's bilinear pixels; whole ACNE04 images).
# resize_min_size / resize_max_size: resize every image like torchvision's detectors
# (GeneralizedRCNNTransform, acne_jax/data/resize.py): short side to resize_min_size unless the
# long side would exceed resize_max_size (torchvision: 800 and 1333), right after decoding, boxes
# and polygons scaled with it; evaluation maps detections back to the original pixels. 0, 0: no
# resize. data.image_size must hold the resized images.
# test_size: when > 0, evaluation, calibration and predict resize every image to fit a test_size x
# test_size canvas, whatever size training used (the DeepLesion benchmark's YOLOv4 trains at 869
# and infers at 1024); 0: the training size.
_PIPELINE = dict(worker_count=8, cache_in_memory=False, crop_size=0, crop_min_size=10.0, hflip=True, vflip=False,
                 rotate90=False, brightness=0.0, rotate_degrees=0.0, zoom_crop=0, mosaic=0.0, class_balanced=False, with_masks=False, mask_size=56,
                 resize_min_size=0, resize_max_size=0, resize_style="torchvision", test_size=0)


def is_synthetic(data: str) -> bool:
  """The embedded data sets: "synthetic" (easy patches), "synthetic_hard[_plain]" (crops of
  whole faces at AcneSCU's statistics), "synthetic_faces" (the graded faces' face squares) and
  "synthetic_ct" (CT phantoms in DeepLesion's format); they share the thin CPU-sized model."""
  return data.startswith("synthetic")


def _data(name):
  if name in ("synthetic_hard", "synthetic_hard_plain"):
    # acne_jax/data/synthetic_hard.py: 384 x 384 masked crops of whole synthetic faces with
    # AcneSCU's frequencies, sizes and density; "other" dropped as in the reference.
    # synthetic_hard_plain trains on the same faces cut without masking (partial lesions kept).
    return dict(
        _PIPELINE, name="synthetic_acne", builder_config="hard", data_dir="",
        train_split="train_plain" if name.endswith("_plain") else "train", eval_split="test",
        image_size=(384, 384), max_boxes=64, drop_labels=(9,), mean=SKIN_MEAN, std=SKIN_STD, worker_count=0,
        cache_in_memory=True,
    )
  if name == "synthetic":
    return dict(
        _PIPELINE, name="synthetic_acne", builder_config="s256", data_dir="", train_split="train", eval_split="test",
        image_size=(256, 256), max_boxes=32, drop_labels=(), mean=SKIN_MEAN, std=SKIN_STD, worker_count=0,
        cache_in_memory=True,
    )
  if name in ("synthetic_faces", "synthetic_faces_tiny"):
    # acne_jax/data/synthetic_face_crops.py: the 384 x 384 face squares of the embedded graded faces
    # (every view of 284 visits of 80 patients, split by patient as the grader splits them), lesions
    # 5-13 px; the count-based grading route's detector (configs/count_grader.py). _tiny: 8 patients.
    return dict(
        _PIPELINE, name="synthetic_acne", builder_config="faces_tiny" if name.endswith("_tiny") else "faces", data_dir="",
        train_split="train", eval_split="test", image_size=(160, 160) if name.endswith("_tiny") else (384, 384),
        max_boxes=128, drop_labels=(), mean=SKIN_MEAN, std=SKIN_STD, worker_count=0, cache_in_memory=True,
    )
  if name == "acne_scu":
    # Pre-cut 1024 masked crops as the reference trains on; `--config.data.builder_config=whole
    # --config.data.crop_size=1024` cuts random masked crops on the fly instead.
    return dict(
        _PIPELINE, name="acne_scu", builder_config="crops_1024", data_dir="", train_split="train", eval_split="test",
        image_size=(1024, 1024), max_boxes=512, drop_labels=(9,), mean=SKIN_MEAN, std=SKIN_STD,
    )
  if name == "acne04":
    # Whole images as the paper's ACNE04 experiment (fold 0 of the official 5), one class, of any
    # size: MMDetection's keep-ratio resize to a long side of 1024 px, padded to 1024 x 1024;
    # evaluation and predict map the detections back to the original pixels.
    return dict(
        _PIPELINE, name="acne04", builder_config="fold0", data_dir="", train_split="train", eval_split="test",
        image_size=(1024, 1024), max_boxes=256, drop_labels=(), mean=IMAGENET_MEAN, std=IMAGENET_STD,
        resize_style="mmdetection", resize_min_size=1024, resize_max_size=1024,
    )
  if name == "deep_lesion":
    # 3-slice 512x512 CT input (key slice +-2 mm as RGB), 8 coarse lesion types, each type an
    # equal share of every batch as in the DeepLesion benchmark. Only the official validation and
    # test splits carry lesion types (the benchmark ignores type -1), hence these splits.
    return dict(
        _PIPELINE, name="deep_lesion", builder_config="default", data_dir="", train_split="validation", eval_split="test",
        image_size=(512, 512), max_boxes=16, drop_labels=(-1,), mean=(50.0, 50.0, 50.0), std=(50.0, 50.0, 50.0),
        class_balanced=True, vflip=False,
    )
  if name == "synthetic_ct":
    # acne_jax/data/synthetic_ct.py: CT phantoms with DeepLesion's 8 lesion types, written as a
    # DeepLesion release and built by the deep_lesion builder (so the input is :deep_lesion's),
    # generated on first use into <data_dir>/synthetic_ct/<ct_set> (ct_set "default": 120
    # patients, ~330 key slices; "tiny": 6 patients, for tests). Every split is typed, so it trains
    # on train; records kept in memory as the other embedded sets.
    # Built with each slice's DICOM window (builder config "dicom_window"), not the 3DCE / MULAN
    # [-1024, 3071] window: stored as uint8, that window leaves 16 HU per grey level and most
    # lesions one or two levels from their organ (AP@0.5 0.007 against 0.094 after 600 steps,
    # BENCHMARKS.md; docs/decisions.md).
    return dict(_data("deep_lesion"), name="synthetic_ct", builder_config="dicom_window", ct_set="default",
                train_split="train", worker_count=0, cache_in_memory=True)
  raise ValueError(f"unknown data set {name!r} after ':' in --config; choose 'synthetic', 'synthetic_hard', "
                   "'synthetic_hard_plain', 'synthetic_faces', 'synthetic_ct', 'acne_scu', 'acne04' or 'deep_lesion'.")


def _model(data: str, rpn_head: str, roi_head: str) -> dict:
  """The ``model`` section: every field of every component (``acne_jax.models.specs``), so each
  can be overridden on the command line and ``config.json`` shows the whole model; the paper's
  defaults first, then this data set's and heads' values."""
  model = specs.default_model_config()
  model["rpn"].update(head=rpn_head, with_nwd=rpn_head == "sadh")
  num_classes = 8 if data == "synthetic_ct" else 10 if is_synthetic(data) else {"acne_scu": 10, "acne04": 1, "deep_lesion": 8}[data]
  model["roi_head"].update(type=roi_head, num_classes=num_classes)
  if roi_head == "cpm":
    # CPM R-CNN's inference: score > 0.03 and per-class NMS 0.3 on the unrefined boxes, before the grid stages.
    model["roi_head"]["box"].update(score_threshold=0.03, nms_iou=0.3)
  if is_synthetic(data):
    # Sized so training and evaluation finish in ~7 minutes on a 2-core CPU, from scratch (no
    # ImageNet weights can be downloaded): a thin ResNet-18 with GroupNorm, a 64-channel FPN,
    # lighter heads, and anchors of scale 4 (16-px base on P2) because the synthetic lesions are
    # 8-40 px (see docs/decisions.md).
    model["backbone"].update(depth=18, width=32, norm="gn", zero_init_residual=True)
    model["neck"].update(channels=64)
    model["rpn"].update(anchor_scales=(4.0,), train_nms_pre=1000, train_max_proposals=300, test_nms_pre=1000,
                        test_max_proposals=300, test_min_size=0.0)
    model["roi_head"].update(max_sampling_ratio=2)
    model["roi_head"]["box"].update(fc_dim=256, num_samples=128, pre_nms_top_k=2000)
    model["roi_head"]["mask"].update(channels=32)  # 256 would cost more than the whole backbone here
    # CPM's grid heads thinned the same way, as each stage's head costs more than the box head:
    # 4 channels per point (36 in all, GN 18 groups of 2) instead of 576, but all eight convs: a
    # point's heatmap window is centred half a box away from where the RoI features show its edge,
    # and only the eight-conv stack's receptive field spans that (docs/decisions.md);
    # 16 stage-0 RoIs per image and 24 in each later stage (not 16 + 32 padded ground-truth slots:
    # an image has at most 20 lesions and ~13 on average, so few are cut), lighter scoring modules,
    # 100 detections (the evaluation's maxDets).
    model["roi_head"]["cpm"].update(point_channels=4, gn_groups=18, num_convs=8, max_grid_rois=16, later_stage_rois=24,
                                    ism_fc_dim=256, rsm_num_samples=128)
    if roi_head == "cpm":
      model["roi_head"]["box"].update(max_detections=100)
    if data.startswith("synthetic_faces"):
      # The graded faces' lesions are 5-13 px: anchors of scale 2 (8 px on P2, 16 px on P3).
      model["rpn"].update(anchor_scales=(2.0,))
  else:
    # The paper (section 4.2, the reference's configs): an ImageNet ResNet-50 (torchvision's
    # weights, read from the file torchvision itself caches) with deformable convolutions in
    # c3-c5 and batch norm in eval mode with trained affine terms (norm_eval=True,
    # requires_grad=True); stage 1 frozen in the Faster R-CNN config, nothing in the Mask R-CNN one.
    model["backbone"].update(depth=50, width=64, norm="eval_bn", frozen_stages=-1 if roi_head == "mask" else 1,
                             deformable_stages=(False, True, True, True), pretrained=PRETRAINED_RESNET50)
  return model


# Data sets whose lesions are outlined by polygons; the others (ACNE04's VOC boxes, DeepLesion's
# RECIST boxes) store each box as a rectangle, which would teach a mask head rectangles.
WITH_POLYGONS = ("synthetic", "synthetic_hard", "synthetic_hard_plain", "acne_scu")


def detector_config(data: str, rpn_head: str, roi_head: str = "box") -> ml_collections.ConfigDict:
  if roi_head == "mask" and data not in WITH_POLYGONS:
    raise ValueError(f"the {data} data set has box annotations only (no lesion outlines), so a mask head cannot learn "
                     f"from it; use a box config (configs/sadh.py or configs/faster_rcnn.py) or a data set with polygons: "
                     f"{', '.join(WITH_POLYGONS)}.")
  config = ml_collections.ConfigDict()
  config.data = _data(data)
  config.data.with_masks = roi_head == "mask"  # the mask head needs mask targets
  config.model = _model(data, rpn_head, roi_head)
  # calibration_split: where the final checkpoint's lesion-counting score thresholds are chosen
  # (max F1 at eval.iou, per class); "" for none (predict then counts at 0.5 unless told): ACNE04's
  # folds have no validation split, and DeepLesion's typed validation split is what we train on.
  calibration_split = "validation" if is_synthetic(data) else {"acne_scu": "validation", "acne04": "", "deep_lesion": ""}[data]
  # froc_definition: the FROC every evaluation of a checkpoint adds to its box AP/AR (at eval.iou,
  # with every detection; acne_jax/evaluation/coco_metrics.py froc): "deeplesion" (the DeepLesion
  # literature's, MULAN / 3DCE), "coco" (COCO's one-to-one matching) or "" for none;
  # froc_class_agnostic: lesion vs background, the categories ignored (the literature's). DeepLesion
  # reports it as the papers do; the other data sets report none.
  deep_lesion = data in ("deep_lesion", "synthetic_ct")
  config.eval = dict(batch_size=8, iou=0.5, max_dets=100, every_steps=0, calibration_split=calibration_split,
                     froc_definition="deeplesion" if deep_lesion else "", froc_class_agnostic=deep_lesion)
  if data.startswith("synthetic_hard"):
    # The experiment budget of scripts/reproduce_sadh.py: 384 x 384 crops in batches of 2, 240
    # steps (the learning rate halved with the batch). The script also starts every row from the
    # backbone and FPN of an easy-set run (model.backbone.pretrained, model.neck.pretrained).
    config.optimizer = dict(lr=0.01, momentum=0.9, weight_decay=1e-4, warmup_steps=50, warmup_ratio=0.001,
                            decay_steps=(170, 215), decay_epochs=(), decay_factor=0.1, grad_clip_norm=10.0)
    config.train = dict(batch_size=2, steps=240, epochs=0, seed=0, log_every=20, checkpoint_every=100, keep_checkpoints=2)
  elif data.startswith("synthetic_faces"):
    config.optimizer = dict(lr=0.02, momentum=0.9, weight_decay=1e-4, warmup_steps=100, warmup_ratio=0.001,
                            decay_steps=(350, 450), decay_epochs=(), decay_factor=0.1, grad_clip_norm=10.0)
    config.train = dict(batch_size=4, steps=500, epochs=0, seed=0, log_every=20, checkpoint_every=100, keep_checkpoints=2)
  elif data == "synthetic_ct":
    # CPU-sized like the other embedded sets: 512 x 512 slices in batches of 2 (0.5-0.9 s a step
    # for the thin model on 2 cores), 600 steps (5-9 minutes, ~5 epochs of the default set's 251
    # training key slices), the learning rate halved with the batch.
    config.optimizer = dict(lr=0.01, momentum=0.9, weight_decay=1e-4, warmup_steps=50, warmup_ratio=0.001,
                            decay_steps=(420, 540), decay_epochs=(), decay_factor=0.1, grad_clip_norm=10.0)
    config.train = dict(batch_size=2, steps=600, epochs=0, seed=0, log_every=20, checkpoint_every=200, keep_checkpoints=2)
  elif data == "synthetic":
    config.optimizer = dict(lr=0.02, momentum=0.9, weight_decay=1e-4, warmup_steps=100, warmup_ratio=0.001,
                            decay_steps=(350, 450), decay_epochs=(), decay_factor=0.1, grad_clip_norm=10.0)
    config.train = dict(batch_size=4, steps=500, epochs=0, seed=0, log_every=20, checkpoint_every=100, keep_checkpoints=2)
  else:
    # The paper (section 4.2) and the reference's skin_config: batch 2, SGD 0.002, 15 epochs with
    # decay at 8 and 11. ACNE04 and DeepLesion use the same schedule (the SADH paper's ACNE04
    # experiment does).
    config.optimizer = dict(lr=0.002, momentum=0.9, weight_decay=1e-4, warmup_steps=50, warmup_ratio=0.001,
                            decay_steps=(), decay_epochs=(8, 11), decay_factor=0.1, grad_clip_norm=0.0)
    config.train = dict(batch_size=2, steps=0, epochs=15, seed=0, log_every=50, checkpoint_every=2000, keep_checkpoints=3)
  # optimizer.name: "sgd" (PyTorch's SGD: momentum, coupled weight decay) or "adam" (torch.optim.Adam:
  # betas, eps, the same coupled weight decay); acne_jax/training/optim.py.
  config.optimizer.update(name="sgd", betas=optim.ADAM_BETAS, eps=optim.ADAM_EPS)
  # train.init_from: an acne_jax workdir whose backbone, neck, RPN and box-head shared layers start
  # the run (e.g. torchvision's COCO detector after python -m acne_jax.convert); "" for none.
  config.train.update(init_from="")
  config.lock()
  return config


def torchvision_conventions(config: ml_collections.ConfigDict, data: str) -> None:
  """Turns a ``detector_config(data, "rpn", "box")`` into torchvision's ``fasterrcnn_resnet50_fpn``
  (v1) conventions, in place (``configs/torchvision_faster_rcnn.py`` lists them)."""
  model = config.model
  model.backbone.update(depth=50, width=64, norm="frozen_bn", frozen_stages=1, zero_init_residual=False,
                        deformable_stages=(False, False, False, False),
                        pretrained="" if is_synthetic(data) else PRETRAINED_RESNET50)
  model.neck.update(channels=256, extra_level="max_pool")
  model.rpn.update(head="rpn", with_nwd=False, anchor_strides=(4, 8, 16, 32, 64), anchor_scales=(8.0,),
                   anchor_ratios=(0.5, 1.0, 2.0), anchor_round=True, anchor_steps_from_sizes=True, pos_iou=0.7, neg_iou=0.3, min_pos_iou=0.0,
                   num_samples=256, positive_fraction=0.5, train_nms_pre=2000, train_max_proposals=2000,
                   test_nms_pre=1000, test_max_proposals=1000, nms_iou=0.7, train_min_size=1e-3, test_min_size=1e-3,
                   min_size_inclusive=True)
  model.roi_head.update(roi_size=7, sampling_ratio=2, aligned=False, max_sampling_ratio=2)
  model.roi_head.box.update(fc_dim=1024, pos_iou=0.5, neg_iou=0.5, min_pos_iou=0.5, num_samples=512, positive_fraction=0.25,
                            score_threshold=0.05, nms_iou=0.5, max_detections=100, min_size=1e-2,
                            pre_nms_top_k=1000 * (model.roi_head.num_classes))
  config.data.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
  if not is_synthetic(data):
    # torchvision's GeneralizedRCNNTransform: shorter side 800, longer side at most 1333, the
    # batch padded to a multiple of 32; a static canvas holds either orientation.
    config.data.update(resize_min_size=800, resize_max_size=1333, image_size=(1344, 1344), crop_size=0)
