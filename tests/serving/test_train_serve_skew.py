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
