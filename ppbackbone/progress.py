"""Progress bars with an ETA (tqdm) for long work: int8 calibration, runtime auto-selection timing,
benchmark cells, the first writing of the demo data. A leaf module (imports nothing of the package).

Bars go to stderr and show only on a terminal (logs and CI output stay clean); the environment
variable PPBACKBONE_PROGRESS=1 forces them on, =0 off.
"""
import os
import sys

__all__ = ["progress", "PROGRESS_ENV"]

PROGRESS_ENV = "PPBACKBONE_PROGRESS"


def progress(iterable=None, total=None, desc=None, unit="it"):
    """A tqdm bar over `iterable` (or a manual one: `.update(n)`, `.close()`), with elapsed time, rate
    and remaining time; it disappears when done."""
    from tqdm import tqdm
    setting = os.environ.get(PROGRESS_ENV, "").strip()
    disable = False if setting == "1" else True if setting == "0" else None  # None: only on a terminal
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=disable, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)
