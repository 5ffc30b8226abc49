"""SchemaCurator: the TFX component that curates SchemaGen's inferred schema once
(components/schema_curation.py holds the rules). ExampleValidator and the Trainer read its
`schema` output instead of SchemaGen's."""
from tfx import v1 as tfx

from components.schema_curation import (class_names_of, curate_schema, read_schema,
                                        write_schema)

InputArtifact = tfx.dsl.components.InputArtifact
OutputArtifact = tfx.dsl.components.OutputArtifact
Parameter = tfx.dsl.components.Parameter
Schema = tfx.types.standard_artifacts.Schema


@tfx.dsl.components.component
def SchemaCurator(inferred_schema: InputArtifact[Schema],  # pylint: disable=invalid-name
                  schema: OutputArtifact[Schema],
                  class_map: Parameter[str] = "", encoding: Parameter[str] = "utf-8",
                  noun_class_map: Parameter[str] = ""):
    """`class_map`: the class map file (text in `encoding`) whose indices and names bound the
    label features; with `noun_class_map`, the verbs' and the nouns' files (Epic-Kitchens)."""
    from tfx.utils import io_utils  # pylint: disable=import-outside-toplevel
    inferred = read_schema(io_utils.get_only_uri_in_dir(inferred_schema.uri))
    names = class_names_of(class_map, encoding, noun_class_map or None)
    write_schema(curate_schema(inferred, names), schema.uri)
