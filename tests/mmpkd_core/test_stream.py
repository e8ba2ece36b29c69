"""Images read from disk a batch at a time (mmpkd_core.data.stream): values on hand-built arrays, and
a trial on a prepared cache that does not read the cache into memory."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mmpkd_core.data.stream import ArrayFile, Rows, batches, train_stats


@pytest.fixture()
def u8(tmp_path):
    arr = np.arange(6 * 1 * 2 * 2, dtype=np.uint8).reshape(6, 1, 2, 2) * 10  # row k holds 40k .. 40k + 30
    np.save(tmp_path / "images.npy", arr)
    return arr, Rows(ArrayFile(tmp_path / "images.npy"))


def test_rows_read_what_numpy_reads_in_any_order_with_repeats(u8):
    arr, rows = u8
    assert rows.shape == (6, 1, 2, 2) and rows.dtype == np.uint8 and rows.nbytes == 24
    for key in ([5, 0, 5, 3], [1, 2, 3], np.array([True, False, False, False, False, True]), slice(1, 4), 4):
        np.testing.assert_array_equal(rows[key], arr[key])
    np.testing.assert_array_equal(rows[2, 0], arr[2, 0])
    np.testing.assert_array_equal(rows[:, 0, 1], arr[:, 0, 1])
    sub = Rows(rows.file, np.array([4, 1]), blank=np.array([False, True]))  # a view; its second row blanked
    np.testing.assert_array_equal(np.asarray(sub), np.stack([arr[4], np.zeros_like(arr[1])]))
    np.testing.assert_array_equal(sub.any_rows(np.array([1, 0])), [False, True])


def test_train_stats_in_unit_range_and_cached_beside_the_file(u8, tmp_path):
    arr, rows = u8
    mean, std = train_stats(rows, np.array([0, 1]))  # values 0, 10, ..., 70 out of 255
    assert mean == pytest.approx(35 / 255, abs=1e-12)
    assert std == pytest.approx(np.sqrt(np.mean((np.arange(8) * 10 - 35.0) ** 2)) / 255, abs=1e-12)
    assert json.loads(next(tmp_path.glob("stats-*.json")).read_text())["mean"] == pytest.approx(35 / 255, abs=1e-12)
    assert train_stats(arr, np.array([0, 1])) == pytest.approx((mean, std), abs=1e-12)  # an in-memory array agrees


def test_batches_standardise_on_the_device_in_the_rows_order(u8):
    arr, rows = u8
    got = list(batches(rows, np.array([3, 0, 5]), 2, torch.device("cpu"), mean=0.5, std=0.25, workers=0))
    assert [tuple(b.shape) for b in got] == [(2, 1, 2, 2), (1, 1, 2, 2)] and got[0].dtype == torch.float32
    want = (arr[[3, 0, 5]].astype(np.float32) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(torch.cat(got).numpy(), want, rtol=1e-6)
    masks = Rows(rows.file)  # any second file of the same length serves as "masks"
    x, m = next(batches(rows, np.array([2]), 4, torch.device("cpu"), 0.0, 1.0, masks=masks, workers=1))
    np.testing.assert_array_equal(m, arr[[2]])  # a loader worker process reads the same rows
    np.testing.assert_allclose(x.numpy(), arr[[2]] / np.float32(255), rtol=1e-6)


CHILD = textwrap.dedent("""
    import json, sys
    def peak_kb():  # this process's own high-water mark: ru_maxrss would carry the parent's, from before exec
        return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
    from mmpkd_core import StudentConfig, TrialConfig, run_trial
    from mmpkd_core.data import DataConfig, load_domain
    cfg = TrialConfig(domain="mimic_cxr", data=DataConfig(**json.loads(sys.argv[1])),
                      student=StudentConfig(patch_size=16, embed_dim=32, depth=2, num_heads=2, epochs=1, batch_size=64),
                      eval_methods=("raw_cls",), eval_metrics=("pointing_game",), attention_method="raw_cls",
                      cache_dir=sys.argv[2], threads=1)
    load_domain(cfg.domain, cfg.data, cfg.cache_dir)  # tables and meta: what any trial holds
    before = peak_kb()
    result = run_trial(cfg)
    after = peak_kb()
    print(json.dumps({"before_kb": before, "after_kb": after, "val_auroc": result.val_auroc}))
""")


def trial_growth(tmp_path, n: int) -> tuple[int, dict]:
    """Peak-RSS growth (bytes) of one trial in a fresh process on a prepared cache of ``n`` images at 160 px."""
    from mmpkd_core.data.scale import write_mimic_like

    cfg = write_mimic_like(tmp_path / f"root{n}", tmp_path / "cache", n=n, image_size=160, n_eval=300)
    data = json.dumps({"root": cfg.root, "image_size": cfg.image_size})
    # glibc's malloc keeps freed blocks below a threshold it raises as the process runs, which scatters the peak
    # by tens of MB from run to run; a fixed threshold returns every large block when freed
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", CHILD, data, str(tmp_path / "cache")], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return (got["after_kb"] - got["before_kb"]) * 1024, got


@pytest.mark.trains
def test_a_trial_on_a_prepared_cache_does_not_read_it_into_memory(tmp_path):
    """A trial on 3,600 images against one on 600 (the same 300 evaluation images): 3,000 more training
    images are 77 MB more cache (uint8, 160 px); the float32 copy the trainer used to make would add
    307 MB (the issue measured 2.8 such copies). The fixed cost of training (allocator pools, thread
    workspaces: about 100 MB here, measured 103 and 111 MB) is the same in both and cancels."""
    small, _ = trial_growth(tmp_path, 600)
    big, got = trial_growth(tmp_path, 3600)
    more_cache = 3000 * 160 * 160
    assert big - small < 0.25 * more_cache, (f"peak RSS grew by {big / 2**20:.0f} MB on 3,600 images against "
                                             f"{small / 2**20:.0f} MB on 600; "
                                             f"the cache is {more_cache / 2**20:.0f} MB larger")
    assert got["val_auroc"] > 0.6  # it trained on the images it streamed (a bright disc on positives)
