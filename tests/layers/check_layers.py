#!/usr/bin/env python3
"""The layer order, checked on the sources.

util at the bottom; models and data beside each other on util; io on models; eval on models, io
and data; train on those; apps (the command) on top. A file of a layer may include only its own
layer's headers and those of the layers below it: `#include "thinkingvit/<layer>/..."` and
relative includes into another layer's source folder alike. Each layer's sources must also be in
that layer's CMake library (thinkingvit_<layer> in CMakeLists.txt), and no library may list a
source of another layer.

Model families are plug-ins: each family's code sits in src/models/<name>/ and
include/thinkingvit/models/<name>/ (a folder with a family.cpp), and no file outside those folders
(in src, include or apps) includes a family header, uses a type a family declares, a snake_case
name with the family as one of its parts (swin_preset), the family's namespace (vit::), or the
family's name as a string ("swin"). Comments and other strings are not read.

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


COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
DECLARED = re.compile(r"\b(?:class|struct)\s+(\w+)|\busing\s+(\w+)\s*=|TORCH_MODULE\((\w+)\)")
IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


def sources(root, tops=("src", "include", "apps")):
    for top in tops:
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if name.endswith((".h", ".hpp", ".cpp", ".cu")):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, root).replace(os.sep, "/"), path


def families(root):
    folder = os.path.join(root, "src", "models")
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, n, "family.cpp")))


def family_folders(name):
    return (f"src/models/{name}/", f"include/thinkingvit/models/{name}/")


def check_families(root):
    problems = []
    names = families(root)
    declared = {}  # type name -> family
    for name in names:
        for rel, path in sources(root):
            if rel.startswith(family_folders(name)):
                text = COMMENT.sub("", open(path, encoding="utf-8", errors="replace").read())
                for m in DECLARED.finditer(text):
                    declared.setdefault(m.group(1) or m.group(2) or m.group(3), name)
    # Names every family defines for itself (its Options / Family classes are private to it).
    for common in ("Options", "Family", "O", "Rounds"):
        declared.pop(common, None)
    for rel, path in sources(root):
        if any(rel.startswith(family_folders(n)) for n in names):
            continue
        raw = open(path, encoding="utf-8", errors="replace").read()
        code = COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), raw)
        for m in INCLUDE.finditer(code):
            for name in names:
                if m.group(1).startswith(f"thinkingvit/models/{name}/"):
                    line = code.count("\n", 0, m.start()) + 1
                    problems.append(f"{rel}:{line}: includes \"{m.group(1)}\" of model family "
                                    f"'{name}'")
        code = INCLUDE.sub("", code)
        for m in STRING.finditer(code):
            if m.group(0)[1:-1] in names:
                line = code.count("\n", 0, m.start()) + 1
                problems.append(f"{rel}:{line}: names model family {m.group(0)}")
        bare = STRING.sub(lambda m: '""', code)
        for m in IDENTIFIER.finditer(bare):
            word, family = m.group(0), None
            if word in declared:
                family = declared[word]
            else:
                parts = word.lower().split("_")
                family = next((n for n in names if n in parts and "_" in word), None)
                after = bare[m.end():m.end() + 2]
                if family is None and word in names and after == "::":
                    family = word
            if family:
                line = bare.count("\n", 0, m.start()) + 1
                problems.append(f"{rel}:{line}: uses '{word}' of model family '{family}'")
    return problems


def self_test():
    """A made-up tree with one violation of each kind; each must be reported."""
    with tempfile.TemporaryDirectory() as root:
        files = {
            "src/data/transforms.cpp": '#include "thinkingvit/models/vit/options.h"\n',
            "src/eval/benchmark.cpp": '#include "thinkingvit/util/error.h"\n'
                                      '#include "thinkingvit/train/recipe.h"\n',
            "src/train/config.cpp": '#include "../io/yaml_model.h"\n',
            "src/io/checkpoint.cpp": '#include "swin_schema.h"\n#include "../train/x.h"\n',
            "include/thinkingvit/util/fs.h": '#include "thinkingvit/data/image.h"\n',
            "src/models/orphan.cpp": "",
            "apps/main.cpp": '#include "thinkingvit/train/trainer.h"\n',
            "src/models/fam/family.cpp": "",
            "include/thinkingvit/models/fam/options.h": "struct FamOptions {};\n",
            "src/io/reader.cpp": '#include "thinkingvit/models/fam/options.h"\n'
                                 '// FamOptions in a comment, and "FamOptions" in a string: fine\n'
                                 'FamOptions o;\nauto p = fam_preset("x");\n'
                                 'auto f = fam::family();\nstd::string n = "fam";\n',
        }
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            open(os.path.join(root, rel), "w").write(text)
        open(os.path.join(root, "CMakeLists.txt"), "w").write(
            "add_library(thinkingvit_util STATIC src/util/fs.cpp)\n"
            "add_library(thinkingvit_models STATIC src/data/transforms.cpp)\n"
            "add_library(thinkingvit_data STATIC)\n"
            "add_library(thinkingvit_io STATIC src/io/checkpoint.cpp src/io/reader.cpp)\n"
            "add_library(thinkingvit_eval STATIC src/eval/benchmark.cpp)\n"
            "add_library(thinkingvit_train STATIC src/train/config.cpp)\n")
        found = check_includes(root) + check_libraries(root) + check_families(root)
        expected = [
            "src/data/transforms.cpp:1: layer 'data' includes \"thinkingvit/models/",
            "src/eval/benchmark.cpp:2: layer 'eval' includes \"thinkingvit/train/",
            "src/io/checkpoint.cpp:2: layer 'io' includes \"../train/x.h\" of layer 'train'",
            "include/thinkingvit/util/fs.h:1: layer 'util' includes \"thinkingvit/data/",
            "thinkingvit_models lists src/data/transforms.cpp, a source of layer 'data'",
            "src/models/orphan.cpp is in no library",
            "src/io/reader.cpp:1: includes \"thinkingvit/models/fam/options.h\" of model family",
            "src/io/reader.cpp:3: uses 'FamOptions' of model family 'fam'",
            "src/io/reader.cpp:4: uses 'fam_preset' of model family 'fam'",
            "src/io/reader.cpp:5: uses 'fam' of model family 'fam'",
            "src/io/reader.cpp:6: names model family \"fam\"",
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
    root = sys.argv[1]
    problems = check_includes(root) + check_libraries(root) + check_families(root)
    for p in problems:
        print(p)
    if not problems:
        print("layers: every include follows util < models, data < io < eval < train < apps; "
              "model families %s are named only in their folders" % ", ".join(families(root)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
