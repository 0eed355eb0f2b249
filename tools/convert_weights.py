"""Convert an official PyTorch checkpoint to Paddle (safetensors by default).

    python tools/convert_weights.py vanillanet_5.pth vanillanet_5.safetensors --model vanillanet_5
    python tools/convert_weights.py vanillanet_5_deploy.pth out.pdparams --model vanillanet_5 --deploy
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppbackbone.arch import create_model  # noqa: E402
from ppbackbone.cli import check_model_names, main_guard, new_parser, positive_int  # noqa: E402
from ppbackbone.weights.convert import convert_torch_checkpoint  # noqa: E402


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("src", help="PyTorch .pth checkpoint")
    parser.add_argument("dst", help="output .safetensors (default) or .pdparams")
    parser.add_argument("--model", help="check the result loads into this model with no missing/unexpected keys")
    parser.add_argument("--key", help="entry of the checkpoint holding the weights (default: model_ema, model, "
                                      "state_dict, or the file itself)")
    parser.add_argument("--deploy", action="store_true", help="the checkpoint is the fused (deploy) form")
    parser.add_argument("--num-classes", type=positive_int, default=1000)
    args = parser.parse_args(argv)
    model = None
    if args.model:
        kwargs = {"num_classes": args.num_classes, **({"deploy": True} if args.deploy else {})}
        model = create_model(check_model_names([args.model])[0], **kwargs)
    path = convert_torch_checkpoint(args.src, args.dst, model=model, key=args.key)
    print(f"Wrote {path}")


if __name__ == "__main__":
    sys.exit(main_guard(main))
