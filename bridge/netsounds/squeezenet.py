"""SqueezeNet 1.0, written out: torchvision is not installable beside this environment's torch.

The architecture, module names and initialisation follow ``torchvision.models.squeezenet``
(``SqueezeNet(version="1_0")``, torchvision 0.x, BSD-3-Clause; Iandola et al. 2016, "SqueezeNet:
AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size"), so a state dict saved
from torchvision's ``squeezenet1_0`` (e.g. ``squeezenet1_0-b66bff10.pth``) loads with
``load_state_dict`` unchanged. Without weights the network keeps torchvision's random
initialisation (Kaiming-uniform convolutions, zero biases, the final convolution N(0, 0.01)),
seeded: deterministic, but its activations are those of an untrained network.

The four filter banks are ``features`` cut at its max-pools, as netsounds split it:
``conv1`` (96 filters), ``fire2-4`` (256), ``fire5-8`` (512), ``fire9`` (512).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import init

#: (name, first, end) slices of ``features`` — the four blocks.
BLOCKS: tuple[tuple[str, int, int], ...] = (("conv1", 0, 3), ("fire2-4", 3, 7), ("fire5-8", 7, 12), ("fire9", 12, 13))


class Fire(nn.Module):
    """Squeeze (1×1) then expand (1×1 and 3×3, concatenated), as torchvision's ``Fire``."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        one, three = self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))
        return torch.cat([one, three], 1)


class SqueezeNet10(nn.Module):
    """torchvision's ``SqueezeNet(version="1_0", num_classes=1000)``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=7, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(96, 16, 64, 64),
            Fire(128, 16, 64, 64),
            Fire(128, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 32, 128, 128),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(512, 64, 256, 256),
        )
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)

    def blocks(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The four banks' activations for ``x`` (N×3×H×W), in order."""
        out = []
        for name, a, b in BLOCKS:
            x = self.features[a:b](x)
            out.append((name, x))
        return out
