"""Service settings, read from ``CONVSERVE_*`` environment variables.

``create_app(Settings(...))`` takes an instance, so tests never patch the environment; only
``convserve.main:app`` reads the environment, once, when it is imported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from convserve.conv.tiling import DEFAULT_BAND_BYTES
from convserve.cores import available_cores

__all__ = ["Settings"]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting, with its environment variable ``CONVSERVE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CONVSERVE_", extra="ignore", frozen=True)

    engine: Literal["auto", "numpy", "onnxruntime"] = "auto"
    """Engine used when a request names none; ``auto`` runs each layer on the engine measured
    fastest for its shape (ONNX Runtime on CUDA) and the answer names the one that ran."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Device used when a request names none."""

    max_upload_bytes: Annotated[int, Field(ge=1)] = 25_000_000
    """Largest request body in bytes (image upload or JSON)."""
    max_pixels: Annotated[int, Field(ge=1)] = 50_000_000
    """Largest decoded image, width x height, checked from the header before decoding."""
    max_kernel_size: Annotated[int, Field(ge=1)] = 63
    """Largest kernel side (k_h and k_w)."""
    max_out_channels: Annotated[int, Field(ge=1)] = 512
    """Largest C_out of one layer."""
    max_macs: Annotated[int, Field(ge=1)] = 20_000_000_000
    """Largest number of multiply-accumulates one request may cost (all layers together)."""
    max_layers: Annotated[int, Field(ge=1)] = 32
    """Most layers in one /v1/layers request."""
    max_array_values: Annotated[int, Field(ge=1)] = 4_000_000
    """Most numbers a format=array response or a JSON input array may hold."""
    max_output_bytes: Annotated[int, Field(ge=1)] = 536_870_912
    """Largest float32 output of one request in bytes: a convolution's output, each /v1/layers
    feature map and weight tensor, and all maps a stack keeps together (512 MiB: Sobel's two
    maps of a 50 MP image, 400 MB, fit)."""

    memory_budget_bytes: Annotated[int, Field(ge=0)] = 0
    """Bytes of requests in flight one process admits (bodies before they are read, then the
    working memory of their decode, convolution and answer); more wait, then get 503. 0 = the
    container's memory limit (or the machine's RAM) / workers - 256 MiB (convserve.admission)."""
    body_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    """Seconds a request body may take to arrive in full; a slower one gets 408."""

    cors_origins: Annotated[list[str], NoDecode] = ["*"]
    """Origins allowed by CORS (comma-separated); ``*`` allows any, without credentials."""
    api_keys: Annotated[list[str], NoDecode] = []
    """Accepted API keys (comma-separated); empty means no authentication."""

    worker_threads: Annotated[int, Field(ge=1)] = Field(default_factory=available_cores)
    """Threads that run convolutions and encoding, per process."""
    queue_size: Annotated[int, Field(ge=0)] = 32
    """Requests that may wait for a worker thread before new ones get 503."""
    compute_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    """Seconds a request may wait for a compute thread and compute before it gets 504 (a full
    queue is refused with 503 at once)."""
    compute_nice: Annotated[int, Field(ge=0, le=19)] = 10
    """Nice value added to the threads that convolve and encode (Linux), so that the event
    loop, which accepts connections and answers health checks, gets the CPU first when both
    want it (convserve.priority); 0 runs them at the loop's priority."""
    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    """Threads one convolution may use (ONNX Runtime intra-op, NumPy bands); 0 = cores / workers."""
    web_concurrency: Annotated[int, Field(ge=1)] = Field(
        default_factory=lambda: int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    )
    """Server processes sharing this machine (uvicorn workers), to divide the cores among."""
    ort_cache_size: Annotated[int, Field(ge=1)] = 64
    """ONNX Runtime sessions kept per process (LRU by shapes, options and device)."""
    band_bytes: Annotated[int, Field(ge=0)] = DEFAULT_BAND_BYTES
    """Working memory in bytes (besides the input and output) above which a convolution runs in
    horizontal bands of about this size, with identical results (convserve.conv.tiling);
    0 never cuts bands."""
    png_compress_level: Annotated[int, Field(ge=0, le=9)] = 1
    """Deflate level of returned PNGs: 0 stores them uncompressed; 1-3 compress fast (ISA-L,
    1 fastest); 4-9 use zlib, a few % fewer bytes for many times the CPU (convserve.png;
    bench/bench_encode.py measures the choice)."""
    malloc_tuning: bool = True
    """Keep a request's arrays of up to 4 MiB in glibc's heap for the next request instead of
    mapping fresh pages for each (convserve.allocator); False leaves glibc as it is."""
    warmup: bool = True
    """Run one small convolution on each available engine at start-up before /readyz is 200."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of the service's structured logs."""

    max_model_bytes: Annotated[int, Field(ge=1)] = 100_000_000
    """Largest ONNX model upload in bytes (POST /v1/models; not the image upload limit)."""
    model_dir: Path = Path(tempfile.gettempdir()) / "convserve-models"
    """Directory of the model store; workers and replicas that share it share the models."""
    model_store_bytes: Annotated[int, Field(ge=1)] = 1_000_000_000
    """Bytes the model store may hold; least recently used models are evicted past it."""
    model_sessions: Annotated[int, Field(ge=1)] = 4
    """ONNX Runtime sessions of uploaded models kept per process (LRU; each holds weights)."""
    sample_model: bool = True
    """Store the demo page's sample network in the model store at start-up, in the background
    after the warm-up (once for every worker and replica sharing CONVSERVE_MODEL_DIR; /readyz
    does not wait for it); 0 leaves it to POST /v1/models/sample."""
    sample_model_file: Path | None = None
    """The sample network built ahead of time (``python -m convserve.models.sample --out
    FILE``; the Docker images set it); unset or unreadable, the sample is built in the process
    (about a second)."""

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def threads_per_op(self) -> int:
        """Threads one convolution may use so that workers do not oversubscribe the cores."""
        if self.intra_op_threads:
            return self.intra_op_threads
        return max(1, available_cores() // self.web_concurrency)
