// Independent RFC 9162 implementation (@transmute/rfc9162) for the log tests.
// Reads {"leaves": [hex entry...], "inclusion": [[index, size, [hex...]]...],
//        "consistency": [[old, new, [hex...]]...]} on stdin and prints JSON:
// roots of every size, its own inclusion proofs and consistency paths, and whether its
// verifiers accept the proofs given.
const { RFC9162 } = require('@transmute/rfc9162');

const hex = (b) => Buffer.from(b).toString('hex');
const bin = (h) => new Uint8Array(Buffer.from(h, 'hex'));

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const entries = input.leaves.map(bin);
  const out = { roots: [], inclusion: [], consistency: [], own_inclusion: [], own_consistency: [] };
  for (let n = 1; n <= entries.length; n++) {
    out.roots.push(hex(await RFC9162.treeHead(entries.slice(0, n))));
  }
  for (const [index, size, proof] of input.inclusion) {
    const tree = entries.slice(0, size);
    const root = await RFC9162.treeHead(tree);
    const leaf = await RFC9162.leaf(tree[index]);
    out.inclusion.push(await RFC9162.verifyInclusionProof(root, leaf, {
      log_id: '', tree_size: size, leaf_index: index, inclusion_path: proof.map(bin),
    }));
    out.own_inclusion.push((await RFC9162.PATH(index, tree)).map(hex));
  }
  for (const [oldSize, newSize, path] of input.consistency) {
    const r1 = await RFC9162.treeHead(entries.slice(0, oldSize));
    const r2 = await RFC9162.treeHead(entries.slice(0, newSize));
    out.consistency.push(await RFC9162.verifyConsistencyProof(r1, r2, {
      log_id: '', tree_size_1: oldSize, tree_size_2: newSize, consistency_path: path.map(bin),
    }));
    out.own_consistency.push((await RFC9162.PROOF(oldSize, entries.slice(0, newSize))).map(hex));
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
