"""configurator.configure: config files and --key=value over a script's settings, their rules, and the one-line
errors."""

from typing import Literal

import pytest

from configurator import at_least, between, configure, fraction, inherit, optional, setting_comments
from helpers import REPO, run_in_process
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
    (at_least(1), 12, ['1', '7', str(2**63 - 1)], ['0', '-3', str(2**63), '1' + '0' * 30],
     r"at least 1 \(below 2\*\*63\)"),
    (at_least(0.0), 6e-4, ['0', '0.5', '1e308'], ['-1e-9', '1e999', '-1e999'], r"at least 0.0 \(finite\)"),
    (float, 0.1, ['-1.5', '0'], ['1e999'], "a finite float"),
    (int, 3, ['-3', str(-2**63 + 1)], [str(2**63)], r"a whole number below 2\*\*63"),
    (fraction, 0.0, ['0', '0.999'], ['1', '1.0', '-0.1'], r"in \[0.0, 1.0\)"),
    (between(0.0, 1.0, low_open=True), 0.5, ['1', '1e-9'], ['0', '1.5'], r"in \(0.0, 1.0\]"),
    (Literal['float32', 'bfloat16', None], None, ['float32', 'None'], ['float64', '3'],
     "one of 'float32', 'bfloat16', None"),
    (Literal[True, False, None], None, ['True', 'None'], ['1', '0'], "one of True, False, None"),
    (optional(at_least(1)), 200, ['None', '1'], ['0'], r"at least 1 \(below 2\*\*63\), or None"),
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
    with pytest.raises(UserError, match=rf"^batch_size=0 must be at least 1 \(below 2\*\*63\) \(in {path}\)$"):
        configure(script(batch_size=(at_least(1), 12)), [str(path)])


def test_a_default_that_breaks_its_rule_is_a_bug():
    with pytest.raises(AssertionError):
        configure(script(batch_size=(at_least(1), 0)), [])


def test_help_lists_keys_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit:
        configure(defaults(), ['--help'])
    assert exit.value.code == 0
    assert "  --batch_size=12  [a whole number below 2**63]\n" in capsys.readouterr().out


def test_help_names_the_script_and_says_what_each_setting_is_from_its_comment(tmp_path, capsys):
    path = tmp_path / 'my_script.py'
    path.write_text("from configurator import at_least\n"
                    "batch_size: at_least(1) = 12 # rows of a micro-batch\n"
                    "device: str = 'cpu' # where it runs\n")
    ns = {'__file__': str(path)}
    exec(compile(path.read_text(), str(path), 'exec'), ns)
    with pytest.raises(SystemExit):
        configure(ns, ['--help'], explain=lambda config: {'device': f"(here: {config['device']}, no GPU)"})
    out = capsys.readouterr().out
    assert out.startswith("usage: python my_script.py [config_file.py ...] [--key=value ...]\n")
    assert "  --batch_size=12  [at least 1 (below 2**63)]\n      rows of a micro-batch\n" in out
    assert "  --device='cpu'  [text without NUL characters]\n      where it runs (here: cpu, no GPU)\n" in out


def test_text_with_a_nul_character_is_refused():
    with pytest.raises(UserError, match=r"^device='a\\x00b' must be text without NUL characters"):
        configure(defaults(), ['--device=a\0b'])


@pytest.mark.parametrize('arg, error', [
    ('--batch_size=\n', "batch_size must be int like its default 12, got '\\n' (in --batch_size=\\n)"),
    ('--batch\nsize=1', "unknown config key 'batch\\nsize' (in --batch\\nsize=1); did you mean batch_size?"),
    ('--batch\n', "--batch\\n: expected --key=value"),
    ('a\r.py', "cannot read config file a\\r.py: No such file or directory")])
def test_what_the_user_typed_is_shown_on_the_error_line_with_its_newlines_escaped(arg, error):
    # found by tests/test_settings_fuzz.py: a newline in a value made a two-line error
    with pytest.raises(UserError) as e:
        configure(defaults(), [arg])
    assert str(e.value) == error


def test_a_config_file_that_fails_is_one_line(tmp_path):
    path = tmp_path / 'broken.py'
    path.write_text("batch_size = undefined_name\n")
    with pytest.raises(UserError, match=rf"^config file {path} fails: NameError: name 'undefined_name' is not defined$"):
        configure(defaults(), [str(path)])


def test_given_holds_what_files_and_the_command_line_set(tmp_path):
    path = tmp_path / 'c.py'
    path.write_text("device = 'cpu'\n")
    assert configure(defaults(), [str(path), '--batch_size=8']).given == {'device', 'batch_size'}


def test_inherit_takes_what_was_not_given_but_the_machine_settings():
    ns = defaults()
    config = configure(ns, ['--batch_size=8'])
    saved = dict(batch_size=64, learning_rate=1e-3, compile=False, device='cuda:3', unknown_key=1, top_k=None)
    taken = inherit(ns, config, saved, 'the checkpoint', keep=('device',))
    assert taken == dict(learning_rate=1e-3, compile=False)
    assert (ns['batch_size'], ns['learning_rate'], ns['compile'], ns['device']) == (8, 1e-3, False, 'cuda')
    assert config['learning_rate'] == 1e-3


def test_inherit_checks_the_saved_values_by_the_rules():
    ns = defaults()
    config = configure(ns, [])
    with pytest.raises(UserError, match=r"^batch_size must be int like its default 12, got 'x' \(in ckpt.pt\)$"):
        inherit(ns, config, dict(batch_size='x'), 'ckpt.pt')


@pytest.mark.parametrize('script', ['train.py', 'sample.py', 'export.py', 'eval_hellaswag.py', 'plot.py', 'bench.py'])
def test_each_scripts_help_names_it_and_describes_every_setting(script, tmp_path):
    result = run_in_process(script, '--help', cwd=tmp_path)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"usage: python {script} [config_file.py ...] [--key=value ...]"
    settings = [i for i, line in enumerate(lines) if line.startswith('  --')]
    assert len(settings) == len(setting_comments(REPO / script)) >= 1
    assert all(lines[i + 1].startswith('      ') and len(lines[i + 1].strip()) > 5 for i in settings)  # described
    if 'dtype' in result.stdout:  # the automatic values, resolved for this machine
        assert "(here, on cpu: float32)" in result.stdout and "(detected here: cpu," in result.stdout
