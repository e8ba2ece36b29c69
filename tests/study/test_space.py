import optuna

from study.space import suggest
from study.load import spec_from_dict

SPACE = {
    "teacher": {"type": "categorical", "choices": ["lightgbm", "mlp"]},
    "beta": {"type": "float", "low": 0.0, "high": 1.0, "when": {"teacher": "mlp"}},
    "depth": {"type": "int", "low": 2, "high": 6, "step": 2},
    "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
}


def sampled(seed=0, n=30):
    spec = spec_from_dict({"name": "s", "domain": "synthetic_ddsm", "search_space": SPACE})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest(trial, spec.dims()))
        study.tell(trial, 0.0)
    return out


def test_conditional_dimension_only_when_its_condition_holds():
    rows = sampled()
    assert {r["teacher"] for r in rows} == {"lightgbm", "mlp"}
    for r in rows:
        assert ("beta" in r) == (r["teacher"] == "mlp")
        assert r["depth"] in (2, 4, 6)
        assert 1e-4 <= r["lr"] <= 1e-2


def test_same_seed_same_sequence():
    assert sampled(seed=3) == sampled(seed=3)
    assert sampled(seed=3) != sampled(seed=4)
