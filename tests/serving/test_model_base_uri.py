"""A model base on a file system other than the local one (gs://, where the Vertex pipeline
pushes), on TensorFlow's in-memory `ram://` file system (per process, so in-process here):
versions are found, loaded, answered and replaced through tf.io.gfile, and `mbt serve`
hands the URI to the official binary as it is."""
import argparse
import json
import os

import numpy as np
import tensorflow as tf

from mbt_keras import contract
from serving.client import predict_saved_model
from serving.model_versions import AVAILABLE, END, ModelVersions, numeric_versions
from serving import server_cli
from serving.request_path import RequestPath
from serving.rest_api import RestApi
from tests.serving.conftest import MODEL_NAME
from tests.serving.doors import to_json

BASE = "ram://mbt_serving_test"


def _copy_tree(source: str, target: str):
    for root, _, names in os.walk(source):
        folder = os.path.normpath(os.path.join(target, os.path.relpath(root, source)))
        folder = folder.replace(":/", "://", 1)  # normpath folds the scheme's "//"
        tf.io.gfile.makedirs(folder)
        for name in names:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(folder, name), overwrite=True)


def test_versions_on_a_uri_are_found_loaded_served_and_replaced(exported, clip_request):
    model_dir = f"{BASE}/{MODEL_NAME}"
    _copy_tree(exported[1], f"{model_dir}/1")
    tf.io.gfile.makedirs(f"{model_dir}/7")  # no saved_model.pb yet: not a version
    tf.io.gfile.makedirs(f"{model_dir}/tmp")
    assert numeric_versions(model_dir) == [1]
    versions = ModelVersions(BASE, MODEL_NAME)
    versions.poll_once()
    assert [(s.version, s.state) for s in versions.statuses(MODEL_NAME)] == [(1, AVAILABLE)]
    path = RequestPath(versions)
    _, _, outputs = path.predict(MODEL_NAME, None, "", "", lambda specs: clip_request,
                                 lambda name, value, spec: value)
    np.testing.assert_allclose(outputs[contract.OUT_SCORES],
                               predict_saved_model(exported[1], clip_request)[contract.OUT_SCORES],
                               atol=1e-6)
    _copy_tree(exported[2], f"{model_dir}/2")  # a push: loaded once its files stop changing
    versions.poll_once()
    versions.poll_once()
    assert [(s.version, s.state) for s in versions.statuses(MODEL_NAME)] == [(2, AVAILABLE),
                                                                              (1, END)]
    status, answer = RestApi(path).handle(
        "POST", f"/v1/models/{MODEL_NAME}/versions/2:predict",
        lambda: json.dumps({"inputs": {name: to_json(value)
                                       for name, value in clip_request.items()}}).encode())
    assert status == 200, answer
    np.testing.assert_allclose(answer["outputs"][contract.OUT_SCORES],
                               predict_saved_model(exported[2], clip_request)[contract.OUT_SCORES],
                               atol=1e-6)


def test_the_official_binary_gets_the_uri_as_it_is():
    parser = argparse.ArgumentParser()
    server_cli.add_arguments(parser)
    args = parser.parse_args(["--model-base", "gs://bucket/mbt/serving", "--port", "8500",
                              "--rest-api-num-threads", "12"])
    server_cli.check_args(args)
    command = server_cli.official_command("tensorflow_model_server", args)
    assert "--model_base_path=gs://bucket/mbt/serving/mbt" in command
    assert "--rest_api_num_threads=12" in command
