"""acne_jax: JAX/Flax two-stage lesion detectors (SADH + NWD, Faster/Mask R-CNN, CPM R-CNN)."""

__version__ = "0.1.0"
