package secret

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// ServerOptions checks every SecretRef in every request a service receives
// against the policy, before any handler sees it: the one place where
// specs enter a service, so no call site can forget.
func (p Policy) ServerOptions() []grpc.ServerOption {
	w := newWalker(p)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := w.check(req); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &checkedStream{ServerStream: ss, w: w})
		}),
	}
}

type checkedStream struct {
	grpc.ServerStream
	w *walker
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.w.check(m)
}

var secretRefName = (&taskv1.SecretRef{}).ProtoReflect().Descriptor().FullName()

// walker finds SecretRefs in messages. Which message types can hold one at
// all is worked out once per type, so a stream of change batches costs a
// map lookup per message, not a walk of its rows.
type walker struct {
	p     Policy
	mu    sync.Mutex
	reach map[protoreflect.FullName]bool
}

func newWalker(p Policy) *walker {
	return &walker{p: p, reach: map[protoreflect.FullName]bool{}}
}

func (w *walker) check(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	if err := w.walk(pm.ProtoReflect(), ""); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

func (w *walker) walk(m protoreflect.Message, path string) error {
	d := m.Descriptor()
	if d.FullName() == secretRefName {
		return w.p.Allow(path, m.Interface().(*taskv1.SecretRef))
	}
	if !w.canReach(d) {
		return nil
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || !w.canReach(fd.Message()) {
			return true
		}
		err = w.walkField(fd, v, join(path, string(fd.Name())))
		return err == nil
	})
	return err
}

func (w *walker) walkField(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch {
	case fd.IsList():
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			if err := w.walk(l.Get(i).Message(), path); err != nil {
				return err
			}
		}
	case fd.IsMap():
		var err error
		v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
			err = w.walk(mv.Message(), path)
			return err == nil
		})
		return err
	default:
		return w.walk(v.Message(), path)
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// canReach reports whether a message of type d can hold a SecretRef. Only
// the asked type's answer is kept: inside a cycle a type's answer is not
// final until the search from the asked type ends.
func (w *walker) canReach(d protoreflect.MessageDescriptor) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r, ok := w.reach[d.FullName()]; ok {
		return r
	}
	r := reaches(d, map[protoreflect.FullName]bool{})
	w.reach[d.FullName()] = r
	return r
}

// reaches searches the type graph depth first; a type already visited in
// this search either led to a SecretRef (and the search ended) or did not.
func reaches(d protoreflect.MessageDescriptor, visited map[protoreflect.FullName]bool) bool {
	if d.FullName() == secretRefName {
		return true
	}
	if visited[d.FullName()] {
		return false
	}
	visited[d.FullName()] = true
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.IsMap() {
			f = f.MapValue()
		}
		if md := f.Message(); md != nil && reaches(md, visited) {
			return true
		}
	}
	return false
}
