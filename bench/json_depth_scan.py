"""Cost of the REST door's JSON depth check (serving.rest_api.json_too_deep), as a ratio to
json.loads of the same body timed in the same run: every REST predict pays both. Bodies as
clients send them: JPEG frames in base64 (what `mbt predict --rest` sends), uint8 frames as
nested lists, and a hostile body of 200,000 '[' (refused by the scan alone).

    .venv/bin/python bench/json_depth_scan.py [--repeats 20]
"""
import argparse
import base64
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from serving.rest_api import json_too_deep  # noqa: E402


def bodies():
    rng = np.random.default_rng(0)
    waveform = rng.uniform(-1, 1, 8 * 16000).round(6).tolist()  # 8 s at 16 kHz
    jpeg = {"instances": [{"frames_jpeg": [{"b64": base64.b64encode(rng.bytes(30_000)).decode()}
                                           for _ in range(8)], "waveform": waveform}]}
    uint8 = {"instances": [{"frames_uint8": rng.integers(0, 256, (8, 96, 96, 3)).tolist(),
                            "waveform": waveform}]}
    return {"jpeg frames (b64)": json.dumps(jpeg).encode(),
            "uint8 frames (lists)": json.dumps(uint8).encode()}


def seconds(fn, repeats):
    fn()
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - began) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"{'body':<22}{'MB':>6}{'json.loads ms':>15}{'depth scan ms':>15}{'ratio':>8}")
    for name, body in bodies().items():
        parse = seconds(lambda: json.loads(body), args.repeats)
        scan = seconds(lambda: json_too_deep(body), args.repeats)
        print(f"{name:<22}{len(body) / 1e6:>6.2f}{parse * 1e3:>15.1f}{scan * 1e3:>15.2f}"
              f"{scan / parse:>8.3f}")
    hostile = b"[" * 200_000
    print(f"hostile '[' x 200000: refused by the scan in "
          f"{seconds(lambda: json_too_deep(hostile), args.repeats) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
