import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


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
    allowed = {"train", "bench", "doctor", "tune", "cli", "api.py", "__main__.py"}
    offenders = []
    for path in (ROOT / "raycl").rglob("*.py"):
        rel = path.relative_to(ROOT / "raycl")
        if rel.parts[0] in allowed or rel.name == "server.py":
            continue
        if re.search(r"^\s*(import ray\b|from ray\b)", path.read_text(), re.M):
            offenders.append(str(rel))
    assert offenders == []


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[:2] == ["Quick start", "Your own images"] and "License and citation" in headings


def test_every_relative_link_of_the_readme_names_a_file_that_exists():
    text = (ROOT / "README.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert links and [t for t in links if not (ROOT / t).exists()] == []


# What a reader meets must speak of the software, not of how it was built.
HISTORY = re.compile(r"\b(sessions?|issues?|turns?) \d+\b|no gpu was lent|kept for the record", re.I)


def _prose() -> dict[str, str]:
    """Every text a user or maintainer reads: docs, README, BENCHMARKS, code, tests, jobs, recipes,
    cluster configs, and the notebooks' markdown cells."""
    import json

    texts = {p: (ROOT / p).read_text() for p in ("README.md", "BENCHMARKS.md", "CHANGELOG.md", "CONTRIBUTING.md")}
    for folder, pattern in (("docs", "*.md"), ("raycl", "*.py"), ("raycl", "*.yaml"), ("tests", "*.py"),
                            ("jobs", "*.py"), ("cluster", "*"), ("notebooks", "*.py"), ("examples", "*")):
        for path in (ROOT / folder).rglob(pattern):
            if path.is_file() and "__pycache__" not in path.parts:
                texts[str(path.relative_to(ROOT))] = path.read_text(errors="replace")
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        texts[str(path.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return texts


def test_no_text_a_reader_meets_narrates_the_projects_history():
    found = [f"{name}: {m.group(0)!r}" for name, text in _prose().items() for m in HISTORY.finditer(text)
             if name != "tests/product/test_readme.py"]
    assert found == []


def test_the_history_check_can_fail():
    assert HISTORY.search("tuned in Session 12 (issue 24)") and HISTORY.search("No GPU was lent")
    assert not HISTORY.search("the issue with 3 workers returns 0")
