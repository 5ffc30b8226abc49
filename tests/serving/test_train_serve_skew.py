"""No train/serve skew: what a client sends through the serving signature reaches the model
as the same features the trainer reads from the preprocessed TFRecord of the same clip."""
import numpy as np
import pytest
import tensorflow as tf

from components.preprocess.clip_decoder import decode_clip
from components.preprocess.sequence_example import clip_to_sequence_example
from mbt_keras import contract, export, input_pipeline
from mbt_keras.config import from_preset
from serving.client import clip_inputs, predict_saved_model
from tests.serving.conftest import CLASS_NAMES, CLIP

VIEWS = 3


@pytest.fixture(scope="module")
def record():
    """The clip as preprocessing stores it (real decode, JPEG frames, log-mel per second)."""
    clip = decode_clip(CLIP)
    example = clip_to_sequence_example(clip, clip_id="bbb", uri=CLIP, labels=[CLASS_NAMES[1]],
                                       class_map={n: i for i, n in enumerate(CLASS_NAMES)})
    return example.SerializeToString()


@pytest.mark.parametrize("preset", ["mbt-micro", "mbt-tiny"])
def test_every_eval_window_matches_what_a_client_sends_for_it(record, preset):
    config = from_preset(preset, num_classes=len(CLASS_NAMES))
    seconds = config.spec_frames / contract.SPEC_FRAMES_PER_SECOND
    stored, _ = input_pipeline.eval_example(tf.constant(record), config, VIEWS)
    duration = 5.0  # the stored seconds of audio; eval views spread over [0, duration - t]
    for view, start in enumerate(np.linspace(0.0, duration - seconds, VIEWS)):
        sent = clip_inputs(CLIP, num_frames=config.num_frames, seconds=seconds, start=start)
        spec = export._spectrogram_window(tf.constant(sent[contract.IN_WAVEFORM]),
                                          config.spec_frames)[0].numpy()
        # The last frames see the window's zero padding instead of the following audio.
        np.testing.assert_allclose(spec[:-3], stored[contract.INPUT_SPEC][view][:-3].numpy(),
                                   atol=1e-3, err_msg=f"spectrogram of view {view} (t={start})")
        jpegs = tf.constant(sent[contract.IN_FRAMES_JPEG][0])
        rgb = input_pipeline.decode_frames(jpegs, export.augment.centre_crop_window(jpegs[0]),
                                           config.image_size).numpy()
        difference = np.abs(rgb - stored[contract.INPUT_RGB][view].numpy()).mean()
        assert difference < 0.02, f"frames of view {view} differ by {difference:.3f} on average"


def test_serving_scores_equal_the_examples_signature_on_the_same_window(record, exported):
    config = from_preset("mbt-micro")
    served = predict_saved_model(exported[1], clip_inputs(
        CLIP, num_frames=config.num_frames, seconds=config.spec_frames / 100, start=0.0))
    examples = predict_saved_model(exported[1], {contract.IN_EXAMPLES: np.array([record])},
                                   contract.SIG_EXAMPLES)
    np.testing.assert_allclose(served[contract.OUT_SCORES], examples[contract.OUT_SCORES],
                               atol=0.02)


SHORT_SECONDS = 3.0


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """3 s of video whose every frame has its own brightness and audio whose pitch rises all
    along (16 kHz mono AAC): a frame or a stretch of sound taken from the wrong place shows."""
    from tests.components.conftest import write_clip
    t = np.arange(int(SHORT_SECONDS * contract.SAMPLE_RATE)) / contract.SAMPLE_RATE
    chirp = 0.5 * np.sin(2 * np.pi * (200 * t + 300 * t ** 2))
    return write_clip(str(tmp_path_factory.mktemp("short") / "short.mp4"), SHORT_SECONDS,
                      fps=contract.FPS, size=(96, 64), rate=contract.SAMPLE_RATE,
                      layout="mono", waveform=chirp)


def _served_inputs(sent, config):
    """The model inputs the serving signature makes of a request (export.py's own steps)."""
    jpegs = tf.gather(tf.constant(sent[contract.IN_FRAMES_JPEG][0]),
                      export.uniform_frame_indices(len(sent[contract.IN_FRAMES_JPEG][0]),
                                                   config.num_frames))
    return {contract.INPUT_RGB: export._decoded_jpegs(jpegs, config.image_size).numpy(),
            contract.INPUT_SPEC: export._spectrogram_window(
                tf.constant(sent[contract.IN_WAVEFORM]), config.spec_frames)[0].numpy()}


def test_a_clip_shorter_than_the_window_reaches_the_model_alike_in_training_and_serving(
        short_clip):
    # The paper's 8 s window over a 3 s clip: both sides loop it (windows.window_indices).
    config = from_preset("mbt-micro", num_frames=8, spec_frames=800)
    clip = decode_clip(short_clip)
    serialized = tf.constant(clip_to_sequence_example(
        clip, clip_id="short", uri=short_clip, labels=["music"], class_map={"music": 0})
        .SerializeToString())
    evaluated = {k: v[0].numpy() for k, v in input_pipeline.eval_example(
        serialized, config, 1)[0].items()}
    trained = {k: v.numpy() for k, v in input_pipeline._train_example(
        serialized, config, "sync", augment_inputs=False)[0].items()}
    served = _served_inputs(clip_inputs(short_clip, num_frames=config.num_frames,
                                        seconds=config.spec_frames / 100), config)

    np.testing.assert_allclose(trained[contract.INPUT_RGB] / 255.0, evaluated[contract.INPUT_RGB],
                               atol=1e-5)
    np.testing.assert_array_equal(trained[contract.INPUT_SPEC], evaluated[contract.INPUT_SPEC])
    # Frame k of the clip has brightness 8 k: the 8 frames at the window's stride of 1 s,
    # looped over the clip's 3 s, are its frames 0, 25, 50, 0, 25, 50, 0, 25.
    brightness = served[contract.INPUT_RGB].mean(axis=(1, 2, 3)) * 255
    np.testing.assert_allclose(brightness, [(8 * k) % 256 for k in (0, 25, 50) * 2 + (0, 25)],
                               atol=4)
    difference = np.abs(served[contract.INPUT_RGB] - evaluated[contract.INPUT_RGB]).mean()
    assert difference < 0.02, f"frames differ by {difference:.3f} on average"
    # Rows just before each wrap (and the window's end) see the next loop's start in serving,
    # the record's end padding in training; every other row is the same.
    rows = config.spec_frames
    seams = np.zeros(rows, bool)
    for end in range(int(SHORT_SECONDS * 100), rows + 1, int(SHORT_SECONDS * 100)):
        seams[end - 3:end] = True
    seams[-3:] = True
    np.testing.assert_allclose(served[contract.INPUT_SPEC][~seams],
                               evaluated[contract.INPUT_SPEC][~seams], atol=1e-3)
