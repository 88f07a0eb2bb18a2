"""The ``convserve`` command line.

    convserve [--url URL] [--api-key KEY] [--timeout S] COMMAND ...

    convserve convolve cat.png --preset sobel -o out/          one PNG per output channel
    convserve convolve x.npy --kernel kernel.json --format npy -o y.npy
    convserve presets | preset gabor --channels 3 | engines | health
    convserve explain x.json --kernel kernel.json --at 0,0,0
    convserve layers cat.png --layers stack.json --format onnx -o model.onnx
    convserve layers cat.png --layers stack.json --kernel-file vgg.safetensors -o maps/
    convserve convolve photos/ --recursive --preset sobel --jobs 4 -o edges/   a batch

Global options come before the command. Exit status: 0 success, 1 the server answered with
an error (its ``detail`` on stderr), a result could not be written, or an input of a batch
failed, 2 a usage error (bad option, unreadable input file), 3 the server could not be reached
or did not answer in time, 130 interrupted (Ctrl-C).
"""

from convserve_client.cli._main import main

__all__ = ["main"]
