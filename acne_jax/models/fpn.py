"""Feature Pyramid Network (Lin et al., 2017): P2-P5 and an optional P6.

1x1 lateral convolutions bring C2-C5 to ``channels``; each coarser map is upsampled
(nearest, x2) and added to the next finer lateral; a 3x3 output convolution smooths every sum.
P6, the extra top level, is made by ``extra_level``: ``"max_pool"``, a stride-2 1x1 max-pool of
P5 (torchvision's ``LastLevelMaxPool``, MMDetection ``add_extra_convs=False``), or ``"conv"``, a
3x3 stride-2 convolution on P5 (MMDetection ``add_extra_convs="on_output"``); ``"none"``, the
SADH reference's choice (``num_outs=4``), keeps P2-P5 only because acne lesions are small.
"""

from __future__ import annotations

from typing import Dict

import flax.linen as nn
import jax.numpy as jnp

from acne_jax.models.layers import Conv

# MMDetection's FPN uses PyTorch's default conv init; Xavier-uniform is the Detectron2 choice and
# trains as well from scratch.
fpn_init = nn.initializers.xavier_uniform()


def _upsample_to(x: jnp.ndarray, size) -> jnp.ndarray:
  """Nearest-neighbour upsampling of ``[B, h, w, C]`` to ``[B, H, W, C]`` (H <= 2h, W <= 2w)."""
  x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x[:, : size[0], : size[1], :]


class FPN(nn.Module):
  """Attributes:
    channels: output channels of every level (256 in the papers).
    extra_level: how P6 is made: ``"none"``, ``"max_pool"`` or ``"conv"`` (module docstring).
  """

  channels: int = 256
  extra_level: str = "none"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Dict[str, jnp.ndarray]) -> Dict[str, jnp.ndarray]:
    """Args: ``{"C2": [B, H/4, W/4, c2], ..., "C5": ...}``.

    Returns:
      ``{"P2": [B, H/4, W/4, channels], ..., "P5": ...}`` (and ``"P6"``).
    """
    names = ("C2", "C3", "C4", "C5")
    missing = [n for n in names if n not in features]
    if missing:
      raise ValueError(f"FPN: argument 'features' lacks {missing}; it needs C2-C5.")
    laterals = [
        Conv(self.channels, (1, 1), kernel_init=fpn_init, name=f"lateral_{n}", dtype=self.dtype)(features[n])
        for n in names
    ]
    for i in range(len(laterals) - 1, 0, -1):
      laterals[i - 1] = laterals[i - 1] + _upsample_to(laterals[i], laterals[i - 1].shape[1:3])
    outputs = {
        f"P{i + 2}": Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), kernel_init=fpn_init, name=f"output_P{i + 2}", dtype=self.dtype)(lateral)
        for i, lateral in enumerate(laterals)
    }
    if self.extra_level == "max_pool":
      outputs["P6"] = outputs["P5"][:, ::2, ::2, :]
    elif self.extra_level == "conv":
      outputs["P6"] = Conv(self.channels, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), kernel_init=fpn_init,
                              name="extra_P6", dtype=self.dtype)(outputs["P5"])
    elif self.extra_level != "none":
      raise ValueError(f"FPN: extra_level must be 'none', 'max_pool' or 'conv'; got {self.extra_level!r}.")
    return outputs
