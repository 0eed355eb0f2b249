"""Figures in README.md and docs/*.md that come from recorded runs, never from typing.

A figure is a block between two marker comments in a Markdown file:

    <!-- figure:quickstart-readme begin -->...<!-- figure:quickstart-readme end -->

`tools/docs_figures.py` runs the measurement on this machine (as a subprocess, the way a reader runs
the documented command), keeps the raw result as JSON under docs/records/ (so the text can be
rendered again without rerunning) and rewrites each marked block in place, with the machine, its
load during the run, the date and the command next to the figures.
"""
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from ..errors import ConfigError

__all__ = ["machine_info", "cpu_times", "LoadSampler", "run_training", "run_zoo_latency", "run_benchmark_part",
           "draw_zoo_chart", "replace_marked",
           "blank_figures", "render", "load_record", "write_figures", "RECORDS", "TARGETS", "PUBLISHED_TOP1"]

RECORDS = os.path.join("docs", "records")
_EVAL_LINE = re.compile(r"\[Eval\]\[Epoch (\d+)\]\[Avg\] (.*?) \((\d+) (?:images|queries)")


def machine_info():
    """{'cpu': model name, 'cores': n, 'flags': the SIMD/AMX flags that matter here, 'paddle': version}."""
    cpu, flags = None, []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and cpu is None:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    if cpu is None:
        import platform
        cpu = platform.processor() or platform.machine()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        import paddle
        version = paddle.__version__
    except ImportError:
        version = None
    return {"cpu": cpu, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags], "paddle": version}


def cpu_times():
    """(steal, total) CPU jiffies of /proc/stat's `cpu` line, or None where there is none: steal is the time
    the hypervisor gave this virtual machine's CPUs to others, which the load average does not count."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


class LoadSampler:
    """Samples the 1-minute load average every `interval` seconds while the `with` block runs;
    `summary()` gives {'mean', 'min', 'max', 'samples'} and, on Linux, 'steal': the percentage of CPU time
    the hypervisor gave to others over the block (other jobs and other machines slow every figure)."""

    def __init__(self, interval=5.0):
        self.interval, self.samples = interval, []
        self._times = [None, None]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._times[0] = cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])
        self._times[1] = cpu_times()
        return False

    def summary(self):
        s = self.samples
        out = {"mean": round(sum(s) / len(s), 2), "min": round(min(s), 2), "max": round(max(s), 2),
               "samples": len(s)}
        (start, end) = self._times
        if start and end and end[1] > start[1]:
            out["steal"] = round(100.0 * (end[0] - start[0]) / (end[1] - start[1]), 1)
        return out


def parse_eval_lines(text):
    """Per evaluated epoch, the metrics of the `[Eval][Epoch N][Avg] k: v, ...` log lines: {epoch: {k: v}}."""
    out = {}
    for match in _EVAL_LINE.finditer(text):
        values = {}
        for item in match.group(2).split(", "):
            key, _, value = item.partition(": ")
            try:
                values[key.strip()] = float(value)
            except ValueError:
                continue
        out[int(match.group(1))] = values
    return out


def run_training(repo, config, overrides=(), metric="top1"):
    """Run `python tools/train.py -c <config> [-o ...]` from `repo` into a temporary output folder,
    timing it and sampling the load. Returns the record: command, wall seconds, per-epoch eval metrics,
    best metric and epoch, machine, load, date, whether the demo data existed before."""
    from ..data.demo import demo_dataset_dir
    demo_cached = os.path.isdir(demo_dataset_dir())
    command = ["python", "tools/train.py", "-c", config] + [a for o in overrides for a in ("-o", o)]
    with tempfile.TemporaryDirectory(prefix="ppbackbone-figures-") as out:
        argv = [sys.executable] + command[1:] + ["-o", f"Global.output_dir={out}"]
        start = time.time()
        with LoadSampler() as load:
            proc = subprocess.run(argv, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.time() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode}):\n{tail}")
    epochs = parse_eval_lines(proc.stdout)
    if not epochs:
        raise RuntimeError(f"{' '.join(command)} logged no [Eval] line; cannot record a figure")
    best_epoch = max(epochs, key=lambda e: (epochs[e].get(metric, float("-inf")), -e))
    return {"command": " ".join(command), "wall_seconds": round(wall, 1), "nice": os.nice(0), "epochs": epochs,
            "metric": metric,
            "best": epochs[best_epoch].get(metric), "best_epoch": best_epoch, "machine": machine_info(),
            "load": load.summary(), "demo_data_cached": demo_cached,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _duration(seconds):
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def provenance(record, script):
    """'<cpu>, <cores> cores (<flags>), Paddle <v>, 1-min load average <mean> (<min>-<max>), <date>;
    `<command>` (regenerate: `<script>`)' - what every figure is stated with."""
    m, load = record["machine"], record["load"]
    flags = ", ".join(m["flags"]) or "no AVX2"
    nice = f", niced +{record['nice']}" if record.get("nice") else ""
    steal = f", CPU steal {load['steal']}% (time the host gave to others)" if "steal" in load else ""
    return (f"{m['cpu']}, {m['cores']} cores ({flags}), Paddle {m['paddle']}, 1-min load average {load['mean']} "
            f"({load['min']}-{load['max']}) during the run{steal}{nice}, finished {record['date']}; "
            f"`{record['command']}`"
            f"{'' if record.get('demo_data_cached', True) else ' (including writing the demo data)'}; "
            f"regenerate: `{script}`")


def _epochs_table(record, keys):
    epochs = sorted(record["epochs"], key=int)
    lines = ["| epoch | " + " | ".join(str(e) for e in epochs) + " |", "|---|" + "---|" * len(epochs)]
    for key in keys:
        cells = []
        for e in epochs:
            value = record["epochs"][e].get(key)
            text = "-" if value is None else f"{value:.3f}"
            cells.append(f"**{text}**" if int(e) == int(record["best_epoch"]) and key == record["metric"] else text)
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _quickstart_readme(record, script):
    return (f"Measured: {len(record['epochs'])} epochs in **{_duration(record['wall_seconds'])}**, best validation "
            f"top-1 **{record['best']:.3f}** (epoch {record['best_epoch']}) on {provenance(record, script)}.")


def _quickstart_training(record, script):
    return (f"Measured: {len(record['epochs'])} epochs of AdamW + cosine schedule in "
            f"**{_duration(record['wall_seconds'])}**, best validation top-1 **{record['best']:.3f}** (epoch "
            f"{record['best_epoch']}; chance 0.100); {provenance(record, script)}.\n\n"
            + _epochs_table(record, ["top1", "top5"]))


def _quickstart_short(record, script):
    load = record["load"]
    return (f"the quickstart's {len(record['epochs'])} epochs took {_duration(record['wall_seconds'])} at load "
            f"{load['mean']} on {record['date'][:10]}, see [training.md](training.md)")


def _retrieval_recognition(record, script):
    keys = [k for k in record["epochs"][min(record["epochs"], key=int)] if k != "loss"]
    return (f"{len(record['epochs'])} epochs in **{_duration(record['wall_seconds'])}**; best {record['metric']} "
            f"**{record['best']:.3f}** (epoch {record['best_epoch']}); {provenance(record, script)}.\n\n"
            + _epochs_table(record, keys))


# Published ImageNet-1k top-1 (%) of PaddleClas's model zoo docs, read with each file's commit:
# PP-HGNetV2 (SSLD stage-2 weights, the `ssld` tag): PaddlePaddle/PaddleClas
#   docs/zh_CN/models/ImageNet1k/PP-HGNetV2.md @ f6777e61340e8e57aee6dd95f3019b7ddedb035d, table 1.3
# PP-LCNet (ImageNet-1k weights, the `in1k` tag): PaddlePaddle/PaddleClas
#   docs/zh_CN/models/ImageNet1k/PP-LCNet.md @ 5b9067514e7d4b596ed6dede3ca6b42ec0d751bd, table 1.3.1
PUBLISHED_TOP1 = {
    "PP-HGNetV2 (ssld)": {"hgnetv2_b0": 77.77, "hgnetv2_b1": 79.18, "hgnetv2_b2": 81.74, "hgnetv2_b3": 82.98,
                          "hgnetv2_b4": 83.57, "hgnetv2_b5": 84.75, "hgnetv2_b6": 86.30},
    "PP-LCNet (in1k)": {"pplcnet_x0_25": 51.86, "pplcnet_x0_35": 58.09, "pplcnet_x0_5": 63.14,
                        "pplcnet_x0_75": 68.18, "pplcnet_x1_0": 71.32, "pplcnet_x1_5": 73.71,
                        "pplcnet_x2_0": 75.18, "pplcnet_x2_5": 76.60},
}
PUBLISHED_SOURCE = ("PaddleClas docs/zh_CN/models/ImageNet1k/PP-HGNetV2.md @ f6777e6 (SSLD stage-2) and "
                    "PP-LCNet.md @ 5b90675")
CHART_IMAGE = os.path.join("docs", "images", "top1_vs_latency.png")
CHART_SETTINGS = {"image_size": 224, "threads": 2, "warmup": 2, "runs": 20, "rounds": 10}


def _interleaved_latency(models, workdir, image_size, threads, warmup, runs, rounds):
    """{model: (median ms, min ms)}: each model exported fused (random weights: the time does not depend
    on them) and loaded in Paddle Inference fp32, then all of them timed in the same interleaved rounds,
    so that other jobs' load falls on every model alike."""
    from ..arch import create_model
    from ..progress import progress
    from ..weights.io import save_weights
    from .latency import _backend, _export_ours, _time_interleaved
    size = (image_size, image_size)  # the exporter takes (height, width)
    backends = {}
    for name in progress(models, desc="exporting", unit="model"):
        model = create_model(name)
        weights = save_weights(model, os.path.join(workdir, f"{name}.safetensors"))
        directory = os.path.join(workdir, name)
        model_file = _export_ours(name, weights, directory, size, True, False, False, threads)
        backends[(name, "fused", "paddle", "fp32")] = _backend(directory, model_file, "paddle", "fp32", threads)
    import numpy as np
    batch = np.random.RandomState(0).standard_normal([1, 3, *size]).astype("float32")
    times = _time_interleaved(backends, batch, warmup, runs, rounds)
    return {key[0]: value for key, value in times.items()}


def run_zoo_latency(log=print):
    """Latency of every model in PUBLISHED_TOP1 (fused export, Paddle Inference fp32, batch 1, 224x224,
    2 threads, all models in the same interleaved rounds). Returns the record."""
    import shutil
    models = [name for family in PUBLISHED_TOP1.values() for name in family]
    workdir = tempfile.mkdtemp(prefix="ppbackbone-zoo-")
    try:
        with LoadSampler() as load:
            times = _interleaved_latency(models, workdir, **CHART_SETTINGS)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    settings = ", ".join(f"{k} {v}" for k, v in CHART_SETTINGS.items())
    return {"command": f"python tools/docs_figures.py models-chart ({settings})",
            "latency_ms": {name: times[name][1] for name in models},
            "median_ms": {name: times[name][0] for name in models}, "statistic": "min",
            "published_top1": PUBLISHED_TOP1, "source": PUBLISHED_SOURCE,
            "machine": machine_info(), "load": load.summary(), "nice": os.nice(0),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def draw_zoo_chart(record, path):
    """docs/images/top1_vs_latency.png from a record of run_zoo_latency."""
    from ..engine.plots import accuracy_vs_latency
    points = [{"name": name.split("_", 1)[1], "family": family, "top1": top1, "ms": record["latency_ms"][name]}
              for family, rows in record["published_top1"].items() for name, top1 in rows.items()
              if name in record["latency_ms"]]
    m, load = record["machine"], record["load"]
    note = (f"top-1: published, {record['source']}. Latency: measured, the {_statistic(record)} of batch-1 "
            f"224x224 runs, Paddle Inference fp32, 2 threads, all models interleaved, on {m['cpu']} "
            f"({', '.join(m['flags'])}), load {load['mean']}, {record['date']}")
    return accuracy_vs_latency(points, path, "ImageNet top-1 (published) against latency (measured here)", note)


def _statistic(record):
    return "minimum" if record.get("statistic") == "min" else "median"


def _zoo_chart_models(record, script):
    lines = [f"![ImageNet top-1 against latency](images/{os.path.basename(CHART_IMAGE)})", "",
             f"Top-1: published by PaddleClas ({record['source']}), not measured here. Latency: measured, "
             f"the {_statistic(record)} of batch-1 224x224 runs of the fused export on Paddle Inference fp32 with "
             f"2 threads, every model timed in the same interleaved rounds (random weights: time does not depend "
             f"on them), on {provenance(record, script)}. On a loaded machine the minimum is the steadier "
             f"figure; compare models with each other, not with another machine.", "",
             "| model | published top-1 (%) | latency, min (ms) | latency, median (ms) |", "|---|---|---|---|"]
    medians = record.get("median_ms", {})
    for family, rows in record["published_top1"].items():
        for name, top1 in rows.items():
            if name in record["latency_ms"]:
                median = f"{medians[name]:.2f}" if name in medians else "-"
                lines.append(f"| `{name}` ({family}) | {top1:.2f} | {record['latency_ms'][name]:.2f} | {median} |")
    return "\n".join(lines)


def _throughput_deploy(record, script):
    from .throughput import render_record
    return render_record(record, script)


# docs/deploy.md's latency tables: tools/benchmark.py latency on these models, the PaddleClas reference in
# the same run. A record holds one part per invocation (`--models` runs a subset and replaces its part), so
# each timed command stays short on a shared machine; ratios are only taken within a part.
LATENCY_MODELS = ["hgnetv2_b0", "hgnetv2_b4", "pplcnet_x1_0", "pplcnetv2_base"]
# figure -> the tools/benchmark.py mode and its arguments after --model
BENCHMARK_RUNS = {"latency": ("latency", ["--runs", "60", "--rounds", "12"]),
                  "runtime-settings": ("settings", ["--runs", "100", "--rounds", "10"])}


def run_benchmark_part(repo, figure, models):
    """Run `python tools/benchmark.py <mode> --model <models> <arguments>` (BENCHMARK_RUNS[figure]) from `repo`
    (a subprocess, as a reader runs it), sampling the load; returns the part: command, its --json result,
    machine, load, date."""
    mode, arguments = BENCHMARK_RUNS[figure]
    command = ["python", "tools/benchmark.py", mode, "--model", *models, *arguments]
    with tempfile.TemporaryDirectory(prefix="ppbackbone-figures-") as tmp:
        path = os.path.join(tmp, "result.json")
        with LoadSampler() as load:
            proc = subprocess.run([sys.executable] + command[1:] + ["--json", path], cwd=repo,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-15:])
            raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode}):\n{tail}")
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    return {"command": " ".join(command), "models": list(models), "result": result, "machine": machine_info(),
            "load": load.summary(), "nice": os.nice(0),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _merge_part(record, part):
    """`record` with `part` in place of the earlier timings of its models: an earlier part keeps its other
    models (their rows and checks, with its own provenance), one left with none goes (LATENCY_MODELS order)."""
    parts = [kept for p in (record or {}).get("parts", []) for kept in [_without(p, part["models"])] if kept]
    order = {name: i for i, name in enumerate(LATENCY_MODELS)}
    return {"parts": sorted(parts + [part], key=lambda p: min(order.get(m, len(order)) for m in p["models"]))}


def _without(part, models):
    """`part` restricted to the models it timed other than `models` (None if no model is left)."""
    left = [m for m in part["models"] if m not in models]
    if not left:
        return None
    if len(left) == len(part["models"]):
        return part
    result = dict(part["result"])
    result["rows"] = [row for row in result["rows"] if row["model"] in left]
    if isinstance(result.get("checks"), dict):
        result["checks"] = {m: v for m, v in result["checks"].items() if m in left}
    return dict(part, models=left, result=result)


def _latency_deploy(record, script):
    from .latency import format_markdown, result_from_json
    blocks = []
    for part in record["parts"]:
        blocks.append(f"Run of {', '.join(part['models'])}: {provenance(part, script)}.\n\n"
                      + format_markdown(result_from_json(part["result"])))
    return "\n\n".join(blocks)


def _runtime_settings(record, script):
    from .settings_ab import format_settings
    return "\n\n".join(f"Run of {', '.join(part['models'])}: {provenance(part, script)}.\n\n"
                       + format_settings(part["result"]) for part in record["parts"])


def _latency_floor(record, script):
    """Per model: its GFLOPs, the fp32 floor, the fastest fp32 cell of ppbackbone's export and its fraction."""
    from .floor import floor_ms
    from .latency import result_from_json
    lines = ["| model | GFLOPs | GEMM GFLOP/s | fp32 floor ms | fastest fp32 (ms) | fraction of the floor | "
             "each fp32 runtime's fraction |", "|---|---|---|---|---|---|---|"]
    for part in record["parts"]:
        result = result_from_json(part["result"])
        for row in result["rows"]:
            fp32 = {c[0]: v[0] for c, v in row["cells"].items() if c[1] == "fp32"}
            floor = floor_ms(row, result.get("gemm"))
            if row["implementation"] != "ppbackbone" or row["variant"] == "unfused" or not fp32 or floor is None:
                continue
            best = min(fp32, key=fp32.get)
            each = ", ".join(f"{r} {floor / ms:.0%}" for r, ms in sorted(fp32.items(), key=lambda kv: kv[1]))
            lines.append(f"| {row['model']} | {row['gflops']:.3g} | {result['gemm']['gflops']:.0f} | {floor:.2f} | "
                         f"{best} {fp32[best]:.2f} | **{floor / fp32[best]:.0%}** | {each} |")
    return "\n".join(lines)


# figure name -> (the recorded run, its file, how to render it); the runs are what the docs state
RUNS = {
    "quickstart": {"config": "configs/quickstart.yaml", "overrides": [], "metric": "top1"},
    "retrieval": {"config": "configs/recognition/quickstart_retrieval.yaml", "overrides": [], "metric": "recall1"},
}
# figure -> [(file, marker name, renderer, whether the block stands alone between blank lines)]
TARGETS = {
    "quickstart": [("README.md", "quickstart-readme", _quickstart_readme, True),
                   ("docs/training.md", "quickstart-training", _quickstart_training, True),
                   ("docs/recognition.md", "quickstart-short", _quickstart_short, False)],
    "retrieval": [("docs/recognition.md", "retrieval-recognition", _retrieval_recognition, True)],
    "models-chart": [("docs/models.md", "models-chart", _zoo_chart_models, True)],
    "throughput": [("docs/deploy.md", "throughput", _throughput_deploy, True)],
    "latency": [("docs/deploy.md", "latency-deploy", _latency_deploy, True),
                ("docs/deploy.md", "latency-floor", _latency_floor, True)],
    "runtime-settings": [("docs/deploy.md", "runtime-settings", _runtime_settings, True)],
}


def blank_figures(text):
    """`text` with every marked figure emptied (to compare generated docs whatever was measured)."""
    return re.sub(r"(<!-- figure:(\S+) begin -->).*?(<!-- figure:\2 end -->)", r"\1\3", text, flags=re.S)


def replace_marked(path, name, text):
    """Rewrite the text between `<!-- figure:NAME begin -->` and `<!-- figure:NAME end -->` in `path`
    (atomically). The markers must be there exactly once."""
    from ..weights.io import atomic_write
    with open(path, encoding="utf-8") as f:
        content = f.read()
    begin, end = f"<!-- figure:{name} begin -->", f"<!-- figure:{name} end -->"
    if content.count(begin) != 1 or content.count(end) != 1 or content.index(begin) > content.index(end):
        raise ConfigError(f"{path}: expected one '{begin}' followed by one '{end}' (where the figure goes)")
    head, rest = content.split(begin)
    _, tail = rest.split(end)
    with atomic_write(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(head + begin + text + end + tail)


def render(figure, record, repo):
    """Write `record` into every marked block of `figure` (README.md, docs/*.md under `repo`)."""
    script = f"python tools/docs_figures.py {figure}"
    for path, name, fmt, block in TARGETS[figure]:
        text = fmt(record, script)
        # a block between blank lines: Markdown (tables, emphasis) renders; a comment that starts a line
        # would make the rest of that line raw HTML
        replace_marked(os.path.join(repo, path), name, f"\n\n{text}\n\n" if block else text)


def load_record(path):
    """A kept record (docs/records/<figure>.json), epochs keyed by int again."""
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if "epochs" in record:
        record["epochs"] = {int(k): v for k, v in record["epochs"].items()}
    return record


def write_figures(figure, repo, rerender=False, log=print, models=None):
    """Measure `figure` (or, with `rerender`, read its kept record), keep the record as
    docs/records/<figure>.json and rewrite the marked blocks. Returns the record. `models`: for the latency
    figure, time these (default LATENCY_MODELS) and replace their part of the kept record; for the
    throughput figure, redo these models' runs (default RECORD_MODELS) and keep the others'."""
    if figure not in TARGETS:
        raise ConfigError(f"unknown figure {figure!r}; known: {', '.join(TARGETS)}")
    record_path = os.path.join(repo, RECORDS, f"{figure}.json")
    if rerender:
        if not os.path.exists(record_path):
            raise ConfigError(f"no record {record_path}: run `python tools/docs_figures.py {figure}` first")
        record = load_record(record_path)
    elif figure == "models-chart":
        log(f"{figure}: timing {sum(len(v) for v in PUBLISHED_TOP1.values())} models (load now "
            f"{os.getloadavg()[0]:.2f})")
        record = run_zoo_latency(log)
    elif figure == "throughput":
        from .throughput import PREDICT_MODEL, RECORD_MODELS, run_record
        models = list(models or RECORD_MODELS)
        log(f"{figure}: timing {', '.join(models)}{' and the Predictor' if PREDICT_MODEL in models else ''} "
            f"(load now {os.getloadavg()[0]:.2f})")
        record = run_record(models, load_record(record_path) if os.path.exists(record_path) else None, log=log)
    elif figure in BENCHMARK_RUNS:
        models = list(models or LATENCY_MODELS)
        log(f"{figure}: timing {', '.join(models)} (load now {os.getloadavg()[0]:.2f})")
        kept = load_record(record_path) if os.path.exists(record_path) else None
        record = _merge_part(kept, run_benchmark_part(repo, figure, models))
    else:
        run = RUNS[figure]
        log(f"{figure}: running {run['config']} (this trains a model; load now {os.getloadavg()[0]:.2f})")
        record = run_training(repo, run["config"], run["overrides"], run["metric"])
    if not rerender:
        from ..weights.io import atomic_write
        with atomic_write(record_path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1)
                f.write("\n")
    if figure == "models-chart":
        log(f"{figure}: wrote {draw_zoo_chart(record, os.path.join(repo, CHART_IMAGE))}")
    render(figure, record, repo)
    log(f"{figure}: rewrote {', '.join(path for path, *_ in TARGETS[figure])}")
    return record
