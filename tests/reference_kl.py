"""A deliberately plain, loop-per-candidate implementation of the GTC 2017 entropy recipe.

It shares no code with trtq.calib.entropy, so agreement between the two checks the vectorised
algebra (prefix sums over levels) rather than restating it.
"""

from __future__ import annotations

import math

import numpy as np


def reference_kl(counts: np.ndarray, i: int, levels: int = 128) -> float:
    h = [int(c) for c in counts]
    total = sum(h)
    p = h[:i]
    p[i - 1] += sum(h[i:])
    level_of = [j * levels // i for j in range(i)]
    level_sum = [0] * levels
    level_nonempty = [0] * levels
    for j in range(i):
        level_sum[level_of[j]] += h[j]
        level_nonempty[level_of[j]] += 1 if h[j] > 0 else 0
    q = [level_sum[level_of[j]] / level_nonempty[level_of[j]] if h[j] > 0 else 0.0 for j in range(i)]
    q_total = sum(q)
    if q_total == 0:
        return math.inf
    kl = 0.0
    for pj, qj in zip(p, q, strict=True):
        if pj == 0:
            continue
        if qj == 0:
            return math.inf
        kl += (pj / total) * math.log((pj / total) / (qj / q_total))
    return kl


def reference_pick(counts: np.ndarray, levels: int = 128) -> int:
    """Winning i (smallest KL over non-degenerate candidates, first on ties within 1e-12)."""
    best_i, best_kl = len(counts), math.inf
    for i in range(levels, len(counts) + 1):
        p_nonempty = sum(1 for c in counts[:i] if c > 0) + (
            1 if counts[i - 1] == 0 and counts[i:].sum() > 0 else 0
        )
        if p_nonempty <= 1:
            continue
        kl = reference_kl(counts, i, levels)
        if math.isfinite(kl) and (math.isinf(best_kl) or kl < best_kl - 1e-12 * max(1.0, abs(best_kl))):
            best_i, best_kl = i, kl
    return best_i
