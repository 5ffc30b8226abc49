"""Training augmentations of the paper (section 4.2), as TensorFlow ops for tf.data.

RGB: random resized crop, horizontal flip and colour jitter, one draw per clip
so the frames of a clip stay consistent (the standard video recipe of ViViT [6]).
Spectrogram: SpecAugment [47] with AST's [24] mask caps. Batch: mixup [62].
"""
import tensorflow as tf

# AST's caps for a 1024-frame input at 100 frames/s; the paper keeps them for 8 s windows.
SPEC_TIME_MASK = 192
SPEC_FREQ_MASK = 48
SPEC_REFERENCE_FRAMES = 800
# Crop and jitter ranges of DMVR's default video augmentation, which Scenic's MBT uses.
CROP_AREA = (0.3, 1.0)
CROP_ASPECT = (0.75, 4.0 / 3.0)
COLOR_JITTER_PROB = 0.8
# A centre crop of 224 from frames resized to a short side of 256 (the eval protocol).
CENTRE_CROP_FRACTION = 224.0 / 256.0


def random_crop_window(jpeg):
    """[y, x, h, w] of a random resized crop of the frames stored as `jpeg`."""
    shape = tf.image.extract_jpeg_shape(jpeg)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        min_object_covered=0.1, aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def centre_crop_window(jpeg):
    """[y, x, h, w] of the central square covering CENTRE_CROP_FRACTION of the short side."""
    shape = tf.image.extract_jpeg_shape(jpeg)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * CENTRE_CROP_FRACTION,
                   tf.int32)
    return tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])


def flip_and_jitter(frames):
    """Horizontal flip with p=0.5, then colour jitter with p=0.8; frames [F,H,W,3] in [0,1]."""
    frames = tf.cond(tf.random.uniform([]) < 0.5, lambda: tf.reverse(frames, axis=[2]),
                     lambda: frames)

    def jitter(x):
        x = tf.image.random_brightness(x, max_delta=32.0 / 255.0)
        x = tf.image.random_saturation(x, lower=0.6, upper=1.4)
        x = tf.image.random_contrast(x, lower=0.6, upper=1.4)
        x = tf.image.random_hue(x, max_delta=0.2)
        return tf.clip_by_value(x, 0.0, 1.0)

    return tf.cond(tf.random.uniform([]) < COLOR_JITTER_PROB, lambda: jitter(frames),
                   lambda: frames)


def spec_mask_caps(spec_frames: int, mel_bins: int):
    """(time cap, frequency cap): AST's 192 / 48, scaled down for windows shorter than 8 s.

    A 192-frame mask would blank a tiny preset's whole window, so the time cap
    keeps AST's proportion (192 of 800 frames) below 800 frames.
    """
    time_cap = min(SPEC_TIME_MASK, SPEC_TIME_MASK * spec_frames // SPEC_REFERENCE_FRAMES)
    return time_cap, min(SPEC_FREQ_MASK, mel_bins // 2)


def _mask(length, cap):
    """Boolean [length] with one random run of width U[0, cap] set."""
    width = tf.random.uniform([], 0, cap + 1, dtype=tf.int32)
    start = tf.random.uniform([], 0, length - width + 1, dtype=tf.int32)
    positions = tf.range(length)
    return (positions >= start) & (positions < start + width)


def spec_augment(spec, fill_value: float):
    """One time mask and one frequency mask (as AST) on spec [T, M].

    Masked cells take `fill_value`, the dataset mean, so they are zero after the
    model's normalisation, as in SpecAugment's mean masking.
    """
    frames, bins = spec.shape
    time_cap, freq_cap = spec_mask_caps(frames, bins)
    masked = _mask(frames, time_cap)[:, None] | _mask(bins, freq_cap)[None, :]
    return tf.where(masked, tf.constant(fill_value, spec.dtype), spec)


def _beta(alpha, shape=()):
    """Beta(alpha, alpha) from two Gamma draws (tf.random has no Beta sampler)."""
    a = tf.random.gamma(shape, alpha)
    b = tf.random.gamma(shape, alpha)
    return a / (a + b)


def mixup(features, labels, alpha: float, per_modality: bool = False):
    """Mixup [62] of a batch with itself reversed: x = l x_i + (1 - l) x_j.

    `per_modality` ("modality mixup") draws an independent weight for each
    input; the labels are then mixed with the mean of those weights.
    """
    keys = sorted(features)
    weights = _beta(alpha, [len(keys)]) if per_modality else tf.fill([len(keys)], _beta(alpha))
    mixed = {}
    for i, key in enumerate(keys):
        x = features[key]
        mixed[key] = weights[i] * x + (1.0 - weights[i]) * tf.reverse(x, axis=[0])
    label_weight = tf.reduce_mean(weights)
    mixed_labels = label_weight * labels + (1.0 - label_weight) * tf.reverse(labels, axis=[0])
    return mixed, mixed_labels

