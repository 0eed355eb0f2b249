"""Building a pipeline from PaddleClas's `transform_ops` list: the op registry (TRANSFORMS), the ops
PaddleClas has and ppbackbone does not, Compose, build_op and build_transforms."""
import inspect

from .augment import ColorJitter, RandomErasing, RandomRotation
from .base import TransformError
from .basic import (CropImage, DecodeImage, NormalizeImage, Pad, RandCropImage, RandCropImageV2, RandFlipImage,
                    ResizeImage, ToCHWImage)
from .policies import AutoAugment, TimmAutoAugment


TRANSFORMS = {cls.__name__: cls for cls in (DecodeImage, ResizeImage, CropImage, RandCropImage, RandFlipImage,
                                             NormalizeImage, ToCHWImage, TimmAutoAugment, RandomErasing, AutoAugment,
                                             ColorJitter, RandomRotation, Pad, RandCropImageV2)}


# PaddleClas ops that ppbackbone does not implement: training configs that name them get a warning
# (once, by name) and the op is skipped; build_transforms itself refuses them.
UNSUPPORTED_TRANSFORMS = ("RandAugment", "RandAugmentV2", "RandAugmentV3", "PCALighting", "HideAndSeek",
                          "GridMask", "Cutout", "AugMix", "RandomGrayscale", "BlurImage", "RandomInterpolationAugment",
                          "Padv2", "RandomCropImage", "CropImageAtRatio", "RandomRot90")


class Compose:
    """Apply `ops` in order; `ops` are (name, callable) pairs kept for inspection and error messages."""

    def __init__(self, ops):
        self.ops = list(ops)

    def __call__(self, data):
        for _, op in self.ops:
            data = op(data)
        return data

    def __len__(self):
        return len(self.ops)

    def __repr__(self):
        return f"Compose([{', '.join(name for name, _ in self.ops)}])"


def _parse_entry(index, entry):
    if isinstance(entry, str):
        return entry, {}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise TransformError(f"transform_ops[{index}] must be a one-key mapping like {{ResizeImage: "
                             f"{{resize_short: 256}}}}, got {entry!r}")
    (name, params), = entry.items()
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise TransformError(f"transform_ops[{index}] {name}: parameters must be a mapping, got {params!r}")
    return name, params


def build_op(name, params=None, index=0):
    """One op from its PaddleClas name and parameters; unknown names and parameters are errors."""
    params = dict(params or {})
    if name not in TRANSFORMS:
        import difflib
        close = difflib.get_close_matches(str(name), list(TRANSFORMS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise TransformError(f"transform_ops[{index}]: unknown transform {name!r}.{hint} "
                             f"Known: {', '.join(TRANSFORMS)}")
    cls = TRANSFORMS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise TransformError(f"transform_ops[{index}] {name}: unknown parameter(s) {unknown}; "
                             f"accepted: {', '.join(accepted) or '(none)'}")
    try:
        return cls(**params)
    except TransformError as err:
        raise TransformError(f"transform_ops[{index}] {err}") from None


def build_transforms(op_list):
    """PaddleClas `transform_ops` (a list of one-key dicts, `{ToCHWImage: None}` allowed) -> one
    callable applying the ops in order. An unknown op or parameter is a TransformError naming it
    and listing what is known."""
    if op_list is None:
        op_list = []
    if not isinstance(op_list, (list, tuple)):
        raise TransformError(f"transform_ops must be a list of one-key mappings, got {type(op_list).__name__}")
    ops = []
    for index, entry in enumerate(op_list):
        name, params = _parse_entry(index, entry)
        ops.append((name, build_op(name, params, index)))
    return Compose(ops)
