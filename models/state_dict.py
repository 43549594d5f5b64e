"""What a checkpoint's tensors lack or add compared with a model: one summary for every loader."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def mismatch_summary(
    expected: Mapping, state: Mapping, *, ignore_missing: Callable[[str], bool] = lambda k: False
) -> str:
    """ "" when ``state`` fits ``expected`` (same keys and shapes), else a one-line summary:
    "N missing (e.g. a, b, c); N unexpected (e.g. ...); N of other shape (e.g. k (file shape) (expected (shape)))".

    Args:
        expected: the model's state dict (name -> tensor).
        state: the checkpoint's tensors.
        ignore_missing: keys the model may lack in the file (e.g. BatchNorm counters, a fresh aux head).
    """
    missing = [k for k in expected if k not in state and not ignore_missing(k)]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} of other shape (e.g. {k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)}))"
        )
    return "; ".join(parts)
