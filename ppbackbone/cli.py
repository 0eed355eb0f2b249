"""The command line: the one place that turns errors into messages and exit codes, and the argument
helpers every tool shares (tools/*.py stay thin: they parse arguments and call the package).

Every tool runs its `main(argv)` through `main_guard`:
  - a user mistake (any `ppbackbone.errors.UserError`: config, flag, file, label, image, weights,
    checkpoint, export directory; or what the system refuses: a missing file, no permission, a read-only
    or full disk) prints one line `Error: ...` on stderr, no traceback, and exits with status 2;
  - anything else is a bug: its traceback is printed and the status is 1;
  - `--debug` (every tool has it) or the environment variable PPBACKBONE_DEBUG=1 adds the traceback to
    user errors too.
Exit statuses (also in every tool's --help): see EXIT_STATUS_HELP.
"""
import argparse
import errno
import os
import signal
import sys
import threading
import traceback
import warnings

from .after_import import after_import

__all__ = ["run", "parse_args", "main_guard", "error_message", "new_parser", "add_common_args", "positive_int", "non_negative_int",
           "debug_requested", "check_model_names", "EXIT_OK", "EXIT_BUG", "EXIT_USER_ERROR", "EXIT_PARTIAL", "EXIT_INTERRUPTED",
           "EXIT_TERMINATED", "EXIT_STATUS_HELP", "Terminated"]

EXIT_OK = 0
EXIT_BUG = 1  # an unexpected error (traceback printed): please report it
EXIT_USER_ERROR = 2  # a user mistake, one `Error: ...` line (argparse's usage errors use 2 as well)
EXIT_PARTIAL = 3  # finished, but some inputs were skipped (each reported), e.g. unreadable images in infer.py
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM (128 + 15, what a shell reports for a process the signal killed)

EXIT_STATUS_HELP = """exit status:
  0    success
  1    internal error: a bug (the traceback is printed; please report it)
  2    user error: bad config, flag, file, image, weights or disk (one `Error: ...` line; --debug or
       PPBACKBONE_DEBUG=1 adds the traceback); also argparse's usage errors
  3    finished, but some inputs were skipped (each one reported), e.g. unreadable images in tools/infer.py
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM), e.g. by a job scheduler; checkpoints already written stay intact"""

# What the operating system refuses because of the user's files or disk, not because of a bug.
_USER_ERRNOS = {errno.ENOENT: None, errno.EACCES: None, errno.EPERM: None, errno.EISDIR: None,
                errno.ENOTDIR: None, errno.EEXIST: None, errno.ENAMETOOLONG: None,
                errno.EROFS: "the file system is read-only: choose another output folder",
                errno.ENOSPC: "the disk is full: free some space or choose another output folder",
                errno.EDQUOT: "the disk quota is exceeded: free some space or choose another output folder"}
_DEBUG_ENV = "PPBACKBONE_DEBUG"


def error_message(err):
    """The one-line message for a user error (None when `err` is a bug and needs its traceback)."""
    from .errors import UserError
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and \
            err.errno is None:  # raised with a message of ours
        return str(err)
    if isinstance(err, OSError) and err.errno in _USER_ERRNOS:
        text = err.strerror or str(err)
        path = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        hint = _USER_ERRNOS[err.errno]
        return f"{text}{f': {path}' if path else ''}{f' ({hint})' if hint else ''}"
    if isinstance(err, MemoryError):
        return "out of memory: use a smaller batch size, image size or model"
    return None


def debug_requested(argv=None):
    """True when `--debug` is among the arguments or PPBACKBONE_DEBUG is set to 1/true/yes."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(_DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _rank():
    return int(os.environ.get("PADDLE_TRAINER_ID", "0")), int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C (finally blocks run, writes in progress are abandoned whole)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _handle_sigterm(_module=None):
    """SIGTERM raises Terminated in the main thread. Paddle installs a C++ handler at import (it prints a
    FatalError dump and aborts), so this runs again right after `paddle` is imported."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def main_guard(main, argv=None):
    """Run `main(argv)` and return the process exit status, turning errors into messages (module doc)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    rank, world = _rank()
    where = f" (rank {rank})" if world > 1 else ""
    _handle_sigterm()
    after_import("paddle", _handle_sigterm)
    try:
        status = main(argv)
    except Terminated:
        print(f"Terminated (SIGTERM){where}", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"Interrupted{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - this is the one place that reports every error
        message = error_message(err)
        if message is None or debug_requested(argv):
            traceback.print_exc()
        if message is not None:
            print(f"Error{where}: {message}", file=sys.stderr)
            return EXIT_USER_ERROR
        if world > 1:
            # paddle.distributed.launch shows only rank 0 on the console: say where the rest is
            print(f"Rank {rank} of {world} failed; its full log is log/workerlog.{rank} (the launcher's --log_dir)",
                  file=sys.stderr)
        print(f"Internal error{where}: {type(err).__name__}: {err}\nThis looks like a bug in ppbackbone (or Paddle):"
              f" please report it with the traceback above.", file=sys.stderr)
        return EXIT_BUG
    return EXIT_OK if status is None else int(status)


def int_at_least(minimum):
    """An argparse type: an int >= `minimum` (argparse reports a bad value as a usage error naming the flag)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    parse.__name__ = f"int >= {minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def check_model_names(names, flag="--model"):
    """The registered names for `names` (aliases resolved); an unknown one is a ConfigError naming `flag`."""
    from .arch.registry import resolve_name
    from .errors import ConfigError
    resolved = []
    for name in names:
        try:
            resolved.append(resolve_name(name))
        except ValueError as err:
            raise ConfigError(f"{flag} {name}: {err}") from None
    return resolved


def add_common_args(parser):
    """--debug, and the exit statuses in the help text."""
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error too (or set {_DEBUG_ENV}=1)")
    parser.epilog = f"{parser.epilog}\n\n{EXIT_STATUS_HELP}" if parser.epilog else EXIT_STATUS_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def new_parser(description, **kwargs):
    """An ArgumentParser with the tool's docstring as description and the common arguments."""
    return add_common_args(argparse.ArgumentParser(description=description,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs))


def parse_args(description, argv=None, pictures=False):
    """tools/train.py and tools/eval.py: -c CONFIG, -o overrides, --debug (and with `pictures`,
    tools/eval.py's --confusion-matrix / --recall-curve PNG outputs)."""
    parser = new_parser(description)
    parser.add_argument("-c", "--config", required=True, help="YAML config (PaddleClas schema)")
    parser.add_argument("-o", "--override", action="append", default=[], nargs="+",
                        help="Section.key=value overrides, e.g. -o Global.epochs=10 Arch.class_num=5")
    if pictures:
        parser.add_argument("--confusion-matrix", metavar="PNG", help="classifiers: also draw the confusion "
                            "matrix (classes named from the label list) to this PNG (needs matplotlib)")
        parser.add_argument("--recall-curve", metavar="PNG", help="retrieval (Global.eval_mode: retrieval): also "
                            "draw Recall@k for k = 1..gallery size to this PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    args.override = [item for group in args.override for item in group]
    return args


def _train_or_eval(mode, description, argv):
    args = parse_args(description, argv, pictures=mode == "eval")
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")
    warnings.filterwarnings("ignore", message="No ccache found")
    from .config import load_config
    from .engine import Trainer
    config = load_config(args.config, args.override)
    if mode == "eval":
        _check_picture_flags(args, config)
    trainer = Trainer(config, mode=mode)
    if mode == "train":
        trainer.train()
        return EXIT_OK
    if not (config.get("Global") or {}).get("pretrained_model") and not config["Arch"].get("pretrained"):
        print("Warning: no Global.pretrained_model given: evaluating freshly initialised weights", file=sys.stderr)
    try:
        trainer.evaluate()
    finally:
        trainer.close()
    _evaluation_pictures(trainer, args)
    return EXIT_OK


def _check_picture_flags(args, config):
    """tools/eval.py's picture flags fit the evaluation and can be drawn: said before any work."""
    from .errors import ConfigError
    retrieval = (config.get("Global") or {}).get("eval_mode") == "retrieval"
    if args.confusion_matrix and retrieval:
        raise ConfigError("--confusion-matrix is for classifiers; this config evaluates by retrieval "
                          "(Global.eval_mode: retrieval): use --recall-curve")
    if args.recall_curve and not retrieval:
        raise ConfigError("--recall-curve is for retrieval evaluation (Global.eval_mode: retrieval); for a "
                          "classifier use --confusion-matrix")
    if args.confusion_matrix or args.recall_curve:
        from .engine.plots import require_plots
        require_plots("--confusion-matrix" if args.confusion_matrix else "--recall-curve")


def _evaluation_pictures(trainer, args):
    """tools/eval.py --confusion-matrix / --recall-curve, from what the evaluation just counted."""
    from .engine import plots
    if args.confusion_matrix:
        from .engine.evaluation import class_names
        from .errors import ConfigError
        report = trainer.class_report
        if report is None or report.confusion is None:
            raise ConfigError("--confusion-matrix needs a classifier (Arch.class_num > 0)")
        names = class_names(trainer.config, trainer.class_num)
        print(f"Wrote {plots.confusion_matrix(report.confusion, names, args.confusion_matrix)}")
    if args.recall_curve:
        from .engine.retrieval import recall_at_k_curve
        (gallery, gallery_label), (query, query_label) = (trainer.retrieval_sets[k] for k in ("gallery", "query"))
        curve = recall_at_k_curve(query, query_label, gallery, gallery_label)
        title = f"Recall@k ({len(query)} queries, {len(gallery)} gallery images)"
        print(f"Wrote {plots.recall_at_k_curve(list(curve), args.recall_curve, title=title)}")


def run(mode, description, argv=None):
    """tools/train.py and tools/eval.py: parse arguments, build the Trainer, train or evaluate. Returns the
    process exit status (see EXIT_STATUS_HELP)."""
    return main_guard(lambda args: _train_or_eval(mode, description, args), argv)
