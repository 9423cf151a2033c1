"""SimpleDet's model zoo on PyTorch."""

from simpledet.api import Predictor, build_model
from simpledet.config import Config, load_config

__all__ = ["Config", "Predictor", "build_model", "load_config"]
__version__ = "0.1.0"
