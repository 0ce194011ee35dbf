"""Convert a PyTorch detector checkpoint into a workdir that ``evaluate`` and ``predict`` read.

    python -m acne_jax.convert --from=torchvision --checkpoint=fasterrcnn_resnet50_fpn.pth \\
        --config=configs/torchvision_faster_rcnn.py:acne04 --out=workdir/torchvision_acne04
    python -m acne_jax.convert --from=mmdet --checkpoint=sadh_epoch_15.pth \\
        --config=configs/mask_rcnn_sadh.py:acne_scu --out=workdir/sadh_authors
    python -m acne_jax.evaluate --config=configs/torchvision_faster_rcnn.py:acne04 --workdir=workdir/torchvision_acne04

``--from=torchvision``: a torchvision ``fasterrcnn_resnet50_fpn`` (v1) state dict;
``--from=mmdet``: an MMDetection 2.x / 3.x Faster or Mask R-CNN R50-FPN checkpoint (with DCN and
the SADH authors' ``RPNHeadNwd``); ``--from=resnet``: a torchvision ImageNet ResNet, backbone
only (the rest keeps its initialisation; normally given as ``model.backbone.pretrained`` to
``train`` instead). The config must describe the checkpoint's model (depth, DCN stages, heads,
number of classes); a key that does not fit is an error listing the keys.

The workdir gets ``config.json`` and an orbax checkpoint at step 0 in the layout ``train``
writes, its meta naming the source file, so ``evaluate`` and ``predict`` read it as they read a
trained one (``predict`` counts lesions at score 0.5 unless ``--score_threshold`` says otherwise:
a converted checkpoint has no calibrated thresholds).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import jax
import ml_collections
import optax

from acne_jax import cli
from acne_jax.interop import torch as interop
from acne_jax.paths import resolve


def convert(config: ml_collections.ConfigDict, source: str, checkpoint: str, out: str) -> str:
  """Writes ``out/config.json`` and ``out/checkpoints/0``; returns the resolved ``out``.

  Raises:
    FileNotFoundError, ValueError (:class:`interop.StateDictMismatch`): naming the file and keys.
  """
  from acne_jax import train
  from acne_jax.models.detector import TwoStageDetector, spec_from_config
  from acne_jax.training import optim
  from acne_jax.training.checkpoint import Checkpointer

  if source not in interop.LAYOUTS:
    raise ValueError(f"--from must be one of {', '.join(interop.LAYOUTS)}; got {source!r}.")
  out = resolve(out)
  checkpoints = os.path.join(out, "checkpoints")
  if os.path.isdir(checkpoints) and os.listdir(checkpoints):
    raise FileExistsError(f"{out} already holds checkpoints; pass --out with a new folder.")
  state_dict = interop.read_state_dict(checkpoint)
  spec = spec_from_config(config.model)
  model = TwoStageDetector(spec, train=True)
  image_size, max_boxes = tuple(config.data.image_size), config.data.max_boxes
  abstract = jax.eval_shape(lambda k: train.create_state(model, optax.identity(), k, image_size, max_boxes, 1), jax.random.key(0))
  frozen = optim.frozen_backbone_predicate(spec.backbone.frozen_stages) if spec.backbone.frozen_stages >= 0 else None
  tx, _ = optim.make_optimizer(train.optimizer_config(config, per_epoch=1), abstract["params"], frozen)
  if source == "resnet":  # backbone only: the rest keeps a real initialisation
    state = train.initial_state(model, tx, jax.random.key(config.train.seed), image_size, max_boxes, 1)
    template = {"params": state["params"], "batch_stats": state["batch_stats"]}
  else:
    template = {"params": abstract["params"], "batch_stats": abstract["batch_stats"]}
  variables = interop.from_state_dict(state_dict, template, source, source=resolve(checkpoint))
  params = jax.tree_util.tree_map(jax.numpy.asarray, variables["params"])
  state = {"step": jax.numpy.asarray(0, jax.numpy.int32), "params": params,
           "batch_stats": jax.tree_util.tree_map(jax.numpy.asarray, variables.get("batch_stats", {})),
           "opt_state": tx.init(params)}
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  checkpointer = Checkpointer(checkpoints)
  checkpointer.save(0, state, {"step": 0, "converted_from": resolve(checkpoint), "layout": source})
  checkpointer.close()
  return out


def main(argv: Optional[list] = None) -> int:
  from absl import flags
  from ml_collections import config_flags

  argv = list(sys.argv if argv is None else argv)
  flag_values = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file("config", None, "The config describing the checkpoint's model.",
                                                flag_values=flag_values, lock_config=True)
  flags.DEFINE_enum("from", None, list(interop.LAYOUTS), "Where the checkpoint comes from.", flag_values=flag_values)
  flags.DEFINE_string("checkpoint", None, "The PyTorch checkpoint (.pth).", flag_values=flag_values)
  flags.DEFINE_string("out", None, "The workdir to write.", flag_values=flag_values)
  if cli.parse(flag_values, argv) is None:
    return 2
  if config_flag.value is None or not flag_values["from"].value or not flag_values.checkpoint or not flag_values.out:
    print("error: --from, --checkpoint, --config and --out are required, e.g. python -m acne_jax.convert --from=torchvision "
          "--checkpoint=fasterrcnn.pth --config=configs/torchvision_faster_rcnn.py:acne04 --out=workdir/torchvision", file=sys.stderr)
    return 2
  try:
    out = convert(config_flag.value, flag_values["from"].value, flag_values.checkpoint, flag_values.out)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(json.dumps({"workdir": out, "from": flag_values["from"].value, "checkpoint": resolve(flag_values.checkpoint)}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
