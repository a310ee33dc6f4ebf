#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/).

Seeds are the requests of docs/protocol.md, encoded as `term_to_binary/1`
would encode them, plus a few terms of every kind the port meets. Run from
anywhere: `python3 fuzz/make_corpus.py`. The files are committed; running it
again rewrites them identically.
"""

import hashlib
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
MAX_FRAME = 16 * 1024 * 1024


# --- a minimal external term format encoder ---------------------------------


class Atom(str):
    pass


class Pid:
    def __init__(self, node, ident, serial, creation):
        self.node, self.ident, self.serial, self.creation = node, ident, serial, creation


class Ref:
    def __init__(self, node, ids, creation):
        self.node, self.ids, self.creation = node, ids, creation


class Improper:
    def __init__(self, items, tail):
        self.items, self.tail = items, tail


def enc_atom(name):
    raw = name.encode("utf-8")
    if len(raw) < 256:
        return bytes([119, len(raw)]) + raw
    return bytes([118]) + struct.pack(">H", len(raw)) + raw


def enc(t):
    if isinstance(t, bool):
        return enc_atom("true" if t else "false")
    if t is None:
        return enc_atom("undefined")
    if isinstance(t, Atom):
        return enc_atom(t)
    if isinstance(t, int):
        if 0 <= t < 256:
            return bytes([97, t])
        if -(2**31) <= t < 2**31:
            return bytes([98]) + struct.pack(">i", t)
        mag = abs(t).to_bytes((abs(t).bit_length() + 7) // 8, "little")
        sign = 1 if t < 0 else 0
        if len(mag) < 256:
            return bytes([110, len(mag), sign]) + mag
        return bytes([111]) + struct.pack(">I", len(mag)) + bytes([sign]) + mag
    if isinstance(t, float):
        return bytes([70]) + struct.pack(">d", t)
    if isinstance(t, str):
        t = t.encode("utf-8")
    if isinstance(t, bytes):
        return bytes([109]) + struct.pack(">I", len(t)) + t
    if isinstance(t, tuple):
        head = bytes([104, len(t)]) if len(t) < 256 else bytes([105]) + struct.pack(">I", len(t))
        return head + b"".join(enc(x) for x in t)
    if isinstance(t, list):
        if not t:
            return bytes([106])
        if (
            all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 256 for x in t)
            and len(t) < 65536
        ):
            return bytes([107]) + struct.pack(">H", len(t)) + bytes(t)
        return bytes([108]) + struct.pack(">I", len(t)) + b"".join(enc(x) for x in t) + bytes([106])
    if isinstance(t, Improper):
        return (
            bytes([108])
            + struct.pack(">I", len(t.items))
            + b"".join(enc(x) for x in t.items)
            + enc(t.tail)
        )
    if isinstance(t, dict):
        return (
            bytes([116])
            + struct.pack(">I", len(t))
            + b"".join(enc(k) + enc(v) for k, v in t.items())
        )
    if isinstance(t, Pid):
        return bytes([88]) + enc_atom(t.node) + struct.pack(">III", t.ident, t.serial, t.creation)
    if isinstance(t, Ref):
        return (
            bytes([90])
            + struct.pack(">H", len(t.ids))
            + enc_atom(t.node)
            + struct.pack(">I", t.creation)
            + b"".join(struct.pack(">I", i) for i in t.ids)
        )
    raise TypeError(f"cannot encode {t!r}")


def term_to_binary(t):
    return bytes([131]) + enc(t)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


# --- the seeds -----------------------------------------------------------------

A = Atom
PID = Pid("nonode@nohost", 83, 0, 1700000000)
REF = Ref("nonode@nohost", [1, 2, 3], 1700000000)

REQUESTS = [
    (A("setup"), 1, {}),
    (
        A("setup"),
        REF,
        {
            A("context_id"): 1,
            A("python_path"): [b"/srv/app", b"examples"],
            A("setup_code"): b"import echo_protocol\n",
            A("app_module"): b"http_protocol",
            A("app_callable"): b"SimpleHTTPProtocol",
            A("max_connections"): 1000,
        },
    ),
    (
        A("handoff"),
        1,
        {A("addr"): b"127.0.0.1", A("port"): 41052, A("type"): A("tcp"), A("reactor_pid"): PID},
    ),
    (A("handoff"), 2**64 - 1, {}),
    (A("stats"), 7),
    (A("stats"), REF),
    (A("exec"), 3, b"x = 1\n"),
    (A("eval"), 4, b"x + 1"),
    (A("call"), 5, b"math", b"sqrt", [16]),
    (A("call"), REF, A("json"), A("dumps"), [{b"k": [1, 2.5, None, True]}, (A("bytes"), b"\xff")]),
    (A("stop"), 6),
]

# Not requests, or bad ones: each gets a frame_error or a bad_request reply.
ODD_TERMS = [
    A("stats"),
    (A("stats"),),
    (A("launch"), 1),
    (A("handoff"), 0, {}),
    (A("exec"), 1, 42),
    (A("setup"), 1, {A("bogus"): 1}),
    (A("call"), 1, b"m", b"f", Improper([1], 2)),
    [-1, 2**40, -(2**300)],
    {(1, 2): [b"a", A("b")], 1.5: {}},
]

# Values for the term conversion to Python: every row of the table.
VALUES = [
    0,
    -7,
    2**31,
    -(2**63) - 1,
    10**40,
    1.5,
    -0.0,
    b"text",
    b"\xff\x00",
    (A("bytes"), b"raw"),
    True,
    A("nil"),
    A("ok"),
    [],
    [1, 2, 3],
    [b"a", [b"b", (1,)]],
    (),
    (1, b"two", 3.0),
    {},
    {A("addr"): b"127.0.0.1", A("port"): 8080, 1: (True, None)},
    PID,
    REF,
    Improper([1], 2),
]


def nested(kind, depth):
    t = 0
    for _ in range(depth):
        t = [t] if kind == "list" else (t,) if kind == "tuple" else {0: t}
    return t


def write(target, payloads):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for p in payloads:
        name = hashlib.sha1(p).hexdigest()
        (d / name).write_bytes(p)


def main():
    requests = [term_to_binary(t) for t in REQUESTS]
    odd = [term_to_binary(t) for t in ODD_TERMS]
    deep = [term_to_binary(nested(k, n)) for k in ("list", "tuple", "map") for n in (256, 257)]
    values = [term_to_binary(v) for v in VALUES]

    write("request", requests + odd + deep)
    write("convert", values + deep + [term_to_binary((A("call"), 1, b"m", b"f", VALUES))])

    # frame_reader input: [limit, repeat, nsplits, splits..., body]
    stream = b"".join(frame(p) for p in requests)
    huge = struct.pack(">I", 0xFFFFFFF0) + b"\x00" * 8 + frame(requests[4])
    over = struct.pack(">I", MAX_FRAME + 1) + frame(requests[4])
    write(
        "frame_reader",
        [
            bytes([7, 0, 0]) + stream,
            bytes([7, 0, 3, 0x81, 0x02, 0xC5]) + stream,
            bytes([7, 0x85, 2, 3, 200]) + stream,
            bytes([7, 3, 1, 0x8A]) + huge,
            bytes([7, 0, 0]) + over,
            bytes([4, 1, 1, 0x83]) + frame(b"x" * 50) + frame(b"y" * 101) + frame(b""),
            bytes([6, 0x8A, 1, 77]) + frame(b"z" * 1000) + struct.pack(">I", 20),
        ],
    )


if __name__ == "__main__":
    main()
