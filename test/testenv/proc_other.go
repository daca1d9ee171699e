//go:build !unix

package testenv

import (
	"os"
	"os/exec"
	"time"
)

func setProcessGroup(*exec.Cmd) {}

func stopProcess(pid int, exited <-chan struct{}, _ time.Duration) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
	<-exited
}
