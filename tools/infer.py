"""Classify images (or extract feature maps) with an exported model.

    python tools/infer.py --model_dir inference/hgnetv2_b0 --image path/to/image_or_folder [--runtime onnxruntime]

Prints one line per image; an unreadable image is reported and skipped (exit status 1 at the end).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", "--model-dir", required=True, help="directory written by tools/export.py")
    parser.add_argument("--image", required=True, help="an image file or a folder of images")
    parser.add_argument("--runtime", default="paddle", help="paddle (default), onnxruntime or openvino")
    parser.add_argument("--device", default="cpu", help="cpu (default) or gpu (Paddle Inference on a CUDA build)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default min(4, cores))")
    parser.add_argument("--topk", type=int, default=None, help="classes per image (default inference.yml's)")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=8)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from ppbackbone.predictor import ImageError, ModelDirError, Predictor, list_images, format_result
    try:
        predictor = Predictor(args.model_dir, device=args.device, threads=args.threads, runtime=args.runtime,
                              topk=args.topk)
        images = list_images(args.image)
    except (ModelDirError, ImageError, ImportError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    failed = 0
    for start in range(0, len(images), args.batch_size):
        chunk = images[start:start + args.batch_size]
        try:
            results = predictor.predict(chunk, batch_size=args.batch_size)
        except ImageError:  # find the bad file(s) and keep going with the rest
            results = []
            for path in chunk:
                try:
                    results.extend(predictor.predict([path]))
                except ImageError as err:
                    print(f"ERROR: {err}", file=sys.stderr)
                    failed += 1
                    results.append(None)
        for path, result in zip(chunk, results):
            if result is not None:
                print(f"{path}: {format_result(result)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
