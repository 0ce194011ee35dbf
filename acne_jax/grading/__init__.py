"""Acne severity grading: whole-face grades instead of lesion boxes.

Two routes to a grade (issue 14). The IGA route follows Bernhard et al. 2024 ("Automatic acne
severity grading with a small and imbalanced data set of low-resolution images",
``shared/papers/iga_acne_severity_grading.md``): a CIFAR-style ResNet-110
(:mod:`acne_jax.models.grader`) grades a visit's views on the IGA scale grouped as 0-1 / 2 / 3-4,
trained with a class-weighted cross-entropy (:func:`acne_jax.ops.losses.class_weighted_cross_entropy`),
the paper's per-image augmentation (:mod:`.augment`), its patient-disjoint, grade-balanced split
(:mod:`.split`) and its schedule (:mod:`.train_step`). The count route turns detected lesions into a
Hayashi grade (:mod:`.scales`). Both are scored by :mod:`.metrics` (accuracy, per-grade precision,
recall and F1, confusion matrix, quadratic kappa). ``scales``, ``split``, ``metrics`` and ``augment``
are NumPy only (the data builders import ``scales``); only ``train_step`` imports JAX.
"""
