"""Print a model's summary, or the list of models: python tools/summary.py [--model NAME] [--list]."""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppbackbone  # noqa: E402
from ppbackbone.cli import check_model_names, main_guard, new_parser, positive_int  # noqa: E402
from ppbackbone.summary import MODELS_DOC_HEADER, models_table, summarize  # noqa: E402


def main(argv=None):
    parser = new_parser(__doc__)
    parser.add_argument("--model", default="hgnetv2_b0", help="registered name or alias")
    parser.add_argument("--image-size", type=positive_int, default=224)
    parser.add_argument("--list", action="store_true", help="list every registered model and exit")
    parser.add_argument("--markdown", action="store_true", help="print docs/models.md and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(MODELS_DOC_HEADER + models_table())
        return
    if args.list:
        print("\n".join(ppbackbone.list_models()))
        return
    print(summarize(check_model_names([args.model])[0], image_size=args.image_size))


if __name__ == "__main__":
    sys.exit(main_guard(main))
