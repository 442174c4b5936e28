"""Three straxen idioms on the example analysis (``analysis_plugins.py``), in strax_decl.

- ``HitsHighEnergy``: straxen's high-energy variant (``child_plugin=True``): a subclass of
  ``Hits`` that provides ``hits_he`` with its own default ``hit_threshold`` (strax's
  ``child_option``); ``"HitsHighEnergy.hit_threshold"`` in the config sets it alone.
- ``EventInfo``: straxen's ``EventInfo``-style merge: ``events`` and ``event_basics`` as one
  data type, plus a field derived from the merged rows (a merge-only plugin with a compute).
- ``VetoIntervals``: a veto-interval plugin with a string field (``veto_type``), as straxen's
  ``VetoIntervals`` records which system vetoed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from analysis_plugins import PLUGINS as ANALYSIS
from analysis_plugins import Event, EventBasic, Hit, Hits, PeakBasic

import strax_decl as sd

__all__ = ["PLUGINS", "EventInfo", "HitsHighEnergy", "VetoIntervals"]


class HitsHighEnergy(Hits):
    """Hits for the high-energy channel range: the same code, a higher threshold."""

    class Outputs(sd.Outputs):
        hits_he: Hit

    class Options(Hits.Options):
        hit_threshold: float = sd.option(30.0, gt=0, description="high-energy threshold [ADC]")


class CorrectedRatio(sd.Schema):
    abstract = True
    cs2_over_s1: sd.f32 = sd.field("corrected S2 over S1 (0: no S1)")


class EventInfo(sd.MergeOnlyPlugin):
    """Events and their basics as one data type, with the cS2/S1 ratio derived."""

    version = "0.1.0"
    provides = "event_info"
    kind = "events"
    extra_fields = CorrectedRatio

    class Inputs(sd.Inputs):
        events: Event
        event_basics: EventBasic

    def compute(self, events: np.ndarray) -> np.ndarray:
        s1 = events["s1_area"]
        with np.errstate(divide="ignore", invalid="ignore"):
            events["cs2_over_s1"] = np.where(s1 > 0, events["cs2_area"] / s1, 0)
        return events


class VetoInterval(sd.Schema):
    time: sd.i64 = sd.field("start of the vetoed interval", unit="ns")
    endtime: sd.i64 = sd.field("end of the vetoed interval (exclusive)", unit="ns")
    veto_type: sd.str_(10) = sd.field("what vetoed: 'he_veto' or 'busy'")  # type: ignore[valid-type]


class VetoIntervals(sd.Plugin):
    """A veto after each very large peak ('he_veto') or run of crowded peaks ('busy')."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peak_basics: PeakBasic

    class Outputs(sd.Outputs):
        veto_intervals: VetoInterval

    class Options(sd.Options):
        he_area: float = sd.option(2_000.0, gt=0, description="peak area that vetoes [PE]")
        busy_channels: int = sd.option(8, ge=1, description="channels of a busy peak")
        veto_ns: int = sd.option(10_000, gt=0, description="length of a veto [ns]")

    def compute(self, peaklets: np.ndarray, start: int, end: int) -> np.ndarray:
        o = self.options
        he = peaklets["area"] >= o.he_area
        busy = ~he & (peaklets["n_channels"] >= o.busy_channels)
        chosen = he | busy
        out = VetoInterval.zeros(int(chosen.sum()))
        out["time"] = peaklets["time"][chosen]
        # a veto ends inside the chunk of its peak, so chunks never hold another's rows
        out["endtime"] = np.minimum(out["time"] + o.veto_ns, end)
        out["veto_type"] = np.where(he[chosen], "he_veto", "busy")
        return out


PLUGINS: list[type[sd.Plugin]] = [*ANALYSIS, HitsHighEnergy, EventInfo, VetoIntervals]
