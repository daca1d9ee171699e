package s3stream

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tusgate/tusgate/internal/tlsbatch"
)

// crcTrailerName is the trailer that carries a streamed part's checksum,
// the same CRC32 the AWS SDK sends by default.
const crcTrailerName = "x-amz-checksum-crc32"

// chunkLen is the most payload bytes in one aws-chunked chunk. AWS S3
// takes chunks from 8 KiB up; MinIO refuses chunks over 16 MiB ("chunk too
// big"), which a part sent as one chunk (as the AWS SDK sends a body of
// known length: stock tusd's 50 MiB parts fail there) exceeds with
// --s3-part-size over 16MiB, or with the larger parts of uploads over
// 160 GB. A multiple of tlsbatch.ChunkSize, so that chunk boundaries cut
// few runs of the part buffer.
const chunkLen = 1 << 20

// crcTrailerBody is a streamed part's request body in S3's aws-chunked
// encoding, in chunks of chunkLen with a CRC32 trailer that S3 checks
// against the bytes it received:
//
//	<size in hex>\r\n<payload>\r\n ... <size in hex>\r\n<payload>\r\n0\r\nx-amz-checksum-crc32:<base64>\r\n\r\n
//
// This is what the AWS SDK sends for an unseekable body over HTTPS. The
// SDK's encoder reads the payload through three readers into the HTTP
// client's buffer, which copies every byte once more; crcTrailerBody also
// implements io.WriterTo, through which a tlsbatch connection encrypts the
// part buffer's bytes where they are (that copy took 5 % of the gateway's
// CPU in profiles, docs/benchmarks.md).
type crcTrailerBody struct {
	b     *fillBody
	crc   uint32
	n     int    // payload bytes
	pos   int    // payload bytes passed on
	left  int    // payload bytes left in the current chunk
	frame []byte // framing to pass on before more payload
	ended bool   // frame is the end of the body
}

func newCRCTrailerBody(b *fillBody) *crcTrailerBody {
	c := &crcTrailerBody{b: b, n: b.size}
	c.nextFrame()
	return c
}

// Len is the size of the encoded body.
func (c *crcTrailerBody) Len() int64 {
	total := int64(c.n + len(c.trailer(0)))
	for off := 0; off < c.n; off += chunkLen {
		total += int64(len(strconv.FormatInt(int64(min(chunkLen, c.n-off)), 16))) + 4 // size, CRLF, payload, CRLF
	}
	return total
}

// nextFrame sets frame to what follows the current chunk's payload: the
// next chunk's header, or the end with the trailer once the payload was
// all passed on.
func (c *crcTrailerBody) nextFrame() {
	var f []byte
	if c.pos > 0 {
		f = append(f, "\r\n"...)
	}
	if c.pos < c.n {
		c.left = min(chunkLen, c.n-c.pos)
		f = strconv.AppendInt(f, int64(c.left), 16)
		f = append(f, "\r\n"...)
	} else {
		f = append(f, c.trailer(c.crc)...)
		c.ended = true
	}
	c.frame = f
}

// trailer is the end of a body whose payload's CRC32 is sum: the last,
// empty chunk and the trailer.
func (c *crcTrailerBody) trailer(sum uint32) []byte {
	return []byte("0\r\n" + crcTrailerName + ":" + crc32Value(sum) + "\r\n\r\n")
}

// crc32Value is how S3 writes a CRC32 checksum: its four bytes, big-endian,
// in base64.
func crc32Value(sum uint32) string {
	var raw [4]byte
	binary.BigEndian.PutUint32(raw[:], sum)
	return base64.StdEncoding.EncodeToString(raw[:])
}

// passed records that p, the next payload bytes, were passed on.
func (c *crcTrailerBody) passed(p []byte) {
	c.crc = crc32.Update(c.crc, crc32.IEEETable, p)
	c.pos += len(p)
	c.left -= len(p)
	if c.left == 0 {
		c.nextFrame()
	}
}

func (c *crcTrailerBody) Read(p []byte) (int, error) {
	if len(c.frame) > 0 {
		n := copy(p, c.frame)
		c.frame = c.frame[n:]
		return n, nil
	}
	if c.ended {
		return 0, io.EOF
	}
	n, err := c.b.Read(p[:min(len(p), c.left)])
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the part buffer ended before its length
	}
	c.passed(p[:n])
	return n, err
}

var scratch = sync.Pool{New: func() any { b := make([]byte, tlsbatch.ChunkSize); return &b }}

// WriteTo writes the body to w. To a tlsbatch.Sealer the payload goes
// without a copy: each run of the part buffer is encrypted where it is and
// given back before it is sent. Any other writer gets a copy, so that the
// buffer is not on loan while a write blocks.
func (c *crcTrailerBody) WriteTo(w io.Writer) (int64, error) {
	s, sealing := w.(tlsbatch.Sealer)
	var total int64
	for {
		if len(c.frame) > 0 {
			var err error
			if sealing && !c.ended {
				err = s.Seal(c.frame) // sent with the payload after it
			} else {
				_, err = w.Write(c.frame)
			}
			if err != nil {
				return total, err
			}
			total += int64(len(c.frame))
			c.frame = nil
		}
		if c.ended {
			return total, nil
		}
		p, err := c.b.lend(min(tlsbatch.ChunkSize, c.left))
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the part buffer ended before its length
		}
		if err != nil {
			return total, err
		}
		n := len(p)
		if sealing {
			c.passed(p)
			err = s.Seal(p)
			c.b.giveBack()
			if err == nil {
				err = s.Send()
			}
		} else {
			bp := scratch.Get().(*[]byte)
			q := (*bp)[:copy(*bp, p)]
			c.b.giveBack()
			c.passed(q)
			_, err = w.Write(q)
			scratch.Put(bp)
		}
		if err != nil {
			return total, err
		}
		total += int64(n)
	}
}

// withCRCTrailer is the call option of a streamed request (UploadPart or
// PutObject) whose body is a fillBody: the SDK's own checksum is off for
// the call, and crcTrailerMiddleware sends the body as a crcTrailerBody
// with the headers and signature the SDK would give its own. Where the
// operator turned request checksums off (AWS_REQUEST_CHECKSUM_CALCULATION=
// when_required, for S3-compatible servers that refuse them), the body goes
// as it is, with no checksum and an unsigned payload, as the SDK sends an
// unseekable body over HTTPS; over plain HTTP the SDK would try to hash
// it and fail.
func withCRCTrailer(o *s3.Options) {
	plain := o.RequestChecksumCalculation == aws.RequestChecksumCalculationWhenRequired
	o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		// Before the payload hash middlewares, which leave a hash that is set.
		return st.Finalize.Insert(crcTrailerMiddleware{plain: plain}, "ResolveEndpointV2", middleware.After)
	})
}

type crcTrailerMiddleware struct {
	plain bool // no trailer: the body as it is, unsigned
}

func (crcTrailerMiddleware) ID() string { return "TusgateCRCTrailer" }

func (m crcTrailerMiddleware) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("s3stream: unexpected request type %T", in.Request)
	}
	b, ok := req.GetStream().(*fillBody)
	if !ok {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("s3stream: a streamed request needs a fillBody, got %T", req.GetStream())
	}
	if m.plain {
		return next.HandleFinalize(v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD"), in)
	}
	body := newCRCTrailerBody(b)
	req.Header.Add("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Trailer", crcTrailerName)
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(b.size))
	req, err := req.SetStream(body)
	if err != nil {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("s3stream: setting the part body: %w", err)
	}
	req.ContentLength = body.Len()
	in.Request = req
	return next.HandleFinalize(v4.SetPayloadHash(ctx, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), in)
}
