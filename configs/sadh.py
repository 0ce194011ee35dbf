"""SADH + NWD Faster R-CNN (Zhang et al., "Learning high-quality proposals for acne detection").

Launch:
  python -m acne_jax.train --config=configs/sadh.py               # embedded synthetic data, 2-core CPU
  python -m acne_jax.train --config=configs/sadh.py:acne_scu      # the paper's AcneSCU setting
  python -m acne_jax.train --config=configs/sadh.py --config.train.steps=100 --workdir=/tmp/run

The argument after ':' picks the data set; everything a run does is in the returned config, and
any field can be overridden on the command line (a mistyped key is an error).
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
  return common.detector_config(arg or "synthetic", rpn_head="sadh")
