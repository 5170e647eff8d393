"""Shell completion through the real command, as bash, zsh and fish call it."""

from __future__ import annotations

from support.project import Project


def complete(project: Project, words: str, shell: str = "bash") -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = project.run(_BATCHDEPS_COMPLETE=f"{shell}_complete", COMP_WORDS=words,
                         COMP_CWORD=str(cword))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_subcommands_complete(project: Project) -> None:
    assert complete(project, "batchdeps st") == ["status"]
    assert {"run", "status", "graph", "list"} <= set(complete(project, "batchdeps "))


def test_task_names_complete_and_run_leaves_out_external_tasks(project: Project) -> None:
    assert complete(project, "batchdeps run Ma") == ["Many"]
    runnable = complete(project, "batchdeps run ")
    assert "D" in runnable and "Source" not in runnable
    assert "Source" in complete(project, "batchdeps status ")


def test_a_tasks_parameters_and_the_commands_options_complete(project: Project) -> None:
    flags = complete(project, "batchdeps run D --")
    assert {"--day", "--count", "--force-from", "--dry-run"} <= set(flags)
    assert complete(project, "batchdeps run D --co") == ["--count", "--config"]
    assert complete(project, "batchdeps status D --de") == ["--depth", "--debug"]
    assert complete(project, "batchdeps graph D --format ") == ["dot", "mermaid", "json"]


def test_zsh_and_fish_protocols_answer_too(project: Project) -> None:
    zsh = project.run(_BATCHDEPS_COMPLETE="zsh_complete", COMP_WORDS="batchdeps run Ma",
                      COMP_CWORD="2")
    assert "Many" in zsh.stdout.split("\n")
    fish = project.run(_BATCHDEPS_COMPLETE="fish_complete", COMP_WORDS="batchdeps run Ma",
                       COMP_CWORD="Ma")
    assert fish.stdout.startswith("plain,Many")


def test_the_documented_setup_scripts_are_printed(project: Project) -> None:
    for shell in ("bash", "zsh", "fish"):
        script = project.run(_BATCHDEPS_COMPLETE=f"{shell}_source")
        assert script.returncode == 0 and "_BATCHDEPS_COMPLETE" in script.stdout


def test_completion_in_a_folder_without_config_stays_quiet(project: Project) -> None:
    (project.root / "config.toml").write_text("[batchdeps]\nmodules = ['nowhere']\n")
    assert complete(project, "batchdeps run ") == []


def test_enum_parameter_values_complete(project: Project) -> None:
    project.write("pipelines/colours.py", """
        import enum
        import batchdeps as bd

        class Colour(enum.Enum):
            red = 1
            green = 2

        class Paint(bd.Task):
            colour = bd.EnumParameter(Colour)
    """)
    assert complete(project, "batchdeps run Paint --colour ") == ["red", "green"]
    assert complete(project, "batchdeps run Paint --colour g") == ["green"]
