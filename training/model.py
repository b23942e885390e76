"""The compact plate recogniser: a small CNN that turns a 32 x 128 plate image into 32
time steps of character probabilities, read with CTC (torch; training environment only).

Why this shape (measured on 2 CPU cores, see training/README.md): the PP-OCRv6
recogniser costs ~120 ms per sample per training step at 48 x 320, an hour per epoch of
30k samples; this network costs ~4.5 ms, so a run sees ~500k augmented views in under
an hour, and it reads a plate in ~1 ms at batch 8 in onnxruntime.

``time_pool`` is the width reduction (4: 32 time steps for 128 columns; 2: 64 steps, for
narrow fonts and repeated characters, at ~1.6x the cost).

Layout: five 3x3 conv stages (BN, ReLU) that halve the height five times and the width
twice (128 -> 32 columns, 4 px each), a 2x1 conv that folds the last two rows, a 1x3
temporal conv (context across neighbouring characters), and a 1x1 classifier over
blank + alphabet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class PlateCTC(nn.Module):
    def __init__(
        self,
        classes: int,
        channels: Sequence[int] = (24, 48, 96, 128, 160),
        dropout: float = 0.1,
        time_pool: int = 4,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.body = nn.Sequential(
            *_conv(3, c1),
            nn.MaxPool2d(2),  # 16 x 64
            *_conv(c1, c2),
            nn.MaxPool2d((2, 2) if time_pool == 4 else (2, 1)),  # 8 x 32 (8 x 64)
            *_conv(c2, c3),
            *_conv(c3, c3),
            nn.MaxPool2d((2, 1)),  # 4 x 32
            *_conv(c3, c4),
            *_conv(c4, c4),
            nn.MaxPool2d((2, 1)),  # 2 x 32
            nn.Conv2d(c4, c5, (2, 1), bias=False),
            nn.BatchNorm2d(c5),
            nn.ReLU(inplace=True),
            nn.Conv2d(c5, c5, (1, 3), padding=(0, 1), bias=False),
            nn.BatchNorm2d(c5),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(c5, classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> logits [N, T, classes]."""
        y = self.body(x)  # [N, C, 1, T]
        return y.squeeze(2).permute(0, 2, 1)


class Served(nn.Module):
    """What the ONNX file computes: probabilities [N, T, classes]."""

    def __init__(self, net: PlateCTC) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)
