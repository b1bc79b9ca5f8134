"""Monero address validation: Monero's block base58, Keccak-256 and the address checksum, without dependencies."""

from __future__ import annotations

from dataclasses import dataclass

# --- Keccak-256 -------------------------------------------------------------------------------------------------
# hashlib.sha3_256 is FIPS 202 SHA3: same permutation, but its padding starts with 0x06 where the original Keccak
# submission (which Monero, like Ethereum, uses) pads with 0x01, so the digests differ. Hence our own sponge.

_MASK = (1 << 64) - 1
_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
# Rotation offsets r[x][y] of the rho step, indexed [x + 5*y].
_ROTATIONS = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip
KECCAK256_RATE = 136  # bytes absorbed per permutation: (1600 - 2*256) / 8


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK if shift else value


def keccak_f1600(lanes: list[int]) -> None:
    """The Keccak-f[1600] permutation, in place, over 25 little-endian 64-bit lanes indexed [x + 5*y]."""
    for constant in _ROUND_CONSTANTS:
        # theta: mix each column's parity into its neighbours
        parity = [lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20] for x in range(5)]
        for x in range(5):
            d = parity[(x - 1) % 5] ^ _rotl(parity[(x + 1) % 5], 1)
            for y in range(0, 25, 5):
                lanes[x + y] ^= d
        # rho and pi: rotate each lane and move (x, y) to (y, 2x + 3y)
        moved = [0] * 25
        for x in range(5):
            for y in range(5):
                moved[y + 5 * ((2 * x + 3 * y) % 5)] = _rotl(lanes[x + 5 * y], _ROTATIONS[x + 5 * y])
        # chi: the only non-linear step, row by row
        for y in range(0, 25, 5):
            row = moved[y : y + 5]
            for x in range(5):
                lanes[x + y] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5] & _MASK)
        # iota
        lanes[0] ^= constant


def keccak_256(data: bytes, *, domain: int = 0x01) -> bytes:
    """Keccak-256 of ``data`` (``domain=0x06`` gives FIPS SHA3-256, which the tests use to check the sponge)."""
    padded = bytearray(data)
    padded.append(domain)
    padded.extend(b"\0" * (-len(padded) % KECCAK256_RATE))
    padded[-1] |= 0x80
    lanes = [0] * 25
    for start in range(0, len(padded), KECCAK256_RATE):
        block = padded[start : start + KECCAK256_RATE]
        for i in range(KECCAK256_RATE // 8):
            lanes[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        keccak_f1600(lanes)
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


# --- Monero base58 ----------------------------------------------------------------------------------------------
# Unlike Bitcoin's base58 (one big integer), Monero encodes 8-byte blocks into fixed 11-character groups, the last
# partial block into a size given by the table below; so leading zero bytes are not special and lengths are fixed.

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_ENCODED_SIZES = (0, 2, 3, 5, 6, 7, 9, 10, 11)  # characters for a block of 0..8 bytes
_DECODED_SIZES = {size: n for n, size in enumerate(_ENCODED_SIZES)}
FULL_BLOCK = 8
FULL_ENCODED_BLOCK = 11


class Base58Error(ValueError):
    """Text that is not valid Monero base58."""


def base58_encode(data: bytes) -> str:
    """Monero base58 of ``data``."""
    out = []
    for start in range(0, len(data), FULL_BLOCK):
        block = data[start : start + FULL_BLOCK]
        value = int.from_bytes(block, "big")
        chars = []
        for _ in range(_ENCODED_SIZES[len(block)]):
            value, digit = divmod(value, 58)
            chars.append(ALPHABET[digit])
        out.append("".join(reversed(chars)))
    return "".join(out)


def base58_decode(text: str) -> bytes:
    """The bytes behind Monero base58 ``text``; Base58Error for a bad character, length or overflowing block."""
    out = bytearray()
    for start in range(0, len(text), FULL_ENCODED_BLOCK):
        chunk = text[start : start + FULL_ENCODED_BLOCK]
        size = _DECODED_SIZES.get(len(chunk))
        if size is None or size == 0:
            raise Base58Error(f"a final block of {len(chunk)} characters is impossible")
        value = 0
        for char in chunk:
            digit = _INDEX.get(char)
            if digit is None:
                raise Base58Error(f"{char!r} is not a base58 character")
            value = value * 58 + digit
        if value >> (8 * size):
            raise Base58Error("a block overflows its byte size")
        out += value.to_bytes(size, "big")
    return bytes(out)


# --- Addresses --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoneroAddress:
    """A decoded address whose checksum holds."""

    network: str  # mainnet | stagenet | testnet
    kind: str  # standard | integrated | subaddress


# Network bytes (single-byte varints, all below 0x80) → (network, kind).
PREFIXES: dict[int, tuple[str, str]] = {
    18: ("mainnet", "standard"),
    19: ("mainnet", "integrated"),
    42: ("mainnet", "subaddress"),
    24: ("stagenet", "standard"),
    25: ("stagenet", "integrated"),
    36: ("stagenet", "subaddress"),
    53: ("testnet", "standard"),
    54: ("testnet", "integrated"),
    63: ("testnet", "subaddress"),
}
_KEYS = 64  # public spend key + public view key
_PAYMENT_ID = 8  # integrated addresses carry a short payment id
CHECKSUM = 4


def parse_monero_address(text: str | bytes) -> MoneroAddress | None:
    """The address ``text`` encodes when its network byte is known, its length fits and its checksum holds."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    try:
        raw = base58_decode(text)
    except Base58Error:
        return None
    if not raw or raw[0] not in PREFIXES:
        return None
    network, kind = PREFIXES[raw[0]]
    expected = 1 + _KEYS + (_PAYMENT_ID if kind == "integrated" else 0) + CHECKSUM
    if len(raw) != expected:
        return None
    body, checksum = raw[:-CHECKSUM], raw[-CHECKSUM:]
    if keccak_256(body)[:CHECKSUM] != checksum:
        return None
    return MoneroAddress(network=network, kind=kind)


def monero_checksum_valid(text: str | bytes) -> bool:
    """Whether ``text`` is a Monero address with a valid checksum."""
    return parse_monero_address(text) is not None


def encode_monero_address(network_byte: int, payload: bytes) -> str:
    """An address from a network byte and its keys (and payment id): used to build synthetic test wallets."""
    body = bytes([network_byte]) + payload
    return base58_encode(body + keccak_256(body)[:CHECKSUM])
