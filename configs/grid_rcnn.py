"""One grid stage on SADH + NWD proposals, no scoring modules: the ablation baseline of CPM R-CNN.

This is CPM R-CNN's Table 1 baseline (a classification branch beside one grid branch, mapping
ratio 1, i.e. Grid R-CNN's 2x extended region, without feature fusion and without the cascade,
ISM or RSM). Grid R-CNN's own feature fusion is ``--config.model.roi_head.cpm.fusion=True``.

Launch:
  python -m acne_jax.train --config=configs/grid_rcnn.py             # embedded synthetic data
  python -m acne_jax.train --config=configs/grid_rcnn.py:acne_scu
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  config = common.detector_config(arg or "synthetic", rpn_head="sadh", roi_head="cpm")
  config.model.roi_head.cpm.update(mapping_ratios=(1.0,), stage_ious=(0.5,), stage_loss_weights=(1.0,), ism=False, rsm=False)
  return config
