"""Data: the embedded synthetic acne data set, TFDS sources and record decoding."""
