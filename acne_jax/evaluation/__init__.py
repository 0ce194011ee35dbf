"""Evaluation: COCO-style metrics as the papers report them, proposal recall, figures."""
