#!/usr/bin/env python3
"""Keeps README.md and docs/ honest.

1. The README's quick start: its commands exist and are the ones CI and the demo use:
   `scripts/test.sh` is what `.ci/run` calls; `scripts/demo.sh` runs, on a reduced budget (a few
   hundred images, one epoch), and leaves what the README promises in the run folder.
2. The command reference: for every `### \`thinkingvit NAME\`` section of docs/cli.md (and of
   README.md, should one be there), each flag in its usage block is a flag of
   `thinkingvit NAME --help`, and each flag of `--help` is in the block; every subcommand of
   `thinkingvit --help` has such a section. docs/cli.md must hold at least one.
3. Links: every relative link in README.md and docs/*.md (inline `[text](target)` and images,
   outside code) reaches a file or folder in the repository, and a `#anchor` (`file.md#anchor`,
   or `#anchor` within the same page) names a heading of that Markdown file, as GitHub spells
   heading anchors.

usage: check_readme.py REPO_ROOT THINKINGVIT_BIN [--skip-demo]
  --skip-demo  check everything but running scripts/demo.sh
"""
import glob
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse

if len(sys.argv) < 3:
    sys.exit(__doc__.strip().split("\n\n")[-1])
root, binary = sys.argv[1], sys.argv[2]
skip_demo = "--skip-demo" in sys.argv[3:]


def read(rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


readme = read("README.md")
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
ci = read(".ci/run")
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

# ---- 2. command reference (docs/cli.md, and the README should it hold any) ----
def flags_of(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def command_sections(text):
    return re.findall(r"### `thinkingvit ([a-z-]+)`\s*\n+```\n(.*?)```", text, re.S)


CLI = "docs/cli.md"
sections = [("README.md", name, usage) for name, usage in command_sections(readme)]
if not os.path.isfile(os.path.join(root, CLI)):
    failures.append(f"{CLI} is missing: it holds the command reference")
else:
    in_cli = command_sections(read(CLI))
    if not in_cli:
        failures.append(f"{CLI}: no '### `thinkingvit NAME`' section with a usage block")
    sections += [(CLI, name, usage) for name, usage in in_cli]

top = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
subcommands = re.findall(r"^  ([a-z][a-z-]+)\s{2,}", top.split("Subcommands:")[-1], re.M)
if not subcommands:
    failures.append(f"`{binary} --help` lists no subcommands")
documented = {name for _, name, _ in sections}
for name in subcommands:
    if name not in documented:
        failures.append(f"{CLI}: no '### `thinkingvit {name}`' section with a usage block")
for where, name, usage in sections:
    if name not in subcommands:
        failures.append(f"{where} documents `thinkingvit {name}`, which `thinkingvit --help` lacks")
        continue
    help_text = subprocess.run([binary, name, "--help"], capture_output=True, text=True).stdout
    # Option names only (descriptions may mention other commands' flags).
    have = set(re.findall(r"^\s+(?:-\w,)?(--[a-z][a-z0-9-]*)", help_text, re.M)) - {"--help"}
    shown = flags_of(usage) - {"--help"}
    for flag in sorted(shown - have):
        failures.append(f"{where} `thinkingvit {name}` shows {flag}, which `--help` does not list")
    for flag in sorted(have - shown):
        failures.append(f"{where} `thinkingvit {name}` omits {flag} (listed by `--help`)")

# ---- 3. relative links in README.md and docs/*.md ----
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text):
    """The text without fenced code blocks and code spans (links in code are not links)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: "code", text)


def anchors(text):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2 ..."""
    seen, result = {}, set()
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r" {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link: its text
        title = re.sub(r"<[^>]+>", "", title)
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


pages = ["README.md"] + sorted(os.path.relpath(p, root)
                               for p in glob.glob(os.path.join(root, "docs", "*.md")))
root_real = os.path.realpath(root)
anchor_cache = {}
links = 0
for page in pages:
    for target in LINK.findall(prose(read(page))):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http:, https:, mailto: ...: not a file of the repository
        links += 1
        path, _, anchor = target.partition("#")
        path, anchor = urllib.parse.unquote(path), urllib.parse.unquote(anchor)
        if path.startswith("/"):
            failures.append(f"{page}: link '{target}' is absolute; links are relative to the page")
            continue
        full = os.path.realpath(os.path.join(root, os.path.dirname(page), path)) if path \
            else os.path.realpath(os.path.join(root, page))
        if full != root_real and not full.startswith(root_real + os.sep):
            failures.append(f"{page}: link '{target}' leaves the repository")
            continue
        if not os.path.exists(full):
            failures.append(f"{page}: link '{target}': no such file "
                            f"{os.path.relpath(full, root_real)}")
            continue
        if anchor and full.endswith(".md"):
            if full not in anchor_cache:
                with open(full, encoding="utf-8") as f:
                    anchor_cache[full] = anchors(f.read())
            if anchor not in anchor_cache[full]:
                failures.append(f"{page}: link '{target}': {os.path.relpath(full, root_real)} "
                                f"has no heading with the anchor '#{anchor}'")

if failures:
    print("\n".join("README check: " + f for f in failures))
    sys.exit(1)
print(f"README check: quick start, {len(sections)} command sections and {links} relative links "
      f"in {len(pages)} pages match")
