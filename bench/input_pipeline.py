"""Training input pipeline against its floor, per core, on records of the preprocessing job.

The floor is what no input pipeline can avoid per training example: decoding exactly the
JPEG crops the example needs (num_frames `decode_and_crop_jpeg` calls on the frames and crop
window the training sampler draws) and slicing its log-mel window, on one core, from frames
already in memory. Against it, in the same run and on the same records:
  - the full training pipeline, i.e. what the host does per example as `mbt train` runs it
    (`input_pipeline.train_dataset(augment_on="step")`: read, parse, window, decode the crops
    into a padded buffer, SpecAugment, the flip / colour jitter / mixup draws, batch) on one
    core (tf.data private thread pool and intra-op parallelism 1) and on all cores; the crops'
    resize, flip, colour jitter and mixup are applied in the training step, on the accelerator;
  - the same pipeline resizing and applying flip, colour jitter and mixup itself
    (augment_on="host", the recipe on a host without an accelerator), on one core;
  - each of its stages alone on one core (ms per example), to show where the time goes, with
    reading also timed before the pipeline tunes the allocator (mbt_keras/host_memory.py);
  - with --gzip-records, the same clips GZIP'd: bytes per record and read time.
CPU ms per example are printed next to wall rates: the host is shared, CPU time is the
figure that does not move with its load. The floor is measured before the stages and again
right after the one-core pipeline; the ratio uses the mean. The last line is `ratio_to_floor=<value>`: the
one-core pipeline's examples per CPU-second over the floor's (issue 15 target >= 0.5); the
wall-clock ratio is printed before it.

Records come from the real preprocessing job on real footage, e.g. AudioSet-length clips of
the test video played twice (docs/benchmarks.md has the label file):
  python bench/input_pipeline.py --make-clip DIR/bunny10.mp4
  mbt preprocess --labels labels.csv --videos DIR --out OUT --splits train:1 [--fps 25]
  python bench/input_pipeline.py --records 'OUT/Split-train/*' [--gzip-records 'GZ/*.gz']
      [--preset mbt-b16] [--batch-size 8] [--examples 48]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mbt_keras import augment, host_memory, input_pipeline  # noqa: E402
from mbt_keras.config import from_preset  # noqa: E402


REAL_CLIP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                         "bigbuckbunny_5s.mp4")


def make_clip(path, seconds=10, fps=25):
    """tests/data's 5.3 s 720p clip looped to `seconds` (AudioSet's 10 s), re-encoded as
    H.264 + AAC with PyAV: real footage at the length the paper's datasets have."""
    import av  # pylint: disable=import-outside-toplevel
    with av.open(REAL_CLIP) as source:
        frames = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
    with av.open(REAL_CLIP) as source:
        rate = source.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray() for f in source.decode(audio=0)], axis=1)
    mono = np.resize(audio.mean(axis=0), seconds * rate).astype(np.float32)[None]
    with av.open(path, "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "superfast"})
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=rate, layout="mono")
        for k in range(seconds * fps):
            out.mux(video.encode(av.VideoFrame.from_ndarray(frames[k % len(frames)],
                                                            format="rgb24")))
        out.mux(video.encode(None))
        frame = av.AudioFrame.from_ndarray(mono, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))


def read_all(files):
    """Every record of `files` in order, GZIP by the `.gz` suffix (also for the old code's
    input_pipeline, which the "before" figure runs this bench against)."""
    return tf.data.Dataset.from_tensor_slices(files).flat_map(
        lambda f: tf.data.TFRecordDataset(f, compression_type=tf.where(
            tf.strings.regex_full_match(f, r".*\.gz"), "GZIP", "")))


def one_core(dataset):
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def measure(dataset, examples, per_element=1, warmup=2):
    """(examples/s wall, CPU ms per example) over `examples` examples after a warm-up."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    steps = max(examples // per_element, 1)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return steps * per_element / wall, 1e3 * cpu / (steps * per_element)


def in_memory(serialized, config):
    """The records parsed once: (JPEG lists padded to one length, their counts, fps, log-mels)."""
    parsed = [input_pipeline.parse(s, config) for s in serialized]
    frames = min(int(p["jpegs"].shape[0]) for p in parsed)
    rows = min(int(p["spec"].shape[0]) for p in parsed)
    return (tf.stack([p["jpegs"][:frames] for p in parsed]), float(parsed[0]["fps"]),
            tf.stack([p["spec"][:rows] for p in parsed]))


def stage_datasets(records, serialized, config, batch_size):
    """name -> (one-core dataset of one stage per element, examples per element)."""
    jpegs, fps, specs = in_memory(serialized, config)
    t = input_pipeline.window_seconds(config)

    def selected(clip_jpegs):
        start = tf.random.uniform([], 0.0, t)
        index = input_pipeline.frame_indices(start, fps, tf.shape(clip_jpegs)[0], t,
                                             config.num_frames)
        return tf.gather(clip_jpegs, index)

    def crops(clip_jpegs):
        chosen = selected(clip_jpegs)
        return input_pipeline.decode_crops(chosen, augment.random_crop_window(chosen[0]))

    def floor(clip_jpegs, spec):
        start = tf.random.uniform([], 0.0, t)
        return crops(clip_jpegs), input_pipeline.spec_window(spec, start, config.spec_frames)

    def decoded(clip_jpegs):
        chosen = selected(clip_jpegs)
        return input_pipeline.decode_frames(chosen, augment.random_crop_window(chosen[0]),
                                            config.image_size, scale=False)

    bound = input_pipeline.crop_bound(records)

    def padded(clip_jpegs):
        chosen = selected(clip_jpegs)
        return input_pipeline.padded_crops(chosen, augment.random_crop_window(chosen[0]), bound)

    frames = tf.random.uniform([config.num_frames, config.image_size, config.image_size, 3])
    window = tf.random.normal([config.spec_frames, config.mel_bins])
    example = ({"rgb": frames, "spec": window}, tf.one_hot(1, sum(config.num_classes)))
    clips = tf.data.Dataset.from_tensor_slices(jpegs).repeat()
    return {
        "floor: JPEG crops + log-mel slice": (tf.data.Dataset.from_tensor_slices(
            (jpegs, specs)).repeat().map(floor), 1),
        "read (+gunzip if .gz), tuned allocator": (read_all(records).repeat(), 1),
        "parse SequenceExample": (tf.data.Dataset.from_tensor_slices(
            tf.constant(serialized)).repeat().map(lambda s: input_pipeline.parse(s, config)), 1),
        "JPEG decode + crop": (clips.map(crops), 1),
        "JPEG decode + crop + resize (host)": (clips.map(decoded), 1),
        "JPEG decode + crop + pad (step resizes)": (clips.map(padded), 1),
        "flip + colour jitter (in the step)": (tf.data.Dataset.from_tensors(frames).repeat().map(
            augment.flip_and_jitter), 1),
        "SpecAugment": (tf.data.Dataset.from_tensors(window).repeat().map(
            lambda s: augment.spec_augment(s, config.spec_mean)), 1),
        f"batch {batch_size} + mixup (in the step)": (tf.data.Dataset.from_tensors(example).repeat().batch(
            batch_size).map(lambda x, y: augment.mixup(x, y, 0.3)), batch_size),
    }


def record_bytes(files):
    count = sum(1 for _ in read_all(files))
    return sum(os.path.getsize(f) for f in files) / max(count, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", help="glob of the job's TFRecords")
    parser.add_argument("--make-clip", help="write the 10 s source clip here and exit")
    parser.add_argument("--gzip-records", help="glob of the same clips written with GZIP")
    parser.add_argument("--preset", default="mbt-b16",
                        help="sampling of the paper: 8 frames, 224 crop, 800 x 128 log-mel")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=48, help="examples timed per figure")
    args = parser.parse_args(argv)
    if args.make_clip:
        make_clip(args.make_clip)
        return 0
    if not args.records:
        parser.error("--records is required (or --make-clip)")
    config = from_preset(args.preset)
    files = input_pipeline.list_files(args.records)
    serialized = [r.numpy() for r in read_all(files).take(8)]
    fps = float(input_pipeline.parse(serialized[0], config)["fps"])
    plain = record_bytes(files)
    print(f"records: {len(files)} files, {plain / 1e6:.2f} MB/record, "
          f"{fps:g} fps; preset {args.preset}: {config.num_frames} frames, "
          f"{config.image_size} crop, {config.spec_frames}x{config.mel_bins} log-mel; "
          f"batch {args.batch_size}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'one core, per stage':42s} {'ex/s':>8s} {'CPU ms/ex':>10s}")
    # Before anything builds the training pipeline, which tunes the allocator for good.
    default = measure(one_core(read_all(files).repeat()), args.examples)
    print(f"  {'read, glibc default allocator':40s} {default[0]:8.1f} {default[1]:10.2f}")
    if not host_memory.tune_allocator():
        print("  (allocator not tunable here: not glibc; the lines below are untuned)")
    rates = {}
    stages = stage_datasets(files, serialized, config, args.batch_size)
    for name, (dataset, per_element) in stages.items():
        rates[name] = measure(one_core(dataset), args.examples, per_element)
        print(f"  {name:40s} {rates[name][0]:8.1f} {rates[name][1]:10.2f}")
    if args.gzip_records:
        gzip_files = input_pipeline.list_files(args.gzip_records)
        plain_rate, plain_cpu = measure(one_core(read_all(files).repeat()), args.examples)
        gzip_rate, gzip_cpu = measure(one_core(read_all(gzip_files).repeat()), args.examples)
        gzipped = record_bytes(gzip_files)
        print(f"GZIP vs plain: {gzipped / 1e6:.2f} vs {plain / 1e6:.2f} MB/record "
              f"({100 * (1 - gzipped / plain):.1f}% smaller); read {gzip_rate:.1f} vs "
              f"{plain_rate:.1f} records/s on one core ({gzip_cpu:.2f} vs {plain_cpu:.2f} "
              f"CPU ms/record)")
    floor_name = "floor: JPEG crops + log-mel slice"
    def pipeline(augment_on):
        return input_pipeline.train_dataset(files, config, args.batch_size, seed=0,
                                            augment_on=augment_on)
    host, host_cpu = measure(one_core(pipeline("host")), args.examples, args.batch_size)
    single, single_cpu = measure(one_core(pipeline("step")), args.examples, args.batch_size)
    # The floor again, right after: the ratio uses the mean of both, so a slow or fast spell
    # of a shared host during one of them moves it less.
    again = measure(one_core(stages[floor_name][0]), args.examples)
    floor, floor_cpu = ((a + b) / 2 for a, b in zip(rates[floor_name], again))
    every, every_cpu = measure(pipeline("step"), args.examples, args.batch_size)
    print(f"pipeline + flip/jitter/mixup on the host, one core: {host:8.1f} ex/s  "
          f"({host_cpu:.2f} CPU ms/ex)")
    print(f"training pipeline, one core:   {single:8.1f} ex/s  ({single_cpu:.2f} CPU ms/ex)")
    print(f"training pipeline, all cores:  {every:8.1f} ex/s  ({every_cpu:.2f} CPU ms/ex)")
    print(f"floor, one core:               {floor:8.1f} ex/s  ({floor_cpu:.2f} CPU ms/ex; "
          f"{rates[floor_name][1]:.2f} before the pipeline, {again[1]:.2f} after)")
    print(f"ratio_to_floor_wall={single / floor:.2f}")
    # Per core = per CPU-second: on a shared host a one-thread pipeline's wall rate measures
    # the scheduler; its CPU time per example is what one core of a dedicated host needs.
    print(f"ratio_to_floor={floor_cpu / single_cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
