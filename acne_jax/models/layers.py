"""Layers every model shares.

``Conv`` is Flax's ``nn.Conv`` with :func:`acne_jax.ops.conv.conv_general_dilated`, whose kernel
gradient on CPU is a sum of matrix products instead of XLA's slow weight-gradient convolution;
forward values and every other platform are unchanged. Models build convolutions with it.
"""

import functools

import flax.linen as nn

from acne_jax.ops import conv as conv_ops

Conv = functools.partial(nn.Conv, conv_general_dilated=conv_ops.conv_general_dilated)
