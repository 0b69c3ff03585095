package cli

import (
	"strings"
	"testing"
)

// TestGroupHelp: every command group answers --help (and -h, help GROUP) with its
// subcommands and their summaries, exit 0; a bare group prints the same and exits 2.
func TestGroupHelp(t *testing.T) {
	for group, subs := range map[string][]string{
		"jobs":    {"run", "status", "prune"},
		"etl":     {"qm9", "particles", "mcmc"},
		"metrics": {"stability", "js", "validity"},
	} {
		for _, args := range [][]string{{group, "--help"}, {group, "-h"}, {"help", group}, {group, "help"}} {
			code, _, errs := runCLIForMetrics(t, args...)
			if code != 0 {
				t.Errorf("%v: exit %d: %s", args, code, errs)
			}
			if !strings.Contains(errs, "Usage: enflow "+group+" <subcommand>") {
				t.Errorf("%v: no group usage:\n%s", args, errs)
			}
			for _, s := range subs {
				summary := commands[group+" "+s].Summary
				if !strings.Contains(errs, "  "+s+" ") || !strings.Contains(errs, summary) {
					t.Errorf("%v: subcommand %q (%q) not listed:\n%s", args, s, summary, errs)
				}
			}
		}
		if code, _, errs := runCLIForMetrics(t, group); code != 2 || !strings.Contains(errs, "Subcommands:") {
			t.Errorf("bare %s: exit %d: %s", group, code, errs)
		}
	}
	code, _, errs := runCLIForMetrics(t, "jobs", "rnu")
	if code != 2 || !strings.Contains(errs, `unknown subcommand "rnu" (did you mean "run"?)`) {
		t.Errorf("jobs rnu: exit %d: %s", code, errs)
	}
	code, _, errs = runCLIForMetrics(t, "metrix", "stability")
	if code != 2 || !strings.Contains(errs, `(did you mean "metrics"?)`) {
		t.Errorf("metrix: exit %d: %s", code, errs)
	}
	code, _, errs = runCLIForMetrics(t, "xyzzyplugh")
	if code != 2 || strings.Contains(errs, "did you mean") || !strings.Contains(errs, "unknown command") {
		t.Errorf("far-off command: exit %d: %s", code, errs)
	}
}

// TestUnknownFlagSuggestion: an unknown flag names the nearest defined one (edit distance
// ≤ 2), and nothing when none is close.
func TestUnknownFlagSuggestion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--epoch", "3"}, "flag provided but not defined: -epoch (did you mean --epochs?)"},
		{[]string{"metrics", "stability", "--inn", "x"}, "flag provided but not defined: -inn (did you mean --in?)"},
		{[]string{"export", "--formt", "sdf"}, "(did you mean --format?)"},
		{[]string{"metrics", "validity", "-trian", "x"}, "(did you mean --train?)"},
	} {
		code, _, errs := runCLIForMetrics(t, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %q in:\n%s", c.args, code, c.want, lastLine(errs))
		}
	}
	code, _, errs := runCLIForMetrics(t, "metrics", "stability", "--completelydifferent")
	if code != 2 || strings.Contains(errs, "did you mean") {
		t.Errorf("far-off flag: exit %d: %s", code, lastLine(errs))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"epoch", "epochs", 1}, {"inn", "in", 1}, {"trian", "train", 2},
		{"kitten", "sitting", 3}, {"", "abc", 3}, {"flaw", "lawn", 2}, {"é", "e", 1},
	} {
		if got := levenshtein(c.a, c.b); got != c.d {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
		if got := levenshtein(c.b, c.a); got != c.d {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", c.b, c.a, got, c.d)
		}
	}
	if got := nearest("epoch", []string{"seed", "epochs", "epoch-x"}); got != "epochs" {
		t.Errorf("nearest = %q", got)
	}
}
