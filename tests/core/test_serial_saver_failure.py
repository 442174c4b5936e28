"""A saver's failure is its own, with either executor: the error names the saver's data type
(not its producer, at some chunk), that data set is not complete, and the data that does not
depend on it (here its producer's reader) is saved complete.

Once, the serial executor reported "plugin Ticks failed ..., after chunk [7000, 8000)" and
marked ``doubled`` failed, while the threaded one named the saver and saved it complete.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Literal

import pytest

import strax_decl as sd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import tiny_pipeline as tiny  # noqa: E402


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_failing_saver_is_named_and_the_data_that_does_not_need_it_is_saved(
    tmp_path: Path, processor: Literal["threaded", "serial"]
) -> None:
    ctx = sd.Context(
        str(tmp_path),
        plugins=tiny.PLUGINS,
        config={"n_chunks": 8},
        max_messages=1,
        processor=processor,
    )
    chunks = ctx.iter_chunks("r1", "doubled")
    n = 0
    with pytest.raises(OSError) as info:
        for _ in chunks:
            n += 1
            if n == 1:  # break the store under the ticks saver: its directory becomes a file
                (tmp,) = (tmp_path / "r1").glob(".tmp-ticks-*")
                os.rename(tmp, tmp.with_name("broken-" + tmp.name))
                tmp.touch()
    assert n == 8  # the caller got every chunk
    assert list(chunks) == []  # raised once
    text = "".join(traceback.format_exception(info.value))
    assert "saving ticks failed on run r1" in text, text
    assert "plugin Ticks failed" not in text, text
    assert ctx.stores[0].status(ctx.key_for("r1", "doubled")) == "complete"
    assert ctx.stores[0].status(ctx.key_for("r1", "ticks")) != "complete"
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []
