"""python-counter: a counter faaslet in Python, against `wasi:keyvalue`
(store and atomics, 0.2.0-draft2) only, built into a component of the
`rime:faaslet/faaslet` world (faas/wit/) by componentize-py
(scripts/build-guests).

Input: a command, text, words separated by one space:

- `incr BUCKET KEY`: adds 1 to KEY (an 8-byte little-endian i64, the
  layout of `atomics.increment`), answers the new value in decimal.
- `get BUCKET KEY`: the value's bytes, or `none`.
- `fail BUCKET KEY`: increments, then fails with an error (nothing commits).
- `raise BUCKET KEY`: increments, then raises an uncaught exception.
- `transfer BUCKET FROM TO N`: moves N from one i64 balance to another,
  reading both first; fails (committing nothing) if FROM would go negative.
- `env NAME`: the environment variable NAME (the function's settings), or
  `none`; `now`: the wall clock and a random number, as `SECONDS RANDOM`.
- `noop`: answers nothing.
"""

import os
import random
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import atomics, store


def open_bucket(name: str) -> store.Bucket:
    try:
        return store.open(name)
    except Err as e:
        raise Err(f"cannot open bucket {name!r}: {describe(e.value)}")


def describe(error) -> str:
    if isinstance(error, store.Error_Other):
        return error.value
    if isinstance(error, store.Error_AccessDenied):
        return "access denied"
    return "no such store"


def increment(bucket: str, key: str, delta: int) -> int:
    b = open_bucket(bucket)
    try:
        return atomics.increment(b, key, delta)
    except Err as e:
        raise Err(describe(e.value))


def read_i64(b: store.Bucket, key: str) -> int:
    value = b.get(key)
    return 0 if value is None else int.from_bytes(value, "little", signed=True)


def transfer(bucket: str, source: str, target: str, amount: int) -> bytes:
    b = open_bucket(bucket)
    have = read_i64(b, source)
    if have < amount:
        raise Err(f"{source} has {have}, less than {amount}")
    b.set(source, (have - amount).to_bytes(8, "little", signed=True))
    b.set(target, (read_i64(b, target) + amount).to_bytes(8, "little", signed=True))
    return b"ok"


class Handler(exports.Handler):
    def handle(self, input: bytes) -> bytes:
        words = input.decode("utf-8").split(" ")
        match words:
            case ["incr", bucket, key]:
                return str(increment(bucket, key, 1)).encode()
            case ["get", bucket, key]:
                value = open_bucket(bucket).get(key)
                return b"none" if value is None else value
            case ["fail", bucket, key]:
                n = increment(bucket, key, 1)
                raise Err(f"failed on purpose after incrementing to {n}")
            case ["raise", bucket, key]:
                n = increment(bucket, key, 1)
                raise RuntimeError(f"raised on purpose after incrementing to {n}")
            case ["transfer", bucket, source, target, amount]:
                return transfer(bucket, source, target, int(amount))
            case ["env", name]:
                return os.environ.get(name, "none").encode()
            case ["now"]:
                print(f"now called")
                return f"{time.time()} {random.getrandbits(64)}".encode()
            case ["noop"]:
                return b""
        raise Err(f"unknown command {input!r}")
