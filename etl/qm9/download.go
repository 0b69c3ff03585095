package qm9

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// RemoteFile is one file to download.
type RemoteFile struct {
	Name   string // file name in the download directory
	URL    string
	Size   int64  // expected size in bytes; 0 if unknown
	SHA256 string // expected hex digest; "" skips verification
}

// The official QM9 files on figshare (collection 978904; sizes and digests from TFDS).
var (
	ArchiveRemote = RemoteFile{
		Name:   "dsgdb9nsd.xyz.tar.bz2",
		URL:    "https://springernature.figshare.com/ndownloader/files/3195389",
		Size:   86144227,
		SHA256: "3a63848ac80691bdb8d41834b575afad345b9300d7a2db0c38adb7f6eaa8360c",
	}
	UncharacterizedRemote = RemoteFile{
		Name:   "uncharacterized.txt",
		URL:    "https://springernature.figshare.com/ndownloader/files/3195404",
		Size:   486752,
		SHA256: "3aa5115d540b356de94791d4a74c3bf1ed91c469ecf52a4f5d7cc0506fe02e24",
	}
)

// OfficialFiles returns the raw archive and the uncharacterized list, in that order.
func OfficialFiles() []RemoteFile { return []RemoteFile{ArchiveRemote, UncharacterizedRemote} }

// Download fetches files into dir (created if needed) and returns their local paths in
// the same order. A file already present with the right digest is not fetched again.
// Data goes to NAME.part first; an existing .part is resumed with an HTTP Range request
// (when the server ignores Range the download restarts). The result is checked against
// Size and SHA256: on a mismatch the .part is deleted and an error returned. On success
// the .part is renamed to NAME. A progress bar is drawn on progress unless it is nil.
// Cancelling ctx leaves the .part for a later resume.
func Download(ctx context.Context, files []RemoteFile, dir string, progress io.Writer) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("qm9: download: %w", err)
	}
	d := downloader{client: &http.Client{}, progress: progress}
	paths := make([]string, len(files))
	for i, f := range files {
		p, err := d.file(ctx, f, dir)
		if err != nil {
			return nil, err
		}
		paths[i] = p
	}
	return paths, nil
}

type downloader struct {
	client   *http.Client
	progress io.Writer
}

// errRestart asks the caller to drop the .part and fetch from the start.
var errRestart = errors.New("restart download")

func (d *downloader) file(ctx context.Context, f RemoteFile, dir string) (string, error) {
	final := filepath.Join(dir, f.Name)
	if ok, err := d.cached(f, final); err != nil || ok {
		return final, err
	}
	part := final + ".part"
	for attempt := 0; ; attempt++ {
		err := d.fetch(ctx, f, part)
		if errors.Is(err, errRestart) && attempt == 0 {
			slog.Info("qm9: restarting download from the beginning", "file", f.Name)
			if err := os.Remove(part); err != nil && !os.IsNotExist(err) {
				return "", fmt.Errorf("qm9: download %s: %w", f.Name, err)
			}
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	if err := verify(f, part); err != nil {
		os.Remove(part)
		return "", err
	}
	if err := os.Rename(part, final); err != nil {
		return "", fmt.Errorf("qm9: download %s: %w", f.Name, err)
	}
	syncDir(dir)
	return final, nil
}

// cached reports whether final already holds the right content; a wrong file is removed.
func (d *downloader) cached(f RemoteFile, final string) (bool, error) {
	if _, err := os.Stat(final); err != nil {
		return false, nil
	}
	if err := verify(f, final); err != nil {
		slog.Warn("qm9: cached file is wrong, fetching again", "file", final, "err", err)
		if err := os.Remove(final); err != nil {
			return false, fmt.Errorf("qm9: download %s: %w", f.Name, err)
		}
		return false, nil
	}
	slog.Info("qm9: using cached file", "file", final)
	return true, nil
}

// fetch appends the missing bytes of f to part.
func (d *downloader) fetch(ctx context.Context, f RemoteFile, part string) error {
	var offset int64
	if st, err := os.Stat(part); err == nil {
		offset = st.Size()
	}
	if f.Size > 0 && offset > f.Size {
		return errRestart
	}
	if f.Size > 0 && offset == f.Size {
		return nil // complete; verified by the caller
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return fmt.Errorf("qm9: download %s: %w", f.Name, err)
	}
	req.Header.Set("User-Agent", "enflow-etl")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("qm9: download %s: %w", f.Name, err)
	}
	defer resp.Body.Close()

	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != offset {
			return errRestart
		}
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			slog.Info("qm9: server ignored the range request, downloading again", "file", f.Name)
		}
		offset = 0
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		return errRestart
	default:
		return fmt.Errorf("qm9: download %s: %s: HTTP %s", f.Name, f.URL, resp.Status)
	}

	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return fmt.Errorf("qm9: download %s: %w", f.Name, err)
	}
	total := f.Size
	if total <= 0 && resp.ContentLength >= 0 {
		total = offset + resp.ContentLength
	}
	var w io.Writer = out
	var bar *progressbar.ProgressBar
	if d.progress != nil {
		bar = newBytesBar(d.progress, total, f.Name)
		bar.Set64(offset)
		w = io.MultiWriter(out, bar)
	}
	body := io.Reader(resp.Body)
	if f.Size > 0 {
		body = io.LimitReader(body, f.Size-offset+1) // one extra byte exposes an oversize file
	}
	_, copyErr := io.Copy(w, body)
	syncErr := out.Sync()
	closeErr := out.Close()
	err = errors.Join(copyErr, syncErr, closeErr)
	if bar != nil {
		if err != nil {
			bar.Exit()
			fmt.Fprintln(d.progress)
		} else {
			bar.Finish()
		}
	}
	if err != nil {
		return fmt.Errorf("qm9: download %s: interrupted (the .part is kept for a resume): %w", f.Name, err)
	}
	return nil
}

// verify checks the size and digest of a downloaded file.
func verify(f RemoteFile, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("qm9: download %s: %w", f.Name, err)
	}
	if f.Size > 0 && st.Size() != f.Size {
		return fmt.Errorf("qm9: download %s: size %d bytes, want %d", f.Name, st.Size(), f.Size)
	}
	if f.SHA256 == "" {
		slog.Warn("qm9: no checksum to verify", "file", f.Name)
		return nil
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("qm9: download %s: %w", f.Name, err)
	}
	if !strings.EqualFold(sum, f.SHA256) {
		return fmt.Errorf("qm9: download %s: sha256 mismatch: got %s, want %s", f.Name, sum, f.SHA256)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// contentRangeStart parses the first byte position of "bytes START-END/TOTAL".
func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(start), 10, 64)
	return n, err == nil
}

func newBytesBar(w io.Writer, total int64, name string) *progressbar.ProgressBar {
	if total <= 0 {
		total = -1
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
