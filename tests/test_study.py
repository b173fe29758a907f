"""Profiles: every training field reachable, protocols as their sources, bad values named."""

from __future__ import annotations

import math

import pytest

import imlib.study as study
from imlib.runs import TrainConfig
from imlib.study import TRAINING_FIELDS, load_params, parse_override


def test_every_training_field_set_on_the_command_line_reaches_each_run():
    # One non-default value per field that a profile may set (each valid on its own).
    changed = {"synthetic_per_class": 7, "synthetic_test_per_class": 9, "synthetic_classes": 3,
               "synthetic_cue": "fine",
               "epochs": 2, "batch_size": 32,
               "augment_batches": 2, "lr": 0.02, "weight_decay": 0.5, "schedule": "cosine",
               "eta_min": 0.001, "base_augment": False, "degrade_kinds": ["blur"],
               "ls_eps": 0.2, "im_max_eps": 0.5, "im_spread": "all", "nmi_bins": 16,
               "holdout_fraction": 0.2, "selection": "last", "device": "cpu", "amp": True,
               "eval_batch_size": 64, "compile": "default"}
    untested = set(TRAINING_FIELDS) - set(changed) - {"dataset", "data_root", "model",
                                                       "degrade"}
    assert not untested, f"add a value for {untested}"
    params = load_params("smoke", {**changed, "protocols": ["paper"]})
    config = params.train_config("paper", "im", 1)
    for name, value in changed.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert getattr(config, name) == expected, name
        assert getattr(config, name) != getattr(TrainConfig(), name), name
    assert (config.variant, config.seed) == ("im", 1)


def test_reference_code_protocol_is_the_public_scripts():
    params = load_params("smoke")
    for variant in params.variants:
        config = params.train_config("reference-code", variant, 0)
        # scripts/train_*.py: all 50,000 images, fp32, batch 128, cosine to 1e-6, best test epoch
        assert config.holdout_fraction == 0 and not config.amp
        assert (config.batch_size, config.schedule, config.eta_min) == (128, "cosine", 1e-6)
        assert config.selection == "test"
        # IM (and the level control set up like it): lr 5e-4, no crop + flip, eps / K spread
        if variant in ("im", "level"):
            assert (config.lr, config.base_augment, config.im_spread) == (5e-4, False, "all")
        else:
            assert (config.lr, config.base_augment) == (1e-3, True)


def test_paper_protocol_keeps_the_text_and_amp_can_be_turned_off():
    paper = load_params("paper")
    config = paper.train_config("paper", "im", 0)
    assert (config.holdout_fraction, config.selection, config.im_spread) == (0.1, "holdout",
                                                                            "others")
    assert (config.batch_size, config.lr, config.weight_decay, config.epochs) == (256, 1e-3,
                                                                                 1e-4, 100)
    unmixed = load_params("paper", {"amp": False}).train_config("paper", "im", 0)
    assert config.amp and not unmixed.amp


def test_the_gpu_profile_loads_on_a_machine_without_a_gpu():
    params = load_params("paper")  # resolves no device
    assert params.training.device == "cuda" and params.training.model == "resnet18"


def test_runs_lists_every_protocol_variant_and_seed_once():
    params = load_params("smoke", {"seeds": [3, 5]})
    runs = params.runs()
    per_seed = len(params.variants_for("paper")) + len(params.variants_for("reference-code"))
    assert len(params.variants_for("paper")) == len(params.variants) + len(params.ablations)
    assert len({r.dir for r in runs}) == len(runs) == 2 * per_seed
    assert {r.protocol for r in params.runs("reference-code")} == {"reference-code"}
    for run in runs:
        assert run.config == params.train_config(run.protocol, run.variant, run.seed)
        assert run.dir == params.train_dir(run.protocol, run.variant, run.seed) == (
            params.runs_root / "train" / run.protocol / run.variant / f"seed{run.seed}")


def test_a_protocol_the_study_does_not_select_is_refused_by_name():
    params = load_params("smoke", {"protocols": ["reference-code"]})
    for call in (lambda: params.train_config("paper", "im", 0),
                 lambda: params.train_dir("paper", "im", 0), lambda: params.eval_dir("paper"),
                 lambda: params.figures("paper"), lambda: params.runs("paper")):
        with pytest.raises(ValueError, match=r"^protocol must be one of the study's protocols "
                                             r"\['reference-code'\], got 'paper'$"):
            call()
    assert params.eval_dir("reference-code") == params.runs_root / "eval" / "reference-code"


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("-2.5E+2", -250.0), ("3", 3),
                                         ("[0, 1]", [0, 1]), ("null", None), ("true", True),
                                         ("cuda", "cuda")])
def test_overrides_read_as_yaml_1_2(text, value):
    assert parse_override(text) == value and type(parse_override(text)) is type(value)


@pytest.mark.parametrize("overrides, message", [
    ({"seeds": 3}, "seeds must be a non-empty list"),
    ({"seeds": [0, 0]}, "seeds must be distinct"),
    ({"runs_dir": None}, r"runs_dir must be a folder \(a path\)"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"nmi_pairs": 0}, "nmi_pairs must be an int >= 1"),
    ({"synthetic_classes": 1}, "synthetic_classes"),
    ({"amp": "maybe"}, "amp"),
    ({"cifar100c_dir": "5"}, "cifar100c_dir '5' is not a folder"),
    ({"cifar100c_dir": 5}, "cifar100c_dir '5' is not a folder"),  # -p cifar100c_dir 5
    ({"variants": ["im", "mixup"]}, "variants"),
    ({"protocols": []}, "protocols"),
])
def test_bad_values_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_params("smoke", overrides)


def test_a_value_that_is_not_yaml_is_named():
    with pytest.raises(ValueError, match=r"cannot read the value '\[0,'"):
        parse_override("[0,")


def test_broken_and_empty_profiles_are_named_with_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "PROFILES_DIR", tmp_path)
    (tmp_path / "broken.yaml").write_text("profile: broken\nseeds: [0,\nepochs: 3\n")
    (tmp_path / "empty.yaml").write_text("# nothing here\n")
    with pytest.raises(ValueError, match=r"broken.yaml: YAML syntax error at line \d"):
        load_params("broken")
    with pytest.raises(ValueError, match="empty.yaml is empty"):
        load_params("empty")


def test_the_settings_table_shows_per_variant_values_where_the_protocol_varies_them():
    table = load_params("smoke").settings()
    assert table.loc["lr", "paper"] == str(TrainConfig().lr)
    assert "im: 0.0005" in table.loc["lr", "reference-code"]


# --- nothing silently replaced: pins, lists, the profile, the README's figures ------------------

# One value per setting that the reference-code protocol fixes, differing from its pin for at
# least one variant (base_augment: the pin differs between variants, so any value does).
DIFFERING_FROM_THE_PIN = {"lr": 2e-3, "batch_size": 64, "schedule": "constant", "eta_min": 1e-4,
                          "base_augment": True, "im_spread": "others", "amp": True,
                          "holdout_fraction": 0.2, "selection": "last"}


def test_every_pinned_setting_is_listed():
    pinned = {name for variant in study.VARIANTS for name in study.pinned(variant)}
    assert pinned == set(DIFFERING_FROM_THE_PIN)


@pytest.mark.parametrize("name, value", DIFFERING_FROM_THE_PIN.items())
def test_an_override_the_reference_code_protocol_would_replace_is_refused(name, value):
    with pytest.raises(ValueError, match=f"^{name} .*: the reference-code protocol pins {name} "
                                         r"\(.*-p protocols \"\[paper\]\"$"):
        load_params("smoke", {name: value})
    config = load_params("smoke", {name: value, "protocols": ["paper"]}).train_config(
        "paper", "im", 0)
    assert getattr(config, name) == value


def test_an_override_equal_to_every_selected_variants_pin_is_allowed():
    params = load_params("smoke", {"batch_size": 128, "amp": False})  # both pinned alike
    assert {r.config.batch_size for r in params.runs()} == {128}
    baselines = load_params("smoke", {"lr": 1e-3, "variants": ["baseline", "ls"]})
    assert {r.config.lr for r in baselines.runs()} == {1e-3}
    with pytest.raises(ValueError, match=r"pins lr \(baseline: 0\.001; im: 0\.0005\)"):
        load_params("smoke", {"lr": 1e-3, "variants": ["baseline", "im"]})


@pytest.mark.parametrize("name, text", [("degrade_kinds", "blur"), ("variants", "im"),
                                        ("protocols", "paper"), ("seeds", "0, 1")])
def test_a_bare_string_where_a_list_belongs_is_refused_with_the_spelling_that_works(name, text):
    with pytest.raises(ValueError, match=rf"^{name} must be a list, e\.g\. \[{text}\], got the "
                                         f"bare string '{text}'$"):
        load_params("smoke", {name: parse_override(text)})
    assert parse_override(f"[{text}]")  # the spelling it suggests is a list


def test_the_profile_is_not_an_override_and_a_profile_file_names_itself(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="profile is not a parameter: choose the profile with "
                                         "--profile NAME"):
        load_params("smoke", {"profile": "cpu"})
    (tmp_path / "mine.yaml").write_text((study.PROFILES_DIR / "smoke.yaml").read_text())
    monkeypatch.setattr(study, "PROFILES_DIR", tmp_path)
    with pytest.raises(ValueError, match="mine.yaml says profile: 'smoke'; it must be the file's "
                                         "name, 'mine'"):
        load_params("mine")


def test_figures_go_to_the_runs_folder_unless_the_run_is_plain_or_names_them(tmp_path):
    plain = load_params("smoke")
    assert plain.figures_root == study.PROJECT_ROOT / "paper_figures" / "smoke"
    changed = load_params("smoke", {"epochs": 3})
    assert changed.figures_root == changed.runs_root / "figures" == (
        study.PROJECT_ROOT / "runs" / "smoke" / "figures")
    moved = load_params("smoke", {"runs_dir": str(tmp_path / "r")})
    assert moved.figures("paper") == tmp_path / "r" / "figures" / "paper"
    assert moved.figures("reference-code") == tmp_path / "r" / "figures" / "reference-code"
    named = load_params("smoke", {"epochs": 3, "figures_dir": str(tmp_path / "f")})
    assert named.figures_root == tmp_path / "f"


# The YAML 1.2.2 specification's examples of the core schema: 2.19 (integers), 2.20 (floats),
# 2.21 (miscellaneous) and 10.9 (core tag resolution); then YAML 1.1's readings that 1.2 drops.
@pytest.mark.parametrize("text, value", [
    ("12345", 12345), ("+12345", 12345), ("0o14", 12), ("0xC", 12),  # example 2.19
    ("1.23015e+3", 1230.15), ("12.3015e+02", 1230.15), ("1230.15", 1230.15),  # example 2.20
    ("-.inf", float("-inf")),
    ("null", None), ("", None), ("true", True), ("false", False), ("'012345'", "012345"),  # 2.21
    ("[ true, True, false, FALSE ]", [True, True, False, False]),  # example 10.9
    ("[ 0, 0o7, 0x3A, -19 ]", [0, 7, 58, -19]),
    ("[ 0., -0.0, .5, +12e03, -2E+05 ]", [0.0, -0.0, 0.5, 12000.0, -200000.0]),
    ("[ .inf, -.Inf, +.INF ]", [float("inf"), float("-inf"), float("inf")]),
    ("[010]", [10]), ("0010", 10), ("1:00", "1:00"), ("yes", "yes"), ("No", "No"), ("on", "on"),
    ("0b101", "0b101"), ("2001-12-14", "2001-12-14"), ("1_000", "1_000"), ("~", None),
])
def test_values_follow_the_yaml_1_2_core_schema(text, value):
    parsed = parse_override(text)
    assert parsed == value and type(parsed) is type(value), (text, parsed)


def test_yaml_1_2_nan_is_read_as_nan():
    assert all(math.isnan(parse_override(text)) for text in (".nan", ".NaN", ".NAN"))


@pytest.mark.parametrize("text, message", [
    ("{a: 1, b: 2, a: 3}", r"line 1: duplicate key 'a' \(first on line 1\)"),
    ("x: 1\ny:\n  z: 2\n  z: 3\n", r"line 4: duplicate key 'z' \(first on line 3\)"),
    ("a: &x [1]\nb: *x\n", r"line 2: alias \*x refused"),
    ("!!python/object/apply:os.system [echo hi]", "could not determine a constructor"),
])
def test_duplicate_keys_aliases_and_python_tags_are_refused_with_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_override(text)


def test_the_profile_file_is_known_to_record_its_digest():
    params = load_params("smoke")
    assert params.profile_file == study.PROFILES_DIR / "smoke.yaml"
    assert params.profile_file.is_file()
