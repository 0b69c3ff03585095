package train

// Run-directory crash safety of the training driver.
//
// Crash safety. GoMLX checkpoints (checkpoints.Handler.Save, v0.26.0 to v0.27.3) are written in place,
// without a temporary name or fsync: a kill during Save can leave a truncated newest
// checkpoint, which GoMLX would then fail to load on --resume. The driver therefore fsyncs
// each new checkpoint (and the directory) after Save, and before opening a run directory
// moves invalid checkpoints aside (*.corrupt), removes data files of unfinished saves and
// temporary files of interrupted atomic writes, and restores best/ if a kill hit its
// replacement (refreshBest). All other outputs (model.json, run.json, metrics.csv/.parquet,
// result.json, recoveries.csv, best/) are written atomically (etl/atomicfile or a directory
// rename), and an epoch's metrics row is written before its checkpoint, so that a kill between
// the two redoes the epoch instead of losing the row.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
)

// checkpointMeta is the part of a GoMLX checkpoint's JSON needed to check its data file.
type checkpointMeta struct {
	Variables []struct {
		ParameterName string
		Pos, Length   int
	}
	BinFormat string
}

// gomlxBinHeader starts compressed GoMLX checkpoint data files ("gomlx_checkpoints", a length
// byte, "gzip", then a gzip stream); uncompressed files are raw bytes.
const gomlxBinHeader = "gomlx_checkpoints"

// checkCheckpoint verifies that checkpoint base in dir is complete: the JSON decodes, the data
// file exists, decompresses (gzip verifies its CRC and length) and covers every variable.
func checkCheckpoint(dir, base string) error {
	js, err := os.ReadFile(filepath.Join(dir, base+checkpoints.JsonNameSuffix))
	if err != nil {
		return err
	}
	var meta checkpointMeta
	if err := json.Unmarshal(js, &meta); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	bin, err := os.ReadFile(filepath.Join(dir, base+checkpoints.BinDataSuffix))
	if err != nil {
		return err
	}
	data := bin
	if h := len(gomlxBinHeader); len(bin) > h && string(bin[:h]) == gomlxBinHeader {
		n := int(bin[h])
		if len(bin) < h+1+n || string(bin[h+1:h+1+n]) != "gzip" {
			return fmt.Errorf("data: unknown compression header")
		}
		zr, err := gzip.NewReader(bytes.NewReader(bin[h+1+n:]))
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	for _, v := range meta.Variables {
		if v.Pos < 0 || v.Length < 0 || v.Pos+v.Length > len(data) {
			return fmt.Errorf("data: variable %s at [%d, %d) beyond the %d bytes of data", v.ParameterName, v.Pos, v.Pos+v.Length, len(data))
		}
	}
	return nil
}

// repairRunDir makes a run directory loadable after a crash (see the file comment). It only
// moves aside or deletes what an interrupted write left behind.
func repairRunDir(dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case !e.IsDir() && strings.HasPrefix(name, "checkpoint-") && strings.HasSuffix(name, checkpoints.JsonNameSuffix):
			base := strings.TrimSuffix(name, checkpoints.JsonNameSuffix)
			if cerr := checkCheckpoint(dir, base); cerr != nil {
				log.Warn("moving an incomplete checkpoint aside (interrupted save?)", "dir", dir, "checkpoint", base, "err", cerr)
				for _, suf := range []string{checkpoints.JsonNameSuffix, checkpoints.BinDataSuffix} {
					if err := os.Rename(filepath.Join(dir, base+suf), filepath.Join(dir, base+suf+".corrupt")); err != nil && !errors.Is(err, os.ErrNotExist) {
						return fmt.Errorf("train: quarantining checkpoint %s: %w", base, err)
					}
				}
			}
		case !e.IsDir() && strings.HasPrefix(name, "checkpoint-") && strings.HasSuffix(name, checkpoints.BinDataSuffix):
			base := strings.TrimSuffix(name, checkpoints.BinDataSuffix)
			if !names[base+checkpoints.JsonNameSuffix] {
				log.Warn("removing the data file of an unfinished checkpoint save", "file", path)
				if err := os.Remove(path); err != nil {
					return fmt.Errorf("train: %w", err)
				}
			}
		case strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-"):
			// Temporary files of atomicfile writes and best/ replacements killed midway.
			log.Debug("removing a stale temporary file", "file", path)
			if err := os.RemoveAll(path); err != nil {
				return fmt.Errorf("train: %w", err)
			}
		}
	}
	best, old := filepath.Join(dir, BestDir), filepath.Join(dir, BestDir+".old")
	if names[BestDir+".old"] {
		if !names[BestDir] {
			log.Warn("restoring best/ from an interrupted replacement", "dir", dir)
			if err := os.Rename(old, best); err != nil {
				return fmt.Errorf("train: restoring %s: %w", best, err)
			}
		} else if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	return nil
}

// syncLatestCheckpoint fsyncs the newest checkpoint's files and dir (GoMLX does not).
func syncLatestCheckpoint(dir string) error {
	list, err := listCheckpoints(dir)
	if err != nil || len(list) == 0 {
		return err
	}
	base := list[len(list)-1]
	for _, suf := range []string{checkpoints.BinDataSuffix, checkpoints.JsonNameSuffix} {
		if err := syncPath(filepath.Join(dir, base+suf)); err != nil {
			return fmt.Errorf("train: syncing checkpoint %s: %w", base, err)
		}
	}
	if err := syncPath(dir); err != nil {
		return fmt.Errorf("train: syncing %s: %w", dir, err)
	}
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(serr, cerr)
}

// checkpointRunState reads the driver state stored in the newest checkpoint of dir from its
// JSON metadata (no tensors are loaded).
func checkpointRunState(dir string) (*runState, error) {
	list, err := listCheckpoints(dir)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("train: no checkpoint in %s", dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, list[len(list)-1]+checkpoints.JsonNameSuffix))
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var meta struct {
		Params []struct {
			Scope, Key string
			Value      any
		}
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("train: %s: %w", dir, err)
	}
	for _, p := range meta.Params {
		if p.Scope == stateScope && p.Key == stateParam {
			s, ok := p.Value.(string)
			if !ok {
				break
			}
			st := &runState{}
			if err := json.Unmarshal([]byte(s), st); err != nil {
				return nil, fmt.Errorf("train: %s: decoding run state: %w", dir, err)
			}
			return st, nil
		}
	}
	return nil, fmt.Errorf("train: %s: checkpoint without run state", dir)
}

// refreshBest repairs best/ after a kill between saving the checkpoint of a new best epoch and
// copying it to best/: when the resumed checkpoint st is that epoch's own (first batch of the
// next epoch) and best/ holds an older one, the newest checkpoint is copied again.
func refreshBest(dir string, st *runState, log *slog.Logger) error {
	if st.BestEpoch < 0 || st.Batch != 0 || st.Epoch != st.BestEpoch+1 {
		return nil
	}
	bestDir := filepath.Join(dir, BestDir)
	if b, err := checkpointRunState(bestDir); err == nil && b.Epoch == st.Epoch {
		return nil
	}
	log.Warn("best/ lags behind the run (interrupted copy); copying the best epoch's checkpoint again", "dir", dir, "best_epoch", st.BestEpoch)
	if err := copyLatestTo(dir, bestDir); err != nil {
		return fmt.Errorf("train: refreshing %s: %w", bestDir, err)
	}
	return nil
}
