"""TFDS dataset builders of acne_jax (importing a builder module registers it with TFDS)."""
