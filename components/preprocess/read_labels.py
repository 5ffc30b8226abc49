"""A label file (or a listing of videos) read and parsed by the workers of a Beam job, so that
the submitted job graph holds the file's name, not its rows: AudioSet's two million rows
pickled into a `beam.Create` are hundreds of MB, over Dataflow's job-graph limit, and the
launcher would hold them all.

One worker parses the file from its first byte (label_files.label_rows) rather than
ReadFromText splitting it by byte ranges: a record names its row by line number in every
dead letter and duplicate, a CSV's header and a quoted field holding a newline need the
lines before them. Parsing costs tens of microseconds a row (200,000 generic rows in 12 s on
a busy 2-core machine: AudioSet's 2 million take a worker minutes), little next to decoding
their clips; the Reshuffle after it spreads the rows over every worker. Duplicates
are found by a GroupByKey per label_files.DUPLICATE_KEYS key and marked by the same
`mark_duplicates` that label_files.reject_duplicates applies in memory.
"""
from typing import Callable, Iterator

import apache_beam as beam

from components.preprocess.label_files import DUPLICATE_KEYS, ClipRecord, mark_duplicates


class MarkDuplicates(beam.PTransform):
    """PCollection[ClipRecord] -> the same records, those repeating an earlier row's clip
    marked `duplicate` naming the first row (label_files.reject_duplicates' rule)."""

    def expand(self, records):
        for key, same in DUPLICATE_KEYS:
            name = same.title().replace(" ", "")
            rejected, checked = records | f"Rejected{name}" >> beam.Partition(
                lambda record, _: int(record.error is None), 2)
            marked = (checked | f"By{name}" >> beam.Map(lambda r, key=key: (key(r), r))
                      | f"Group{name}" >> beam.GroupByKey()
                      | f"Mark{name}" >> beam.FlatMap(
                          lambda keyed, same=same: mark_duplicates(list(keyed[1]), same)))
            records = (rejected, marked) | f"Rejoin{name}" >> beam.Flatten()
        return records


class ReadRows(beam.PTransform):
    """pipeline -> PCollection[ClipRecord]: `rows(*args)` (label_files.label_rows,
    listing_rows) run in a worker, spread over the workers, duplicates marked."""

    def __init__(self, rows: Callable[..., Iterator[ClipRecord]], *args):
        super().__init__()
        self._rows, self._args = rows, args

    def expand(self, pipeline):
        return (pipeline | "File" >> beam.Create([self._args])
                | "ParseRows" >> beam.FlatMap(lambda args, rows: rows(*args), rows=self._rows)
                | "SpreadRows" >> beam.Reshuffle()
                | "MarkDuplicates" >> MarkDuplicates())
