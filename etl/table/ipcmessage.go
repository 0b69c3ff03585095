package table

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Slots and sizes of the Arrow message tables read by checkBatchMessage (format/Message.fbs).
const (
	headerDictionaryBatch  = 2 // MessageHeader union: DictionaryBatch
	headerRecordBatch      = 3 // MessageHeader union: RecordBatch
	dictionaryBatchData    = 1 // DictionaryBatch.data: RecordBatch
	recordBatchBuffers     = 2 // RecordBatch.buffers: [Buffer]
	recordBatchCompression = 3 // RecordBatch.compression: BodyCompression
	compressionCodec       = 0 // BodyCompression.codec: byte
	bufferStructSize       = 16
	codecLZ4Frame          = 0
	codecZstd              = 1
)

// A compressed buffer of a record batch body starts with its uncompressed length (int64, −1
// when the buffer was stored uncompressed), and arrow-go allocates that length before it
// decompresses: a forged length of a terabyte kills the process (fatal out of memory). The
// length is therefore bounded by the most the codec can expand the buffer's bytes.
const (
	// maxLZ4Expansion: an LZ4 match of 255 more bytes costs one more byte.
	maxLZ4Expansion = 255
	// maxZstdExpansion: a zstd RLE block repeats one byte up to 128 KiB times in 4 bytes.
	maxZstdExpansion = 128 << 10 / 4
	// minExpansionBound is added to the bound so that tiny buffers are never refused.
	minExpansionBound = 64 << 10
)

// checkBatchMessage reads the metadata of the dictionary or record batch message blk of the
// Arrow IPC file r and, when its body is compressed, checks that no buffer claims more
// uncompressed bytes than its compressed bytes can expand to. Other problems of the message
// are left to arrow-go, whose errors and panics the readers report.
func checkBatchMessage(r io.ReaderAt, blk fileBlock) error {
	meta, err := readAt(r, blk.off, blk.meta)
	if err != nil {
		return err
	}
	n, rest, err := messageLength(meta)
	if err != nil {
		return err
	}
	b := fbuf(rest[:n])
	batch, ok, err := recordBatchTable(b)
	if err != nil || !ok {
		return err
	}
	comp, ok, err := b.tableField(batch, recordBatchCompression)
	if err != nil || !ok {
		return wrapIf("body compression", err)
	}
	codec, err := b.byteField(comp, compressionCodec)
	if err != nil {
		return fmt.Errorf("body compression: %w", err)
	}
	bufs, err := b.vectorField(batch, recordBatchBuffers, bufferStructSize)
	if err != nil {
		return fmt.Errorf("buffers: %w", err)
	}
	body := bodyReader{r: r, start: blk.off + blk.meta, size: blk.end - blk.off - blk.meta}
	for j := range bufs.n {
		if err := body.checkBuffer(b, bufs.elem(j), codec); err != nil {
			return fmt.Errorf("buffer %d: %w", j, err)
		}
	}
	return nil
}

// recordBatchTable returns the RecordBatch table of a dictionary or record batch message
// (ok = false for other messages).
func recordBatchTable(b fbuf) (batch fbTable, ok bool, err error) {
	m, err := b.root()
	if err != nil {
		return fbTable{}, false, err
	}
	typ, err := b.byteField(m, messageHeaderType)
	if err != nil {
		return fbTable{}, false, fmt.Errorf("message header type: %w", err)
	}
	if typ != headerRecordBatch && typ != headerDictionaryBatch {
		return fbTable{}, false, nil
	}
	hdr, ok, err := b.tableField(m, messageHeader)
	if err != nil || !ok || typ == headerRecordBatch {
		return hdr, ok, wrapIf("message header", err)
	}
	batch, ok, err = b.tableField(hdr, dictionaryBatchData)
	return batch, ok, wrapIf("dictionary data", err)
}

// bodyReader reads the body of a message: size bytes of r from start on.
type bodyReader struct {
	r           io.ReaderAt
	start, size int64
}

// checkBuffer checks the compressed buffer whose Buffer struct (offset, length) is at pos.
func (body bodyReader) checkBuffer(b fbuf, pos uint64, codec byte) error {
	off := int64(binary.LittleEndian.Uint64(b[pos:]))
	n := int64(binary.LittleEndian.Uint64(b[pos+8:]))
	if n == 0 {
		return nil
	}
	if off < 0 || n < 8 || off > body.size || n > body.size-off {
		return fmt.Errorf("%d bytes at offset %d do not fit the %d-byte body with their 8-byte length", n, off, body.size)
	}
	head, err := readAt(body.r, body.start+off, 8)
	if err != nil {
		return err
	}
	claim := int64(binary.LittleEndian.Uint64(head))
	if claim == -1 { // stored uncompressed
		return nil
	}
	ratio, err := maxExpansion(codec)
	if err != nil {
		return err
	}
	if claim < 0 || claim > minExpansionBound && (claim-minExpansionBound)/ratio > n-8 {
		return fmt.Errorf("uncompressed length %d exceeds what %d compressed bytes can hold", claim, n-8)
	}
	return nil
}

// maxExpansion returns the largest factor by which codec expands its input.
func maxExpansion(codec byte) (int64, error) {
	switch codec {
	case codecLZ4Frame:
		return maxLZ4Expansion, nil
	case codecZstd:
		return maxZstdExpansion, nil
	}
	return 0, fmt.Errorf("unknown compression codec %d", codec)
}
