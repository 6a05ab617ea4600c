"""
Configuration for the scripts, as in nanoGPT:
$ python train.py config/override_file.py --batch_size=32
A script's settings are its top-level names with an annotation, each set to its default and followed by a comment
that says what it is (--help prints it); the annotation says which values it takes: a type, a typing.Literal of the
values, or a rule of this module:

    batch_size: at_least(1) = 12 # if gradient_accumulation_steps > 1, this is the micro-batch size
    dropout: fraction = 0.0 # for pretraining 0 is good, for finetuning try 0.1+
    dtype: Literal['float32', 'bfloat16', 'float16', None] = None # None: the device's best

Then config = configure(globals(), sys.argv[1:]). Config files are Python and are run as they are (run only ones
you trust); the settings they assign override the defaults. --key=value arguments override both; a value is read as
a Python literal (--batch_size=32, --compile=False, --top_p=None), anything else is a string (--device=cuda:1).
A value keeps its default's type (an int is fine where a float is expected), takes None only where the default is
None or the rule allows it, and must pass the rule: the first value that does not ends the script in one line.
Every number must be one the code can hold: whole numbers below 2**63, floats finite; text holds no NUL character.
"""

import ast
import difflib
import io
import math
import os
import sys
import tokenize
import typing

from errors import UserError

LARGEST = 2**63 - 1  # a whole number torch and numpy take as an int64


class Rule:
    """The values a setting takes: test(value) is true for them, and `says` describes them to the user."""

    def __init__(self, says, test, allows_none=False):
        self.says, self.test, self.allows_none = says, test, allows_none


def _number_like(low):
    if isinstance(low, float):
        return lambda v: not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    return lambda v: not isinstance(v, bool) and isinstance(v, int) and abs(v) <= LARGEST


def at_least(low):
    """Numbers >= low: whole numbers when low is an int (below 2**63), else finite."""
    is_number = _number_like(low)
    limit = "finite" if isinstance(low, float) else "below 2**63"
    return Rule(f"at least {low} ({limit})", lambda v: is_number(v) and v >= low)


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


def _of_type(kind):
    if kind is float:
        return Rule("a finite float", lambda v: isinstance(v, float) and math.isfinite(v))
    if kind is int:
        return Rule("a whole number below 2**63", _number_like(0))
    if kind is str:
        return Rule("text without NUL characters", lambda v: isinstance(v, str) and '\0' not in v)
    return Rule(f"a {kind.__name__}", lambda v: isinstance(v, kind))


def as_rule(annotation):
    if isinstance(annotation, Rule):
        return annotation
    if typing.get_origin(annotation) is typing.Literal:
        return _one_of(*typing.get_args(annotation))
    if isinstance(annotation, type):
        return _of_type(annotation)
    raise TypeError(f"a setting's annotation must be a type or a Rule, not {annotation!r}")


fraction = between(0.0, 1.0, high_open=True)  # dropout and the like: 0 is fine, 1 is not


class Settings(dict):
    """A script's settings, name -> value in the order of the script; `given` holds the names that a config file or
    the command line set (the rest are defaults, or for a resumed run its checkpoint's, see inherit)."""
    given = frozenset()


def configure(namespace, args, explain=None):
    """Applies config files and --key=value args to the settings in namespace (a script's globals()), in place,
    all or nothing. Returns the Settings. --help prints each setting with its default, its rule and its comment;
    explain(settings) may add, for some, what an automatic value resolves to on this machine ({name: text})."""
    rules = {name: as_rule(a) for name, a in namespace.get('__annotations__', {}).items() if not name.startswith('_')}
    defaults = {name: namespace[name] for name in rules}
    for name, value in defaults.items():
        assert rules[name].test(value), f"the default {name}={value!r} is not {rules[name].says}"
    config = Settings(defaults)
    given = set()
    for arg in args:
        if arg in ('--help', '-h'):
            print_help(namespace, config, rules, explain)
            sys.exit(0)
        if arg.startswith('--'):
            key, sep, text = arg[2:].partition('=')
            if not sep:
                raise UserError(f"{_shown(arg)}: expected --key=value")
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):  # MemoryError: a literal too deep
                value = text
            if isinstance(defaults.get(key), str) and not isinstance(value, str):
                value = text  # a string default takes the text as typed, e.g. --wandb_run_name=2024
            _override(config, defaults, rules, key, value, _shown(arg))
            given.add(key)
        else:
            try:
                with open(arg) as f:
                    source = f.read()
            except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: a NUL in the path
                raise UserError(f"cannot read config file {_shown(arg)}: {getattr(e, 'strerror', None) or e}")
            print(f"Overriding config with {arg}:\n{source}", file=sys.stderr)
            file_names = {}
            try:
                exec(compile(source, arg, 'exec'), file_names)
            except Exception as e:  # the file's own mistake: a syntax error, a name it does not define
                raise UserError(f"config file {_shown(arg)} fails: {type(e).__name__}: {_shown(str(e))}")
            for key, value in file_names.items():
                if not key.startswith('_') and (value is None or isinstance(value, (int, float, bool, str))):
                    _override(config, defaults, rules, key, value, _shown(arg))
                    given.add(key)
    config.given = frozenset(given)
    namespace.update(config)
    return config


def _override(config, defaults, rules, key, value, source, say=True):
    if key not in config:
        close = difflib.get_close_matches(key, config, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see --help for the keys"
        raise UserError(f"unknown config key '{_shown(key)}' (in {source}){hint}")
    default, rule = defaults[key], rules[key]  # the script's, not an earlier override's
    if default is not None and not (value is None and rule.allows_none):
        if isinstance(default, float) and type(value) is int and abs(value) <= LARGEST:
            value = float(value)
        if type(value) is not type(default):
            raise UserError(f"{key} must be {type(default).__name__} like its default {default!r}, "
                            f"got {_short(value)} (in {source})")
    if not rule.test(value):
        raise UserError(f"{key}={_short(value)} must be {rule.says} (in {source})")
    if say:
        print(f"Overriding: {key} = {value!r}", file=sys.stderr)
    config[key] = value


def _shown(text):
    """text as typed, but a character that would not print (a newline, a NUL) as its escape: an error stays one line."""
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...{text[-10:]} ({len(text)} characters)"


def inherit(namespace, config, saved, source, keep=()):
    """A resumed run's settings: every setting that no config file or --key=value set (config.given) takes its value
    from saved (the config a checkpoint records, ours or nanoGPT's), but those in keep (the machine's: device, dtype,
    ...), which keep this script's defaults. Each value must still pass its rule. Updates namespace and config;
    returns {name: value} of what was taken."""
    rules = {name: as_rule(a) for name, a in namespace['__annotations__'].items() if name in config}
    defaults = {name: namespace[name] for name in rules}  # not yet overridden by this function
    taken = {}
    for key, value in saved.items():
        if key in config and key not in config.given and key not in keep and value != config[key]:
            _override(config, defaults, rules, key, value, source, say=False)
            taken[key] = value
    namespace.update(config)
    return taken


def setting_comments(path):
    """{name: the comment on the line where its default is set} for the annotated names of the script at path."""
    with open(path, encoding='utf-8') as f:
        source = f.read()
    comments = {token.start[0]: token.string.lstrip('#').strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    return {node.target.id: comments.get(node.end_lineno, '') for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}


def print_help(namespace, config, rules, explain):
    script = os.path.basename(namespace.get('__file__') or sys.argv[0])
    comments = setting_comments(namespace['__file__']) if namespace.get('__file__') else {}
    here = explain(config) if explain else {}
    print(f"usage: python {script} [config_file.py ...] [--key=value ...]\n"
          f"settings, each --name=default [the values it takes] and what it is; a value is a Python literal "
          f"(--batch_size=32, --compile=False, --top_k=None) or text (--device=cuda:1):")
    for key, value in config.items():
        says = f"[{rules[key].says}]"
        text = ' '.join(part for part in (comments.get(key), here.get(key)) if part)
        print(f"  --{key}={value!r}  {says}\n      {text}" if text else f"  --{key}={value!r}  {says}")
