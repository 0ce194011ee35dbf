"""Faster R-CNN with the vanilla RPN head: configs/sadh.py minus SADH and NWD, for ablation.

Launch:
  python -m acne_jax.train --config=configs/faster_rcnn.py        # embedded synthetic data
  python -m acne_jax.train --config=configs/faster_rcnn.py:acne_scu
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  return common.detector_config(arg or "synthetic", rpn_head="rpn")
