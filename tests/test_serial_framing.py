"""Serial framing: CRC-16, frame encoding, and a splitter that survives any byte stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexctl.errors import ProtocolError
from flexctl.transports.serial_framing import FrameError, Framing, LineSplitter, crc16

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
payloads = st.text(alphabet=PRINTABLE, min_size=1, max_size=60)
framings = st.builds(
    Framing,
    terminator=st.sampled_from(["\r\n", "\n", "\r", "\x03"]),
    checksum=st.sampled_from(["none", "crc16"]),
    separator=st.sampled_from(["*", "#", "|"]),
)
MAX_LINE = 80


def test_crc16_check_value() -> None:
    # CRC-16/MODBUS, from the catalogue of parametrised CRC algorithms
    assert crc16(b"123456789") == 0x4B37
    assert crc16(b"") == 0xFFFF
    assert Framing(checksum="crc16").encode("123456789") == b"123456789*4B37\r\n"


@given(framings, payloads)
def test_encode_decode_round_trip(framing: Framing, payload: str) -> None:
    frame = framing.encode(payload)
    assert frame.endswith(framing.terminator.encode())
    line = frame[: -len(framing.terminator)]
    assert framing.decode(line) == payload


@given(payloads, st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_any_single_bit_flip_fails_the_checksum(payload: str, where: int, bit: int) -> None:
    framing = Framing(checksum="crc16")
    line = bytearray(framing.encode(payload)[:-2])
    line[where % len(line)] ^= 1 << bit
    with pytest.raises(FrameError):
        framing.decode(bytes(line))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def _feed(splitter: LineSplitter, pieces: list[bytes]) -> list[str | FrameError]:
    out: list[str | FrameError] = []
    for piece in pieces:
        out += splitter.feed(piece)  # anything but a result list fails the test
        assert splitter.pending <= splitter.max_line + len(splitter.framing.terminator)
    return out


@given(framings, st.lists(payloads, max_size=8), st.lists(st.integers(min_value=0), max_size=20))
def test_any_chunking_yields_the_frames(
    framing: Framing, frames: list[str], cuts: list[int]
) -> None:
    stream = b"".join(framing.encode(p) for p in frames)
    out = _feed(LineSplitter(framing, MAX_LINE), _chunks(stream, cuts))
    assert out == frames


def _without(data: bytes, term: bytes) -> bytes:
    while term in data:
        data = data.replace(term, b"")
    return data


# What a noisy line may carry between good frames; each noise line ends with a terminator.
NOISE = st.one_of(
    st.binary(max_size=40).map(lambda b: ("bytes", b)),
    st.binary(min_size=MAX_LINE + 1, max_size=3 * MAX_LINE).map(lambda b: ("long", b)),
    payloads.map(lambda p: ("badcrc", p)),
    payloads.map(lambda p: ("nocrc", p)),
    st.binary(min_size=1, max_size=10).map(lambda b: ("high", bytes(x | 0x80 for x in b))),
)


@given(
    st.sampled_from(["\r\n", "\n", "\x03"]),
    st.lists(st.tuples(payloads, st.lists(NOISE, max_size=3)), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_garbage_never_raises_and_never_loses_a_good_frame(
    terminator: str, script: list[tuple[str, list[tuple[str, object]]]], cuts: list[int]
) -> None:
    framing = Framing(terminator=terminator, checksum="crc16")
    term = terminator.encode()
    stream = b""
    good: list[str] = []
    for payload, noises in script:
        for kind, noise in noises:
            if kind == "badcrc":
                assert isinstance(noise, str)
                frame = framing.encode(noise)
                body = frame[: -len(term)]
                stream += body[:-1] + (b"0" if body[-1:] != b"0" else b"1") + term
            elif kind == "nocrc":
                assert isinstance(noise, str)
                stream += noise.encode() + term
            else:
                assert isinstance(noise, bytes)
                stream += _without(noise, term) + term
        stream += framing.encode(payload)
        good.append(payload)
    splitter = LineSplitter(framing, MAX_LINE, device="thaw")
    out = _feed(splitter, _chunks(stream, cuts))
    assert all(isinstance(item, str | ProtocolError) for item in out)
    texts = [item for item in out if isinstance(item, str)]
    # every good frame comes out, in order (noise that happens to be a valid frame may too)
    it = iter(texts)
    assert all(any(t == g for t in it) for g in good)
    for item in out:
        if isinstance(item, FrameError):
            assert item.device == "thaw"


def test_over_long_line_is_reported_once_and_skipped() -> None:
    framing = Framing()
    splitter = LineSplitter(framing, 10)
    out = splitter.feed(b"x" * 25)
    assert len(out) == 1
    assert isinstance(out[0], FrameError)
    assert "longer than 10" in str(out[0])
    assert splitter.feed(b"y" * 1000) == []
    assert splitter.pending <= 1
    assert splitter.feed(b"\r") == []
    assert splitter.feed(b"\nOK\r\n") == ["OK"]
    # a whole over-long line in one chunk is reported too
    result = splitter.feed(b"z" * 11 + b"\r\nOK\r\n")
    assert isinstance(result[0], FrameError)
    assert result[1:] == ["OK"]


def test_bad_frames_are_typed_and_named() -> None:
    framing = Framing(checksum="crc16")
    splitter = LineSplitter(framing, device="thaw")
    good = framing.encode("TS 4.0")
    out = splitter.feed(
        b"TS 4.0*0000\r\n"  # bad checksum
        b"TS 4.0\r\n"  # no checksum
        b"T\xff 4.0*1234\r\n"  # not ASCII
        b"T\x07 4.0*1234\r\n"  # control character
        b"\r\n" + good  # an empty line is skipped
    )
    reasons = [item.reason for item in out if isinstance(item, FrameError)]
    assert reasons == ["bad checksum", "no checksum", "non-ASCII byte", "control character"]
    assert out[-1] == "TS 4.0"
    assert all(isinstance(item, ProtocolError) for item in out[:-1])


def test_reset_drops_a_partial_line() -> None:
    splitter = LineSplitter(Framing())
    assert splitter.feed(b"SP 20") == []
    splitter.reset()
    assert splitter.feed(b"OK\r\n") == ["OK"]


def test_separator_inside_the_payload_is_fine() -> None:
    framing = Framing(checksum="crc16")
    assert LineSplitter(framing).feed(framing.encode("LBL a*b")) == ["LBL a*b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"terminator": ""}, "terminator"),
        ({"terminator": ";"}, "terminator"),
        ({"checksum": "crc32"}, "checksum"),
        ({"separator": ""}, "separator"),
        ({"separator": " "}, "separator"),
        ({"separator": "A"}, "separator"),
    ],
)
def test_ill_formed_framing_is_refused(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Framing(**kwargs)
    with pytest.raises(ValueError, match="max_line"):
        LineSplitter(Framing(), 0)
