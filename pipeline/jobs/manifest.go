package jobs

// The manifest of a spec (STATE/manifests/<spec>.json): the units of the spec's latest
// expansion, written by every `jobs run`. Editing a spec (or its data, or the code, with
// code_identity = "revision") gives its units new identities; the old units' directories and
// results parts stay in the state directory (results are never rewritten), and the manifest
// is what tells them apart: a unit whose results carry a spec name with a manifest, but which
// is not in that manifest, is stale. enflow report leaves stale units out by default.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/enflow/enflow/etl/atomicfile"
)

// ManifestsDirName is the directory of the manifests inside a state directory.
const ManifestsDirName = "manifests"

// ManifestSchema versions the manifest format.
const ManifestSchema = "enflow.jobs.manifest/v1"

// Manifest lists the units of one expansion of a spec. Its content depends only on the spec,
// its data and the code version (no host, time or shard), so every shard of a run writes the
// same bytes.
type Manifest struct {
	Schema   string    `json:"schema"`
	Spec     string    `json:"spec"`
	SpecPath string    `json:"spec_path"`
	DataDir  string    `json:"data_dir"`
	Code     string    `json:"code_version"`
	Units    []UnitRef `json:"units"`
}

// IDs is the set of the manifest's unit IDs.
func (m *Manifest) IDs() map[string]bool {
	out := make(map[string]bool, len(m.Units))
	for _, u := range m.Units {
		out[u.ID] = true
	}
	return out
}

// ManifestOf is the manifest of a plan (every unit, in plan order).
func ManifestOf(p *Plan) *Manifest {
	m := &Manifest{Schema: ManifestSchema, Spec: p.Spec.Name, SpecPath: p.Spec.Path, DataDir: p.DataDir, Code: p.Code.Version,
		Units: make([]UnitRef, 0, len(p.Units))}
	for _, u := range p.Units {
		m.Units = append(m.Units, u.Ref())
	}
	return m
}

// missingInputs counts the units of p whose input files are missing.
func (p *Plan) missingInputs() int {
	n := 0
	for _, u := range p.Units {
		if u.InputErr != nil {
			n++
		}
	}
	return n
}

// manifestFile is the file name of the manifest of spec name: the name itself when it is a
// plain file name, else a sanitised name plus a hash of the name (the name inside the file
// is authoritative).
func manifestFile(name string) string {
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, name)
	if safe == name && name != "" && !strings.HasPrefix(name, ".") {
		return name + ".json"
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimLeft(safe, ".") + "-" + hex.EncodeToString(sum[:4]) + ".json"
}

// ManifestPath is the manifest file of spec name in a state directory.
func ManifestPath(stateDir, name string) string {
	return filepath.Join(stateDir, ManifestsDirName, manifestFile(name))
}

// WriteManifest records m in the state directory atomically (temporary file, fsync, rename),
// unless the file already holds exactly these bytes. Concurrent writers of the same manifest
// (the shards of one array job) are safe: each rename installs a complete file.
func WriteManifest(stateDir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("jobs: encoding the manifest: %w", err)
	}
	b = append(b, '\n')
	path := ManifestPath(stateDir, m.Spec)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := atomicfile.WriteFile(path, b); err != nil {
		return fmt.Errorf("jobs: writing the manifest of %s: %w", m.Spec, err)
	}
	return nil
}

// ReadManifests returns the manifests of a state directory by spec name (empty when it has
// none, e.g. a state directory written before manifests existed).
func ReadManifests(stateDir string) (map[string]*Manifest, error) {
	dir := filepath.Join(stateDir, ManifestsDirName)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*Manifest{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: manifests: %w", err)
	}
	out := map[string]*Manifest{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") { // .tmp-* of a write in progress
			continue
		}
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("jobs: manifest: %w", err)
		}
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("jobs: manifest %s: %w", path, err)
		}
		if m.Schema != ManifestSchema {
			return nil, fmt.Errorf("jobs: manifest %s: schema %q, want %s", path, m.Schema, ManifestSchema)
		}
		if m.Spec == "" {
			return nil, fmt.Errorf("jobs: manifest %s: no spec name", path)
		}
		out[m.Spec] = &m
	}
	return out, nil
}

// StateDirOf returns the state directory a --results argument belongs to: the directory
// itself when it holds results/, its parent when it is a state directory's results/, else ""
// (a results file, or a directory of parts outside a state directory).
func StateDirOf(path string) string {
	if !isDir(path) {
		return ""
	}
	if isDir(filepath.Join(path, ResultsDirName)) {
		return path
	}
	if filepath.Base(filepath.Clean(path)) == ResultsDirName {
		parent := filepath.Dir(filepath.Clean(path))
		if isDir(filepath.Join(parent, unitsDirName)) || isDir(filepath.Join(parent, ManifestsDirName)) {
			return parent
		}
	}
	return ""
}

// StaleSummary counts the rows and units SplitStale set apart.
type StaleSummary struct {
	Rows  int      `json:"rows"`
	Units []string `json:"units"` // sorted unit IDs
}

// SplitStale separates the rows of stale units — units of a spec with a manifest that are not
// in it — from the others. Rows of specs without a manifest are kept (current), so state
// directories written before manifests existed show everything.
func SplitStale(rows []Row, manifests map[string]*Manifest) (current, stale []Row) {
	ids := map[string]map[string]bool{}
	for name, m := range manifests {
		ids[name] = m.IDs()
	}
	for _, r := range rows {
		if in, ok := ids[r.SpecName]; ok && !in[r.Unit] {
			stale = append(stale, r)
		} else {
			current = append(current, r)
		}
	}
	return current, stale
}

// StaleOf summarises stale rows.
func StaleOf(rows []Row) StaleSummary {
	s := StaleSummary{Rows: len(rows), Units: []string{}}
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.Unit] {
			seen[r.Unit] = true
			s.Units = append(s.Units, r.Unit)
		}
	}
	sort.Strings(s.Units)
	return s
}

// ReadCurrentResults reads the results at path (see ResolveResults) and splits off the rows
// of stale units when path is (the results/ directory of) a state directory with manifests.
func ReadCurrentResults(path string) (current, stale []Row, err error) {
	rows, err := ReadResults(path)
	if err != nil {
		return nil, nil, err
	}
	state := StateDirOf(path)
	if state == "" {
		return rows, nil, nil
	}
	ms, err := ReadManifests(state)
	if err != nil {
		return nil, nil, err
	}
	current, stale = SplitStale(rows, ms)
	return current, stale, nil
}
