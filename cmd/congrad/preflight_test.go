package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// A missing input fails before any pipeline runs, with a usage error naming
// the flag and the glob.
func TestMissingInputsFailFast(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"run", "--prompts=" + filepath.Join(dir, "none-*.jsonl"), "--out=" + dir}, "--prompts"},
		{[]string{"generate", "--prompts=" + filepath.Join(dir, "none.jsonl"), "--out=" + dir}, "--prompts"},
		{[]string{"sketch", "--out=" + dir}, "--pairs"},
		{[]string{"select", "--out=" + dir}, "--pairs"},
		{[]string{"select", "--pairs=" + filepath.Join(dir, "p-*.parquet"), "--out=" + dir}, "--pairs"},
	}
	for _, c := range cases {
		err := Main(context.Background(), c.args, io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("Main(%q) = %v (exit %d), want a usage error", c.args, err, exitCode(err))
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.flag) || !strings.Contains(msg, "no files match") {
			t.Errorf("Main(%q) error %q does not name %s and the unmatched glob", c.args, msg, c.flag)
		}
	}
}
