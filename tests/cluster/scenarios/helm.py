"""The `helm` command lines the scenarios run, the same under Helm 4 and Helm 3.

`--wait --wait-for-jobs` everywhere: under Helm 4, plain `--wait` (the kstatus watcher) returned
while the install-time migration Job was still running on the kwok control plane, so a scenario
that checks the Job right after `helm install` asks for the Jobs explicitly; Helm 3 takes the same
flags.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .context import Context, values_file


def _run(
    ctx: Context, *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return ctx.cluster.run([ctx.helm, *args], check=check, timeout=timeout)


def wait_flags(ctx: Context) -> list[str]:
    return ["--wait", "--wait-for-jobs", "--timeout", ctx.timeout]


def _release(
    ctx: Context, verb: str, values: dict[str, Any], check: bool
) -> subprocess.CompletedProcess[str]:
    f = values_file(values)
    try:
        return _run(
            ctx, verb, ctx.release, str(ctx.chart), "-n", ctx.namespace, "-f", str(f),
            *wait_flags(ctx), check=check,
        )  # fmt: skip
    finally:
        f.unlink()


def install(
    ctx: Context, values: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return _release(ctx, "install", values, check)


def upgrade(
    ctx: Context, values: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`helm upgrade` with the complete values (never --reuse-values: after a failed revision,
    which values it reuses differs between Helm versions)."""
    return _release(ctx, "upgrade", values, check)


def rollback(ctx: Context, revision: int) -> subprocess.CompletedProcess[str]:
    return _run(ctx, "rollback", ctx.release, str(revision), "-n", ctx.namespace, *wait_flags(ctx))


def run_tests(ctx: Context, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(
        ctx, "test", ctx.release, "-n", ctx.namespace, "--timeout", ctx.timeout, check=check
    )


def uninstall(ctx: Context) -> subprocess.CompletedProcess[str]:
    return _run(
        ctx, "uninstall", ctx.release, "-n", ctx.namespace, "--wait", "--timeout", ctx.timeout
    )


def history(ctx: Context) -> list[dict[str, Any]]:
    out = _run(ctx, "history", ctx.release, "-n", ctx.namespace, "-o", "json").stdout
    result: list[dict[str, Any]] = json.loads(out)
    return result


def status(ctx: Context) -> dict[str, Any]:
    out = _run(ctx, "status", ctx.release, "-n", ctx.namespace, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def revision_states(ctx: Context) -> list[tuple[int, str]]:
    return [(int(r["revision"]), str(r["status"])) for r in history(ctx)]


def major_version(ctx: Context) -> int:
    out = _run(ctx, "version", "--short").stdout.strip()  # "v4.3.1" (Helm 3: "v3.22.0+g...")
    return int(out.lstrip("v").split(".")[0])
