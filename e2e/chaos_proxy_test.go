package e2e

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards loopback connections to a target, so that a chaos
// round can cut the network between Ferry and PostgreSQL or Kafka. A cut
// resets every open connection and resets each new one at once (a
// firewall's REJECT, not a silent drop) until the proxy is restored. The
// listener stays open throughout, so its port is never given to another
// process.
type tcpProxy struct {
	l     net.Listener
	mu    sync.Mutex
	dest  string
	down  bool
	conns map[net.Conn]struct{}
}

// startProxy listens on a free loopback port; dest may be set later
// (setDest), as for a broker that must advertise the proxy's port first.
func startProxy(t *testing.T, dest string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("chaos proxy: %v", err)
	}
	p := &tcpProxy{l: l, dest: dest, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() { defer close(done); p.accept() }()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		p.cut()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.l.Addr().String() }

func (p *tcpProxy) port() int {
	_, port, _ := net.SplitHostPort(p.addr())
	n, _ := strconv.Atoi(port)
	return n
}

func (p *tcpProxy) setDest(dest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dest = dest
}

func (p *tcpProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *tcpProxy) serve(c net.Conn) {
	p.mu.Lock()
	down, dest := p.down, p.dest
	p.mu.Unlock()
	if down || dest == "" {
		reset(c)
		return
	}
	s, err := net.DialTimeout("tcp", dest, 5*time.Second)
	if err != nil {
		reset(c)
		return
	}
	if !p.track(c, s) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(s, c) }()
	go func() { defer wg.Done(); pipe(c, s) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// track registers a forwarded pair, unless a cut came in between.
func (p *tcpProxy) track(c, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		reset(c)
		reset(s)
		return false
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	return true
}

// pipe copies until either side ends, then ends both.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		reset(dst)
		reset(src)
		return
	}
	_ = dst.Close()
	_ = src.Close()
}

// cut resets every open connection and refuses new ones until restore.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// reset closes with SO_LINGER 0, so the peer gets an RST at once.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
