package table

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/enflow/enflow/etl/atomicfile"
)

// BatchRows is the number of rows the streaming writers buffer before they write one Arrow
// record batch (.arrow) or one Parquet row group (.parquet); it is also the default batch
// size of the Scan functions.
const BatchRows = 4096

// minParquetRead is the fewest rows read from a Parquet file at once (then sliced to the
// requested batch): below a few hundred rows arrow-go's per-read cost dominates.
const minParquetRead = 512

// mem is the allocator of every Arrow buffer in this package (a variable so that tests can
// swap in a memory.CheckedAllocator to catch leaks).
var mem memory.Allocator = memory.DefaultAllocator

// Format is a table file format.
type Format int

const (
	// Parquet is Apache Parquet, zstd-compressed, one row group per BatchRows rows, with the
	// Arrow schema stored in the footer (key "ARROW:schema") so types round-trip exactly.
	Parquet Format = iota + 1
	// ArrowIPC is the Arrow IPC *file* format (Feather v2), uncompressed so it can be
	// memory-mapped and read by every Arrow implementation, one record batch per BatchRows rows.
	ArrowIPC
)

func (f Format) String() string {
	switch f {
	case Parquet:
		return "parquet"
	case ArrowIPC:
		return "arrow"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// FormatOf returns the format a writer uses for path, from its extension (case-insensitive):
// .parquet or .pq → Parquet; .arrow, .feather or .ipc → ArrowIPC.
// Readers do not rely on the extension: they recognise the file by its magic bytes.
func FormatOf(path string) (Format, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".parquet", ".pq":
		return Parquet, nil
	case ".arrow", ".feather", ".ipc":
		return ArrowIPC, nil
	default:
		return 0, fmt.Errorf("table: %s: unknown table extension %q (want .parquet or .arrow)", path, ext)
	}
}

// sink writes record batches of one schema to path atomically.
type sink struct {
	path   string
	file   *atomicfile.File
	buf    *bufio.Writer
	pq     *pqarrow.FileWriter
	ipc    *ipc.FileWriter
	closed bool
}

// writerOnly hides the Close method of the buffered file from the Parquet and IPC writers
// (pqarrow closes an io.Closer sink), so that atomicfile can sync and rename it afterwards.
type writerOnly struct{ io.Writer }

func newSink(path string, schema *arrow.Schema) (*sink, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("table: create %s: %w", path, err)
	}
	s := &sink{path: path, file: f, buf: bufio.NewWriterSize(f, 1<<20)}
	w := writerOnly{s.buf}
	switch format {
	case Parquet:
		opts := []parquet.WriterProperty{
			parquet.WithAllocator(mem),
			parquet.WithCompression(compress.Codecs.Zstd),
			parquet.WithMaxRowGroupLength(BatchRows),
			parquet.WithCreatedBy("enflow (github.com/apache/arrow-go/v18)"),
			// Dictionary encoding pays for repetitive strings and small integers (split,
			// system, z, n_atoms); on coordinates and charges it costs 3× the write time
			// and makes files larger.
			parquet.WithDictionaryDefault(false),
		}
		for _, path := range dictionaryColumns(schema) {
			opts = append(opts, parquet.WithDictionaryFor(path, true))
		}
		props := parquet.NewWriterProperties(opts...)
		arrowProps := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(mem))
		s.pq, err = pqarrow.NewFileWriter(schema, w, props, arrowProps)
	case ArrowIPC:
		s.ipc, err = ipc.NewFileWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	}
	if err != nil {
		f.Abort()
		return nil, fmt.Errorf("table: create %s: %w", path, err)
	}
	return s, nil
}

// dictionaryColumns returns the Parquet leaf paths of the top-level string and ≤ 32-bit
// integer columns and of lists of such integers.
func dictionaryColumns(schema *arrow.Schema) []string {
	small := func(dt arrow.DataType) bool {
		switch dt.ID() {
		case arrow.INT8, arrow.INT16, arrow.INT32, arrow.UINT8, arrow.UINT16, arrow.UINT32:
			return true
		}
		return false
	}
	var paths []string
	for _, f := range schema.Fields() {
		switch {
		case f.Type.ID() == arrow.STRING || small(f.Type):
			paths = append(paths, f.Name)
		case f.Type.ID() == arrow.LIST && small(f.Type.(*arrow.ListType).Elem()):
			paths = append(paths, f.Name+".list.element")
		}
	}
	return paths
}

func (s *sink) write(rec arrow.RecordBatch) error {
	var err error
	if s.pq != nil {
		err = s.pq.Write(rec)
	} else {
		err = s.ipc.Write(rec)
	}
	if err != nil {
		return fmt.Errorf("table: write %s: %w", s.path, err)
	}
	return nil
}

// commit finishes the file (footer) and renames it onto the target.
func (s *sink) commit() error {
	if s.closed {
		return fmt.Errorf("table: %s: already committed or aborted", s.path)
	}
	s.closed = true
	var err error
	if s.pq != nil {
		err = s.pq.Close()
	} else {
		err = s.ipc.Close()
	}
	if err == nil {
		err = s.buf.Flush()
	}
	if err != nil {
		s.file.Abort()
		return fmt.Errorf("table: finish %s: %w", s.path, err)
	}
	if err := s.file.Commit(); err != nil {
		return fmt.Errorf("table: %w", err)
	}
	return nil
}

// abort discards everything; the target is left as it was.
func (s *sink) abort() {
	if s.closed {
		return
	}
	s.closed = true
	s.file.Abort()
}

// batchWriter buffers rows in a RecordBuilder and hands full batches to a sink. It is the
// shared core of MoleculeWriter, ConfigWriter and RowWriter.
type batchWriter struct {
	path   string
	schema *arrow.Schema
	b      *array.RecordBuilder
	sink   *sink
	rows   int   // rows in the builder
	total  int64 // rows accepted so far
	err    error // sticky: set by a failed flush, Commit or Abort
}

func newBatchWriter(path string, schema *arrow.Schema) (*batchWriter, error) {
	s, err := newSink(path, schema)
	if err != nil {
		return nil, err
	}
	b := array.NewRecordBuilder(mem, schema)
	b.Reserve(BatchRows)
	return &batchWriter{path: path, schema: schema, b: b, sink: s}, nil
}

// usable reports the sticky error, if any.
func (w *batchWriter) usable() error {
	if w == nil || w.sink == nil {
		return errors.New("table: writer is nil")
	}
	return w.err
}

// rowDone counts one appended row and flushes a full batch.
func (w *batchWriter) rowDone() error {
	w.rows++
	w.total++
	if w.rows >= BatchRows {
		return w.flush()
	}
	return nil
}

func (w *batchWriter) flush() error {
	if w.rows == 0 {
		return nil
	}
	rec := w.b.NewRecordBatch()
	defer rec.Release()
	w.rows = 0
	if err := w.sink.write(rec); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *batchWriter) commit() error {
	if err := w.usable(); err != nil {
		w.abort()
		return err
	}
	err := w.flush()
	if err == nil {
		err = w.sink.commit()
	}
	w.release()
	if err != nil {
		w.sink.abort()
		w.err = err
		return err
	}
	w.err = fmt.Errorf("table: %s: writer already committed", w.path)
	return nil
}

func (w *batchWriter) abort() {
	if w == nil || w.sink == nil {
		return
	}
	w.sink.abort()
	w.release()
	if w.err == nil {
		w.err = fmt.Errorf("table: %s: writer aborted", w.path)
	}
}

func (w *batchWriter) release() {
	if w.b != nil {
		w.b.Release()
		w.b = nil
	}
}

// WriteRecords writes one table to path (.parquet or .arrow, see FormatOf) atomically. build
// runs once and appends every row to b (b.Field(i) is the builder of schema field i, e.g.
// b.Field(0).(*array.StringBuilder)); the result is written in record batches / row groups of
// at most BatchRows rows. Put the table's key-value metadata (e.g. "enflow.schema") in the
// schema; column names must be non-empty and distinct up to case (SQL resolves names
// case-insensitively). If build returns an error nothing is written and that error is
// returned unchanged.
//
// It suits small tables whose rows fit in memory (metrics, summaries, samples) and any Arrow
// type; for flat string/int/float/bool columns RowWriter is simpler, and it streams.
func WriteRecords(path string, schema *arrow.Schema, build func(b *array.RecordBuilder) error) error {
	if schema == nil {
		return fmt.Errorf("table: write %s: nil schema", path)
	}
	if err := checkColumnNames(schema); err != nil {
		return fmt.Errorf("table: write %s: %w", path, err)
	}
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	if err := build(b); err != nil {
		return err
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	s, err := newSink(path, schema)
	if err != nil {
		return err
	}
	defer s.abort()
	for off := int64(0); off < rec.NumRows(); off += BatchRows {
		part := rec.NewSlice(off, min(off+BatchRows, rec.NumRows()))
		err := s.write(part)
		part.Release()
		if err != nil {
			return err
		}
	}
	return s.commit()
}

// checkColumnNames rejects empty names and names equal up to case: DuckDB (and SQL in
// general) resolves identifiers case-insensitively, so "C" and "c" would be ambiguous.
func checkColumnNames(schema *arrow.Schema) error {
	seen := make(map[string]string, schema.NumFields())
	for _, f := range schema.Fields() {
		if f.Name == "" {
			return errors.New("empty column name")
		}
		key := strings.ToLower(f.Name)
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("columns %q and %q differ only in case (ambiguous in DuckDB/SQL)", prev, f.Name)
		}
		seen[key] = f.Name
	}
	return nil
}

// source reads record batches from a Parquet or Arrow IPC file, one bounded batch at a time.
type source struct {
	path   string
	format Format
	schema *arrow.Schema
	batch  int

	cur arrow.RecordBatch // record batch being sliced into batches
	off int64             // rows of cur already returned

	f *os.File // the open file (owned by pqf once that exists)

	// Arrow IPC
	ipcr    *ipc.FileReader
	batches []fileBlock // record batch blocks of the footer, checked by checkFooter
	next    int         // next record batch index

	// Parquet
	pqf *file.Reader
	rr  pqarrow.RecordReader
}

var (
	parquetMagic = []byte("PAR1")
	arrowMagic   = []byte("ARROW1")
)

// sniff recognises the format of path from its first bytes.
func sniff(path string) (Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("table: %w", err)
	}
	defer f.Close()
	head := make([]byte, 8)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("table: read %s: %w", path, err)
	}
	head = head[:n]
	switch {
	case len(head) >= 4 && string(head[:4]) == string(parquetMagic):
		return Parquet, nil
	case len(head) >= 6 && string(head[:6]) == string(arrowMagic):
		return ArrowIPC, nil
	case len(head) >= 4 && head[0] == 0xff && head[1] == 0xff && head[2] == 0xff && head[3] == 0xff:
		return 0, fmt.Errorf("table: %s: Arrow IPC stream format is not supported (write the IPC file format, e.g. pyarrow.feather / ipc.new_file)", path)
	}
	if n == 0 {
		return 0, fmt.Errorf("table: %s: empty file, not a Parquet or Arrow IPC file", path)
	}
	return 0, fmt.Errorf("table: %s: not a Parquet or Arrow IPC file (starts with %q)", path, head)
}

// openSource opens path; batch bounds the rows of each batch returned by next (≤ 0: BatchRows).
func openSource(path string, batch int) (src *source, err error) {
	if batch <= 0 {
		batch = BatchRows
	}
	format, err := sniff(path)
	if err != nil {
		return nil, err
	}
	s := &source{path: path, format: format, batch: batch}
	defer func() { // runs after catch has turned a panic into err
		if err != nil {
			s.close()
		}
	}()
	defer catch(path, &err)
	if s.f, err = os.Open(path); err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	// arrow-go trusts the footer: validate it first (see checkFooter).
	if s.batches, err = checkFooter(path, s.f, format); err != nil {
		return nil, err
	}
	switch format {
	case ArrowIPC:
		if s.ipcr, err = ipc.NewFileReader(s.f, ipc.WithAllocator(mem)); err != nil {
			return nil, fmt.Errorf("table: open %s as Arrow IPC file: %w", path, err)
		}
		s.schema = s.ipcr.Schema()
	case Parquet:
		// Buffered streams read column chunks page by page instead of whole, so memory
		// stays bounded by the batch rather than by the row group.
		rprops := parquet.NewReaderProperties(mem)
		rprops.BufferedStreamEnabled = true
		if err := limitPageSizes(rprops, s.f); err != nil {
			return nil, fmt.Errorf("table: %w", err)
		}
		if s.pqf, err = file.NewParquetReader(s.f, file.WithReadProps(rprops)); err != nil {
			return nil, fmt.Errorf("table: open %s as Parquet: %w", path, err)
		}
		readRows := int64(max(batch, minParquetRead))
		fr, err := pqarrow.NewFileReader(s.pqf, pqarrow.ArrowReadProperties{BatchSize: readRows}, mem)
		if err != nil {
			return nil, fmt.Errorf("table: open %s as Parquet: %w", path, err)
		}
		if s.schema, err = fr.Schema(); err != nil {
			return nil, fmt.Errorf("table: %s: Parquet schema: %w", path, err)
		}
		if s.pqf.NumRowGroups() > 0 {
			if s.rr, err = fr.GetRecordReader(context.Background(), nil, nil); err != nil {
				return nil, fmt.Errorf("table: %s: Parquet reader: %w", path, err)
			}
		}
	}
	return s, nil
}

// Bounds of the uncompressed size of a Parquet page: arrow-go allocates the size a page
// header declares before it decompresses the page (by default up to 256 MiB, even in a file
// of a few kilobytes). Writers cut pages at about 1 MiB, so the floor is generous; a larger
// page must compress less than maxPageExpansion-fold relative to the whole file.
const (
	minPageSizeLimit = 16 << 20
	maxPageExpansion = 1024
)

// limitPageSizes bounds the page sizes arrow-go accepts by the size of the file f: a
// compressed page lies inside the file.
func limitPageSizes(props *parquet.ReaderProperties, f *os.File) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	props.MaxCompressedPageSize = max(1, min(props.GetMaxCompressedPageSize(), size))
	bound := minPageSizeLimit + maxPageExpansion*min(size, math.MaxInt64/(2*maxPageExpansion))
	props.MaxUncompressedPageSize = min(props.GetMaxUncompressedPageSize(), bound)
	return nil
}

// nextBatch returns the next batch of at most s.batch rows (the caller releases it), or io.EOF.
// It slices the record batches read from the file (Arrow IPC: as stored; Parquet: of
// max(batch, minParquetRead) rows), so tiny batches do not pay arrow-go's per-read overhead.
func (s *source) nextBatch() (rec arrow.RecordBatch, err error) {
	defer catch(s.path, &err)
	for s.cur == nil || s.off >= s.cur.NumRows() {
		if s.cur != nil {
			s.cur.Release()
			s.cur = nil
		}
		if s.cur, err = s.read(); err != nil {
			return nil, err
		}
		s.off = 0
	}
	end := min(s.off+int64(s.batch), s.cur.NumRows())
	rec = s.cur.NewSlice(s.off, end)
	s.off = end
	return rec, nil
}

// read returns the next record batch of the file (owned by the caller), or io.EOF.
func (s *source) read() (arrow.RecordBatch, error) {
	if s.format == Parquet {
		if s.rr == nil {
			return nil, io.EOF
		}
		if s.rr.Next() {
			rec := s.rr.RecordBatch()
			rec.Retain()
			return rec, nil
		}
		if err := s.rr.Err(); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("table: read %s: %w", s.path, err)
		}
		return nil, io.EOF
	}
	if s.next >= s.ipcr.NumRecords() {
		return nil, io.EOF
	}
	if s.next >= len(s.batches) { // cannot happen: arrow-go read the footer checkFooter walked
		return nil, fmt.Errorf("table: read %s: record batch %d is not in the footer", s.path, s.next)
	}
	if err := checkBatchMessage(s.f, s.batches[s.next]); err != nil {
		return nil, fmt.Errorf("table: read %s: record batch %d: %w", s.path, s.next, err)
	}
	rec, err := s.ipcr.RecordBatchAt(s.next)
	if err != nil {
		return nil, fmt.Errorf("table: read %s: record batch %d: %w", s.path, s.next, err)
	}
	s.next++
	return rec, nil
}

func (s *source) close() {
	if s.cur != nil {
		s.cur.Release()
		s.cur = nil
	}
	if s.rr != nil {
		s.rr.Release()
		s.rr = nil
	}
	if s.pqf != nil {
		s.pqf.Close() // closes s.f
		s.pqf = nil
		s.f = nil
	}
	if s.ipcr != nil {
		s.ipcr.Close()
		s.ipcr = nil
	}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// catch turns a panic inside arrow-go (possible on a corrupt file) into an error naming path.
func catch(path string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("table: read %s: malformed file: %v", path, r)
	}
}

// ScanRecords streams the record batches of a Parquet or Arrow IPC file (recognised by its
// magic bytes, whatever the extension) to fn, each of at most batch rows (batch ≤ 0 means
// BatchRows). A batch is only valid during the call: Retain it to keep it. Memory stays
// bounded by about one batch (Parquet pages are streamed, Arrow IPC record batches are read
// one at a time). An error from
// fn stops the scan and is returned as is.
func ScanRecords(path string, batch int, fn func(rec arrow.RecordBatch) error) error {
	s, err := openSource(path, batch)
	if err != nil {
		return err
	}
	defer s.close()
	return s.each(fn)
}

func (s *source) each(fn func(rec arrow.RecordBatch) error) error {
	for {
		rec, err := s.nextBatch()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		err = fn(rec)
		rec.Release()
		if err != nil {
			return err
		}
	}
}

// Schema returns the Arrow schema (with its key-value metadata) of a Parquet or Arrow IPC file.
func Schema(path string) (*arrow.Schema, error) {
	s, err := openSource(path, 1)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.schema, nil
}
