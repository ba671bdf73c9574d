"""Conditional building blocks, each a drop-in ``nn.Module``."""
from __future__ import annotations

from .dual_bn import DualBatchNorm2d
from .film import FiLM, LambdaEncoding, NormFiLM
from .noise_injection import NoiseInjection
from .noisy import NoisyConv2d, NoisyLinear, resample_noise
from .normalize import Normalize
from .slimmable import SlimmableConv2d, SlimmableLinear, SlimmableNoisyConv2d, SlimmableNoisyLinear
from .switchable_bn import SwitchableBatchNorm2d

__all__ = ["DualBatchNorm2d", "FiLM", "LambdaEncoding", "NoiseInjection", "NoisyConv2d",
           "NoisyLinear", "NormFiLM", "Normalize", "SlimmableConv2d", "SlimmableLinear",
           "SlimmableNoisyConv2d", "SlimmableNoisyLinear", "SwitchableBatchNorm2d",
           "resample_noise"]
