"""What a worker does at start-up so that its event loop stays free later: its start-up objects
frozen out of the collector's full passes (convserve.collector), OpenCV loaded by the warm-up.
Each runs in a fresh process (freezing is once per process; this one may have done it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ONCE = """
import gc, json
from convserve.collector import freeze_start_up
before = len(gc.get_objects())
first, second = freeze_start_up(), freeze_start_up()
cycle = [None]; cycle[0] = cycle; del cycle  # made after the freeze: still collected
print(json.dumps({"before": before, "first": first, "second": second,
                  "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()),
                  "collected": gc.collect()}))
"""

SERVICE = """
import gc, json, time
from fastapi.testclient import TestClient
from convserve.main import create_app
from convserve.settings import Settings
assert gc.get_freeze_count() == 0
app = create_app(Settings(sample_model=False))
with TestClient(app) as client:
    while client.get("/readyz").status_code != 200:
        time.sleep(0.01)
    frozen, tracked = gc.get_freeze_count(), len(gc.get_objects())
    answer = client.post("/v1/convolve", json={
        "input": {"array": [[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]]},
        "kernel": {"weight": [[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]]}, "format": "array"})
print(json.dumps({"frozen": frozen, "tracked": tracked, "data": answer.json()["data"]}))
"""


def run(code: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, check=True)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_freezes_once_per_process_and_later_cycles_are_still_collected() -> None:
    result = run(ONCE)
    assert isinstance(result["first"], int) and result["first"] > 0
    assert result["second"] is None
    assert isinstance(result["frozen"], int) and result["frozen"] > 0.9 * result["first"]
    assert isinstance(result["tracked"], int) and isinstance(result["before"], int)
    assert result["tracked"] < result["before"] // 10
    assert isinstance(result["collected"], int) and result["collected"] >= 1


def test_a_warmed_up_service_leaves_its_start_up_objects_out_of_full_collections() -> None:
    result = run(SERVICE)
    assert result["data"] == [[[56, 72], [104, 120]]]
    frozen, tracked = result["frozen"], result["tracked"]
    assert isinstance(frozen, int) and isinstance(tracked, int)
    # Tens of thousands of start-up objects frozen; a full pass walks only what came after.
    assert frozen > 20_000 and tracked < frozen // 2, (frozen, tracked)


OPENCV = """
import json, sys, time
from fastapi.testclient import TestClient
from convserve.main import create_app
from convserve.settings import Settings
before = "cv2" in sys.modules
with TestClient(create_app(Settings(sample_model=False))) as client:
    while client.get("/readyz").status_code != 200:
        time.sleep(0.01)
    print(json.dumps({"before": before, "ready": "cv2" in sys.modules}))
"""


def test_the_warm_up_loads_opencv_before_ready() -> None:
    """Importing cv2 holds the GIL for about 0.1 s: not on a request's path after /readyz."""
    pytest.importorskip("cv2")
    assert run(OPENCV) == {"before": False, "ready": True}
