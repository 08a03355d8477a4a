"""Choosing a job's next token from its logits, with its own sampling params and seed.

Each job in a batch samples from its own row with its own `torch.Generator`, so a seed fixes
a job's draws whatever else shares the batch. The warpers follow transformers' (repetition
penalty, temperature, top-k, top-p, in that order) so that greedy decoding picks what
`model.generate` picks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from shared.kinds.generate import GenerateParams


class Sampler:
    """Picks one job's tokens."""

    def __init__(self, params: GenerateParams, device: torch.device) -> None:
        self.params = params
        self.rng: torch.Generator | None = None
        if params.temperature > 0:
            self.rng = torch.Generator(device=device)
            if params.seed is not None:
                self.rng.manual_seed(params.seed)
            else:
                self.rng.seed()

    def pick(self, logits: torch.Tensor, seen: Callable[[], list[int]]) -> int:
        """The next token id, from one row of logits (vocabulary-sized, any float dtype);
        `seen` is asked for only when a repetition penalty needs it."""
        scores = logits.float()
        penalty = self.params.repetition_penalty
        if penalty != 1.0:
            ids = torch.tensor(seen(), device=scores.device)
            picked = scores.gather(0, ids)
            scores = scores.scatter(0, ids, torch.where(picked < 0, picked * penalty,
                                                        picked / penalty))  # fmt: skip
        if self.rng is None:
            return int(scores.argmax())
        scores = scores / self.params.temperature
        if 0 < self.params.top_k < scores.numel():
            kth = torch.topk(scores, self.params.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, -float("inf"))
        if self.params.top_p < 1.0:
            ordered, order = torch.sort(scores)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative <= 1 - self.params.top_p
            drop[-1] = False  # the likeliest token always stays
            scores = scores.masked_fill(drop.scatter(0, order, drop), -float("inf"))
        return int(torch.multinomial(scores.softmax(-1), 1, generator=self.rng))
