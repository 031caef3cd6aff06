"""Checks that deploy/Dockerfile's dependency stage would build, with no Docker engine.

    python3 deploy/check_dockerfile.py [REPO]

The first stage's instructions, up to and including its first RUN that calls `cargo build`,
are replayed in an empty folder: each COPY copies what it names from the repository (as the
build context has it: a source .dockerignore excludes is an error), each RUN runs there with
/bin/sh, WORKDIR moves inside the folder, ARG and ENV set the environment. In that RUN,
`cargo build ...` becomes `cargo fetch --locked`, which reads every target Cargo.toml
declares: a target without its file (a bench the stub step forgot) fails here as it would
fail `docker build`. Every COPY of the other stages is checked against .dockerignore too.
"""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

BUILD = re.compile(r"\bcargo\s+build\b[^&;|\n]*")


def instructions(path):
    """(line number, KEYWORD, arguments) per instruction; continuations joined."""
    out, parts, start = [], [], None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            stripped = line.strip()
            if not parts and (not stripped or stripped.startswith("#")):
                continue
            if parts and stripped.startswith("#"):
                continue  # a comment inside a continued instruction is dropped, as Docker does
            if start is None:
                start = number
            if stripped.endswith("\\"):
                parts.append(stripped[:-1].strip())
                continue
            parts.append(stripped)
            text = " ".join(p for p in parts if p)
            keyword, _, rest = text.partition(" ")
            out.append((start, keyword.upper(), rest.strip()))
            parts, start = [], None
    if parts:
        sys.exit(f"{path}: the last instruction ends in a line continuation")
    return out


def ignore_patterns(repo):
    path = os.path.join(repo, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = [l.strip() for l in f]
    return [l for l in lines if l and not l.startswith("#")]


def pattern_regex(pattern):
    """A .dockerignore pattern as a regex (Go's filepath.Match, with ** for any folders)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(patterns, relpath):
    """Whether .dockerignore leaves relpath out: it or a folder above it matches the last
    pattern that matches (a `!` pattern brings a path back)."""
    parts = os.path.normpath(relpath).split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = pattern_regex(os.path.normpath(pattern.lstrip("!").lstrip("/")))
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = not negate
    return verdict


def copy_folder(found, target, repo, patterns):
    """COPY of a folder: its contents, less what .dockerignore leaves out."""

    def leave_out(folder, names):
        return [n for n in names
                if ignored(patterns, os.path.relpath(os.path.join(folder, n), repo))]

    shutil.copytree(found, target, dirs_exist_ok=True, ignore=leave_out)


def copy_arguments(rest):
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    if len(paths) < 2:
        raise ValueError("COPY needs a source and a destination")
    return flags, paths[:-1], paths[-1]


def main():
    repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    dockerfile = os.path.join(repo, "deploy", "Dockerfile")
    name = os.path.relpath(dockerfile, repo)
    patterns = ignore_patterns(repo)
    steps = instructions(dockerfile)
    problems = []

    # Every COPY from the build context, in every stage, names something the context holds.
    for number, keyword, rest in steps:
        if keyword != "COPY":
            continue
        flags, sources, _ = copy_arguments(rest)
        if any(f.startswith("--from") for f in flags):
            continue
        for source in sources:
            if not glob.glob(os.path.join(repo, source)):
                problems.append(f"{name}:{number}: COPY {source}: no such file in the repository")
            elif ignored(patterns, source):
                problems.append(f"{name}:{number}: COPY {source}: .dockerignore leaves it out of the build context")

    root = tempfile.mkdtemp(prefix="segmentctl-docker-")
    try:
        stage, workdir, env, replayed = 0, "/", dict(os.environ), False
        for number, keyword, rest in steps:
            where = f"{name}:{number}"
            if keyword == "FROM":
                stage += 1
                if stage > 1:
                    break
                continue
            if keyword == "WORKDIR":
                workdir = os.path.normpath(os.path.join(workdir, rest))
                os.makedirs(root + workdir, exist_ok=True)
            elif keyword in ("ARG", "ENV"):
                for word in shlex.split(rest):
                    key, eq, value = word.partition("=")
                    if eq:
                        env[key] = value
            elif keyword == "COPY":
                flags, sources, dest = copy_arguments(rest)
                if any(f.startswith("--from") for f in flags):
                    sys.exit(f"{where}: COPY --from before the dependencies are built: not replayable")
                target = root + os.path.normpath(os.path.join(workdir, dest))
                into_folder = dest.endswith("/") or len(sources) > 1
                for source in sources:
                    for found in sorted(glob.glob(os.path.join(repo, source))):
                        if ignored(patterns, os.path.relpath(found, repo)):
                            continue
                        if os.path.isdir(found):
                            copy_folder(found, target, repo, patterns)
                            continue
                        if into_folder or os.path.isdir(target):
                            os.makedirs(target, exist_ok=True)
                        else:
                            os.makedirs(os.path.dirname(target), exist_ok=True)
                        shutil.copy2(found, target)
            elif keyword == "RUN":
                if rest.startswith("["):
                    sys.exit(f"{where}: exec-form RUN: not replayable")
                # --mount, --network and --security change where files and packets come
                # from, not what cargo reads: the command runs without them.
                while rest.startswith("--"):
                    rest = rest.split(None, 1)[1] if " " in rest else ""
                command = rest
                last = bool(BUILD.search(rest))
                if last:
                    command = BUILD.sub(lambda m: "cargo fetch --locked" + m.group(0)[len(m.group(0).rstrip()):], rest)
                print(f"replay {where}: RUN {command}", flush=True)
                done = subprocess.run(["/bin/sh", "-c", command], cwd=root + workdir, env=env)
                if done.returncode != 0:
                    problems.append(
                        f"{where}: the dependency stage fails (exit {done.returncode}): "
                        f"RUN {rest}"
                    )
                    break
                if last:
                    replayed = True
                    break
            elif keyword != "LABEL":
                sys.exit(f"{where}: {keyword} before the dependencies are built: not replayable")
        if not replayed and not problems:
            problems.append(f"{name}: the first stage has no RUN with `cargo build`")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"deploy: {name}'s dependency stage replays in an empty folder and cargo reads every target")


if __name__ == "__main__":
    main()
