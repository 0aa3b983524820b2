from rich.console import Console

from paretopo import showcase
from paretopo.cli import build_parser, main


def test_showcase_prints_ranks_advantages_and_meta_reward(capsys):
    console = Console(width=100, record=True)
    showcase.run(console)
    text = console.export_text()
    assert "Pareto rank" in text and "pareto_rank" in text and "next r_pareto" in text


def test_cli_commands_and_help(capsys):
    assert main(["showcase"]) == 0
    assert "Pareto rank" in capsys.readouterr().out
    help_text = build_parser().format_help()
    assert "demo" in help_text and "showcase" in help_text


def test_expected_failures_print_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "no LoRA adapter" in capsys.readouterr().err
