"""imlib.labels: the targets against element-by-element references, torch's own
losses, and the defining property of cross-entropy against a soft target (its minimiser over
free logits is the target itself)."""

from __future__ import annotations

import pytest
import torch

from imlib.labels import (
    SPREADS,
    hard,
    information_matching,
    smoothed,
    soft_cross_entropy,
    soft_targets,
    true_class_target,
)

K = 5
LABELS = torch.tensor([0, 4, 2, 2, 1, 3, 0, 4])
NMI = torch.tensor([0.0, 0.05, 0.1, 0.35, 0.5, 0.8, 0.99, 1.0])


def reference_targets(labels, k: int, eps: list[float], spread: str) -> torch.Tensor:
    """Target rows built element by element from the contract's formulas."""
    rows = []
    for y, e in zip(labels.tolist(), eps, strict=True):
        if spread == "others":
            row = [1 - e if c == y else e / (k - 1) for c in range(k)]
        else:  # "all": (1 - eps) onehot + eps / K
            row = [(1 - e if c == y else 0.0) + e / k for c in range(k)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def all_policies(labels: torch.Tensor, k: int, generator: torch.Generator) -> dict:
    n = labels.shape[0]
    nmi = torch.rand(n, generator=generator)
    level = torch.rand(n, generator=generator)
    return {
        "hard": hard(labels, k),
        "smoothed_0.1": smoothed(labels, k, 0.1),
        "smoothed_0.4": smoothed(labels, k, 0.4),
        "im_others": information_matching(labels, k, nmi, spread="others"),
        "im_all": information_matching(labels, k, nmi, spread="all"),
        "level_others": soft_targets(labels, k, level.clamp(0, 0.9)),
        "level_all": soft_targets(labels, k, level.clamp(0, 0.9), spread="all"),
    }


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 5, 100])
def test_every_policy_gives_rows_that_sum_to_one(k, generator):
    labels = torch.randint(k, (16,), generator=generator)
    for name, targets in all_policies(labels, k, generator).items():
        assert targets.shape == (16, k) and targets.dtype == torch.float32, name
        assert bool((targets >= 0).all()), name
        torch.testing.assert_close(targets.sum(1), torch.ones(16), rtol=0, atol=1e-6, msg=name)


def test_hard_is_one_hot():
    expected = torch.zeros(8, K)
    expected[torch.arange(8), LABELS] = 1
    assert torch.equal(hard(LABELS, K), expected)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.25, 0.9])
def test_smoothed_puts_eps_over_k_on_every_class(eps):
    expected = reference_targets(LABELS, K, [eps] * 8, "all")
    torch.testing.assert_close(smoothed(LABELS, K, eps).double(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("max_eps", [0.9, 0.5])
def test_information_matching_uses_eps_one_minus_nmi_clamped(spread, max_eps):
    eps = [min(max(1 - v, 0.0), max_eps) for v in NMI.tolist()]
    got = information_matching(LABELS, K, NMI, max_eps=max_eps, spread=spread)
    torch.testing.assert_close(got.double(), reference_targets(LABELS, K, eps, spread),
                               rtol=0, atol=1e-6)


def test_information_matching_end_points():
    """NMI 0 is clamped at max_eps 0.9 (true class 0.1, others 0.225); NMI 1 gives one-hot."""
    got = information_matching(torch.tensor([1, 3]), K, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(got[0], torch.tensor([0.225, 0.1, 0.225, 0.225, 0.225]))
    assert torch.equal(got[1], hard(torch.tensor([3]), K)[0])


@pytest.mark.parametrize("spread", SPREADS)
def test_true_class_target_is_the_true_class_entry_of_the_targets(spread):
    eps = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5])
    reference = reference_targets(LABELS, K, eps.tolist(), spread)[torch.arange(8), LABELS]
    torch.testing.assert_close(true_class_target(eps, K, spread).double(), reference,
                               rtol=0, atol=1e-6)


def test_soft_targets_is_the_shared_building_block():
    eps = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5])
    for spread in SPREADS:
        torch.testing.assert_close(
            soft_targets(LABELS, K, eps, spread).double(),
            reference_targets(LABELS, K, eps.tolist(), spread), rtol=0, atol=1e-6)


# --- the loss -------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.3, 0.7])
def test_smoothed_targets_reproduce_torch_label_smoothing_loss(eps, generator):
    logits = 3 * torch.randn(32, 10, generator=generator)
    labels = torch.randint(10, (32,), generator=generator)
    expected = torch.nn.CrossEntropyLoss(label_smoothing=eps)(logits, labels)
    got = soft_cross_entropy(logits, smoothed(labels, 10, eps))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_hard_targets_reproduce_plain_cross_entropy(generator):
    logits = 3 * torch.randn(32, 10, generator=generator)
    labels = torch.randint(10, (32,), generator=generator)
    expected = torch.nn.functional.cross_entropy(logits, labels)
    torch.testing.assert_close(soft_cross_entropy(logits, hard(labels, 10)), expected,
                               rtol=0, atol=1e-6)


def test_soft_cross_entropy_is_the_batch_mean_of_per_sample_cross_entropy(generator):
    logits = torch.randn(6, 4, generator=generator)
    targets = torch.softmax(torch.randn(6, 4, generator=generator), dim=1)
    per_sample = [-(targets[i] * torch.log_softmax(logits[i], 0)).sum() for i in range(6)]
    torch.testing.assert_close(soft_cross_entropy(logits, targets), torch.stack(per_sample).mean())


def _fit_free_logits(targets: torch.Tensor, iterations: int = 300) -> torch.Tensor:
    """Minimise soft_cross_entropy over free logits with L-BFGS; return softmax(logits)."""
    logits = torch.zeros_like(targets, requires_grad=True)
    opt = torch.optim.LBFGS([logits], lr=1, max_iter=iterations, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = soft_cross_entropy(logits, targets)
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(logits.detach(), dim=1)


@pytest.mark.parametrize(
    "policy", ["smoothed_0.1", "smoothed_0.4", "im_others", "im_all", "level_others", "level_all"]
)
def test_minimising_the_loss_on_free_logits_reaches_the_target(policy, generator):
    """Cross-entropy against a soft target is minimised exactly at softmax(logits) = target:
    a model trained on IM targets learns to report confidence 1 - eps."""
    targets = all_policies(LABELS, K, generator)[policy]
    torch.testing.assert_close(_fit_free_logits(targets), targets, rtol=0, atol=1e-3)


def test_minimising_the_loss_on_hard_targets_drives_the_true_class_to_one(generator):
    """A one-hot target is only reached in the limit: check the true class passes 0.99."""
    probs = _fit_free_logits(hard(LABELS, K), iterations=100)
    assert bool((probs[torch.arange(8), LABELS] > 0.99).all())


# --- argument validation --------------------------------------------------------------------

N8 = torch.full((8,), 0.5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: hard(torch.tensor([0, 5]), K), r"labels must lie in \[0, 5\)",
                     id="label_too_large"),
        pytest.param(lambda: smoothed(torch.tensor([-1, 2]), K), r"labels must lie in \[0, 5\)",
                     id="label_negative"),
        pytest.param(lambda: hard(torch.tensor([0.0, 1.0]), K), r"labels must be an integer",
                     id="float_labels"),
        pytest.param(lambda: hard(LABELS.view(2, 4), K), r"labels must be a 1-D", id="2d_labels"),
        pytest.param(lambda: hard(LABELS.tolist(), K), r"labels must be a 1-D", id="list_labels"),
        pytest.param(lambda: hard(LABELS, 1), r"num_classes must be an int >= 2", id="k_1"),
        pytest.param(lambda: smoothed(LABELS, K, eps=1.0), r"eps must be a float in \[0, 1\)",
                     id="eps_1"),
        pytest.param(lambda: smoothed(LABELS, K, eps=-0.1), r"eps must be a float in \[0, 1\)",
                     id="eps_negative"),
        pytest.param(lambda: information_matching(LABELS, K, N8, max_eps=1.0),
                     r"max_eps must be a float in \[0, 1\)", id="max_eps_1"),
        pytest.param(lambda: information_matching(LABELS, K, N8[:7]),
                     r"nmi must be a tensor of shape \(8,\)", id="nmi_wrong_length"),
        pytest.param(lambda: information_matching(LABELS, K, torch.tensor([float("nan")] * 8)),
                     r"nmi contains NaN", id="nmi_nan"),
        pytest.param(lambda: information_matching(LABELS, K, N8 + 0.7),
                     r"nmi must lie in \[0, 1\]", id="nmi_above_one"),
        pytest.param(lambda: information_matching(LABELS, K, N8, spread="uniform"),
                     r"spread must be one of \('others', 'all'\)", id="unknown_spread"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(8, K), torch.zeros(8, K + 1)),
                     r"targets must have the shape of logits", id="shape_mismatch"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(K), torch.zeros(K)),
                     r"logits must be a float tensor of shape \(N, K\)", id="logits_1d"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(8, K, dtype=torch.long),
                                                hard(LABELS, K)),
                     r"logits must be a float tensor", id="logits_int"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(0, K), torch.zeros(0, K)),
                     r"logits must hold at least one sample", id="loss_empty"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(8, K), hard(LABELS, K).long()),
                     r"targets must be a float tensor", id="targets_int"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(8, K), hard(LABELS, K) * 0.5),
                     r"targets rows must sum to 1", id="targets_rows"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(8, K), hard(LABELS, K) * 2 - 0.2),
                     r"targets must lie in \[0, 1\]", id="targets_range"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(8, K),
                                                hard(LABELS, K).fill_(float("nan"))),
                     r"targets contains NaN", id="targets_nan"),
        pytest.param(lambda: soft_cross_entropy(torch.zeros(8, K),
                                                hard(LABELS, K).to("meta")),
                     r"targets must be on the device of logits \(cpu\)", id="targets_device"),
        pytest.param(lambda: soft_targets(LABELS, K, N8[:7]),
                     r"eps must be a tensor of shape \(8,\)", id="eps_wrong_length"),
        pytest.param(lambda: soft_targets(LABELS, K, 0.1), r"eps must be a tensor of shape",
                     id="eps_float"),
        pytest.param(lambda: soft_targets(LABELS, K, N8 + 0.6), r"eps must lie in \[0, 1\]",
                     id="eps_above_one"),
        pytest.param(lambda: soft_targets(LABELS, K, N8 * float("inf")), r"eps contains NaN",
                     id="eps_inf"),
        pytest.param(lambda: soft_targets(LABELS + 1, K, N8), r"labels must lie in \[0, 5\)",
                     id="soft_targets_labels"),
        pytest.param(lambda: soft_targets(LABELS, 1, N8), r"num_classes must be an int >= 2",
                     id="soft_targets_k_1"),
        pytest.param(lambda: soft_targets(LABELS, 5.0, N8), r"num_classes must be an int",
                     id="soft_targets_k_float"),
        pytest.param(lambda: soft_targets(LABELS, K, N8, spread="uniform"),
                     r"spread must be one of", id="soft_targets_spread"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_hot_path_reads_nothing_back_from_the_device():
    """With validate_args=False the targets and the loss are built without reading a value:
    on the meta device (no data at all) any host read would raise."""
    labels = LABELS.to("meta")
    for spread in SPREADS:
        targets = soft_targets(labels, K, N8.to("meta"), spread, validate_args=False)
        assert targets.shape == (8, K) and targets.device.type == "meta"
        loss = soft_cross_entropy(torch.zeros(8, K, device="meta"), targets, validate_args=False)
        assert loss.shape == ()
    with pytest.raises(RuntimeError, match="meta"):  # the default validates: it reads values
        soft_targets(labels, K, N8.to("meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_hot_path_does_not_synchronise_with_the_gpu(generator):
    labels = torch.randint(K, (64,), generator=generator).cuda()
    eps = torch.rand(64, generator=generator).cuda()
    logits = torch.randn(64, K, generator=generator).cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        targets = soft_targets(labels, K, eps, validate_args=False)
        soft_cross_entropy(logits, targets, validate_args=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_soft_cross_entropy_per_sample_is_each_row_s_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    targets = torch.softmax(torch.randn(5, 4, generator=g), dim=1)
    per_sample = soft_cross_entropy(logits, targets, reduction="none")
    for i in range(5):  # one row at a time, written out
        p = torch.exp(logits[i]) / torch.exp(logits[i]).sum()
        assert float(per_sample[i]) == pytest.approx(float(-(targets[i] * p.log()).sum()), 1e-5)
    assert float(soft_cross_entropy(logits, targets)) == pytest.approx(float(per_sample.mean()))
    with pytest.raises(ValueError, match="reduction must be one of"):
        soft_cross_entropy(logits, targets, reduction="sum")
