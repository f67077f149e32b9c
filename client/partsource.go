package client

import (
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// partSource gives the body of a part to send. One belongs to one worker,
// which sends one part at a time through it.
type partSource interface {
	Part(off, size int64) (io.Reader, error)
	Close() error
}

// newPartSource reads parts with ReadAt, or, for a regular *os.File on
// Linux, through a descriptor of the worker's own: net/http then hands the
// part to sendfile (it looks for a syscall.Conn under the length limit),
// so the bytes go from the page cache to the socket without a copy
// through user space. sendfile reads at the descriptor's offset, which is
// why each worker needs one of its own.
func newPartSource(body io.ReaderAt) partSource {
	if f, ok := body.(*os.File); ok && runtime.GOOS == "linux" {
		if own := reopen(f); own != nil {
			return &fileSource{orig: f, f: own}
		}
	}
	return readerAtSource{body}
}

type readerAtSource struct{ r io.ReaderAt }

func (s readerAtSource) Part(off, size int64) (io.Reader, error) {
	return io.NewSectionReader(s.r, off, size), nil
}

func (readerAtSource) Close() error { return nil }

// reopen opens f again through /proc/self/fd, which gives a new open file
// description (its own offset) of the same file, even if f was renamed or
// unlinked. It returns nil when that fails or f is not a regular file.
func reopen(f *os.File) *os.File {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var own *os.File
	// Inside Control the descriptor cannot be closed and its number
	// reused for another file.
	err = rc.Control(func(fd uintptr) {
		own, _ = os.Open("/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10))
	})
	if err != nil || own == nil {
		return nil
	}
	a, err1 := f.Stat()
	b, err2 := own.Stat()
	if err1 != nil || err2 != nil || !a.Mode().IsRegular() || !os.SameFile(a, b) {
		own.Close()
		return nil
	}
	return own
}

// fileSource sends parts from a descriptor of its own of the file.
type fileSource struct {
	orig *os.File
	f    *os.File
	last *filePart // the part sent last, until net/http closes it
}

// Part positions the descriptor at off. net/http may still be reading the
// previous part (it closes a request body when it is done with it, after
// Do has returned when storage answered before the body ended): then that
// part keeps the descriptor, and this one gets a new one, so that no two
// requests share an offset.
func (s *fileSource) Part(off, size int64) (io.Reader, error) {
	if s.last != nil && s.last.handOver() {
		if s.f = reopen(s.orig); s.f == nil {
			return nil, errors.New("cannot open the file again")
		}
	}
	if _, err := s.f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	s.last = &filePart{f: s.f, end: off + size}
	return s.last, nil
}

func (s *fileSource) Close() error {
	if s.f == nil || s.last != nil && s.last.handOver() {
		return nil
	}
	return s.f.Close()
}

// filePart reads the file from its offset up to end. It is a syscall.Conn,
// which is what lets net/http's copy to a TCP connection use sendfile;
// sendfile moves the offset without calling Read, so Read takes its
// position from the offset too (net/http reads once more after the
// Content-Length to check that the body ends there). It is an
// io.ReadCloser so that the request does not wrap it in a NopCloser, which
// would hide it from sendfile, and so that its Close tells when net/http
// is done with it.
type filePart struct {
	f   *os.File
	end int64

	mu     sync.Mutex
	closed bool // by net/http
	owns   bool // the descriptor, which Close then closes
}

func (p *filePart) Read(b []byte) (int, error) {
	pos, err := p.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if pos >= p.end {
		return 0, io.EOF
	}
	if rest := p.end - pos; int64(len(b)) > rest {
		b = b[:rest]
	}
	return p.f.Read(b)
}

func (p *filePart) SyscallConn() (syscall.RawConn, error) { return p.f.SyscallConn() }

func (p *filePart) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.owns {
		return p.f.Close()
	}
	return nil
}

// handOver gives the descriptor to the part if net/http has not closed it
// yet, and reports whether it did.
func (p *filePart) handOver() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.owns = true
	return true
}
