"""MBT pipeline: Multimodal Bottleneck Transformer on TFX.

Two stacks, picked by the Python version (the Makefile picks the Python by the host's glibc):
Python 3.10 gets TFX 1.16 (constraints.txt), Python 3.12-3.13 TFX 1.21 (constraints-current.txt).
"""
from setuptools import find_packages, setup

LEGACY = ["tfx[kfp]==1.16.0", "tensorflow==2.16.2", "keras>=3.3,<4", "tf-keras==2.16.0",
          "tensorflow-serving-api==2.16.1", "av==17.1.0"]
CURRENT = ["tfx==1.21.0", "tensorflow==2.21.0", "keras>=3.3,<4", "tensorflow-serving-api==2.19.1",
           "av==19.0.2", "tensorboard==2.21.0", "kfp-pipeline-spec"]

setup(
    name="mbt-pipeline",
    version="0.1.0",
    description="Audio-visual classification with the Multimodal Bottleneck Transformer on TFX",
    python_requires=">=3.10,!=3.11.*,<3.14",
    packages=find_packages(include=["mbt_keras*", "components*", "pipeline*", "serving*", "kubeflow*"]),
    package_data={"": ["*.txt", "*.json", "*.yaml", "Dockerfile"]},
    install_requires=[
        *(f"{req}; python_version < '3.11'" for req in LEGACY),
        *(f"{req}; python_version >= '3.12'" for req in CURRENT),
        "simplejpeg",
        "isal",
        "waitress",
        "dill",
        "msgpack",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["mbt=pipeline.cli:main"]},
)
