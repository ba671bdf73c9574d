"""Compression rules that the mutation check (scripts/mutation_check.py) found unpinned.

* Sparse momentum (Dettmers & Zettlemoyer 2019; FLOATS-i): the weights are
  multiplied by their masks after **every** optimizer step, not only at the
  epoch-end prune/regrow, so the forward always sees exactly ``round(d·N)``
  non-zero masked weights (kills ``sparse-masks-not-reapplied``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustdial.compress import SparseMomentum


def test_every_optimizer_step_is_followed_by_the_masks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    sm = SparseMomentum(0.3, prune_schedule="constant")
    sm.on_train_start(net, opt)
    params = dict(net.named_parameters())
    target = sm.target_count()
    for _ in range(3):
        x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()  # dense gradients and momenta: the step revives masked weights ...
        assert any(bool((params[n][~m] != 0).any()) for n, m in sm.masks.items())
        sm.after_step(net, opt)  # ... and the transform zeroes them again
        for n, m in sm.masks.items():
            assert not bool((params[n][~m] != 0).any()), n
        assert sum(int((params[n] != 0).sum()) for n in sm.masks) <= target
