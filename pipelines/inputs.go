package pipelines

import (
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/congrad-beam/congrad/transforms/lakeio"
)

// ResolveInput checks the files a stage is about to read as output name
// ("pairs", "sketches", "kept") and says where they come from.
//
// With glob == "" the input is name's files in out, and it must come from a
// committed manifest of the stage that owns name: a missing manifest, a
// stage that is running, was killed or failed, a listed file that is
// missing or has another size or SHA-256, or a shard file of name that the
// manifest does not list is refused, naming the file and why. The returned
// glob then matches exactly the manifest's files (in their format).
//
// An explicit glob (--pairs, --sketches) may name a user's own files:
//   - a file listed in a committed manifest next to it is checked as above;
//   - a congrad shard file of a stage whose manifest in its folder is not
//     committed, or that its committed manifest does not list, is refused;
//   - any other file (a folder without a congrad manifest) is read as given,
//     with a note on warn;
//   - one glob must come from one source: files of two manifests (two runs
//     or two folders), or manifested and unmanifested files together, are
//     refused.
func ResolveInput(ctx context.Context, out, name, glob, flag string, warn io.Writer) (ref InputRef, src *Manifest, srcDir, readGlob string, err error) {
	if glob == "" {
		return resolveDefault(ctx, out, name, flag)
	}
	files, err := lakeio.Match(ctx, glob)
	if err != nil {
		return ref, nil, "", "", fmt.Errorf("%s %s: %w", flag, glob, err)
	}
	if len(files) == 0 {
		return ref, nil, "", "", fmt.Errorf("%w: %s: no files match %s", ErrNoInput, flag, glob)
	}
	type source struct{ dir, stage, run string }
	manifests := map[string]*Manifest{} // dir/stage -> manifest (nil: none)
	get := func(dir, stage string) (*Manifest, error) {
		k := dir + "\x00" + stage
		if m, ok := manifests[k]; ok {
			return m, nil
		}
		m, err := ReadManifest(ctx, dir, stage)
		manifests[k] = m
		return m, err
	}
	var entries []FileEntry
	var unmanifested []string
	sources := map[source]*Manifest{}
	// The listed files are verified (hashed) together after the loop; an
	// error the loop finds at file i is reported only if none of the files
	// before i fails its check, as when each was checked in turn.
	type check struct {
		dir    string
		entry  FileEntry
		listed *Manifest
	}
	var checks []check
	verified := func(stop error) error {
		err := eachIndex(len(checks), hashWorkers, func(i int) error { return verifyFile(ctx, checks[i].dir, checks[i].entry, checks[i].listed) })
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrManifest, flag, err)
		}
		return stop
	}
	for _, f := range files {
		dir, base := dirOf(f), path.Base(f)
		var listed *Manifest
		var entry FileEntry
		for _, st := range []string{StageGenerate, StageSketch, StageSelect} {
			m, err := get(dir, st)
			if err != nil {
				return ref, nil, "", "", verified(fmt.Errorf("%s: %w", flag, err))
			}
			if m == nil || m.State != StateCommitted {
				continue
			}
			for _, e := range m.Files {
				if e.Path == base {
					listed, entry = m, e
				}
			}
		}
		if listed != nil {
			checks = append(checks, check{dir, entry, listed})
			entries = append(entries, entry)
			sources[source{dir, listed.Stage, listed.RunID}] = listed
			continue
		}
		if out, _ := shardOutput(base); out != "" {
			if owner := ownerOf(out); owner != "" {
				m, _ := get(dir, owner)
				if m != nil && m.State != StateCommitted {
					return ref, nil, "", "", verified(fmt.Errorf("%w: %s: %s: %s", ErrManifest, flag, f, stateProblem(joinPath(dir, ManifestName(owner)), m)))
				}
				if m != nil {
					return ref, nil, "", "", verified(fmt.Errorf("%w: %s: %s is not listed in %s (run %s): a stale or foreign file; rerun `congrad %s` or remove it",
						ErrManifest, flag, f, joinPath(dir, ManifestName(owner)), m.RunID, owner))
				}
			}
		}
		unmanifested = append(unmanifested, f)
	}
	if err := verified(nil); err != nil {
		return ref, nil, "", "", err
	}
	if len(sources) > 1 {
		var names []string
		for s := range sources {
			names = append(names, fmt.Sprintf("%s (run %s)", joinPath(s.dir, ManifestName(s.stage)), s.run))
		}
		sort.Strings(names)
		return ref, nil, "", "", fmt.Errorf("%w: %s %s matches files of %d runs: %s; name the files of one run", ErrManifest, flag, glob, len(names), strings.Join(names, ", "))
	}
	if len(sources) == 1 && len(unmanifested) > 0 {
		return ref, nil, "", "", fmt.Errorf("%w: %s %s mixes files of a congrad manifest with files without one (%s): name one or the other",
			ErrManifest, flag, glob, unmanifested[0])
	}
	ref = InputRef{Glob: glob, Files: len(files)}
	if len(sources) == 1 {
		for s, m := range sources {
			ref.Dir, ref.Stage, ref.RunID, src, srcDir = s.dir, m.Stage, m.RunID, m, s.dir
		}
		ref.Digest = digest(entries)
		return ref, src, srcDir, glob, nil
	}
	entries = make([]FileEntry, len(unmanifested))
	err = eachIndex(len(unmanifested), hashWorkers, func(i int) error {
		f := unmanifested[i]
		size, sum, _, err := hashFile(ctx, f, false)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", flag, f, err)
		}
		entries[i] = FileEntry{Path: f, Size: size, SHA256: sum}
		return nil
	})
	if err != nil {
		return ref, nil, "", "", err
	}
	ref.Digest = digest(entries)
	if warn != nil {
		fmt.Fprintf(warn, "congrad: %s: %d file(s) of %s have no congrad manifest: read as given\n", flag, len(files), glob)
	}
	return ref, nil, "", glob, nil
}

func resolveDefault(ctx context.Context, out, name, flag string) (ref InputRef, src *Manifest, srcDir, readGlob string, err error) {
	owner := ownerOf(name)
	mp := joinPath(out, ManifestName(owner))
	m, err := ReadManifest(ctx, out, owner)
	if err != nil {
		return ref, nil, "", "", fmt.Errorf("%s: %w", flag, err)
	}
	if m == nil {
		if files, _ := lakeio.Match(ctx, joinPath(out, name)+"-*"); len(files) == 0 {
			return ref, nil, "", "", fmt.Errorf("%w: %s: no files match %s-* (and no %s)", ErrNoInput, flag, joinPath(out, name), ManifestName(owner))
		}
		return ref, nil, "", "", fmt.Errorf("%w: %s: %s has no %s: no complete `congrad %s` (or `congrad run`) output there; run it first, or name the files with %s",
			ErrManifest, flag, out, ManifestName(owner), owner, flag)
	}
	if m.State != StateCommitted {
		return ref, nil, "", "", fmt.Errorf("%w: %s: %s", ErrManifest, flag, stateProblem(mp, m))
	}
	entries := filesOf(m, name)
	if len(entries) == 0 {
		return ref, nil, "", "", fmt.Errorf("%w: %s: %s lists no %s files", ErrManifest, flag, mp, name)
	}
	listed := map[string]bool{}
	if err := eachIndex(len(entries), hashWorkers, func(i int) error { return verifyFile(ctx, out, entries[i], m) }); err != nil {
		return ref, nil, "", "", fmt.Errorf("%w: %s: %v", ErrManifest, flag, err)
	}
	for _, e := range entries {
		listed[e.Path] = true
	}
	present, err := lakeio.Match(ctx, joinPath(out, name)+"-*")
	if err != nil {
		return ref, nil, "", "", fmt.Errorf("%s: %w", flag, err)
	}
	for _, f := range present {
		if o, tmp := shardOutput(path.Base(f)); o == name && !tmp && !listed[path.Base(f)] {
			return ref, nil, "", "", fmt.Errorf("%w: %s: %s is not listed in %s (run %s): a stale or foreign file; rerun `congrad %s` or remove it",
				ErrManifest, flag, f, mp, m.RunID, owner)
		}
	}
	ext := path.Ext(entries[0].Path)
	readGlob = joinPath(out, name) + "-*" + ext
	ref = InputRef{Glob: readGlob, Dir: out, Stage: owner, RunID: m.RunID, Files: len(entries), Digest: digest(entries)}
	return ref, m, out, readGlob, nil
}

// stateProblem explains a manifest that is not committed.
func stateProblem(p string, m *Manifest) string {
	switch m.State {
	case StateRunning:
		return fmt.Sprintf("%s says stage %s of run %s (pid %d on %s, started %s) has not finished: it is still running or was killed; its outputs are incomplete: rerun `congrad %s`",
			p, m.Stage, m.RunID, m.PID, m.Host, m.Started, m.Command)
	case StateFailed:
		return fmt.Sprintf("%s says stage %s of run %s failed (%s); its outputs are incomplete: rerun `congrad %s`", p, m.Stage, m.RunID, m.Error, m.Command)
	}
	return fmt.Sprintf("%s has state %q, want %q", p, m.State, StateCommitted)
}

// verifyFile checks one listed file: present, same size, same SHA-256.
func verifyFile(ctx context.Context, dir string, e FileEntry, m *Manifest) error {
	p := joinPath(dir, e.Path)
	mp := joinPath(dir, ManifestName(m.Stage))
	size, sum, _, err := hashFile(ctx, p, false)
	switch {
	case err != nil && isNotExist(err):
		return fmt.Errorf("%s is listed in %s (run %s) but missing: the folder is incomplete; rerun `congrad %s`", p, mp, m.RunID, m.Command)
	case err != nil:
		return fmt.Errorf("%s: %v", p, err)
	case size != e.Size:
		return fmt.Errorf("%s has %d bytes, %s (run %s) says %d: changed or truncated after the run; rerun `congrad %s`", p, size, mp, m.RunID, e.Size, m.Command)
	case sum != e.SHA256:
		return fmt.Errorf("%s has SHA-256 %.12s, %s (run %s) says %.12s: changed after the run; rerun `congrad %s`", p, sum, mp, m.RunID, e.SHA256, m.Command)
	}
	return nil
}

// dirOf is the folder of a local path or URL.
func dirOf(p string) string {
	if i := strings.Index(p, "://"); i >= 0 {
		return p[:i+3] + path.Dir(p[i+3:]) // path.Dir alone would fold "gs://" to "gs:/"
	}
	return filepath.Dir(p)
}
