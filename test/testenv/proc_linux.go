package testenv

import "syscall"

// setParentDeathSignal makes the kernel kill the child if the test binary dies
// without running its cleanups (e.g. on a test timeout panic).
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
