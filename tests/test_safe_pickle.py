"""The allow-list unpickler: listed globals resolve, every other one is refused by name before it runs, on
every opcode that can name a global (GLOBAL, STACK_GLOBAL, and protocol 0's INST and OBJ)."""

from __future__ import annotations

import collections
import io
import os
import pickle

import pytest

from minigrad.safe_pickle import AllowListUnpickler


class OnlyOrderedDict(AllowListUnpickler):
    allowed = {("collections", "OrderedDict"): collections.OrderedDict}
    hint = "only ordered dicts here"


class RunsCode:
    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def load(data: bytes):
    return OnlyOrderedDict(io.BytesIO(data), source="test.pkl").load()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_listed_globals_load_and_others_are_refused_before_running(protocol, tmp_path):
    value = collections.OrderedDict(a=[1, 2.5, "x", (None, True)])
    assert load(pickle.dumps(value, protocol=protocol)) == value
    marker = tmp_path / "ran"
    payload = pickle.dumps([RunsCode(marker)], protocol=protocol)
    with pytest.raises(pickle.UnpicklingError) as refused:
        load(payload)
    assert f"global {os.mkdir.__module__}.mkdir from test.pkl: only ordered dicts here" in str(refused.value)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is real: an unrestricted unpickler runs it
    assert marker.exists()


def test_protocol_0_instance_opcodes_go_through_the_list_too(tmp_path):
    # INST names a class in the opcode itself: "i<module>\n<name>\n" after a MARK and its arguments
    inst = b"(S'" + str(tmp_path / "inst").encode() + b"'\nios\nmkdir\n."
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global os.mkdir"):
        load(inst)
    assert not (tmp_path / "inst").exists()
