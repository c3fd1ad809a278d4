// Package fleet is how Ferry's processes find and call each other when a
// kind runs as several instances. A target names the instances behind it:
// dns:///name:port (every address the name resolves to: a Kubernetes
// headless Service lists its pods), static:///host:port,host:port (a fixed
// list), or host:port. Clients spread calls over the instances round
// robin; Members reaches every instance, for calls that only the instance
// holding a stream can serve.
package fleet

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"

	"github.com/ferry-cdc/ferry/platform/grpcsec"
)

// roundRobin spreads calls over every instance the resolver reports; gRPC's
// default, pick_first, would send all of a client's calls to one.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// Dial returns a client for target's instances, secured as sec says.
func Dial(target string, sec grpcsec.Settings, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds, err := sec.DialOption(target)
	if err != nil {
		return nil, err
	}
	opts = append(opts, creds, grpc.WithResolvers(staticBuilder{}), grpc.WithDefaultServiceConfig(roundRobin))
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err // the caller names the service
	}
	return conn, nil
}

// Instances lists the address of each instance target names, resolved now.
func Instances(ctx context.Context, target string) ([]string, error) {
	if list, ok := strings.CutPrefix(target, staticScheme+":///"); ok {
		return splitList(list), nil
	}
	hostPort := target
	if _, rest, ok := strings.Cut(target, ":///"); ok {
		hostPort = rest
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return nil, fmt.Errorf("target %s: want host:port, dns:///host:port or static:///host:port,...: %w", target, err)
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving the instances of %s: %w", target, err)
	}
	addrs := make([]string, len(ips))
	for i, ip := range ips {
		addrs[i] = net.JoinHostPort(ip, port)
	}
	return addrs, nil
}

// Members keeps one client per instance of a target, for calls every
// instance must hear. Instances come and go (a pod replaced); Conns
// resolves again on each call and drops the clients of departed ones.
type Members struct {
	target string
	sec    grpcsec.Settings
	opts   []grpc.DialOption

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewMembers returns Members of target. The certificate each instance
// shows is checked for target's host name, not for the address DNS gave;
// a static list names each instance itself.
func NewMembers(target string, sec grpcsec.Settings, opts ...grpc.DialOption) *Members {
	if _, static := strings.CutPrefix(target, staticScheme+":///"); sec.ServerName == "" && !static {
		sec.ServerName = grpcsec.HostOf(target)
	}
	return &Members{target: target, sec: sec, opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Conns returns a client for each instance target names now.
func (m *Members) Conns(ctx context.Context) ([]*grpc.ClientConn, error) {
	addrs, err := Instances(ctx, m.target)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	live := map[string]bool{}
	out := make([]*grpc.ClientConn, 0, len(addrs))
	for _, a := range addrs {
		live[a] = true
		c, ok := m.conns[a]
		if !ok {
			if c, err = Dial(a, m.sec, m.opts...); err != nil {
				return nil, err
			}
			m.conns[a] = c
		}
		out = append(out, c)
	}
	for a, c := range m.conns {
		if !live[a] {
			_ = c.Close()
			delete(m.conns, a)
		}
	}
	return out, nil
}

// Close closes every client.
func (m *Members) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, c := range m.conns {
		_ = c.Close()
		delete(m.conns, a)
	}
}

const staticScheme = "static"

// staticBuilder resolves static:///a,b to the addresses a and b.
type staticBuilder struct{}

func (staticBuilder) Scheme() string { return staticScheme }

func (staticBuilder) Build(t resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	var st resolver.State
	for _, a := range splitList(t.Endpoint()) {
		// TLS checks each instance's certificate for its own host.
		st.Addresses = append(st.Addresses, resolver.Address{Addr: a, ServerName: grpcsec.HostOf(a)})
	}
	if len(st.Addresses) == 0 {
		return nil, fmt.Errorf("static target %q lists no address", t.URL.String())
	}
	if err := cc.UpdateState(st); err != nil {
		return nil, err
	}
	return staticResolver{}, nil
}

type staticResolver struct{}

func (staticResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (staticResolver) Close()                                {}

func splitList(list string) []string {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
