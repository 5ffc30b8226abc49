"""Runs a compiled PipelineJob (kubeflow/compile.py) the way the KFP/Vertex launcher does,
task by task, each by its own container command and arguments, in the image (or an
environment built by its Dockerfile's steps: image_env.py).

What the launcher does and this emulates: for each task in dependency order, an ExecutorInput
(the task's constant parameters, its input artifacts as the producers' executor outputs left
them, output artifacts with URIs under the pipeline root and an output file) replaces the
`{{$}}` placeholder of the executor's args; the container runs `command + args`; its
ExecutorOutput (e.g. the blessing's custom properties) updates the output artifacts the
downstream tasks receive. The Resolver tasks are system tasks the backend runs itself against
its metadata store: here, as on a pipeline's first run, they resolve nothing. gs:// paths of
the mapped buckets become local folders. A test harness, not an orchestrator: the product runs
on Vertex AI / Kubeflow.
"""
import itertools
import json
import os
import re
import shlex
from typing import Dict, List

PLACEHOLDER = "{{$}}"
ARTIFACT_NAME = "projects/local/locations/local/metadataStores/default/artifacts/{}"
# Spec contents that would make a task call Google Cloud instead of running in its container.
CLOUD_ONLY = {
    "--runner=DataflowRunner": "its Beam steps run on Dataflow (compile without --project)",
    "ai_platform_training_args": "its Trainer runs as a Vertex AI custom job (compile "
                                 "without --trainer-* flags)",
}


class SpecRefused(ValueError):
    """The spec cannot run locally as it is; one line, raised before any task starts."""


class TaskFailed(RuntimeError):
    """A task's container command failed."""


def _map_strings(value, buckets: Dict[str, str]):
    if isinstance(value, str):
        for bucket, folder in buckets.items():
            # The bucket's name ends where a bucket name cannot go on.
            value = re.sub(re.escape(bucket.rstrip("/")) + r"(?![\w.-])",
                           folder.rstrip("/"), value)
        return value
    if isinstance(value, list):
        return [_map_strings(v, buckets) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, buckets) for k, v in value.items()}
    return value


def _tasks(spec: dict) -> dict:
    return spec["pipelineSpec"]["root"]["dag"]["tasks"]


def _executor(spec: dict, task: dict) -> dict:
    pipeline = spec["pipelineSpec"]
    label = pipeline["components"][task["componentRef"]["name"]]["executorLabel"]
    return pipeline["deploymentSpec"]["executors"][label]


def _producers(task: dict) -> set:
    inputs = task.get("inputs", {}).get("artifacts", {})
    return set(task.get("dependentTasks", ())) | {
        a["taskOutputArtifact"]["producerTask"] for a in inputs.values()}


def task_order(spec: dict) -> List[str]:
    """Every task after the tasks it depends on (dependentTasks and artifact producers)."""
    tasks, done = _tasks(spec), []
    while len(done) < len(tasks):
        ready = sorted(n for n, t in tasks.items() if n not in done and _producers(t) <= set(done))
        if not ready:
            raise SpecRefused(f"tasks {sorted(set(tasks) - set(done))} depend on each other")
        done += ready
    return done


def _image_tag(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else ""


def _refuse_unmapped(where: str, text: str, buckets: Dict[str, str]) -> None:
    if "gs://" in text:
        uri = text[text.index("gs://"):].split('"')[0].split("\\")[0]
        raise SpecRefused(f"{where}: {uri} is in a bucket this local run does not map "
                          f"(it maps {', '.join(buckets)})")


def check_spec(spec: dict, buckets: Dict[str, str], version: str) -> dict:
    """The spec with the buckets mapped, or SpecRefused naming what cannot run here."""
    mapped = _map_strings(spec, buckets)
    _refuse_unmapped("pipeline root", mapped["runtimeConfig"]["gcsOutputDirectory"], buckets)
    for name in task_order(mapped):
        task = _tasks(mapped)[name]
        executor = _executor(mapped, task)
        text = json.dumps([task, executor])
        _refuse_unmapped(f"task {name}", text, buckets)
        for marker, reason in CLOUD_ONLY.items():
            if marker in text:
                raise SpecRefused(f"task {name}: {reason}; this local run cannot execute that")
        for key, parameter in task.get("inputs", {}).get("parameters", {}).items():
            _constant(parameter, name, key)
        if "container" in executor:
            image = executor["container"]["image"]
            if _image_tag(image) != version:
                raise SpecRefused(
                    f"task {name}: image {image} is tagged {_image_tag(image) or 'nothing'!r}, "
                    f"not the installed package's version {version!r}; tag the image with the "
                    f"version it was built from")
            other = [a for a in executor["container"]["args"] if "{{$" in a and a != PLACEHOLDER]
            if other:
                raise SpecRefused(f"task {name}: placeholder {other[0]} is not emulated here")
        elif "resolver" not in executor:
            raise SpecRefused(f"task {name}: executor kind {sorted(executor)} is not emulated here")
    return mapped


def _constant(parameter: dict, task: str, key: str) -> dict:
    try:
        return parameter["runtimeValue"]["constantValue"]
    except KeyError:
        raise SpecRefused(f"task {task}: parameter {key} is not a constant") from None


def _plain(value: dict):
    """A pipeline_spec Value ({"stringValue": ...}) as the JSON value of parameterValues."""
    [(kind, plain)] = value.items()
    return int(plain) if kind == "intValue" else plain


def run_spec(spec_path: str, *, buckets: Dict[str, str], image, job_id: str = "local",
             log_dir: str) -> Dict[str, Dict[str, list]]:
    """Runs every task; returns each task's output artifacts (RuntimeArtifact dicts).
    `buckets` maps gs://bucket to a local folder; `image` runs a command in the image
    (image_env.ImageEnv or PodmanImage)."""
    spec = check_spec(json.load(open(spec_path)), buckets, image.version)
    root = spec["runtimeConfig"]["gcsOutputDirectory"]
    components = spec["pipelineSpec"]["components"]
    ids = itertools.count(1)
    outputs: Dict[str, Dict[str, list]] = {}
    os.makedirs(log_dir, exist_ok=True)
    for name in task_order(spec):
        task = _tasks(spec)[name]
        executor = _executor(spec, task)
        definitions = components[task["componentRef"]["name"]].get("outputDefinitions", {})
        if "resolver" in executor:
            outputs[name] = {key: [] for key in executor["resolver"]["outputArtifactQueries"]}
            continue
        task_root = os.path.join(root, job_id, f"{name}_{next(ids)}")
        produced = {key: [{"name": ARTIFACT_NAME.format(next(ids)), "type": d["artifactType"],
                           "uri": os.path.join(task_root, key), "metadata": {}}]
                    for key, d in definitions.get("artifacts", {}).items()}
        given = task.get("inputs", {})
        parameters = {k: _constant(p, name, k) for k, p in given.get("parameters", {}).items()}
        executor_input = {
            "inputs": {
                # Both, as TFX's entrypoint tests show the launcher's input; its executor reads
                # `parameters` unless it is given an inputs spec (not in TFX 1.21's specs).
                "parameters": parameters,
                "parameterValues": {k: _plain(v) for k, v in parameters.items()},
                "artifacts": {
                    k: {"artifacts": outputs[a["taskOutputArtifact"]["producerTask"]][
                        a["taskOutputArtifact"]["outputArtifactKey"]]}
                    for k, a in given.get("artifacts", {}).items()},
            },
            "outputs": {"artifacts": {k: {"artifacts": v} for k, v in produced.items()},
                        "outputFile": os.path.join(task_root, "executor_output.json")},
        }
        for [artifact] in produced.values():
            # gs:// has no folders: a task writes <uri>/file without making <uri> first.
            os.makedirs(artifact["uri"])
        container = executor["container"]
        command = container["command"] + [
            a.replace(PLACEHOLDER, json.dumps(executor_input)) for a in container["args"]]
        log = os.path.join(log_dir, f"{name}.log")
        with open(log, "w") as out:
            returncode = image.run(command, out)
        output_file = executor_input["outputs"]["outputFile"]
        if returncode or not os.path.exists(output_file):
            tail = open(log).read()[-2000:]
            raise TaskFailed(
                f"task {name} failed (exit {returncode}"
                f"{'' if returncode else ', no executor output'}): "
                f"{shlex.join(container['command'] + container['args'])}\n"
                f"log {log}, last lines:\n{tail}")
        written = json.load(open(output_file)).get("artifacts", {})
        outputs[name] = {key: [dict(artifact, **written[key]["artifacts"][0])]
                         if key in written else [artifact]
                         for key, [artifact] in produced.items()}
    return outputs


def main(argv=None) -> int:
    """Runs a spec's tasks in an image built with podman (docs/cloud.md, "Before your first
    cloud run"); the tests run them in image_env.ImageEnv instead."""
    import argparse
    from tests.kubeflow.image_env import PodmanImage
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("spec")
    parser.add_argument("--bucket", required=True, metavar="gs://BUCKET=FOLDER")
    parser.add_argument("--podman", required=True, metavar="IMAGE")
    parser.add_argument("--logs", required=True)
    args = parser.parse_args(argv)
    bucket, folder = args.bucket.split("=", 1)
    image = PodmanImage.of(args.podman, folders=[os.path.abspath(folder)])
    try:
        outputs = run_spec(args.spec, buckets={bucket: os.path.abspath(folder)}, image=image,
                           log_dir=args.logs)
    except (SpecRefused, TaskFailed) as error:
        raise SystemExit(str(error)) from error
    for task, artifacts in outputs.items():
        print(task, {k: [a["uri"] for a in v] for k, v in artifacts.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
