"""The plugin DAG as text: an aligned table, Graphviz DOT or Mermaid.

Used by ``Context.graph(...)`` and ``strax-decl graph``; it reads only the registry, so the
picture is the same from Python and from the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover - annotations only (the CLI's tables start at once)
    from strax_decl.registry import Registry

__all__ = [
    "FORMATS",
    "GraphFormat",
    "ancestors",
    "graph_dot",
    "graph_mermaid",
    "graph_text",
    "render_graph",
    "table",
]

GraphFormat = Literal["text", "dot", "mermaid"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Rows as aligned columns under ``header``; the columns numbered in ``right`` flush right."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def ancestors(registry: Registry, targets: Sequence[str]) -> list[str]:
    """``targets`` and everything they need, in dependency order."""
    order: list[str] = []

    def visit(d: str) -> None:
        if d in order:
            return
        for dep in registry.provider(d).inputs:
            visit(dep)
        order.append(d)

    for t in targets:
        visit(t)
    for p in registry.plugins.values():  # keep every output of a multi-output plugin together
        outs = list(p.outputs)
        if any(o in order for o in outs):
            for o in outs:
                if o not in order:
                    order.append(o)
    return order


def graph_text(registry: Registry, data_types: Sequence[str]) -> str:
    rows = []
    for d in data_types:
        p = registry.provider(d)
        inputs = ", ".join(p.inputs) if p.inputs else "(source)"
        rows.append([d, registry.kind(d), f"{p.name} {p.version}", inputs])
    return table(["data type", "kind", "plugin", "reads"], rows, set())


_PALETTE = ["#cfe2f3", "#d9ead3", "#fff2cc", "#f4cccc", "#d9d2e9", "#fce5cd", "#d0e0e3"]


def _kind_colors(registry: Registry, data_types: Sequence[str]) -> dict[str, str]:
    kinds = list(dict.fromkeys(registry.kind(d) for d in data_types))
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(kinds)}


def graph_dot(registry: Registry, data_types: Sequence[str]) -> str:
    colors = _kind_colors(registry, data_types)
    lines = [
        "digraph strax_decl {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for d in data_types:
        p = registry.provider(d)
        label = f"{d}\\n{p.name} {p.version}\\nkind {registry.kind(d)}"
        lines.append(f'  "{d}" [label="{label}", fillcolor="{colors[registry.kind(d)]}"];')
    for d in data_types:
        for dep in registry.provider(d).inputs:
            lines.append(f'  "{dep}" -> "{d}";')
    lines.append("}")
    return "\n".join(lines)


def graph_mermaid(registry: Registry, data_types: Sequence[str]) -> str:
    colors = _kind_colors(registry, data_types)
    lines = ["flowchart LR"]
    for d in data_types:
        p = registry.provider(d)
        lines.append(f'  {d}["{d}<br/><small>{p.name} {p.version}</small>"]')
    for d in data_types:
        for dep in registry.provider(d).inputs:
            lines.append(f"  {dep} --> {d}")
    for i, (kind, color) in enumerate(colors.items()):
        members = [d for d in data_types if registry.kind(d) == kind]
        lines.append(f"  classDef kind{i} fill:{color},stroke:#555")
        lines.append(f"  class {','.join(members)} kind{i}")
    return "\n".join(lines)


FORMATS: dict[str, Callable[[Registry, Sequence[str]], str]] = {
    "text": graph_text,
    "dot": graph_dot,
    "mermaid": graph_mermaid,
}
"""The renderers by format name."""


def render_graph(
    registry: Registry, format: GraphFormat = "text", targets: Sequence[str] | None = None
) -> str:
    """The DAG of ``targets`` and what they need (None: every data type) in ``format``.

    Raises ValueError for an unknown format and KeyError for an unknown target.
    """
    render = FORMATS.get(format)
    if render is None:
        raise ValueError(f"unknown graph format {format!r}; choose one of {sorted(FORMATS)}")
    wanted = list(registry.providers) if targets is None else list(targets)
    for t in wanted:
        registry.provider(t)  # KeyError naming the registered data types
    return render(registry, ancestors(registry, wanted))
