import dataclasses
import textwrap
import typing
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from study.errors import SpecError
from study.load import load_spec, spec_from_dict

GOOD = textwrap.dedent("""\
    name: ddsm-demo
    domain: synthetic_ddsm
    data: {n_train: 600, n_val: 150, n_test: 150, image_size: 48, seed: 0}
    student: {model: vit_tiny_patch16_224, patch_size: 8, embed_dim: 64, depth: 3, num_heads: 4, epochs: 3,
              batch_size: 32}
    search_space:
      teacher: {type: categorical, choices: [lightgbm, mlp]}
      temperature: {type: float, low: 1.0, high: 8.0, log: true}
      alpha: {type: float, low: 0.0, high: 1.0}
      beta: {type: float, low: 0.0, high: 1.0, when: {teacher: mlp}}
      attention_method: {type: categorical, choices: [raw_cls, rollout]}
      lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      depth: {type: int, low: 2, high: 4, step: 1}
    objective: {metric: pointing_game, mode: max}
    evaluation: {methods: [raw_cls, rollout], metrics: [pointing_game, relevance_mass]}
    executor: {kind: ray, trials: 8, max_concurrent: 2, scheduler: asha, seed: 0, resources: {cpu: 1, gpu: 0}}
    """)


def load_error(path) -> str:
    """The one line ``load_spec`` raises for a spec that cannot be run."""
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return str(err.value)


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_the_documented_shape_loads(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    dims = spec.dims()
    assert spec.name == "ddsm-demo" and spec.executor.trials == 8
    assert dims["temperature"].log and dims["beta"].when == {"teacher": "mlp"}
    assert dims["depth"].type == "int" and dims["depth"].step == 1


def test_shipped_specs_load():
    for path in ["search_spaces/ddsm.yaml", "search_spaces/cxr.yaml", "search_spaces/smoke.yaml"]:
        assert load_spec(path).name


BAD = [
    ("temperature: {type: float, low: 1.0, high: 8.0, log: true}",
     "temperature: {type: float, low: 1.0, hgih: 8.0, log: true}",
     "search_space.temperature.hgih: unknown key (did you mean 'high'?)"),
    ("temperature: {type: float, low: 1.0, high: 8.0, log: true}",
     "temperature: {type: float, low: 9.0, high: 8.0}",
     "search_space.temperature: low (9.0) is greater than high (8.0); swap them"),
    ("temperature: {type: float, low: 1.0, high: 8.0, log: true}",
     "temperature: {type: float, low: 0.0, high: 8.0, log: true}",
     "search_space.temperature.low: log: true needs low > 0 (got 0.0)"),
    ("choices: [lightgbm, mlp]", "choices: [lightgbm, bert_scratch]",
     "search_space.teacher.choices[1]: teacher 'bert_scratch' reads text but domain 'synthetic_ddsm' has tabular; "
     "use one of: image_self, label_smoothing, lightgbm, matched_lightgbm, matched_mlp, mlp"),
    ("choices: [lightgbm, mlp]", "choices: [lightgmb, mlp]",
     "search_space.teacher.choices[0]: unknown teacher 'lightgmb' (did you mean 'lightgbm'?); "
     "known: bert_scratch, hf_encoder, image_self, label_smoothing, lightgbm, matched_bert_scratch, "
     "matched_hf_encoder, matched_lightgbm, matched_minilm, matched_mlp, minilm, mlp"),
    ("choices: [lightgbm, mlp]", "choices: []", "search_space.teacher.choices: is empty; list at least one choice"),
    ("when: {teacher: mlp}", "when: {teachr: mlp}",
     "search_space.beta.when.teachr: 'teachr' is not a searched dimension (did you mean 'teacher'?)"),
    ("choices: [raw_cls, rollout]}\n  lr", "choices: [raw_cls, rolout]}\n  lr",
     "search_space.attention_method.choices[1]: unknown attention method 'rolout' (did you mean 'rollout'?); "
     "known: attnlrp, centre, grad_rollout, gradcam_tokens, random, raw_cls, rollout, uniform"),
    ("metric: pointing_game, mode", "metric: pointing_gam, mode",
     "objective.metric: unknown localization metric 'pointing_gam' (did you mean 'pointing_game'?); "
     "known: cnr, iou_top_k, pixel_auprc, pixel_auroc, pointing_game, relevance_mass, relevance_rank"),
    ("n_train: 600", "n_trian: 600", "data.n_trian: unknown key (did you mean 'n_train'?)"),
    ("epochs: 3", "epochs: three",
     "student.epochs: input should be a valid integer, unable to parse string as an integer (got 'three')"),
    ("domain: synthetic_ddsm", "domain: synthetic_dsm",
     "domain: unknown domain 'synthetic_dsm' (did you mean 'synthetic_ddsm'?); "
     "known: cbis_ddsm, mimic_cxr, synthetic_cxr, synthetic_ddsm"),
    ("  alpha: {type: float", "  alfa: {type: float",
     "search_space.alfa: unknown dimension (did you mean 'alpha'?); known: teacher, temperature, alpha, beta, "
     "attention_method, seed, patch_size, embed_dim, depth, num_heads, epochs, batch_size, lr, weight_decay, "
     "warmup_epochs"),
    ("alpha: {type: float, low: 0.0, high: 1.0}", "alpha: {type: float, low: 0.0, high: 1.5}",
     "search_space.alpha: alpha must lie in [0.0, 1.0] (got 1.5)"),
    ("kind: ray", "kind: slurm", "executor.kind: input should be 'ray' or 'local' (got 'slurm')"),
    ("executor:", "exector:", "exector: unknown key (did you mean 'executor'?)"),
    ("seed: 0}\nstudent", "seed: 0, root: /data/ddsm}\nstudent",
     "data.root: applies to the real domains only; synthetic_ddsm is synthetic"),
    ("batch_size: 32}", "batch_size: 32, pretrained: /nonexistent/vit.pth}",
     "student.pretrained: /nonexistent/vit.pth does not exist (a local timm checkpoint: nothing is downloaded)"),
    ("executor:", "teacher_options: {mlp: {depth: 3}}\nexecutor:",
     "teacher_options.mlp: teacher 'mlp' takes no options"),
]


@pytest.mark.parametrize("old,new,message", BAD, ids=[b[2].split(":")[0] for b in BAD])
def test_bad_spec_gets_one_line_naming_the_key(tmp_path, old, new, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    line = load_error(path)
    assert line == f"{path}: {message}" and "\n" not in line


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace("domain: synthetic_ddsm", "domain: [synthetic_ddsm"))
    with pytest.raises(SpecError, match=r"YAML syntax error at line \d+, column \d+"):
        load_spec(path)


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12))
def test_fuzzed_specs_raise_only_the_engines_error(raw):
    try:
        spec_from_dict(raw)
    except SpecError as err:
        assert "\n" not in str(err)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "low", "high", "log", "step", "choices", "when", "hgih"]),
                       st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text(max_size=4)
                       | st.lists(st.integers(0, 3), max_size=3), max_size=5))
def test_fuzzed_dimensions_raise_only_the_engines_error(dim):
    try:
        spec_from_dict({"name": "x", "domain": "synthetic_ddsm", "search_space": {"temperature": dim}})
    except SpecError as err:
        assert "\n" not in str(err)


REAL = GOOD.replace("domain: synthetic_ddsm", "domain: cbis_ddsm").replace(
    "seed: 0}", "seed: 0, root: '${DDSM_TEST_ROOT}', options: {benign_without_callback: exclude}}", 1)


def test_a_real_domain_without_a_root_runs_its_synthetic_stand_in(tmp_path, monkeypatch):
    monkeypatch.delenv("DDSM_TEST_ROOT", raising=False)
    spec = load_spec(write(tmp_path, REAL))
    assert spec.domain == "synthetic_ddsm" and spec.stand_in_for == "cbis_ddsm"
    assert spec.data.root is None and spec.data.options == {} and spec.data.n_train == 600
    # the same hash as the synthetic spec written out: a stand-in study is the synthetic study
    assert spec.spec_hash() == load_spec(write(tmp_path, GOOD)).spec_hash()


def test_a_real_domain_reads_its_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSM_TEST_ROOT", str(tmp_path))
    spec = load_spec(write(tmp_path, REAL))
    assert spec.domain == "cbis_ddsm" and spec.stand_in_for is None and spec.data.root == str(tmp_path)
    assert spec.data.options == {"benign_without_callback": "exclude"}


@pytest.mark.parametrize("old,new,message", [
    ("benign_without_callback: exclude", "benign_without_callback: drop",
     "data.options.benign_without_callback: input should be 'benign' or 'exclude'"),
    ("benign_without_callback: exclude", "bening_without_callback: exclude",
     "data.options.bening_without_callback: unknown option; cbis_ddsm takes: abnormality, benign_without_callback, "
     "privileged_columns, val_fraction, max_train, stratify"),
    ("'${DDSM_TEST_ROOT}'", "/nonexistent/ddsm", "data.root: /nonexistent/ddsm does not exist or is not a folder"),
])
def test_bad_real_data_section(tmp_path, monkeypatch, old, new, message):
    monkeypatch.setenv("DDSM_TEST_ROOT", str(tmp_path))
    path = write(tmp_path, REAL.replace(old, new))
    assert load_error(path) == f"{path}: {message}"


def test_teacher_options_are_checked(tmp_path):
    cxr = GOOD.replace("synthetic_ddsm", "synthetic_cxr").replace("choices: [lightgbm, mlp]", "choices: [hf_encoder]")
    cxr = cxr.replace("      beta: {type: float, low: 0.0, high: 1.0, when: {teacher: mlp}}\n", "")
    path = write(tmp_path, cxr)
    assert load_error(path) == f"{path}: teacher_options.hf_encoder.model_path: missing: teacher 'hf_encoder' needs it"
    path = write(tmp_path, cxr + "teacher_options: {hf_encoder: {model_path: /nonexistent/bert}}\n")
    assert load_error(path) == (f"{path}: teacher_options.hf_encoder.model_path: value error, /nonexistent/bert is "
                                "not a Hugging Face model folder (no config.json); nothing is downloaded")


def test_stand_in_sections_size_the_synthetic_run_only(tmp_path, monkeypatch):
    text = REAL.replace("image_size: 48", "image_size: 224").replace(
        "objective:", "stand_in:\n  data: {image_size: 48}\n  student: {epochs: 1}\nobjective:")
    monkeypatch.delenv("DDSM_TEST_ROOT", raising=False)
    synth = load_spec(write(tmp_path, text))
    assert synth.domain == "synthetic_ddsm" and synth.data.image_size == 48 and synth.student.epochs == 1
    monkeypatch.setenv("DDSM_TEST_ROOT", str(tmp_path))
    real = load_spec(write(tmp_path, text))
    assert real.domain == "cbis_ddsm" and real.data.image_size == 224 and real.student.epochs == 3
    path = write(tmp_path, text.replace("  data: {image_size: 48}\n", "  data: 48\n"))
    assert load_error(path) == (f"{path}: stand_in: must be a mapping of spec sections (data:, student:, ...) for the "
                              "synthetic stand-in")


def test_shipped_specs_have_a_real_form(monkeypatch, tmp_path):
    monkeypatch.setenv("CBIS_DDSM_ROOT", str(tmp_path))
    monkeypatch.setenv("MIMIC_CXR_ROOT", str(tmp_path))
    ddsm, cxr = load_spec("search_spaces/ddsm.yaml"), load_spec("search_spaces/cxr.yaml")
    assert (ddsm.domain, cxr.domain) == ("cbis_ddsm", "mimic_cxr")
    assert ddsm.data.image_size == cxr.data.image_size == 224 and cxr.data.label_noise is None


def test_tracking_is_no_part_of_the_spec_hash_and_a_misspelt_tracking_key_is_named():
    raw = {"name": "h", "domain": "synthetic_ddsm"}
    plain = spec_from_dict(raw)
    tracked = spec_from_dict({**raw, "tracking": {"mlflow": {"tracking_uri": "sqlite:///x.db"}, "tensorboard": True}})
    assert tracked.spec_hash() == plain.spec_hash()  # a stored study resumes under other trackers
    assert (plain.tracking.mlflow, plain.tracking.tensorboard) == (None, False)
    with pytest.raises(SpecError) as err:
        spec_from_dict({**raw, "tracking": {"mlflow": {"trackin_uri": "sqlite:///x.db"}}})
    assert str(err.value) == "tracking.mlflow.trackin_uri: unknown key (did you mean 'tracking_uri'?)"


def test_a_bound_declared_on_the_config_reaches_the_spec_and_the_search_space(tmp_path):
    """``embed_dim >= 8`` is written once, on mmpkd_core's StudentConfig: the spec's ``student`` section
    and the search space's range check both read it from there."""
    from annotated_types import Ge

    from mmpkd_core.config import StudentConfig

    assert typing.get_type_hints(StudentConfig, include_extras=True)["embed_dim"].__metadata__ == (Ge(8),)
    plain = "name: b\ndomain: synthetic_ddsm\n"
    path = write(tmp_path, plain + "student: {embed_dim: 4}\n")
    assert load_error(path) == f"{path}: student.embed_dim: input should be greater than or equal to 8 (got 4)"
    path = write(tmp_path, plain + "search_space: {embed_dim: {type: int, low: 4, high: 64}}\n")
    assert load_error(path) == f"{path}: search_space.embed_dim: embed_dim must lie in [8, inf] (got 4)"


def test_ranges_are_the_declared_bounds():
    """RANGES is derived from the bounds (StudentConfig's, RecipeSpec's), each in its field's type: the
    messages print ``[8, inf]`` for an int and ``(0.0, inf]`` for a float, as the hand-written table did."""
    from study.spec import RANGES

    written = {"alpha": (0.0, 1.0, True), "temperature": (0.0, None, False), "beta": (0.0, None, True),
               "lr": (0.0, None, False), "weight_decay": (0.0, None, True), "epochs": (1, None, True),
               "batch_size": (1, None, True), "embed_dim": (8, None, True), "depth": (1, None, True),
               "num_heads": (1, None, True), "patch_size": (1, None, True), "warmup_epochs": (0, None, True)}
    assert {k: repr(v) for k, v in RANGES.items()} == {k: repr(v) for k, v in written.items()}


def test_a_section_model_is_made_from_any_config_dataclass():
    from dataclasses import dataclass

    from annotated_types import Ge, Gt, Le
    from pydantic import ValidationError

    from study.spec import section_of, valid_range

    @dataclass(frozen=True)
    class Toy:
        width: Annotated[int, Ge(3), Le(9)] = 4
        rate: Annotated[float, Gt(0)] = 0.5
        name: str = "toy"

    model = section_of(Toy, "ToySpec", name=(list[str], []))
    assert list(model.model_fields) == ["width", "rate", "name"] and model().model_dump() == {
        "width": 4, "rate": 0.5, "name": []}
    with pytest.raises(ValidationError):
        model(width=10)
    assert [valid_range(f) for f in model.model_fields.values()] == [(3, 9, True), (0.0, None, False), None]
    with pytest.raises(TypeError, match="has no field nmae"):
        section_of(Toy, "ToySpec", nmae=(str, ""))


@pytest.mark.parametrize("overrides", [{"options": ({}, "{}")}, {}], ids=["data", "student"])
def test_spec_sections_have_the_configs_fields_and_defaults(overrides):
    """DataSpec and StudentSpec are generated from DataConfig and StudentConfig: the same names in the same
    order, the same defaults and bounds; DataSpec.options alone differs (a mapping in a spec, sorted JSON
    in the config)."""
    from mmpkd_core.config import StudentConfig
    from mmpkd_core.data import DataConfig
    from study.spec import DataSpec, StudentSpec

    spec, config = (DataSpec, DataConfig) if overrides else (StudentSpec, StudentConfig)
    fields = dataclasses.fields(config)
    hints = typing.get_type_hints(config, include_extras=True)
    assert list(spec.model_fields) == [f.name for f in fields]
    for f in fields:
        got = spec.model_fields[f.name]
        if f.name in overrides:
            assert (got.default, f.default) == overrides[f.name]
            continue
        assert got.default == f.default and type(got.default) is type(f.default), f.name
        bounds = hints[f.name].__metadata__ if typing.get_origin(hints[f.name]) is Annotated else ()
        assert tuple(got.metadata) == bounds, f.name
    made = config.from_section(**spec().model_dump()) if overrides else config(**spec().model_dump())
    assert made == config()  # the spec's defaults are the config's
