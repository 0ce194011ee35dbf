"""CPM R-CNN on SADH + NWD proposals: cascade grid heads (3 stages), IoU and resampling scoring.

Launch:
  python -m acne_jax.train --config=configs/cpm_rcnn.py             # embedded synthetic data, 2-core CPU
  python -m acne_jax.train --config=configs/cpm_rcnn.py:acne_scu    # AcneSCU, the SADH paper's data setting

The argument after ':' picks the data set as in configs/sadh.py. The RoI head is
``model.roi_head.type = "cpm"``; its settings are ``model.roi_head.cpm`` (acne_jax/models/specs.py,
CPMHeadSpec) and the classification branch's are ``model.roi_head.box``. Ablations by override:
  --config.model.roi_head.cpm.ism=False --config.model.roi_head.cpm.rsm=False
Pet's legacy geometry (the reference implementation's):
  --config.model.roi_head.plus_one=True --config.model.roi_head.aligned=False --config.model.roi_head.sampling_ratio=2
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  return common.detector_config(arg or "synthetic", rpn_head="sadh", roi_head="cpm")
