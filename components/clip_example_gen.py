"""ClipExampleGen: the TFX ExampleGen that turns raw clips + a label file into
SequenceExample TFRecords (uncompressed, or GZIP `.gz` on request) with train/eval splits and
dead letters.

It reuses FileBasedExampleGen's spec and driver (spans, fingerprints of the label file, so an
unchanged label file is a cache hit) and adds one parameter, the preprocessing options.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from tfx.components.example_gen import driver
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.preprocess import executor, transform
from components.preprocess.segments import DEFAULT_SEGMENT_SECONDS
from components.preprocess.splits import DEFAULT_SPLITS


class ClipExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {**standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
                  executor.PREPROCESS_CONFIG_KEY: ExecutionParameter(type=str)}


class ClipExampleGen(base_beam_component.BaseBeamComponent):
    """Outputs `examples`: Examples with payload FORMAT_TF_SEQUENCE_EXAMPLE, custom properties
    read / written / rejected / rejected_by_kind / dead_letters_uri."""

    SPEC_CLASS = ClipExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(self, labels: str, videos: str, *, label_format: str = "generic",
                 class_map: Optional[str] = None, splits: Optional[Dict[str, int]] = None,
                 fps: float = 25, short_side: int = 256, missing_audio: str = "reject",
                 min_duration: float = 1.0, include_waveform: bool = False,
                 video_template: Optional[str] = None, presegmented: bool = False,
                 compression: str = "none", encoding: str = "utf-8",
                 max_damaged_fraction: Optional[float] = None,
                 segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
                 noun_class_map: Optional[str] = None, decoder_threads: int = 1):
        """`labels`: the label file (its folder is the input_base; the driver fingerprints the
        file, so an unchanged label file is a cache hit). `splits` maps output split names to
        hash buckets, used for clips whose label-file row has no split; rows with a split keep
        it (test/val go to 'eval'). `compression`: "none" (records DMVR/Scenic read as they
        are) or "gzip" (`.gz` files). `encoding`: the label file's and class map's text
        encoding. `max_damaged_fraction`: share of a clip's packets that may fail to decode
        before it is rejected as corrupt (None: clip_decoder.MAX_DAMAGED_FRACTION).
        `segment_seconds`: rows longer than this become consecutive records of it (0: whole
        rows; components/preprocess/segments.py). `noun_class_map`: Epic-Kitchens' nouns
        (`class_map` its verbs). `video_template` None: the label format's. The other
        options are `mbt preprocess`'s of the same names."""
        splits = splits or DEFAULT_SPLITS
        config = dict(format=label_format, videos=videos, class_map=class_map, fps=fps,
                      short_side=short_side, missing_audio=missing_audio,
                      min_duration=min_duration, include_waveform=include_waveform,
                      video_template=video_template, presegmented=presegmented,
                      compression=compression, encoding=encoding,
                      max_damaged_fraction=max_damaged_fraction,
                      segment_seconds=segment_seconds, noun_class_map=noun_class_map,
                      decoder_threads=decoder_threads)
        spec = ClipExampleGenSpec(
            input_base=os.path.dirname(labels),
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
                name="labels", pattern=os.path.basename(labels))]),
            output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b)
                        for n, b in splits.items()])),
            output_data_format=example_gen_pb2.FORMAT_TF_SEQUENCE_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            preprocess_config=json.dumps({k: v for k, v in config.items() if v is not None},
                                         sort_keys=True),
            examples=channel.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)


def dead_letters_of(examples) -> List[Tuple[str, str]]:
    """(clip id, reason) for every rejected clip of an Examples artifact (TFX or MLMD)."""
    pattern = os.path.join(examples.uri, transform.DEAD_LETTERS_DIR, "dead_letters-*")
    letters = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(path) as f:
            letters.extend(json.loads(line) for line in f if line.strip())
    return [(letter["item"]["clip_id"], letter["reason"]) for letter in letters]
