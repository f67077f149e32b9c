package embedded

import "syscall"

// childProcAttr makes the kernel send SIGTERM to the child when Caddy dies,
// and gives it its own process group so that a Ctrl-C aimed at Caddy
// reaches it through Caddy's orderly shutdown rather than directly.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
}
