"""Export a trained model for Paddle Inference (fused, verified, with inference.yml).

    python tools/export.py -c configs/quickstart.yaml -o Global.pretrained_model=output/hgnetv2_b0/best_model [--onnx]

It writes Global.save_inference_dir (default ./inference/<Arch.name>: inference/hgnetv2_b0 here).

Feature maps for detection deployment: add `-o Arch.out_indices=[1,2,3]`. See docs/deploy.md.
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--legacy-pdmodel" in sys.argv[1:]:
    # Read once when Paddle is imported (importing ppbackbone imports it): set it before anything else.
    os.environ["FLAGS_enable_pir_api"] = "0"

from ppbackbone.cli import main_guard, new_parser, positive_int  # noqa: E402


def parse_args(argv=None):
    parser = new_parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--config", help="YAML config the model was trained with")
    source.add_argument("--model", help="a registered model name, for an export without a config "
                                        "(default preprocessing: resize to the input size, ImageNet mean/std)")
    parser.add_argument("-o", "--override", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. -o Global.pretrained_model=output/best_model")
    parser.add_argument("--random-weights", action="store_true",
                        help="export randomly initialised weights (benchmarking only; refused otherwise)")
    parser.add_argument("--no-fuse", action="store_true", help="keep Rep blocks unfused (slower; for comparison)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write inference.onnx (needs paddle2onnx, onnxruntime)")
    parser.add_argument("--no-softmax", action="store_true",
                        help="leave the softmax out of a classifier's graph (it outputs logits; PaddleClas and "
                             "PaddleX expect probabilities)")
    parser.add_argument("--paddlex-name", default=None,
                        help="Global.model_name for PaddleX (default: the model's PaddleX name, e.g. PP-HGNetV2-B0; "
                             "a task model such as PP-LCNet_x1_0_doc_ori; none to leave it out)")
    parser.add_argument("--onnx-opset", type=int, default=None, help="ONNX opset for paddle2onnx (default 14)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"],
                        help="also verify a low precision against fp32 and record it: bf16 (CPUs with AVX512-BF16/"
                             "AMX; Paddle Inference and OpenVINO) or int8 (inference_int8.onnx, ONNX Runtime QDQ "
                             "post-training quantization, and inference_int8.xml, NNCF's for OpenVINO). Refused "
                             "past the budget")
    parser.add_argument("--int8-quantizer", default="auto", choices=["auto", "onnxruntime", "nncf"],
                        help="with --precision int8: auto (default) writes ONNX Runtime's QDQ file and, when "
                             "OpenVINO and NNCF are installed, NNCF's OpenVINO file (inference_int8.xml); "
                             "onnxruntime or nncf writes only that one")
    parser.add_argument("--calib-images", type=positive_int, default=None,
                        help="int8 calibration images drawn through the config's eval pipeline (default 64)")
    parser.add_argument("--verify-images", type=positive_int, default=None,
                        help="held-out eval images the low precision is verified on (default 256)")
    parser.add_argument("--max-top1-drop", type=float, default=None,
                        help="budget: top-1 points a low precision may lose against fp32 (default 1.0)")
    parser.add_argument("--min-top1-agreement", type=float, default=None,
                        help="budget: share of held-out images where it must give fp32's top-1 class (default 0.95)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="max |Paddle Inference - dygraph| relative to the output scale (default 1e-4)")
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads for verification")
    parser.add_argument("--legacy-pdmodel", action="store_true",
                        help="write inference.pdmodel (old program format) instead of inference.json; "
                             "sets FLAGS_enable_pir_api=0 before Paddle starts")
    return parser.parse_args(argv)


def _budget(args):
    budget = {}
    if args.max_top1_drop is not None:
        budget["max_top1_drop"] = args.max_top1_drop
    if args.min_top1_agreement is not None:
        budget["min_top1_agreement"] = args.min_top1_agreement
    return budget


def main(argv=None):
    args = parse_args(argv)  # --legacy-pdmodel took effect at import (above); export_model checks it did
    from ppbackbone.config import apply_overrides, load_config
    from ppbackbone.deploy.export import DEFAULT_ONNX_OPSET, DEFAULT_TOLERANCE, export_model
    from ppbackbone.deploy.precision import DEFAULT_CALIB_IMAGES, DEFAULT_VERIFY_IMAGES

    overrides = [item for group in args.override for item in group]
    if args.config:
        config = load_config(args.config, overrides)
    else:
        config = apply_overrides({"Arch": {"name": args.model}, "Global": {"image_shape": [3, 224, 224]}},
                                 overrides)
    export_model(config, allow_random_weights=args.random_weights, fuse=not args.no_fuse, onnx=args.onnx,
                 onnx_opset=args.onnx_opset or DEFAULT_ONNX_OPSET, threads=args.threads, legacy_pdmodel=args.legacy_pdmodel,
                 softmax=not args.no_softmax, paddlex_name=args.paddlex_name, precision=args.precision,
                 calib_images=args.calib_images if args.calib_images is not None else DEFAULT_CALIB_IMAGES,
                 verify_images=args.verify_images if args.verify_images is not None else DEFAULT_VERIFY_IMAGES,
                 budget=_budget(args), int8_quantizer=args.int8_quantizer,
                 tolerance=args.tolerance if args.tolerance is not None else DEFAULT_TOLERANCE)
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
