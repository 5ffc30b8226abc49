"""kubeflow/Dockerfile can serve as the Dataflow worker image (checked offline, no Docker):
its Beam boot entrypoint comes from the Beam SDK image of the same Beam and Python versions
as the pinned environment it installs, for the current stack (the default) and the legacy one
(build arguments written in the Dockerfile)."""
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


def _legacy_build_args():
    """The documented legacy build's --build-arg values."""
    line = next(l for l in DOCKERFILE.splitlines() if "--build-arg STACK=legacy" in l)
    return dict(re.findall(r"--build-arg (\w+)=(\S+)", line))


def _pin(package, constraints):
    text = open(os.path.join(REPO, constraints)).read()
    return re.search(rf"^{package}==(\S+)$", text, re.M | re.I).group(1)


def test_the_boot_entrypoint_comes_from_the_matching_beam_sdk_image():
    """Default (current stack) and documented legacy build: Beam and Python of the boot
    program equal the pinned environment's."""
    assert _arg("STACK") == "current"
    assert _arg("BEAM_VERSION") == _pin("apache-beam", "constraints-current.txt")
    assert _arg("PYTHON_VERSION") == "3.13"
    legacy = _legacy_build_args()
    assert legacy["BEAM_VERSION"] == _pin("apache-beam", "constraints.txt")
    assert legacy["PYTHON_VERSION"] == "3.10"
    # The stack this suite runs on is one of the two.
    running = ("%d.%d" % sys.version_info[:2], apache_beam.__version__)
    assert running in {(_arg("PYTHON_VERSION"), _arg("BEAM_VERSION")),
                       (legacy["PYTHON_VERSION"], legacy["BEAM_VERSION"])}
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam_sdk" in DOCKERFILE
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in DOCKERFILE
    assert DOCKERFILE.rstrip().splitlines()[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'


def test_the_base_is_chosen_by_an_argument_per_stack():
    """The current stack on Debian 13's Python 3.13 (glibc 2.41: TFX 1.21's wheels need 2.39);
    the legacy one on the official TFX 1.16 image."""
    assert _arg("BASE_IMAGE") == "python:3.13-slim-trixie"
    assert re.fullmatch(r"gcr\.io/tfx-oss-public/tfx:1\.16\.\d+", _legacy_build_args()["BASE_IMAGE"])
    assert "FROM ${BASE_IMAGE}" in DOCKERFILE


def test_the_image_installs_the_pinned_environment_and_every_package():
    assert "current) pins=\"-c constraints-current.txt -r requirements-current.in\"" in DOCKERFILE
    assert "legacy) pins=\"-c constraints.txt -r requirements.in\"" in DOCKERFILE
    assert "COPY requirements.in constraints.txt requirements-current.in constraints-current.txt" \
        in DOCKERFILE
    for package in ("mbt_keras", "components", "pipeline", "serving", "kubeflow"):
        assert f"COPY {package} ./{package}" in DOCKERFILE
