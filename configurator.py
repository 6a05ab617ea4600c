"""
Configuration for the scripts, as in nanoGPT:
$ python train.py config/override_file.py --batch_size=32
A script's settings are its top-level names with an annotation, each set to its default; the annotation says which
values it takes: a type, a typing.Literal of the values, or a rule of this module:

    batch_size: at_least(1) = 12
    dropout: fraction = 0.0
    dtype: Literal['float32', 'bfloat16', 'float16', None] = None

Then config = configure(globals(), sys.argv[1:]). Config files are Python and are run as they are (run only ones
you trust); the settings they assign override the defaults. --key=value arguments override both; a value is read as
a Python literal (--batch_size=32, --compile=False, --top_p=None), anything else is a string (--device=cuda:1).
A value keeps its default's type (an int is fine where a float is expected), takes None only where the default is
None or the rule allows it, and must pass the rule: the first value that does not ends the script in one line.
"""

import ast
import difflib
import sys
import typing

from errors import UserError


class Rule:
    """The values a setting takes: test(value) is true for them, and `says` describes them to the user."""

    def __init__(self, says, test, allows_none=False):
        self.says, self.test, self.allows_none = says, test, allows_none


def _number_like(low):
    return lambda v: not isinstance(v, bool) and isinstance(v, (int, float) if isinstance(low, float) else int)


def at_least(low):
    """Numbers >= low: whole numbers when low is an int."""
    is_number = _number_like(low)
    return Rule(f"at least {low}", lambda v: is_number(v) and v >= low)


def between(low, high, low_open=False, high_open=False):
    """Numbers from low to high; an open end leaves the end itself out."""
    is_number = _number_like(low)
    says = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return Rule(says, lambda v: is_number(v) and (low < v if low_open else low <= v)
                and (v < high if high_open else v <= high))


def _one_of(*choices):
    # exactly one of choices: True is not 1
    return Rule(f"one of {', '.join(map(repr, choices))}",
                lambda v: any(v is c or (type(v) is type(c) and v == c) for c in choices), allows_none=None in choices)


def optional(rule):
    """None, or what rule (a type or a Rule) takes."""
    rule = as_rule(rule)
    return Rule(f"{rule.says}, or None", lambda v: v is None or rule.test(v), allows_none=True)


def as_rule(annotation):
    if isinstance(annotation, Rule):
        return annotation
    if typing.get_origin(annotation) is typing.Literal:
        return _one_of(*typing.get_args(annotation))
    if isinstance(annotation, type):
        return Rule(f"a {annotation.__name__}", lambda v: isinstance(v, annotation))
    raise TypeError(f"a setting's annotation must be a type or a Rule, not {annotation!r}")


fraction = between(0.0, 1.0, high_open=True)  # dropout and the like: 0 is fine, 1 is not


def configure(namespace, args):
    """Applies config files and --key=value args to the settings in namespace (a script's globals()), in place,
    all or nothing. Returns the config: each setting's name with its final value, in the order of the script."""
    rules = {name: as_rule(a) for name, a in namespace.get('__annotations__', {}).items() if not name.startswith('_')}
    defaults = {name: namespace[name] for name in rules}
    for name, value in defaults.items():
        assert rules[name].test(value), f"the default {name}={value!r} is not {rules[name].says}"
    config = dict(defaults)
    if '--help' in args or '-h' in args:
        print("usage: python script.py [config_file.py ...] [--key=value ...]\nkeys and their defaults:")
        for key, value in config.items():
            print(f"  --{key}={value!r}")
        sys.exit(0)
    for arg in args:
        if arg.startswith('--'):
            key, sep, text = arg[2:].partition('=')
            if not sep:
                raise UserError(f"{arg}: expected --key=value")
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text
            if isinstance(defaults.get(key), str) and not isinstance(value, str):
                value = text  # a string default takes the text as typed, e.g. --wandb_run_name=2024
            _override(config, defaults, rules, key, value, arg)
        else:
            try:
                with open(arg) as f:
                    source = f.read()
            except OSError as e:
                raise UserError(f"cannot read config file {arg}: {e.strerror}")
            print(f"Overriding config with {arg}:")
            print(source)
            file_names = {}
            exec(compile(source, arg, 'exec'), file_names)
            for key, value in file_names.items():
                if not key.startswith('_') and (value is None or isinstance(value, (int, float, bool, str))):
                    _override(config, defaults, rules, key, value, arg)
    namespace.update(config)
    return config


def _override(config, defaults, rules, key, value, source):
    if key not in config:
        close = difflib.get_close_matches(key, config, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see --help for the keys"
        raise UserError(f"unknown config key '{key}' (in {source}){hint}")
    default, rule = defaults[key], rules[key]  # the script's, not an earlier override's
    if default is not None and not (value is None and rule.allows_none):
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        if type(value) is not type(default):
            raise UserError(f"{key} must be {type(default).__name__} like its default {default!r}, "
                            f"got {value!r} (in {source})")
    if not rule.test(value):
        raise UserError(f"{key}={value!r} must be {rule.says} (in {source})")
    print(f"Overriding: {key} = {value!r}")
    config[key] = value
