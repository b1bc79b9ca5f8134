"""Keccak-256, Monero base58 and Monero address checksums against known vectors."""

from __future__ import annotations

import hashlib

import pytest

from workers.scanners.wallets import (
    Base58Error,
    base58_decode,
    base58_encode,
    encode_monero_address,
    keccak_256,
    monero_checksum_valid,
    parse_monero_address,
)

# The Monero project's published donation address: a real, checksum-valid mainnet standard address.
DONATION = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
# The synthetic wallets of rules/samples/miner.monero-wallet (generated with encode_monero_address).
SYNTHETIC_STANDARD = "42EYJJ3y86oJjeW87wKdu4BnzPFiYssr2FhEM26PMfcz7FA6xjDdCZecXdbkz5r7p98mB3ueDsf5uYJ5vdUwqcXNBxbscY6"
SYNTHETIC_BAD = "42EYJJ3y86oJjeVdEmF9NSBnzPFiYssr2FhEM26PMfcz7FA6xjDdCZecXdbkz5r7p98mB3ueDsf5uYJ5vdUwqcXNBxbscY6"


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (
            b"The quick brown fox jumps over the lazy dog",
            "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15",
        ),
    ],
)
def test_keccak_256_known_vectors(data: bytes, digest: str) -> None:
    assert keccak_256(data).hex() == digest


def test_keccak_256_is_not_sha3() -> None:
    assert keccak_256(b"") != hashlib.sha3_256(b"").digest()


@pytest.mark.parametrize("length", [0, 1, 135, 136, 137, 271, 272, 273, 1000])
def test_sponge_matches_sha3_when_given_sha3_padding(length: int) -> None:
    # Same permutation and sponge, only the domain byte differs: this checks every block boundary.
    data = bytes(range(256)) * 4
    assert keccak_256(data[:length], domain=0x06) == hashlib.sha3_256(data[:length]).digest()


def test_base58_known_vector_and_round_trip() -> None:
    assert base58_encode(b"1~2-3_4.5") == "9H9LDS3DZM71v"
    for length in range(20):
        data = bytes((7 * i + 3) % 256 for i in range(length))
        assert base58_decode(base58_encode(data)) == data
    # leading zero bytes are not special in the block variant: 8 zero bytes are 11 '1's
    assert base58_encode(b"\0" * 8) == "1" * 11


@pytest.mark.parametrize("text", ["0OIl", "1", "zzzzzzzzzzz", "111111111111"])
def test_base58_rejects_bad_text(text: str) -> None:
    with pytest.raises(Base58Error):
        base58_decode(text)


def test_real_and_synthetic_addresses() -> None:
    donation = parse_monero_address(DONATION)
    assert donation is not None and (donation.network, donation.kind) == ("mainnet", "standard")
    assert monero_checksum_valid(SYNTHETIC_STANDARD)
    assert not monero_checksum_valid(SYNTHETIC_BAD)
    assert not monero_checksum_valid(DONATION[:-1] + ("B" if DONATION[-1] != "B" else "C"))
    assert not monero_checksum_valid(DONATION[:94])
    assert not monero_checksum_valid("4" + "1" * 94)


@pytest.mark.parametrize(
    ("network_byte", "payload", "kind", "length", "first"),
    [
        (18, 64, "standard", 95, "4"),
        (42, 64, "subaddress", 95, "8"),
        (19, 72, "integrated", 106, "4"),
        (24, 64, "standard", 95, "5"),
    ],
)
def test_encoded_addresses_validate(network_byte: int, payload: int, kind: str, length: int, first: str) -> None:
    address = encode_monero_address(network_byte, bytes(range(payload)))
    parsed = parse_monero_address(address)
    assert parsed is not None and parsed.kind == kind
    assert len(address) == length and address[0] == first


def test_wrong_length_for_kind_is_refused() -> None:
    # an integrated network byte with a standard-length body
    assert parse_monero_address(encode_monero_address(19, bytes(64))) is None
    assert parse_monero_address(b"\xff" * 95) is None
