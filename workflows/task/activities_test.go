package task

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestTopicsForListsEveryTopicOnce(t *testing.T) {
	spec := &taskv1.TaskSpec{
		Destination: &taskv1.KafkaEndpoint{Topic: "data"},
		Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{
			{Schema: "public", Table: "a", Topic: "orders", Partitions: 4},
			{Schema: "public", Table: "b", Partitions: 3},
			{Schema: "public", Table: "c", Topic: "orders", Partitions: 2},
		}},
		Kafka: &taskv1.KafkaOptions{DdlTopic: "orders", DeadLetterTopic: "big-rows"},
	}
	got := map[string]uint32{}
	var order []string
	for _, ts := range TopicsFor(spec) {
		if _, dup := got[ts.GetName()]; dup {
			t.Fatalf("topic %s listed twice", ts.GetName())
		}
		got[ts.GetName()] = ts.GetPartitions()
		order = append(order, ts.GetName())
	}
	want := map[string]uint32{"data": 3, "orders": 4, "big-rows": 1}
	if len(got) != len(want) {
		t.Fatalf("topics %v, want %v", got, want)
	}
	for name, n := range want {
		if got[name] != n {
			t.Fatalf("topic %s: %d partitions, want %d (all: %v, order %v)", name, got[name], n, got, order)
		}
	}
}

// versionCatalog answers GetServerInfo with a server version; the other
// methods are not called.
type versionCatalog struct {
	catalogv1.CatalogServiceClient
	num   uint32
	calls int
}

func (c *versionCatalog) GetServerInfo(context.Context, *catalogv1.GetServerInfoRequest, ...grpc.CallOption) (*catalogv1.GetServerInfoResponse, error) {
	c.calls++
	return &catalogv1.GetServerInfoResponse{VersionNum: c.num}, nil
}

// Full sync reads chunks beside the stream only where pgoutput forwards
// the watermarks (PostgreSQL 14); on the PostgreSQL 12 kernel of Greenplum
// 7 and AnalyticDB 7 it reads the exported snapshot, and exactly-once,
// which cannot, is refused before anything is created.
func TestChunkFullSyncNeedsPostgres14(t *testing.T) {
	full := &taskv1.SetupActivityInput{Spec: &taskv1.TaskSpec{}, PublicationOnly: true, ChunkIfKeyed: true}
	for _, c := range []struct {
		num   uint32
		keyed bool
		want  bool
	}{{140000, true, true}, {170002, true, true}, {120022, true, false}, {130018, true, false}, {160000, false, false}} {
		cat := &versionCatalog{num: c.num}
		got, err := (&Activities{Catalog: cat}).chunkFullSync(context.Background(), full, c.keyed)
		if err != nil || got != c.want {
			t.Errorf("server %d, keyed %v: chunk %v (%v), want %v", c.num, c.keyed, got, err, c.want)
		}
		if !c.keyed && cat.calls != 0 {
			t.Errorf("server %d: asked the server version for a keyless selection", c.num)
		}
	}
	eos := &taskv1.SetupActivityInput{Spec: &taskv1.TaskSpec{Kafka: &taskv1.KafkaOptions{ExactlyOnce: true}}, PublicationOnly: true, ChunkIfKeyed: true}
	_, err := (&Activities{Catalog: &versionCatalog{num: 120022}}).chunkFullSync(context.Background(), eos, true)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrConfig || !strings.Contains(err.Error(), "PostgreSQL 14") {
		t.Errorf("exactly-once full sync on PostgreSQL 12: %v, want a config error naming PostgreSQL 14", err)
	}
	incremental := &taskv1.SetupActivityInput{Spec: &taskv1.TaskSpec{}}
	cat := &versionCatalog{num: 120022}
	if got, err := (&Activities{Catalog: cat}).chunkFullSync(context.Background(), incremental, true); got || err != nil || cat.calls != 0 {
		t.Errorf("without full sync: chunk %v (%v) after %d calls, want false without asking", got, err, cat.calls)
	}
}
