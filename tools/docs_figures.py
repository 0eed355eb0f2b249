"""Regenerate the figures in README.md and docs/*.md from a run on this machine.

    python tools/docs_figures.py quickstart       # trains configs/quickstart.yaml (minutes), rewrites the
                                                  # quickstart time/accuracy in README.md and docs/
    python tools/docs_figures.py retrieval        # configs/recognition/quickstart_retrieval.yaml -> docs/recognition.md
    python tools/docs_figures.py models-chart     # times PP-HGNetV2 B0-B6 and PP-LCNet x0_25-x2_5 here, draws
                                                  # docs/images/top1_vs_latency.png against PaddleClas's top-1
    python tools/docs_figures.py throughput       # tools/benchmark.py throughput for hgnetv2_b0/b4, pplcnet_x1_0,
                                                  # pplcnetv2_base, then its predict mode -> docs/deploy.md
                                                  # (--models X Y: only these, merged; predict with pplcnet_x1_0)
    python tools/docs_figures.py latency          # tools/benchmark.py latency on 4 models + PaddleClas's exports
                                                  # -> docs/deploy.md's tables (--models X Y: only these, merged)
    python tools/docs_figures.py runtime-settings # tools/benchmark.py settings on the same 4 models -> docs/deploy.md
    python tools/docs_figures.py quickstart --rerender    # rewrite the text from docs/records/<figure>.json only

Each figure is written between `<!-- figure:NAME begin -->` / `<!-- figure:NAME end -->` markers, with the
CPU model and flags, the load during the run, the date and the command. Run it niced on a shared machine;
the load it reports is what every number is read against.
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ppbackbone.cli import check_model_names, main_guard, new_parser  # noqa: E402


def main(argv=None):
    from ppbackbone.benchmarks.figures import TARGETS, write_figures
    parser = new_parser(__doc__)
    parser.add_argument("figure", nargs="+", choices=list(TARGETS), help="which recorded run(s) to redo")
    parser.add_argument("--rerender", action="store_true", help="only rewrite the text from the kept record")
    parser.add_argument("--models", nargs="+", help="latency, runtime-settings, throughput: time only these "
                        "models and replace their part of the record (each timed command stays short)")
    args = parser.parse_args(argv)
    models = check_model_names(args.models, "--models") if args.models else None
    for figure in args.figure:
        write_figures(figure, ROOT, rerender=args.rerender, models=models)
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
