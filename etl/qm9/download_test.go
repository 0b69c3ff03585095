package qm9

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeFigshare serves named byte blobs. mode selects the behaviour:
// "range" honours Range requests, "norange" always sends the full body with 200,
// "badrange" answers 206 from the wrong offset, "cut" sends half the body then drops the
// connection (only on the first request), "404" and "500" fail.
type fakeFigshare struct {
	mu       sync.Mutex
	files    map[string][]byte
	mode     string
	requests []string // Range header of each request ("" for none)
	sent     int      // body bytes sent
	cutDone  bool
}

func (f *fakeFigshare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Header.Get("Range"))
	mode := f.mode
	if mode == "cut" && f.cutDone {
		mode = "range"
	}
	f.mu.Unlock()
	data, ok := f.files[r.URL.Path]
	if !ok || mode == "404" {
		http.NotFound(w, r)
		return
	}
	switch mode {
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "norange":
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		f.count(len(data))
		w.Write(data)
	case "badrange":
		if r.Header.Get("Range") == "" {
			f.count(len(data))
			w.Write(data)
			return
		}
		w.Header().Set("Content-Range", "bytes 0-"+strconv.Itoa(len(data)-1)+"/"+strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusPartialContent)
		f.count(len(data))
		w.Write(data)
	case "cut":
		f.mu.Lock()
		f.cutDone = true
		f.mu.Unlock()
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		half := len(data) / 2
		f.count(half)
		w.Write(data[:half])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	default:
		cw := &countingWriter{ResponseWriter: w, f: f}
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(data))
	}
}

func (f *fakeFigshare) count(n int) {
	f.mu.Lock()
	f.sent += n
	f.mu.Unlock()
}

type countingWriter struct {
	http.ResponseWriter
	f *fakeFigshare
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.f.count(len(p))
	return c.ResponseWriter.Write(p)
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newFake(t *testing.T, mode string) (*fakeFigshare, []RemoteFile, [][]byte) {
	t.Helper()
	blobs := [][]byte{randomBytes(300_000, 1), []byte(figshareText(Uncharacterized()))}
	f := &fakeFigshare{mode: mode, files: map[string][]byte{
		"/ndownloader/files/3195389": blobs[0],
		"/ndownloader/files/3195404": blobs[1],
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	remotes := []RemoteFile{
		{Name: ArchiveRemote.Name, URL: srv.URL + "/ndownloader/files/3195389", Size: int64(len(blobs[0])), SHA256: sumOf(blobs[0])},
		{Name: UncharacterizedRemote.Name, URL: srv.URL + "/ndownloader/files/3195404", Size: int64(len(blobs[1])), SHA256: sumOf(blobs[1])},
	}
	return f, remotes, blobs
}

func checkDownloaded(t *testing.T, paths []string, blobs [][]byte) {
	t.Helper()
	for i, p := range paths {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, blobs[i]) {
			t.Errorf("%s: content differs (%d bytes, want %d)", p, len(got), len(blobs[i]))
		}
		if _, err := os.Stat(p + ".part"); !os.IsNotExist(err) {
			t.Errorf("%s.part left behind", p)
		}
	}
}

func TestDownloadFullThenCached(t *testing.T) {
	f, remotes, blobs := newFake(t, "range")
	dir := filepath.Join(t.TempDir(), "cache")
	var progress bytes.Buffer
	paths, err := Download(context.Background(), remotes, dir, &progress)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, paths, blobs)
	if len(f.requests) != 2 || f.requests[0] != "" || progress.Len() == 0 {
		t.Errorf("requests %q, progress output %d bytes", f.requests, progress.Len())
	}
	// Second call: files are verified from disk, nothing is fetched.
	if _, err := Download(context.Background(), remotes, dir, nil); err != nil {
		t.Fatal(err)
	}
	if len(f.requests) != 2 {
		t.Errorf("cached files fetched again: %d requests", len(f.requests))
	}
	// A damaged cached file is fetched again.
	if err := os.WriteFile(paths[1], []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Download(context.Background(), remotes, dir, nil); err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, paths, blobs)
	if len(f.requests) != 3 {
		t.Errorf("%d requests after damaging one file, want 3", len(f.requests))
	}
	ids, err := ReadUncharacterized(paths[1])
	if err != nil || len(ids) != NumUncharacterized {
		t.Errorf("downloaded list: %d ids, %v", len(ids), err)
	}
}

func TestDownloadResume(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		partBytes func(blob []byte) []byte
		wantRange bool // whether a Range request is sent
		maxSent   func(blob []byte) int
	}{
		{"resume with range", "range", func(b []byte) []byte { return b[:len(b)*4/10] }, true, func(b []byte) int { return len(b) - len(b)*4/10 }},
		{"server ignores range", "norange", func(b []byte) []byte { return b[:len(b)/3] }, true, func(b []byte) int { return len(b) }},
		{"server answers wrong range", "badrange", func(b []byte) []byte { return b[:len(b)/3] }, true, func(b []byte) int { return 2 * len(b) }},
		{"part longer than file", "range", func(b []byte) []byte { return append(bytes.Clone(b), 1, 2, 3) }, false, func(b []byte) int { return len(b) }},
		{"part already complete", "range", func(b []byte) []byte { return b }, false, func(b []byte) int { return 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, remotes, blobs := newFake(t, tc.mode)
			dir := t.TempDir()
			part := filepath.Join(dir, remotes[0].Name+".part")
			if err := os.WriteFile(part, tc.partBytes(blobs[0]), 0o644); err != nil {
				t.Fatal(err)
			}
			paths, err := Download(context.Background(), remotes[:1], dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkDownloaded(t, paths, blobs[:1])
			if tc.wantRange && (len(f.requests) == 0 || !strings.HasPrefix(f.requests[0], "bytes=")) {
				t.Errorf("requests %q, want a Range request first", f.requests)
			}
			if f.sent > tc.maxSent(blobs[0]) {
				t.Errorf("server sent %d bytes, want at most %d", f.sent, tc.maxSent(blobs[0]))
			}
		})
	}
}

func TestDownloadInterruptedThenResumed(t *testing.T) {
	f, remotes, blobs := newFake(t, "cut")
	dir := t.TempDir()
	_, err := Download(context.Background(), remotes[:1], dir, nil)
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("error %v, want an interrupted download", err)
	}
	st, err := os.Stat(filepath.Join(dir, remotes[0].Name+".part"))
	if err != nil || st.Size() == 0 {
		t.Fatalf("partial file not kept: %v", err)
	}
	paths, err := Download(context.Background(), remotes[:1], dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, paths, blobs[:1])
	if last := f.requests[len(f.requests)-1]; last != "bytes="+strconv.FormatInt(st.Size(), 10)+"-" {
		t.Errorf("resume request Range %q, want from byte %d", last, st.Size())
	}
}

func TestDownloadErrors(t *testing.T) {
	tests := []struct {
		name string
		mode string
		edit func(r *RemoteFile)
		want string
	}{
		{"checksum mismatch", "range", func(r *RemoteFile) { r.SHA256 = strings.Repeat("0", 64) }, "sha256 mismatch"},
		{"size mismatch", "range", func(r *RemoteFile) { r.Size-- }, "size"},
		{"not found", "404", func(r *RemoteFile) {}, "404"},
		{"server error", "500", func(r *RemoteFile) {}, "500"},
		{"bad url", "range", func(r *RemoteFile) { r.URL = "http://[::1]:namedport" }, ArchiveRemote.Name},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, remotes, _ := newFake(t, tc.mode)
			tc.edit(&remotes[0])
			dir := t.TempDir()
			_, err := Download(context.Background(), remotes, dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), remotes[0].Name) {
				t.Fatalf("error %v, want one containing %q and the file name", err, tc.want)
			}
			for _, p := range []string{remotes[0].Name, remotes[0].Name + ".part"} {
				if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
					t.Errorf("%s left behind after %s", p, tc.name)
				}
			}
		})
	}
}

func TestDownloadCancelled(t *testing.T) {
	_, remotes, _ := newFake(t, "range")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Download(ctx, remotes, t.TempDir(), nil); err == nil {
		t.Error("cancelled context: want error")
	}
}

func TestContentRangeStart(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"bytes 100-199/200", 100, true},
		{"bytes 0-0/1", 0, true},
		{"bytes */200", 0, false},
		{"", 0, false},
		{"items 1-2/3", 0, false},
	}
	for _, tc := range tests {
		got, ok := contentRangeStart(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("contentRangeStart(%q) = %d, %v", tc.in, got, ok)
		}
	}
}

func TestOfficialFiles(t *testing.T) {
	files := OfficialFiles()
	if len(files) != 2 || files[0].Size != 86144227 || files[1].Size != 486752 {
		t.Fatalf("%+v", files)
	}
	for _, f := range files {
		if len(f.SHA256) != 64 || !strings.HasPrefix(f.URL, "https://") {
			t.Errorf("%+v", f)
		}
	}
}
