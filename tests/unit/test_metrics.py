"""Request samples are batched per worker and reach the shared metric cells on flush."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from heliox.core import metrics
from heliox.core.db import Database, create_db_engine
from tests.helpers import make_settings

LABELS = {"method": "GET", "route": "/unit/batched", "status": "200"}


def _count() -> float:
    return REGISTRY.get_sample_value("heliox_http_requests_total", LABELS) or 0.0


def _bucket(le: str) -> float:
    labels = {**LABELS, "le": le}
    return REGISTRY.get_sample_value("heliox_http_request_duration_seconds_bucket", labels) or 0.0


def test_samples_wait_for_a_flush_then_land_in_the_right_cells() -> None:
    before, fast_before = _count(), _bucket("0.005")
    metrics.observe("GET", "/unit/batched", 200, 0.001)
    metrics.observe("GET", "/unit/batched", 200, 0.3)
    assert _count() == before  # batched, not yet written
    metrics.flush()
    assert _count() == before + 2
    assert _bucket("0.005") == fast_before + 1  # 1 ms
    assert _bucket("0.5") - _bucket("0.25") == 1  # 300 ms, in the (0.25, 0.5] bucket
    metrics.flush()  # nothing pending: nothing written twice
    assert _count() == before + 2


def test_the_flusher_writes_without_a_scrape() -> None:
    async def scenario() -> float:
        before = _count()
        task = asyncio.create_task(metrics.flush_periodically(0.01))
        metrics.observe("GET", "/unit/batched", 200, 0.002)
        await asyncio.sleep(0.1)
        task.cancel()
        return _count() - before

    assert asyncio.run(scenario()) == 1


def test_the_flusher_writes_the_pool_figures_without_a_scrape() -> None:
    figures = {"size": 5, "checked_out": 3, "checked_in": 2, "overflow": 0}

    async def scenario() -> None:
        task = asyncio.create_task(
            metrics.flush_periodically(0.01, sample=lambda: metrics.set_pool_figures(figures))
        )
        await asyncio.sleep(0.05)
        figures["checked_out"] = 7
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    assert REGISTRY.get_sample_value("heliox_db_pool_checked_out") == 7
    assert REGISTRY.get_sample_value("heliox_db_pool_size") == 5


def test_pool_figures_include_the_limit_saturation_is_measured_against(tmp_path: Path) -> None:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'pool.db'}", db_pool_size=3, db_max_overflow=4
    )
    database = Database(create_db_engine(settings), 5.0)
    try:
        figures = database.pool_status()
    finally:
        database.dispose()
    assert figures["limit"] == 7
    metrics.set_pool_figures(figures)
    assert REGISTRY.get_sample_value("heliox_db_pool_limit") == 7


def test_a_scrape_skips_a_file_another_process_has_created_but_not_sized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's file as prometheus_client writes it, and one just created (0 bytes): before
    # the fix the library's reader failed on the empty one and /metrics answered 500.
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("heliox_unit", "heliox_unit_total", ["route"], ["/x"], "help")
    written.write_value(key, 3.0, 0)
    written.close()
    (tmp_path / "gauge_livesum_102.db").touch()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = metrics.render().decode()
    assert 'heliox_unit_total{route="/x"} 3.0' in text
