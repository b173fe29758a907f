"""imlib.train: the one engine for every variant, its files, resume and determinism (CPU)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import imlib.train as train_module
from imlib.io import read_jsonl
from imlib.train import TrainConfig, crop_flip, load_model, prepare, train, train_steps

# Small enough for seconds per run on two cores, big enough to learn something.
TINY = dict(dataset="synthetic", synthetic_per_class=60, synthetic_classes=4, model="small_cnn",
            epochs=3, batch_size=64, device="cpu", holdout_fraction=0.2)


def tiny(tmp_path, **overrides) -> TrainConfig:
    values = {**TINY, "out_dir": str(tmp_path / "run"), **overrides}
    return TrainConfig(**values)


def strip_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_crop_flip_matches_a_per_sample_loop():
    """Crop after zero padding and flip, against a loop over samples with the same draws."""
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = crop_flip(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    offset = torch.randint(0, 9, (16, 2), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        dy, dx = offset[i].tolist()
        expected = padded[i, :, dy:dy + 32, dx:dx + 32]
        if flip[i]:
            expected = expected.flip(-1)
        assert torch.equal(out[i], expected)


def test_history_files_and_checkpoints(tmp_path):
    result = train(tiny(tmp_path, variant="im"))
    out = tmp_path / "run"
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert read_jsonl(out / "history.jsonl") == result.history
    required = {"epoch", "train_loss", "train_acc", "holdout_loss", "holdout_acc", "test_loss",
                "test_acc", "mean_eps", "lr", "seconds"}
    for record in result.history:
        assert required <= set(record)
        for key in ("train_acc", "holdout_acc", "test_acc"):
            assert 0 <= record[key] <= 1
        assert 0 < record["mean_eps"] <= 0.9  # IM smooths degraded samples
    best = max(result.history, key=lambda r: r["holdout_acc"])
    assert result.best_epoch == best["epoch"]
    state = torch.load(result.best_checkpoint, weights_only=False)
    assert state["epoch"] == result.best_epoch and "model" in state
    summary = json.loads((out / "result.json").read_text())
    assert summary["completed"] and summary["config"]["variant"] == "im"
    assert summary["provenance"]["torch"] == torch.__version__


@pytest.mark.parametrize("variant, expected_eps", [("baseline", 0.0), ("ls", 0.1)])
def test_fixed_policies_report_their_eps(tmp_path, variant, expected_eps):
    history = train(tiny(tmp_path, variant=variant, epochs=1)).history
    assert history[0]["mean_eps"] == pytest.approx(expected_eps, abs=1e-6)


def test_level_variant_eps_is_the_mean_clamped_level(tmp_path):
    """Levels are U(0, 1) clamped at 0.9: E[min(d, 0.9)] = 0.495."""
    history = train(tiny(tmp_path, variant="level", epochs=1, synthetic_per_class=200)).history
    assert history[0]["mean_eps"] == pytest.approx(0.495, abs=0.04)


def test_same_seed_same_history_different_seed_differs(tmp_path):
    a = train(tiny(tmp_path / "a", seed=1, epochs=2)).history
    b = train(tiny(tmp_path / "b", seed=1, epochs=2)).history
    c = train(tiny(tmp_path / "c", seed=2, epochs=2)).history
    assert strip_time(a) == strip_time(b)
    assert strip_time(a) != strip_time(c)


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    """Stopped after epoch 2 of 4 and resumed, a run ends bit-identical to an uninterrupted one
    (CPU: same ops in the same order from the same RNG states)."""
    config = tiny(tmp_path, epochs=4, schedule="cosine", variant="im")

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, on_epoch_end=stop_after_two)
    assert len(read_jsonl(tmp_path / "run" / "history.jsonl")) == 2
    resumed = train(config)
    straight = train(replace(config, out_dir=str(tmp_path / "straight")))
    assert strip_time(resumed.history) == strip_time(straight.history)
    a = torch.load(resumed.last_checkpoint, weights_only=False)["model"]
    b = torch.load(straight.last_checkpoint, weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_is_reused_not_retrained(tmp_path):
    config = tiny(tmp_path, epochs=1)
    first = train(config)
    mtime = first.last_checkpoint.stat().st_mtime_ns
    second = train(config)
    assert second.history == first.history
    assert first.last_checkpoint.stat().st_mtime_ns == mtime


def test_resume_with_another_config_refuses(tmp_path):
    train(tiny(tmp_path, epochs=1, lr=1e-3))
    with pytest.raises(ValueError, match="lr"):
        train(tiny(tmp_path, epochs=1, lr=5e-4))
    fresh = train(tiny(tmp_path, epochs=1, lr=5e-4, resume=False))  # starting over is allowed
    assert len(fresh.history) == 1


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = tiny(tmp_path, epochs=2)
    calls = {"n": 0}
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 writes best.pt and last.pt; die while writing epoch 2's
            f.write(b"partial")
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(config)
    monkeypatch.setattr(torch, "save", real_save)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["epoch"] == 1
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path, monkeypatch):
    config = tiny(tmp_path, epochs=3)
    real_loss = train_module.soft_cross_entropy
    calls = {"n": 0}
    steps_per_epoch = -(-int(60 * 4 * 0.8) // 64)  # 192 training images, batches of 64

    def loss_with_nan(logits, targets):
        calls["n"] += 1
        loss = real_loss(logits, targets)
        # Step 1 (0-based) of epoch 2 goes wrong.
        return loss * float("nan") if calls["n"] == steps_per_epoch + 2 else loss

    monkeypatch.setattr(train_module, "soft_cross_entropy", loss_with_nan)
    with pytest.raises(FloatingPointError, match="epoch 2, step 1"):
        train(config)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_load_model_restores_the_trained_weights(tmp_path):
    result = train(tiny(tmp_path, epochs=1))
    model, config = load_model(result.best_checkpoint, device="cpu")
    state = torch.load(result.best_checkpoint, weights_only=False)["model"]
    assert config.variant == "im"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_three_paper_variants_learn_the_synthetic_set(tmp_path):
    """The smoke profile's promise: every variant is well above chance (10 classes: 0.1)."""
    for variant in ("baseline", "ls", "im"):
        config = TrainConfig(dataset="synthetic", synthetic_per_class=200, model="small_cnn",
                             epochs=6, batch_size=128, device="cpu", variant=variant,
                             out_dir=str(tmp_path / variant))
        assert train(config).history[-1]["test_acc"] > 0.4, variant


@pytest.mark.parametrize("overrides, name", [
    ({"variant": "mixup"}, "variant"),
    ({"epochs": 0}, "epochs"),
    ({"lr": -1.0}, "lr"),
    ({"ls_eps": 1.0}, "ls_eps"),
    ({"im_spread": "some"}, "im_spread"),
    ({"selection": "holdout", "holdout_fraction": 0.0}, "holdout"),
    ({"device": "tpu"}, "device"),
    ({"degrade_kinds": ("sharpen",)}, "kinds"),
    ({"variant": "im", "degrade": False}, "degrade"),
])
def test_bad_config_is_refused_by_name(overrides, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**{**TINY, **overrides})


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    assert TrainConfig.from_dict({"epochs": 7}).epochs == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_amp_compile_path_trains(tmp_path):
    history = train(tiny(tmp_path, device="cuda", amp=True, compile=False, epochs=2)).history
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in history)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("variant", ["baseline", "ls", "im", "level"])
def test_train_step_never_waits_for_the_gpu(tmp_path, variant):
    """The hot path has no host sync: CUDA's sync debug mode turns any into an error."""
    run = prepare(tiny(tmp_path, device="cuda", amp=True, variant=variant, augment_batches=2))
    order = torch.arange(192, device="cuda")  # 3 steps of 64, augmented 2 batches at a time
    train_steps(run, order)  # the first steps may sync while libraries initialise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        train_steps(run, order)
    finally:
        torch.cuda.set_sync_debug_mode("default")
