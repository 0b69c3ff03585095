package jobs

// The attempts log of a unit (STATE/units/<unit>/attempts.jsonl).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// attempt is one line of attempts.jsonl: each attempt appends a "started" line when it
// begins and a line with its outcome when it ends, so a started line without an end is an
// attempt that was killed.
type attempt struct {
	Attempt int       `json:"attempt"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	Outcome string    `json:"outcome"` // started, ok, failed, interrupted
	Resumed bool      `json:"resumed,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// attemptStats summarises attempts.jsonl: attempts started, failures, and killed attempts
// (started, never ended).
func attemptStats(as []attempt) (started, failed, killed int, last *attempt) {
	ended := map[int]bool{}
	for i := range as {
		switch as[i].Outcome {
		case "started":
			started++
		case "failed":
			failed++
			ended[as[i].Attempt] = true
			last = &as[i]
		default:
			ended[as[i].Attempt] = true
		}
	}
	for _, a := range as {
		if a.Outcome == "started" && !ended[a.Attempt] {
			killed++
		}
	}
	return started, failed, killed, last
}

func readAttempts(dir string) ([]attempt, error) {
	f, err := os.Open(filepath.Join(dir, attemptsName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	defer f.Close()
	var out []attempt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var a attempt
		if json.Unmarshal(sc.Bytes(), &a) == nil { // a torn last line (crash) is ignored
			out = append(out, a)
		}
	}
	return out, sc.Err()
}

func appendAttempt(dir string, a attempt) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("jobs: encoding attempt: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, attemptsName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("jobs: writing attempt: %w", err)
	}
	return f.Close()
}
