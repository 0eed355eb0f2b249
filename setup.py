"""ppbackbone: PaddlePaddle-native, weight-compatible backbones from PaddleClas and PaddleDetection."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "ppbackbone", "__init__.py"), encoding="utf-8") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

# The reference implementations the parity tests run side by side. Their wheels pin old numpy
# versions, so they are installed with `pip install --no-deps` (see README); these are the
# packages their backbone/detector modules actually import.
REFERENCE_NEEDS = [
    "tqdm", "six", "requests", "scikit-learn", "opencv-python-headless", "pycocotools", "matplotlib",
    "pandas", "scipy", "typeguard", "shapely", "terminaltables",
    "setuptools<81",  # ppdet imports pkg_resources, which setuptools 81 removed
]

# Optional deployment runtimes: `tools/export.py --onnx` (paddle2onnx; verified with onnxruntime),
# `--precision int8` (onnxruntime.quantization, which imports ml_dtypes) and the Predictor's
# runtime="onnxruntime" / "openvino"; nncf makes OpenVINO's own int8 file (--precision int8). Not needed
# by the tests (they skip, saying why, without them).
DEPLOY_EXTRAS = {"onnx": ["paddle2onnx>=2.0", "onnx", "onnxruntime", "ml_dtypes"],
                 "openvino": ["openvino", "nncf"]}

# Pictures (curves.png of every training run, tools/eval.py --confusion-matrix / --recall-curve,
# tools/benchmark.py latency --plot, docs/images/): optional; without it training skips curves.png
# with one notice and a requested picture is one `Error:` line. In [test] too, so CI draws them.
PLOT_EXTRA = ["matplotlib>=3.5"]

setup(
    name="ppbackbone",
    version=VERSION,
    description="PaddlePaddle-native, weight-compatible PP-HGNet(V2), PP-LCNet v1/v2/v3, CSPResNet and "
                "VanillaNet backbones: train, export, and use in PaddleDetection",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ppbackbone", "ppbackbone.*"]),
    python_requires=">=3.8",
    install_requires=["paddlepaddle>=3.0", "numpy", "pyyaml", "visualdl", "safetensors", "pillow",
                      "opencv-python-headless", "tqdm"],
    extras_require={"test": ["pytest", "pytest-timeout", "pytest-xdist", "hypothesis"] + PLOT_EXTRA + REFERENCE_NEEDS,
                    "plot": PLOT_EXTRA, **DEPLOY_EXTRAS},
    license="Apache-2.0",
)
