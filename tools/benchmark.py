"""Benchmarks, one subcommand per mode (the logic lives in ppbackbone.benchmarks).

    python tools/benchmark.py latency --model hgnetv2_b0 pphgnet_tiny [--reference PPLCNetV2_base]
        [--runtimes paddle onnxruntime openvino] [--precisions fp32 bf16 int8] [--image-size 224 | H W]
        [--interleave-models] [--threads 2] [--markdown FILE] [--json FILE] [--plot BARS.png]

    python tools/benchmark.py throughput --model hgnetv2_b0 [--batch-sizes 1 8 32] [--runtimes ...]
        [--precisions ...] [--image-size 224] [--threads 2] [--markdown FILE] [--json FILE]
    python tools/benchmark.py predict --model pplcnet_x1_0 [--model-dir DIR] [--images FOLDER]
        [--batch-sizes 1 8] [--runtime paddle] [--precision fp32] [--threads 2] [--markdown FILE] [--json FILE]

latency: batch-1 latency of the exported model on every installed runtime (Paddle Inference, ONNX Runtime,
OpenVINO) x precision (fp32; bf16 where the CPU has it; int8), fused vs unfused for Rep models, and
PaddleClas's export of the same model on Paddle Inference fp32 in the same run; the fastest cell (what
Predictor(runtime="auto") picks) is marked.
throughput: images per second at each batch size on the same runtime x precision cells, with PaddleClas's
export in the same run.
predict: images per second of Predictor.predict over a folder of images (decoding and preprocessing
included) at each batch size, preprocessing overlapped with inference or in the calling thread.

    python tools/benchmark.py settings --model pplcnet_x1_0 hgnetv2_b0 [--runtimes ...] [--threads 2] [--json FILE]

settings: each runtime's settings (ppbackbone/deploy/settings.py) A/B against the defaults on the fused fp32
export, one runtime's trials in the same interleaved rounds.
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppbackbone.cli import (add_common_args, check_model_names, main_guard, new_parser, non_negative_int,  # noqa: E402
                            positive_int)


def add_latency(subparsers):
    p = subparsers.add_parser("latency", help="exported-model latency per runtime, fused vs unfused, vs PaddleClas")
    p.add_argument("--model", nargs="*", default=[], help="registered model names (ppbackbone + its PaddleClas "
                                                         "reference when the registry names one)")
    p.add_argument("--reference", nargs="*", default=[], help="PaddleClas backbones timed on their own "
                                                             "(builder names, e.g. PPLCNetV2_base)")
    p.add_argument("--no-reference", action="store_true", help="do not time the PaddleClas implementation")
    p.add_argument("--runtimes", nargs="*", default=None, help="default: every installed one")
    p.add_argument("--precisions", nargs="*", default=None,
                   help="fp32 bf16 int8 (default: every one this CPU and the installed packages run)")
    p.add_argument("--image-size", type=positive_int, nargs="+", default=[224], metavar="SIZE",
                   help="input side, or height and width (e.g. 48 320 for OCR rec models)")
    p.add_argument("--interleave-models", action="store_true",
                   help="time all models in the same interleaved rounds (ratios between models)")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--warmup", type=non_negative_int, default=10)
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per variant and runtime")
    p.add_argument("--rounds", type=positive_int, default=20, help="interleaved rounds the runs are split into")
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--json", help="also write the raw figures to this file")
    p.add_argument("--plot", help="also draw runtime x precision bars per model to this PNG (needs matplotlib)")
    p.set_defaults(func=run_latency)


def _image_size(values):
    from ppbackbone.errors import ConfigError
    if len(values) > 2:
        raise ConfigError(f"--image-size takes one side or a height and a width, got {len(values)} values: {values}")
    return values[0] if len(values) == 1 else tuple(values)


def _check_outputs(args, flags=("--markdown", "--json", "--plot")):
    """Output folders exist: said before minutes of timing, not after."""
    from ppbackbone.errors import ConfigError
    for flag in flags:
        path = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder and not os.path.isdir(folder):
            raise ConfigError(f"{flag} {path}: the folder {folder} does not exist")


def _selection(args):
    """(models, runtimes, precisions) of a latency/throughput run, each checked against what runs here."""
    from ppbackbone.benchmarks.latency import available_precisions, available_runtimes
    from ppbackbone.deploy.predictor import RUNTIMES
    from ppbackbone.errors import ConfigError
    if not args.model and not args.reference:
        raise ConfigError("name at least one --model or --reference")
    models = check_model_names(args.model)
    runtimes = args.runtimes or available_runtimes()
    unknown = [r for r in runtimes if r not in RUNTIMES]
    missing = [r for r in runtimes if r in RUNTIMES and r not in available_runtimes()]
    if unknown or missing:
        raise ConfigError(f"--runtimes: {unknown + missing} are unknown or not installed; available here: "
                          f"{', '.join(available_runtimes())} (known: {', '.join(RUNTIMES)})")
    precisions = args.precisions or available_precisions(runtimes)
    missing = [p for p in precisions if p not in available_precisions(runtimes)]
    if missing:
        raise ConfigError(f"--precisions: {' '.join(missing)} cannot run here; available with runtimes "
                          f"{', '.join(runtimes)}: {', '.join(available_precisions(runtimes))} (bf16 needs a CPU "
                          f"with AVX512-BF16/AMX, int8 ppbackbone[onnx])")
    return models, runtimes, precisions


def run_latency(args):
    from ppbackbone.benchmarks.latency import format_markdown, latency_benchmark, plot_latency, result_to_json
    from ppbackbone.engine.plots import require_plots
    _check_outputs(args)
    if args.plot:
        require_plots("--plot")
    models, runtimes, precisions = _selection(args)
    result = latency_benchmark(models, args.reference, runtimes=runtimes, precisions=precisions,
                               image_size=_image_size(args.image_size), interleave_models=args.interleave_models,
                               threads=args.threads, warmup=args.warmup, runs=args.runs, rounds=args.rounds,
                               with_reference=not args.no_reference)
    table = format_markdown(result)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result_to_json(result), f, indent=1)
    if args.plot:
        print(f"Wrote {plot_latency(result, args.plot)}")
    return 0


def add_throughput(subparsers):
    p = subparsers.add_parser("throughput", help="exported-model images/s per runtime x precision at batch 1/8/32, "
                                                 "vs PaddleClas")
    p.add_argument("--model", nargs="*", default=[], help="registered model names (ppbackbone + its PaddleClas "
                                                         "reference when the registry names one)")
    p.add_argument("--reference", nargs="*", default=[], help="PaddleClas backbones timed on their own")
    p.add_argument("--no-reference", action="store_true", help="do not time the PaddleClas implementation")
    p.add_argument("--runtimes", nargs="*", default=None, help="default: every installed one")
    p.add_argument("--precisions", nargs="*", default=None, help="fp32 bf16 int8 (default: every one that runs here)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 8, 32], metavar="N")
    p.add_argument("--image-size", type=positive_int, nargs="+", default=[224], metavar="SIZE",
                   help="input side, or height and width")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--warmup", type=non_negative_int, default=2)
    p.add_argument("--runs", type=positive_int, default=12, help="timed calls per cell and batch size")
    p.add_argument("--rounds", type=positive_int, default=4, help="interleaved rounds the runs are split into")
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--json", help="also write the raw figures to this file")
    p.set_defaults(func=run_throughput)


def run_throughput(args):
    from ppbackbone.benchmarks.throughput import (format_markdown, rows_for_json, throughput_benchmark,
                                                  write_outputs)
    _check_outputs(args, ("--markdown", "--json"))
    models, runtimes, precisions = _selection(args)
    result = throughput_benchmark(models, args.reference, runtimes=runtimes, precisions=precisions,
                                  batch_sizes=args.batch_sizes, image_size=_image_size(args.image_size),
                                  threads=args.threads, warmup=args.warmup, runs=args.runs, rounds=args.rounds,
                                  with_reference=not args.no_reference)
    table = format_markdown(result)
    print(table)
    write_outputs(table, rows_for_json(result), args.markdown, args.json)
    return 0


def add_predict(subparsers):
    p = subparsers.add_parser("predict", help="Predictor.predict images/s over a folder: batch 1 vs N, "
                                              "preprocessing overlapped or not")
    p.add_argument("--model", default="pplcnet_x1_0", help="exported with random weights when --model-dir is not "
                                                          "given (default pplcnet_x1_0, 224, ImageNet preprocessing)")
    p.add_argument("--model-dir", help="an export directory to time instead")
    p.add_argument("--images", help="a folder of images (default: 128 written JPEGs of 500x375)")
    p.add_argument("--count", type=positive_int, default=128, help="images written when --images is not given")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 8], metavar="N")
    p.add_argument("--runtime", default="paddle", help="paddle, onnxruntime or openvino")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=positive_int, default=2, help="runtime threads")
    p.add_argument("--rounds", type=positive_int, default=3, help="timed passes over the images per setting")
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--json", help="also write the raw figures to this file")
    p.set_defaults(func=run_predict)


def run_predict(args):
    from ppbackbone.benchmarks.throughput import format_predict_markdown, predict_benchmark, write_outputs
    _check_outputs(args, ("--markdown", "--json"))
    model = None if args.model_dir else check_model_names([args.model])[0]
    result = predict_benchmark(model, args.model_dir, args.images, count=args.count, batch_sizes=args.batch_sizes,
                               threads=args.threads, runtime=args.runtime, precision=args.precision,
                               rounds=args.rounds)
    table = format_predict_markdown(result)
    print(table)
    write_outputs(table, result, args.markdown, args.json)
    return 0


def add_train(subparsers):
    from ppbackbone.benchmarks.train import add_train as add
    add(subparsers)


def add_settings(subparsers):
    from ppbackbone.benchmarks.settings_ab import add_settings as add
    add(subparsers)


# Each mode adds its subparser here.
MODES = [add_latency, add_throughput, add_predict, add_train, add_settings]


def main(argv=None):
    parser = new_parser(__doc__)
    subparsers = parser.add_subparsers(dest="mode", required=True)
    for add in MODES:
        add(subparsers)
    for subparser in subparsers.choices.values():
        add_common_args(subparser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main_guard(main))
