"""Pure jnp detection ops: no Flax, no config. Boxes are x1y1x2y2 pixels without +1.

Import from the submodules (``from acne_jax.ops import boxes``; ``boxes.box_iou``) so that a
reader sees where each function lives.
"""
