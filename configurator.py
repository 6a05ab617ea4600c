"""
Configuration for the scripts, as in nanoGPT:
$ python train.py config/override_file.py --batch_size=32
A script defines its defaults as plain top-level names, then calls configure(globals(), sys.argv[1:]).
Config files are Python and are run as they are (run only ones you trust); the names they define override the
defaults. --key=value arguments override both; a value is read as a Python literal (--batch_size=32,
--compile=False, --top_p=None), anything else is a string (--device=cuda:1). Every name must be one of the
script's defaults and keep its type (an int is fine where a float is expected); None only where the default is None.

Importing this module also makes a UserError, a mistake the user can fix, end any script with one line on stderr
and exit code 1, without a traceback.
"""

import ast
import difflib
import sys
import types


class UserError(Exception):
    """A mistake the user can fix; the message says what is wrong and how to fix it."""


def _report(exc_type, exc, tb):
    if issubclass(exc_type, UserError):
        print(f"error: {exc}", file=sys.stderr)
    else:
        sys.__excepthook__(exc_type, exc, tb)


sys.excepthook = _report


def configure(namespace, args, unchecked=()):
    """Applies config files and --key=value args to the defaults in namespace (a script's globals()), in place.
    unchecked: names that take any value, as if their default were None (e.g. sample.py's top_k, 200 or None);
    the script checks them. Returns the config: every default's name with its final value."""
    config = {k: v for k, v in namespace.items()
              if not k.startswith('_') and (v is None or isinstance(v, (int, float, bool, str)))}
    defaults = {**config, **dict.fromkeys(unchecked)}
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
            _override(config, defaults, key, value, arg)
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
                if not key.startswith('_') and not isinstance(value, (types.ModuleType, types.FunctionType, type)):
                    _override(config, defaults, key, value, arg)
    namespace.update(config)
    return config


def _override(config, defaults, key, value, source):
    if key not in config:
        close = difflib.get_close_matches(key, config, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see --help for the keys"
        raise UserError(f"unknown config key '{key}' (in {source}){hint}")
    default = defaults[key]  # the script's, not an earlier override's: --top_p=0.9 --top_p=None is fine
    if default is not None:
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        if type(value) is not type(default):
            raise UserError(f"{key} must be {type(default).__name__} like its default {default!r}, "
                            f"got {value!r} (in {source})")
    print(f"Overriding: {key} = {value!r}")
    config[key] = value
