"""/metrics with several uvicorn workers (prometheus-client's multiprocess files): a worker that
is starting must not make the sum fail. (End to end: tests/e2e/test_replicas.py.)"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.metrics import SizedFilesCollector


def test_a_file_a_starting_worker_has_not_sized_yet_is_left_out(tmp_path: Path) -> None:
    # A live worker's counter, as prometheus-client writes it.
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("gateway_predictions", "gateway_predictions_total", [], [], "Predictions")
    written.write_value(key, 7.0, 0.0)
    written.close()
    # Another worker between creating its file and sizing it.
    (tmp_path / "counter_102.db").touch()

    with pytest.raises(struct.error):  # what made /metrics a 500 while a worker started
        MultiProcessCollector.merge([str(p) for p in tmp_path.glob("*.db")])  # type: ignore[no-untyped-call]
    (family,) = SizedFilesCollector(str(tmp_path)).collect()
    assert [(s.name, s.value) for s in family.samples] == [("gateway_predictions_total", 7.0)]
