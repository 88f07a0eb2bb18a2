"""``convserve convolve`` and ``convserve layers`` over many inputs, as a process against a real
server: names mirrored under -o DIR, a bad input listed while the rest are done, --resume,
stdin lists and globs, a progress bar on a terminal and plain lines elsewhere, and Ctrl-C (a
real SIGINT) leaving no partial output."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import termios
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convserve_client import Client, UnprocessableEntityError
from tests.client.conftest import DATA
from tests.client.test_cli import CLI, convserve, text

pytestmark = pytest.mark.e2e  # a real uvicorn process over loopback


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/cat.png, photos/camera.png and photos/more/rocket.jpg, plus a text file."""
    root = tmp_path / "photos"
    (root / "more").mkdir(parents=True)
    shutil.copy(DATA / "chelsea.png", root / "cat.png")
    shutil.copy(DATA / "camera.png", root / "camera.png")
    shutil.copy(DATA / "rocket.jpg", root / "more" / "rocket.jpg")
    (root / "notes.txt").write_text("not an input: a directory contributes images only\n")
    return tmp_path


def bad_detail(server_url: str, path: Path) -> str:
    """The problem detail the server gives for ``path`` on its own."""
    with Client(server_url, max_retries=0) as cs, pytest.raises(UnprocessableEntityError) as info:
        cs.convolve(path, preset="sobel")
    return f"422 {info.value.problem.detail}"


def test_a_directory_mirrors_its_names_with_one_line_per_input(server_url: str,
                                                                photos: Path) -> None:
    done = convserve("convolve", "photos", "--recursive", "--preset", "sobel", "-o", "edges",
                     "--jobs", "2", url=server_url, cwd=photos)
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(photos / "edges")) for p in
                     (photos / "edges").rglob("*") if p.is_file())
    assert written == ["camera/channel_000.png", "camera/channel_001.png",
                       "cat/channel_000.png", "cat/channel_001.png",
                       "more/rocket/channel_000.png", "more/rocket/channel_001.png"]
    with Client(server_url) as cs:
        alone = cs.convolve(photos / "photos" / "cat.png", preset="sobel")
    assert (photos / "edges" / "cat" / "channel_001.png").read_bytes() == alone.channels[1].png
    # stderr is a pipe here: one plain line per finished input, no bar.
    lines = text(done.stderr).splitlines()
    assert sorted(line.split("] ", 1)[1] for line in lines) == [
        "photos/camera.png -> edges/camera", "photos/cat.png -> edges/cat",
        "photos/more/rocket.jpg -> edges/more/rocket"]
    assert sorted(line.split(" ", 1)[0] for line in lines) == ["[1/3]", "[2/3]", "[3/3]"]
    assert text(done.stdout).startswith("done 3, failed 0, skipped 0 in ")
    assert text(done.stdout).rstrip().endswith("images/s)")


def test_a_bad_input_is_listed_with_the_servers_detail_and_the_rest_are_done(
        server_url: str, photos: Path) -> None:
    (photos / "bad.png").write_bytes(b"this is no PNG")
    done = convserve("convolve", "photos/cat.png", "bad.png", "photos/camera.png", "--preset",
                     "sobel", "--format", "npy", "-o", "out", "--quiet", url=server_url,
                     cwd=photos)
    assert done.returncode == 1
    assert sorted(p.name for p in (photos / "out").iterdir()) == ["camera.npy", "cat.npy"]
    assert np.load(photos / "out" / "cat.npy").shape == (2, 300, 451)
    assert text(done.stderr) == ("convserve: 1 of 3 input(s) failed:\n"
                                 f"  bad.png: {bad_detail(server_url, photos / 'bad.png')}\n")
    assert text(done.stdout).startswith("done 2, failed 1, skipped 0 in ")


def test_resume_skips_inputs_whose_output_exists(server_url: str, photos: Path) -> None:
    args = ("convolve", "photos/cat.png", "photos/camera.png", "--preset", "sobel",
            "--format", "grid", "-o", "out")
    first = convserve(*args, url=server_url, cwd=photos)
    assert first.returncode == 0, first.stderr
    kept = photos / "out" / "cat.png"
    kept.write_bytes(b"left alone by --resume")
    (photos / "out" / "camera.png").unlink()

    resumed = convserve(*args, "--resume", url=server_url, cwd=photos)
    assert resumed.returncode == 0, resumed.stderr
    assert text(resumed.stdout).startswith("done 1, failed 0, skipped 1 in ")
    assert "skipping 1 input(s) whose output exists (--resume)" in text(resumed.stderr)
    assert kept.read_bytes() == b"left alone by --resume"
    with Image.open(photos / "out" / "camera.png") as grid:
        assert grid.format == "PNG"

    again = convserve(*args, url=server_url, cwd=photos)  # without --resume: rewritten
    assert text(again.stdout).startswith("done 2, failed 0, skipped 0 in ")
    assert kept.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paths_on_stdin_and_a_glob(server_url: str, photos: Path) -> None:
    listing = "photos/cat.png\n\nphotos/more/rocket.jpg\n"
    done = subprocess.run([*CLI, "--url", server_url, "convolve", "-", "--preset",
                           "gaussian_blur", "--format", "image", "-o", "blur"],
                          input=listing.encode(), cwd=photos, capture_output=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (photos / "blur").iterdir()) == ["cat.png", "rocket.png"]

    globbed = convserve("convolve", "photos/*.png", "--preset", "sobel", "--format", "npy",
                        "-o", "g", url=server_url, cwd=photos)
    assert globbed.returncode == 0, globbed.stderr
    assert sorted(p.name for p in (photos / "g").iterdir()) == ["camera.npy", "cat.npy"]


def test_layers_over_many_inputs(server_url: str, photos: Path) -> None:
    stack = [{"type": "conv2d", "preset": "sobel", "activation": "relu"},
             {"type": "maxpool2d", "kernel_size": 2}]
    (photos / "stack.json").write_text(json.dumps(stack))
    done = convserve("layers", "photos/cat.png", "photos/camera.png", "--layers", "stack.json",
                     "--format", "npy", "-o", "maps", url=server_url, cwd=photos)
    assert done.returncode == 0, done.stderr
    assert np.load(photos / "maps" / "cat.npy").shape == (2, 150, 225)
    assert np.load(photos / "maps" / "camera.npy").shape[0] == 2


@pytest.mark.parametrize("args, message", [
    pytest.param(["photos/cat.png", "photos/camera.png", "--preset", "sobel"],
                 "several inputs need -o DIR", id="no-output-dir"),
    pytest.param(["photos", "--preset", "sobel", "-o", "photos/cat.png"],
                 "-o 'photos/cat.png' is a file; a batch writes into a directory",
                 id="output-is-a-file"),
    pytest.param(["photos/cat.png", "photos/more/../cat.jpg", "--preset", "sobel", "-o", "o"],
                 "would both write 'o/cat'", id="same-name"),
    pytest.param(["photos/*.gif", "--preset", "sobel", "-o", "o"],
                 "'photos/*.gif' matches no file", id="empty-glob"),
    pytest.param(["photos/more", "photos/cat.png", "--preset", "sobel", "--dry-run", "-o", "o"],
                 "--dry-run and --json take a single input", id="dry-run"),
    pytest.param(["photos", "--preset", "sobel", "-o", "o", "--jobs", "0"],
                 "argument -j/--jobs: must be an integer >= 1; got '0'", id="jobs-0"),
])
def test_batch_usage_errors_exit_2(photos: Path, args: list[str], message: str) -> None:
    shutil.copy(photos / "photos" / "cat.png", photos / "photos" / "more" / ".." / "cat.jpg")
    done = convserve("--url", "http://127.0.0.1:9", "convolve", *args, cwd=photos)
    assert done.returncode == 2, done.stderr
    assert message in text(done.stderr)


def test_ctrl_c_stops_cleanly_without_partial_outputs(server_url: str, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    # Far more than the few that finish before the signal, and more progress lines than a
    # pipe holds (64 KiB): the batch cannot end before this test reads its first line, however
    # long the test process waits for the CPU (polling the output folder once lost that race).
    count = 2000
    for i in range(count):
        os.link(DATA / "camera.png", inputs / f"frame_{i:04d}.png")
    out = tmp_path / "out"
    # The CLI gets SIGINT as a terminal's foreground job does: a disposition this test process
    # was left with (SIG_IGN is inherited across exec) would make it ignore the Ctrl-C.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen([*CLI, "--url", server_url, "convolve", "in", "--preset",
                                    "sobel", "--format", "zip", "-o", "out", "--jobs", "4"],
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        if inherited is not None:  # None: a handler set outside Python, left in place
            signal.signal(signal.SIGINT, inherited)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # "[1/2000] in/... -> out/...": one output written
        assert first.startswith(b"[1/"), first + process.communicate()[1]
        process.send_signal(signal.SIGINT)
        stdout, rest = process.communicate(timeout=60)
        stderr = first + rest
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (inherited, stderr[-500:])
    summary = stdout.decode()
    assert summary.startswith("interrupted: done "), summary
    names = sorted(p.name for p in out.iterdir())
    assert all(name.endswith(".zip") and not name.startswith(".") for name in names), names
    assert 0 < len(names) < count
    assert f"done {len(names)}, failed 0, skipped 0, not run {count - len(names)} in " in summary
    for name in names:  # every output there is whole
        with zipfile.ZipFile(out / name) as archive:
            assert archive.testzip() is None
            assert sorted(archive.namelist()) == ["channel_000.png", "channel_001.png",
                                                  "manifest.json"]


def test_one_input_keeps_the_single_command(server_url: str, photos: Path) -> None:
    """A lone file is no batch: the summary and -o behave as before (-o names a folder)."""
    done = convserve("convolve", "photos/cat.png", "--preset", "sobel", "-o", "one",
                     url=server_url, cwd=photos)
    assert done.returncode == 0, done.stderr
    assert "shape     2 x 300 x 451 (c_out, h, w)" in text(done.stdout)
    assert sorted(p.name for p in (photos / "one").iterdir()) == ["channel_000.png",
                                                                  "channel_001.png"]


def test_a_terminal_gets_a_progress_bar_with_count_rate_and_eta(server_url: str,
                                                                 photos: Path) -> None:
    main_fd, child_fd = pty.openpty()  # stderr a terminal of 100 columns, stdout a pipe
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen([*CLI, "--url", server_url, "convolve", "photos/cat.png",
                                "photos/camera.png", "--preset", "sobel", "-o", "out"],
                               cwd=photos, stdout=subprocess.PIPE, stderr=child_fd)
    os.close(child_fd)
    shown = b""
    while chunk := read_or_end(main_fd):
        shown += chunk
    os.close(main_fd)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0, shown
    last = shown.decode().replace("\r", "\n").split("\n")
    assert any(line.startswith("100%|") and "| 2/2 [" in line and "img/s]" in line
               for line in last), shown
    assert not any(line.startswith("[1/2]") for line in last)  # no plain lines on a terminal
    assert stdout.decode().startswith("done 2, failed 0, skipped 0 in ")


def read_or_end(fd: int) -> bytes:
    """The terminal's next output; b"" once the process has closed it (EIO on Linux)."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""
