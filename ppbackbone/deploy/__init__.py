"""Deploy: export as named steps (export), the inference directory format (export_dir), low precision
(precision), runtimes, runtime auto-selection (autoselect) and the Predictor that runs an export."""
from .export import export_model  # noqa: F401
from .predictor import Predictor  # noqa: F401
