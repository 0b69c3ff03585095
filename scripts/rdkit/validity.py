"""Validity, uniqueness and novelty of molecules as EDM reports them, computed with RDKit.

Run by `enflow metrics validity` with the Python of .tools/venv (./just setup-py); enflow
itself never needs Python. Input on stdin, one JSON object per line:

    {"set": "gen" | "train", "id": 11, "symbols": ["C", "O", ...], "bonds": [[i, j, order], ...]}

Bond orders (1, 2, 3) come from enflow's stability bond tables. Output on stdout: one JSON
object with the counts and fractions. The definitions follow EDM's BasicMolecularMetrics:

* a generated molecule is valid when RDKit sanitizes the molecule built from its atoms and
  bonds (no formal charges, implicit hydrogens allowed); its SMILES is the canonical SMILES
  of its largest fragment (by atom count, first on ties);
* validity = valid / all generated molecules;
* uniqueness = distinct SMILES among the valid ones / valid;
* novelty = distinct SMILES not among the training SMILES / distinct SMILES, where the
  training SMILES are the canonical SMILES of the whole training molecules that sanitize.

Exit status 3: RDKit is not importable (run ./just setup-py); 2: malformed input.
"""

import json
import sys

try:
    from rdkit import Chem, RDLogger, rdBase
except ImportError as e:  # pragma: no cover - reported to the Go side
    sys.stderr.write("validity.py: cannot import RDKit (%s); run ./just setup-py\n" % e)
    sys.exit(3)

RDLogger.DisableLog("rdApp.*")

BOND_TYPES = {
    1: Chem.rdchem.BondType.SINGLE,
    2: Chem.rdchem.BondType.DOUBLE,
    3: Chem.rdchem.BondType.TRIPLE,
}


def fail(lineno, msg):
    sys.stderr.write("validity.py: stdin line %d: %s\n" % (lineno, msg))
    sys.exit(2)


def build(rec, lineno):
    mol = Chem.RWMol()
    symbols = rec.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        fail(lineno, "field symbols: want a non-empty list")
    for k, s in enumerate(symbols):
        try:
            mol.AddAtom(Chem.Atom(s))
        except Exception as e:  # unknown element symbol
            fail(lineno, "field symbols[%d]: %r: %s" % (k, s, e))
    for k, b in enumerate(rec.get("bonds") or []):
        if not (isinstance(b, list) and len(b) == 3):
            fail(lineno, "field bonds[%d]: want [i, j, order]" % k)
        i, j, order = b
        if order not in BOND_TYPES:
            fail(lineno, "field bonds[%d]: bond order %r not 1, 2 or 3" % (k, order))
        if not (0 <= i < len(symbols) and 0 <= j < len(symbols)) or i == j:
            fail(lineno, "field bonds[%d]: atom indices %r, %r out of range" % (k, i, j))
        mol.AddBond(int(i), int(j), BOND_TYPES[order])
    return mol


def to_smiles(mol):
    """Canonical SMILES after sanitization, or None if RDKit rejects the molecule."""
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # AtomValenceException, KekulizeException, ... (ValueError subclasses)
        return None
    return Chem.MolToSmiles(mol)


def main():
    want_smiles = "--smiles" in sys.argv[1:]
    n_gen = 0
    valid = []  # SMILES of the valid generated molecules (largest fragment)
    invalid_ids = []
    per_molecule = []
    train = set()
    n_train = 0
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            fail(lineno, "not JSON: %s" % e)
        mol = build(rec, lineno)
        kind = rec.get("set", "gen")
        if kind == "train":
            n_train += 1
            smi = to_smiles(mol)
            if smi is not None:
                train.add(smi)
            continue
        if kind != "gen":
            fail(lineno, "field set: %r is neither gen nor train" % kind)
        n_gen += 1
        smi = to_smiles(mol)
        if smi is not None:
            frags = Chem.rdmolops.GetMolFrags(mol, asMols=True)
            largest = max(frags, default=mol, key=lambda m: m.GetNumAtoms())
            smi = to_smiles(largest)
            valid.append(smi)
        else:
            invalid_ids.append(rec.get("id"))
        if want_smiles:
            per_molecule.append({"id": rec.get("id"), "smiles": smi})
    out = {
        "rdkit_version": rdBase.rdkitVersion,
        "n_molecules": n_gen,
        "n_valid": len(valid),
        "validity": len(valid) / n_gen if n_gen else 0.0,
    }
    unique = set(valid)
    out["n_unique"] = len(unique)
    out["uniqueness"] = len(unique) / len(valid) if valid else 0.0
    if n_train:
        novel = [s for s in unique if s not in train]
        out["n_train"] = n_train
        out["n_train_smiles"] = len(train)
        out["n_novel"] = len(novel)
        out["novelty"] = len(novel) / len(unique) if unique else 0.0
    out["invalid_ids"] = invalid_ids[:50]
    if want_smiles:
        out["molecules"] = per_molecule
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
