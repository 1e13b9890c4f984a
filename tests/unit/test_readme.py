"""The README is a contract: its option table is the parser's, and CI runs the README's test command."""

from pathlib import Path

from ossmount.options import format_options_markdown

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_option_table_matches_the_parser():
    assert format_options_markdown().strip() in README, (
        "README.md's option table is stale: regenerate it with "
        "python -c 'from ossmount.options import format_options_markdown as f; print(f())'"
    )


def test_help_lists_every_option_of_the_readme_table():
    """`ossmount --help` and README's table list the same options, each with its meaning or why it does nothing."""
    import subprocess
    import sys

    from ossmount.options import describe_options

    help_text = subprocess.run([sys.executable, "-m", "ossmount", "--help"], capture_output=True, text=True,
                               check=True).stdout
    for name, _, meaning in describe_options():
        line = next((line for line in help_text.splitlines() if line.strip().startswith(name + " ")), None)
        assert line is not None, f"{name} missing from ossmount --help"
        assert meaning[:40] in line
        assert f"`{name.replace('|', chr(92) + '|')}`" in README


def test_ci_runs_exactly_the_readme_test_command():
    readme_block = README.split("```sh", 1)[1].split("```", 1)[0]
    test_line = next(line for line in readme_block.splitlines() if "pytest" in line)
    test_command = test_line.split("#", 1)[0].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_opens_with_demo_and_test_commands():
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "ossmount demo" in commands[0] and "pytest" in commands[1]
