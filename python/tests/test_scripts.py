"""Python scripts run under CPython for WASI, as `crowdcloud submit script.py` runs them: the
runtime is the module, the script is mounted at `/job`, its packages at `/packages`.

The runtime is `CROWDCLOUD_TEST_PYTHON_WASM`, which `scripts/test` sets from
`scripts/python-runtime`; without it these tests fail and say so, as the Rust one does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import crowdcloud

from conftest import guest

# Counts the words of the input it is given and hashes it, with the standard library.
ANALYZE_PY = """import hashlib, json, os, sys
name = sys.argv[1]
data = open(os.path.join("/input", name), "rb").read()
summary = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "words": len(data.split())}
with open("/output/" + name + ".json", "w") as out:
    json.dump(summary, out, sort_keys=True)
print(name, summary["words"])
"""
TEXTS = {"a.txt": "the quick brown fox\n", "b.txt": "jumps over\nthe dog\n"}


@pytest.fixture(scope="module")
def python_wasm() -> Path:
    path = os.environ.get("CROWDCLOUD_TEST_PYTHON_WASM")
    if not path:
        pytest.fail(
            "CROWDCLOUD_TEST_PYTHON_WASM is not set; run the tests through scripts/test (or "
            "scripts/python-sdk-test with it set), which fetches CPython for WASI with "
            "scripts/python-runtime",
            pytrace=False,
        )
    return Path(path)


def test_a_script_runs_over_input_files_and_its_outputs_are_exactly_right(
    client: crowdcloud.Client, python_wasm: Path, tmp_path: Path
) -> None:
    script = tmp_path / "analyze.py"
    script.write_text(ANALYZE_PY)
    texts = tmp_path / "texts"
    texts.mkdir()
    for name, text in TEXTS.items():
        (texts / name).write_text(text)
    submitted = client.submit(script, inputs=texts, args=["{name}"], runtime=python_wasm)
    status = client.wait(submitted, timeout_secs=300)
    assert status.tasks.succeeded == 2, status
    assert status.name == "analyze"
    for task, (name, text) in zip(client.tasks(submitted), sorted(TEXTS.items())):
        assert task.args == ["/job/analyze.py", name]
        summary = {
            "name": name,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "words": len(text.split()),
        }
        assert client.output(task, f"{name}.json") == json.dumps(summary, sort_keys=True).encode()
        assert client.stdout(task) == f"{name} {summary['words']}\n".encode()


def test_a_script_imports_from_its_packages(
    client: crowdcloud.Client, python_wasm: Path, tmp_path: Path
) -> None:
    (tmp_path / "lib" / "wordstats").mkdir(parents=True)
    (tmp_path / "lib" / "wordstats" / "__init__.py").write_text(
        "def longest(words):\n    return max(words, key=len)\n"
    )
    script = tmp_path / "longest.py"
    script.write_text("import sys, wordstats\nprint(wordstats.longest(sys.argv[1:]))\n")
    submitted = client.submit(
        script,
        tasks=[crowdcloud.Task(args=["a", "abc", "ab"])],
        packages=tmp_path / "lib",
        runtime=python_wasm,
    )
    assert client.wait(submitted, timeout_secs=300).succeeded
    (task,) = client.tasks(submitted)
    assert client.stdout(task) == b"abc\n"


def test_the_runtime_is_found_where_the_cli_installs_it_and_only_the_pinned_build(
    pool, python_wasm: Path, tmp_path: Path
) -> None:
    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    data_dir = tmp_path / "data"
    with pool.coordinator.client(data_dir=data_dir) as client:
        with pytest.raises(crowdcloud.UsageError, match="runtimes add python"):
            client.plan(script)
        with pytest.raises(crowdcloud.UsageError, match="not the python build"):
            client.plan(script, runtime=guest("probe"))
        added = pool.coordinator.cli(["runtimes", "add", "python", str(python_wasm)], data_dir)
        assert added.returncode == 0, added.stderr.decode()
        plan = client.plan(script)
    assert plan.module == data_dir / "runtimes" / crowdcloud.PYTHON.file_name
    assert plan.mounts == [("/job", [("hello.py", script)])]
    assert plan.tasks[0].args == ["/job/hello.py"]
