"""Classify images (or extract feature maps) with an exported model.

    python tools/infer.py --model_dir inference/hgnetv2_b0 --image path/to/image_or_folder [--runtime onnxruntime]

The default runtime is "auto": the installed runtimes x the precisions the export was verified at are
measured once on this machine, the fastest is used, and the choice is cached in the export directory.

Prints one line per image; an unreadable image is reported and skipped (exit status 3 at the end).
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppbackbone.cli import EXIT_OK, EXIT_PARTIAL, main_guard, new_parser, positive_int  # noqa: E402


def parse_args(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--model_dir", "--model-dir", required=True, help="directory written by tools/export.py")
    parser.add_argument("--image", required=True, help="an image file or a folder of images")
    parser.add_argument("--runtime", default="auto",
                        help="auto (default: the fastest verified runtime x precision here), paddle, onnxruntime "
                             "or openvino")
    parser.add_argument("--precision", default=None,
                        help="fp32, bf16 or int8 (a precision the export was verified at); default fp32 for a named "
                             "runtime, any verified one with --runtime auto")
    parser.add_argument("--device", default="cpu", help="cpu (default) or gpu (Paddle Inference on a CUDA build)")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default min(4, cores))")
    parser.add_argument("--topk", type=positive_int, default=None, help="classes per image (default inference.yml's)")
    parser.add_argument("--batch_size", "--batch-size", type=positive_int, default=8,
                        help="images per runtime call (>= 1); the next batches are preprocessed meanwhile")
    parser.add_argument("--objective", default="latency", choices=["latency", "throughput"],
                        help="what --runtime auto optimises: latency (batch 1, default) or throughput (images/s at "
                             "--batch-size)")
    parser.add_argument("--max-image-pixels", "--max_image_pixels", type=positive_int, default=None,
                        help="refuse images of more pixels (width x height, checked before decoding); default "
                             "178956970 or PPBACKBONE_IMAGE_MAX_PIXELS")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ppbackbone.deploy.predictor import ImageError, Predictor, format_result, list_images
    predictor = Predictor(args.model_dir, device=args.device, threads=args.threads, runtime=args.runtime,
                          topk=args.topk, precision=args.precision, log=lambda line: print(line, file=sys.stderr),
                          max_image_pixels=args.max_image_pixels, batch_size=args.batch_size,
                          objective=args.objective)
    images = list_images(args.image)
    failed = 0
    for path, result in zip(images, predictor.iter_predict(images, skip_errors=True)):
        if isinstance(result, ImageError):  # reported, and the rest goes on
            print(f"Error: {result}", file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: {format_result(result)}")
    if failed:
        print(f"{failed} of {len(images)} images could not be read (reported above)", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main_guard(main))
