"""The tf.data pipeline on real TFRecords (GZIP and plain) with time-stamped frames and
spectrograms."""
import numpy as np
import pytest
import tensorflow as tf

from mbt_keras import augment, input_pipeline, windows
from mbt_keras.config import from_preset
from tests.mbt_keras.tfrecord_fixtures import FRAME_LEVEL_STEP, write_clips

FPS = 10.0
MICRO = from_preset("mbt-micro")  # 2 frames of 32x32, 96 spectrogram frames: t = 0.96 s


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    return {
        "long": write_clips(root / "long.tfrecord.gz", 6, 4, seconds=3, fps=FPS),
        "multi": write_clips(root / "multi.tfrecord.gz", 4, 4, seconds=2, fps=FPS,
                             labels_per_clip=3, seed=1),
        "short": write_clips(root / "short.tfrecord.gz", 2, 4, seconds=1, fps=FPS),
    }


def _first_batch(dataset):
    return next(iter(dataset))


def _frame_index(rgb_frame):
    """Which stored frame a decoded, resized frame came from (its grey level / step)."""
    return int(round(float(np.mean(rgb_frame)) * 255.0 / FRAME_LEVEL_STEP))


def test_train_batches_have_model_shapes_and_valid_values(records):
    x, y = _first_batch(input_pipeline.train_dataset(records["long"], MICRO, 4, seed=0))
    assert x["rgb"].shape == (4, 2, 32, 32, 3) and x["rgb"].dtype == tf.float32
    assert x["spec"].shape == (4, 96, 128)
    assert y.shape == (4, 4)
    assert 0.0 <= float(tf.reduce_min(x["rgb"])) and float(tf.reduce_max(x["rgb"])) <= 1.0
    # Mixup (alpha 0.3) keeps each label row a convex combination: sums stay 1.
    np.testing.assert_allclose(tf.reduce_sum(y, axis=1), np.ones(4), rtol=1e-5)


def test_synchronous_windows_align_frames_with_spectrogram(records):
    dataset = input_pipeline.train_dataset(records["long"], MICRO, 6, augment_inputs=False,
                                           mixup_alpha=0.0)
    for _ in range(3):
        x, _ = _first_batch(dataset)
        for b in range(6):
            first_row = int(x["spec"][b, 0, 0])  # spectrogram row r holds r
            start = first_row / 100.0
            # Frames at start*fps and start*fps + stride, stride = t * fps / F = 4.8 frames.
            expected = [int(np.floor(start * FPS + k * 0.96 * FPS / 2 + 1e-4)) for k in range(2)]
            assert [_frame_index(x["rgb"][b, k]) for k in range(2)] == expected
            np.testing.assert_array_equal(x["spec"][b, :, 0], np.arange(96) + first_row)


def test_asynchronous_windows_are_drawn_per_modality(records):
    dataset = input_pipeline.train_dataset(records["long"], MICRO, 6, sampling="async",
                                           augment_inputs=False, mixup_alpha=0.0)
    offsets = []
    for _ in range(4):
        x, _ = _first_batch(dataset)
        for b in range(6):
            spec_frame = float(x["spec"][b, 0, 0]) / 100.0 * FPS
            offsets.append(abs(_frame_index(x["rgb"][b, 0]) - np.floor(spec_frame + 1e-4)))
    assert max(offsets) > 1


def test_unknown_sampling_is_rejected(records):
    with pytest.raises(ValueError, match="sampling='random'"):
        input_pipeline.train_dataset(records["long"], MICRO, 2, sampling="random")


def test_clip_shorter_than_window_loops(records):
    config = MICRO.replace(spec_frames=192)  # t = 1.92 s, frame stride 9.6
    x, _ = _first_batch(input_pipeline.train_dataset(records["short"], config, 2,
                                                     augment_inputs=False, mixup_alpha=0.0))
    # 1 s clip: 100 spectrogram rows and 10 frames, read around for the 1.92 s window.
    np.testing.assert_array_equal(x["spec"][0, :, 0], np.arange(192) % 100)
    assert [_frame_index(x["rgb"][0, k]) for k in range(2)] == [0, 9]


def test_labels_multi_hot_one_hot_and_verb_noun(records):
    _, y = _first_batch(input_pipeline.train_dataset(records["multi"], MICRO, 4,
                                                     augment_inputs=False, mixup_alpha=0.0))
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert (np.sum(y, axis=1) >= 2).all()
    single = MICRO.replace(head="singlelabel")
    _, y = _first_batch(input_pipeline.train_dataset(records["multi"], single, 4,
                                                     augment_inputs=False, mixup_alpha=0.0))
    np.testing.assert_array_equal(np.sum(y, axis=1), np.ones(4))
    np.testing.assert_array_equal(np.sort(np.argmax(y, axis=1)), [0, 1, 2, 3])
    verb_noun = MICRO.replace(head="verb_noun", num_classes=(4, 5))
    labels = input_pipeline.label_vector(tf.constant([2, 3], tf.int64), verb_noun)
    np.testing.assert_array_equal(labels, [0, 0, 1, 0, 0, 0, 0, 1, 0])


def test_eval_gives_four_uniform_views_with_centre_crop(records):
    x, y = _first_batch(input_pipeline.eval_dataset(records["long"], MICRO, 3))
    assert x["rgb"].shape == (3, 4, 2, 32, 32, 3)
    assert x["spec"].shape == (3, 4, 96, 128)
    assert y.shape == (3, 4)
    # 3 s clip, 0.96 s window: starts 0, 0.68, 1.36, 2.04 s.
    np.testing.assert_array_equal(x["spec"][0, :, 0, 0], [0, 68, 136, 204])
    assert [_frame_index(x["rgb"][0, v, 0]) for v in range(4)] == [0, 6, 13, 20]
    again, _ = _first_batch(input_pipeline.eval_dataset(records["long"], MICRO, 3))
    np.testing.assert_array_equal(x["rgb"], again["rgb"])


def test_spec_augment_masks_one_band_in_time_and_frequency_within_caps():
    assert augment.spec_mask_caps(800, 128) == (192, 48)
    assert augment.spec_mask_caps(1024, 128) == (192, 48)
    assert augment.spec_mask_caps(96, 128) == (23, 48)
    tf.random.set_seed(3)
    widths = []
    for _ in range(30):
        masked = augment.spec_augment(tf.ones([96, 128]), fill_value=0.0).numpy() == 0
        full_rows = masked.all(axis=1)
        full_cols = masked.all(axis=0)
        # Every masked cell lies in a masked row band or a masked column band.
        assert (masked == (full_rows[:, None] | full_cols[None, :])).all() or full_rows.all()
        if not full_cols.all():
            widths.append(int(full_rows.sum()))
        assert full_cols.sum() <= 48 or full_rows.all()
    assert max(widths) <= 23 and max(widths) > 0


def test_mixup_uses_one_weight_or_one_per_modality_with_its_own_labels():
    """Scenic's mixmod: each input has its own weight and each modality's labels are mixed
    with that weight (its loss then takes them); one shared weight mixes the labels once."""
    tf.random.set_seed(0)
    x = {"rgb": tf.constant([[1.0], [0.0]]), "spec": tf.constant([[1.0], [0.0]])}
    y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    mixed, labels = augment.mixup(x, y, alpha=0.3)
    lam = float(mixed["rgb"][0, 0])
    assert float(mixed["spec"][0, 0]) == pytest.approx(lam)
    np.testing.assert_allclose(labels[0], [lam, 1 - lam], rtol=1e-5)
    lams = []
    for _ in range(5):
        mixed, labels = augment.mixup(x, y, alpha=0.3, per_modality=True)
        assert sorted(labels) == ["rgb", "spec"]
        for key in labels:
            weight = float(mixed[key][0, 0])
            np.testing.assert_allclose(labels[key], [[weight, 1 - weight], [1 - weight, weight]],
                                       rtol=1e-5)
        lams.append(abs(float(mixed["rgb"][0, 0]) - float(mixed["spec"][0, 0])))
    assert max(lams) > 1e-3
    plan = {augment.MODALITY_MIXUP: tf.constant([0.25, 0.75])}
    _, labels = augment.apply_plan(x, y, plan)
    np.testing.assert_allclose(labels["rgb"][0], [0.25, 0.75])
    np.testing.assert_allclose(labels["spec"][0], [0.75, 0.25])


def test_input_pipelines_read_disjoint_shards(records):
    def ids(pipeline_id):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        dataset = input_pipeline.eval_dataset(records["long"], MICRO, 1, views=1,
                                              input_context=context)
        return [float(y.numpy().argmax()) for _, y in dataset]

    # One file, six clips: element-wise sharding gives clips 0,2,4 and 1,3,5.
    assert ids(0) == [0, 2, 0] and ids(1) == [1, 3, 1]


def test_class_names_come_from_the_records(records):
    assert input_pipeline.class_names(records["long"]) == [f"class_{i}" for i in range(4)]
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        input_pipeline.list_files("/nonexistent/*.gz")


def test_training_shards_stay_disjoint_when_records_are_sharded(records):
    def clip_labels(pipeline_id):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        dataset = input_pipeline.train_dataset(records["long"], MICRO, 2, repeat=False,
                                               mixup_alpha=0.0, input_context=context, seed=0)
        return sorted(int(i) for _, y in dataset for i in np.argmax(y, axis=1))

    # One file for two pipelines: records are split, then shuffled within each pipeline
    # (per-replica batch 1 each: global batch 2).
    assert clip_labels(0) == [0, 0, 2] and clip_labels(1) == [1, 1, 3]


def _clip_order(path, config, seed, epochs):
    """Label (= clip index) of every training example, one clip per batch, epoch by epoch."""
    dataset = input_pipeline.train_dataset(path, config, 1, augment_inputs=False,
                                           mixup_alpha=0.0, seed=seed)
    labels = [int(np.argmax(y[0])) for _, y in dataset.take(8 * epochs)]
    return [labels[8 * e:8 * (e + 1)] for e in range(epochs)]


def test_training_without_augmentation_still_shuffles_every_epoch(tmp_path):
    path = write_clips(tmp_path / "clips.tfrecord", 8, 8, seconds=1, fps=FPS)
    config = MICRO.replace(num_classes=(8,))
    first, second = _clip_order(path, config, seed=7, epochs=2)
    assert sorted(first) == sorted(second) == list(range(8))  # every clip once per epoch
    assert first != list(range(8)) and second != first
    assert _clip_order(path, config, seed=7, epochs=2) == [first, second]  # the seed fixes it


def test_version_1_gzip_records_read_like_version_2_plain_records(tmp_path):
    old = write_clips(tmp_path / "v1.tfrecord.gz", 4, 4, seconds=2, fps=FPS, version=1)
    new = write_clips(tmp_path / "v2.tfrecord", 4, 4, seconds=2, fps=FPS)
    assert input_pipeline.compression_type(old) == "GZIP"
    assert input_pipeline.compression_type(new) == ""
    names = [f"class_{i}" for i in range(4)]
    assert input_pipeline.class_names(old) == input_pipeline.class_names(new) == names
    assert [sum(1 for _ in input_pipeline.read_tfrecords(f)) for f in (old, new)] == [4, 4]
    x_old, y_old = _first_batch(input_pipeline.eval_dataset(old, MICRO, 4, views=2))
    x_new, y_new = _first_batch(input_pipeline.eval_dataset(new, MICRO, 4, views=2))
    for key in x_old:
        np.testing.assert_array_equal(x_old[key], x_new[key])
    np.testing.assert_array_equal(y_old, y_new)
    # Training with the same seed reads the clips in the same order from either. (Random
    # windows and crops come from stateful ops shared by parallel map calls, so which
    # example gets which draw is not fixed; the eval views above pin the sampling itself.)
    orders = []
    for path in (old, new):
        dataset = input_pipeline.train_dataset(path, MICRO, 1, augment_inputs=False,
                                               mixup_alpha=0.0, seed=5)
        orders.append([int(np.argmax(y[0])) for _, y in dataset.take(8)])
    assert orders[0] == orders[1]


def test_colour_jitter_equals_tf_image_ops_to_float_rounding():
    rng = np.random.default_rng(0)
    # Values outside [0, 1] too: brightness and contrast push pixels there before hue.
    frames = np.concatenate([rng.uniform(-0.2, 1.2, (3, 16, 16, 3)),
                             np.full((1, 16, 16, 3), 0.5),  # grey: no hue
                             rng.integers(0, 3, (1, 16, 16, 3)) / 2.0])  # ties between channels
    frames = tf.constant(frames, tf.float32)
    for factor in (0.0, 0.6, 1.0, 1.4, 3.0):
        np.testing.assert_allclose(augment.adjust_saturation(frames, factor),
                                   tf.image.adjust_saturation(frames, factor), atol=2e-6)
    for delta in (-1.0, -0.5, -0.2, -0.01, 0.0, 0.13, 0.2, 0.5, 0.99):
        np.testing.assert_allclose(augment.adjust_hue(frames, delta),
                                   tf.image.adjust_hue(frames, delta), atol=2e-6)
    reference = tf.image.adjust_brightness(frames, -0.1)
    reference = tf.image.adjust_saturation(reference, 1.3)
    reference = tf.image.adjust_contrast(reference, 0.7)
    reference = tf.clip_by_value(tf.image.adjust_hue(reference, 0.15), 0.0, 1.0)
    np.testing.assert_allclose(augment.colour_jitter(frames, -0.1, 1.3, 0.7, 0.15), reference,
                               atol=2e-6)


def test_frames_stored_at_5_fps_are_the_25_fps_frames_at_or_before_the_paper_positions():
    """`mbt preprocess --fps 5` keeps every 5th frame of the 25 fps record; the paper's 8 frames
    over 8 s (stride 25 at 25 fps, 5 at 5 fps) then come from the same instants, each the
    stored frame at or before them: identical when the start is on the 0.2 s grid."""
    starts = tf.range(0, 200, dtype=tf.float32) / 100.0  # every 10 ms step of the sampler
    for start in starts:
        at_25 = input_pipeline.frame_indices(start, 25.0, 250, 8.0, 8).numpy()
        at_5 = input_pipeline.frame_indices(start, 5.0, 50, 8.0, 8).numpy()
        np.testing.assert_array_equal(at_5, at_25 // 5)
        if round(float(start) * 100) % 20 == 0:
            np.testing.assert_array_equal(5 * at_5, at_25)


@pytest.mark.parametrize("preset, fps", [("mbt-b16", 5), ("mbt-small", 5), ("mbt-tiny", 25),
                                         ("mbt-b16x2-scenic", 25)])
def test_stored_frame_rate_is_the_lowest_that_keeps_the_presets_sampled_frames(preset, fps):
    """windows.stored_fps: at the rate it picks, a start on its frame grid samples exactly the
    frames the 25 fps record gives (every `step`-th of them), with at least 5 such starts per
    stride; a finer stride (mbt-tiny: 12 frames) or a fractional one (32 frames over 8 s: 6.25)
    keeps 25 fps."""
    config = from_preset(preset)
    t = input_pipeline.window_seconds(config)
    assert windows.stored_fps(config.num_frames, t) == fps
    step = 25 // fps
    assert t * 25 / config.num_frames / step >= 5 or step == 1
    for first in range(0, 10 * step, step):
        at_25 = input_pipeline.frame_indices(first / 25, 25.0, 250, t, config.num_frames).numpy()
        stored = input_pipeline.frame_indices(first / 25, float(fps), 250 // step, t,
                                              config.num_frames).numpy()
        np.testing.assert_array_equal(step * stored, at_25)


def _jitter_reference(clip, brightness, saturation, contrast, hue):
    """tf.image's four colour ops with the drawn values, then the clip to [0, 1]."""
    clip = tf.image.adjust_saturation(tf.image.adjust_brightness(clip, brightness), saturation)
    clip = tf.image.adjust_hue(tf.image.adjust_contrast(clip, contrast), hue)
    return tf.clip_by_value(clip, 0.0, 1.0)


def test_batched_flip_and_jitter_equals_tf_image_per_clip_with_the_same_draws():
    """The step applies one batch's plan at once; each clip gets what tf.image gives it alone
    (flipped as drawn, jittered with its own values, untouched when not jittered)."""
    rng = np.random.default_rng(3)
    frames = tf.constant(rng.uniform(0.0, 1.0, (4, 2, 8, 8, 3)), tf.float32)
    plan = {"flip": tf.constant([1.0, 0.0, 1.0, 0.0]), "jitter": tf.constant([1.0, 1.0, 0.0, 0.0]),
            "brightness": tf.constant([-0.1, 0.12, 0.05, -0.03]),
            "saturation": tf.constant([1.3, 0.6, 1.1, 0.9]),
            "contrast": tf.constant([0.7, 1.4, 0.8, 1.2]), "hue": tf.constant([0.15, -0.2, 0.1, 0.0])}
    batched = augment.apply_rgb_plan(frames, plan).numpy()
    for b in range(4):
        clip = tf.reverse(frames[b], axis=[2]) if plan["flip"][b] > 0 else frames[b]
        if plan["jitter"][b] > 0:
            expected = _jitter_reference(clip, *(float(plan[k][b]) for k in augment.RGB_DRAWS[2:]))
            np.testing.assert_allclose(batched[b], expected, atol=2e-6)
        else:
            np.testing.assert_array_equal(batched[b], clip)
        single = augment.apply_rgb_plan(frames[b], {k: v[b] for k, v in plan.items()})
        np.testing.assert_allclose(single, batched[b], atol=1e-6)
    # The plain ops a TPU step compiles whole give the same frames as the XLA-fused function.
    unfused, _ = augment.apply_plan({"rgb": frames}, tf.zeros([4, 2]), plan, fused=False)
    np.testing.assert_allclose(unfused["rgb"], batched, atol=1e-6)


def test_rgb_plan_draws_follow_the_papers_probabilities_and_ranges():
    tf.random.set_seed(0)
    draws = next(iter(tf.data.Dataset.range(4000).map(
        lambda _: augment.draw_rgb_plan()).batch(4000)))
    assert abs(float(tf.reduce_mean(draws["flip"])) - 0.5) < 0.03
    assert abs(float(tf.reduce_mean(draws["jitter"])) - augment.COLOR_JITTER_PROB) < 0.03
    for key, (low, high) in {"brightness": (-32 / 255, 32 / 255), "saturation": (0.6, 1.4),
                             "contrast": (0.6, 1.4), "hue": (-0.2, 0.2)}.items():
        values = draws[key].numpy()
        assert values.min() >= low and values.max() <= high
        assert values.min() < low + 0.05 * (high - low) and values.max() > high - 0.05 * (high - low)


def test_augmentation_in_the_step_gets_the_plan_the_host_would_apply(records):
    """augment_on="step": tf.data decodes the crops and SpecAugments; the crops go over as uint8
    in one zero-padded buffer size, with the flip, jitter and mixup draws and the crop sizes as
    a plan; apply_plan then resizes the crops, scales them to [0, 1], flips and jitters them
    and mixes inputs and labels with the plan's one mixup weight."""
    x, y, plan = _first_batch(input_pipeline.train_dataset(records["long"], MICRO, 4, seed=0,
                                                           augment_on="step"))
    assert sorted(plan) == sorted(augment.RGB_DRAWS + (augment.MIXUP,) + augment.PLAN_RGB_KEYS)
    assert all(plan[k].shape == (4,) for k in augment.RGB_DRAWS + (augment.RGB_SCALE,))
    np.testing.assert_allclose(plan[augment.RGB_SCALE], 1 / 255)
    rows, cols = input_pipeline.crop_bound(records["long"])
    assert x["rgb"].dtype == tf.uint8 and x["rgb"].shape == (4, 2, rows, cols, 3)
    for clip, (height, width) in zip(x["rgb"].numpy(), plan[augment.CROP_SIZE].numpy()):
        assert 0 < height <= rows and 0 < width <= cols
        assert clip[:, :height, :width].any()
        assert not clip[:, height:].any() and not clip[:, :, width:].any()  # zero padding
    assert plan[augment.MIXUP].shape == (2,)
    weight = float(plan[augment.MIXUP][0])
    assert float(plan[augment.MIXUP][1]) == pytest.approx(weight)
    with pytest.raises(ValueError, match="image_size"):
        augment.apply_plan(x, y, plan)
    mixed, labels = augment.apply_plan(x, y, plan, image_size=MICRO.image_size)
    # The plain ops a TPU step compiles whole (here XLA on CPU, as one function) resize,
    # jitter and mix the same.
    unfused, _ = tf.function(lambda x, y, plan: augment.apply_plan(
        x, y, plan, fused=False, image_size=MICRO.image_size), jit_compile=True)(x, y, plan)
    np.testing.assert_allclose(unfused["rgb"], mixed["rgb"], atol=1e-5)
    np.testing.assert_allclose(labels, weight * y + (1 - weight) * y[::-1], atol=1e-6)
    np.testing.assert_allclose(mixed["spec"], weight * x["spec"] + (1 - weight) * x["spec"][::-1],
                               atol=1e-5)
    resized = augment.resize_crops(x["rgb"], plan[augment.CROP_SIZE],
                                   plan[augment.CROP_TRANSPOSED], MICRO.image_size)
    flipped = augment.apply_rgb_plan(resized / 255.0, {k: plan[k] for k in augment.RGB_DRAWS})
    np.testing.assert_allclose(mixed["rgb"], weight * flipped + (1 - weight) * flipped[::-1],
                               atol=1e-5)
    assert mixed["rgb"].shape == (4, 2, 32, 32, 3)
    with pytest.raises(ValueError, match="augment_on='gpu'"):
        input_pipeline.train_dataset(records["long"], MICRO, 4, augment_on="gpu")
    # Nothing to apply but the scale: tf.data scales, plain (inputs, labels) in [0, 1].
    plain = _first_batch(input_pipeline.train_dataset(
        records["long"], MICRO, 4, augment_inputs=False, mixup_alpha=0.0, augment_on="step"))
    assert len(plain) == 2
    assert 0.0 <= float(tf.reduce_min(plain[0]["rgb"])) and float(tf.reduce_max(plain[0]["rgb"])) <= 1.0


def test_the_steps_resize_of_padded_crops_equals_tf_image_resize_of_each_crop():
    """augment.resize_crops (interpolation matrices, batched) gives what tf.image.resize gives
    for each crop alone: down- and upscaling, crops filling the buffer, transposed crops."""
    rng = np.random.default_rng(7)
    rows, cols, size = 40, 80, 32
    sizes = [(40, 71), (13, 20), (32, 32), (40, 80), (25, 61), (7, 9)]
    transposed = np.array([0, 1, 0, 0, 1, 0], np.float32)
    buffers = np.zeros((len(sizes), 2, rows, cols, 3), np.uint8)
    crops = []
    for b, (height, width) in enumerate(sizes):
        crops.append(rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8))
        buffers[b, :, :height, :width] = crops[-1]
    out = augment.resize_crops(tf.constant(buffers), tf.constant(sizes), tf.constant(transposed),
                               size).numpy()
    assert out.shape == (len(sizes), 2, size, size, 3)
    for b, crop in enumerate(crops):
        expected = tf.image.resize(crop, [size, size]).numpy()
        expected = expected.transpose(0, 2, 1, 3) if transposed[b] else expected
        np.testing.assert_allclose(out[b], expected, atol=1e-3)


def test_padded_crops_hold_the_decoded_crop_transposed_for_portrait_frames():
    """padded_crops decodes the same crop decode_crops does, into the buffer's top-left; a
    portrait frame's crop is stored transposed; a crop longer than the buffer keeps its centre."""
    rng = np.random.default_rng(5)
    def jpegs(height, width):
        return tf.stack([tf.io.encode_jpeg(rng.integers(0, 256, (height, width, 3), np.uint8))
                         for _ in range(2)])
    bound = (40, 80)
    landscape, window = jpegs(40, 90), tf.constant([2, 5, 30, 61])
    buffer, plan = input_pipeline.padded_crops(landscape, window, bound)
    assert buffer.shape == (2, 40, 80, 3) and list(plan[augment.CROP_SIZE]) == [30, 61]
    assert float(plan[augment.CROP_TRANSPOSED]) == 0.0
    np.testing.assert_array_equal(buffer[:, :30, :61], input_pipeline.decode_crops(landscape, window))
    assert not buffer.numpy()[:, 30:].any() and not buffer.numpy()[:, :, 61:].any()
    portrait, window = jpegs(90, 40), tf.constant([4, 3, 70, 33])
    buffer, plan = input_pipeline.padded_crops(portrait, window, bound)
    assert list(plan[augment.CROP_SIZE]) == [33, 70] and float(plan[augment.CROP_TRANSPOSED]) == 1.0
    np.testing.assert_array_equal(
        buffer[:, :33, :70], tf.transpose(input_pipeline.decode_crops(portrait, window), [0, 2, 1, 3]))
    wide, window = jpegs(40, 120), tf.constant([0, 0, 40, 120])  # the whole of a 3:1 frame
    buffer, plan = input_pipeline.padded_crops(wide, window, bound)
    assert list(plan[augment.CROP_SIZE]) == [40, 80]
    np.testing.assert_array_equal(buffer, input_pipeline.decode_crops(wide, tf.constant([0, 20, 40, 80])))


def test_decoded_frames_equal_scaling_before_the_resize_to_float_rounding():
    """decode_frames resizes the uint8 crops and scales after; unrolled decodes when the frame
    count is static, map_fn when it is not (serving): the same frames either way."""
    rng = np.random.default_rng(4)
    jpegs = tf.stack([tf.io.encode_jpeg(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
                      for _ in range(3)])
    window = tf.constant([3, 5, 30, 41])
    crops = tf.stack([tf.io.decode_and_crop_jpeg(j, window, channels=3) for j in jpegs])
    scaled_first = tf.clip_by_value(tf.image.resize(tf.cast(crops, tf.float32) / 255.0, [24, 24]),
                                    0.0, 1.0)
    frames = input_pipeline.decode_frames(jpegs, window, 24)
    np.testing.assert_allclose(frames, scaled_first, atol=1e-6)
    assert float(tf.reduce_min(frames)) >= 0.0 and float(tf.reduce_max(frames)) <= 1.0
    dynamic = tf.function(lambda j: input_pipeline.decode_frames(j, window, 24),
                          input_signature=[tf.TensorSpec([None], tf.string)])
    np.testing.assert_allclose(dynamic(jpegs), frames, atol=1e-6)
