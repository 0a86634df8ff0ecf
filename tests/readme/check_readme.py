#!/usr/bin/env python3
"""Keeps README.md honest.

1. The quick start's commands exist and are the ones CI and the demo use: `scripts/test.sh` is
   what `.ci/run` calls; `scripts/demo.sh` runs, on a reduced budget (a few hundred images, one
   epoch), and leaves what the README promises in the run folder.
2. The command reference: for every `### \`thinkingvit NAME\`` section, each flag in its usage
   block is a flag of `thinkingvit NAME --help`, and each flag of `--help` is in the block.

usage: check_readme.py REPO_ROOT THINKINGVIT_BIN [--skip-demo]
"""
import os
import re
import subprocess
import sys
import tempfile

root, binary = sys.argv[1], sys.argv[2]
skip_demo = "--skip-demo" in sys.argv
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
failures = []

# ---- 1. quick start ----
quick = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S)
if not quick:
    sys.exit("README.md: no '## Quick start' section with a bash block")
commands = [line.split("#")[0].strip() for line in quick.group(1).splitlines()]
commands = [c for c in commands if c]
if commands != ["scripts/demo.sh", "scripts/test.sh"]:
    failures.append(f"quick start: expected the two commands scripts/demo.sh and scripts/test.sh, "
                    f"found {commands}")
ci = open(os.path.join(root, ".ci/run"), encoding="utf-8").read()
if "scripts/test.sh" not in ci:
    failures.append(".ci/run does not call scripts/test.sh, the README's test command")

if not skip_demo:
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        env = dict(os.environ, RUN_DIR=run, SETUP="0", TAUS="0,0.5,1,9",
                   THINKINGVIT_BIN=binary)
        proc = subprocess.run(
            ["bash", os.path.join(root, "scripts/demo.sh"), "--set", "data.train_limit=512",
             "--set", "data.val_limit=256", "--set", "schedule.epochs=1",
             "--set", "schedule.warmup_epochs=0.2", "--set", "data.num_workers=1"],
            cwd=root, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            failures.append(f"scripts/demo.sh exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        else:
            for name in ["config.yaml", "train.log", "metrics.jsonl", "best/model.safetensors",
                         "best/config.json", "eval.csv", "sweep/sweep.md", "sweep/sweep.csv",
                         "sweep/sweep.json", "sweep/sweep.png", "sweep/entropy_hist.csv"]:
                if not os.path.exists(os.path.join(run, name)):
                    failures.append(f"scripts/demo.sh left no {name} in the run folder")
            if "within 1 point of every stage" not in proc.stdout:
                failures.append("scripts/demo.sh printed no threshold summary:\n" + proc.stdout[-2000:])
            if run not in proc.stdout:
                failures.append("scripts/demo.sh did not print where the run folder is")

# ---- 2. command reference ----
def flags_of(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))

sections = re.findall(r"### `thinkingvit ([a-z-]+)`\s*\n+```\n(.*?)```", readme, re.S)
top = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
subcommands = re.findall(r"^  ([a-z][a-z-]+)\s{2,}", top.split("Subcommands:")[-1], re.M)
documented = {name for name, _ in sections}
for name in subcommands:
    if name not in documented:
        failures.append(f"README: no '### `thinkingvit {name}`' section with a usage block")
for name, usage in sections:
    if name not in subcommands:
        failures.append(f"README documents `thinkingvit {name}`, which `thinkingvit --help` lacks")
        continue
    help_text = subprocess.run([binary, name, "--help"], capture_output=True, text=True).stdout
    # Option names only (descriptions may mention other commands' flags).
    have = set(re.findall(r"^\s+(?:-\w,)?(--[a-z][a-z0-9-]*)", help_text, re.M)) - {"--help"}
    shown = flags_of(usage) - {"--help"}
    for flag in sorted(shown - have):
        failures.append(f"README `thinkingvit {name}` shows {flag}, which `--help` does not list")
    for flag in sorted(have - shown):
        failures.append(f"README `thinkingvit {name}` omits {flag} (listed by `--help`)")

if failures:
    print("\n".join("README check: " + f for f in failures))
    sys.exit(1)
print(f"README check: quick start and {len(sections)} command sections match")
