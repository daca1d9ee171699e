//go:build !unix

package s3backend

import "syscall"

// setLingerZero does nothing here: S3 connections close as the system
// closes them (see resetOnClose).
func setLingerZero(syscall.RawConn) error { return nil }
