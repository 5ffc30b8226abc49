"""The input contract travels with the model: read from the SavedModel and through a real
server alike, and `mbt predict` uses it by default."""
import json
import re

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

from mbt_keras import contract
from mbt_keras.input_contract import InputContract
from pipeline.cli import main
from serving import model_contract
from serving.client import clip_inputs, format_top_k, predict_saved_model
from tests.serving.conftest import CLASS_NAMES, CLIP, MODEL_NAME


def test_contract_through_the_server_equals_the_one_in_the_saved_model(server, exported):
    target, _ = server
    with grpc.insecure_channel(target) as channel:
        served = model_contract.from_server(
            prediction_service_pb2_grpc.PredictionServiceStub(channel), MODEL_NAME)
    stored = model_contract.from_saved_model(exported[1])
    assert served == stored
    # mbt-micro: 2 frames over 96 spectrogram frames = 0.96 s.
    assert (stored.preset, stored.num_frames, stored.window_seconds, stored.fps,
            stored.sample_rate, stored.image_size) == ("mbt-micro", 2, 0.96, 25.0, 16000, 32)
    assert stored.class_names == tuple(CLASS_NAMES)
    assert (stored.head, stored.multi_label, stored.num_classes) == ("multilabel", True, (4,))
    assert stored.fusion == {"fusion": "bottleneck", "fusion_layer": 1, "num_layers": 2,
                             "num_bottlenecks": 4, "bottleneck_update": "sequential"}
    assert stored.limits.min_samples == stored.window_samples == 15360
    assert InputContract.from_json(stored.to_json()) == stored


def test_metadata_lists_the_contract_signature_with_no_inputs(server):
    target, _ = server
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec={"name": MODEL_NAME}, metadata_field=["signature_def"]), timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def[contract.SIG_CONTRACT]
    assert len(signature.inputs) == 0
    assert signature.outputs[contract.OUT_CONTRACT].dtype == tf.string.as_datatype_enum


def _top_k_lines(text):
    return re.findall(r"^\s*[0-9.]+\s+\S+$", text, re.M)


def test_predict_without_flags_sends_the_models_own_window(server, exported, capsys):
    target, _ = server
    assert main(["predict", CLIP, "--server", target]) == 0
    plain = capsys.readouterr()
    own = format_top_k(predict_saved_model(exported[1], clip_inputs(CLIP, num_frames=2,
                                                                    seconds=0.96)))
    assert _top_k_lines(plain.out) == _top_k_lines(own) and len(_top_k_lines(own)) == 4
    assert plain.err == ""
    assert main(["predict", CLIP, "--saved-model", exported[1]]) == 0
    assert _top_k_lines(capsys.readouterr().out) == _top_k_lines(own)


def test_flags_that_contradict_the_contract_warn_or_fail(server, capsys):
    target, _ = server
    assert main(["predict", CLIP, "--server", target, "--num-frames", "8", "--seconds", "2"]) == 0
    err = capsys.readouterr().err
    assert "warning: --num-frames 8 differs from the model's 2" in err
    assert "warning: --seconds 2 differs from the model's window of 0.96 s" in err
    assert "hears only the first 0.96 s" in err
    assert main(["predict", CLIP, "--server", target, "--seconds", "0.5"]) == 2
    assert ("error: --seconds 0.5 is shorter than the model's window: it needs 0.96 s of audio "
            "(15360 samples)") in capsys.readouterr().err
    assert main(["predict", CLIP, "--server", target, "--num-frames", "5000"]) == 2
    assert "error: --num-frames 5000: the model takes 1 to 1024 frames" in capsys.readouterr().err


def test_show_contract_prints_it_from_a_server_and_from_a_saved_model(server, exported, capsys):
    target, _ = server
    assert main(["predict", "--show-contract", "--server", target]) == 0
    served = json.loads(capsys.readouterr().out)
    assert main(["predict", "--show-contract", "--saved-model", exported[1]]) == 0
    assert json.loads(capsys.readouterr().out) == served
    assert served["num_frames"] == 2 and served["class_names"] == CLASS_NAMES


def test_a_model_without_a_contract_needs_explicit_flags(tmp_path, capsys):
    with pytest.raises(model_contract.ContractMissing):
        model_contract.from_saved_model(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"")  # the contract is read before the model
    assert main(["predict", CLIP, "--saved-model", str(tmp_path)]) == 2
    assert "has no input_contract.json asset" in capsys.readouterr().err


def test_resolve_window_takes_the_flags_of_a_model_without_a_contract_only_both(tmp_path,
                                                                                 exported):
    load = lambda: model_contract.from_saved_model(str(tmp_path))  # noqa: E731
    assert model_contract.resolve_window(load, 4, 2.0) == (None, 4, 2.0, [])
    with pytest.raises(model_contract.ContractMissing,
                       match=r"has no input_contract.json asset .*; pass --num-frames and "
                       r"--seconds$"):
        model_contract.resolve_window(load, 4, None)
    stored = model_contract.from_saved_model(exported[1])
    assert model_contract.resolve_window(lambda: stored) == (stored, 2, 0.96, [])
    with pytest.raises(ValueError, match="--num-frames 5000"):
        model_contract.resolve_window(lambda: stored, 5000)
