"""Checkpoints of other frameworks: :mod:`acne_jax.interop.torch` (torchvision, MMDetection)."""
