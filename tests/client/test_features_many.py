"""Feature maps of a stored model over many inputs against a real server: ``convserve model
features`` as a batch (a bad file listed with the server's detail, --resume) and
``features_many`` of both clients (each result what a single call gives, an error value for a
bad input)."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from PIL import Image

from convserve_client import AsyncClient, Client, FeatureMaps, UnprocessableEntityError
from tests import onnx_models as m
from tests.client.test_cli import convserve, text

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback

LAYERS = ["conv", "relu"]
"""Rows 1 and 2 of ``nhwc_cnn``'s table: Conv (4 channels, 6x6 for a 12x12 input) and Relu."""


@pytest.fixture(scope="module")
def model_id(models_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``nhwc_cnn`` (NHWC input 12x12x3) stored on the models server."""
    path = tmp_path_factory.mktemp("model") / "nhwc.onnx"
    path.write_bytes(m.serialize(m.nhwc_cnn(seed=9)))
    with Client(models_url, max_retries=0) as cs:
        return cs.upload_model(path).id


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/a.png, b.png, c.png (12x12 RGB noise) and photos/bad.png (text, not an image)."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(4)
    for name in "abc":
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{name}.png")
    (root / "bad.png").write_bytes(b"this is no PNG")
    return tmp_path


def bad_detail(url: str, model: str, path: Path) -> str:
    """The problem detail the server gives for ``path`` on its own."""
    with Client(url, max_retries=0) as cs, pytest.raises(UnprocessableEntityError) as info:
        cs.features(model, path, LAYERS)
    return f"422 {info.value.problem.detail}"


def test_a_batch_writes_a_folder_per_input_and_lists_the_bad_one(
        models_url: str, model_id: str, photos: Path) -> None:
    done = convserve("model", "features", model_id, "photos", "--layers", ",".join(LAYERS),
                     "-o", "maps", "--quiet", "--jobs", "2", url=models_url, cwd=photos)
    assert done.returncode == 1
    out = photos / "maps"
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]  # nothing for bad.png
    assert sorted(str(p.relative_to(out / "a")) for p in (out / "a").rglob("*.png")) == [
        f"{row}/channel_{k:03d}.png" for row in ("001", "002") for k in range(4)]
    with Client(models_url, max_retries=0) as cs:
        alone = cs.features(model_id, photos / "photos" / "b.png", LAYERS)
    assert alone.files() == {str(p.relative_to(out / "b")): p.read_bytes()
                             for p in (out / "b").rglob("*.png")}
    detail = bad_detail(models_url, model_id, photos / "photos" / "bad.png")
    assert text(done.stderr) == ("convserve: 1 of 4 input(s) failed:\n"
                                 f"  photos/bad.png: {detail}\n")
    assert text(done.stdout).startswith("done 3, failed 1, skipped 0 in ")
    assert text(done.stdout).rstrip().endswith("images/s)")


def test_a_batch_of_npy_files_resumes(models_url: str, model_id: str, photos: Path) -> None:
    args = ("model", "features", model_id, "photos/[abc].png", "--layers", "relu",
            "--format", "npy", "-o", "arrays")
    first = convserve(*args, url=models_url, cwd=photos)
    assert first.returncode == 0, first.stderr
    lines = sorted(line.split("] ", 1)[1] for line in text(first.stderr).splitlines())
    assert lines == [f"photos/{n}.png -> arrays/{n}.npy" for n in "abc"]
    kept = photos / "arrays" / "a.npy"
    kept.write_bytes(b"left alone by --resume")
    (photos / "arrays" / "b.npy").unlink()

    resumed = convserve(*args, "--resume", url=models_url, cwd=photos)
    assert resumed.returncode == 0, resumed.stderr
    assert text(resumed.stdout).startswith("done 1, failed 0, skipped 2 in ")
    assert kept.read_bytes() == b"left alone by --resume"
    with Client(models_url, max_retries=0) as cs:
        for name in "bc":
            alone = cs.features(model_id, photos / "photos" / f"{name}.png", ["relu"],
                                format="npy")
            np.testing.assert_array_equal(np.load(photos / "arrays" / f"{name}.npy"),
                                          alone["relu"].array)
    assert np.load(photos / "arrays" / "b.npy").shape == (4, 6, 6)


def test_a_batch_of_grids_and_zips(models_url: str, model_id: str, photos: Path) -> None:
    formats: list[tuple[Literal["grid", "zip"], str]] = [("grid", ".png"), ("zip", ".zip")]
    for fmt, suffix in formats:
        done = convserve("model", "features", model_id, "photos/a.png", "photos/c.png",
                         "--layers", "conv", "--format", fmt, "-o", fmt, "--quiet",
                         url=models_url, cwd=photos)
        assert done.returncode == 0, done.stderr
        with Client(models_url, max_retries=0) as cs:
            alone = cs.features(model_id, photos / "photos" / "c.png", ["conv"], format=fmt)
        assert sorted(p.name for p in (photos / fmt).iterdir()) == [f"a{suffix}", f"c{suffix}"]
        written = (photos / fmt / f"c{suffix}").read_bytes()
        if fmt == "grid":
            assert written == alone.content
        else:  # the same members (a zip's entries carry the time they were written)
            assert alone.content is not None
            assert members(written) == members(alone.content)


def members(content: bytes) -> dict[str, bytes]:
    """A zip's files but its manifest, name -> content."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()
                if name != "manifest.json"}


def inputs(tmp_path: Path) -> list[Any]:
    rng = np.random.default_rng(5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"no image at all")
    good = [rng.normal(size=(3, 12, 12)).astype(np.float32) for _ in range(3)]
    return [good[0], bad, good[1], tmp_path / "missing.png", good[2]]


def check(results: list[tuple[Any, Any]], items: list[Any], url: str, model: str) -> None:
    """Each input came back once, as given, with what a single call gives (or raises)."""
    assert len(results) == len(items)
    by_id = {id(item): outcome for item, outcome in results}
    assert set(by_id) == {id(item) for item in items}
    with Client(url, max_retries=0) as cs:
        for item in (items[0], items[2], items[4]):
            result = by_id[id(item)]
            assert isinstance(result, FeatureMaps)
            alone = cs.features(model, item, LAYERS, format="zip")
            for layer in LAYERS:
                assert result[layer].array is not None
                np.testing.assert_array_equal(result[layer].array, alone[layer].array)
        error = by_id[id(items[1])]
        assert isinstance(error, UnprocessableEntityError)
        with pytest.raises(UnprocessableEntityError) as single:
            cs.features(model, items[1], LAYERS, format="zip")
        assert error.problem == single.value.problem
    assert isinstance(by_id[id(items[3])], FileNotFoundError)


def test_features_many_yields_each_input_with_its_result_or_error(
        models_url: str, model_id: str, tmp_path: Path) -> None:
    items = inputs(tmp_path)
    with Client(models_url, max_retries=0) as cs:
        results = list(cs.features_many(model_id, items, LAYERS, format="zip", concurrency=2))
    check(results, items, models_url, model_id)


def test_async_features_many_yields_each_input_with_its_result_or_error(
        models_url: str, model_id: str, tmp_path: Path) -> None:
    items = inputs(tmp_path)

    async def run() -> list[tuple[Any, Any]]:
        async with AsyncClient(models_url, max_retries=0) as acs:
            return [pair async for pair in acs.features_many(model_id, items, LAYERS,
                                                             format="zip", concurrency=3)]

    check(asyncio.run(run()), items, models_url, model_id)


def test_save_writes_what_files_holds(models_url: str, model_id: str, tmp_path: Path) -> None:
    x = np.random.default_rng(6).normal(size=(3, 12, 12)).astype(np.float32)
    with Client(models_url, max_retries=0) as cs:
        zipped = cs.features(model_id, x, LAYERS, format="zip")
        npy = cs.features(model_id, x, ["relu"], format="npy")
    written = zipped.save(tmp_path / "z")
    assert sorted(str(p.relative_to(tmp_path / "z")) for p in written) == sorted(
        [f"{row}/channel_{k:03d}.png" for row in ("001", "002") for k in range(4)]
        + ["001/features.npy", "002/features.npy"])
    np.testing.assert_array_equal(np.load(tmp_path / "z" / "002" / "features.npy"),
                                  npy["relu"].array)
    (path,) = npy.save(tmp_path / "n")
    assert path.name == "features.npy" and path.read_bytes() == npy.content
