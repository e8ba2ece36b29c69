"""A batch's wait must not cost a worker: when the recipe that holds up the next batch reports its last
epoch, the sampler is told its result then, the next batch is staged before the recipe's worker is
released, and Tune hands that worker on instead of stopping it and starting a new one (its imports again)."""
from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from study.load import spec_from_dict
from study.ray_executor import recipe_scheduler, searcher

SPEC = {"name": "w", "domain": "synthetic_ddsm",
        "student": {"epochs": 3},
        "search_space": {"alpha": {"type": "float", "low": 0.0, "high": 1.0}},
        "executor": {"trials": 4, "sample_batch": 2, "max_concurrent": 2, "grace_period": 1, "seed": 3}}


def test_a_recipes_last_report_tells_the_sampler_before_the_trial_ends():
    search = searcher(spec_from_dict(SPEC))
    first = [search.suggest(f"t{i}") for i in range(2)]
    assert [c["_recipe"] for c in first] == [0, 1] and search.suggest("early") is None
    search.on_trial_complete("t0", {"val_objective": 0.2, "training_iteration": 3})
    search.on_trial_result("t1", {"val_objective": 0.4, "training_iteration": 2})  # an epoch, not the last
    assert search.suggest("still") is None and search.told == 0
    search.on_trial_result("t1", {"val_objective": 0.5, "training_iteration": 3, "results": [{}]})
    assert search.suggest("t2")["_recipe"] == 2 and search.told == 2
    search.on_trial_complete("t1", {"val_objective": 0.5, "training_iteration": 3, "results": [{}]})
    assert search.told == 2 and search.results["t1"][0]["val_objective"] == 0.5  # recorded once
    # a trial's own error report is its last too
    search.on_trial_result("t2", {"val_objective": float("nan"), "training_iteration": 1, "error": "boom"})
    assert search.results["t2"][0]["error"] == "boom"


def test_the_same_recipes_whether_told_at_the_last_report_or_at_the_end():
    def run(early: bool) -> list[float]:
        search = searcher(spec_from_dict(SPEC))
        alphas, n = [], 0
        while len(alphas) < 4:
            batch = []
            while isinstance(cfg := search.suggest(f"t{n}"), dict):
                batch.append((f"t{n}", cfg))
                alphas.append(cfg["alpha"])
                n += 1
            for tid, cfg in batch:
                last = {"val_objective": cfg["alpha"] ** 2, "training_iteration": 3, "results": [{}]}
                if early:
                    search.on_trial_result(tid, last)
                search.on_trial_complete(tid, last)
        return alphas

    assert run(early=True) == run(early=False)


def test_asha_lets_the_last_epoch_end_the_recipe_and_records_the_same_rungs():
    """Epochs 3, grace period 1: rungs at 1 and 3, the second at the last epoch. Ray's ASHA stops a recipe at
    its last epoch's result; the engine's lets its function end it. Every other decision, and the rungs
    recorded once each recipe has completed, are Ray's."""
    spec = spec_from_dict(SPEC)
    ours = recipe_scheduler(spec)
    ray_asha = ASHAScheduler(time_attr="training_iteration", max_t=3, grace_period=1, reduction_factor=3,
                             metric="val_objective", mode="max")
    ours.set_search_properties("val_objective", "max")
    values = {"a": [0.5, 0.6, 0.7], "b": [0.1, 0.2, 0.3], "c": [0.9, 0.8, 0.4]}
    decisions = {}
    for sched, name in [(ours, "ours"), (ray_asha, "ray")]:
        trials = {k: SimpleNamespace(trial_id=k, config={"_recipe": i}) for i, k in enumerate(values)}
        for t in trials.values():
            sched.on_trial_add(None, t)
        out = []
        for k, vs in values.items():
            for epoch, v in enumerate(vs, 1):
                result = {"training_iteration": epoch, "val_objective": v}
                action = sched.on_trial_result(None, trials[k], result)
                out.append(action)
                if action == TrialScheduler.STOP or epoch == len(vs):
                    sched.on_trial_complete(None, trials[k], result)
                    break
        decisions[name] = (out, [(m, dict(r)) for m, r in sched._brackets[0]._rungs])
    (ours_out, ours_rungs), (ray_out, ray_rungs) = decisions["ours"], decisions["ray"]
    assert ours_rungs == ray_rungs
    assert ray_rungs == [(3, {"a": 0.7, "c": 0.4}), (1, {"a": 0.5, "b": 0.1, "c": 0.9})]
    # b is stopped at rung 1 (0.1 under the cutoff of 0.5); a and c reach the last epoch, where Ray stops them
    assert ray_out == ["CONTINUE", "CONTINUE", "STOP", "STOP", "CONTINUE", "CONTINUE", "STOP"]
    assert ours_out == ["CONTINUE", "CONTINUE", "CONTINUE", "STOP", "CONTINUE", "CONTINUE", "CONTINUE"]


def test_the_next_batch_takes_the_workers_of_the_last_one(tmp_path):
    """Real Ray, 2 slots, batches of 2: recipe 0 is quick, recipe 1 holds up batch 2. Batch 2's recipes run
    in the 2 workers batch 1 started (Tune keeps a worker that no staged trial needs only when none is kept
    already: before, recipe 1's worker was stopped and a third one started)."""
    import ray
    from ray import tune

    from study.ray_executor import ray_session

    spec = spec_from_dict(SPEC)

    def trainable(config):
        import os
        import time

        from ray import tune as t

        n = config["_recipe"]
        for epoch in (1, 2, 3):
            time.sleep(1.0 if n == 1 else 0.05)
            row = {"val_objective": 0.1 * (n + 1), "pid": os.getpid()}
            t.report({**row, "results": [row]} if epoch == 3 else row)

    assert not ray.is_initialized()
    with ray_session(spec, None):
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=searcher(spec), scheduler=recipe_scheduler(spec),
                                        metric="val_objective", mode="max", num_samples=-1,
                                        max_concurrent_trials=2, reuse_actors=True),
            run_config=tune.RunConfig(name="w", storage_path=str(tmp_path), verbose=0))
        grid = tuner.fit()
    pid = {r.config["_recipe"]: r.metrics["pid"] for r in grid}
    assert sorted(pid) == [0, 1, 2, 3] and all(r.metrics["training_iteration"] == 3 for r in grid)
    assert len(set(pid.values())) == 2 and {pid[2], pid[3]} == {pid[0], pid[1]}
