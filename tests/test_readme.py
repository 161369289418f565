import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def quick_start_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quick_start_has_two_commands_and_ci_runs_the_second_verbatim():
    cmds = quick_start_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "raycl demo" in cmds[0] and "pytest" in cmds[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert cmds[1] in ci


def test_only_train_and_entry_points_import_ray():
    allowed = {"train", "bench", "tune.py", "cli.py", "api.py", "__main__.py"}
    offenders = []
    for path in (ROOT / "raycl").rglob("*.py"):
        rel = path.relative_to(ROOT / "raycl")
        if rel.parts[0] in allowed or rel.name == "server.py":
            continue
        if re.search(r"^\s*(import ray\b|from ray\b)", path.read_text(), re.M):
            offenders.append(str(rel))
    assert offenders == []
