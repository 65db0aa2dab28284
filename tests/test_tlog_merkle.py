"""RFC 9162 hashing and proofs (consent.ledger.merkle), checked three ways: against the
RFC 6962/9162 test vectors published with the Certificate Transparency reference code
(transparency-dev/merkle testonly), against an independent implementation
(@transmute/rfc9162, run in node), and by tampering with every proof."""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from consent.ledger import merkle

ROOT = Path(__file__).resolve().parents[1]
h = bytes.fromhex

# The reference leaf inputs and the roots of every tree size built from them.
LEAVES = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                         "606162636465666768696a6b6c6d6e6f")]
ROOTS = [h(x) for x in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
# (leaf index counting from 0, tree size, proof)
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


class MemoryTree:
    """Every perfect subtree of a list of entries, as a log stores them."""

    def __init__(self, entries: list[bytes]):
        self.leaves = [merkle.leaf_hash(e) for e in entries]
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.compact = merkle.CompactRange()
        for leaf in self.leaves:
            for level, index, value in self.compact.append(leaf):
                self.nodes[(level, index)] = value

    def read(self, wanted):
        return {n: self.nodes[n] for n in wanted}

    def root(self, size):
        return merkle.root_of(size, self.read)

    def inclusion(self, index, size):
        return merkle.hashes_of(merkle.inclusion_ranges(index, size), self.read)

    def consistency(self, old, new):
        return merkle.hashes_of(merkle.consistency_ranges(old, new), self.read)


def test_roots_of_every_size_match_the_reference_vectors():
    tree = MemoryTree(LEAVES)
    for size, expected in enumerate(ROOTS):
        assert tree.root(size) == expected
        assert merkle.root_from_leaf_hashes(tree.leaves[:size]) == expected
    assert tree.compact.root() == ROOTS[8]


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_inclusion_proofs_match_the_reference_vectors(index, size, proof):
    tree = MemoryTree(LEAVES)
    expected = [h(p) for p in proof]
    assert tree.inclusion(index, size) == expected
    assert merkle.verify_inclusion(tree.leaves[index], index, size, expected, ROOTS[size])


@pytest.mark.parametrize("old,new,proof", CONSISTENCY)
def test_consistency_proofs_match_the_reference_vectors(old, new, proof):
    tree = MemoryTree(LEAVES)
    expected = [h(p) for p in proof]
    assert tree.consistency(old, new) == expected
    assert merkle.verify_consistency(old, new, expected, ROOTS[old], ROOTS[new])


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def test_every_tampered_proof_is_refused():
    tree = MemoryTree(LEAVES)
    for size in range(1, 9):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion(index, size)
            leaf = tree.leaves[index]
            assert merkle.verify_inclusion(leaf, index, size, proof, root)
            assert not merkle.verify_inclusion(_flip(leaf), index, size, proof, root)
            assert not merkle.verify_inclusion(leaf, index, size, proof, _flip(root))
            if size > 1:
                assert not merkle.verify_inclusion(leaf, (index + 1) % size, size, proof, root)
            for i in range(len(proof)):
                bad = proof[:i] + [_flip(proof[i])] + proof[i + 1:]
                assert not merkle.verify_inclusion(leaf, index, size, bad, root)
            assert not merkle.verify_inclusion(leaf, index, size, proof + [root], root)
        for old in range(1, size):
            proof = tree.consistency(old, size)
            assert merkle.verify_consistency(old, size, proof, tree.root(old), root)
            assert not merkle.verify_consistency(old, size, proof, _flip(tree.root(old)), root)
            assert not merkle.verify_consistency(old, size, proof, tree.root(old), _flip(root))
            for i in range(len(proof)):
                bad = proof[:i] + [_flip(proof[i])] + proof[i + 1:]
                assert not merkle.verify_consistency(old, size, bad, tree.root(old), root)
            assert not merkle.verify_consistency(old, size, proof[:-1], tree.root(old), root)


def test_out_of_range_requests_are_refused():
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(3, 3)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(5, 3)
    assert not merkle.verify_inclusion(b"x" * 32, 0, 0, [], merkle.EMPTY_ROOT)
    assert merkle.verify_consistency(0, 5, [], merkle.EMPTY_ROOT, b"y" * 32)


def _independent(entries, inclusion, consistency):
    node = shutil.which("node")
    assert node, "node is needed for the independent RFC 9162 implementation"
    assert (ROOT / "node_modules" / "@transmute" / "rfc9162").exists(), \
        "run `make node-deps` (npm install) for @transmute/rfc9162"
    payload = {"leaves": [e.hex() for e in entries],
               "inclusion": [[i, n, [p.hex() for p in proof]] for i, n, proof in inclusion],
               "consistency": [[m, n, [p.hex() for p in proof]] for m, n, proof in consistency]}
    done = subprocess.run([node, str(ROOT / "tests" / "support" / "rfc9162.js")],
                          input=json.dumps(payload), capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=True)
    return json.loads(done.stdout)


def test_an_independent_implementation_agrees_on_roots_and_proofs():
    rng = random.Random(9162)
    entries = [rng.randbytes(rng.randrange(0, 40)) for _ in range(37)]
    tree = MemoryTree(entries)
    sizes = [1, 2, 3, 5, 8, 13, 16, 21, 32, 37]
    inclusion = [(i, n, tree.inclusion(i, n)) for n in sizes for i in range(n)]
    pairs = [(m, n) for n in sizes for m in range(1, n)]
    consistency = []
    for m, n in pairs:
        proof = tree.consistency(m, n)
        # @transmute/rfc9162's verifier leaves out step 2 of RFC 9162 §2.1.4.2 ("if the
        # old size is an exact power of 2, prepend the old root"), so it gets the path
        # with that step already applied; its own proofs always carry that root.
        if m & (m - 1) == 0:
            proof = [tree.root(m)] + proof
        consistency.append((m, n, proof))
    theirs = _independent(entries, inclusion, consistency)
    assert theirs["roots"] == [tree.root(n).hex() for n in range(1, 38)]
    assert all(theirs["inclusion"]), "the independent verifier refused an inclusion proof"
    assert theirs["own_inclusion"] == [[p.hex() for p in proof] for _, _, proof in inclusion]
    assert all(theirs["consistency"]), "the independent verifier refused a consistency proof"
    assert theirs["own_consistency"] == [[p.hex() for p in proof]
                                         for _, _, proof in consistency]


def test_the_independent_implementation_refuses_a_proof_of_a_rewritten_log():
    rng = random.Random(6962)
    entries = [rng.randbytes(8) for _ in range(20)]
    honest = MemoryTree(entries)
    rewritten = MemoryTree(entries[:7] + [b"rewritten"] + entries[8:])
    # The rewritten log's consistency proof from the honest size-12 root to its own
    # size-20 root: neither implementation accepts it.
    proof = rewritten.consistency(12, 20)
    assert not merkle.verify_consistency(12, 20, proof, honest.root(12), rewritten.root(20))
    # (node recomputes the roots from its own leaves: give it the honest leaves.)
    theirs = _independent(entries, [(3, 20, rewritten.inclusion(3, 20))],
                          [(12, 20, proof)])
    assert theirs["consistency"] == [False]
    assert theirs["inclusion"] == [False]


def test_compact_range_emits_each_completed_subtree_once():
    tree = MemoryTree([hashlib.sha256(bytes([i])).digest() for i in range(11)])
    levels = sorted(tree.nodes)
    assert levels.count((3, 0)) == 1 and (3, 1) not in tree.nodes
    assert len(tree.nodes) == 11 + 5 + 2 + 1
    border = [tree.nodes[n] for n in merkle.CompactRange.border_nodes(11)]
    resumed = merkle.CompactRange(11, border)
    assert resumed.root() == tree.root(11)
