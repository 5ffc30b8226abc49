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
