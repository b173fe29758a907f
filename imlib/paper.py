"""The paper's published numbers, written once: figures mark them and the report compares them.

Source: ``paper.txt``, "Table 1: General metrics on CIFAR-100 clean test set." Accuracies in
percent, as printed. Its "ECE" is the estimator of the author's evaluation script, our
``ece_paper_script``. The printed rows (tab-separated):

    IM        63.24  85.14  0.1366  1.5724
    LS        55.94  82.07  0.1121  1.7069
    Baseline  55.43  82.35  0.1738  1.8251
"""

from __future__ import annotations

__all__ = ["PAPER_TABLE1"]

PAPER_TABLE1 = {
    "im": {"top1": 63.24, "top5": 85.14, "ece_paper_script": 0.1366, "nll": 1.5724},
    "ls": {"top1": 55.94, "top5": 82.07, "ece_paper_script": 0.1121, "nll": 1.7069},
    "baseline": {"top1": 55.43, "top5": 82.35, "ece_paper_script": 0.1738, "nll": 1.8251},
}
