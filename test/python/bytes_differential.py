"""Differential check of ``data`` against ``bytes``.

:func:`differences` runs the whole surface of ``bytes`` on a value and on
``bytes(value)``, a plain copy, and lists every case whose outcome differs:
every method of ``bytes`` (enumerated from ``dir(bytes)``, so a method added
by a new Python is checked without anyone listing it), called with a pool
of arguments and with argument lists of its own, the operators, and the
standard library's consumers of ``bytes`` (json, pickle, copy, re, struct,
hashlib, zlib, urllib.parse, os.path, socket, ...).

An outcome is the result, normalised so that it can be compared (its exact
type and value, recursively), or the exception's type and message.  The
names ``bytes`` and ``ReactorBuffer`` are the same in messages, and a
function that returns its argument itself (``os.fspath``) returns "the
bytes": for ``bytes`` that is the same object too.

Used by ``test_bytes_differential.py`` on buffers made in Python and read
from real sockets, and by the port tests on the ``data`` the loop passes to
``data_received``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import copy
import hashlib
import hmac
import io
import itertools
import json
import marshal
import os
import pickle
import re
import socket
import struct
import threading
import types
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator

# Members of ``bytes`` whose outcome differs by design, and why.  Everything
# else in ``dir(bytes)`` is called and compared.
NOT_COMPARED = {
    "__class__": "the type itself: ReactorBuffer, a subclass of bytes",
    "__doc__": "ReactorBuffer's own docstring",
    "__dir__": "dir(data) is dir(bytes) plus memoryview (checked by covers_dir)",
    "__reduce__": "reduces to (bytes, (bytes(data),)); what pickle and copy give is compared",
    "__reduce_ex__": "as __reduce__",
}

# Arguments tried, alone and in pairs, with every method.
POOL: list[object] = [
    b"",
    b"a",
    b":",
    b"ab",
    b"\r\n",
    b" ",
    0,
    1,
    2,
    -1,
    97,
    256,
    10**30,
    None,
    "a",
    "utf-8",
    "strict",
    1.5,
    (b"a", b"b"),
    (),
    bytearray(b"b"),
    memoryview(b"a"),
    [97],
    bytes,
    slice(1, None),
    slice(None, None, -2),
]

# Pairs: a smaller pool, every method, small data only.
PAIR_POOL: list[object] = [b"", b"a", b":", b"ab", 0, 1, 2, -1, 10**30, None, "a", "utf-8", (b"a",)]

# For data longer than this, the pools hold no argument that multiplies its
# size (``data * 256``) and pairs are not tried.
SMALL = 512
LARGE_POOL: list[object] = [x for x in POOL if x not in (97, 256)]

_INDICES = [None, -100, -3, -1, 0, 1, 2, 5, 100, 10**30]
_SUBS = [b"", b"a", b"b", b"ab", b"\r\n", 97, 256, "a", bytearray(b"a"), memoryview(b"b")]
_SUBS.append((b"a", b"x"))

# Argument lists of their own (positional tuples, or (tuple, dict) for
# keywords), for methods whose interesting calls the pools do not reach.
SPECIFIC: dict[str, list[object]] = {
    "count": [(s, i, j) for s in _SUBS for i in _INDICES[:6] for j in _INDICES[3:]],
    "find": [(s, i, j) for s in _SUBS for i in _INDICES[:6] for j in _INDICES[3:]],
    "rfind": [(s, i, j) for s in _SUBS for i in _INDICES[:6] for j in _INDICES[3:]],
    "index": [(s, i, j) for s in _SUBS[:5] for i in _INDICES[:6] for j in _INDICES[3:]],
    "rindex": [(s, i, j) for s in _SUBS[:5] for i in _INDICES[:6] for j in _INDICES[3:]],
    "startswith": [(s, i, j) for s in _SUBS for i in _INDICES for j in _INDICES[:4]],
    "endswith": [(s, i, j) for s in _SUBS for i in _INDICES for j in _INDICES[:4]],
    "split": [((), {"sep": s, "maxsplit": m}) for s in (None, b"a", b" ", b"") for m in (-1, 1, 2)]
    + [(b"a", None), ((), {"maxsplit": "1"})],
    "rsplit": [((), {"sep": s, "maxsplit": m}) for s in (None, b"a", b" ") for m in (-1, 0, 1, 2)],
    "splitlines": [((), {"keepends": True}), ((), {"keepends": False}), (True,), ((), {"x": 1})],
    "replace": [(a, b, n) for a in (b"a", b"", b"ab") for b in (b"", b"xyz") for n in (-1, 0, 1, 2)]
    + [((b"a", b"b"), {"count": 1})],
    "decode": [
        ("utf-8", "replace"),
        ("utf-8", "ignore"),
        ("utf-8", "surrogateescape"),
        ("latin-1",),
        ("ascii", "backslashreplace"),
        ("utf-16",),
        ("cp1252",),
        ("hex",),
        ("no-such-codec",),
        ("utf-8", "bogus"),
        ((), {"encoding": "latin-1"}),
        ((), {"errors": "replace"}),
    ],
    "hex": [(":",), (b"-", 2), ("::",), (":", -3), ((), {"sep": "_", "bytes_per_sep": 4})],
    "center": [(w, f) for w in (0, 3, 10, 41) for f in (b"*", b"", b"ab", "*")],
    "ljust": [(w, f) for w in (0, 3, 10, 41) for f in (b"*", b"", "*")],
    "rjust": [(w, f) for w in (0, 3, 10, 41) for f in (b"*", b"", "*")],
    "zfill": [(w,) for w in (0, 3, 10, 41)],
    "expandtabs": [(t,) for t in (0, 1, 3, 8, -1)] + [((), {"tabsize": 4})],
    "translate": [
        (None, b"a"),
        (bytes(range(256))[::-1],),
        (bytes.maketrans(b"ab", b"ba"), b"\r\n"),
        (b"short",),
        ((None,), {"delete": b"b"}),
    ],
    "maketrans": [(b"ab", b"cd"), (b"a", b"bc"), (b"", b"")],
    "join": [([b"x", b"y"],), ([],), ([b"x", "y"],), ((bytearray(b"1"), memoryview(b"2")),)],
    "partition": [(s,) for s in (b"a", b"\r\n", b"", b"zz")],
    "rpartition": [(s,) for s in (b"a", b"\r\n", b"", b"zz")],
    "strip": [(c,) for c in (b"ab", b"\r\n ", bytes(range(128)))],
    "lstrip": [(c,) for c in (b"ab", b"\r\n ", bytes(range(128)))],
    "rstrip": [(c,) for c in (b"ab", b"\r\n ", bytes(range(128)))],
    "removeprefix": [(s,) for s in (b"GET", b"ab", b"\xff")],
    "removesuffix": [(s,) for s in (b"\r\n", b"ab", b"}")],
    "fromhex": [("0a 1B",), ("zz",), ("",), ("0",)],
    "__getitem__": [
        (slice(a, b, c),) for a in (None, -7, 2) for b in (None, -1, 9) for c in (None, 3, -1)
    ],
    "__mod__": [((b"x", 1),), ({b"k": 1},), (3.5,)],
    "__new__": [(bytes, b"x"), (bytes, "x", "ascii"), (int,)],
    "__format__": [("",), ("s",), ("10",)],
    "__getattribute__": [("upper",), ("__len__",), ("nope",)],
}


def _outcome(call: Callable[[], object], subject: object) -> tuple:
    try:
        value = call()
    except Exception as e:  # every exception is an outcome to compare
        message = str(e).replace("erlang.reactor.ReactorBuffer", "bytes")
        return ("raise", type(e).__name__, message.replace("ReactorBuffer", "bytes"))
    return ("ok", normalise(value, subject))


# Types whose values compare as they are; their normal form is (name, value).
_PLAIN = {
    kind: f"{kind.__module__}.{kind.__qualname__}"
    for kind in (bool, int, float, complex, str, bytes, type(None), type(NotImplemented))
}


def normalise(value: object, subject: object) -> object:
    """A form of ``value`` that compares by exact type and contents."""
    if value is subject:
        # The data itself: for bytes the same object, for a ReactorBuffer
        # the data, which is the bytes it holds.
        return (_PLAIN[bytes], bytes(value))  # type: ignore[call-overload]
    kind = type(value)
    if kind in _PLAIN:
        return (_PLAIN[kind], value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, (list, tuple)):
        if all(type(v) in _PLAIN for v in value):  # list(data) and the like, quickly
            return (name, [(_PLAIN[type(v)], v) for v in value])
        return (name, [normalise(v, subject) for v in value])
    if isinstance(value, dict):
        return (name, [(normalise(k, subject), normalise(v, subject)) for k, v in value.items()])
    if isinstance(value, (set, frozenset)):
        return (name, sorted(repr(normalise(v, subject)) for v in value))
    if isinstance(value, memoryview):
        return (name, value.tobytes(), value.format, value.readonly, normalise(value.obj, subject))
    if isinstance(value, re.Pattern):
        # `pattern` is the object compiled, or an equal one compiled before
        # (re caches by value): a ReactorBuffer when data was.
        pattern = value.pattern
        return (name, type(pattern).__mro__[-2].__name__, bytes(pattern), value.flags, value.groups)
    if isinstance(value, re.Match):
        groups = normalise(value.groups(), subject)
        return (name, value.span(), groups, normalise(value[0], subject))
    if isinstance(value, Iterator):
        return (name, [normalise(v, subject) for v in value])
    if isinstance(value, (types.BuiltinMethodType, types.MethodWrapperType)):
        return (name, value.__name__, normalise(value.__self__, subject))
    if hasattr(value, "hexdigest"):
        return (name, value.hexdigest())
    return (name, value)


def _calls(name: str, size: int) -> Iterable[tuple[tuple, dict]]:
    pool = POOL if size <= SMALL else LARGE_POOL
    yield (), {}
    for a in pool:
        yield (a,), {}
    if size <= SMALL and not name.startswith("__"):
        for a, b in itertools.product(PAIR_POOL, repeat=2):
            yield (a, b), {}
    for spec in SPECIFIC.get(name, []):
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
            yield spec[0], spec[1]  # type: ignore[misc]
        else:
            yield spec, {}  # type: ignore[misc]


def compared_members() -> list[str]:
    """Every member of ``bytes`` that is called and compared."""
    return sorted(n for n in dir(bytes) if n not in NOT_COMPARED and callable(getattr(bytes, n)))


def method_differences(data: bytes, plain: bytes, counts: dict[str, int]) -> list[str]:
    """Differences of every method of ``bytes`` on ``data`` and ``plain``.

    ``counts[name]`` grows by the calls of ``name`` that returned normally
    on ``plain``: a method never called successfully was not really tested.
    """
    bad = []
    for name in compared_members():
        for args, kwargs in _calls(name, len(plain)):
            want = _outcome(lambda: getattr(plain, name)(*args, **kwargs), plain)  # noqa: B023
            got = _outcome(lambda: getattr(data, name)(*args, **kwargs), data)  # noqa: B023
            if want[0] == "ok":
                counts[name] = counts.get(name, 0) + 1
            if want != got:
                call = f"{name}(*{args!r}, **{kwargs!r})"
                bad.append(f"{call}: bytes gives {want!r}, data gives {got!r}")
    return bad


def _through_socket(d: bytes) -> tuple[int, bytes]:
    """Sends ``d`` over a socket pair with ``sendall`` and ``sendmsg``."""
    a, b = socket.socketpair()
    got = bytearray()

    def drain() -> None:
        while chunk := b.recv(65536):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        a.sendall(d)
        sent = a.sendmsg([d, b"|"])
    finally:
        a.shutdown(socket.SHUT_WR)
        reader.join(10)
        a.close()
        b.close()
    return sent, bytes(got)


def _through_pipe(d: bytes) -> bytes:
    r, w = os.pipe()
    got = bytearray()
    try:
        view = d
        while view:
            n = os.write(w, view[:32768])
            got += os.read(r, 65536)
            view = view[n:]
    finally:
        os.close(r)
        os.close(w)
    return bytes(got)


def _hashed(d: bytes) -> list[str]:
    h = hashlib.sha256()
    h.update(d)
    return [
        h.hexdigest(),
        hashlib.md5(d).hexdigest(),
        hashlib.sha1(d).hexdigest(),
        hashlib.blake2b(d, digest_size=16).hexdigest(),
        hashlib.new("sha512", d).hexdigest(),
        hmac.new(b"key", d, "sha256").hexdigest(),
    ]


# Expressions evaluated with ``d`` bound to the data and to its copy.
EXPRESSIONS: list[str] = [
    # what the type is
    "isinstance(d, bytes)",
    "issubclass(type(d), bytes)",
    "isinstance(d, __import__('collections.abc').abc.Sequence)",
    "isinstance(d, __import__('collections.abc').abc.Hashable)",
    "isinstance(d, (str, bytes))",
    # operators
    "len(d)",
    "bool(d)",
    "not d",
    "d * 2",
    "2 * d",
    "d * 0",
    "d * -1",
    "d * True",
    "d * 1.5",
    "d + b'>'",
    "b'<' + d",
    "d + d",
    "d + bytearray(b'>')",
    "bytearray(b'<') + d",
    "d + memoryview(b'>')",
    "d + 'x'",
    "d + 1",
    "d[0]",
    "d[-1]",
    "d[1:3]",
    "d[::-1]",
    "d[::2]",
    "d['a']",
    "d % ()",
    "d % (1, 2)",
    "b'%s|%b' % (d, d)",
    "d == bytes(d)",
    "bytes(d) == d",
    "d != b'a'",
    "d < b'b'",
    "d >= b'a'",
    "d == bytearray(d)",
    "bytearray(d) == d",
    "d == memoryview(bytes(d))",
    "d == str(d)",
    "d < 'a'",
    "b'a' in d",
    "97 in d",
    "256 in d",
    "'a' in d",
    "d in b'xabcx'",
    "d in [b'abc']",
    "hash(d)",
    "{bytes(d): 'found'}.get(d)",
    "{d: 'found'}.get(bytes(d))",
    "len({d, bytes(d)})",
    "sorted([d, b'b', b'a'])",
    # text forms
    "str(d)",
    "repr(d)",
    "ascii(d)",
    "f'{d}'",
    "f'{d!r}'",
    "format(d, '')",
    "format(d, 'x')",
    "'%s' % (d,)",
    "'%r' % (d,)",
    "str(d, 'latin-1')",
    "str(d, 'utf-8', 'replace')",
    "str(d, 'utf-8')",
    # conversions and the buffer protocol
    "bytes(d)",
    "bytearray(d)",
    "list(d)",
    "tuple(d)",
    "list(reversed(d))",
    "list(iter(d))",
    "sum(d)",
    "max(d, default=-1)",
    "sorted(d)",
    "set(d)",
    "dict.fromkeys(d)",
    "list(enumerate(d))[:5]",
    "memoryview(d).tobytes()",
    "memoryview(d).readonly",
    "memoryview(d).format",
    "memoryview(d).nbytes",
    "memoryview(d).cast('c').tobytes()",
    "memoryview(d)[1:3].tobytes()",
    "int.from_bytes(d, 'big')",
    "int.from_bytes(d, 'little', signed=True)",
    "int(d)",
    "float(d)",
    "complex(d)",
    "__import__('array').array('B', d).tolist()",
    "__import__('ctypes').create_string_buffer(d).raw",
    "__import__('ctypes').c_char_p(d).value",
    "marshal.loads(marshal.dumps(d))",
    "io.BytesIO(d).read()",
    "io.BytesIO(d).readlines()",
    "io.BufferedReader(io.BytesIO(d)).read(5)",
    "(lambda b: (b.extend(d), b)[1])(bytearray(b'pre'))",
    "b''.join([d, d])",
    "b'-'.join([d, b'x'])",
    "d.join([b'1', b'2'])",
    # json
    "json.loads(d)",
    "json.loads(d.decode('latin-1'))",
    "json.dumps(d)",
    "json.detect_encoding(d)",
    # pickle and copy: plain bytes come back (see NOT_COMPARED)
    *[f"pickle.loads(pickle.dumps(d, {p}))" for p in range(pickle.HIGHEST_PROTOCOL + 1)],
    "pickle.loads(pickle.dumps([d, d]))",
    "pickle.loads(d)",
    "copy.copy(d)",
    "copy.deepcopy(d)",
    "copy.deepcopy([d, {'k': d}])",
    # re
    "re.search(rb'\\d+', d)",
    "re.match(rb'(\\w+)\\s', d)",
    "re.findall(rb'[a-z]+', d)",
    "re.split(rb'\\s+', d)",
    "re.sub(rb'a', rb'<\\g<0>>', d)",
    "re.sub(rb'b', d, b'abc')",
    "re.escape(d)",
    "re.compile(d) if len(d) <= 4096 else None",
    "re.fullmatch(re.escape(d), d) if len(d) <= 4096 else None",
    "list(re.finditer(rb'.', d[:64], re.S))",
    "re.search(d, bytes(d)) if len(d) <= 4096 else None",
    "re.search('a', d)",
    # struct
    "struct.unpack_from('>H', d)",
    "struct.unpack_from('<4s', d, 1)",
    "struct.unpack(f'{len(d)}s', d)",
    "struct.unpack('>I', d)",
    "list(struct.iter_unpack('B', d[:64]))",
    "struct.pack('6s', d)",
    "struct.pack('p', d)",
    "struct.Struct('2s').unpack_from(d)",
    # hashlib, hmac
    "_hashed(d)",
    "hmac.compare_digest(d, bytes(d))",
    # zlib and friends
    "zlib.crc32(d)",
    "zlib.adler32(d)",
    "zlib.decompress(zlib.compress(d))",
    "zlib.decompress(d)",
    "(lambda c: c.compress(d) + c.flush())(zlib.compressobj())",
    "binascii.hexlify(d)",
    "binascii.crc_hqx(d, 0)",
    "base64.b64encode(d)",
    "base64.b64decode(d)",
    "base64.urlsafe_b64encode(d)",
    "codecs.decode(d, 'utf-8')",
    "codecs.encode(d, 'hex')",
    "codecs.decode(d, 'latin-1')",
    # urllib.parse
    "urllib.parse.quote_from_bytes(d)",
    "urllib.parse.quote(d)",
    "urllib.parse.quote_plus(d)",
    "urllib.parse.unquote_to_bytes(d)",
    "urllib.parse.unquote(d)",
    "urllib.parse.urlsplit(d)",
    "urllib.parse.urlparse(d)",
    "urllib.parse.urljoin(b'http://h/a/b', d)",
    "urllib.parse.parse_qs(d)",
    "urllib.parse.parse_qsl(d, keep_blank_values=True)",
    "urllib.parse.urlencode({b'k': d})",
    "urllib.parse.urldefrag(d)",
    # os.path, os
    "os.fspath(d)",
    "os.fsdecode(d)",
    "os.fsencode(d)",
    "os.path.join(d, b'x')",
    "os.path.join(b'/', d)",
    "os.path.basename(d)",
    "os.path.dirname(d)",
    "os.path.split(d)",
    "os.path.splitext(d)",
    "os.path.normpath(d)",
    "os.path.normcase(d)",
    "os.path.isabs(d)",
    "os.path.expanduser(d)",
    "os.path.commonprefix([d, b'ab'])",
    "os.path.exists(d)",
    "os.stat(d)",
    "_through_pipe(d)",
    # socket
    "_through_socket(d)",
    "socket.inet_ntoa(d)",
    "socket.inet_ntop(socket.AF_INET6, d)",
]

# What the expressions may use besides ``d``.
_NAMES = {
    "base64": base64,
    "binascii": binascii,
    "codecs": codecs,
    "copy": copy,
    "hmac": hmac,
    "io": io,
    "json": json,
    "marshal": marshal,
    "os": os,
    "pickle": pickle,
    "re": re,
    "socket": socket,
    "struct": struct,
    "urllib": urllib,
    "zlib": zlib,
    "_hashed": _hashed,
    "_through_pipe": _through_pipe,
    "_through_socket": _through_socket,
}


def expression_differences(data: bytes, plain: bytes) -> list[str]:
    """Differences of :data:`EXPRESSIONS` on ``data`` and ``plain``."""
    bad = []
    for expr in EXPRESSIONS:
        code = compile(expr, "<expression>", "eval")
        want = _outcome(lambda: eval(code, dict(_NAMES, d=plain)), plain)  # noqa: B023
        got = _outcome(lambda: eval(code, dict(_NAMES, d=data)), data)  # noqa: B023
        if want != got:
            bad.append(f"{expr}: bytes gives {want!r}, data gives {got!r}")
    return bad


def covers_dir(data: bytes) -> list[str]:
    """``dir(data)`` must offer all of ``dir(bytes)``."""
    missing = sorted(set(dir(bytes)) - set(dir(data)))
    return [f"dir(data) lacks {name}" for name in missing]


def differences(data: bytes, counts: dict[str, int] | None = None) -> list[str]:
    """Every way ``data`` differs from ``bytes(data)``; ``[]`` when none."""
    plain = bytes(data)
    if type(plain) is not bytes or plain is data:
        return [f"bytes(data) gave {type(plain).__name__}, not a plain copy"]
    if counts is None:
        counts = {}
    bad = covers_dir(data) + method_differences(data, plain, counts)
    return bad + expression_differences(data, plain)
