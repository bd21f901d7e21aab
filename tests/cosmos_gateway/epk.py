"""Effective partition keys (EPK): where Cosmos places a partition key value on its hash ring.

The SDK scopes a ``partition_key=`` change feed by EPK range (headers
``x-ms-start-epk``/``x-ms-end-epk``) rather than by the partition key header, so
the gateway has to compute the same hash as the service. This is an independent
implementation of hash partitioning V2 (MurmurHash3 x64 128 over a typed binary
encoding) so a hashing bug in the SDK would show up as a wrong feed, not be
copied.
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import bad_request

_MASK64 = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F

# Component type markers of Cosmos's partition key binary encoding.
_UNDEFINED, _NULL, _FALSE, _TRUE, _NUMBER, _STRING = 0x00, 0x01, 0x02, 0x03, 0x05, 0x08
# V2 hashing terminates strings with 0xFF (V1 used 0x00 and truncated to 100 chars).
_STRING_END_V2 = b"\xff"


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK64


def _fmix(value: int) -> int:
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & _MASK64
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & _MASK64
    return value ^ (value >> 33)


def _mix_k1(k1: int) -> int:
    return (_rotl((k1 * _C1) & _MASK64, 31) * _C2) & _MASK64


def _mix_k2(k2: int) -> int:
    return (_rotl((k2 * _C2) & _MASK64, 33) * _C1) & _MASK64


def murmurhash3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """Computes MurmurHash3 x64 128 (Austin Appleby's reference algorithm).

    Args:
        data: Bytes to hash.
        seed: Seed for both halves.

    Returns:
        ``(h1, h2)``: the low and high 64-bit halves.
    """
    h1 = h2 = seed & _MASK64
    full = len(data) - len(data) % 16
    for pos in range(0, full, 16):
        k1 = int.from_bytes(data[pos : pos + 8], "little")
        k2 = int.from_bytes(data[pos + 8 : pos + 16], "little")
        h1 ^= _mix_k1(k1)
        h1 = (_rotl(h1, 27) + h2) & _MASK64
        h1 = (h1 * 5 + 0x52DCE729) & _MASK64
        h2 ^= _mix_k2(k2)
        h2 = (_rotl(h2, 31) + h1) & _MASK64
        h2 = (h2 * 5 + 0x38495AB5) & _MASK64
    tail = data[full:]
    if len(tail) > 8:
        h2 ^= _mix_k2(int.from_bytes(tail[8:], "little"))
    if tail:
        h1 ^= _mix_k1(int.from_bytes(tail[:8], "little"))
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    return h1, h2


def _encode_component(value: Any) -> bytes:
    # {} is how a missing ("undefined") partition key value travels and is stored.
    if value == {}:
        return bytes([_UNDEFINED])
    if value is None:
        return bytes([_NULL])
    if value is True:
        return bytes([_TRUE])
    if value is False:
        return bytes([_FALSE])
    if isinstance(value, int | float):
        # Cosmos numbers are doubles: 5 and 5.0 land on the same point of the ring.
        return bytes([_NUMBER]) + struct.pack("<d", float(value))
    if isinstance(value, str):
        return bytes([_STRING]) + value.encode("utf-8") + _STRING_END_V2
    raise bad_request(f"Cannot hash partition key component {value!r}.")


def _hash_hex(encoded: bytes) -> str:
    h1, h2 = murmurhash3_x64_128(encoded)
    # Big-endian of (h2:h1); the top two bits are cleared so every EPK sorts below "FF".
    digest = ((h2 << 64) | h1).to_bytes(16, "big")
    return (bytes([digest[0] & 0x3F]) + digest[1:]).hex().upper()


def effective_partition_key(values: list[Any], definition: dict[str, Any]) -> str:
    """Computes the EPK string of a full partition key value.

    Args:
        values: The partition key components, one per path.
        definition: The container's ``partitionKey`` definition.

    Returns:
        Upper-case hex; comparable as strings with the SDK's EPK bounds.

    Raises:
        GatewayError: 400 for definitions the gateway does not hash (V1 hashing).
    """
    if definition.get("version", 1) != 2:
        raise bad_request("The Cosmos test gateway only computes hash V2 effective partition keys.")
    if definition.get("kind") == "MultiHash":
        # Hierarchical keys hash each level on its own, so a prefix is a contiguous range.
        return "".join(_hash_hex(_encode_component(value)) for value in values)
    return _hash_hex(b"".join(_encode_component(value) for value in values))
