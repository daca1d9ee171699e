//go:build unix

package s3backend

import "syscall"

// setLingerZero sets SO_LINGER with a zero timeout on c: closing it sends a
// TCP reset (see resetOnClose).
func setLingerZero(c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	})
	if err != nil {
		return err
	}
	return serr
}
