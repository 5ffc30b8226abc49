"""Client side of the serving API: a video window -> PredictRequest -> top-k labels.

Frames are decoded with the project's decoder (`clip_decoder`, the one preprocessing uses),
only the window asked for, picked by the window rule (`mbt_keras.windows`) and sent as JPEGs
with the window's 16 kHz waveform; the model does the crop, resize and log-mel itself. Each
JPEG holds only the blocks the model's centre crop reads (`jpeg.encode_centre_view`): the model
sees the pixels it would in the whole frame, from a third fewer bytes to send and decode.

Reading a window and printing the top-k need neither TensorFlow nor gRPC, so those are
imported where a request is built, sent or run in-process: `mbt predict --rest`
(`serving.rest_client`) uses this module and starts without them.
"""
import dataclasses

import numpy as np

from components.preprocess import clip_decoder
from components.preprocess.jpeg import encode_centre_view
from mbt_keras import contract, windows

# Frames are sent at a higher quality than the records store (jpeg.JPEG_QUALITY): a request
# carries a few frames, a dataset millions.
JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class Window:
    """One window of a video, ready to send: `inputs` is the request's batch of one."""
    inputs: dict
    start: float
    end: float
    has_audio: bool        # False: the clip has no audio track, `inputs` hold silence
    skipped_packets: int   # damaged packets the decoder skipped in this window


def window_inputs(frames, waveform: np.ndarray, *, num_frames: int, start: float,
                  seconds: float, window_seconds: float) -> dict:
    """{'frames': JPEG bytes [1, num_frames], 'waveform': float32 [1, S]} of the window
    [start, start + seconds) of `frames` (uint8 [H, W, 3] at contract.FPS) and `waveform`
    (at contract.SAMPLE_RATE), both from the window's start on. What is sent spans at least
    the model's `window_seconds`: a clip shorter than it is looped, frames and audio, as the
    trainer loops it (`windows.window_indices`), so the model sees a short clip as it was
    trained on it (the model refuses audio shorter than its window: min_samples)."""
    frames = frames[:windows.span(start, seconds, contract.FPS)[1]]
    waveform = waveform[:windows.span(start, seconds, contract.SAMPLE_RATE)[1]]
    spanned = max(seconds, window_seconds)
    stride = windows.frames_of(spanned, contract.FPS) / num_frames
    jpegs = [encode_centre_view(frames[i], JPEG_QUALITY)
             for i in windows.window_indices(len(frames), num_frames, stride)]
    samples = windows.window_indices(len(waveform),
                                     windows.frames_of(spanned, contract.SAMPLE_RATE))
    return {contract.IN_FRAMES_JPEG: np.array([jpegs], dtype=object),
            contract.IN_WAVEFORM: waveform[samples][np.newaxis].astype(np.float32)}


def read_window(path: str, *, num_frames: int = 8, seconds: float = 8.0,
                start: float = None) -> Window:
    """The window of `seconds` of the clip, centred unless `start` is given (a start too late
    for a whole window is moved back); a shorter clip is used whole, looped to the window's
    length (`window_inputs`). Only the window is decoded (from the keyframe before it),
    whatever the file's length."""
    with clip_decoder.OpenedClip(path) as opened:  # one open for the header and the window
        duration = opened.info().duration
        window_seconds = seconds
        if duration is not None:
            seconds = min(seconds, duration)
            start = (duration - seconds) / 2 if start is None else min(start, duration - seconds)
        start = max(0.0, start or 0.0)
        clip = opened.decode(fps=contract.FPS, sample_rate=contract.SAMPLE_RATE, start=start,
                             end=start + seconds if duration else None, missing_audio="silence")
    return Window(inputs=window_inputs(clip.frames, clip.waveform, num_frames=num_frames,
                                       start=start, seconds=seconds,
                                       window_seconds=window_seconds),
                  start=clip.start, end=clip.end, has_audio=clip.has_audio,
                  skipped_packets=clip.skipped_packets)


def clip_inputs(path: str, *, num_frames: int = 8, seconds: float = 8.0,
                start: float = None) -> dict:
    """The request inputs of `read_window` (which also says whether the clip had audio)."""
    return read_window(path, num_frames=num_frames, seconds=seconds, start=start).inputs


def predict_request(inputs: dict, model_name: str, signature: str = contract.SIG_SERVING,
                    version: int = None):
    """The PredictRequest (tensorflow_serving.apis.predict_pb2) of `inputs`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

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
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 256 << 20),
                             ("grpc.max_receive_message_length", 256 << 20)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_name = model_name
        self.timeout = timeout

    def predict(self, inputs: dict, signature: str = contract.SIG_SERVING, version: int = None):
        """(outputs as numpy arrays, version that answered)."""
        import tensorflow as tf

        response = self.stub.Predict(predict_request(inputs, self.model_name, signature, version),
                                     timeout=self.timeout)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        return outputs, response.model_spec.version.value

    def close(self):
        self.channel.close()


def load_saved_model(saved_model_dir: str, signature: str = contract.SIG_SERVING):
    """The signature as a function of numpy inputs to numpy outputs, loaded once."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)  # held by the closure: it owns the variables

    def predict(inputs: dict) -> dict:
        outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}
    return predict


def predict_saved_model(saved_model_dir: str, inputs: dict, signature: str = contract.SIG_SERVING):
    """The same signature called in-process, outputs as numpy arrays."""
    return load_saved_model(saved_model_dir, signature)(inputs)


def label_text(name) -> str:
    """A class name of the top-k output as text (TensorFlow hands string tensors out as bytes)."""
    return name.decode() if isinstance(name, bytes) else str(name)


def format_top_k(outputs: dict) -> str:
    """One line per label of the first example: score and class name, best first."""
    names = outputs[contract.OUT_TOP_K_NAMES][0]
    scores = outputs[contract.OUT_TOP_K_SCORES][0]
    return "\n".join(f"{score:8.4f}  {label_text(name)}" for name, score in zip(names, scores))
