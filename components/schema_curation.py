"""The schema that knows the data: SchemaGen's inferred schema, curated once by rules.

SchemaGen infers from one data set: it lists every clip id and file name as a string domain,
pins sequence lengths (frames, seconds of audio) to the clips it saw and guesses a boolean
domain for label indices when only 0 and 1 occur. On new data ExampleValidator would then
report anomalies that are not anomalies and miss real ones. The rules below, keyed by the
contract's feature names, keep what the inferred schema knows about the record format (types,
per-element lengths such as 100 x 128 log-mel floats per second, presence) and replace only
what depends on the particular clips:

- ids and file names are free text: no domain;
- timestamps and durations are free numbers: no domain, no shape;
- feature lists (`##SEQUENCE##`) may have any number of elements, and are checked (never
  DEPRECATED), so a record without its log-mel is an anomaly;
- label indices lie in [0, number of classes - 1] of the class map, label names in the
  class map's names; several labels per clip are allowed (multi-label data);
- the optional waveform list (`--include-waveform`) may be absent, and its one element
  holds the whole clip's samples (DMVR's layout), so its length is free too.

`SchemaCurator` is the TFX component that applies them after SchemaGen; ExampleValidator
and the Trainer read its output.
"""
import os
from typing import Optional, Sequence

from tensorflow_metadata.proto.v0 import schema_pb2

from mbt_keras import contract

# tfx_bsl's TFSequenceExampleRecord puts the feature lists under this STRUCT feature.
SEQUENCE_STRUCT = "##SEQUENCE##"
FREE_TEXT = (contract.CLIP_ID, contract.VIDEO_FILENAME)
FREE_NUMBERS = (contract.CLIP_START, contract.CLIP_END, contract.CLIP_DURATION)
# Label names: `clip/label/text` in version-2 records, `clip/label/string` in version 1.
LABEL_NAMES = (contract.LABEL_TEXT, contract.LABEL_STRING)
OPTIONAL_SEQUENCE = (contract.WAVEFORM,)
SCHEMA_FILE = "schema.pbtxt"  # the name SchemaGen writes and ExampleValidator reads


def _feature(features, name: str) -> Optional[schema_pb2.Feature]:
    return next((f for f in features if f.name == name), None)


def _free(feature: schema_pb2.Feature) -> None:
    """No domain, no fixed shape: any value and any length is valid."""
    feature.ClearField("domain_info")
    feature.ClearField("shape")


def _at_least_one_value(feature: schema_pb2.Feature) -> None:
    feature.ClearField("shape")
    feature.value_count.min = 1
    feature.value_count.ClearField("max")


def curate_schema(inferred: schema_pb2.Schema,
                  class_names: Optional[Sequence[str]] = None) -> schema_pb2.Schema:
    """A curated copy of `inferred` (SchemaGen/TFDV output for our SequenceExamples).
    `class_names`, in index order, bound the label fields; without them only index >= 0."""
    schema = schema_pb2.Schema()
    schema.CopyFrom(inferred)
    top = schema.feature
    for name in FREE_TEXT + FREE_NUMBERS:
        feature = _feature(top, name)
        if feature is not None:
            _free(feature)
    kept = [d for d in schema.string_domain if d.name not in FREE_TEXT + LABEL_NAMES]
    del schema.string_domain[:]
    schema.string_domain.extend(kept)

    index = _feature(top, contract.LABEL_INDEX)
    if index is not None:
        _free(index)
        _at_least_one_value(index)
        index.int_domain.min = 0
        if class_names:
            index.int_domain.max = len(class_names) - 1
    for name in LABEL_NAMES:
        names = _feature(top, name)
        if names is None:
            continue
        _free(names)
        _at_least_one_value(names)
        if class_names:
            names.domain = name
            schema.string_domain.add(name=name, value=list(class_names))

    sequence = _feature(top, SEQUENCE_STRUCT)
    if sequence is not None:
        sequence.ClearField("lifecycle_stage")
        for feature in sequence.struct_domain.feature:
            feature.ClearField("lifecycle_stage")
            feature.ClearField("shape")
            if feature.value_counts.value_count:  # [elements per clip, values per element]
                feature.value_counts.value_count[0].min = 1
                feature.value_counts.value_count[0].ClearField("max")
        for name in OPTIONAL_SEQUENCE:
            optional = (_feature(sequence.struct_domain.feature, name)
                        or sequence.struct_domain.feature.add(name=name,
                                                              type=schema_pb2.FLOAT))
            optional.presence.min_fraction = 0.0
            optional.presence.min_count = 0
            for count in optional.value_counts.value_count[1:]:
                count.ClearField("min")
                count.ClearField("max")
    return schema


def class_names_of(class_map: Optional[str], encoding: str = "utf-8",
                   noun_class_map: Optional[str] = None) -> Optional[list]:
    """Class names by index from a class map file (local or gs://) in `encoding`."""
    if not class_map:
        return None
    from components.preprocess.label_files import class_names, read_class_maps
    return class_names(read_class_maps(class_map, noun_class_map, encoding))


def read_schema(path: str) -> schema_pb2.Schema:
    import tensorflow_data_validation as tfdv
    return tfdv.load_schema_text(path)


def write_schema(schema: schema_pb2.Schema, directory: str) -> str:
    import tensorflow_data_validation as tfdv
    path = os.path.join(directory, SCHEMA_FILE)
    tfdv.write_schema_text(schema, path)
    return path
