"""The quick-start Faster R-CNN C4 with INT8 quantisation-aware training (`qat`, SimpleDet's config/int8
in small): fake-quantised weights and activations of every conv and fully connected layer, float for
the first 20 training steps (SimpleDet's delay_quant), then 8-bit."""

from pathlib import Path

from simpledet.config import load_config
from simpledet.engine.qat import QATConfig

config = load_config(Path(__file__).parent / "faster_r18c4_shapes.py")
config.qat = QATConfig(delay=20)
