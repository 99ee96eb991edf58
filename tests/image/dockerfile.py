"""A small Dockerfile and .dockerignore reader for the image checks (no Docker engine needed).

It understands what our Dockerfile uses: parser directives, comments, line continuations,
``ARG`` (global and per stage, with defaults), ``ENV`` (``k=v`` pairs), stages (``FROM x AS y``,
a stage built on an earlier one inherits its ``ENV``, ``ARG``s, ``USER``, ``WORKDIR``,
``ENTRYPOINT``, ``CMD``, ``EXPOSE`` and ``HEALTHCHECK``, as BuildKit does), exec (JSON) and shell
forms, and ``$VAR`` / ``${VAR}`` expansion. ``.dockerignore`` follows Docker's rules: patterns
are matched against a path and each of its parents, and the last matching pattern decides
(``!`` re-includes); ``*`` and ``?`` stay within one path element, ``**`` spans any number.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class Instruction:
    keyword: str  # upper case
    flags: dict[str, str]  # --from=..., --chown=..., --interval=...
    args: str  # the rest of the line, unexpanded
    line: int  # 1-based line of the instruction's start

    def exec_form(self) -> list[str] | None:
        """The JSON array form of the arguments, or None for the shell form."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        return None


@dataclass
class Stage:
    name: str | None
    base: str  # the FROM image or stage name, expanded
    parent: Stage | None  # the earlier stage this one is built on, if any
    instructions: list[Instruction] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)  # ARGs visible in this stage
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    workdir: str = "/"
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    expose: list[str] = field(default_factory=list)
    healthcheck: Instruction | None = None

    def expand(self, text: str) -> str:
        scope = {**self.args, **self.env}
        return _VAR.sub(lambda m: scope.get(m.group(1) or m.group(2), ""), text)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; drop comments, blank lines and parser directives."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        lines.append((start, " ".join(pending)))
    return lines


def _split_flags(rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        key, _, value = token[2:].partition("=")
        flags[key] = value
        rest = rest.lstrip()
    return flags, rest


def _env_pairs(stage: Stage, args: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        assert sep, f"ENV in the legacy 'ENV key value' form is not supported: {args!r}"
        pairs[key] = _VAR.sub(
            lambda m: {**stage.args, **stage.env, **pairs}.get(m.group(1) or m.group(2), ""),
            value,
        )
    return pairs


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        by_name: dict[str, Stage] = {}
        for line, text in logical_lines(path.read_text()):
            keyword, _, rest = text.partition(" ")
            keyword = keyword.upper()
            flags, rest = _split_flags(rest.strip())
            instruction = Instruction(keyword, flags, rest, line)
            if keyword == "FROM":
                words = rest.split()
                image = _VAR.sub(lambda m: global_args.get(m.group(1) or m.group(2), ""), words[0])
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                parent = by_name.get(image)
                stage = Stage(name=name, base=image, parent=parent)
                if parent is not None:  # built on an earlier stage: its state carries over
                    stage.args = dict(parent.args)
                    stage.env = dict(parent.env)
                    stage.user = parent.user
                    stage.workdir = parent.workdir
                    stage.entrypoint = parent.entrypoint
                    stage.cmd = parent.cmd
                    stage.expose = list(parent.expose)
                    stage.healthcheck = parent.healthcheck
                stages.append(stage)
                if name:
                    by_name[name] = stage
                continue
            if not stages:
                assert keyword == "ARG", f"line {line}: only ARG may come before the first FROM"
                key, _, default = rest.partition("=")
                global_args[key.strip()] = default.strip()
                continue
            stage = stages[-1]
            stage.instructions.append(instruction)
            if keyword == "ARG":
                key, sep, default = rest.partition("=")
                key = key.strip()
                if sep:
                    stage.args[key] = stage.expand(default.strip())
                else:  # a bare ARG takes the global default
                    stage.args[key] = global_args.get(key, stage.args.get(key, ""))
            elif keyword == "ENV":
                stage.env.update(_env_pairs(stage, rest))
            elif keyword == "USER":
                stage.user = stage.expand(rest.strip())
            elif keyword == "WORKDIR":
                target = stage.expand(rest.strip())
                stage.workdir = target if target.startswith("/") else f"{stage.workdir}/{target}"
            elif keyword == "ENTRYPOINT":
                stage.entrypoint = instruction.exec_form()
                if not stage.all("CMD"):
                    stage.cmd = None  # ENTRYPOINT resets a CMD not set in this stage
            elif keyword == "CMD":
                stage.cmd = instruction.exec_form()
            elif keyword == "EXPOSE":
                stage.expose.extend(stage.expand(rest).split())
            elif keyword == "HEALTHCHECK":
                stage.healthcheck = instruction
        return cls(path, global_args, stages)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} in {self.path}")

    @property
    def default_target(self) -> Stage:
        """What `docker build` without --target builds: the last stage."""
        return self.stages[-1]

    def lineage(self, stage: Stage) -> list[Stage]:
        """The stage and the earlier stages it is built on, innermost last."""
        chain = [stage]
        while chain[-1].parent is not None:
            chain.append(chain[-1].parent)  # type: ignore[arg-type]
        return chain[::-1]


@dataclass
class Copy:
    stage: Stage
    sources: list[str]  # relative to the build context (expanded)
    dest: str  # absolute, resolved against the stage's WORKDIR at that point
    from_stage: str | None
    chown: str | None


def copies(dockerfile: Dockerfile) -> list[Copy]:
    """Every COPY/ADD, with destinations resolved against the WORKDIR in force at the time."""
    result = []
    for stage in dockerfile.stages:
        workdir = stage.parent.workdir if stage.parent is not None else "/"
        scope = Stage(name=None, base="", parent=None)
        scope.args = dict(stage.parent.args) if stage.parent else {}
        scope.env = dict(stage.parent.env) if stage.parent else {}
        for ins in stage.instructions:
            if ins.keyword == "ARG":
                key, sep, default = ins.args.partition("=")
                scope.args[key.strip()] = scope.expand(default.strip()) if sep else ""
            elif ins.keyword == "ENV":
                scope.env.update(_env_pairs(scope, ins.args))
            elif ins.keyword == "WORKDIR":
                target = scope.expand(ins.args.strip())
                workdir = target if target.startswith("/") else f"{workdir}/{target}"
            elif ins.keyword in ("COPY", "ADD"):
                words = ins.exec_form() or ins.args.split()
                words = [scope.expand(w) for w in words]
                *sources, dest = words
                trailing = "/" if dest.endswith("/") else ""
                if not dest.startswith("/"):
                    dest = f"{workdir.rstrip('/')}/{dest}"
                dest = posixpath.normpath(dest) + trailing
                chown = ins.flags.get("chown")
                result.append(
                    Copy(
                        stage=stage,
                        sources=sources,
                        dest=dest,
                        from_stage=ins.flags.get("from"),
                        chown=scope.expand(chown) if chown is not None else None,
                    )
                )
    return result


# --- .dockerignore --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            # `**/` matches zero or more whole elements; a trailing `**` anything below.
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            else:
                out.append(".*")
                i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass
class DockerIgnore:
    rules: list[tuple[bool, re.Pattern[str], str]]  # (exclude?, regex, original pattern)

    @classmethod
    def parse(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = not line.startswith("!")
            pattern = line if exclude else line[1:].strip()
            # Docker cleans each pattern like a path: no leading "/" or "./", no trailing "/".
            pattern = pattern.strip("/")
            pattern = pattern.removeprefix("./")
            rules.append((exclude, _pattern_regex(pattern), line))
        return cls(rules)

    def excluded(self, relpath: str) -> bool:
        """Whether a path (relative to the context, "/"-separated) stays out of the context."""
        parts = relpath.strip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        verdict = False
        for exclude, regex, _ in self.rules:
            if any(regex.match(c) for c in candidates):
                verdict = exclude
        return verdict
