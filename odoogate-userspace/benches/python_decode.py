"""Time Python's decoders on the bodies the Rust decode bench wrote.

Odoo reads XML-RPC with ``xmlrpc.client.loads(data, use_datetime=True)``
and JSON bodies with ``json.loads``. This script times those calls with
``timeit`` on each case of ``manifest.json`` (written by
``benches/decode.rs`` when ``ODOOGATE_BENCH_INPUTS`` is set) and prints one
JSON object: case key -> seconds per pass over the case's bodies.

Usage: python3 python_decode.py INPUTS_DIR
       python3 python_decode.py INPUTS_DIR --passes N CASE

The second form only decodes the bodies of CASE (``surface/case``) N times,
so that ``cargo xtask bench`` can count its instructions under callgrind.
"""

import json
import sys
import timeit
import xmlrpc.client
from pathlib import Path

# Passes per measurement come from ``Timer.autorange`` (at least 0.2 s);
# the fastest of REPEATS measurements is kept, as the timeit docs advise.
REPEATS = 5


def decoder(name):
    if name == "xmlrpc":
        return lambda body: xmlrpc.client.loads(body, use_datetime=True)
    if name == "json":
        return json.loads
    raise ValueError(f"unknown decoder {name!r} in manifest.json")


def seconds_per_pass(decode, bodies):
    """Return the fastest of REPEATS measured passes over ``bodies``."""

    def one_pass():
        for body in bodies:
            decode(body)

    timer = timeit.Timer(one_pass)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=REPEATS, number=number)) / number


def decode_passes(inputs, manifest, passes, key):
    """Decode the bodies of case ``key`` ``passes`` times, timing nothing."""
    for case in manifest:
        if f"{case['surface']}/{case['case']}" == key:
            bodies = [(inputs / name).read_bytes() for name in case["bodies"]]
            decode = decoder(case["python"])
            for _ in range(passes):
                for body in bodies:
                    decode(body)
            return
    sys.exit(f"no case {key!r} in manifest.json")


def main():
    if len(sys.argv) not in (2, 5) or (len(sys.argv) == 5 and sys.argv[2] != "--passes"):
        sys.exit("usage: python_decode.py INPUTS_DIR [--passes N CASE]")
    inputs = Path(sys.argv[1])
    manifest = json.loads((inputs / "manifest.json").read_text())
    if len(sys.argv) == 5:
        decode_passes(inputs, manifest, int(sys.argv[3]), sys.argv[4])
        return
    results = {}
    for case in manifest:
        bodies = [(inputs / name).read_bytes() for name in case["bodies"]]
        decode = decoder(case["python"])
        results[f"{case['surface']}/{case['case']}"] = seconds_per_pass(decode, bodies)
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
