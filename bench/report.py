"""Tables, targets, chart and docs from a benchmark result file.

``bench/run.py`` calls this module at the end of a run; it also runs on its
own, to show or redraw an existing result file::

    python3 bench/report.py [bench/results/latest.json] [--chart PNG] [--docs MD]

The result file holds ``machine``, ``run`` and ``results``, a list of
``{"workload", "system", "metric", "value", ...}`` objects (see
docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SYSTEMS = [
    "py_reactor",
    "asyncio",
    "uvloop",
    "gen_tcp",
    "native",
    "gunicorn",
    "granian",
    "uvicorn",
]

COLORS = {
    "py_reactor": "#d62728",
    "asyncio": "#1f77b4",
    "uvloop": "#9467bd",
    "gen_tcp": "#2ca02c",
    "native": "#7f7f7f",
    "gunicorn": "#8c564b",
    "granian": "#ff7f0e",
    "uvicorn": "#17becf",
}

PIN_SHORT = {"split": "split", "same_core": "same core"}

PINNING_LABELS = {"split": "server CPU 1, load CPU 0", "same_core": "both on CPU 0"}

DOCS_BEGIN = "<!-- BEGIN bench results: written by bench/run.py, do not edit by hand -->"
DOCS_END = "<!-- END bench results -->"


@dataclass(frozen=True)
class Target:
    """A goal for py_reactor: its figure against another system's, or a number."""

    workload: str
    metric: str
    pinning: str
    op: str  # "<=" or ">="
    factor: float  # times the reference system's value, or the bound itself
    reference: str | None  # None: `factor` is an absolute bound
    reference_metric: str | None = None  # the reference's metric, if not `metric`

    def describe(self) -> str:
        whose = (
            self.reference
            if self.reference_metric is None
            else (f"{self.reference} {self.reference_metric}")
        )
        if self.reference is None:
            bound = f"{self.factor:,.0f}"
        elif self.factor == 1:
            bound = f"{whose}'s"
        else:
            bound = f"{self.factor:g}x {whose}'s"
        return f"{self.workload} {self.metric} [{self.pinning}] {self.op} {bound}"

    def reference_key(self) -> tuple[str, str, str, str]:
        """The (workload, pinning, metric, system) of the reference figure."""
        return (
            self.workload,
            self.pinning,
            self.reference_metric or self.metric,
            self.reference or "",
        )


NIF_SIZES = (64, 1024, 16384)
ASGI_WORKLOADS = ("asgi_hello", "asgi_starlette")
ASGI_SYSTEMS = ("py_reactor", "uvicorn", "granian")
LISTENER_MODES = ("listener_vm", "listener_port")

TARGETS = [
    Target("http_keepalive", "cpu_us_per_req", "split", "<=", 1.0, "uvloop"),
    Target("http_keepalive", "cpu_us_per_req", "split", "<=", 0.75, "asyncio"),
    Target("http_keepalive", "cpu_us_per_req", "split", "<=", 1.3, "native"),
    Target("http_keepalive", "req_per_s", "split", ">=", 0.95, "native"),
    Target("echo_pingpong_64", "p50_us", "same_core", "<=", 1.15, "native"),
    Target("echo_pingpong_16k", "p50_us", "same_core", "<=", 1.15, "native"),
    Target("bulk_1mib", "mb_per_s", "split", ">=", 0.7, "native"),
    Target("lifecycle", "us_per_op", "split", "<=", 1.3, "gen_tcp"),
    Target("idle_memory", "rss_bytes_per_conn", "split", "<=", 1.0, "asyncio"),
    Target("wsgi_hello", "req_per_s", "split", ">=", 1.0, "granian"),
    Target("wsgi_hello", "cpu_us_per_req", "split", "<=", 1.0, "granian"),
    Target("wsgi_flask", "req_per_s", "split", ">=", 1.0, "granian"),
    Target("wsgi_flask", "req_per_s", "split", ">=", 5.0, "gunicorn"),
    Target("asgi_hello", "req_per_s", "split", ">=", 1.0, "granian"),
    Target("asgi_hello", "cpu_us_per_req", "split", "<=", 1.0, "granian"),
    Target("asgi_hello", "req_per_s", "split", ">=", 2.0, "uvicorn"),
    Target("asgi_starlette", "req_per_s", "split", ">=", 2.0, "uvicorn"),
    *(
        Target("nif_bench", f"persistent_{size}_ops_per_s", pinning, ">=", 25_000, None)
        for pinning in ("split", "same_core")
        for size in NIF_SIZES
    ),
    *(
        Target("nif_bench", f"lifecycle_{size}_ops_per_s", pinning, ">=", 4_500, None)
        for pinning in ("split", "same_core")
        for size in NIF_SIZES
    ),
    # Through a listener (the `listener` workload of bench/run.py).
    Target("lifecycle", "listener_port_us_per_op", "split", "<=", 1.2, "native", "us_per_op"),
    Target("lifecycle", "listener_vm_us_per_op", "split", "<=", 1.0, "gen_tcp", "us_per_op"),
    *(
        Target("nif_bench", f"{mode}_lifecycle_{size}_ops_per_s", "split", ">=", 4_500, None)
        for mode in LISTENER_MODES
        for size in NIF_SIZES
    ),
    Target(
        "http_keepalive",
        "contexts_2_cpu_us_per_req",
        "split",
        "<=",
        1.1,
        "py_reactor",
        "contexts_1_cpu_us_per_req",
    ),
]


Key = tuple[str, str, str, str]  # workload, pinning, metric, system


def index(results: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Result objects by (workload, pinning, metric, system)."""
    return {
        (r["workload"], r.get("pinning", "split"), r["metric"], r["system"]): r for r in results
    }


def evaluate_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with py_reactor's value, the bound it was held to, and
    whether it is met (``None`` when a figure is missing)."""
    by_key = index(results)
    out = []
    for t in TARGETS:
        mine = by_key.get((t.workload, t.pinning, t.metric, "py_reactor"))
        value = mine["value"] if mine else None
        if t.reference is None:
            reference_value: float | None = None
            bound: float | None = t.factor
        else:
            ref = by_key.get(t.reference_key())
            reference_value = ref["value"] if ref else None
            bound = None if reference_value is None else t.factor * reference_value
        met = None
        if value is not None and bound is not None:
            met = value <= bound if t.op == "<=" else value >= bound
        out.append(
            {
                "target": t.describe(),
                "workload": t.workload,
                "metric": t.metric,
                "pinning": t.pinning,
                "op": t.op,
                "factor": t.factor,
                "reference": t.reference,
                "reference_value": reference_value,
                "bound": bound,
                "value": value,
                "ratio": (value / reference_value) if value and reference_value else None,
                "met": met,
            }
        )
    return out


def fmt(value: float | None) -> str:
    """A figure with sensible precision."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(workload, pinning, metric, unit) in the order they were measured."""
    seen: dict[tuple[str, str, str], str] = {}
    for r in results:
        seen.setdefault((r["workload"], r.get("pinning", "split"), r["metric"]), r.get("unit", ""))
    return [(w, p, m, u) for (w, p, m), u in seen.items()]


def row_label(workload: str, pinning: str, metric: str) -> str:
    suffix = " [same core]" if pinning == "same_core" else ""
    return f"{workload}{suffix} {metric}"


def text_tables(data: dict[str, Any]) -> str:
    """The tables printed at the end of a run: figures, ratios, targets."""
    results = data["results"]
    by_key = index(results)
    lines = []
    width = max((len(row_label(w, p, m)) for w, p, m, _ in rows(results)), default=20) + 2
    head = f"{'':{width}}{'unit':>10}" + "".join(f"{s:>13}" for s in SYSTEMS)
    lines.append("Absolute figures (median over runs)")
    lines.append(head)
    for w, p, m, unit in rows(results):
        cells = [
            fmt(by_key[(w, p, m, s)]["value"]) if (w, p, m, s) in by_key else "-" for s in SYSTEMS
        ]
        lines.append(f"{row_label(w, p, m):{width}}{unit:>10}" + "".join(f"{c:>13}" for c in cells))
    lines.append("")
    lines.append("Ratio to native (same run)")
    lines.append(f"{'':{width}}{'':>10}" + "".join(f"{s:>13}" for s in SYSTEMS))
    for w, p, m, _unit in rows(results):
        native = by_key.get((w, p, m, "native"))
        if not native or not native["value"]:
            continue
        cells = []
        for s in SYSTEMS:
            r = by_key.get((w, p, m, s))
            cells.append(f"{r['value'] / native['value']:.2f}x" if r else "-")
        lines.append(f"{row_label(w, p, m):{width}}{'':>10}" + "".join(f"{c:>13}" for c in cells))
    lines.append("")
    lines.append("Targets for py_reactor")
    for t in data.get("targets") or evaluate_targets(results):
        status = {True: "met", False: "NOT MET", None: "no data"}[t["met"]]
        ratio = f" ({t['ratio']:.2f}x {t['reference']})" if t["ratio"] is not None else ""
        lines.append(
            f"  {status:8} {t['target']}: {fmt(t['value'])} vs bound {fmt(t['bound'])}{ratio}"
        )
    return "\n".join(lines)


def runs_text(run: dict[str, Any]) -> str:
    """How many runs each workload had, in words."""
    cfg = run.get("config") or {}
    if not cfg:
        return f"{run['runs']} runs"
    return (
        f"{cfg['runs']} runs of ping-pong, bulk and lifecycle, {cfg['http_runs']} of "
        f"http_keepalive, {cfg['nif_runs']} of nif_bench, {cfg['idle_runs']} of idle_memory"
    )


def markdown(data: dict[str, Any], chart: str | None) -> str:
    """The results section of docs/performance.md."""
    results = data["results"]
    by_key = index(results)
    machine, run = data["machine"], data["run"]
    out = []
    out.append(
        f"Run of {run['date']} on commit `{run.get('git_commit') or 'unknown'}`, "
        f"{'`make bench-quick`' if run.get('quick') else '`make bench`'} "
        f"({runs_text(run)}, systems alternating): "
        f"{machine['cpu_model']}, {machine['cores']} cores, Linux {machine['kernel']}; "
        f"Python {machine['python']}, Erlang/OTP {machine['erlang']}, {machine['rust']}, "
        f"uvloop {machine['uvloop']}, {machine['wrk']}."
    )
    out.append("")
    if chart:
        out.append(f"![Benchmark chart]({chart})")
        out.append("")
    out.append("Figures are medians over the runs; ratios are to `native` in the same run.")
    out.append("")
    out.append("| workload | metric | unit | " + " | ".join(SYSTEMS) + " | py_reactor / native |")
    out.append("| --- | --- | --- | " + " | ".join("---:" for _ in SYSTEMS) + " | ---: |")
    for w, p, m, unit in rows(results):
        cells = [
            fmt(by_key[(w, p, m, s)]["value"]) if (w, p, m, s) in by_key else "-" for s in SYSTEMS
        ]
        mine, native = by_key.get((w, p, m, "py_reactor")), by_key.get((w, p, m, "native"))
        ratio = (
            f"{mine['value'] / native['value']:.2f}x"
            if mine and native and native["value"]
            else "-"
        )
        pin = " (same core)" if p == "same_core" else ""
        out.append(f"| {w}{pin} | {m} | {unit} | " + " | ".join(cells) + f" | {ratio} |")
    out.append("")
    out.append("| target | py_reactor | bound | ratio | status |")
    out.append("| --- | ---: | ---: | ---: | --- |")
    for t in data.get("targets") or evaluate_targets(results):
        status = {True: "met", False: "**not met**", None: "no data"}[t["met"]]
        ratio = f"{t['ratio']:.2f}x {t['reference']}" if t["ratio"] is not None else "-"
        out.append(
            f"| {t['target']} | {fmt(t['value'])} | {fmt(t['bound'])} | {ratio} | {status} |"
        )
    return "\n".join(out)


def update_docs(docs: Path, data: dict[str, Any], chart: str | None) -> bool:
    """Replaces the results section of ``docs`` (between the markers); returns
    False when the file has no markers."""
    text = docs.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(DOCS_BEGIN) + r".*?" + re.escape(DOCS_END), re.DOTALL)
    if not pattern.search(text):
        return False
    section = f"{DOCS_BEGIN}\n\n{markdown(data, chart)}\n\n{DOCS_END}"
    docs.write_text(pattern.sub(lambda _m: section, text), encoding="utf-8")
    return True


# ---- the chart -----------------------------------------------------------------


@dataclass
class Panel:
    title: str
    unit: str
    better: str
    groups: list[tuple[str, str, str, str]]  # (label, workload, pinning, metric)
    stack: str | None = None  # a py_reactor metric drawn on top of its bar (the VM's share)
    targets: tuple[Target, ...] = ()
    log: bool = False
    systems: tuple[str, ...] = ()  # the systems drawn (default: all of SYSTEMS)


STATUS = {True: "met", False: "NOT MET", None: "no data"}


def panels() -> list[Panel]:
    by = {(t.workload, t.metric, t.pinning): t for t in TARGETS}
    http_cpu = tuple(
        t for t in TARGETS if t.workload == "http_keepalive" and t.metric == "cpu_us_per_req"
    )
    return [
        Panel(
            "HTTP keep-alive throughput (wrk -t1 -c50)",
            "requests/s",
            "higher",
            [("", "http_keepalive", "split", "req_per_s")],
            targets=(by["http_keepalive", "req_per_s", "split"],),
        ),
        Panel(
            "HTTP keep-alive: server CPU per request",
            "µs/request",
            "lower",
            [("", "http_keepalive", "split", "cpu_us_per_req")],
            stack="vm_cpu_us_per_req",
            targets=http_cpu,
        ),
        Panel(
            "Echo ping-pong p50",
            "µs",
            "lower",
            [
                ("64 B\nsplit", "echo_pingpong_64", "split", "p50_us"),
                ("64 B\nsame core", "echo_pingpong_64", "same_core", "p50_us"),
                ("16 KiB\nsplit", "echo_pingpong_16k", "split", "p50_us"),
                ("16 KiB\nsame core", "echo_pingpong_16k", "same_core", "p50_us"),
            ],
            targets=(
                by["echo_pingpong_64", "p50_us", "same_core"],
                by["echo_pingpong_16k", "p50_us", "same_core"],
            ),
        ),
        Panel(
            "Echo ping-pong p99 (log scale)",
            "µs",
            "lower",
            [
                ("64 B\nsplit", "echo_pingpong_64", "split", "p99_us"),
                ("64 B\nsame core", "echo_pingpong_64", "same_core", "p99_us"),
                ("16 KiB\nsplit", "echo_pingpong_16k", "split", "p99_us"),
                ("16 KiB\nsame core", "echo_pingpong_16k", "same_core", "p99_us"),
            ],
            log=True,
        ),
        Panel(
            "Bulk echo, 1 MiB messages",
            "MB/s",
            "higher",
            [("", "bulk_1mib", "split", "mb_per_s")],
            targets=(by["bulk_1mib", "mb_per_s", "split"],),
        ),
        Panel(
            "Lifecycle: connect, accept (+handoff), echo, close",
            "µs/operation",
            "lower",
            [
                ("handoff", "lifecycle", "split", "us_per_op"),
                ("listener\naccept=vm", "lifecycle", "split", "listener_vm_us_per_op"),
                ("listener\naccept=port", "lifecycle", "split", "listener_port_us_per_op"),
            ],
            targets=(
                by["lifecycle", "us_per_op", "split"],
                by["lifecycle", "listener_vm_us_per_op", "split"],
                by["lifecycle", "listener_port_us_per_op", "split"],
            ),
        ),
        Panel(
            "Idle memory, 10,000 connections",
            "RSS bytes/connection",
            "lower",
            [("", "idle_memory", "split", "rss_bytes_per_conn")],
            stack="vm_rss_bytes_per_conn",
            targets=(by["idle_memory", "rss_bytes_per_conn", "split"],),
        ),
        Panel(
            "nif_bench: persistent connection (gen_tcp client)",
            "messages/s",
            "higher",
            [
                (
                    f"{size} B\n{PIN_SHORT[pinning]}",
                    "nif_bench",
                    pinning,
                    f"persistent_{size}_ops_per_s",
                )
                for pinning in ("split", "same_core")
                for size in NIF_SIZES
            ],
            targets=tuple(t for t in TARGETS if t.metric.startswith("persistent_")),
        ),
        Panel(
            "nif_bench: full lifecycle (gen_tcp client)",
            "operations/s",
            "higher",
            [
                (
                    f"{size} B\n{PIN_SHORT[pinning]}",
                    "nif_bench",
                    pinning,
                    f"lifecycle_{size}_ops_per_s",
                )
                for pinning in ("split", "same_core")
                for size in NIF_SIZES
            ],
            targets=tuple(t for t in TARGETS if t.metric.startswith("lifecycle_")),
        ),
        Panel(
            "nif_bench: full lifecycle through a listener (split)",
            "operations/s",
            "higher",
            [
                (
                    f"{size} B\naccept={mode.removeprefix('listener_')}",
                    "nif_bench",
                    "split",
                    f"{mode}_lifecycle_{size}_ops_per_s",
                )
                for mode in LISTENER_MODES
                for size in NIF_SIZES
            ],
            targets=tuple(
                t
                for t in TARGETS
                if t.workload == "nif_bench" and t.metric.startswith(LISTENER_MODES)
            ),
        ),
        Panel(
            "HTTP keep-alive through a listener: CPU per request (VM + ports)",
            "µs/request",
            "lower",
            [
                ("1 context", "http_keepalive", "split", "contexts_1_cpu_us_per_req"),
                ("2 contexts", "http_keepalive", "split", "contexts_2_cpu_us_per_req"),
            ],
            targets=(by["http_keepalive", "contexts_2_cpu_us_per_req", "split"],),
        ),
        Panel(
            "HTTP keep-alive through a listener: throughput",
            "requests/s",
            "higher",
            [
                ("1 context", "http_keepalive", "split", "contexts_1_req_per_s"),
                ("2 contexts", "http_keepalive", "split", "contexts_2_req_per_s"),
            ],
        ),
        Panel(
            "ASGI applications: throughput (wrk -t1 -c50)",
            "requests/s",
            "higher",
            [
                ("bare ASGI\n(asgi_hello)", "asgi_hello", "split", "req_per_s"),
                ("Starlette\n(asgi_starlette)", "asgi_starlette", "split", "req_per_s"),
            ],
            targets=tuple(
                t for t in TARGETS if t.workload in ASGI_WORKLOADS and t.metric == "req_per_s"
            ),
            systems=ASGI_SYSTEMS,
        ),
        Panel(
            "ASGI applications: server CPU per request",
            "µs/request",
            "lower",
            [
                ("bare ASGI\n(asgi_hello)", "asgi_hello", "split", "cpu_us_per_req"),
                ("Starlette\n(asgi_starlette)", "asgi_starlette", "split", "cpu_us_per_req"),
            ],
            stack="vm_cpu_us_per_req",
            targets=(by["asgi_hello", "cpu_us_per_req", "split"],),
            systems=ASGI_SYSTEMS,
        ),
    ]


def target_bound(t: Target, by_key: dict[Key, dict[str, Any]]) -> float | None:
    if t.reference is None:
        return t.factor
    ref = by_key.get(t.reference_key())
    return None if ref is None else t.factor * ref["value"]


def draw_chart(data: dict[str, Any], path: Path) -> None:
    """One panel per workload and metric, a bar per system, target lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = index(data["results"])
    all_panels = panels()
    cols = 3
    nrows = math.ceil(len(all_panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(17, 5.2 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, all_panels, strict=False):
        drawn = panel.systems or SYSTEMS
        n = len(drawn)
        width = 0.8 / n
        top = 0.0
        low = 0.0
        for gi, (_label, workload, pinning, metric) in enumerate(panel.groups):
            for si, system in enumerate(drawn):
                x = gi + (si - (n - 1) / 2) * width
                r = by_key.get((workload, pinning, metric, system))
                if r is None:
                    ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                    continue
                value = r["value"]
                ax.bar(
                    x, value, width * 0.92, color=COLORS[system], label=system if gi == 0 else None
                )
                shown = value
                if panel.stack and system == "py_reactor":
                    extra = by_key.get((workload, pinning, panel.stack, system))
                    if extra is not None:
                        ax.bar(
                            x,
                            extra["value"],
                            width * 0.92,
                            bottom=value,
                            color=COLORS[system],
                            alpha=0.35,
                            hatch="//",
                        )
                        shown = value + extra["value"]
                top = max(top, shown)
                low = value if not low else min(low, value)
                ax.text(x, shown, fmt(value), ha="center", va="bottom", fontsize=7, rotation=90)
        notes: list[str] = []
        absolute: dict[float, list[bool | None]] = {}
        for t in panel.targets:
            bound = target_bound(t, by_key)
            if bound is None:
                continue
            top = max(top, bound)
            mine = by_key.get((t.workload, t.pinning, t.metric, "py_reactor"))
            met = (
                None
                if mine is None
                else (mine["value"] <= bound if t.op == "<=" else mine["value"] >= bound)
            )
            if t.reference is None:
                # One bound for every group: one line across the panel, one note.
                if bound not in absolute:
                    ax.axhline(bound, color="black", linestyle="dashed", linewidth=1.2)
                absolute.setdefault(bound, []).append(met)
                continue
            gi = next(
                i
                for i, (_l, w, p, m) in enumerate(panel.groups)
                if (w, p, m) == (t.workload, t.pinning, t.metric)
            )
            ax.hlines(
                bound, gi - 0.45, gi + 0.45, colors="black", linestyles="dashed", linewidth=1.2
            )
            where = (
                f" ({panel.groups[gi][0].replace(chr(10), ' ')})" if len(panel.groups) > 1 else ""
            )
            notes.append(f"{t.op} {t.factor:g}x {t.reference} = {fmt(bound)}{where}: {STATUS[met]}")
        for bound, mets in absolute.items():
            op = next(t.op for t in panel.targets if t.reference is None)
            notes.append(f"{op} {bound:,.0f}: met in {sum(1 for m in mets if m)} of {len(mets)}")
        if notes:
            ax.text(
                0.01,
                0.985,
                "py_reactor targets:\n" + "\n".join(notes),
                transform=ax.transAxes,
                fontsize=7.5,
                va="top",
                ha="left",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
            )
        if panel.log:
            ax.set_yscale("log")
            ax.set_ylim(min(low, top) / 2 if low else 1, top * 8 if top > 0 else 10)
        else:
            ax.set_ylim(0, top * (1.25 + 0.07 * len(notes)) if top > 0 else 1)
        ax.set_xticks(range(len(panel.groups)))
        ax.set_xticklabels([g[0] for g in panel.groups], fontsize=9)
        ax.set_xlim(-0.55, len(panel.groups) - 0.45)
        ax.set_title(f"{panel.title}\n({panel.better} is better)", fontsize=10)
        ax.set_ylabel(panel.unit)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(all_panels) :]:
        ax.axis("off")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=COLORS[s], label=s) for s in SYSTEMS]
    handles.append(
        Patch(
            facecolor=COLORS["py_reactor"],
            alpha=0.35,
            hatch="//",
            label="py_reactor: Erlang VM's share",
        )
    )
    handles.append(
        Line2D([0], [0], color="black", linestyle="dashed", label="target for py_reactor")
    )
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        bbox_to_anchor=(0.5, 0.965),
        fontsize=10,
    )
    machine, run = data["machine"], data["run"]
    fig.suptitle(
        f"py_reactor benchmark, {run['date'][:10]} ({'quick' if run.get('quick') else 'full'} run, "
        f"medians over runs): {machine['cpu_model']}, {machine['cores']} cores; "
        "server on CPU 1, load generator on CPU 0 unless 'same core'",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Show, chart and document a benchmark result file."
    )
    parser.add_argument("results", nargs="?", default=str(ROOT / "bench/results/latest.json"))
    parser.add_argument("--chart", help="draw the chart to this PNG")
    parser.add_argument("--docs", help="rewrite the results section of this Markdown file")
    args = parser.parse_args(argv)
    data = json.loads(Path(args.results).read_text(encoding="utf-8"))
    data["targets"] = evaluate_targets(data["results"])
    print(text_tables(data))
    if args.chart:
        draw_chart(data, Path(args.chart))
    if args.docs and not update_docs(Path(args.docs), data, "../bench/results/latest.png"):
        print(f"{args.docs}: no results markers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
