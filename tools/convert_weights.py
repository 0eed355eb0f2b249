"""Convert an official PyTorch checkpoint to Paddle (safetensors by default).

    python tools/convert_weights.py vanillanet_5.pth vanillanet_5.safetensors --model vanillanet_5
    python tools/convert_weights.py vanillanet_5_deploy.pth out.pdparams --model vanillanet_5 --deploy
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppbackbone.convert import convert_torch_checkpoint  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="PyTorch .pth checkpoint")
    parser.add_argument("dst", help="output .safetensors (default) or .pdparams")
    parser.add_argument("--model", help="check the result loads into this model with no missing/unexpected keys")
    parser.add_argument("--key", help="entry of the checkpoint holding the weights (default: model_ema, model, "
                                      "state_dict, or the file itself)")
    parser.add_argument("--deploy", action="store_true", help="the checkpoint is the fused (deploy) form")
    parser.add_argument("--num-classes", type=int, default=1000)
    args = parser.parse_args()
    kwargs = {"num_classes": args.num_classes}
    if args.deploy:
        kwargs["deploy"] = True
    path = convert_torch_checkpoint(args.src, args.dst, model_name=args.model, key=args.key, **kwargs)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
