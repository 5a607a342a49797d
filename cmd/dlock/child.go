package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// child is the command dlock runs under the lock. It runs in a process
// group of its own, so that stopping it on a lost lock stops what it
// started too, and so that a Ctrl-C on the terminal reaches dlock alone,
// which forwards it.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the command has exited
	err  error         // Wait's error, set before done is closed
}

// lookCommand resolves the command before the lock is taken, so that a
// typo fails at once. It returns the exit code to use on failure.
func lookCommand(name string) (string, int, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, 0, nil
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return "", exitNoCmd, fmt.Errorf("command not found: %s", name)
	}
	return "", exitNoRun, fmt.Errorf("cannot run %s: %w", name, err)
}

// startChild starts args with the lock's key and token in its environment.
func startChild(path string, args []string, key string, token uint64) (*child, error) {
	cmd := exec.Command(path, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "DLOCK_KEY="+key, "DLOCK_TOKEN="+strconv.FormatUint(token, 10))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// signal sends sig to the command's process group.
func (c *child) signal(sig syscall.Signal) {
	select {
	case <-c.done:
		return // reaped: its pid may belong to someone else now
	default:
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, sig)
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the command
// to exit. It reports whether SIGKILL was needed.
func (c *child) stop(grace time.Duration) (killed bool) {
	c.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return false
	case <-t.C:
	}
	c.signal(syscall.SIGKILL)
	<-c.done
	return true
}

// exitCode is the command's exit status as a shell reports it: its code,
// or 128+N when signal N killed it.
func (c *child) exitCode() int {
	st := c.cmd.ProcessState
	if st == nil {
		return exitNoRun
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}
