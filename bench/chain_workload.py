"""The chain benchmark's data and kernels: examples/analysis_plugins.py on replayed records.

The chain (8 data types)::

    records -> hits -> peaklets -> peaklet_classification -> peak_basics -> peak_proximity
                                                                  └-> events -> event_basics

Records are simulated once by the demo's ``SimRecords`` (``RUN_NS`` long, deterministic) and
written to ``records.npy`` in the work directory; every implementation then replays the very
same rows at any chunking, cutting only between records (:func:`cuts`). So the data do not
depend on the chunking, and every implementation's results can be compared bit for bit.

The kernels are the example plugins' own ``compute`` / ``compute_loop`` methods, called with
their default options (the per-run options ``pmt_gains`` and ``electron_lifetime`` as
constants): strax_decl runs the plugin classes themselves, the strax port and the bare loop
call the same methods through :func:`kernel`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

RUN_NS = 3_000_000_000  # a 3 s run, as in issue 21
SIM_CHUNK_NS = 100_000_000  # how SimRecords generates it (once; replayed at any chunking)
CHUNKINGS = {"c5": 5, "c120": 120, "c5000": 5000}  # wanted number of chunks
WARMUP_NS = 60_000_000  # the warm-up run replays the first 60 ms at the same chunk length
DATA_TYPES = (
    "records",
    "hits",
    "peaklets",
    "peaklet_classification",
    "peak_basics",
    "peak_proximity",
    "events",
    "event_basics",
)
TARGETS = ("event_basics", "peak_proximity")  # the two leaves: together the whole chain
PER_RUN = {"pmt_gains": (50.0,) * 8, "electron_lifetime": 500_000.0}


def _load_module(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    source = path.read_text()
    import strax_decl as sd

    if "per_run" not in inspect.signature(sd.option).parameters:
        # an older strax_decl (the baseline worktree): per-run options are plain options
        source = source.replace("per_run=True,", "")
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def plugins_module() -> ModuleType:
    """``examples/analysis_plugins.py`` (and the demo's kernels it imports)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.find_spec("demo_plugins")
    assert spec is not None
    return _load_module("analysis_plugins", EXAMPLES / "analysis_plugins.py")


def records_path(workdir: Path) -> Path:
    return workdir / "records.npy"


def make_records(path: Path) -> np.ndarray:
    """Simulate the run once with the demo's SimRecords (seeded: the same rows every time)."""
    ap = plugins_module()
    sim = ap.SimRecords.__new__(ap.SimRecords)
    sim.options = ap.SimRecords.Options(run_duration=RUN_NS, chunk_duration=SIM_CHUNK_NS)
    parts = [
        chunk.data
        for chunk in ap.SimRecords.source(sim, "chain")  # the source's own generator
    ]
    records = np.concatenate(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, records)
    return records


def load_records(workdir: Path, warmup: bool = False) -> np.ndarray:
    records = np.load(records_path(workdir))
    if warmup:
        records = records[records["time"] + 1100 <= WARMUP_NS]
    return records


def cuts(records: np.ndarray, span: int, n_chunks: int) -> list[tuple[int, int, int, int]]:
    """``(start, end, first row, end row)`` of each chunk: about ``n_chunks`` equal time slices
    of ``[0, span)``, each cut moved back to the nearest time where no record is cut."""
    time = records["time"]
    end = time + records["length"].astype(np.int64) * records["dt"].astype(np.int64)
    reach = np.maximum.accumulate(end)  # reach[i]: the latest end of rows 0..i
    out = []
    start, first = 0, 0
    for k in range(1, n_chunks):
        t = span * k // n_chunks
        i = int(np.searchsorted(time, t, side="left"))
        while i > 0 and reach[i - 1] > t:  # a row before i reaches past t: cut earlier
            t = int(time[i - 1])
            i = int(np.searchsorted(time, t, side="left"))
        if t <= start:
            continue
        out.append((start, t, first, i))
        start, first = t, i
    out.append((start, span, first, len(records)))
    return out


def options_of(plugin_cls: Any) -> Any:
    """The plugin's Options with defaults (per-run ones as the bench's constants)."""
    fields = plugin_cls.Options.model_fields
    values = {k: v for k, v in PER_RUN.items() if k in fields}
    return plugin_cls.Options(**values)


def kernel(plugin_cls: Any) -> Any:
    """A stand-in ``self`` with ``options`` for calling the example's methods directly."""
    return SimpleNamespace(options=options_of(plugin_cls), name=plugin_cls.__name__)


class Digest:
    """Order-sensitive hash of every row of every data type: bit-identity across runs."""

    def __init__(self) -> None:
        self.hashes = {d: hashlib.sha256() for d in DATA_TYPES}
        self.rows = dict.fromkeys(DATA_TYPES, 0)

    def add(self, data_type: str, rows: np.ndarray) -> None:
        if len(rows):
            self.hashes[data_type].update(np.ascontiguousarray(rows).tobytes())
            self.rows[data_type] += len(rows)

    def result(self, types: tuple[str, ...] = DATA_TYPES) -> dict[str, Any]:
        return {
            "n_out": {d: self.rows[d] for d in types},
            "digest": hashlib.sha256(
                "".join(self.hashes[d].hexdigest() for d in types).encode()
            ).hexdigest()[:16],
        }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rec = make_records(Path(tmp) / "records.npy")
        print(len(rec), rec.nbytes / 1e6, "MB")
        for name, n in CHUNKINGS.items():
            print(name, len(cuts(rec, RUN_NS, n)))
