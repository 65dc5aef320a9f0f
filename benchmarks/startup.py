"""Benchmark how fast gonogo's commands start and how much memory a web-only process holds at rest.

Each command runs in a fresh interpreter, as a user runs it: wall seconds of the whole process and
its CPU seconds (user + system, from ``getrusage`` of the finished child), median and minimum over
the rounds. On a shared or loaded machine the wall time mostly measures waiting for a core; the CPU
time is what the command itself costs, and on an idle machine the two are close. Then one more
run with ``python -X importtime`` says where the time goes: the modules with the largest
cumulative import time, and whether pandas, scikit-learn, scipy, matplotlib, numpy, githubkit,
SQLAlchemy or Starlette were imported at all (none of the three light commands needs them). ``gonogo
model explain`` of the last row of a simulated history (issue #14; 20,000 rows by default, the model
trained on it once by ``gonogo model train`` before the rounds) is measured the same way: it does
need numpy, pandas and scikit-learn, whose import is most of its cost. Last, ``gonogo serve
--workers 0`` (fly.toml's ``web`` process) is started against an unreachable GitHub, with the
start-up manifest check and webhook redelivery off, and its resident memory read from /proc after
it has answered /healthz and idled; ``serve`` with workers is measured the same way for comparison.

Targets: ``--help`` and ``policy validate`` under 0.3 s, ``assess`` on a small folder under 0.7 s,
``model explain`` under 1 s, ``serve --workers 0`` under 120 MiB at rest. Prints a table and the
import summary; exits 0 whatever the figures (this is a report, not a test).

    .venv/bin/python benchmarks/startup.py [--repeat 5] [--explain-rows 20000] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "sklearn", "scipy", "matplotlib", "numpy", "githubkit", "sqlalchemy", "starlette")
TARGETS = {"--help": 0.3, "policy validate": 0.3, "assess (1 report)": 0.7, "model explain": 1.0}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def _commands(folder: Path, explain_rows: int) -> dict[str, list[str]]:
    policy = folder / "gonogo.yml"
    policy.write_text("extends: default\n")
    reports = folder / "reports"
    reports.mkdir()
    shutil.copy(ROOT / "tests/fixtures/corpus/artifacts/junit/go-junit-report/019-report.xml", reports)
    commands = {
        "--help": ["--help"],
        "policy validate": ["policy", "validate", str(policy)],
        "assess (1 report)": ["assess", "--artifacts", str(reports)],
    }
    if explain_rows:
        commands["model explain"] = _explain_command(folder, explain_rows)
    return commands


def _explain_command(folder: Path, rows: int) -> list[str]:
    """Write a simulated history and a model trained on it; return the arguments explaining its last row."""
    sys.path.insert(0, str(ROOT))
    from tests.simulate_history import simulate_history  # pandas: only for this command's set-up

    history, _ = simulate_history(rows, seed=0)
    history_path, model_path = folder / "history.parquet", folder / "model.bin"
    history.to_parquet(history_path)
    subprocess.run([sys.executable, "-m", "github_app", "model", "train", "--history", str(history_path),
                    "--output", str(model_path)], cwd=folder, env=_env(), capture_output=True, check=True)  # fmt: skip
    return ["model", "explain", "--model", str(model_path), "--history", str(history_path),
            "--row", str(history["deployment_id"].iloc[-1])]


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str], cwd: Path) -> tuple[float, float]:
    """Run one command in a fresh interpreter; return its wall and CPU (user + system) seconds."""
    cpu_before = _cpu_of_children()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "github_app", *args], cwd=cwd, env=_env(), capture_output=True, check=False)
    return time.perf_counter() - started, _cpu_of_children() - cpu_before


def _imports(args: list[str], cwd: Path) -> dict[str, object]:
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "github_app", *args], cwd=cwd, env=_env(),
                         capture_output=True, text=True, check=False)  # fmt: skip
    rows = []
    for line in run.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            rows.append((int(found.group(2)), len(found.group(3)), found.group(4)))
    top = sorted((r for r in rows if r[1] <= 3), reverse=True)[:8]  # near the top of the tree: what was asked for
    loaded = {r[2].split(".")[0] for r in rows}
    return {"total_ms": round(sum(r[0] for r in rows if r[1] == 1) / 1000),
            "heavy": sorted(h for h in HEAVY if h in loaded),
            "top": [f"{name} {us / 1000:.0f} ms" for us, _, name in top]}  # fmt: skip


# `policy validate`, one stage after another in one fresh interpreter: what each costs in CPU.
VALIDATE_STAGES = (
    ("interpreter start-up (site, to the first line)", ""),
    ("click", "import click"),
    ("github_app.cli and its logging set-up", "import github_app.cli, github_app.logs"),
    ("PyYAML", "import yaml"),
    ("pydantic", "import pydantic"),
    ("pydantic's model machinery, loaded on first use",
     "import pydantic.main, pydantic._internal._generate_schema, pydantic.types"),
    ("pydantic's plugin lookup (importlib.metadata)", "from pydantic.plugin._loader import get_plugins\nget_plugins()"),
    ("rules.policy: freeze windows, building its models", "import rules.policy"),
    ("reading and validating a file over its pack",
     "from rules.policy import load_policy_text\nload_policy_text('extends: default\\n', source='gonogo.yml')"),
)  # fmt: skip


def _explain_stages(args: list[str]) -> tuple[tuple[str, str], ...]:
    """The stages of `model explain` with the given arguments, each step as the command takes it."""
    option = dict(zip(args[2::2], args[3::2], strict=True))
    model, history, row = option["--model"], option["--history"], option["--row"]
    return (
        ("interpreter start-up (site, to the first line)", ""),
        ("click and github_app.cli", "import click, github_app.cli, github_app.logs"),
        ("numpy", "import numpy"),
        ("pandas", "import pandas"),
        ("the command's modules: scorer.risk explain, features, lean",
         "import github_app.commands.model, scorer.risk.explain, scorer.risk.features, scorer.risk.lean"),
        ("reading the model's lean copy (no scikit-learn)",
         (f"from pathlib import Path; from github_app.commands.model import _scoring_model; "
         f"trained = _scoring_model(Path({model!r}))")),
        ("reading the history, checking the repository's rows up to the row",
         f"context, target = github_app.commands.model._explain_context(Path({history!r}), {row!r})"),
        ("features of those rows",
         "from scorer.risk.features import build_features; features_row = build_features(context).loc[target]"),
        ("prediction and explanation", ("from scorer.risk.explain import explain, risk_estimate; "
                                       "risk_estimate(trained, features_row, top=10); explain(trained, features_row, top=10)")),
    )  # fmt: skip


def _stages(stages: tuple[tuple[str, str], ...], rounds: int, cwd: Path) -> list[tuple[str, float, float]]:
    """(stage, min, median) CPU seconds of each stage, run in turn in each of ``rounds`` fresh interpreters."""
    code = "import time\nT = [time.process_time()]\n"
    for _, statement in stages[1:]:
        code += f"{statement}\nT.append(time.process_time())\n"
    code += "print(*T)"
    per_stage: list[list[float]] = [[] for _ in stages]
    for _ in range(rounds):
        run = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_env(), capture_output=True, text=True,
                             check=True)  # fmt: skip
        marks = [float(t) for t in run.stdout.split()]
        for i, spent in enumerate([marks[0], *(b - a for a, b in itertools.pairwise(marks))]):
            per_stage[i].append(spent)
    return [(name, min(c), statistics.median(c)) for (name, _), c in zip(stages, per_stage, strict=True)]


def _rss_at_rest(workers: int, folder: Path) -> float:
    from github_app.sandbox import generate_key_pair
    from github_app.serving import free_port

    key, _ = generate_key_pair()
    port = free_port()
    env = _env() | {
        "GONOGO_WEBHOOK_SECRET": "startup-benchmark-secret", "GONOGO_APP_ID": "1", "GONOGO_PRIVATE_KEY": key,
        "GONOGO_GITHUB_API_URL": "http://127.0.0.1:9", "GONOGO_CHECK_MANIFEST": "off", "GONOGO_REDELIVERY_SECONDS": "0",
        "GONOGO_DATABASE_URL": f"sqlite:///{folder / f'rss-{workers}.db'}",
    }  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "github_app", "serve", "--port", str(port), "--workers",
                             str(workers)], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("gonogo serve did not start")
            time.sleep(0.2)
        time.sleep(3)  # at rest
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain-rows", type=int, default=20_000,
                        help="rows of the history `model explain` reads (0: leave the command out)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="gonogo-startup-") as tmp:
        folder = Path(tmp)
        commands = _commands(folder, options.explain_rows)
        for args in commands.values():
            _run(args, folder)  # byte-compile and warm the page cache once
        for name, args in commands.items():
            runs = [_run(args, folder) for _ in range(options.repeat)]
            wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
            results[name] = {"median_s": round(statistics.median(wall), 3), "min_s": round(min(wall), 3),
                             "cpu_median_s": round(statistics.median(cpu), 3), "cpu_min_s": round(min(cpu), 3),
                             "target_s": TARGETS[name], **_imports(args, folder)}  # fmt: skip
        stages = {"policy validate": _stages(VALIDATE_STAGES, max(options.repeat, 3) * 3, folder)}
        if "model explain" in commands:
            stages["model explain"] = _stages(_explain_stages(commands["model explain"]), 3, folder)
        for name, rows in stages.items():
            results[f"{name} CPU by stage"] = {stage: {"min_s": round(low, 4), "median_s": round(mid, 4)}
                                               for stage, low, mid in rows}  # fmt: skip
        for workers in (0, 2):
            results[f"serve --workers {workers} RSS"] = {"mib": round(_rss_at_rest(workers, folder), 1),
                                                         "target_mib": 120 if workers == 0 else None}  # fmt: skip
    if options.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'command':24} {'wall median':>11} {'wall min':>9} {'CPU median':>11} {'CPU min':>8} {'target':>7}"
          "  heavy imports")  # fmt: skip
    for name, r in results.items():
        if "median_s" in r:  # type: ignore[operator]
            assert isinstance(r, dict)
            print(f"{name:24} {r['median_s']:10.3f}s {r['min_s']:8.3f}s {r['cpu_median_s']:10.3f}s {r['cpu_min_s']:7.3f}s"
                  f" {r['target_s']:6.1f}s  {', '.join(r['heavy']) or 'none'}")  # fmt: skip
    for name, r in results.items():
        if "mib" in r:  # type: ignore[operator]
            assert isinstance(r, dict)
            target = f"(target {r['target_mib']} MiB)" if r["target_mib"] else ""
            print(f"{name:28} {r['mib']:7.1f} MiB {target}")
    for command, rows in stages.items():
        print(f"\n{command}, CPU by stage (stages in turn in one fresh interpreter per round; min, median):")
        for name, low, mid in rows:
            print(f"  {name:50} {low * 1000:7.1f} ms {mid * 1000:7.1f} ms")
        print(f"  {'all stages':50} {sum(r[1] for r in rows) * 1000:7.1f} ms {sum(r[2] for r in rows) * 1000:7.1f} ms")
    print("\npython -X importtime, largest cumulative imports per command:")
    for name, r in results.items():
        if isinstance(r, dict) and "top" in r:
            print(f"  {name}: {r['total_ms']} ms of imports; " + "; ".join(r["top"][:6]))


if __name__ == "__main__":
    main()
