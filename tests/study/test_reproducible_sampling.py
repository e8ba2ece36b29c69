"""The sequence of sampled recipes must not depend on concurrency or completion order."""
import random

from study.ray_executor import searcher
from study.spec import spec_from_dict

SPEC = {"name": "r", "domain": "synthetic_ddsm",
        "search_space": {"teacher": {"type": "categorical", "choices": ["lightgbm", "mlp"]},
                         "alpha": {"type": "float", "low": 0.0, "high": 1.0},
                         "temperature": {"type": "float", "low": 1.0, "high": 8.0, "log": True}},
        "executor": {"trials": 12, "sample_batch": 3, "seed": 5}}


def simulate(concurrency: int, shuffle_seed: int) -> list[dict]:
    """Drive the searcher as Tune does: at most ``concurrency`` running, completing in random order."""
    search = searcher(spec_from_dict(SPEC))
    rng = random.Random(shuffle_seed)
    sampled, running, n = [], [], 0
    while len(sampled) < 12 or running:
        while len(running) < concurrency and len(sampled) < 12:
            cfg = search.suggest(f"t{n}")
            if cfg is None:  # the batch is not finished yet
                break
            sampled.append({k: v for k, v in cfg.items() if k != "_recipe"})
            running.append((f"t{n}", cfg))
            n += 1
        done = running.pop(rng.randrange(len(running)))
        objective = done[1]["alpha"] * (2 if done[1]["teacher"] == "mlp" else 1)  # deterministic result
        search.on_trial_complete(done[0], {"val_objective": objective, "training_iteration": 1})
    return sampled


def test_same_recipes_whatever_the_concurrency_and_completion_order():
    reference = simulate(concurrency=1, shuffle_seed=0)
    assert len(reference) == 12 and len({round(r["alpha"], 12) for r in reference}) == 12
    for concurrency, order in [(2, 1), (3, 2), (3, 3)]:
        assert simulate(concurrency, order) == reference
