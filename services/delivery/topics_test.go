package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func TestCheckTopicsReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	have := createTopic(t, client, bootstrap, "ferry_have", nil)
	lack := testenv.UniqueName("ferry_lack")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	check := func(create bool, mode taskv1.ConflictMode) map[string]*taskv1.PrecheckItem {
		t.Helper()
		res, err := client.CheckTopics(ctx, &deliveryv1.CheckTopicsRequest{
			Kafka:  &taskv1.KafkaEndpoint{BootstrapServers: bootstrap},
			Topics: []*deliveryv1.TopicSpec{{Name: have}, {Name: lack}}, CreateMissing: create, ConflictMode: mode,
		})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*taskv1.PrecheckItem{}
		for _, it := range res.GetItems() {
			out[it.GetId()] = it
		}
		return out
	}
	fail, pass := taskv1.Severity_SEVERITY_FAIL, taskv1.Severity_SEVERITY_PASS

	// Without schema sync a missing topic fails; nothing is a conflict.
	got := check(false, taskv1.ConflictMode_CONFLICT_MODE_REPORT)
	if it := got[checkTopicsExist]; it.GetSeverity() != fail || !strings.Contains(it.GetMessage(), lack) ||
		strings.Contains(it.GetMessage(), have) || !strings.Contains(it.GetFix(), "sync_types.schema") {
		t.Fatalf("missing topic without schema sync: %v", it)
	}
	if got[checkKafkaConnect].GetSeverity() != pass || got[checkTopicConflict] != nil {
		t.Fatalf("items %v", got)
	}
	// With schema sync the missing one will be created, and the existing
	// one conflicts unless the mode says to ignore it.
	got = check(true, taskv1.ConflictMode_CONFLICT_MODE_REPORT)
	if got[checkTopicsExist].GetSeverity() != pass {
		t.Fatalf("missing topic with schema sync: %v", got[checkTopicsExist])
	}
	if it := got[checkTopicConflict]; it.GetSeverity() != fail || !strings.Contains(it.GetMessage(), have) || !strings.Contains(it.GetFix(), "CONFLICT_MODE_IGNORE") {
		t.Fatalf("conflict under REPORT: %v", it)
	}
	if it := check(true, taskv1.ConflictMode_CONFLICT_MODE_IGNORE)[checkTopicConflict]; it.GetSeverity() != pass || !strings.Contains(it.GetMessage(), have) {
		t.Fatalf("conflict under IGNORE: %v", it)
	}

	// Setup without schema sync creates nothing and names what is missing.
	_, err := client.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{Kafka: &taskv1.KafkaEndpoint{BootstrapServers: bootstrap},
		Topics: []*deliveryv1.TopicSpec{{Name: have}, {Name: lack}}, VerifyOnly: true})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), lack) {
		t.Fatalf("verify only: %v", err)
	}
	if still := check(false, taskv1.ConflictMode_CONFLICT_MODE_REPORT)[checkTopicsExist]; still.GetSeverity() != fail {
		t.Fatalf("verify only created %s: %v", lack, still)
	}

	// An unreachable Kafka is a failed item, not an RPC error.
	res, err := client.CheckTopics(ctx, &deliveryv1.CheckTopicsRequest{Kafka: &taskv1.KafkaEndpoint{BootstrapServers: "127.0.0.1:1"},
		Topics: []*deliveryv1.TopicSpec{{Name: have}}})
	if err != nil || len(res.GetItems()) != 1 || res.GetItems()[0].GetSeverity() != fail || res.GetItems()[0].GetId() != checkKafkaConnect {
		t.Fatalf("unreachable Kafka: %v %v", res, err)
	}
}
