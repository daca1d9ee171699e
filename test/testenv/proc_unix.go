//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
	"time"
)

// setProcessGroup makes cmd the leader of a new process group, so stopProcess
// also reaches any children it starts.
func setProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr)
}

// stopProcess sends SIGTERM to the process group of pid, then SIGKILL if
// exited is not closed within grace, and waits for exited.
func stopProcess(pid int, exited <-chan struct{}, grace time.Duration) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
}
