"""Low-precision exports: bf16 and int8, each verified against fp32 before it is recorded.

- Images come from the config's eval dataset through its eval pipeline (`DataLoader.Eval.dataset`,
  the transforms the model's accuracy is measured with), in a fixed shuffled order: the first
  `calib_images` calibrate int8, the next `verify_images` are held out for verification.
- int8: ONNX Runtime's post-training static quantization (`onnxruntime.quantization.quantize_static`,
  QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration; the final softmax is
  left in float) of inference.onnx into inference_int8.onnx. ONNX Runtime and OpenVINO both run it.
- bf16: no file of its own. Paddle Inference (oneDNN bf16) and OpenVINO (inference precision bf16)
  run the fp32 files in bf16 on CPUs with AVX512-BF16/AMX.
- Verification: every runtime that runs the precision is compared with fp32 Paddle Inference on the
  held-out images: top-1 agreement, and top-1 accuracy of both (the eval set has labels). Past the
  budget (DEFAULT_BUDGET, documented in docs/deploy.md) the precision is refused with the figures.
"""
import numpy as np

from ..errors import UserError
from ..progress import progress
from .runtimes import RuntimeNotInstalled

__all__ = ["PrecisionRefused", "CalibrationError", "DEFAULT_BUDGET", "DEFAULT_CALIB_IMAGES", "DEFAULT_VERIFY_IMAGES", "INT8_QUANTIZERS",
           "eval_images",
           "quantize_int8", "verify_precision", "require_quantizer"]

# A low precision may lose at most 1 point of top-1 accuracy against fp32 on the held-out images
# (issue 11's target) and must give fp32's top-1 class on at least 95% of them (a guard against churn
# that the average hides; on the demo model, int8 agrees on 96.2% and bf16 on 97.0%, docs/deploy.md).
DEFAULT_BUDGET = {"max_top1_drop": 1.0, "min_top1_agreement": 0.95}
DEFAULT_CALIB_IMAGES = 64
# --int8-quantizer: "auto" = ONNX Runtime's QDQ file, and NNCF's OpenVINO file where NNCF is installed.
INT8_QUANTIZERS = ("auto", "onnxruntime", "nncf")
DEFAULT_VERIFY_IMAGES = 256
_BATCH = 16


class PrecisionRefused(UserError, RuntimeError):
    """A low-precision export that lost more than the budget allows; the message has the figures."""


class CalibrationError(UserError, ValueError):
    """No, too few or unreadable calibration/verification images; the message names the flag and value."""


# ----------------------------------------------------------------------------------------- images
def eval_images(config, image_shape, calib_images, verify_images, class_num=None, flag="--calib-images"):
    """(calibration batch [N,C,H,W], held-out batch [M,C,H,W], held-out labels [M], description) drawn
    through the config's eval pipeline in a fixed shuffled order. Errors name the flag, the value and
    what is expected: no eval dataset, too few images, unreadable ones, another image size."""
    from ..data.loader import build_dataset
    if not isinstance(calib_images, int) or isinstance(calib_images, bool) or calib_images < 1:
        raise CalibrationError(f"{flag}={calib_images!r}: expected a positive number of calibration images")
    section = ((config.get("DataLoader") or {}).get("Eval") or {}).get("dataset")
    if not section:
        raise CalibrationError(f"{flag}={calib_images}: the config has no DataLoader.Eval.dataset to draw calibration and "
                         f"verification images from; expected an eval dataset (e.g. -c configs/quickstart.yaml, or "
                         f"-o DataLoader.Eval.dataset.image_root=... cls_label_path=...)")
    try:
        dataset = build_dataset(section, "Eval", class_num=class_num)
    except (UserError, ValueError, OSError) as err:
        raise CalibrationError(f"{flag}={calib_images}: DataLoader.Eval.dataset cannot be read: {err}") from None
    total = len(dataset)
    if total < calib_images + 1:
        raise CalibrationError(f"{flag}={calib_images}: DataLoader.Eval.dataset has {total} images; expected more than "
                         f"{calib_images} (calibration) so that some are left to verify on")
    order = np.random.RandomState(0).permutation(total)
    calib_ids = order[:calib_images]
    verify_ids = order[calib_images:calib_images + verify_images]
    calib, _ = _load(dataset, calib_ids, image_shape, flag, calib_images)
    held_out, labels = _load(dataset, verify_ids, image_shape, flag, calib_images)
    described = (f"DataLoader.Eval.dataset ({section.get('name', 'ImageNetDataset')}, {total} images): {len(calib_ids)} "
                 f"for calibration, the next {len(verify_ids)} held out (fixed shuffle, seed 0)")
    return calib, held_out, labels, described


def _load(dataset, ids, image_shape, flag, value):
    images, labels = [], []
    for i in ids:
        try:
            image, label = dataset[int(i)]
        except (UserError, ValueError, OSError) as err:
            raise CalibrationError(f"{flag}={value}: eval image {dataset.images[int(i)]} cannot be read ({err}); expected "
                             f"readable images in DataLoader.Eval.dataset") from None
        image = np.asarray(image, dtype="float32")
        if list(image.shape) != list(image_shape):
            raise CalibrationError(f"{flag}={value}: the eval pipeline gives {list(image.shape)} images but the model is "
                             f"exported for {list(image_shape)}; make DataLoader.Eval's crop and Global.image_shape "
                             f"agree")
        images.append(image)
        labels.append(int(label))
    return np.stack(images), np.asarray(labels, dtype="int64")


# ----------------------------------------------------------------------------------------- int8
def require_quantizer(flag="--precision"):
    """Raise ImportError naming the packages int8 needs when one is missing."""
    missing = []
    for module in ("paddle2onnx", "onnx", "onnxruntime", "ml_dtypes"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise RuntimeNotInstalled(f"{flag}=int8 needs {', '.join(missing)} (not installed): pip install ppbackbone[onnx] "
                          f"(int8 is ONNX Runtime's QDQ quantization of inference.onnx)")


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a batch of images, one image at a time."""

    def __init__(self, input_name, images, bar=None):
        self.input_name, self.images, self.index, self.bar = input_name, images, 0, bar

    def get_next(self):
        if self.index >= len(self.images):
            return None
        self.index += 1
        if self.bar is not None:
            self.bar.update()
        return {self.input_name: self.images[self.index - 1:self.index]}

    def rewind(self):
        self.index = 0


def quantize_int8(onnx_file, int8_file, calib, input_name="x"):
    """inference.onnx -> QDQ int8 file calibrated on `calib`; returns the settings to record."""
    import onnxruntime
    # The quantizer's own sessions log, in colour, one "Removing initializer '...'. It is not used by any node"
    # warning per constant paddle2onnx leaves unused: harmless, nothing to act on. Errors only while it runs
    # (ONNX Runtime's default, warnings, afterwards).
    onnxruntime.set_default_logger_severity(3)
    try:
        return _quantize(onnx_file, int8_file, calib, input_name)
    finally:
        onnxruntime.set_default_logger_severity(2)


def _quantize(onnx_file, int8_file, calib, input_name):
    import os
    import tempfile

    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with tempfile.TemporaryDirectory(dir=os.path.dirname(int8_file)) as work:
        prepared = os.path.join(work, "prepared.onnx")
        # Shape inference + graph optimization, as onnxruntime recommends before quantizing (the symbolic
        # pass needs sympy and adds nothing for a fixed image size).
        quant_pre_process(onnx_file, prepared, skip_symbolic_shape=True)
        softmax = [n.name for n in onnx.load(prepared).graph.node if n.op_type == "Softmax"]
        with progress(total=len(calib), desc="int8 calibration", unit="image") as bar:
            quantize_static(prepared, int8_file, _Reader(input_name, calib, bar), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=softmax)
    return {"quantizer": f"onnxruntime {onnxruntime.__version__} quantize_static", "format": "QDQ",
            "weights": "int8 per channel", "activations": "uint8 per tensor", "calibration": "MinMax",
            "calibration_images": int(len(calib)), "float_ops": ["Softmax"] if softmax else []}


# ----------------------------------------------------------------------------------------- verification
def _predict(backend, images):
    outs = [backend.run(images[i:i + _BATCH])[0] for i in range(0, len(images), _BATCH)]
    return np.concatenate(outs).argmax(axis=1)


def verify_precision(precision, reference, backends, images, labels, budget=None, log=print, keep_passing=False):
    """Compare each backend (runtime -> backend at `precision`) with `reference` (fp32 Paddle
    Inference) on the held-out images. Returns the figures to record; raises PrecisionRefused naming
    the figures when one runtime is past the budget, or with `keep_passing` when every one is (the
    others then go to the record's `refused`, runtime -> why, and only the passing ones to
    `verified_on`)."""
    budget = dict(DEFAULT_BUDGET, **(budget or {}))
    fp32 = _predict(reference, images)
    fp32_top1 = float((fp32 == labels).mean() * 100) if labels is not None else None
    record = {"held_out_images": int(len(images)), "budget": budget, "fp32_top1": _round(fp32_top1), "runtimes": {}}
    failures = {}
    for runtime, backend in backends.items():
        low = _predict(backend, images)
        agreement = float((low == fp32).mean())
        figures = {"top1_agreement": round(agreement, 4)}
        line = f"{precision} on {runtime}: top-1 agreement with fp32 {agreement:.2%} on {len(images)} held-out images"
        if labels is not None:
            top1 = float((low == labels).mean() * 100)
            figures.update(top1=_round(top1), top1_drop=_round(fp32_top1 - top1))
            line += f"; top-1 {top1:.2f}% vs fp32 {fp32_top1:.2f}% (drop {fp32_top1 - top1:+.2f} points)"
            if fp32_top1 - top1 > budget["max_top1_drop"]:
                failures.setdefault(runtime, []).append(f"top-1 drop {fp32_top1 - top1:.2f} points > "
                                                        f"{budget['max_top1_drop']}")
        if agreement < budget["min_top1_agreement"]:
            failures.setdefault(runtime, []).append(f"top-1 agreement {agreement:.2%} < "
                                                    f"{budget['min_top1_agreement']:.2%}")
        log(line)
        record["runtimes"][runtime] = figures
    passing = [runtime for runtime in backends if runtime not in failures]
    reasons = {runtime: ", ".join(why) for runtime, why in failures.items()}
    if failures and not (keep_passing and passing):
        raise PrecisionRefused(f"--precision {precision} REFUSED, past the budget (top-1 drop <= "
                               f"{budget['max_top1_drop']} points, agreement >= {budget['min_top1_agreement']:.0%}): "
                               f"{'; '.join(f'{r}: {why}' for r, why in reasons.items())}. Nothing was written; "
                               f"figures per runtime: {record['runtimes']}")
    if failures:
        record["refused"] = reasons
    record["verified_on"] = passing
    return record


def _round(value):
    return None if value is None else round(float(value), 3)
