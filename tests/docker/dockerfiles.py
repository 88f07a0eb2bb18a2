"""Just enough of a Dockerfile parser to test what the legacy builder will do with ours.

The legacy builder builds every stage before the target in file order, resolving ``FROM``
against the ``ARG`` lines above the first stage and the ``--build-arg`` values; these helpers
model exactly that, so the tests can say which base images a build pulls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Dockerfile", "Instruction", "Stage", "parse_dockerfile"]

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    """One instruction, continuation lines joined, comments dropped."""

    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    """A ``FROM`` and the instructions up to the next one."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """Arguments of every ``keyword`` instruction of this stage, in order."""
        return [i.args for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """``ENV KEY=value`` pairs of this stage (the forms our Dockerfiles use)."""
        pairs: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in args.split():
                key, _, value = token.partition("=")
                pairs[key] = value.strip('"')
        return pairs

    def json_command(self, keyword: str) -> list[str]:
        """The exec-form (JSON) command of the stage's last ``CMD`` or ``HEALTHCHECK ... CMD``."""
        args = self.all(keyword)[-1]
        command: list[str] = json.loads(args[args.index("["):])
        return command


@dataclass
class Dockerfile:
    """Global ``ARG`` defaults and the stages of one Dockerfile."""

    path: Path
    args: dict[str, str]
    stages: list[Stage]
    instructions: list[Instruction]

    def base_images(self, build_args: dict[str, str] | None = None) -> list[str]:
        """The external images a legacy build of the last stage pulls, in order."""
        values = {**self.args, **(build_args or {})}
        names = {stage.name for stage in self.stages if stage.name}
        images = []
        for stage in self.stages:
            resolved = _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), ""),
                                     stage.base)
            if resolved not in names:
                images.append(resolved)
        return images


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    current = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append((start, " ".join(current.split())))
        current = ""
    if current:
        lines.append((start, " ".join(current.split())))
    return lines


def parse_dockerfile(path: Path) -> Dockerfile:
    """Parse ``path`` into global ARGs and stages."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    instructions: list[Instruction] = []
    for number, line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        instruction = Instruction(keyword.upper(), rest, number)
        instructions.append(instruction)
        if instruction.keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif instruction.keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
    return Dockerfile(path, args, stages, instructions)
