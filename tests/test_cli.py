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


def test_eval_breaks_accuracy_down_by_tier_and_tool_use(capsys, tmp_path):
    import json

    from trainer_fixtures import tiny_random_policy

    policy = tiny_random_policy(tmp_path / "policy")
    out = tmp_path / "eval.json"
    assert main(["eval", policy, "--limit", "6", "--max-new-tokens", "8", "--by", "tier", "--out", str(out)]) == 0
    breakdown = json.loads(out.read_text())["breakdown"]
    assert sum(row["completions"] for row in breakdown) == 6 and {row["tier"] for row in breakdown} <= {1, 2, 3}
    assert main(["eval", policy, "--limit", "2", "--max-new-tokens", "4", "--by", "colour"]) == 2
    assert "cannot break down by 'colour'" in capsys.readouterr().err
