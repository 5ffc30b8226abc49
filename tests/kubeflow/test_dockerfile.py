"""kubeflow/Dockerfile can serve as the Dataflow worker image (checked offline, no Docker):
its Beam boot entrypoint comes from the Beam SDK image of the same Beam and Python versions
as the pinned environment it installs, on an official TFX base image."""
import os
import re
import sys

import apache_beam

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = open(os.path.join(REPO, "kubeflow", "Dockerfile")).read()


def _arg(name):
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.M)
    assert match, f"no default for ARG {name}"
    return match.group(1)


def _pin(package):
    constraints = open(os.path.join(REPO, "constraints.txt")).read()
    return re.search(rf"^{package}==(\S+)$", constraints, re.M | re.I).group(1)


def test_the_boot_entrypoint_comes_from_the_matching_beam_sdk_image():
    assert _arg("BEAM_VERSION") == apache_beam.__version__ == _pin("apache-beam")
    assert _arg("PYTHON_VERSION") == "%d.%d" % sys.version_info[:2]
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam_sdk" in DOCKERFILE
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in DOCKERFILE
    assert DOCKERFILE.rstrip().splitlines()[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'


def test_the_base_is_an_official_tfx_image_chosen_by_an_argument():
    """One line moves TFX (`--build-arg TFX_IMAGE=...`); the Beam and Python checks above
    keep the workers in step with whatever it installs."""
    assert re.fullmatch(r"gcr\.io/tfx-oss-public/tfx:\d+\.\d+\.\d+", _arg("TFX_IMAGE"))
    assert "FROM ${TFX_IMAGE}" in DOCKERFILE


def test_the_image_installs_the_pinned_environment_and_every_package():
    assert "-c constraints.txt -r requirements.in" in DOCKERFILE
    for package in ("mbt_keras", "components", "pipeline", "serving", "kubeflow"):
        assert f"COPY {package} ./{package}" in DOCKERFILE
