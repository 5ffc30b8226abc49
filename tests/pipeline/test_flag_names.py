"""One flag name for one thing across the `mbt` sub-commands: every parser is built as
`mbt` builds it, and options that mean the same (same `dest`) are spelt the same and take the
same choices everywhere."""
import argparse
import importlib

from pipeline.cli import SUBCOMMANDS

# Names that must not be the visible spelling of a choice another sub-command spells otherwise.
RETIRED = {"--format": "--label-format"}


def _parsers():
    """{'mbt preprocess': parser, 'mbt pipeline run': parser, ...}"""
    found = {}
    for name, (module_name, _) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"mbt {name}")
        add = (getattr(module, f"add_{name.replace('-', '_')}_arguments", None)
               or module.add_arguments)
        add(parser)
        found.update(_walk(parser, f"mbt {name}"))
    return found


def _walk(parser, prog):
    found = {prog: parser}
    for action in parser._actions:  # pylint: disable=protected-access
        if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
            for sub, subparser in action.choices.items():
                found.update(_walk(subparser, f"{prog} {sub}"))
    return found


def _visible_options(parser):
    """(flag, action) of every option a user sees in --help."""
    return [(flag, action) for action in parser._actions  # pylint: disable=protected-access
            if action.help != argparse.SUPPRESS for flag in action.option_strings
            if flag.startswith("--")]


def test_every_dest_is_spelt_one_way_across_subcommands():
    spellings = {}
    for prog, parser in _parsers().items():
        for flag, action in _visible_options(parser):
            spellings.setdefault(action.dest, {}).setdefault(flag, []).append(prog)
    # One dest may have a long flag and (rarely) a second spelling within one command; across
    # commands the same meaning must not carry two names.
    clashes = {dest: flags for dest, flags in spellings.items() if len(flags) > 1}
    assert not clashes, clashes


def test_label_format_is_label_format_everywhere_and_format_still_works():
    parsers = _parsers()
    takers = [prog for prog, parser in parsers.items()
              if any(a.dest == "label_format" for a in parser._actions)]  # pylint: disable=protected-access
    assert {"mbt preprocess", "mbt pipeline run", "mbt pipeline compile"} <= set(takers)
    for prog in takers:
        visible = dict(_visible_options(parsers[prog]))
        assert "--label-format" in visible, prog
        assert not set(RETIRED) & set(visible), prog
    old = parsers["mbt preprocess"].parse_args(
        ["--labels", "l.csv", "--videos", "v", "--out", "o", "--format", "vggsound"])
    assert old.label_format == "vggsound"
    new = parsers["mbt preprocess"].parse_args(
        ["--labels", "l.csv", "--videos", "v", "--out", "o"])
    assert new.label_format == "generic"


def test_a_flag_takes_the_same_choices_in_every_subcommand():
    choices = {}
    for prog, parser in _parsers().items():
        for flag, action in _visible_options(parser):
            if action.choices is not None and not isinstance(
                    action, argparse._SubParsersAction):  # pylint: disable=protected-access
                choices.setdefault(flag, {})[prog] = tuple(action.choices)
    differing = {flag: by_prog for flag, by_prog in choices.items()
                 if len(set(by_prog.values())) > 1}
    assert not differing, differing


# Data flags whose pipeline default differs on purpose, and why.
PIPELINE_DEFAULTS = {
    "labels": "the demo's label file (mbt preprocess requires one)",
    "videos": "the demo's clips (mbt preprocess requires them)",
    "class_map": "the demo's class map",
    "fps": "None: the lowest rate that holds the preset's frame sampling (windows.stored_fps)",
    "max_damaged_fraction": "None: the decoder's own default, the value mbt preprocess shows",
}


def _data_actions():
    """{dest: action} of every data flag of `mbt preprocess` (its options less the job's)."""
    from pipeline import preprocess_cli
    job = argparse.ArgumentParser()
    preprocess_cli.add_job_arguments(job)
    job_dests = {a.dest for a in job._actions}  # pylint: disable=protected-access
    return {a.dest: a for flag, a in _visible_options(_parsers()["mbt preprocess"])
            if a.dest not in job_dests}


def test_every_data_flag_of_preprocess_means_the_same_on_pipeline_run_and_compile():
    data = _data_actions()
    assert {"video_template", "presegmented", "splits", "noun_class_map", "min_duration",
            "include_waveform", "compression", "decoder_threads"} <= set(data)
    for prog in ("mbt pipeline run", "mbt pipeline compile"):
        actions = {a.dest: a for _, a in _visible_options(_parsers()[prog])}
        for dest, want in data.items():
            assert dest in actions, f"{prog} has no {want.option_strings[0]}"
            got = actions[dest]
            assert (got.option_strings, type(got), got.type, got.choices, got.nargs) == (
                want.option_strings, type(want), want.type, want.choices, want.nargs), (
                f"{prog} {want.option_strings[0]} differs from mbt preprocess's")
            if dest not in PIPELINE_DEFAULTS:
                assert got.default == want.default, f"{prog} {want.option_strings[0]} default"


def test_pipeline_data_flags_reach_the_example_gen(tmp_path):
    """Each data flag given to `mbt pipeline run` is in the ClipExampleGen's configuration
    with the value given (as mbt preprocess would use it)."""
    import json

    from components.preprocess.executor import PREPROCESS_CONFIG_KEY
    from pipeline.pipeline import create_pipeline
    from pipeline.pipeline_cli import settings_from_args
    args = _parsers()["mbt pipeline run"].parse_args([
        "--labels", "l.csv", "--videos", "v", "--label-format", "epic-kitchens",
        "--class-map", "verbs.csv", "--noun-class-map", "nouns.csv",
        "--video-template", "{video_id}.mp4", "--presegmented", "--splits", "train:4,eval:1",
        "--min-duration", "0.5", "--include-waveform", "--compression", "gzip",
        "--decoder-threads", "2", "--set", "num_classes=[3,4]", "--set", "head=verb_noun",
        "--pipeline-root", str(tmp_path)])
    pipeline = create_pipeline(settings_from_args(args))
    example_gen = pipeline.components[0]
    config = json.loads(example_gen.exec_properties[PREPROCESS_CONFIG_KEY])
    assert {k: config[k] for k in ("format", "class_map", "noun_class_map", "video_template",
                                   "presegmented", "min_duration", "include_waveform",
                                   "compression", "decoder_threads")} == {
        "format": "epic-kitchens", "class_map": "verbs.csv", "noun_class_map": "nouns.csv",
        "video_template": "{video_id}.mp4", "presegmented": True, "min_duration": 0.5,
        "include_waveform": True, "compression": "gzip", "decoder_threads": 2}
    splits = json.loads(example_gen.exec_properties["output_config"])["split_config"]["splits"]
    assert {s["name"]: s["hash_buckets"] for s in splits} == {"train": 4, "eval": 1}
