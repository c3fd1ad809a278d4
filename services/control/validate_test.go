package control

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func validSpec() *taskv1.TaskSpec {
	return &taskv1.TaskSpec{
		Source:      &taskv1.SourceEndpoint{Host: "db", Database: "my-db", User: "ferry"},
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: "k:9092", Topic: "t"},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "orders"}}},
	}
}

func TestNormalizeFillsDefaults(t *testing.T) {
	in := validSpec()
	s, err := Normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.GetSource().GetPort() != 5432 || s.GetKafka().GetCompression() != taskv1.Compression_COMPRESSION_LZ4 ||
		s.GetKafka().GetAcks() != taskv1.Acks_ACKS_ALL || s.GetKafka().GetFormat() != taskv1.DataFormat_DATA_FORMAT_CANAL_JSON ||
		s.GetAdvanced().GetConnectionRetryMinutes() != 720 || s.GetAdvanced().GetOtherRetryMinutes() != 10 {
		t.Fatalf("defaults not applied: %v", s)
	}
	if in.GetAdvanced() != nil {
		t.Fatal("Normalize must not modify its input")
	}
	if missing := notYetSupported(s); len(missing) != 0 {
		t.Fatalf("a plain spec is refused for %v", missing)
	}
}

func TestNormalizeNamesEveryBadField(t *testing.T) {
	s := validSpec()
	s.Source.Host = ""
	s.Destination.Topic = ""
	s.Advanced = &taskv1.AdvancedOptions{ConnectionRetryMinutes: 5, OtherRetryMinutes: 2000}
	_, err := Normalize(s)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"source.host", "destination.topic", "advanced.connection_retry_minutes", "10 to 1440",
		"advanced.other_retry_minutes", "1 to 1440"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOtherWindowMustBeBelowConnectionWindow(t *testing.T) {
	s := validSpec()
	s.Advanced = &taskv1.AdvancedOptions{ConnectionRetryMinutes: 30, OtherRetryMinutes: 30}
	if _, err := Normalize(s); err == nil || !strings.Contains(err.Error(), "smaller than advanced.connection_retry_minutes") {
		t.Fatalf("err = %v, want the other window refused", err)
	}
}

func TestUnsupportedOptionsAreRefusedByName(t *testing.T) {
	s, err := Normalize(validSpec())
	if err != nil {
		t.Fatal(err)
	}
	s.SyncTypes = &taskv1.SyncTypes{Full: true}
	s.Objects.Tables[0].Filter = "id > 10"
	got := strings.Join(notYetSupported(s), "; ")
	for _, want := range []string{"sync_types.full", "objects.tables[0].filter"} {
		if !strings.Contains(got, want) {
			t.Errorf("refusals %q do not name %s", got, want)
		}
	}
}

func TestUnimplementedRPCsSayWhere(t *testing.T) {
	s := NewServer(nil, "q", nil, nil)
	_, err := s.RestartTask(context.Background(), &taskv1.RestartTaskRequest{TaskId: "x"})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "task-lifecycle issue") {
		t.Fatalf("RestartTask: err = %v, want Unimplemented naming the issue area", err)
	}
}
