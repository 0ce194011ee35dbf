"""Mask R-CNN with the vanilla RPN head: the box head plus the FCN mask branch.

Launch:
  python -m acne_jax.train --config=configs/mask_rcnn.py             # embedded synthetic data
  python -m acne_jax.train --config=configs/mask_rcnn.py:acne_scu

The argument after ':' picks the data set (one with polygon annotations: the synthetic set or
AcneSCU); the batches then carry each lesion's mask (``data.with_masks``) and evaluation reports
mask AP beside box AP.
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  return common.detector_config(arg or "synthetic", rpn_head="rpn", roi_head="mask")
