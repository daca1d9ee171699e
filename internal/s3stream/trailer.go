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

// crcTrailerBody is a streamed part's request body in S3's aws-chunked
// encoding, one chunk with a CRC32 trailer that S3 checks against the bytes
// it received:
//
//	<payload size in hex>\r\n<payload>\r\n0\r\nx-amz-checksum-crc32:<base64>\r\n\r\n
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
	head  []byte // the chunk header, not yet passed on
	tail  []byte // the framing after the payload, once it is known
	ended bool   // the payload was all passed on and tail is set
}

func newCRCTrailerBody(b *fillBody) *crcTrailerBody {
	return &crcTrailerBody{b: b, head: []byte(strconv.FormatInt(int64(len(b.buf)), 16) + "\r\n")}
}

// Len is the size of the encoded body.
func (c *crcTrailerBody) Len() int64 {
	n := int64(len(c.b.buf))
	return int64(len(strconv.FormatInt(n, 16))) + 2 + n + int64(len(c.trailer(0)))
}

// trailer is the framing after a payload whose CRC32 is sum.
func (c *crcTrailerBody) trailer(sum uint32) []byte {
	var raw [4]byte
	binary.BigEndian.PutUint32(raw[:], sum)
	return []byte("\r\n0\r\n" + crcTrailerName + ":" + base64.StdEncoding.EncodeToString(raw[:]) + "\r\n\r\n")
}

func (c *crcTrailerBody) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	if !c.ended {
		n, err := c.b.Read(p)
		c.crc = crc32.Update(c.crc, crc32.IEEETable, p[:n])
		switch {
		case errors.Is(err, io.EOF):
			c.ended, c.tail = true, c.trailer(c.crc)
		case err != nil:
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
	if len(c.tail) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.tail)
	c.tail = c.tail[n:]
	return n, nil
}

var scratch = sync.Pool{New: func() any { b := make([]byte, tlsbatch.ChunkSize); return &b }}

// WriteTo writes the body to w. To a tlsbatch.Sealer the payload goes
// without a copy: each run of the part buffer is encrypted where it is and
// given back before it is sent. Any other writer gets a copy, so that the
// buffer is not on loan while a write blocks.
func (c *crcTrailerBody) WriteTo(w io.Writer) (int64, error) {
	s, sealing := w.(tlsbatch.Sealer)
	var total int64
	if len(c.head) > 0 {
		var err error
		if sealing {
			err = s.Seal(c.head) // sent with the first bytes of the payload
		} else {
			_, err = w.Write(c.head)
		}
		if err != nil {
			return 0, err
		}
		total += int64(len(c.head))
		c.head = nil
	}
	for !c.ended {
		p, err := c.b.lend(tlsbatch.ChunkSize)
		if errors.Is(err, io.EOF) {
			c.ended, c.tail = true, c.trailer(c.crc)
			break
		}
		if err != nil {
			return total, err
		}
		c.crc = crc32.Update(c.crc, crc32.IEEETable, p)
		if sealing {
			err = s.Seal(p)
			c.b.giveBack()
			if err == nil {
				err = s.Send()
			}
		} else {
			bp := scratch.Get().(*[]byte)
			n := copy(*bp, p)
			c.b.giveBack()
			_, err = w.Write((*bp)[:n])
			scratch.Put(bp)
		}
		if err != nil {
			return total, err
		}
		total += int64(len(p))
	}
	if len(c.tail) > 0 {
		if _, err := w.Write(c.tail); err != nil {
			return total, err
		}
		total += int64(len(c.tail))
		c.tail = nil
	}
	return total, nil
}

// withCRCTrailer is the call option of a streamed UploadPart whose body is
// a fillBody: the SDK's own checksum is off for the call, and
// crcTrailerMiddleware sends the body as a crcTrailerBody with the headers
// and signature the SDK would give its own. Where the operator turned
// request checksums off (AWS_REQUEST_CHECKSUM_CALCULATION=when_required, for
// S3-compatible servers that refuse them), the part goes without one, as
// the SDK would send it.
func withCRCTrailer(o *s3.Options) {
	if o.RequestChecksumCalculation == aws.RequestChecksumCalculationWhenRequired {
		return
	}
	o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		// Before the payload hash middlewares, which leave a hash that is set.
		return st.Finalize.Insert(crcTrailerMiddleware{}, "ResolveEndpointV2", middleware.After)
	})
}

type crcTrailerMiddleware struct{}

func (crcTrailerMiddleware) ID() string { return "TusgateCRCTrailer" }

func (crcTrailerMiddleware) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("s3stream: unexpected request type %T", in.Request)
	}
	b, ok := req.GetStream().(*fillBody)
	if !ok || !req.IsHTTPS() {
		// Only Stream (HTTPS) sends a fillBody, and the trailer needs TLS.
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("s3stream: a streamed part needs HTTPS and a part body, got %T", req.GetStream())
	}
	body := newCRCTrailerBody(b)
	req.Header.Add("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Trailer", crcTrailerName)
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(b.buf)))
	req, err := req.SetStream(body)
	if err != nil {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("s3stream: setting the part body: %w", err)
	}
	req.ContentLength = body.Len()
	in.Request = req
	return next.HandleFinalize(v4.SetPayloadHash(ctx, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), in)
}
