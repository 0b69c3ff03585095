// Package rdkit embeds the Python helper scripts that enflow runs with the test venv
// (.tools/venv, ./just setup-py), so the enflow binary does not depend on where the
// repository is checked out. Only `enflow metrics validity` uses them; RDKit is never a
// dependency of enflow itself.
package rdkit

import _ "embed"

// ValidityScript is validity.py: EDM's validity, uniqueness and novelty with RDKit.
//
//go:embed validity.py
var ValidityScript string
