"""Command-line flags generated from the settings dataclasses, and back to settings.

Every field of a settings section (`RunConfig`'s data, model, training, validation, decoding)
becomes a flag (`--hidden-dim`; validation's with a `val-` prefix) whose help is the field's entry
in the class docstring, so every flag has a config key and the two cannot drift apart. Parsed
values land in `args` as "section.field"; `section_overrides` turns them into the nested dict
`resolve_run_config` merges over a recipe or config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import typing

from sat_tf.workflows.run_config import SECTIONS, recipe_names

# Settings sections that become flags, and the flag prefix of each.
SECTION_PREFIXES = {"data": "", "model": "", "training": "", "validation": "val-", "decoding": "", "scst": "scst-"}
NONE_WORDS = ("none", "null")


# ----- flags generated from the settings dataclasses ----------------------------------------------
def _field_help(section_type: type) -> dict[str, str]:
    """Field name -> the text of its entry in the class docstring's Args section."""
    doc = inspect.getdoc(section_type) or ""
    helps, names = {}, []
    args = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    for line in args.splitlines():
        if not line.strip() or re.match(r"^\S", line):
            if line.strip():
                break  # the next section (Example:, ...)
            continue
        match = re.match(r"^\s{4}([\w, ]+):\s*(.*)$", line)
        if match and not line.startswith("        "):
            names = [n.strip() for n in match.group(1).split(",")]
            for name in names:
                helps[name] = match.group(2)
        elif names:
            for name in names:
                helps[name] += " " + line.strip()
    return helps


def _parser_of(hint):
    """A string -> value function for a field type (int, float, str, tuples of ints or of names,
    optionals)."""
    kinds = (
        [k for k in typing.get_args(hint)] if typing.get_args(hint) and typing.get_origin(hint) is not tuple else [hint]
    )
    optional = type(None) in kinds
    kind = next(k for k in kinds if k is not type(None))
    base = typing.get_origin(kind) or kind

    def parse(text: str):
        if optional and text.lower() in NONE_WORDS:
            return None
        if base is tuple and typing.get_args(kind)[:1] == (dict,):  # a list of objects, as JSON
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"expected a JSON list of objects ({exc})") from None
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise argparse.ArgumentTypeError(f"expected a JSON list of objects, got '{text}'")
            return tuple(value)
        if base is tuple and typing.get_args(kind)[:1] == (str,):  # a list of names
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if base is tuple:
            try:
                return tuple(int(part) for part in text.split(","))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {base.__name__}, got '{text}'") from None

    parse.__name__ = base.__name__
    return parse, base


def add_section_flags(parser: argparse.ArgumentParser, section: str, only: typing.Iterable[str] | None = None):
    """Adds a flag for every field of a settings section; parsed values land in `section.field`."""
    section_type = SECTIONS[section]
    group = parser.add_argument_group(f'{section} settings (config section "{section}")')
    helps, hints = _field_help(section_type), typing.get_type_hints(section_type)
    for field in dataclasses.fields(section_type):
        if only is not None and field.name not in only:
            continue
        flag = "--" + SECTION_PREFIXES[section] + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[operator]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{helps.get(field.name, '')} (default: {shown})".strip()
        dest = f"{section}.{field.name}"
        parse, base = _parser_of(hints[field.name])
        if base is bool:
            group.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=text.replace("%", "%%"),
            )
        else:
            group.add_argument(
                flag,
                dest=dest,
                type=parse,
                default=argparse.SUPPRESS,
                metavar="JSON" if typing.get_args(hints[field.name])[:1] == (dict,) else base.__name__.upper(),
                help=text.replace("%", "%%"),
            )


def section_overrides(args: argparse.Namespace) -> dict:
    """{section: {key: value}} of the settings given on the command line."""
    overrides: dict = {}
    for dest, value in vars(args).items():
        if "." in dest:
            section, key = dest.split(".", 1)
            overrides.setdefault(section, {})[key] = list(value) if isinstance(value, tuple) else value
    return overrides


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--recipe and --config, the bases that flags override."""
    parser.add_argument("--recipe", choices=recipe_names(), help="start from a shipped recipe of measured settings")
    parser.add_argument(
        "--config",
        help="a run config JSON (for example a run folder's run_config.json); "
        "its keys override the recipe's, flags override both",
    )
