package table

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// The readers hand files to arrow-go only after checkFooter has validated the footer
// (the Arrow IPC Footer flatbuffer, the Parquet Thrift FileMetaData and the Arrow schema
// that pqarrow stores in it): arrow-go v18.8.0 trusts the lengths and offsets in these
// structures, so a forged footer of a few kilobytes could make it allocate gigabytes or
// recurse until the goroutine stack overflows, a fatal error that no recover catches.
// The checks bound what arrow-go will build by what the footer's bytes can hold:
//   - magic bytes at both ends, footer length within the file;
//   - every offset, vector, list and string lies inside the footer;
//   - fields nest at most maxNesting deep;
//   - the schema expands to no more fields, key-value pairs and text than its bytes hold
//     (a shared or cyclic field tree is rejected);
//   - Arrow IPC record batch and dictionary blocks lie in the data part and do not overlap;
//     the uncompressed lengths of compressed buffers are bounded by the codec's maximum
//     expansion (checkBatchMessage, also run on each record batch before it is read);
//   - Parquet page sizes are bounded by the file size (limitPageSizes).

// maxNesting is the deepest nesting of fields (Arrow) or schema elements (Parquet) and of
// Thrift structures accepted in a footer. enflow's deepest column, list<fixed_size_list>,
// nests 3 deep in Arrow and 5 in Parquet.
const maxNesting = 64

// checkFooter validates the footer of f (the file at path, in format) before arrow-go
// reads it, and the dictionary messages that arrow-go reads on opening an Arrow IPC file;
// it returns the record batch blocks of an Arrow IPC file (see checkBatchMessage). The error
// names the file.
func checkFooter(path string, f *os.File, format Format) ([]fileBlock, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	if format == Parquet {
		if err := checkParquetFile(f, info.Size()); err != nil {
			return nil, fmt.Errorf("table: %s: Parquet footer: %w", path, err)
		}
		return nil, nil
	}
	blocks, err := checkArrowFile(f, info.Size())
	if err != nil {
		return nil, fmt.Errorf("table: %s: Arrow IPC footer: %w", path, err)
	}
	for i, blk := range blocks.dicts {
		if err := checkBatchMessage(f, blk); err != nil {
			return nil, fmt.Errorf("table: %s: Arrow IPC dictionary %d: %w", path, i, err)
		}
	}
	return blocks.batches, nil
}

// readAt returns the n bytes of r at off.
func readAt(r io.ReaderAt, off, n int64) ([]byte, error) {
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, off)
	if got == len(buf) {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("read %d bytes at offset %d: %w", n, off, err)
}
