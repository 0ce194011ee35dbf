"""acne_jax: JAX/Flax two-stage lesion detectors (SADH + NWD, Faster R-CNN, Mask R-CNN; CPM R-CNN is planned)."""

__version__ = "0.1.0"
