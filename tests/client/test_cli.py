"""The ``convserve`` command line, run as a process against a real server."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convserve_client.cli import main
from tests.client.conftest import API_KEY, D2L_K, D2L_X, D2L_Y

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback

CLI = [sys.executable, "-m", "convserve_client.cli"]


def convserve(*args: str, url: str | None = None, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("CONVSERVE_URL", "CONVSERVE_API_KEY")}
    if url is not None:
        full_env["CONVSERVE_URL"] = url
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], cwd=cwd, env=full_env, capture_output=True,
                          timeout=120, check=False)


def text(stream: bytes) -> str:
    return stream.decode()


@pytest.fixture
def d2l_files(tmp_path: Path) -> Path:
    """x.npy, x.json (the D2L input) and kernel.json (its 1x2x2x2 kernel) in tmp_path."""
    np.save(tmp_path / "x.npy", D2L_X)
    (tmp_path / "x.json").write_text(json.dumps(D2L_X.tolist()))
    (tmp_path / "kernel.json").write_text(json.dumps({"weight": D2L_K[np.newaxis].tolist()}))
    return tmp_path


def test_convolve_with_a_preset_writes_one_png_per_channel(server_url: str,
                                                           workdir: Path) -> None:
    done = convserve("convolve", "cat.png", "--preset", "sobel", "-o", "out/", url=server_url,
                     cwd=workdir)
    assert done.returncode == 0, done.stderr
    pngs = sorted(p.name for p in (workdir / "out").iterdir())
    assert pngs == ["channel_000.png", "channel_001.png"]
    with Image.open(workdir / "out" / "channel_000.png") as image:
        assert (image.size, image.mode) == ((451, 300), "L")
    out = text(done.stdout)
    assert "shape     2 x 300 x 451 (c_out, h, w)" in out
    assert "padding   1,1,1,1 (top, bottom, left, right) reflect" in out
    assert "channel 0 (x): min " in out and "channel 1 (y): min " in out
    assert "wrote out/channel_000.png" in text(done.stderr)


def test_convolve_with_a_kernel_file_to_npy(server_url: str, d2l_files: Path) -> None:
    done = convserve("convolve", "x.npy", "--kernel", "kernel.json", "--format", "npy",
                     "-o", "y.npy", url=server_url, cwd=d2l_files)
    assert done.returncode == 0, done.stderr
    y = np.load(d2l_files / "y.npy")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, D2L_Y[np.newaxis])
    assert "wrote y.npy (" in text(done.stderr)


def test_global_options_before_the_command_and_npy_to_stdout(server_url: str,
                                                             d2l_files: Path) -> None:
    done = convserve("--url", server_url, "--timeout", "30", "convolve", "x.json",
                     "--kernel", "kernel.json", "--bias", "1", "--padding", "0,0,0,1",
                     "--format", "npy", "-o", "-", cwd=d2l_files)
    assert done.returncode == 0, done.stderr
    y = np.load(io.BytesIO(done.stdout))
    np.testing.assert_array_equal(y[:, :, :2], D2L_Y[np.newaxis] + 1)
    assert y.shape == (1, 2, 3)


def test_convolve_json_output_and_dry_run(server_url: str, d2l_files: Path) -> None:
    done = convserve("convolve", "x.json", "--kernel", "kernel.json", "--format", "array",
                     "--json", url=server_url, cwd=d2l_files)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["data"] == [[[56.0, 72.0], [104.0, 120.0]]]
    assert answer["cost"]["params"] == 8
    done = convserve("convolve", "x.json", "--kernel", "kernel.json", "--stride", "2",
                     "--padding", "1", "--dry-run", url=server_url, cwd=d2l_files)
    assert done.returncode == 0, done.stderr
    assert "shape     1 x 2 x 2 (c_out, h, w)" in text(done.stdout)
    assert "dry run: nothing was computed" in text(done.stdout)


def test_presets_preset_and_a_kernel_file_round_trip(server_url: str, workdir: Path) -> None:
    listing = convserve("presets", url=server_url)
    assert listing.returncode == 0, listing.stderr
    lines = text(listing.stdout).splitlines()
    assert any(line.startswith("sobel ") and "[luminance]" in line for line in lines)
    assert any(line.startswith("gaussian_blur ") and "size=" in line for line in lines)

    shown = convserve("preset", "gaussian_blur", "--channels", "3", "--param", "size=5",
                      "-o", "blur.json", url=server_url, cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert text(shown.stdout).startswith(
        "gaussian_blur for 3 input channel(s): weight (3, 1, 5, 5) "
        "(c_out, c_in/groups, k_h, k_w), groups 3")
    assert "apply blur.json with --groups 3" in text(shown.stderr)

    by_file = convserve("convolve", "cat.png", "--kernel", "blur.json", "--groups", "3",
                        "--padding", "same", "--padding-mode", "reflect", "--format", "npy",
                        "-o", "a.npy", url=server_url, cwd=workdir)
    by_name = convserve("convolve", "cat.png", "--preset", "gaussian_blur", "--param",
                        "size=5", "--format", "npy", "-o", "b.npy", url=server_url,
                        cwd=workdir)
    assert by_file.returncode == by_name.returncode == 0, by_file.stderr + by_name.stderr
    np.testing.assert_allclose(np.load(workdir / "a.npy"), np.load(workdir / "b.npy"),
                               rtol=1e-5, atol=1e-6)


def test_engines_and_health(server_url: str) -> None:
    engines = convserve("engines", url=server_url)
    assert engines.returncode == 0, engines.stderr
    assert text(engines.stdout).startswith("default: auto on cpu\n")
    assert "numpy" in text(engines.stdout) and "cuda: unavailable: " in text(engines.stdout)
    health = convserve("health", url=server_url)
    assert (health.returncode, text(health.stdout)) == (
        0, "live: ok\nready: yes (auto on cpu)\n")


def test_explain_prints_the_expression(server_url: str, d2l_files: Path) -> None:
    done = convserve("explain", "x.json", "--kernel", "kernel.json", "--at", "0,0,0",
                     url=server_url, cwd=d2l_files)
    assert done.returncode == 0, done.stderr
    out = text(done.stdout)
    assert out.startswith("output[0, 0, 0] = 56\n")
    assert "(0×0 + 1×1 + 3×2 + 4×3) + (1×1 + 2×2 + 4×3 + 5×4) = 56" in out
    assert "input channel 1: sum 37" in out


def test_layers_to_an_onnx_file_and_a_table(server_url: str, workdir: Path) -> None:
    stack = [{"type": "conv2d", "preset": "sobel", "activation": "relu"},
             {"type": "maxpool2d", "kernel_size": 2}]
    (workdir / "stack.json").write_text(json.dumps(stack))
    table = convserve("layers", "cat.png", "--layers", "stack.json", "--dry-run",
                      url=server_url, cwd=workdir)
    assert table.returncode == 0, table.stderr
    rows = text(table.stdout).splitlines()
    assert rows[1].split()[:3] == ["0", "conv2d", "2x300x451"]
    assert rows[2].split()[:3] == ["1", "maxpool2d", "2x150x225"]
    model = convserve("layers", "cat.png", "--layers", "stack.json", "--format", "onnx",
                      "-o", "model.onnx", url=server_url, cwd=workdir)
    assert model.returncode == 0, model.stderr
    assert (workdir / "model.onnx").stat().st_size > 0


# --- failures: messages and exit codes -------------------------------------------------------


def test_api_error_exits_1_with_the_problem_detail(server_url: str, workdir: Path) -> None:
    done = convserve("convolve", "cat.png", "--preset", "sobell", url=server_url, cwd=workdir)
    assert done.returncode == 1
    assert done.stdout == b""
    assert text(done.stderr).startswith(
        "convserve: error: unknown preset 'sobell'; known presets: ")


def test_invalid_kernel_exits_1_naming_the_field(server_url: str, d2l_files: Path) -> None:
    done = convserve("convolve", "x.npy", "--kernel", "[[1, 2], [3, 4]]", url=server_url,
                     cwd=d2l_files)
    assert done.returncode == 1
    assert text(done.stderr) == ("convserve: error: kernel.weight has shape (2, 2); OIHW "
                                 "needs 4 axes (c_out, c_in/groups, k_h, k_w)\n")


def test_missing_api_key_exits_1_with_a_hint(restricted_url: str) -> None:
    done = convserve("presets", url=restricted_url)
    assert done.returncode == 1
    assert "requires an API key" in text(done.stderr)
    assert "--api-key or $CONVSERVE_API_KEY" in text(done.stderr)
    ok = convserve("--api-key", API_KEY, "presets", url=restricted_url)
    assert ok.returncode == 0, ok.stderr
    from_env = convserve("engines", url=restricted_url, env={"CONVSERVE_API_KEY": API_KEY})
    assert from_env.returncode == 0, from_env.stderr


def test_unreachable_server_exits_3() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = convserve("--max-retries", "0", "health", url=f"http://127.0.0.1:{port}")
    assert done.returncode == 3
    message = text(done.stderr)
    assert message.startswith(f"convserve: error: could not reach http://127.0.0.1:{port}/")
    assert "is the server running? (--url or $CONVSERVE_URL sets where)" in message


@pytest.mark.parametrize("args, message", [
    pytest.param([], "the following arguments are required: COMMAND", id="no-command"),
    pytest.param(["convolve", "cat.png"], "give exactly one of --kernel FILE and --preset NAME",
                 id="no-kernel"),
    pytest.param(["convolve", "missing.png", "--preset", "sobel"],
                 "cannot read input 'missing.png': no such file", id="missing-input"),
    pytest.param(["convolve", "cat.png", "--preset", "sobel", "--stride", "a"],
                 "stride must be integers like 2 or 2,3; got 'a'", id="bad-stride"),
    pytest.param(["convolve", "cat.png", "--preset", "sobel", "--format", "npy"],
                 "--format npy returns a file: give -o FILE", id="npy-without-output"),
    pytest.param(["explain", "cat.png", "--preset", "sobel", "--at", "0,0"],
                 "at takes 3 integers; got '0,0'", id="bad-at"),
])
def test_usage_errors_exit_2(workdir: Path, args: list[str], message: str,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    # In-process for speed (argparse exits the same way); nothing is sent to any server.
    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit) as info:
        main(["--url", "http://127.0.0.1:9", *args])
    assert info.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert stderr.startswith("usage: convserve")


def test_global_options_go_before_the_command(workdir: Path) -> None:
    done = convserve("convolve", "cat.png", "--preset", "sobel", "--url", "http://x",
                     cwd=workdir)
    assert done.returncode == 2
    assert text(done.stderr).startswith("usage: convserve [-h] [--url URL]")
    assert "convserve: error: unrecognized arguments: --url http://x" in text(done.stderr)


def test_console_script_is_installed(server_url: str) -> None:
    script = Path(sys.executable).with_name("convserve")
    assert script.exists(), f"{script} is missing: install ./clients/python (make test does)"
    done = subprocess.run([str(script), "--url", server_url, "health"], capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    version = subprocess.run([str(script), "--version"], capture_output=True, timeout=60,
                             check=True)
    assert text(version.stdout) == "convserve 0.1.0\n"
