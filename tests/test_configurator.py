"""configurator.configure: config files and --key=value over a script's settings, their rules, and the one-line
errors."""

from typing import Literal

import pytest

from configurator import at_least, between, configure, fraction, optional
from errors import UserError

IMPORTED = 'a constant of a module the script imports'


def defaults():
    """A script's globals: its settings (annotated), and names it imported or defined that are not settings."""
    return dict(__annotations__=dict(batch_size=int, learning_rate=float, compile=bool, device=str,
                                     wandb_run_name=str, top_k=optional(at_least(1))),
                batch_size=12, learning_rate=6e-4, compile=True, device='cuda', wandb_run_name='gpt2', top_k=None,
                IMPORTED=IMPORTED, helper=len)


def test_literal_values_override_defaults():
    ns = defaults()
    config = configure(ns, ['--batch_size=32', '--compile=False', '--learning_rate=1e-3'])
    assert (ns['batch_size'], ns['compile'], ns['learning_rate']) == (32, False, 1e-3)
    assert config == dict(batch_size=32, learning_rate=1e-3, compile=False, device='cuda', wandb_run_name='gpt2',
                          top_k=None)


def test_text_that_is_no_literal_is_a_string():
    ns = defaults()
    configure(ns, ['--device=cuda:1'])
    assert ns['device'] == 'cuda:1'


def test_string_default_takes_the_text_as_typed():
    ns = defaults()
    configure(ns, ['--wandb_run_name=2024'])
    assert ns['wandb_run_name'] == '2024'


def test_int_is_accepted_where_a_float_is_expected():
    ns = defaults()
    configure(ns, ['--learning_rate=1'])
    assert ns['learning_rate'] == 1.0 and type(ns['learning_rate']) is float


def test_value_may_contain_equals_sign():
    ns = defaults()
    configure(ns, ['--wandb_run_name=lr=3e-4,bs=8'])
    assert ns['wandb_run_name'] == 'lr=3e-4,bs=8'


def test_optional_takes_none_and_what_its_rule_takes():
    ns = defaults()
    configure(ns, ['--top_k=200'])
    assert ns['top_k'] == 200
    ns = defaults()
    configure(ns, ['--top_k=None'])
    assert ns['top_k'] is None


def test_config_file_overrides_and_command_line_overrides_the_file(tmp_path):
    path = tmp_path / 'my_config.py'
    path.write_text("import math\nbatch_size = 64\ndevice = 'cpu'\ndef helper(): pass\n")
    ns = defaults()
    configure(ns, [str(path), '--batch_size=8'])
    assert (ns['batch_size'], ns['device']) == (8, 'cpu')


def test_unknown_key_suggests_the_closest():
    with pytest.raises(UserError, match=r"^unknown config key 'batchsize' \(in --batchsize=8\); "
                                        r"did you mean batch_size\?$"):
        configure(defaults(), ['--batchsize=8'])


def test_unknown_key_without_a_close_one_points_to_help():
    with pytest.raises(UserError, match=r"^unknown config key 'zzz' \(in --zzz=1\); see --help for the keys$"):
        configure(defaults(), ['--zzz=1'])


def test_unknown_key_in_config_file_names_the_file(tmp_path):
    path = tmp_path / 'bad.py'
    path.write_text("lerning_rate = 1e-3\n")
    with pytest.raises(UserError, match=rf"^unknown config key 'lerning_rate' \(in {path}\); "
                                        rf"did you mean learning_rate\?$"):
        configure(defaults(), [str(path)])


def test_wrong_type_is_an_error():
    with pytest.raises(UserError, match=r"^batch_size must be int like its default 12, got 'abc' \(in --batch_size=abc\)$"):
        configure(defaults(), ['--batch_size=abc'])


def test_bool_is_not_an_int():
    with pytest.raises(UserError, match=r"^compile must be bool like its default True, got 1"):
        configure(defaults(), ['--compile=1'])


def test_float_is_not_an_int():
    with pytest.raises(UserError, match=r"^batch_size must be int like its default 12, got 1.5"):
        configure(defaults(), ['--batch_size=1.5'])


def test_missing_config_file_is_an_error():
    with pytest.raises(UserError, match=r"^cannot read config file nope\.py: No such file or directory$"):
        configure(defaults(), ['nope.py'])


def test_flag_without_value_is_an_error():
    with pytest.raises(UserError, match=r"^--compile: expected --key=value$"):
        configure(defaults(), ['--compile'])


def test_error_changes_nothing():
    ns = defaults()
    with pytest.raises(UserError):
        configure(ns, ['--batch_size=32', '--nope=1'])
    assert {k: v for k, v in ns.items() if k != '__annotations__'} == \
        {k: v for k, v in defaults().items() if k != '__annotations__'}


def test_names_without_an_annotation_are_not_settings(capsys):
    ns = defaults()
    with pytest.raises(UserError, match=r"^unknown config key 'IMPORTED'"):
        configure(ns, ['--IMPORTED=1'])
    with pytest.raises(SystemExit):
        configure(ns, ['--help'])
    assert 'IMPORTED' not in capsys.readouterr().out
    assert 'IMPORTED' not in configure(defaults(), [])


def script(**annotations_and_defaults):
    annotations = {k: a for k, (a, _) in annotations_and_defaults.items()}
    return dict(__annotations__=annotations, **{k: d for k, (_, d) in annotations_and_defaults.items()})


@pytest.mark.parametrize("rule, default, good, bad, says", [
    (at_least(1), 12, ['1', '7'], ['0', '-3'], "at least 1"),
    (at_least(0.0), 6e-4, ['0', '0.5'], ['-1e-9'], "at least 0.0"),
    (fraction, 0.0, ['0', '0.999'], ['1', '1.0', '-0.1'], r"in \[0.0, 1.0\)"),
    (between(0.0, 1.0, low_open=True), 0.5, ['1', '1e-9'], ['0', '1.5'], r"in \(0.0, 1.0\]"),
    (Literal['float32', 'bfloat16', None], None, ['float32', 'None'], ['float64', '3'],
     "one of 'float32', 'bfloat16', None"),
    (Literal[True, False, None], None, ['True', 'None'], ['1', '0'], "one of True, False, None"),
    (optional(at_least(1)), 200, ['None', '1'], ['0'], "at least 1, or None"),
])
def test_rules_take_the_values_they_say(rule, default, good, bad, says):
    for text in good:
        configure(script(x=(rule, default)), [f'--x={text}'])
    for text in bad:
        with pytest.raises(UserError, match=rf"^x=.* must be {says} \(in --x={text}\)$|^x must be"):
            configure(script(x=(rule, default)), [f'--x={text}'])


def test_a_rule_is_checked_for_config_files_too(tmp_path):
    path = tmp_path / 'bad.py'
    path.write_text("batch_size = 0\n")
    with pytest.raises(UserError, match=rf"^batch_size=0 must be at least 1 \(in {path}\)$"):
        configure(script(batch_size=(at_least(1), 12)), [str(path)])


def test_a_default_that_breaks_its_rule_is_a_bug():
    with pytest.raises(AssertionError):
        configure(script(batch_size=(at_least(1), 0)), [])


def test_help_lists_keys_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit:
        configure(defaults(), ['--help'])
    assert exit.value.code == 0
    assert "  --batch_size=12\n" in capsys.readouterr().out
