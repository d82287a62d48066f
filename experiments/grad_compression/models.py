"""Models of the gradient-compression experiment."""
from __future__ import annotations

import torch
from torch import nn


class CharGRU(nn.Module):
    """Character LM: embedding 96x64, one GRU layer of 256, linear 256->96 (278,112 parameters)."""

    def __init__(self, vocab: int = 96, embed: int = 64, hidden: int = 256):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x):
        h, _ = self.gru(self.embed(x))
        return self.out(h)


class MLP(nn.Module):
    """MLP 64-256-256-10 with ReLU (85,002 parameters)."""

    def __init__(self, sizes=(64, 256, 256, 10)):
        super().__init__()
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x):
        return self.net(x)
