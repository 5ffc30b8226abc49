"""TFX executor of ClipExampleGen: label file + videos -> SequenceExample splits.

A BaseExampleGenExecutor, so the stock ExampleGen machinery (FileBasedDriver spans and
fingerprints, split names, the payload_format and file_format properties) stays; splitting is
overridden because a split comes from the label file (else a hash of the clip id), not from
hashing whole serialized records, and writing because TFX's WriteSplit GZIPs with zlib level 6,
which costs as much as the JPEG encoding (WriteGzipTFRecords: same file layout and format,
ISA-L). Dead letters and counts go to `<artifact>/DeadLetters/`, and the counts become custom
properties of the Examples artifact.
"""
import json
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx import types
from tfx.components.example_gen import base_example_gen_executor, utils, write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.preprocess.gzip_tfrecords import WriteGzipTFRecords
from components.preprocess.label_files import parse_label_file
from components.preprocess.splits import assign_splits
from components.preprocess.transform import (ClipsToExamples, WriteOutcome, as_dict,
                                             read_outcome)

PREPROCESS_CONFIG_KEY = "preprocess_config"
DEAD_LETTERS_DIR = "DeadLetters"
_DEAD_LETTER_URI_KEY = "_dead_letter_uri"
# preprocess_config keys: label file reading, then decode_clip / ClipsToExamples options.
LABEL_KEYS = ("format", "videos", "class_map", "video_template", "presegmented")
TRANSFORM_KEYS = ("fps", "short_side", "missing_audio", "min_duration", "include_waveform")


def _split_buckets(exec_properties) -> Dict[str, int]:
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return {s.name: s.hash_buckets for s in output_config.split_config.splits}


def _label_path(exec_properties) -> str:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    return os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                        input_config.splits[0].pattern)


@beam.ptransform_fn
def _ClipsOfSplit(pipeline, exec_properties: Dict[str, Any], split_name: str):  # pylint: disable=invalid-name
    """The clips of one split as SequenceExamples; its dead letters are written aside."""
    config = json.loads(exec_properties[PREPROCESS_CONFIG_KEY])
    label_options = {k: config[k] for k in LABEL_KEYS if k in config}
    records, class_map = parse_label_file(_label_path(exec_properties), fmt=label_options.pop(
        "format", "generic"), videos=label_options.pop("videos"),
        class_map_path=label_options.pop("class_map", None), **label_options)
    mine = [r for r in assign_splits(records, _split_buckets(exec_properties))
            if r.split == split_name]
    outputs = (pipeline | "Records" >> beam.Create(mine, reshuffle=True)
               | "ClipsToExamples" >> ClipsToExamples(
                   class_map, **{k: config[k] for k in TRANSFORM_KEYS if k in config}))
    _ = as_dict(outputs) | "WriteOutcome" >> WriteOutcome(exec_properties[_DEAD_LETTER_URI_KEY],
                                                 split_name, len(mine))
    return outputs.examples


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """ExampleGen over ClipsToExamples; output splits are the output_config's split names."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _ClipsOfSplit

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        to_examples = self.GetInputSourceToExamplePTransform()
        return {name: pipeline | f"InputToRecord[{name}]" >> to_examples(exec_properties, name)
                for name in _split_buckets(exec_properties)}

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                                  output_config)
        examples.split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config))
        dead_letters = os.path.join(examples.uri, DEAD_LETTERS_DIR)
        with self._make_beam_pipeline() as pipeline:
            splits = self.GenerateExamplesByBeam(
                pipeline, {**exec_properties, _DEAD_LETTER_URI_KEY: dead_letters})
            for name, split in splits.items():
                _ = (split | f"Serialize[{name}]" >> beam.Map(lambda e: e.SerializeToString())
                     | f"WriteSplit[{name}]" >> WriteGzipTFRecords(os.path.join(
                         artifact_utils.get_split_uri([examples], name),
                         write_split.DEFAULT_TF_RECORD_FILE_NAME)))
        examples_utils.set_payload_format(
            examples, exec_properties[standard_component_specs.OUTPUT_DATA_FORMAT_KEY])
        examples_utils.set_file_format(examples, write_split.to_file_format_str(
            example_gen_pb2.FORMAT_TFRECORDS_GZIP))
        outcome = read_outcome(dead_letters)
        examples.set_string_custom_property("dead_letters_uri", dead_letters)
        for key in ("read", "written", "rejected"):
            examples.set_int_custom_property(key, outcome[key])
        examples.set_string_custom_property("rejected_by_kind",
                                            json.dumps(outcome["rejected_by_kind"]))
