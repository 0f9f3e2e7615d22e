"""Recovering an MCAP bag whose writer was killed (SIGKILL, power loss): the analogue of `ros2 bag reindex`.

Such a file has no footer or summary, and its bag folder no metadata.yaml, so rosbag2 and rosbags refuse
it. Its complete records are still there: this reads them in order (schemas, channels and messages,
inside complete chunks), stops at the first incomplete one, and writes them to a new, readable bag.
Per-message zstd compression (rosbag2's `message` mode) is undone and redone as the new bag asks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dbp_control.core.data.bags import BAG_VERSION, STORAGES, BagError, typestore

MAGIC = b"\x89MCAP0\r\n"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x03, 0x04, 0x05, 0x06


@dataclass
class RecoveryReport:
    out: Path
    messages: int
    topics: dict[str, int]
    truncated_bytes: int  # the unreadable tail that was left behind


def _string(buf: memoryview, at: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<I", buf, at)
    return bytes(buf[at + 4 : at + 4 + length]).decode(), at + 4 + length


def _records(buf: memoryview) -> Iterator[tuple[int, memoryview, int]]:
    """(opcode, content, end offset) of each complete record; stops at the first incomplete one."""
    at = 0
    while at + 9 <= len(buf):
        opcode = buf[at]
        (length,) = struct.unpack_from("<Q", buf, at + 1)
        end = at + 9 + length
        if end > len(buf):
            return
        yield opcode, buf[at + 9 : end], end
        at = end


def scan_mcap(path: Path) -> tuple[dict[int, tuple[str, str]], list[tuple[int, int, bytes]], int]:
    """Channels {id: (topic, msgtype)}, messages [(channel id, log time, data)] and the readable length."""
    data = Path(path).read_bytes()
    if not data:
        raise BagError(f"{path} is empty: nothing was written before the writer stopped")
    if not data.startswith(MAGIC):
        raise BagError(f"{path} is not an MCAP file (no MCAP magic)")
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    messages: list[tuple[int, int, bytes]] = []

    def handle(opcode: int, content: memoryview) -> None:
        if opcode == OP_SCHEMA:
            (schema_id,) = struct.unpack_from("<H", content, 0)
            schemas[schema_id], _ = _string(content, 2)
        elif opcode == OP_CHANNEL:
            channel_id, schema_id = struct.unpack_from("<HH", content, 0)
            topic, _ = _string(content, 4)
            channels[channel_id] = (topic, schemas.get(schema_id, ""))
        elif opcode == OP_MESSAGE:
            channel_id, _, log_time, _ = struct.unpack_from("<HIQQ", content, 0)
            messages.append((channel_id, log_time, bytes(content[22:])))

    readable = len(MAGIC)
    for opcode, content, end in _records(memoryview(data)[len(MAGIC) :]):
        if opcode == OP_CHUNK:
            at = 8 + 8 + 8 + 4  # start and end time, uncompressed size, crc
            compression, at = _string(content, at)
            (size,) = struct.unpack_from("<Q", content, at)
            records = content[at + 8 : at + 8 + size]
            if compression:
                raise BagError(f"{path}: chunks compressed with {compression!r} are not supported by recovery")
            for inner, inner_content, _ in _records(records):
                handle(inner, inner_content)
        else:
            handle(opcode, content)
        readable = len(MAGIC) + end
    return channels, messages, len(data) - readable


def recover_bag(damaged: Path, out: Path, *, distro: str = "humble", storage: str = "mcap",
                compress: bool = False) -> RecoveryReport:
    """Write what `damaged` (a bag folder or its .mcap file) holds into the new bag `out`."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    damaged = Path(damaged)
    files = sorted(damaged.glob("*.mcap")) if damaged.is_dir() else [damaged]
    if not files:
        raise BagError(f"no .mcap file in {damaged}")
    if Path(out).exists():
        raise BagError(f"{out} already exists; refusing to overwrite")
    ts = typestore(distro)
    scanned = [scan_mcap(f) for f in files]
    writer = Writer(Path(out), version=BAG_VERSION, storage_plugin=STORAGES[storage])
    if compress:
        writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    writer.open()
    from backports import zstd  # what rosbags itself uses on Python < 3.14

    topics: dict[str, int] = {}
    connections = {}
    try:
        for channels, messages, _ in scanned:
            for topic, msgtype in channels.values():
                if topic not in connections:
                    if msgtype not in ts.types:
                        raise BagError(f"{damaged}: topic {topic} has type {msgtype!r}, unknown to the {distro} typestore")
                    connections[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            for channel_id, log_time, payload in sorted(messages, key=lambda m: m[1]):
                topic = channels[channel_id][0]
                if payload.startswith(ZSTD_MAGIC):
                    payload = zstd.decompress(payload)  # CDR itself starts with 00 01 00 00, never this magic
                writer.write(connections[topic], log_time, payload)
                topics[topic] = topics.get(topic, 0) + 1
    finally:
        writer.close()
    return RecoveryReport(Path(out), sum(topics.values()), topics, sum(s[2] for s in scanned))
