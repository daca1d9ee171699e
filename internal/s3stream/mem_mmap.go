//go:build linux || darwin || freebsd

package s3stream

import "syscall"

// allocBuffer returns n bytes of anonymous memory outside the Go heap, or
// nil if the system has none to give. Part buffers live there so that they
// do not count towards the garbage collector's heap goal: on the heap, a
// full buffer budget lets the heap (and RSS) grow to about twice the budget
// before a collection (GOGC=100 measures garbage against live memory).
func allocBuffer(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	return b
}

// freeBuffer returns a buffer from allocBuffer (whole: length = capacity)
// to the system. Nothing may use it afterwards; the readers handed to the
// S3 client are detached before their buffer is put back (see guardedReader
// and fillBody.detach).
func freeBuffer(b []byte) {
	_ = syscall.Munmap(b)
}
