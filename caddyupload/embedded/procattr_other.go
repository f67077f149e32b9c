//go:build !linux

package embedded

import "syscall"

// childProcAttr is empty where there is no parent-death signal: the child
// still exits when its standard input, a pipe from Caddy, closes.
func childProcAttr() *syscall.SysProcAttr {
	return nil
}
