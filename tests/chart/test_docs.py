"""The README values tables are generated from values.yaml by helm-docs and kept in sync."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.tooling import tool

from .helpers import CHART, render

READMES = ["README.md", "charts/postgresql/README.md", "charts/redis/README.md"]


def _generate(root: Path) -> None:
    proc = subprocess.run(
        [tool("helm-docs"), "--chart-search-root", str(root), "--log-level", "warning"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_readmes_match_values_yaml(tmp_path: Path) -> None:
    copy = tmp_path / "charts" / "heliox"
    shutil.copytree(CHART, copy)
    for readme in READMES:
        (copy / readme).unlink()
    _generate(tmp_path / "charts")
    stale = [r for r in READMES if (copy / r).read_text() != (CHART / r).read_text()]
    assert not stale, f"out of date (run `make chart-docs`): {stale}"


def test_every_value_is_documented(tmp_path: Path) -> None:
    """A value added without a `# --` comment shows up in the table with no description."""
    readme = (CHART / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| ") and "`" in line]
    assert len(table) > 100
    undocumented = [line.split("|")[1].strip() for line in table if line.rstrip().endswith("|  |")]
    assert not undocumented, undocumented


def test_the_sync_check_notices_a_change(tmp_path: Path) -> None:
    copy = tmp_path / "charts" / "heliox"
    shutil.copytree(CHART, copy)
    values = copy / "values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 2", "replicaCount: 3"))
    _generate(tmp_path / "charts")
    assert (copy / "README.md").read_text() != (CHART / "README.md").read_text()
    assert "| replicaCount | int | `3` |" in (copy / "README.md").read_text()


def test_architecture_lists_exactly_the_configmap_keys(helm: str) -> None:
    """docs/ARCHITECTURE.md names the keys of the API's ConfigMap one by one; they are the ones
    the chart renders (with the optional ones turned on), no more and no fewer."""
    text = (CHART.parent.parent / "docs" / "ARCHITECTURE.md").read_text()
    sentence = re.search(r"`config\.\*` becomes the ConfigMap\s*\((.*?);", text, re.S)
    assert sentence, "docs/ARCHITECTURE.md no longer lists the ConfigMap's keys"
    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", sentence.group(1)))
    sets = {
        "config.forwardedAllowIps": "10.0.0.0/8",
        "config.docsEnabled": True,
        "config.corsEnabled": True,
        "config.corsOrigins[0]": "https://app.example.com",
        "tracing.enabled": True,
        "tracing.endpoint": "http://otel-collector.monitoring:4318",
    }
    rendered = set(render(helm, sets=sets).get("ConfigMap", "rel-heliox")["data"])
    assert documented == rendered, (documented - rendered, rendered - documented)
