"""run_trial / run_recipe: determinism on CPU, seeds in lockstep, the payload the driver stores."""
import numpy as np
import pytest

from mmpkd_core import DataConfig, StudentConfig, TrialConfig, run_recipe, run_trial

pytestmark = pytest.mark.trains

CFG = TrialConfig(domain="synthetic_ddsm", data=DataConfig(n_train=120, n_val=40, n_test=40, image_size=32),
                  student=StudentConfig(patch_size=8, embed_dim=32, depth=2, num_heads=2, epochs=2),
                  teacher="mlp", alpha=0.5, beta=0.5, temperature=2.0, threads=1)


def test_same_config_same_numbers(cache_dir):
    cfg = TrialConfig(**{**CFG.__dict__, "cache_dir": cache_dir})
    a, b = run_trial(cfg), run_trial(cfg)
    assert [e["loss"] for e in a.epochs] == [e["loss"] for e in b.epochs]
    for key in a.scores:
        np.testing.assert_array_equal(a.scores[key], b.scores[key])
    assert a.test_auroc == b.test_auroc


def test_seeds_in_lockstep_equal_separate_runs(cache_dir):
    cfg = TrialConfig(**{**CFG.__dict__, "cache_dir": cache_dir})
    rows = []
    together = run_recipe(cfg, [0, 1], report=rows.append)
    apart = [run_trial(TrialConfig(**{**cfg.__dict__, "seed": s})) for s in (0, 1)]
    for t, s in zip(together, apart):
        assert [e["loss"] for e in t.epochs] == [e["loss"] for e in s.epochs]
        assert t.test_objective == s.test_objective
    assert len(rows) == 2 and rows[0]["loss"] == np.mean([t.epochs[0]["loss"] for t in together])
    assert [p["seed"] for p in rows[-1]["results"]] == [0, 1]  # the last epoch carries every seed's result


def test_payload_scores_every_method_metric_and_chance_level(cache_dir):
    cfg = TrialConfig(**{**CFG.__dict__, "cache_dir": cache_dir})
    p = run_trial(cfg).payload()
    assert set(p["scores"]) == {f"{m}|{k}" for m in ("raw_cls", "rollout", "uniform", "centre")
                                for k in ("pointing_game", "relevance_mass")}
    assert all(len(v) == len(p["image_ids"]) == 40 for v in p["scores"].values())
    assert set(p["method_params"]) == {"raw_cls", "rollout"}


@pytest.mark.parametrize("method", ["rollout", "raw_cls"])
def test_validation_and_test_objectives_use_the_same_tuned_parameters(cache_dir, method):
    """One objective: each epoch's val_objective (what the sampler and ASHA see, and what is stored) is the
    sampled method at the parameters tuned on the validation images, the ones the test images are then
    scored with; it is never below the method's defaults on the same images."""
    import dataclasses

    from mmpkd_core.data import load_domain
    from mmpkd_core.evaluate import localization_scores, tune_methods
    from mmpkd_core.teachers import teacher_outputs
    from mmpkd_core.trainer import train, trial_inputs
    from mmpkd_core.trial import pick_device

    cfg = dataclasses.replace(CFG, cache_dir=cache_dir, attention_method=method, objective_metric="relevance_mass")
    data = load_domain(cfg.domain, cfg.data, cache_dir)
    t = trial_inputs(data, teacher_outputs("mlp", cfg.domain, cfg.data, 0, cache_dir), pick_device())
    model, history = train(cfg, data, t)
    val = data.roi_index("val")
    chosen = tune_methods(model, lambda: t.batches(val, 128, masks=True), None, [method], "relevance_mass")

    def val_score(params: dict) -> float:
        s = localization_scores(model, t.batches(val, 128, masks=True), None, [method], ["relevance_mass"],
                                params={method: params})
        return float(np.nanmean(s[(method, "relevance_mass")]))

    assert history[-1]["val_objective"] == val_score(chosen[method])
    assert history[-1]["val_objective"] >= val_score({})
    result = run_trial(cfg)  # the same training, on the trial's one thread here: equal to float rounding
    assert result.method_params[method] == chosen[method]
    assert result.val_objective == pytest.approx(history[-1]["val_objective"], rel=1e-6)
