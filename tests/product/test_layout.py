"""The package's shape, as CONTRIBUTING.md states it: small files and functions, one place that
builds Ray Train runs, and no method named outside methods/."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "raycl").rglob("*.py"))


def test_no_file_is_over_400_lines_and_no_function_over_60():
    long_files = [str(p.relative_to(ROOT)) for p in SOURCES if len(p.read_text().splitlines()) > 400]
    long_functions = [
        f"{p.relative_to(ROOT)}:{node.name}"
        for p in SOURCES
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60
    ]
    assert long_files == [] and long_functions == []


def test_raycl_builds_a_torch_trainer_in_one_place():
    calls = [str(p.relative_to(ROOT)) for p in SOURCES for _ in re.finditer(r"\bTorchTrainer\(", p.read_text())]
    assert calls == ["raycl/train/launch.py"]


def test_no_code_outside_methods_tests_a_methods_name_or_attribute():
    """Strings and attribute reads only (docstrings and comments may cite a paper): a method's name
    as a string literal, or an attribute only one method has, in data/, train/, eval/, bench/ or config/."""
    import dataclasses

    from raycl.methods import REGISTRY, Method, View

    names = set(REGISTRY)
    default = (ROOT / "raycl/config/sections.py", Method.Config.model_fields["name"].default)  # the schema's
    own = {a for cls in REGISTRY.values() for a in vars(cls) if not a.startswith("_")} - set(dir(Method))
    own |= {k for cls in REGISTRY.values() for k in cls.Config.model_fields} - set(Method.Config.model_fields)
    # what every method gives the data pipeline (its View fields), and Ray Train's Result.checkpoint
    own -= {f.name for f in dataclasses.fields(View)} | {"checkpoint"}
    found = []
    for room in ("data", "train", "eval", "bench", "config"):
        for p in sorted((ROOT / "raycl" / room).rglob("*.py")):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Constant) and node.value in names and (p, node.value) != default:
                    found.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.value!r}")
                if isinstance(node, ast.Attribute) and node.attr in own:
                    found.append(f"{p.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert found == [], found
