"""Client side of the serving API: a video window -> PredictRequest -> top-k labels.

Frames are decoded with the project's decoder (`clip_decoder.decode_clip`, the one
preprocessing uses), picked at the trainer's stride over the window and sent as JPEGs with
the window's 16 kHz waveform; the model does the crop, resize and log-mel itself.
"""
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from components.preprocess.clip_decoder import decode_clip
from mbt_keras import contract


def clip_inputs(path: str, *, num_frames: int = 8, seconds: float = 8.0,
                start: float = None) -> dict:
    """{'frames': JPEG bytes [1, F], 'waveform': float32 [1, S]} of one window of the clip.

    The window is `seconds` long, centred in the clip unless `start` is given; a shorter clip
    is used whole. Frames are taken every window_frames / num_frames frames from its start.
    """
    clip = decode_clip(path, fps=contract.FPS, sample_rate=contract.SAMPLE_RATE,
                       missing_audio="silence")
    seconds = min(seconds, clip.duration)
    start = (clip.duration - seconds) / 2 if start is None else min(start, clip.duration - seconds)
    first, count = int(round(start * clip.fps)), max(1, int(round(seconds * clip.fps)))
    window = clip.frames[first:first + count]
    picked = window[np.floor(np.arange(num_frames) * len(window) / num_frames + 1e-4).astype(int)]
    sample = int(round(start * clip.sample_rate))
    waveform = clip.waveform[sample:sample + int(round(seconds * clip.sample_rate))]
    jpegs = [tf.io.encode_jpeg(frame, quality=95).numpy() for frame in picked]
    return {contract.IN_FRAMES_JPEG: np.array([jpegs], dtype=object),
            contract.IN_WAVEFORM: waveform[np.newaxis].astype(np.float32)}


def predict_request(inputs: dict, model_name: str, signature: str = contract.SIG_SERVING,
                    version: int = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


class PredictClient:
    """One channel to a TF Serving-compatible server; thread-safe, reuse it across requests."""

    def __init__(self, target: str, model_name: str = "mbt", timeout: float = 60.0):
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 256 << 20),
                             ("grpc.max_receive_message_length", 256 << 20)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_name = model_name
        self.timeout = timeout

    def predict(self, inputs: dict, signature: str = contract.SIG_SERVING, version: int = None):
        """(outputs as numpy arrays, version that answered)."""
        response = self.stub.Predict(predict_request(inputs, self.model_name, signature, version),
                                     timeout=self.timeout)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        return outputs, response.model_spec.version.value

    def close(self):
        self.channel.close()


def predict_saved_model(saved_model_dir: str, inputs: dict, signature: str = contract.SIG_SERVING):
    """The same signature called in-process, outputs as numpy arrays."""
    function = tf.saved_model.load(saved_model_dir).signatures[signature]
    return {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def format_top_k(outputs: dict) -> str:
    """One line per label of the first example: score and class name, best first."""
    names = outputs[contract.OUT_TOP_K_NAMES][0]
    scores = outputs[contract.OUT_TOP_K_SCORES][0]
    return "\n".join(f"{score:8.4f}  {name.decode() if isinstance(name, bytes) else name}"
                     for name, score in zip(names, scores))
