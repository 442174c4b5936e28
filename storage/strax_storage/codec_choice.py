"""Which codec each field array gets: the measured default rule and the caller's choices.

A choice (``Store.saver(codec=...)``, ``sd.output(codec=...)``) is one of:

- ``None`` or ``"auto"``: the default rule below, field by field;
- a codec name for every field: ``"zstd"``, ``"blosc-zstd"`` (bit shuffle),
  ``"blosc-zstd-shuffle"``, ``"blosc-lz4-bitshuffle"``, ... (``blosc-<cname>[-<shuffle>]``,
  cname one of ``BLOSC_CNAMES``, shuffle ``noshuffle``/``shuffle``/``bitshuffle``, default
  ``bitshuffle``), optionally with a level: ``"zstd:3"``, ``"blosc-zstd:5"`` (zstd: the zstd
  level, default the store's ``zstd_level``; blosc: its clevel 0-9, default ``BLOSC_LEVEL``);
- a dict ``{field: name}`` for some fields (the others get ``"auto"``).

The default rule (``auto_codec``) comes from ``bench/codec_bench.py`` on every workload's data
types (the table is in docs/storage.md): Blosc with zstd inside at clevel 1 and bit shuffle
(``blosc-zstd``) for integer and bool fields and for numeric sub-array fields, plain zstd for
scalar float fields (and text). Bit shuffle turns slowly varying integers (times, waveforms)
into long runs of equal bits, which zstd finds faster than in the interleaved bytes: on W1's
records it gives a ratio of 5.2 at ~2.2x zstd's compression speed. On float waveforms it is
smaller and ~2.5x faster than zstd too (byte shuffle is smaller still, but no faster than
zstd). Scalar float fields (features, areas) often repeat values, which plain zstd finds and
shuffling hides, and they are a small part of the bytes. The codec never changes the rows,
only their bytes on disk, so it is not part of the lineage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from strax_storage.codec import BLOSC_CNAMES, BLOSC_SHUFFLES, DEFAULT_LEVEL, ZSTD, Codec
from strax_storage.dtypes import FieldSpec

__all__ = ["AUTO", "BLOSC_LEVEL", "CodecChoice", "auto_codec", "check_choice", "field_codecs"]

AUTO: Final = "auto"
BLOSC_LEVEL: Final = 1
"""Blosc clevel of the default rule: zstd level 1 inside (bench: clevel 3 is slower and, with
Blosc's smaller blocks at that level, even larger on W1's records)."""

MAX_TYPESIZE: Final = 255
"""Blosc's largest item size (its header has one byte for it)."""

CodecChoice = str | Mapping[str, str] | None


def auto_codec(spec: FieldSpec, zstd_level: int = DEFAULT_LEVEL) -> Codec:
    """The measured default codec of one field (see the module doc)."""
    if spec.stored.kind in "biu" or (spec.stored.kind in "fc" and spec.shape):
        return Codec("blosc", BLOSC_LEVEL, "zstd", "bitshuffle")
    return Codec(ZSTD, zstd_level)  # scalar floats, and anything else (text)


def parse(text: object, zstd_level: int) -> Codec | None:
    """One codec name (see the module doc) -> Codec; ``"auto"`` -> None. ValueError if bad."""
    if not isinstance(text, str):
        raise TypeError(f"a codec is given by name (a str), got {type(text).__name__} {text!r}")
    name, sep, level_text = text.strip().partition(":")
    level: int | None = None
    if sep:
        try:
            level = int(level_text)
        except ValueError:
            raise ValueError(f"codec {text!r}: the level after ':' must be an integer") from None
    if name == AUTO:
        if sep:
            raise ValueError(f"codec {text!r}: 'auto' takes no level")
        return None
    if name == ZSTD:
        return Codec(ZSTD, zstd_level if level is None else level)
    parts = name.split("-")
    if parts[0] == "blosc" and len(parts) in (2, 3):
        shuffle = parts[2] if len(parts) == 3 else "bitshuffle"
        if parts[1] in BLOSC_CNAMES and shuffle in BLOSC_SHUFFLES:
            return Codec("blosc", BLOSC_LEVEL if level is None else level, parts[1], shuffle)
    raise ValueError(
        f"unknown codec {text!r}: use 'auto', 'zstd[:level]' or "
        f"'blosc-<cname>[-<shuffle>][:clevel]' with cname in {BLOSC_CNAMES} and shuffle in "
        f"{tuple(BLOSC_SHUFFLES)}"
    )


def check_choice(choice: object, zstd_level: int = 1) -> CodecChoice:
    """``choice`` if it is a valid codec choice (fields are not known yet), else raise
    TypeError/ValueError. A dict is returned as a plain ``dict``."""
    if choice is None:
        return None
    if isinstance(choice, str):
        parse(choice, zstd_level)
        return choice
    if isinstance(choice, Mapping):
        out: dict[str, str] = {}
        for field, text in choice.items():
            if not isinstance(field, str):
                raise TypeError(f"codec choice keys are field names, got {field!r}")
            parse(text, zstd_level)
            out[field] = text
        return out
    raise TypeError(
        f"a codec choice is a name or a {{field: name}} dict, got {type(choice).__name__}"
    )


def field_codecs(specs: Sequence[FieldSpec], choice: object, zstd_level: int) -> list[Codec]:
    """The codec of every field of ``specs``, in order. ValueError names a bad choice,
    including a dict naming a field the dtype does not have."""
    choice = check_choice(choice, zstd_level)
    per_field: Mapping[str, str] = {}
    default: str | None = None
    if isinstance(choice, Mapping):
        unknown = sorted(set(choice) - {s.name for s in specs})
        if unknown:
            raise ValueError(f"codec choice names fields the dtype does not have: {unknown}")
        per_field = choice
    else:
        default = choice
    out = []
    for spec in specs:
        text = per_field.get(spec.name, default)
        codec = None if text is None else parse(text, zstd_level)
        if codec is not None and codec.kind != ZSTD and spec.stored.itemsize > MAX_TYPESIZE:
            raise ValueError(
                f"field {spec.name!r}: blosc takes items of at most {MAX_TYPESIZE} bytes, "
                f"not {spec.stored.itemsize} ({spec.stored})"
            )
        out.append(auto_codec(spec, zstd_level) if codec is None else codec)
    return out
