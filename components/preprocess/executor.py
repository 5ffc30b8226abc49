"""TFX executor of ClipExampleGen: label file + videos -> SequenceExample splits.

The component keeps FileBasedExampleGen's spec and driver (spans, fingerprints of the label
file); the executor is a Beam executor of its own rather than a BaseExampleGenExecutor, whose
Do would split by hashing whole serialized records and write through TFX's WriteSplit (zlib
level 6, which costs as much as the JPEG encoding). Here the job is LabelFileToTFRecords, the
one `mbt preprocess` runs: a split comes from the label file (else a hash of the source
video, splits.py), each split is one SplitToTFRecords, the workers read the rows (the
launcher reads the class maps and the label file's first bytes only). The artifact gets the
properties the stock ExampleGen sets (split_names, payload_format, file_format) plus the
counts and the records' compression as custom properties. Dead letters and counts go to
`<artifact>/DeadLetters/`.
"""
import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.example_gen import utils, write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.preprocess.label_files import LabelSource, check_source, source_class_map
from components.preprocess.transform import (DEAD_LETTERS_DIR, DECODE_OPTIONS,
                                             RECORDS_FILE_NAME, LabelFileToTFRecords,
                                             read_outcome)

PREPROCESS_CONFIG_KEY = "preprocess_config"
# preprocess_config keys: label file reading (LabelSource's fields; `format` is its fmt), then
# decode_clip / ClipsToExamples options.
LABEL_KEYS = ("format", "videos", "class_map", "noun_class_map", "video_template",
              "presegmented", "encoding")
TRANSFORM_KEYS = DECODE_OPTIONS + ("include_waveform", "compression", "segment_seconds")


def _configs(exec_properties):
    """(example_gen_pb2.Input, example_gen_pb2.Output) of the execution."""
    input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return input_config, output_config


class Executor(base_beam_executor.BaseBeamExecutor):
    """Output splits are the output_config's split names (hash buckets for rows without one)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        input_config, output_config = _configs(exec_properties)
        examples.split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config))
        buckets = {s.name: s.hash_buckets for s in output_config.split_config.splits}
        config = json.loads(exec_properties[PREPROCESS_CONFIG_KEY])
        source = LabelSource(
            os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                         input_config.splits[0].pattern),
            **{("fmt" if k == "format" else k): config[k] for k in LABEL_KEYS if k in config})
        check_source(source)
        dead_letters = os.path.join(examples.uri, DEAD_LETTERS_DIR)
        with self._make_beam_pipeline() as pipeline:
            _ = pipeline | "LabelFile" >> LabelFileToTFRecords(
                source, source_class_map(source), buckets,
                lambda name: os.path.join(artifact_utils.get_split_uri([examples], name),
                                          RECORDS_FILE_NAME),
                dead_letters, **{k: config[k] for k in TRANSFORM_KEYS if k in config})
        examples_utils.set_payload_format(
            examples, exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY])
        # 'tfrecords_gzip' is TFX 1.16's only TFRecord file format; its readers (tfx_bsl,
        # Beam's AUTO compression) take GZIP or not from each file's `.gz` suffix, so the
        # Evaluator, StatisticsGen and Trainer read both kinds. `compression` says which.
        examples_utils.set_file_format(examples, write_split.to_file_format_str(
            example_gen_pb2.FORMAT_TFRECORDS_GZIP))
        examples.set_string_custom_property("compression", config.get("compression", "none"))
        outcome = read_outcome(dead_letters)
        examples.set_string_custom_property("dead_letters_uri", dead_letters)
        for key in ("rows", "read", "written", "rejected"):
            examples.set_int_custom_property(key, outcome[key])
        examples.set_string_custom_property("rejected_by_kind",
                                            json.dumps(outcome["rejected_by_kind"]))
