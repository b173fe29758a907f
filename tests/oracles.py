"""Independent references shared by several test modules (a test module imports no other).

``nmi_oracle`` scores images the slow, obvious way: numpy bin codes and scikit-learn's
``normalized_mutual_info_score``, image by image and channel by channel. ``retrained`` changes
a finished run's best checkpoint as training it again would.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score


def codes_np(v: np.ndarray, bins: int) -> np.ndarray:
    """Bin codes computed in numpy, in float32 like the images themselves."""
    v = v.astype(np.float32, copy=False)
    return np.floor(v * np.float32(bins - 1)).astype(np.int64).ravel()


def nmi_oracle(x: torch.Tensor, y: torch.Tensor, bins: int) -> np.ndarray:
    """Channel-averaged scikit-learn NMI per sample, with both-constant channels counting 0."""
    xs, ys = x.detach().cpu().numpy(), y.detach().cpu().numpy()
    out = np.zeros(xs.shape[0])
    for n in range(xs.shape[0]):
        per_channel = []
        for c in range(xs.shape[1]):
            a, b = codes_np(xs[n, c], bins), codes_np(ys[n, c], bins)
            if np.unique(a).size == 1 and np.unique(b).size == 1:
                per_channel.append(0.0)  # the contract's convention (scikit-learn says 1)
            else:
                per_channel.append(
                    normalized_mutual_info_score(a, b, average_method="arithmetic")
                )
        out[n] = np.mean(per_channel)
    return out


def retrained(run_dir) -> None:
    """Other weights in the run folder's ``best.pt``, as training it again with other draws
    would leave, and the digest its ``result.json`` records, where it records one."""
    import hashlib
    import json
    from pathlib import Path

    best, result_path = Path(run_dir) / "best.pt", Path(run_dir) / "result.json"
    state = torch.load(best, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 0.05
    torch.save(state, best)
    result = json.loads(result_path.read_text())
    if "best_sha256" in result:
        result["best_sha256"] = hashlib.sha256(best.read_bytes()).hexdigest()
        result_path.write_text(json.dumps(result))
