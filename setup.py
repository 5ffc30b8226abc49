"""MBT pipeline: Multimodal Bottleneck Transformer on TFX. Pinned versions live in constraints.txt."""
from setuptools import find_packages, setup

setup(
    name="mbt-pipeline",
    version="0.1.0",
    description="Audio-visual classification with the Multimodal Bottleneck Transformer on TFX",
    python_requires="==3.10.*",
    packages=find_packages(include=["mbt_keras*", "components*", "pipeline*", "serving*", "kubeflow*"]),
    package_data={"": ["*.txt", "*.json", "*.yaml", "Dockerfile"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow==2.16.2",
        "keras>=3.3,<4",
        "tf-keras==2.16.0",
        "tensorflow-serving-api==2.16.1",
        "av==17.1.0",
        "simplejpeg",
        "isal",
        "dill",
        "msgpack",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["mbt=pipeline.cli:main"]},
)
