"""Docs that are generated from code stay current."""
import os

from ppbackbone.benchmarks.figures import blank_figures
from ppbackbone.summary import MODELS_DOC_HEADER, models_table

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def test_models_md_is_current():
    with open(os.path.join(DOCS, "models.md"), encoding="utf-8") as f:
        # the measured chart between figure markers comes from tools/docs_figures.py, not from the registry
        assert blank_figures(f.read()).strip() == (MODELS_DOC_HEADER + models_table()).strip(), (
            "docs/models.md is stale: run python tools/summary.py --markdown > docs/models.md")


def test_measured_figures_are_their_records_rendering(tmp_path):
    """Every figure block in README.md / docs/*.md is what tools/docs_figures.py writes from its record in
    docs/records/ (a number typed over a measured one fails here)."""
    import shutil

    from ppbackbone.benchmarks.figures import RECORDS, TARGETS, load_record, render
    repo = os.path.dirname(DOCS)
    rendered = 0
    for figure, targets in TARGETS.items():
        record_path = os.path.join(repo, RECORDS, f"{figure}.json")
        if not os.path.exists(record_path):
            continue  # not measured yet: its block keeps the text it had
        for path, *_ in targets:
            os.makedirs(os.path.dirname(str(tmp_path / path)), exist_ok=True)
            shutil.copy(os.path.join(repo, path), str(tmp_path / path))
        render(figure, load_record(record_path), str(tmp_path))
        for path, *_ in targets:
            with open(os.path.join(repo, path), encoding="utf-8") as a, open(str(tmp_path / path), encoding="utf-8") as b:
                assert a.read() == b.read(), f"{path}: the {figure} figure differs from {record_path}'s rendering"
            rendered += 1
    assert rendered >= 4  # quickstart (README, training.md, recognition.md) and the models chart


def test_models_chart_is_a_picture():
    import numpy as np
    from PIL import Image
    with Image.open(os.path.join(DOCS, "images", "top1_vs_latency.png")) as im:
        pixels = np.asarray(im.convert("RGB"), dtype="float64")
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 500 and pixels.var() > 0


def test_load_sampler_reports_cpu_steal_and_provenance_states_it():
    """A record's load summary carries the host's CPU steal over the run (Linux), and the text beside a figure
    states it; a record without it (taken before) renders as it did."""
    import time

    import pytest

    from ppbackbone.benchmarks.figures import LoadSampler, cpu_times, provenance
    if cpu_times() is None:
        pytest.skip("no /proc/stat on this system")
    with LoadSampler(interval=0.05) as sampler:
        time.sleep(0.2)
    load = sampler.summary()
    assert 0.0 <= load["steal"] <= 100.0 and load["samples"] >= 2
    record = {"machine": {"cpu": "x", "cores": 2, "flags": ["avx2"], "paddle": "3"}, "load": load, "date": "d",
              "command": "c"}
    assert f"CPU steal {load['steal']}%" in provenance(record, "s")
    del load["steal"]
    assert "steal" not in provenance(record, "s")


def test_models_chart_timing_runs_on_a_small_model(tmp_path):
    """tools/docs_figures.py models-chart's timing (export fused, Paddle Inference fp32, interleaved) runs:
    it once stopped with a TypeError when the exporter started taking (height, width). No time asserted."""
    from ppbackbone.benchmarks.figures import _interleaved_latency
    times = _interleaved_latency(["pplcnet_x0_25"], str(tmp_path), image_size=32, threads=1, warmup=0, runs=1,
                                 rounds=1)
    assert set(times) == {"pplcnet_x0_25"} and all(t > 0 for t in times["pplcnet_x0_25"])


def test_a_latency_rerun_of_some_models_keeps_the_others(tmp_path):
    """tools/docs_figures.py latency --models X: X's rows come from the new run, the other models keep
    their rows, checks and provenance from the earlier run, and the whole record still renders (the
    first version dropped every model of a run that had timed X)."""
    import copy
    import shutil

    from ppbackbone.benchmarks.figures import RECORDS, TARGETS, _merge_part, load_record, render
    repo = os.path.dirname(DOCS)
    old = load_record(os.path.join(repo, RECORDS, "latency.json"))
    models = old["parts"][0]["models"]
    assert len(models) >= 2
    new = copy.deepcopy(old["parts"][0])
    new = dict(new, models=[models[1]], date="later")
    new["result"]["rows"] = [r for r in new["result"]["rows"] if r["model"] == models[1]]
    new["result"]["checks"] = {models[1]: "new check"}
    merged = _merge_part(old, new)
    assert sorted(m for p in merged["parts"] for m in p["models"]) == sorted(m for p in old["parts"]
                                                                               for m in p["models"])
    earlier = [p for p in merged["parts"] if p is not new]
    assert all(models[1] not in p["models"] and all(r["model"] != models[1] for r in p["result"]["rows"])
               and models[1] not in p["result"]["checks"] for p in earlier)
    assert [p["date"] for p in merged["parts"] if models[0] in p["models"]] == [old["parts"][0]["date"]]
    assert _merge_part(merged, old["parts"][0]) == {"parts": [old["parts"][0]]}  # a full rerun replaces both
    for path, *_ in TARGETS["latency"]:
        os.makedirs(os.path.dirname(str(tmp_path / path)), exist_ok=True)
        shutil.copy(os.path.join(repo, path), str(tmp_path / path))
    render("latency", merged, str(tmp_path))
    with open(tmp_path / TARGETS["latency"][0][0], encoding="utf-8") as f:
        text = f.read()
    assert f"Run of {models[1]}: " in text and "new check" in text


def test_docs_figures_unknown_model_is_one_error_line():
    """tools/docs_figures.py --models with a name the registry lacks: one `Error:` line naming the flag and
    the value, exit 2, before any timing (it was an 'Internal error' traceback for throughput)."""
    import subprocess
    import sys
    repo = os.path.dirname(DOCS)
    for figure in ("throughput", "latency"):
        proc = subprocess.run([sys.executable, os.path.join(repo, "tools", "docs_figures.py"), figure, "--models",
                               "hgnetv2_b0", "hgnetv2_bb4"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Error: --models hgnetv2_bb4: Unknown model 'hgnetv2_bb4'. Did you mean: hgnetv2_b4" in proc.stderr
        assert "Traceback" not in proc.stderr and "timing" not in proc.stdout + proc.stderr, proc.stderr
