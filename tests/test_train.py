"""imlib.train: the one engine for every variant, its files, resume and determinism (CPU)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from oracles import nmi_oracle

import imlib.train as train_module
from imlib.degradations import KINDS, degrade
from imlib.io import read_jsonl
from imlib.runs import (IncompleteRunError, RunFiles, TrainConfig, completed_run, load_model,
                        read_history)
from imlib.train import crop_flip, prepare, train, train_steps, training_batch

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


def stop_after_epoch(monkeypatch, last_epoch: int) -> None:
    """Make training stop (as a kill would) once epoch ``last_epoch`` is logged."""
    real_append = train_module.append_jsonl

    def append_then_stop(record, path):
        real_append(record, path)
        if record["epoch"] == last_epoch:
            raise Interrupt

    monkeypatch.setattr(train_module, "append_jsonl", append_then_stop)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """Stopped after epoch 2 of 4 and resumed, a run ends bit-identical to an uninterrupted one
    (CPU: same ops in the same order from the same RNG states)."""
    config = tiny(tmp_path, epochs=4, schedule="cosine", variant="im")
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 2)
        with pytest.raises(Interrupt):
            train(config)
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
    """The refusal names the field, both values and options that exist on the command line."""
    train(tiny(tmp_path, epochs=1, lr=1e-3))
    with pytest.raises(IncompleteRunError, match="other settings") as refused:
        train(tiny(tmp_path, epochs=1, lr=5e-4))
    message = str(refused.value)
    assert "lr: saved 0.001, asked 0.0005" in message and str(tmp_path / "run") in message
    assert "-p lr 0.001" in message and "--fresh" in message and "resume=False" not in message
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

    def loss_with_nan(logits, targets, **kwargs):
        # The hot path never asks for value checks: they read values back to the host.
        assert kwargs == {"validate_args": False}
        calls["n"] += 1
        loss = real_loss(logits, targets, **kwargs)
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


@pytest.mark.parametrize("overrides, name", [
    ({"variant": "mixup"}, "variant"),
    ({"epochs": 0}, "epochs"),
    ({"lr": -1.0}, "lr"),
    ({"ls_eps": 1.0}, "ls_eps"),
    ({"im_spread": "some"}, "im_spread"),
    ({"selection": "holdout", "holdout_fraction": 0.0}, "holdout"),
    ({"device": "tpu"}, "device"),
    ({"device": "cuda:x"}, "device"),
    ({"compile": True}, "compile"),
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
    history = train(tiny(tmp_path, device="cuda", amp=True, epochs=2,
                         compile="reduce-overhead")).history
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


# --- one training batch, against a per-image oracle ------------------------------------------


def crop_flip_window(original: torch.Tensor, clean: torch.Tensor) -> bool:
    """Whether ``clean`` (float, C x H x W) is a window of the zero-padded uint8 ``original``,
    shifted by 0..8 pixels and maybe mirrored."""
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4)).float() / 255
    for dy in range(9):
        for dx in range(9):
            window = padded[:, dy:dy + 32, dx:dx + 32]
            if torch.equal(window, clean) or torch.equal(window.flip(-1), clean):
                return True
    return False


def mosaic_by_hand(image: torch.Tensor, level: float) -> torch.Tensor:
    """Each b x b block (edge blocks partial) replaced by its per-channel mean."""
    b = max(1, math.floor(32 * (level + 0.001) ** 2))
    out = image.clone()
    for top in range(0, 32, b):
        for left in range(0, 32, b):
            block = image[:, top:top + b, left:left + b]
            out[:, top:top + b, left:left + b] = block.mean(dim=(1, 2), keepdim=True)
    return out


def dropout_keeps_patches(clean: torch.Tensor, degraded: torch.Tensor, level: float) -> bool:
    """8x8 patches each kept as they are or zeroed, exactly floor(P (1 - d)) of them kept."""
    kept = 0
    for top in range(0, 32, 8):
        for left in range(0, 32, 8):
            a, b = clean[:, top:top + 8, left:left + 8], degraded[:, top:top + 8, left:left + 8]
            if torch.equal(a, b) and bool(a.any()):
                kept += 1
            elif bool(b.any()):
                return False
    return kept == math.floor(16 * (1 - level))


def targets_by_hand(labels, eps, num_classes, spread):
    rows = []
    for label, e in zip(labels.tolist(), eps.tolist(), strict=True):
        if spread == "others":
            row = [e / (num_classes - 1)] * num_classes
            row[label] = 1 - e
        else:
            row = [e / num_classes] * num_classes
            row[label] = 1 - e + e / num_classes
        rows.append(row)
    return torch.tensor(rows)


@pytest.mark.parametrize("spread", ["others", "all"])
def test_training_batch_matches_a_per_image_oracle(tmp_path, spread):
    """Crop + flip of the stored images first, then the degradation redone image by image,
    NMI by scikit-learn on the [0, 1] images, eps = clamp(1 - NMI, 0, 0.9), the spread's
    targets by hand, and the normalised inputs."""
    run = prepare(tiny(tmp_path, variant="im", im_spread=spread))
    idx = torch.randperm(len(run.train.y), generator=torch.Generator().manual_seed(0))[:48]
    batch = training_batch(run, idx)
    assert batch.kinds.dtype == torch.int64 and set(batch.kinds.tolist()) == set(range(4))
    for i, n in enumerate(idx.tolist()):
        assert crop_flip_window(run.train.x[n], batch.clean[i]), i
        kind, level = KINDS[int(batch.kinds[i])], float(batch.levels[i])
        if kind == "mosaic":
            torch.testing.assert_close(batch.degraded[i], mosaic_by_hand(batch.clean[i], level))
        elif kind == "blur":
            torch.testing.assert_close(batch.degraded[i:i + 1],
                                       degrade(batch.clean[i:i + 1], "blur", level))
        elif kind == "dropout":
            assert dropout_keeps_patches(batch.clean[i], batch.degraded[i], level), i
    expected_nmi = nmi_oracle(batch.clean, batch.degraded, bins=64)
    np.testing.assert_allclose(batch.nmi.numpy(), expected_nmi, atol=1e-5)
    expected_eps = np.clip(1 - expected_nmi, 0, 0.9)
    np.testing.assert_allclose(batch.eps.numpy(), expected_eps, atol=1e-5)
    assert 0 < (expected_eps == 0.9).sum() < len(idx)  # both sides of the clamp are exercised
    labels = run.train.y[idx]
    torch.testing.assert_close(batch.targets, targets_by_hand(labels, batch.eps, 4, spread))
    mean = torch.tensor(run.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(run.data.std).view(1, 3, 1, 1)
    torch.testing.assert_close(batch.inputs, (batch.degraded - mean) / std)


def test_training_batch_of_the_other_variants(tmp_path):
    """baseline: one-hot, no NMI unless asked; ls: eps / K everywhere; level: eps = clamped d."""
    idx = torch.arange(32)
    baseline = prepare(tiny(tmp_path, variant="baseline"))
    plain = training_batch(baseline, idx)
    assert plain.nmi is None and bool((plain.eps == 0).all())
    torch.testing.assert_close(plain.targets, targets_by_hand(plain.labels, plain.eps, 4, "all"))
    shown = training_batch(baseline, idx, with_nmi=True)
    np.testing.assert_allclose(shown.nmi.numpy(), nmi_oracle(shown.clean, shown.degraded, 64),
                               atol=1e-5)
    ls = training_batch(prepare(tiny(tmp_path, variant="ls")), idx)
    torch.testing.assert_close(ls.targets, targets_by_hand(ls.labels, ls.eps, 4, "all"))
    assert bool((ls.eps == 0.1).all())
    level = training_batch(prepare(tiny(tmp_path, variant="level")), idx)
    torch.testing.assert_close(level.eps, level.levels.clamp(max=0.9))
    torch.testing.assert_close(level.targets,
                               targets_by_hand(level.labels, level.eps, 4, "others"))


# --- completed runs, divergence, provenance, damaged files -----------------------------------


def test_a_run_that_died_before_its_first_epoch_is_trained_again(tmp_path, monkeypatch):
    """A crash before epoch 1 leaves config.json alone: nothing to keep, so the folder is
    free for any settings (it blocked the folder as "trained with other settings")."""
    config = tiny(tmp_path, epochs=1, synthetic_per_class=20)
    with monkeypatch.context() as patch:
        def dies(*args, **kwargs):
            raise Interrupt

        patch.setattr(train_module, "_train_epoch", dies)
        with pytest.raises(Interrupt):
            train(config)
    files = RunFiles(config.out_dir)
    assert files.config.exists() and not files.history.exists() and not files.last.exists()
    asked = replace(config, synthetic_per_class=30)
    with pytest.raises(IncompleteRunError, match="not trained yet") as missing:
        completed_run(asked)
    assert missing.value.reason == "missing"
    result = train(asked)
    assert [r["epoch"] for r in result.history] == [1]
    assert completed_run(asked)["config"]["synthetic_per_class"] == 30


def test_read_history_drops_a_torn_line_only_while_a_run_is_unfinished(tmp_path):
    path = tmp_path / "history.jsonl"
    assert read_history(path) == []
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_history(path) == [{"epoch": 1}, {"epoch": 2}]  # resuming: the tail is cut
    with pytest.raises(IncompleteRunError, match=f"{path} ends in a torn line"):
        read_history(path, epochs=2)
    for text, found in (('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 2}\n', "[1, 2, 2]"),
                        ('{"epoch": 2}\n{"epoch": 3}\n', "[2, 3]"),
                        ("5\n6\n", "[None, None]"), ("", "no epoch")):
        path.write_text(text)
        with pytest.raises(IncompleteRunError, match=rf"{path} holds (the epochs )?"
                                                     rf"{re.escape(found)}, but result.json "
                                                     "says epochs 1 to 2 were trained"):
            read_history(path, epochs=2)
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    assert read_history(path, epochs=2) == [{"epoch": 1}, {"epoch": 2}]


def test_completed_run_names_what_is_wrong_and_the_fix(tmp_path, monkeypatch):
    config = tiny(tmp_path, epochs=3)
    with pytest.raises(IncompleteRunError, match="not trained yet") as missing:
        completed_run(config)
    assert str(tmp_path / "run") in str(missing.value) and "03_training" in str(missing.value)
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 1)
        with pytest.raises(Interrupt):
            train(config)
    with pytest.raises(IncompleteRunError, match="epoch 1 of 3.*--only 03_training"):
        completed_run(config)
    with pytest.raises(IncompleteRunError, match="epochs: saved 3, asked 5"):
        completed_run(replace(config, epochs=5))
    train(config)
    result = completed_run(config)
    assert result["completed"] and result["best_epoch"] in (1, 2, 3)
    assert completed_run(replace(config, eval_batch_size=7, device="cuda")) == result
    with pytest.raises(IncompleteRunError, match="seed: saved 0, asked 1") as other:
        completed_run(replace(config, seed=1))
    assert other.value.reason == "mismatch" and "--fresh" in str(other.value)


def test_a_diverged_run_is_never_complete(tmp_path):
    """lr 1e6: every training loss of epoch 1 is finite, but its last step leaves NaN weights."""
    config = tiny(tmp_path, epochs=3, lr=1e6)
    with pytest.raises(FloatingPointError, match="non-finite weights at epoch 1"):
        train(config)
    out = tmp_path / "run"
    assert not any((out / name).exists() for name in ("result.json", "last.pt", "best.pt"))
    with pytest.raises(IncompleteRunError, match="diverged") as incomplete:
        completed_run(config)
    assert incomplete.value.reason == "diverged" and "-p lr" in str(incomplete.value)


def test_the_checkpoint_called_last_good_is_finite(tmp_path, monkeypatch):
    """Weights that turn NaN in epoch 2 are never saved; the error names epoch 1's last.pt."""
    real_steps = train_module.train_steps
    epochs = {"n": 0}

    def poisoned_in_epoch_two(run, order, on_step=None):
        sums = real_steps(run, order, on_step)
        epochs["n"] += 1
        if epochs["n"] == 2:
            with torch.no_grad():
                next(run.model.parameters()).fill_(float("nan"))
        return sums

    monkeypatch.setattr(train_module, "train_steps", poisoned_in_epoch_two)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(FloatingPointError, match=f"last good checkpoint is {last} .epoch 1"):
        train(tiny(tmp_path, epochs=3))
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "run" / name, weights_only=True)
        assert state["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in state["model"].values()
                   if v.is_floating_point()), name
    assert not (tmp_path / "run" / "result.json").exists()


def test_reusing_a_finished_run_keeps_its_files_and_provenance(tmp_path):
    config = tiny(tmp_path, epochs=1)
    first = train(config)
    out = tmp_path / "run"
    result = json.loads((out / "result.json").read_text())
    result["provenance"].update(git_commit="an-older-commit", created="2020-01-01T00:00:00")
    (out / "result.json").write_text(json.dumps(result))
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    second = train(config)
    assert second.history == first.history and second.best_epoch == first.best_epoch
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == files
    assert completed_run(config)["provenance"]["git_commit"] == "an-older-commit"


def test_best_checkpoint_holds_weights_only_and_nothing_else_is_left(tmp_path):
    result = train(tiny(tmp_path, epochs=2))
    best = torch.load(result.best_checkpoint, weights_only=True)
    assert set(best) == {"model", "config", "classes", "epoch", "provenance"}
    assert "optimizer" in torch.load(result.last_checkpoint, weights_only=True)
    assert {p.name for p in result.out_dir.iterdir()} == {
        "config.json", "history.jsonl", "last.pt", "best.pt", "result.json"}


def test_damaged_checkpoints_are_named_with_the_fix(tmp_path, monkeypatch):
    config = tiny(tmp_path, epochs=2)
    with monkeypatch.context() as patch:
        stop_after_epoch(patch, 1)
        with pytest.raises(Interrupt):
            train(config)
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match="last.pt is damaged.*delete that run's folder"):
        train(config)
    best = tmp_path / "run" / "best.pt"
    best.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="best.pt is damaged.*delete that run's folder"):
        load_model(best, "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU machine")
def test_a_missing_gpu_is_refused_when_training_starts_not_before(tmp_path):
    config = tiny(tmp_path, device="cuda")  # a GPU profile loads on a CPU machine
    with pytest.raises(ValueError, match="no CUDA GPU"):
        prepare(config)


def test_reduce_overhead_falls_back_to_eager_on_the_cpu(tmp_path):
    """Same losses and weights as eager, with a last batch shorter than the others."""
    eager = train(tiny(tmp_path / "eager", epochs=1, batch_size=50))
    captured = train(tiny(tmp_path / "captured", epochs=1, batch_size=50,
                          compile="reduce-overhead"))
    assert strip_time(eager.history) == strip_time(captured.history)
    a = torch.load(eager.best_checkpoint, weights_only=True)["model"]
    b = torch.load(captured.best_checkpoint, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_headless_logs_say_trained_resumed_or_reused_and_jobs_log_every_epoch(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    config = tiny(tmp_path, epochs=3, variant="ls", seed=3)
    train(config, job={"launcher": "local", "job_id": "1"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "ls seed 3: training 3 epochs"
    assert [line.split(",")[0] for line in lines[1:3]] == ["ls seed 3: epoch 1/3",
                                                           "ls seed 3: epoch 2/3"]
    assert lines[3].startswith("ls seed 3: 3 epochs, best epoch ") and len(lines) == 4
    train(config)
    assert capsys.readouterr().out.startswith("ls seed 3: reused (finished: 3 epochs")
    RunFiles(config.out_dir).result.unlink()  # killed after its last epoch, before the end
    train(config)
    assert capsys.readouterr().out.startswith("ls seed 3: all 3 epochs saved, writing its result")


def test_result_binds_the_checkpoint_and_history_and_digests_the_weights(tmp_path):
    first = tiny(tmp_path / "a", epochs=2)
    second = tiny(tmp_path / "b", epochs=2)
    train(first), train(second)
    result_a = completed_run(first)
    result_b = completed_run(second)
    files_a, files_b = RunFiles(first.out_dir), RunFiles(second.out_dir)
    # The same seed twice: the same weights, though the files differ (they name their folder).
    assert files_a.best.read_bytes() != files_b.best.read_bytes()
    assert result_a["weights_sha256"] == result_b["weights_sha256"]
    other = tiny(tmp_path / "c", epochs=2, seed=1)
    train(other)
    assert completed_run(other)["weights_sha256"] != result_a["weights_sha256"]
    # Another run's best.pt copied in, the same settings' from another folder, or an edited
    # history: refused by name.
    original = files_a.best.read_bytes()
    files_a.best.write_bytes(RunFiles(other.out_dir).best.read_bytes())
    with pytest.raises(IncompleteRunError, match=r"best.pt holds another run's model \(seed 1; "
                                                 r"this folder's run has seed 0\)"):
        completed_run(first)
    files_a.best.write_bytes(files_b.best.read_bytes())
    with pytest.raises(IncompleteRunError, match="best.pt is not the file this run wrote"):
        completed_run(first)
    files_a.best.write_bytes(original)
    completed_run(first)
    history = files_b.history.read_text().replace('"test_acc": 0.', '"test_acc": 0.9', 1)
    files_b.history.write_text(history)
    with pytest.raises(IncompleteRunError, match="history.jsonl is not the file this run wrote"):
        completed_run(second)


def test_an_interrupt_says_in_one_line_what_was_saved_and_the_rerun_resumes(tmp_path, monkeypatch):
    from imlib.progress import Interrupted

    config = tiny(tmp_path, epochs=3)
    real_epoch = train_module._train_epoch

    def interrupted_at_two(run, epoch, bar):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(run, epoch, bar)

    monkeypatch.setattr(train_module, "_train_epoch", interrupted_at_two)
    with pytest.raises(Interrupted) as caught:
        train(config)
    line = caught.value._render_traceback_()
    assert len(line) == 1 and "\n" not in line[0]
    assert line[0].startswith("training of im seed 0 interrupted at epoch 2 of 3: epochs 1-1 "
                              "are saved in ") and "resume from epoch 2" in line[0]
    monkeypatch.setattr(train_module, "_train_epoch", real_epoch)
    assert [r["epoch"] for r in train(config).history] == [1, 2, 3]
