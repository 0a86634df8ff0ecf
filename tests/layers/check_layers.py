#!/usr/bin/env python3
"""The layer order, checked on the sources.

util at the bottom; models and data beside each other on util; io on models; eval on models, io
and data; train on those; apps (the command) on top. A file of a layer may include only its own
layer's headers and those of the layers below it: `#include "thinkingvit/<layer>/..."` and
relative includes into another layer's source folder alike. Each layer's sources must also be in
that layer's CMake library (thinkingvit_<layer> in CMakeLists.txt), and no library may list a
source of another layer.

usage: check_layers.py REPO_ROOT    (exit 1 with one line per violation)
       check_layers.py --self-test  (checks that violations in a made-up tree are found)
"""
import os
import re
import sys
import tempfile

BELOW = {
    "util": set(),
    "models": {"util"},
    "data": {"util"},
    "io": {"util", "models"},
    "eval": {"util", "models", "io", "data"},
    "train": {"util", "models", "io", "data", "eval"},
    "apps": {"util", "models", "io", "data", "eval", "train"},
}
LIBRARY_LAYERS = ["util", "models", "data", "io", "eval", "train"]
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def layer_of(rel):
    """The layer a repository file belongs to, or None."""
    parts = rel.split("/")
    if parts[0] == "apps":
        return "apps"
    if parts[0] == "src" and len(parts) > 2 and parts[1] in BELOW:
        return parts[1]
    if parts[:2] == ["include", "thinkingvit"] and len(parts) > 3 and parts[2] in BELOW:
        return parts[2]
    return None


def included_layer(rel, target):
    """The layer an include names: thinkingvit/<layer>/..., or a relative path into src/<layer>."""
    m = re.match(r"thinkingvit/(\w+)/", target)
    if m:
        return m.group(1)
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target)).replace(os.sep, "/")
    return layer_of(resolved) if os.path.normpath(target) != os.path.basename(target) else None


def check_includes(root):
    problems = []
    for top in ("src", "include", "apps"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".h", ".hpp", ".cpp", ".cu")):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                layer = layer_of(rel)
                if layer is None:
                    continue
                text = open(path, encoding="utf-8", errors="replace").read()
                for m in INCLUDE.finditer(text):
                    other = included_layer(rel, m.group(1))
                    if other is None or other == layer or other in BELOW[layer]:
                        continue
                    line = text.count("\n", 0, m.start()) + 1
                    allowed = ", ".join(sorted(BELOW[layer])) or "none"
                    problems.append(f"{rel}:{line}: layer '{layer}' includes \"{m.group(1)}\" of "
                                    f"layer '{other}' (allowed below it: {allowed})")
    return problems


def check_libraries(root):
    problems = []
    cmake = open(os.path.join(root, "CMakeLists.txt"), encoding="utf-8").read()
    listed = {}
    for layer in LIBRARY_LAYERS:
        m = re.search(r"add_library\(thinkingvit_%s\s+STATIC(.*?)\)" % layer, cmake, re.S)
        if not m:
            problems.append(f"CMakeLists.txt: no add_library(thinkingvit_{layer} STATIC ...)")
            continue
        for source in m.group(1).split():
            if source.startswith("${"):
                continue
            listed[source] = layer
            owner = layer_of(source)
            if owner != layer:
                problems.append(f"CMakeLists.txt: thinkingvit_{layer} lists {source}, a source of "
                                f"layer '{owner}'")
    for layer in LIBRARY_LAYERS:
        folder = os.path.join(root, "src", layer)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            rel = f"src/{layer}/{name}"
            if name.endswith(".cpp") and rel not in listed and rel not in cmake:
                problems.append(f"CMakeLists.txt: {rel} is in no library")
    return problems


def self_test():
    """A made-up tree with one violation of each kind; each must be reported."""
    with tempfile.TemporaryDirectory() as root:
        files = {
            "src/data/transforms.cpp": '#include "thinkingvit/models/vit_options.h"\n',
            "src/eval/benchmark.cpp": '#include "thinkingvit/util/error.h"\n'
                                      '#include "thinkingvit/train/recipe.h"\n',
            "src/train/config.cpp": '#include "../io/yaml_model.h"\n',
            "src/io/checkpoint.cpp": '#include "swin_schema.h"\n#include "../train/x.h"\n',
            "include/thinkingvit/util/fs.h": '#include "thinkingvit/data/image.h"\n',
            "src/models/orphan.cpp": "",
            "apps/main.cpp": '#include "thinkingvit/train/trainer.h"\n',
        }
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            open(os.path.join(root, rel), "w").write(text)
        open(os.path.join(root, "CMakeLists.txt"), "w").write(
            "add_library(thinkingvit_util STATIC src/util/fs.cpp)\n"
            "add_library(thinkingvit_models STATIC src/data/transforms.cpp)\n"
            "add_library(thinkingvit_data STATIC)\n"
            "add_library(thinkingvit_io STATIC src/io/checkpoint.cpp)\n"
            "add_library(thinkingvit_eval STATIC src/eval/benchmark.cpp)\n"
            "add_library(thinkingvit_train STATIC src/train/config.cpp)\n")
        found = check_includes(root) + check_libraries(root)
        expected = [
            "src/data/transforms.cpp:1: layer 'data' includes \"thinkingvit/models/",
            "src/eval/benchmark.cpp:2: layer 'eval' includes \"thinkingvit/train/",
            "src/io/checkpoint.cpp:2: layer 'io' includes \"../train/x.h\" of layer 'train'",
            "include/thinkingvit/util/fs.h:1: layer 'util' includes \"thinkingvit/data/",
            "thinkingvit_models lists src/data/transforms.cpp, a source of layer 'data'",
            "src/models/orphan.cpp is in no library",
        ]
        missing = [e for e in expected if not any(e in f for f in found)]
        extra = [f for f in found if not any(e in f for e in expected)]
        if missing or extra:
            print("self-test failed:\n  missing: %s\n  unexpected: %s" % (missing, extra))
            return 1
        print(f"self-test: the {len(expected)} planted violations were found, nothing else")
        return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    problems = check_includes(sys.argv[1]) + check_libraries(sys.argv[1])
    for p in problems:
        print(p)
    if not problems:
        print("layers: every include follows util < models, data < io < eval < train < apps")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
