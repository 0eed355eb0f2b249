"""Console/file logging, an eval progress bar, running averages and the VisualDL writer."""
import datetime
import logging
import os
import sys
import time

__all__ = ["setup_logger", "ProgressBar", "AverageMeter", "VisualDLWriter", "format_eta"]

logger = logging.getLogger("ppbackbone")


def setup_logger(log_file=None, rank=0):
    """Log INFO to stdout (rank 0; other ranks warnings only) and, on rank 0, to `log_file`."""
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", "%Y/%m/%d %H:%M:%S")
    for handler in list(logger.handlers):
        if getattr(handler, "_ppbackbone", False):
            logger.removeHandler(handler)
            handler.close()
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    stream._ppbackbone = True
    logger.addHandler(stream)
    if log_file and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(fmt)
        file_handler._ppbackbone = True
        logger.addHandler(file_handler)
    return logger


def format_eta(seconds):
    return str(datetime.timedelta(seconds=int(max(0, seconds))))


class AverageMeter:
    """Running sum/count average."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sum, self.count = 0.0, 0

    def update(self, value, n=1):
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self):
        return self.sum / max(self.count, 1)


class ProgressBar:
    """`[Eval] 12/40 [#####.............] 30% 0:00:05` redrawn in place on a terminal; on a pipe
    or file one line every 25%. Silent on ranks other than 0."""

    def __init__(self, total, prefix="[Eval]", enabled=True, width=30, stream=None):
        self.total, self.prefix, self.width = max(int(total), 1), prefix, width
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.time()
        self.done = 0
        self._next_mark = 0.25

    def update(self, n=1):
        if not self.enabled:
            return
        self.done = min(self.total, self.done + n)
        frac = self.done / self.total
        elapsed = time.time() - self.start
        eta = elapsed / frac * (1 - frac) if frac > 0 else 0
        filled = int(self.width * frac)
        line = (f"{self.prefix} {self.done}/{self.total} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{frac * 100:3.0f}% elapsed {format_eta(elapsed)} eta {format_eta(eta)}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done == self.total else ""))
            self.stream.flush()
        elif frac >= self._next_mark - 1e-9 or self.done == self.total:
            while self._next_mark <= frac + 1e-9:
                self._next_mark += 0.25
            self.stream.write(line + "\n")
            self.stream.flush()


class VisualDLWriter:
    """Scalars to `logdir` with VisualDL (rank 0 only); a missing visualdl package warns once."""

    def __init__(self, logdir, enabled=True):
        self.writer = None
        if not enabled:
            return
        try:
            from visualdl import LogWriter
        except ImportError:
            logger.warning("Global.use_visualdl is True but the visualdl package is not installed "
                           "(pip install visualdl); no VisualDL logs are written")
            return
        os.makedirs(logdir, exist_ok=True)
        self.writer = LogWriter(logdir=logdir)
        self.logdir = logdir

    def add_scalar(self, tag, value, step):
        if self.writer is not None:
            self.writer.add_scalar(tag=tag, value=float(value), step=int(step))

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
