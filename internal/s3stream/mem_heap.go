//go:build !(linux || darwin || freebsd)

package s3stream

// allocBuffer returns n bytes from the Go heap (see mem_mmap.go for the
// systems where buffers live outside it).
func allocBuffer(n int) []byte { return make([]byte, n) }

// freeBuffer leaves the buffer to the garbage collector.
func freeBuffer([]byte) {}
