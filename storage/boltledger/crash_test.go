package boltledger

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyupload/caddyupload/storage"
)

// crashEnv tells a re-executed test binary to act as the crashing writer:
// its value is "<mode>:<path>".
const crashEnv = "BOLTLEDGER_CRASH_CHILD"

// TestCrashLosesNoAcknowledgedWrite kills a writing process with SIGKILL
// and checks that every record whose Create had returned is in the file.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	if v := os.Getenv(crashEnv); v != "" {
		crashChild(v)
		return
	}
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLosesNoAcknowledgedWrite$")
			cmd.Env = append(os.Environ(), crashEnv+"="+mode.name+":"+path)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					cmd.Wait()
				}
			})

			// Kill mid-stream, then keep reading: what the child printed
			// before it died was acknowledged too.
			const killAfter = 300
			var acked []string
			r := bufio.NewReader(out)
			for {
				line, err := r.ReadString('\n')
				if err == io.EOF {
					break // a line without its newline was never complete
				}
				if err != nil {
					t.Fatal(err)
				}
				acked = append(acked, strings.TrimSuffix(line, "\n"))
				if len(acked) == killAfter {
					if err := cmd.Process.Kill(); err != nil {
						t.Fatal(err)
					}
				}
			}
			err = cmd.Wait()
			if len(acked) < killAfter || cmd.ProcessState.ExitCode() != -1 {
				t.Fatalf("child ended (%v) after %d acknowledged writes, not by the kill", err, len(acked))
			}

			l := openTest(t, path, Options{})
			for _, id := range acked {
				rec, err := l.Get(t.Context(), id)
				if err != nil {
					t.Fatalf("acknowledged %s lost: %v", id, err)
				}
				if want := crashRecord(id); rec.Key != want.Key || rec.Filename != want.Filename {
					t.Fatalf("acknowledged %s stored as %+v", id, rec)
				}
			}
			t.Logf("%d acknowledged records survived SIGKILL", len(acked))
		})
	}
}

func crashRecord(id string) *storage.Record {
	r := testRecord(id, "crash/"+id)
	r.Filename = id + ".bin"
	return r
}

// crashChild writes records from several goroutines until it is killed,
// printing each id once its Create has returned.
func crashChild(v string) {
	modeName, path, _ := strings.Cut(v, ":")
	opts := Options{}
	for _, m := range testModes {
		if m.name == modeName {
			opts = m.opts
		}
	}
	l, err := Open(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	deadline := time.Now().Add(time.Minute) // an orphan does not run forever
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				id := fmt.Sprintf("w%d-%06d", w, i)
				if err := l.Create(context.Background(), crashRecord(id)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				// One write per line: a pipe write this small is atomic.
				_, err := fmt.Fprintln(os.Stdout, id)
				mu.Unlock()
				if err != nil {
					os.Exit(2)
				}
			}
		})
	}
	wg.Wait()
	os.Exit(3)
}
