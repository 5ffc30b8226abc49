"""An environment built by the steps of kubeflow/Dockerfile, without a container builder.

The Dockerfile's COPY lines are followed to copy the same files into the same WORKDIR under a
scratch root; a fresh venv gets the stack's pinned environment from the running one (each
installed distribution linked in, this project's own install left out), then
`pip install --no-deps .` from that WORKDIR and the Dockerfile's own import check, as its RUN
step does. Processes started in it see no PYTHONPATH and no repository: what the image lacks,
they lack. PodmanImage runs commands in the image itself where podman could build it
(.ci/offline_image.sh). A test harness, not a build tool: the product is the Dockerfile.
"""
import dataclasses
import importlib.metadata
import os
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import venv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(REPO, "kubeflow", "Dockerfile")
DISTRIBUTION = "mbt-pipeline"


def _instructions(text: str):
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", "", "\n".join(l for l in text.splitlines() if not l.startswith("#")))
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            yield keyword.upper(), rest.strip()


def _build_args(text: str) -> dict:
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", text, re.M))


@dataclasses.dataclass(frozen=True)
class ImageEnv:
    root: str      # stands for the image's /
    workdir: str   # the Dockerfile's WORKDIR under root
    python: str    # the image's `python`
    version: str   # the installed package's version

    def env(self) -> dict:
        """What a process in the image gets: the image's python first on PATH, no PYTHONPATH."""
        keep = {k: v for k, v in os.environ.items()
                if k in ("HOME", "LANG", "TMPDIR", "TF_CPP_MIN_LOG_LEVEL")}
        bin_dir = os.path.dirname(self.python)
        return dict(keep, PATH=os.pathsep.join([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]))

    def run(self, command, stdout) -> int:
        """`command` as a container step runs: from the WORKDIR."""
        return subprocess.run(command, cwd=self.workdir, env=self.env(), stdout=stdout,
                              stderr=subprocess.STDOUT).returncode


@dataclasses.dataclass(frozen=True)
class PodmanImage:
    """A built image (docs/cloud.md: podman, offline) run as a container per command, the
    KFP way (`command` replaces the ENTRYPOINT); `folders` are mounted at the same paths."""
    tag: str
    version: str
    folders: tuple = ()

    @property
    def options(self) -> tuple:
        """runc: Debian's default crun refuses hosts with hybrid cgroups; the ulimits are the
        host's own (podman's defaults ask for more than these hosts may set)."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return ("--runtime", "runc", "--network", "none",
                "--ulimit", f"nofile={soft}:{hard}", "--ulimit", "nproc=4096:4096")

    @classmethod
    def of(cls, tag: str, folders=()) -> "PodmanImage":
        """The image with the package version it has installed."""
        image = cls(tag, "", tuple(folders))
        version = subprocess.run(
            ["podman", "run", "--rm", *image.options, "--entrypoint", "python", tag, "-c",
             f"import importlib.metadata as m; print(m.version({DISTRIBUTION!r}))"],
            capture_output=True, text=True, check=True).stdout.strip()
        return dataclasses.replace(image, version=version)

    def run(self, command, stdout) -> int:
        mounts = [a for f in self.folders for a in ("-v", f"{f}:{f}")]
        head, *args = command
        return subprocess.run(["podman", "run", "--rm", *self.options, *mounts,
                               "--entrypoint", head, self.tag, *args],
                              stdout=stdout, stderr=subprocess.STDOUT).returncode


def _copy_sources(text: str, workdir: str) -> None:
    """Every `COPY src... dest` from the build context (not `COPY --from=stage`)."""
    for keyword, rest in _instructions(text):
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, dest = rest.split()
        target = os.path.normpath(os.path.join(workdir, dest))
        for source in sources:
            path = os.path.join(REPO, source)
            if os.path.isdir(path):
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                os.makedirs(target, exist_ok=True)
                shutil.copy2(path, target)


def _link_pinned_environment(site_packages: str) -> None:
    """The running stack's installed distributions, which the image installs from the same
    pins; this project's own install (editable or not) stays out."""
    own = importlib.metadata.distribution(DISTRIBUTION)
    own_entries = {str(f).split("/")[0] for f in own.files or ()}
    source = sysconfig.get_paths()["purelib"]
    for entry in os.listdir(source):
        if entry in own_entries or entry == "__pycache__":
            continue
        os.symlink(os.path.join(source, entry), os.path.join(site_packages, entry))


def _import_check(text: str) -> str:
    """The Dockerfile's `python -c "..."` check with its build arguments filled in."""
    run = next(rest for keyword, rest in _instructions(text)
               if keyword == "RUN" and 'python -c "' in rest)
    code = re.search(r'python -c "(.*?)"', run).group(1)
    args = _build_args(text)
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], code)


def _run(command, **kwargs) -> None:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(f"image build step failed: {' '.join(command)}\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")


def build_image_env(root: str) -> ImageEnv:
    text = open(DOCKERFILE).read()
    workdir = os.path.join(root, next(rest for k, rest in _instructions(text)
                                      if k == "WORKDIR").lstrip("/"))
    _copy_sources(text, workdir)
    prefix = os.path.join(root, "usr", "local")
    venv.EnvBuilder(with_pip=False).create(prefix)
    python = os.path.join(prefix, "bin", "python")
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    _link_pinned_environment(site_packages)
    env = ImageEnv(root=root, workdir=workdir, python=python, version="")
    # --no-build-isolation: the pinned setuptools, not one fetched from PyPI for the build.
    _run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-deps",
          "--no-build-isolation", "."], cwd=workdir, env=env.env())
    _run([python, "-c", _import_check(text)], cwd=workdir, env=env.env())
    version = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({DISTRIBUTION!r}))"],
        cwd=root, env=env.env(), capture_output=True, text=True, check=True).stdout.strip()
    return dataclasses.replace(env, version=version)


def dockerfile_stack() -> tuple:
    """(Python, Beam) of the Dockerfile's default build."""
    args = _build_args(open(DOCKERFILE).read())
    return args["PYTHON_VERSION"], args["BEAM_VERSION"]


def skip_reason():
    """Why this environment cannot stand for the image, or None when it can."""
    import apache_beam
    running = ("%d.%d" % sys.version_info[:2], apache_beam.__version__)
    if running != dockerfile_stack():
        return (f"kubeflow/Dockerfile builds Python {dockerfile_stack()[0]} / Beam "
                f"{dockerfile_stack()[1]} (the current stack); this is Python {running[0]} / "
                f"Beam {running[1]}: run it on the current stack (.ci/current_stack.sh)")
    return None
