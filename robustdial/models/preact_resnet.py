"""Pre-activation CIFAR ResNet-(6n+2) with EnResNet noise injection and ensembles.

Papers: K. He et al., "Identity Mappings in Deep Residual Networks" (ECCV
2016) for the pre-activation block; B. Wang et al., "ResNets Ensemble via the
Feynman-Kac Formalism" (NeurIPS 2019, EnResNet) and the Binary-Relax paper
(papers/binary-relax-enresnet-tradeoff.txt) for noise injection and En_n.

Architecture (EnResNet's ``PreAct_ResNet_Cifar``): stem conv 3×3 3→16 without
BN; three stages of n blocks, widths 16/32/64, stride 2 at the start of
stages 2 and 3; block = BN-ReLU-conv3×3-BN-ReLU-conv3×3 + residual, where a
shape change uses a 1×1 strided conv (no BN) on the pre-activated input;
final BN-ReLU-global avg-pool-fc. Parameters (10 classes): ResNet-20 272,282,
-32 466,714, -44 661,146, -56 855,578, -110 1,730,522.

Noise injection (``noise_injection=c``): after every residual add,
``out + c·std(out)·N(0, 1)`` (EnResNet Eq. 4 discretized; c = 0.1 in the
paper), see :class:`~robustdial.layers.noise_injection.NoiseInjection`; on in
training and at evaluation, switched by the ``noise`` dial. ``ensemble=n``
builds En_n: n independently initialized members trained jointly, output the
mean of their logits (En2ResNet-20: 544,564 parameters).

The "ResNet-34 0.56M" ambiguity: the EnResNet paper lists a "ResNet-34" of
0.56 M parameters, which is no standard depth. As a 6n+2 pre-act net, [6,6,6]
blocks (depth 38) give 563,930 parameters and [4,6,6] give 555,010; both round
to 0.56 M. We read it as [6,6,6] (the uniform 6n+2 family the code base uses);
build it with ``PreActResNet(layers, 38)`` — it is not registered under a name.

BN roles: the two block BNs are ``layers.norm``; the final BN is
``layers.aux_norm``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.noise_injection import NoiseInjection
from ._layers import LayerSet, plain_layer_set
from ._registry import register_model

__all__ = ["LogitEnsemble", "PreActBlock", "PreActResNet", "preact_resnet20",
           "preact_resnet32", "preact_resnet44", "preact_resnet56", "preact_resnet110"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv + shortcut, then optional noise injection.

    Shape:
        (B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)
    """

    def __init__(self, layers: LayerSet, in_ch: int, out_ch: int, stride: int = 1,
                 noise: NoiseInjection | None = None) -> None:
        super().__init__()
        self.bn1 = layers.norm(in_ch)
        self.conv1 = layers.conv(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn2 = layers.norm(out_ch)
        self.conv2 = layers.conv(out_ch, out_ch, 3, stride=1, padding=1)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = layers.conv(in_ch, out_ch, 1, stride=stride)
        self.noise = noise if noise is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        residual = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.noise(out + residual)


class PreActResNet(nn.Module):
    """Pre-activation CIFAR ResNet of depth 6n+2.

    Args:
        layers: layer factories.
        depth: 6n + 2 (20, 32, 44, 56, 110 …).
        num_classes: classifier outputs.
        in_channels: image channels.
        noise_injection: EnResNet noise coefficient c (``None`` = no noise layers).
        seed_offset: added to every noise layer's seed (ensemble members differ).

    Shape:
        (B, in_channels, H, W) -> (B, num_classes)
    """

    def __init__(self, layers: LayerSet, depth: int, *, num_classes: int = 10,
                 in_channels: int = 3, noise_injection: float | None = None,
                 seed_offset: int = 0) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"pre-activation CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, "
                             f"110 …), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = layers.conv(in_channels, 16, 3, stride=1, padding=1)
        in_ch, index = 16, 0
        for s, width in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                noise = None
                if noise_injection is not None:
                    noise = NoiseInjection(noise_injection, seed=seed_offset + index)
                stride = 2 if (s > 0 and j == 0) else 1
                blocks.append(PreActBlock(layers, in_ch, width, stride, noise))
                in_ch, index = width, index + 1
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn = layers.aux_norm(64)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = layers.head(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = self.relu(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


class LogitEnsemble(nn.Module):
    """En_n: the mean of the members' logits (EnResNet, Sec. 3).

    Shape:
        (B, C, H, W) -> (B, num_classes)
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for m in self.members[1:]:
            out = out + m(x)
        return out / len(self.members)


def _build(depth: int, num_classes: int, layers: LayerSet | None, in_channels: int,
           noise_injection: float | None, ensemble: int) -> nn.Module:
    layers = layers or plain_layer_set()
    if ensemble < 1:
        raise ValueError(f"ensemble must be a positive number of members, got {ensemble}")

    def member(i: int) -> PreActResNet:
        # Seeds 1000·i + block index: every noise layer of every member differs.
        return PreActResNet(layers, depth, num_classes=num_classes, in_channels=in_channels,
                            noise_injection=noise_injection, seed_offset=1000 * i)

    if ensemble == 1:
        return member(0)
    return LogitEnsemble([member(i) for i in range(ensemble)])


_DOC = """Pre-activation CIFAR ResNet-{d} (EnResNet form).

    Args:
        num_classes: classifier outputs.
        layers: layer factories (``None`` = plain).
        in_channels: image channels.
        noise_injection: EnResNet noise coefficient c (0.1 in the paper);
            ``None`` = no noise.
        ensemble: number of jointly trained members n (En_n); logits are averaged.
    """


def _register(depth: int):
    def fn(*, num_classes: int = 10, layers: LayerSet | None = None, in_channels: int = 3,
           noise_injection: float | None = None, ensemble: int = 1) -> nn.Module:
        return _build(depth, num_classes, layers, in_channels, noise_injection, ensemble)

    fn.__name__ = fn.__qualname__ = f"preact_resnet{depth}"
    fn.__doc__ = _DOC.format(d=depth)
    return register_model(fn)


preact_resnet20 = _register(20)
preact_resnet32 = _register(32)
preact_resnet44 = _register(44)
preact_resnet56 = _register(56)
preact_resnet110 = _register(110)
