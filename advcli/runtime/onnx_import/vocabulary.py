"""The input contract's closed vocabularies, as registries the command line reads without torch."""

from __future__ import annotations

from ...registry import Registry

LAYOUTS: Registry[str] = Registry("layout", param="layout", order=("nchw", "nhwc"), entries={
    "nchw": "batches (N, C, H, W), as torch and advcli hold images",
    "nhwc": "batches (N, H, W, C), as TensorFlow and Keras exports take them",
})
OUTPUT_KINDS: Registry[str] = Registry("output kind", param="outputs", order=("auto", "logits", "probabilities"), entries={
    "auto": "find out: a trailing Softmax is cut, rows that sum to 1 are attacked through their logarithm",
    "logits": "unnormalised scores",
    "probabilities": "rows that sum to 1 (attacked before a trailing Softmax, else through their logarithm)",
})
CHANNEL_ORDERS: Registry[str] = Registry("channel order", param="channel_order", order=("rgb", "bgr"), entries={
    "rgb": "channels as advcli's data holds them",
    "bgr": "the three channels reversed (OpenCV and Caffe models)",
})
INPUT_RANGES: Registry[str] = Registry("input range", param="input_range", order=("0,1", "0,255"), entries={
    "0,1": "pixels in [0, 1]",
    "0,255": "pixels in [0, 255] (a uint8 input takes whole values only: an integer threat model)",
})
