"""Mask R-CNN + SADH + NWD: the SADH paper's headline model (Table 1, 0.507 AP on AcneSCU).

Launch:
  python -m acne_jax.train --config=configs/mask_rcnn_sadh.py             # embedded synthetic data
  python -m acne_jax.train --config=configs/mask_rcnn_sadh.py:acne_scu    # the paper's setting

The argument after ':' picks the data set (one with polygon annotations: the synthetic set or
AcneSCU); evaluation reports box and mask AP.
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  return common.detector_config(arg or "synthetic", rpn_head="sadh", roi_head="mask")
