"""Checkpoints of other frameworks: :mod:`acne_jax.interop.torch` (torchvision, MMDetection) and
:mod:`acne_jax.interop.darknet` (YOLOv4 ``.weights``)."""
