package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreePorts picks n free loopback ports for processes a test starts, held
// open together so that no two are the same. They come from below the
// kernel's ephemeral range: a port picked from it (as ":0" gives) can be
// taken by any outgoing connection between the pick and the process's
// bind, which CI saw ("bind: address already in use" for delivery).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	low := ephemeralLow()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10_000 {
			t.Fatalf("no free loopback port found below %d", low)
		}
		p := 10_000 + rand.IntN(low-10_000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		held = append(held, l)
		ports = append(ports, p)
	}
	return ports
}

// ephemeralLow is the lowest port the kernel hands out on its own
// (net.ipv4.ip_local_port_range; 32768 by default).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 12_000 {
			low = lo
		}
	}
	return low
}
